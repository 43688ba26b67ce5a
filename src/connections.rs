//! The open connections: a `Slab` whose keys become their tokens, the ready queue, and the idle
//! timers (`idle.rs`).
//!
//! Readiness is edge-triggered: a connection is `readable` from its event until a read returns
//! `WouldBlock`, and stays on the ready queue, once, meanwhile. The queue holds (slab key,
//! connection id) pairs: slab keys are reused, so an entry whose connection closed (and whose
//! key may now be another connection's) is told apart by the id and skipped. A connection that
//! still has data after its turn is queued again at the back, so one fast client cannot starve
//! the others.
//!
//! Connections on a PROXY protocol listener must complete their header within
//! `HEADER_TIMEOUT`. Every header has the same timeout, so their deadlines come in the order
//! the connections were accepted: a plain queue, checked from its front. TLS connections must
//! complete their handshake within `tls_handshake_timeout`, kept the same way; the count of
//! handshakes in progress is what `tls_max_handshakes` caps.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::{Registry, Token};
use slab::Slab;

use crate::connection::{Connection, Handshake, Stream};
use crate::idle::IdleTimers;
use crate::input::Input;

/// How long a connection on a PROXY protocol listener may take to send its header: balancers
/// send it at once with the connection, and HAProxy's spec asks receivers for at least 3 s
/// (a TCP retransmit). A client that sends part of one and stalls holds its slot this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Connections {
    slab: Slab<Connection>,
    /// Connections that may hold unread data, as (slab key, connection id).
    ready: VecDeque<(usize, u64)>,
    next_id: u64,
    /// Idle timers, when `idle_timeout` is set: one per open connection.
    idle: Option<IdleTimers>,
    /// PROXY header deadlines as (slab key, connection id, deadline), in deadline order;
    /// an entry whose connection closed or completed its header is skipped.
    headers: VecDeque<(usize, u64, Instant)>,
    /// TLS handshake deadlines, the same way (every handshake has the same timeout).
    tls_handshakes: VecDeque<(usize, u64, Instant)>,
    /// `tls_handshake_timeout`.
    handshake_timeout: Duration,
    /// TLS connections whose handshake is in progress.
    handshaking: usize,
}

impl Connections {
    /// `handshake_timeout`: how long a TLS client has to complete its handshake.
    pub fn new(idle_timeout: Option<Duration>, handshake_timeout: Duration) -> Connections {
        Connections {
            slab: Slab::new(),
            ready: VecDeque::new(),
            next_id: 0,
            idle: idle_timeout.map(IdleTimers::new),
            headers: VecDeque::new(),
            tls_handshakes: VecDeque::new(),
            handshake_timeout,
            handshaking: 0,
        }
    }

    /// `tls_handshake_timeout`.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// TLS connections whose handshake is in progress.
    pub fn handshaking(&self) -> usize {
        self.handshaking
    }

    /// Notes whether connection `key`'s TLS handshake completed; true if it just did.
    pub fn note_handshake(&mut self, key: usize) -> bool {
        let conn = &mut self.slab[key];
        let done = conn.tls_handshaking
            && matches!(&conn.stream, Stream::Tls(tls) if tls.handshake_done());
        if done {
            conn.tls_handshaking = false;
            self.handshaking -= 1;
        }
        done
    }

    /// When the earliest TLS handshake deadline is (perhaps of a connection done with it).
    pub fn next_handshake_deadline(&self) -> Option<Instant> {
        self.tls_handshakes.front().map(|&(_, _, at)| at)
    }

