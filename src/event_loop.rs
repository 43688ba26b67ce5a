//! The event loop: one `mio::Poll` drives the listeners, every client connection (kept in a
//! `Slab`), the UDP sockets and the signals. Nothing here blocks except writing the output.
//!
//! Each iteration: wait for events (or the next timer), accept new clients, mark readable
//! connections, read from them in turns (writing the output out every `FLUSH_AT`), write out
//! what the iteration recorded, then act on signals. Readiness is edge-triggered, so a
//! connection stays on the `ready` queue until a read returns `WouldBlock`; a connection that
//! still has data after its turn (`READ_BUDGET` reads) goes to the back of the queue, so one
//! fast client cannot starve the others. While the output's backlog is at
//! `HIGH_WATER` (disk full, syslog receiver gone) nothing is read: the data waits in the
//! kernel and TCP flow control slows the clients down, instead of logsinkd dropping it.
//!
//! SIGTERM (or SIGINT) starts the drain, which runs in this same loop, with the same turns,
//! writes and back-pressure: listeners close, each connection is read up to what its socket
//! held at that moment (then closed, its partial line recorded), each UDP socket until it is
//! empty (for at most `DATAGRAM_DRAIN`), all within `SHUTDOWN_READ`; then the output is
//! written out and synced.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::connection::{Connection, Status, peer_text};
use crate::diag::{error, info, warning};
use crate::idle::IdleTimers;
use crate::listen::Listeners;
use crate::notify::Notifier;
use crate::output_health::{self, FLUSH_AT, HIGH_WATER, OutputHealth};
use crate::recorder::Recorder;
use crate::sink::Sink;

/// Most listening sockets, TCP and UDP together (each needs its own token below the clients').
pub const MAX_LISTENERS: usize = 64;
const SIGNALS: Token = Token(0);
/// The output's socket (syslog), watched for writability while its receiver is busy.
const OUTPUT: Token = Token(1);
const FIRST_LISTENER: usize = 2;
/// Client tokens are slab keys offset by this; see `client_token` / `client_key`.
const FIRST_CLIENT: usize = FIRST_LISTENER + MAX_LISTENERS;

fn client_token(key: usize) -> Token {
    Token(key + FIRST_CLIENT)
}

fn client_key(token: Token) -> usize {
    token.0 - FIRST_CLIENT
}

/// The one read buffer all connections share: idle connections hold no read buffer.
const READ_BUF: usize = 64 * 1024;
/// Reads one connection gets per turn (up to 4 MiB) before the next ready connection is
/// served. Turns much shorter than that cost throughput with several busy clients: each switch
/// leaves the other sockets' receive windows closed longer, and on loopback the window updates
/// then make this process do the senders' transmit work (16 clients: 0.8x of the reference
/// server with 16 reads per turn, 0.9-1.0x with 64).
const READ_BUDGET: usize = 64;
/// Datagrams one UDP socket gets per turn.
const DATAGRAM_BUDGET: usize = 256;
/// Events taken per poll.
const EVENTS: usize = 1024;
/// Pause before accepting again after an accept error such as EMFILE: no busy loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long the drain at shutdown may read at most. What the sockets held at the stop signal
/// normally takes milliseconds (256 streaming clients: well under a second in a debug build);
/// this bound only keeps the exit well inside systemd's TimeoutStopSec (10 s in the shipped
/// unit, with the 5 s a failing output then gets) when the output cannot keep up.
const SHUTDOWN_READ: Duration = Duration::from_secs(2);
/// How long the drain reads a UDP socket at most. `SIOCINQ` tells only the size of a UDP
/// socket's next datagram, not how many wait, and senders that keep sending keep the socket
/// from ever running empty; what its full 4 MiB buffer holds at the stop signal takes under
/// 0.1 s to record even in a debug build.
const DATAGRAM_DRAIN: Duration = Duration::from_secs(1);

/// Settings the loop needs beyond its resources.
pub struct Settings {
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    /// The output as named in messages.
    pub target: String,
}

/// A UDP socket and whether it may hold unread datagrams (edge-triggered, like connections).
struct Datagrams {
    socket: UdpSocket,
    name: String,
    readable: bool,
}

pub struct Server {
    poll: Poll,
    listeners: Vec<(TcpListener, String)>,
    /// UDP sockets; their tokens follow the TCP listeners'.
    datagrams: Vec<Datagrams>,
    signals: Signals,
    conns: Slab<Connection>,
    /// Connections that may hold unread data, as (slab key, connection id).
    ready: VecDeque<(usize, u64)>,
    recorder: Recorder,
    settings: Settings,
    read_buf: Box<[u8]>,
    next_id: u64,
    /// Accepting is paused after an accept error until then.
    accept_paused_until: Option<Instant>,
    /// An accept error episode is on: logged once, ends when the backlog is drained.
    accept_failing: bool,
    /// The connection cap is reached; accepting resumes when a connection closes.
    at_cap: bool,
    /// A cap episode is on: logged once, ends when the backlog is drained below the cap.
    cap_logged: bool,
    /// Idle timers, when `idle_timeout` is set: one per open connection.
    idle: Option<IdleTimers>,
    /// When the stop signal was taken: the drain is on.
    draining_since: Option<Instant>,
    output: OutputHealth,
    notifier: Notifier,
}

/// Why the loop ended.
pub struct Summary {
    /// Bytes accepted from clients that could not be written before exit.
    pub unwritten: usize,
}

impl Server {
    /// Registers everything with a new `Poll`. `listeners` carry the name used in messages.
    pub fn new(
        listeners: Listeners,
        sink: Sink,
        max_line: usize,
        settings: Settings,
    ) -> Result<Server> {
        let poll = Poll::new().context("creating the poll instance")?;
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])
            .context("installing signal handlers")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut mio_listeners = Vec::new();
        for (i, (listener, name)) in listeners.tcp.into_iter().enumerate() {
            let mut listener = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, Token(FIRST_LISTENER + i), Interest::READABLE)
                .with_context(|| format!("registering listener {name}"))?;
            mio_listeners.push((listener, name));
        }
        let mut datagrams = Vec::new();
        for (socket, name) in listeners.udp {
            let mut socket = UdpSocket::from_std(socket);
            let token = Token(FIRST_LISTENER + mio_listeners.len() + datagrams.len());
            poll.registry()
                .register(&mut socket, token, Interest::READABLE)
                .with_context(|| format!("registering {name}"))?;
            datagrams.push(Datagrams {
                socket,
                name,
                // Datagrams may have arrived before registration (socket activation).
                readable: true,
            });
        }
        Ok(Server {
            poll,
            listeners: mio_listeners,
            datagrams,
            signals,
            conns: Slab::new(),
            ready: VecDeque::new(),
            recorder: Recorder::new(sink, max_line),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            next_id: 0,
            accept_paused_until: None,
            accept_failing: false,
            at_cap: false,
            cap_logged: false,
            idle: settings.idle_timeout.map(IdleTimers::new),
            draining_since: None,
            output: OutputHealth::default(),
            notifier: Notifier::from_env(),
            settings,
        })
    }

    /// One line per socket, naming the address actually bound (port 0 resolved):
    /// `listening on 127.0.0.1:5140`, `listening on udp 127.0.0.1:5140`.
    pub fn listening(&self) -> Vec<String> {
        let tcp = self.listeners.iter().map(|(l, name)| match l.local_addr() {
            Ok(addr) => format!("listening on {addr}"),
            Err(_) => format!("listening on {name}"),
        });
        let udp = self.datagrams.iter().map(|d| match d.socket.local_addr() {
            Ok(addr) => format!("listening on udp {addr}"),
            Err(_) => format!("listening on {}", d.name),
        });
        tcp.chain(udp).collect()
    }

    /// Tells systemd the daemon is ready.
    pub fn notify_ready(&mut self) {
        self.notifier.ready(&self.recorder.stats.status());
    }

    /// Runs until SIGTERM or SIGINT, then drains and shuts down cleanly.
    pub fn run(mut self) -> Result<Summary> {
        let mut events = Events::with_capacity(EVENTS);
        let mut notify_at = self.notifier.tick(Instant::now(), &self.recorder.stats);
        loop {
            let timeout = self.poll_timeout(Instant::now(), notify_at);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted epoll_wait; the Signals source reports it as an event.
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("waiting for events");
            }
            let now = Instant::now();
            let (mut reopen, mut stop) = (false, false);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.take_signals(&mut reopen, &mut stop),
                    OUTPUT => self.output.wake(),
                    Token(t) if t < FIRST_CLIENT => self.listener_ready(t - FIRST_LISTENER, now),
                    token => self.mark_readable(client_key(token)),
                }
            }
            self.run_timers(now);
            self.read_datagrams(now);
            self.read_ready(now);
            self.flush_output(now);
            if reopen {
                self.reopen();
            }
            if stop && self.draining_since.is_none() {
                self.start_drain(now);
            }
            if self.drain_over(now) {
                return Ok(self.shutdown());
            }
            notify_at = self.notifier.tick(now, &self.recorder.stats);
        }
    }

    /// How long `poll` may wait: not at all while connections have unread data (unless the
    /// output is backed up), else until the earliest timer.
    fn poll_timeout(&self, now: Instant, notify_at: Option<Instant>) -> Option<Duration> {
        let unread = !self.ready.is_empty() || self.datagrams.iter().any(|d| d.readable);
        if unread && !self.output_full() {
            return Some(Duration::ZERO);
        }
        [
            self.accept_paused_until,
            self.output.retry_at(),
            self.idle.as_ref().and_then(IdleTimers::next),
            self.datagram_drain_until(),
            self.draining_since.map(|since| since + SHUTDOWN_READ),
            notify_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    /// Before reading more: writes the batch out once it reaches `FLUSH_AT`, and says whether
    /// the output can take what is read (false while its backlog is at `HIGH_WATER`).
    fn room_to_read(&mut self, now: Instant) -> bool {
        if self.recorder.sink.backlog() >= FLUSH_AT {
            self.flush_output(now);
        }
        !self.output_full()
    }

    fn output_full(&self) -> bool {
        self.recorder.sink.backlog() >= HIGH_WATER
    }

    /// Signals are only noted here and acted on after this iteration's reads, in the loop.
    /// `pending()` coalesces repeats, so two quick HUPs may be one reopen: reopen is idempotent.
    fn take_signals(&mut self, reopen: &mut bool, stop: &mut bool) {
        for signal in self.signals.pending() {
            match signal {
                SIGHUP => *reopen = true,
                SIGTERM | SIGINT => *stop = true,
                SIGUSR1 => info!("stats: {}", self.recorder.stats),
                _ => {}
            }
        }
    }

    /// A listening socket is readable: accept on a TCP listener, note a UDP socket's datagrams.
    /// Not while draining: the listeners are closed, and a UDP socket that ran empty is done.
    fn listener_ready(&mut self, index: usize, now: Instant) {
        if self.draining_since.is_some() {
            return;
        }
        match index.checked_sub(self.listeners.len()) {
            None => self.accept_all(index, now),
            Some(udp) => self.datagrams[udp].readable = true,
        }
    }

    /// Gives each UDP socket with unread datagrams one turn. Each datagram is whole: its lines
    /// are records, and so is a last line without LF; nothing carries over to the next one.
    fn read_datagrams(&mut self, now: Instant) {
        for index in 0..self.datagrams.len() {
            if self.datagrams[index].readable {
                self.receive(index, DATAGRAM_BUDGET, now);
            }
        }
    }

    /// Receives up to `budget` datagrams from one UDP socket, unless the output is backed up
    /// (then the kernel queues them, and drops what overflows its buffer: UDP has no flow
    /// control).
    fn receive(&mut self, index: usize, budget: usize, now: Instant) {
        for _ in 0..budget {
            if !self.room_to_read(now) {
                return;
            }
            let d = &mut self.datagrams[index];
            match d.socket.recv_from(&mut self.read_buf) {
                Ok((n, from)) => {
                    self.recorder
                        .record_datagram(peer_text(from).as_bytes(), &self.read_buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    d.readable = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Nothing a sender does makes recv_from fail; wait for the next event.
                    error!("receiving on {}: {e}", d.name);
                    d.readable = false;
                    self.recorder.stats.errors += 1;
                    return;
                }
            }
        }
    }

    /// Accepts until `WouldBlock`, the connection cap, or an error that calls for a pause.
    fn accept_all(&mut self, index: usize, now: Instant) {
        if self.accept_paused_until.is_some() {
            return; // the timer retries
        }
        loop {
            if self.conns.len() >= self.settings.max_connections {
                // Leave further clients in the kernel's backlog, where TCP makes them wait;
                // accepting them only to close them would lose what they send.
                if !self.cap_logged {
                    warning!(
                        "{} connections open, the cap (max_connections); new clients wait \
                         until one closes",
                        self.conns.len()
                    );
                    self.cap_logged = true;
                }
                self.at_cap = true;
                return;
            }
            let (listener, name) = &self.listeners[index];
            match listener.accept() {
                Ok((stream, addr)) => self.add_connection(stream, addr, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Every waiting client is accepted: an episode of errors or of the cap ends.
                    if self.accept_failing {
                        self.accept_failing = false;
                        info!("accepting connections again; no client waits");
                    }
                    if self.cap_logged {
                        self.cap_logged = false;
                        info!("below the connection cap again; no client waits");
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The client gave up (or its network failed) before we accepted: not ours.
                Err(e) if is_client_side(&e) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would spin. Pause;
                    // waiting clients stay queued in the kernel meanwhile. Logged once per
                    // episode, however long it lasts.
                    self.recorder.stats.errors += 1;
                    if !self.accept_failing {
                        self.accept_failing = true;
                        error!(
                            "accepting on {name}: {e}; retrying every {} ms, clients wait in the backlog",
                            ACCEPT_PAUSE.as_millis()
                        );
                    }
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn add_connection(&mut self, mut stream: mio::net::TcpStream, addr: SocketAddr, now: Instant) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, client_token(key), Interest::READABLE)
        {
            self.recorder.stats.errors += 1;
            error!("registering connection from {addr}: {e}");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = entry.insert(Connection::new(stream, addr, id, now));
        // Data may have arrived before registration: give it a first read right away.
        self.ready.push_back((key, id));
        if let Some(idle) = &mut self.idle {
            idle.arm(key, &mut conn.idle_at, now);
        }
        let stats = &mut self.recorder.stats;
        stats.connections += 1;
        stats.open = self.conns.len();
    }

    fn mark_readable(&mut self, key: usize) {
        // Events can be stale: the connection may be gone and its key reused. A spurious
        // read costs one WouldBlock.
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.readable {
                conn.readable = true;
                self.ready.push_back((key, conn.id));
            }
        }
    }

    /// Gives each connection on the ready queue one turn.
    fn read_ready(&mut self, now: Instant) {
        for _ in 0..self.ready.len() {
            if !self.room_to_read(now) {
                return;
            }
            let Some((key, id)) = self.ready.pop_front() else {
                return;
            };
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.id == id && c.readable)
            {
                self.turn(key, id, now);
            }
        }
    }

    /// One connection's turn: up to READ_BUDGET reads. The batch is written out whenever it
    /// reaches FLUSH_AT and the same connection goes on, as long as the output takes data.
    fn turn(&mut self, key: usize, id: u64, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            // A healthy output is written out every FLUSH_AT; a failing one holds up to
            // HIGH_WATER before reading stops.
            let limit = if self.output.failing() {
                HIGH_WATER
            } else {
                FLUSH_AT
            };
            let conn = &mut self.conns[key];
            match conn.read_available(
                &mut self.read_buf,
                &mut budget,
                limit,
                &mut self.recorder,
                now,
            ) {
                Status::Drained => return,
                Status::Full if budget > 0 && self.room_to_read(now) => {}
                Status::Full | Status::More => return self.ready.push_back((key, id)),
                Status::Closed(err) => {
                    if err.is_some() {
                        // Resets are routine (a client crashed); counted, not logged each.
                        self.recorder.stats.errors += 1;
                    }
                    return self.close(key, now);
                }
            }
        }
    }

    fn close(&mut self, key: usize, now: Instant) {
        // Dropping the stream closes it, which also removes it from epoll.
        let mut conn = self.conns.remove(key);
        if let Some(idle) = &mut self.idle {
            idle.disarm(key, &mut conn.idle_at);
        }
        self.recorder.stats.open = self.conns.len();
        if self.at_cap {
            self.at_cap = false;
            self.accept_everywhere(now);
        }
    }

    fn accept_everywhere(&mut self, now: Instant) {
        for index in 0..self.listeners.len() {
            self.accept_all(index, now);
        }
    }

    fn run_timers(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|at| at <= now) {
            self.accept_paused_until = None;
            self.accept_everywhere(now);
        }
        self.close_idle(now);
    }

    /// Closes the connections that sent nothing for `idle_timeout`, recording their partial
    /// lines. Data waiting in a socket is never dropped this way: while the output is backed
    /// up logsinkd reads nothing, and a client whose data waits unread is not idle.
    fn close_idle(&mut self, now: Instant) {
        let Some(idle) = &mut self.idle else {
            return;
        };
        let mut silent = Vec::new();
        while let Some(key) = idle.pop_due(now) {
            // Every open connection has a timer, removed when it closes.
            let conn = &mut self.conns[key];
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
        for key in silent {
            let conn = &mut self.conns[key];
            self.recorder.finish(&conn.peer, &mut conn.lines);
            self.close(key, now);
        }
    }

    /// Writes out the batch of this iteration (see output_health.rs).
    fn flush_output(&mut self, now: Instant) {
        let registry = self.poll.registry();
        let recorder = &mut self.recorder;
        let target = &self.settings.target;
        self.output.flush(
            &mut recorder.sink,
            target,
            registry,
            OUTPUT,
            &mut recorder.stats,
            now,
        );
    }

    /// SIGHUP: open the output anew (after logrotate moved it away).
    fn reopen(&mut self) {
        self.notifier.reloading();
        match self.recorder.sink.reopen() {
            Ok(()) => info!("reopened {}", self.settings.target),
            Err(e) => error!("reopening failed, still writing to the old output: {e:#}"),
        }
        self.notifier.reloaded();
    }

    /// SIGTERM/SIGINT: stop accepting and start the drain. Each connection gets a quota: what
    /// its socket holds now (the kernel's receive queue, `SIOCINQ`), so a client that keeps
    /// sending cannot hold the daemon up; one with nothing waiting is done at once. Each UDP
    /// socket is read until it is empty (a datagram's size is all `SIOCINQ` tells there).
    fn start_drain(&mut self, now: Instant) {
        self.notifier.stopping();
        // Closed, not just left alone: new clients are refused rather than left waiting.
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.draining_since = Some(now);
        for d in &mut self.datagrams {
            d.readable = true;
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            let quota = conn.unread_bytes().unwrap_or_else(|e| {
                // Cannot happen on a connected socket; read until empty instead.
                error!(
                    "asking for the unread bytes of {}: {e}",
                    String::from_utf8_lossy(&conn.peer)
                );
                usize::MAX
            });
            if quota == 0 {
                self.recorder.finish(&conn.peer, &mut conn.lines);
                self.close(key, now);
            } else {
                conn.stop_quota = Some(quota);
                self.mark_readable(key);
            }
        }
    }

    /// While draining UDP sockets that have not run empty: when to stop reading them.
    fn datagram_drain_until(&self) -> Option<Instant> {
        let since = self.draining_since?;
        let reading = self.datagrams.iter().any(|d| d.readable);
        reading.then_some(since + DATAGRAM_DRAIN)
    }

    /// True once the drain is over: every connection has been read up to its quota (and
    /// closed) and every UDP socket ran empty or had its `DATAGRAM_DRAIN`, or `SHUTDOWN_READ`
    /// has passed.
    fn drain_over(&mut self, now: Instant) -> bool {
        let Some(since) = self.draining_since else {
            return false;
        };
        if self
            .datagram_drain_until()
            .is_some_and(|until| now >= until)
        {
            for d in self.datagrams.iter_mut().filter(|d| d.readable) {
                d.readable = false;
                info!(
                    "stopped reading {} {} s after the stop signal, datagrams still coming in; \
                     those left in its buffer are not recorded",
                    d.name,
                    DATAGRAM_DRAIN.as_secs()
                );
            }
        }
        let drained = self.conns.is_empty() && !self.datagrams.iter().any(|d| d.readable);
        drained || now >= since + SHUTDOWN_READ
    }

    /// The end of the drain (done, or `SHUTDOWN_READ` passed): records the partial lines of
    /// connections still open, writes it all out and syncs.
    fn shutdown(mut self) -> Summary {
        let mut unread = 0usize;
        for (_, conn) in &mut self.conns {
            unread = unread.saturating_add(conn.stop_quota.unwrap_or(0));
            self.recorder.finish(&conn.peer, &mut conn.lines);
        }
        if unread > 0 {
            warning!(
                "stopped reading {} s after the stop signal: {unread} bytes clients had sent \
                 before it are not recorded",
                SHUTDOWN_READ.as_secs()
            );
        }
        self.conns.clear();
        self.recorder.stats.open = 0;
        let unwritten = output_health::flush_before_exit(&mut self.recorder.sink);
        info!("stopped: {}", self.recorder.stats);
        Summary { unwritten }
    }
}

/// Accept errors caused by the connecting client, not by logsinkd: accept the next one.
fn is_client_side(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}