    /// The TLS connections still handshaking at their deadline, by `now`.
    pub fn handshakes_overdue(&mut self, now: Instant) -> Vec<usize> {
        let mut overdue = Vec::new();
        while let Some(&(key, id, at)) = self.tls_handshakes.front() {
            if at > now {
                break;
            }
            self.tls_handshakes.pop_front();
            if self.slab.get(key).is_some_and(|c| c.id == id) && self.note_handshake(key) {
                continue;
            }
            if self
                .slab
                .get(key)
                .is_some_and(|c| c.id == id && c.tls_handshaking)
            {
                overdue.push(key);
            }
        }
        overdue
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Registers `stream` (accepted on the listener `listener` names: its index and its
    /// settings) under `token(key)` and adds it, ready for a first read (data may have arrived
    /// before registration), its idle timer armed, and with a `handshake` its header deadline.
    /// Fails, naming the peer, if registering fails.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        mut stream: Stream,
        peer: Box<[u8]>,
        (listener, input): (usize, Input),
        handshake: Option<Box<Handshake>>,
        registry: &Registry,
        token: impl FnOnce(usize) -> Token,
        now: Instant,
    ) -> io::Result<()> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let interest = stream.interest();
        if let Err(e) = registry.register(&mut stream, token(key), interest) {
            let peer = String::from_utf8_lossy(&peer);
            return Err(io::Error::new(
                e.kind(),
                format!("registering connection from {peer}: {e}"),
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        if handshake.is_some() {
            self.headers.push_back((key, id, now + HEADER_TIMEOUT));
        }
        if matches!(stream, Stream::Tls(_)) {
            self.tls_handshakes
                .push_back((key, id, now + self.handshake_timeout));
            self.handshaking += 1;
        }
        let conn = entry.insert(Connection::new(
            stream, peer, id, now, input, listener, handshake,
        ));
        self.ready.push_back((key, id));
        if let Some(idle) = &mut self.idle {
            idle.arm(key, &mut conn.idle_at, now);
        }
        Ok(())
    }

    /// Connection `key` had a readiness event: queue it unless it is queued already. Events
    /// can be stale (the connection gone, its key reused): a spurious read costs one
    /// `WouldBlock`.
    pub fn mark_readable(&mut self, key: usize) {
        if let Some(conn) = self.slab.get_mut(key) {
            if !conn.readable {
                conn.readable = true;
                self.ready.push_back((key, conn.id));
            }
        }
    }

    /// True if some connection may hold unread data.
    pub fn any_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Entries on the ready queue: one round of turns takes this many.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the next entry off the ready queue: the key of a connection due its turn, or
    /// `None` inside for a stale entry (skip it). `None` when the queue is empty.
    pub fn pop_ready(&mut self) -> Option<Option<usize>> {
        let (key, id) = self.ready.pop_front()?;
        let due = self.slab.get(key).is_some_and(|c| c.id == id && c.readable);
        Some(due.then_some(key))
    }

    /// Connection `key` still has data after its turn: back of the queue.
    pub fn requeue(&mut self, key: usize) {
        self.ready.push_back((key, self.slab[key].id));
    }

    /// The open connection `key`.
    #[inline]
    pub fn get_mut(&mut self, key: usize) -> &mut Connection {
        &mut self.slab[key]
    }

    /// Removes connection `key` and its idle timer; dropping it closes its socket, which
    /// also removes it from epoll. Its queue entry, if any, goes stale.
    pub fn remove(&mut self, key: usize) -> Connection {
        let mut conn = self.slab.remove(key);
        if conn.tls_handshaking {
            self.handshaking -= 1;
        }
        if let Some(idle) = &mut self.idle {
            idle.disarm(key, &mut conn.idle_at);
        }
        conn
    }

    /// When the earliest idle timer goes off.
    pub fn next_idle(&self) -> Option<Instant> {
        self.idle.as_ref().and_then(IdleTimers::next)
    }

    /// The connections whose idle timers went off and that are idle (see idle.rs): silent
    /// for `idle_timeout`, nothing unread in their sockets. The others' timers are armed
    /// again.
    pub fn idle_at(&mut self, now: Instant) -> Vec<usize> {
        let mut silent = Vec::new();
        let Some(idle) = &mut self.idle else {
            return silent;
        };
        while let Some(key) = idle.pop_due(now) {
            // Every open connection has a timer, removed when it closes.
            let conn = &mut self.slab[key];
            let mut slot = conn.idle_at;
            // Asked of the socket itself: `readable` only says data may be there (a new
            // connection starts readable), and data may have come since the last poll.
            let unread = || conn.unread_bytes().is_ok_and(|n| n > 0);
            let is_idle = idle.expired(key, &mut slot, conn.last_active, now, unread);
            conn.idle_at = slot;
            if is_idle {
                silent.push(key);
            }
        }
        silent
    }

    /// When the earliest PROXY header deadline is (perhaps of a connection done with it:
    /// waking for it costs a look).
    pub fn next_header_deadline(&self) -> Option<Instant> {
        self.headers.front().map(|&(_, _, at)| at)
    }

    /// The connections still without a complete PROXY header at their deadline, by `now`.
    pub fn headers_overdue(&mut self, now: Instant) -> Vec<usize> {
        let mut overdue = Vec::new();
        while let Some(&(key, id, at)) = self.headers.front() {
            if at > now {
                break;
            }
            self.headers.pop_front();
            let waiting = self
                .slab
                .get(key)
                .is_some_and(|c| c.id == id && c.handshake.is_some());
            if waiting {
                overdue.push(key);
            }
        }
        overdue
    }

    /// The keys of all open connections.
    pub fn keys(&self) -> Vec<usize> {
        self.slab.iter().map(|(key, _)| key).collect()
    }

    /// Every open connection, to finish at shutdown.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Connection> {
        self.slab.iter_mut().map(|(_, conn)| conn)
    }

    /// Closes every connection (at exit).
    pub fn clear(&mut self) {
        self.slab.clear();
        self.ready.clear();
        self.headers.clear();
        self.tls_handshakes.clear();
        self.handshaking = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;
    use mio::net::TcpStream;
    use std::net::TcpListener;

    /// A server-side stream of a real loopback connection, and its client.
    fn accepted(listener: &TcpListener) -> (Stream, std::net::TcpStream) {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (Stream::Tcp(TcpStream::from_std(server)), client)
    }

    /// A new connection is due a first turn; an event while queued does not queue it twice;
    /// after `WouldBlock` (readable cleared) the next event queues it again.
    #[test]
    fn queued_once_while_readable() {
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut conns = Connections::new(None, Duration::from_secs(10));
        let (stream, _client) = accepted(&listener);
        let now = Instant::now();
        conns
            .add(
                stream,
                Box::from(&b"p"[..]),
                (0, Input::default()),
                None,
                poll.registry(),
                Token,
                now,
            )
            .unwrap();
        conns.mark_readable(0);
        assert_eq!(conns.ready_len(), 1);
        assert_eq!(conns.pop_ready(), Some(Some(0)));
        assert_eq!(conns.pop_ready(), None);
        conns.get_mut(0).readable = false; // a read returned WouldBlock
        conns.mark_readable(0);
        conns.mark_readable(0);
        assert_eq!(conns.ready_len(), 1);
        conns.requeue(0);
        assert_eq!(conns.pop_ready(), Some(Some(0)));
    }

    /// A closed connection's queue entry is stale, even once its key is another's.
    #[test]
    fn stale_entries_are_skipped() {
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut conns = Connections::new(None, Duration::from_secs(10));
        let now = Instant::now();
        let (a, _ca) = accepted(&listener);
        conns
            .add(
                a,
                Box::from(&b"a"[..]),
                (0, Input::default()),
                None,
                poll.registry(),
                Token,
                now,
            )
            .unwrap();
        drop(conns.remove(0));
        conns.mark_readable(0); // a stale event: nothing there
        let (b, _cb) = accepted(&listener);
        conns
            .add(
                b,
                Box::from(&b"b"[..]),
                (0, Input::default()),
                None,
                poll.registry(),
                Token,
                now,
            )
            .unwrap();
        assert_eq!(conns.get_mut(0).peer.as_ref(), b"b", "key 0 reused");
        assert_eq!(conns.pop_ready(), Some(None), "a's entry");
        assert_eq!(conns.pop_ready(), Some(Some(0)), "b's entry");
        assert!(!conns.any_ready());
    }

    /// Idle timers: a silent connection is idle at the timeout; one whose socket holds
    /// unread data is not; a removed one leaves no timer.
    #[test]
    fn idle_connections() {
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_secs(10);
        let mut conns = Connections::new(Some(timeout), Duration::from_secs(10));
        let start = Instant::now();
        let (silent, _c0) = accepted(&listener);
        conns
            .add(
                silent,
                Box::from(&b"s"[..]),
                (0, Input::default()),
                None,
                poll.registry(),
                Token,
                start,
            )
            .unwrap();
        let (talking, mut c1) = accepted(&listener);
        conns
            .add(
                talking,
                Box::from(&b"t"[..]),
                (0, Input::default()),
                None,
                poll.registry(),
                Token,
                start,
            )
            .unwrap();
        std::io::Write::write_all(&mut c1, b"unread").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while conns.get_mut(1).unread_bytes().unwrap() == 0 {
            assert!(Instant::now() < deadline, "the bytes never arrived");
            std::thread::yield_now();
        }
        assert_eq!(conns.next_idle(), Some(start + timeout));
        assert!(conns.idle_at(start + timeout / 2).is_empty());
        let idle = conns.idle_at(start + timeout);
        assert_eq!(idle, [0]);
        assert_eq!(
            conns.next_idle(),
            Some(start + timeout * 2),
            "1 armed again"
        );
        drop(conns.remove(1));
        drop(conns.remove(0));
        assert_eq!(conns.next_idle(), None);
        assert!(conns.is_empty());
    }

    /// A connection with a PROXY handshake is overdue at `HEADER_TIMEOUT` unless it closed
    /// or completed its header by then; deadlines are taken in accept order.
    #[test]
    fn header_deadlines() {
        use crate::proxy_header::HeaderReader;
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut conns = Connections::new(None, Duration::from_secs(10));
        let start = Instant::now();
        let handshake = || {
            Some(Box::new(Handshake {
                reader: HeaderReader::default(),
                balancer: listener.local_addr().unwrap(),
                allow: None,
                listener: 0,
            }))
        };
        let mut clients = Vec::new();
        for (i, hs) in [handshake(), None, handshake(), handshake()]
            .into_iter()
            .enumerate()
        {
            let (stream, client) = accepted(&listener);
            clients.push(client);
            let at = start + Duration::from_millis(i as u64);
            conns
                .add(
                    stream,
                    Box::from(&b"p"[..]),
                    (0, Input::default()),
                    hs,
                    poll.registry(),
                    Token,
                    at,
                )
                .unwrap();
        }
        assert_eq!(conns.next_header_deadline(), Some(start + HEADER_TIMEOUT));
        assert!(conns.headers_overdue(start + HEADER_TIMEOUT / 2).is_empty());
        conns.get_mut(2).handshake = None; // its header came
        drop(conns.remove(3)); // closed
        assert_eq!(conns.headers_overdue(start + HEADER_TIMEOUT * 2), [0]);
        assert_eq!(conns.next_header_deadline(), None, "every entry taken");
    }
}
