//! One client connection: its stream, its peer as written in records, and its unfinished
//! line.
//!
//! A connection's `Stream` is whatever a listener (`listener.rs`) accepted: a new kind of
//! stream socket is a new `Stream` variant (read, fd, registration), framed as lines like TCP.
//!
//! At shutdown a connection is read up to what its socket held when the stop signal came (its
//! `stop_quota`) and no further: a client that keeps sending cannot hold the daemon up.
//!
//! A connection on a PROXY protocol listener starts with a `Handshake`: its reads go to the
//! header reader (proxy_header.rs) until the header is complete; then the client it names
//! becomes the peer (matched against the listener's `allow`), and the rest of that read is
//! the first data framed. A connection whose header is invalid, or names a client outside
//! `allow`, ends in `Status::TurnedAway`; one still without a header at its deadline is closed
//! by the loop (connections.rs keeps the deadlines).
//!
//! A connection on a TLS listener has a `Stream::Tls`: its reads are the decrypted bytes,
//! framed like any stream's; until its TLS handshake completes it counts as `tls_handshaking`
//! (connections.rs keeps its deadline and the count the loop caps), and a handshake or a
//! record that fails ends it in `Status::TlsFailed` with the reason.

use std::borrow::Cow;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::access::{AllowList, Turned};
use crate::framing::Framer;
use crate::input::{Input, Parse};
use crate::proxy_header::{self, HeaderReader, Progress};
use crate::recorder::Recorder;
use crate::tls::{TlsFailure, TlsStream};

/// An accepted stream socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A TLS client (boxed: rustls' state is a few KiB, and most connections are plain).
    /// Reads give the decrypted bytes; `as_fd` is the TCP socket's, whose bytes are ciphertext.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read_plaintext(buf),
        }
    }
}

impl AsFd for Stream {
    #[inline]
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Tls(s) => s.socket().as_fd(),
        }
    }
}

impl Stream {
    /// Readiness it waits for: a TLS stream also writes (its handshake, alerts).
    pub fn interest(&self) -> Interest {
        match self {
            Stream::Tls(_) => Interest::READABLE | Interest::WRITABLE,
            _ => Interest::READABLE,
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interest),
            Stream::Unix(s) => s.register(registry, token, interest),
            Stream::Tls(s) => s.socket_mut().register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interest),
            Stream::Unix(s) => s.reregister(registry, token, interest),
            Stream::Tls(s) => s.socket_mut().reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tls(s) => s.socket_mut().deregister(registry),
        }
    }
}

pub struct Connection {
    pub stream: Stream,
    /// The peer as written in records: `192.0.2.7:51234` or `[2001:db8::7]:51234`.
    pub peer: Box<[u8]>,
    /// Unique for the daemon's life (slab keys are reused), so stale timers can be told apart.
    pub id: u64,
    /// Its unfinished record, framed as its listener says.
    pub framer: Framer,
    /// Whether its messages are scanned for syslog fields (its listener's `parse`).
    pub parse: Parse,
    /// Its listener's index: whose counters its records bump (see stats.rs).
    pub listener: usize,
    /// The socket may hold unread data: it was readable and has not yet returned `WouldBlock`.
    pub readable: bool,
    /// Last time data arrived (for the idle timeout).
    pub last_active: Instant,
    /// The deadline of its idle timer, if one is armed (see idle.rs).
    pub idle_at: Option<Instant>,
    /// Set at shutdown: bytes still to read of what the socket held when the stop signal came.
    /// The connection is done (its partial line recorded) when they are read, or when its
    /// socket is empty.
    pub stop_quota: Option<usize>,
    /// On a PROXY protocol listener, until its header is complete (boxed: only connections
    /// in their first milliseconds hold one).
    pub handshake: Option<Box<Handshake>>,
    /// A TLS connection whose handshake is in progress (counted against the cap on those,
    /// see connections.rs).
    pub tls_handshaking: bool,
}

/// A PROXY protocol header being read.
pub struct Handshake {
    pub reader: HeaderReader,
    /// The connection's real peer: the load balancer.
    pub balancer: SocketAddr,
    /// The listener's `allow`, matched against the client the header names.
    pub allow: Option<Arc<AllowList>>,
    /// The listener's index (its counters).
    pub listener: usize,
}

/// A client turned away: by `allow`, or on a PROXY listener for its header.
#[derive(Debug)]
pub struct TurnedAway {
    pub kind: Turned,
    /// The listener's index (its counters and name).
    pub listener: usize,
    /// Who: the peer, or the client a PROXY header named.
    pub from: SocketAddr,
    /// Why, as logged.
    pub why: Cow<'static, str>,
}

/// What a read pass left behind.
#[derive(Debug)]
pub enum Status {
    /// Read until `WouldBlock`: wait for the next readiness event.
    Drained,
    /// The read budget is used up: more may be waiting.
    More,
    /// The output's backlog reached the limit: write it out before reading more.
    Full,
    /// The client is gone (EOF or error), or at shutdown everything it had sent before the
    /// stop signal is read; its partial line is recorded. Remove it.
    Closed(Option<std::io::Error>),
    /// Its PROXY header was invalid, or named a client outside `allow`: reset it.
    TurnedAway(TurnedAway),
    /// A TLS client failed: its handshake (`during_handshake`: not TLS, a certificate
    /// refused, gone before it completed) or later (a record that does not decrypt). `why`
    /// says it for the log; its partial line is recorded. Close it.
    TlsFailed { why: String, during_handshake: bool },
}

/// Whether a stream is TLS, noted before it moves into its connection.
enum StreamKind {
    Plain,
    Tls,
}

/// A peer as written in records: `192.0.2.7:51234` or `[2001:db8::7]:51234`. A v4 client of a
/// dual-stack [::] socket shows as ::ffff:a.b.c.d; it is written as v4.
pub fn peer_text(addr: SocketAddr) -> String {
    SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
}

/// Appends `addr` to `peer` as `peer_text` writes it, without a `String` of its own.
pub fn write_peer(peer: &mut Vec<u8>, addr: SocketAddr) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        peer,
        "{}",
        SocketAddr::new(addr.ip().to_canonical(), addr.port())
    );
}

impl Connection {
    /// `peer` is the client as written in records (see `Listener::accept`).
    /// `input` is its listener's framing and parsing, `listener` that listener's index;
    /// `handshake` the PROXY header still to read, on a PROXY listener.
    pub fn new(
        stream: Stream,
        peer: Box<[u8]>,
        id: u64,
        now: Instant,
        input: Input,
        listener: usize,
        handshake: Option<Box<Handshake>>,
    ) -> Connection {
        let stream_kind = match &stream {
            Stream::Tls(_) => StreamKind::Tls,
            _ => StreamKind::Plain,
        };
        Connection {
            stream,
            peer,
            id,
            framer: Framer::new(input.framing),
            parse: input.parse,
            listener,
            readable: true,
            last_active: now,
            idle_at: None,
            stop_quota: None,
            tls_handshaking: matches!(stream_kind, StreamKind::Tls),
            handshake,
        }
    }

    /// The verified name of a TLS client (`tls_peer` in json records): `None` for other
    /// connections, before the handshake completes, and when no client certificate is asked.
    #[inline]
    pub fn tls_peer(&self) -> Option<&str> {
        match &self.stream {
            Stream::Tls(tls) => tls.peer(),
            _ => None,
        }
    }

    /// The client's address, for the log of refused TLS clients: read back from the peer as
    /// written in records (no system call, and still known once the client reset the
    /// connection); `None` for a unix peer.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        std::str::from_utf8(&self.peer).ok()?.parse().ok()
    }

    /// Records its unfinished line: it ends.
    pub fn finish(&mut self, recorder: &mut Recorder<'_>) {
        recorder.sink.set_tls_peer(self.tls_peer());
        recorder.finish(&self.peer, &mut self.framer, self.parse);
    }

    /// Makes closing this connection send a reset (see `reset_on_close`).
    pub fn reset_on_close(&self) {
        reset_on_close(&self.stream);
    }

    /// Reads once into `buf` for the PROXY header and takes what came: the number of bytes
    /// read, or why the client is turned away (an invalid header, a client outside `allow`,
    /// the end of the stream before a complete header).
    fn read_header(
        &mut self,
        buf: &mut [u8],
        recorder: &mut Recorder<'_>,
    ) -> io::Result<Result<usize, TurnedAway>> {
        let n = self.stream.read(buf)?;
        let hs = self.handshake.as_mut().expect("reading a header");
        let (listener, balancer) = (hs.listener, hs.balancer);
        let refused = |why: &'static str| TurnedAway {
            kind: Turned::Refused,
            listener,
            from: balancer,
            why: why.into(),
        };
        if n == 0 {
            return Ok(Err(refused(
                "closed before sending a complete PROXY header",
            )));
        }
        recorder.stats.bytes += n as u64;
        let used = match hs.reader.push(&buf[..n]) {
            Progress::More => return Ok(Ok(n)),
            Progress::Invalid(why) => return Ok(Err(refused(why))),
            Progress::Done { source, used } => {
                if let proxy_header::Source::Client(client) = source {
                    if hs.allow.as_ref().is_some_and(|a| !a.contains(client.ip())) {
                        return Ok(Err(TurnedAway {
                            kind: Turned::Denied,
                            listener,
                            from: client,
                            why: format!(
                                "not in allow (the client named by the PROXY header of \
                                 {balancer})"
                            )
                            .into(),
                        }));
                    }
                    self.peer = peer_text(client).into_bytes().into();
                }
                used
            }
        };
        self.handshake = None;
        // What followed the header in the same read is the client's first data.
        if used < n {
            recorder.record_stream(&self.peer, &mut self.framer, self.parse, &buf[used..n]);
        }
        Ok(Ok(n))
    }

    /// Bytes waiting unread in the socket's receive queue (`SIOCINQ`): one ioctl, asked at
    /// shutdown and before closing an idle connection, never per read.
    pub fn unread_bytes(&self) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD (SIOCINQ) writes one int through the valid pointer.
        if unsafe { libc::ioctl(self.stream.as_fd().as_raw_fd(), libc::FIONREAD, &mut n) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Reads and records what the client sent, taking one from `budget` for each read, and
    /// stops early when the output's backlog reaches `limit`. At shutdown (`stop_quota` set)
    /// it reads no more than the quota, and the connection is done when the quota is read or
    /// the socket is empty.
    pub fn read_available(
        &mut self,
        buf: &mut [u8],
        budget: &mut usize,
        limit: usize,
        recorder: &mut Recorder<'_>,
        now: Instant,
    ) -> Status {
        if let Stream::Tls(tls) = &self.stream {
            recorder.sink.set_tls_peer(tls.peer());
        }
        while *budget > 0 {
            if recorder.sink.queued() >= limit {
                return Status::Full;
            }
            *budget -= 1;
            let max = self
                .stop_quota
                .map_or(buf.len(), |quota| quota.min(buf.len()));
            let got = if self.handshake.is_some() {
                match self.read_header(&mut buf[..max], recorder) {
                    Ok(Err(turned)) => return Status::TurnedAway(turned),
                    Ok(Ok(n)) => Ok(n),
                    Err(e) => Err(e),
                }
            } else if let Stream::Tls(tls) = &mut self.stream {
                // Decrypted bytes are framed like any stream's (the raw format's in-place
                // path reads the socket itself, which holds ciphertext here).
                match tls.read_plaintext(&mut buf[..max]) {
                    Ok(0) if !tls.handshake_done() => {
                        return Status::TlsFailed {
                            why: "closed the connection before completing the TLS handshake".into(),
                            during_handshake: true,
                        };
                    }
                    Ok(0) => Ok(0),
                    Ok(n) => {
                        recorder.stats.bytes += n as u64;
                        // Known once the handshake is done: set at every read, it costs a
                        // copy of a short name, and the recorder starts each turn without.
                        recorder.sink.set_tls_peer(tls.peer());
                        let data = &buf[..n];
                        recorder.record_stream(&self.peer, &mut self.framer, self.parse, data);
                        Ok(n)
                    }
                    Err(e) => match TlsFailure::of(&e) {
                        Some(failure) => {
                            recorder.finish(&self.peer, &mut self.framer, self.parse);
                            return Status::TlsFailed {
                                why: failure.to_string(),
                                during_handshake: failure.during_handshake,
                            };
                        }
                        None => Err(e),
                    },
                }
            } else {
                recorder.read_from(
                    &mut self.stream,
                    &self.peer,
                    &mut self.framer,
                    self.parse,
                    &mut buf[..max],
                )
            };
            match got {
                Ok(0) => {
                    recorder.finish(&self.peer, &mut self.framer, self.parse);
                    return Status::Closed(None);
                }
                Ok(n) => {
                    self.last_active = now;
                    if let Some(quota) = &mut self.stop_quota {
                        *quota -= n;
                        if *quota == 0 {
                            recorder.finish(&self.peer, &mut self.framer, self.parse);
                            return Status::Closed(None);
                        }
                    }
                }
                // Edge-triggered readiness: only WouldBlock means "wait for the next event".
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    if self.stop_quota.is_some() {
                        recorder.finish(&self.peer, &mut self.framer, self.parse);
                        return Status::Closed(None);
                    }
                    return Status::Drained;
                }
                // A signal arrived during read(2); nothing was lost, read again.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    recorder.finish(&self.peer, &mut self.framer, self.parse);
                    return Status::Closed(Some(e));
                }
            }
        }
        Status::More
    }
}

/// Makes closing `stream` send a reset (`SO_LINGER` 0) instead of a FIN: a client turned
/// away learns at once, and the port is not left in TIME_WAIT (a scanner costs nothing).
pub fn reset_on_close(stream: &impl AsFd) {
    // Best effort: if it fails the close is an orderly one, which turns the client away too.
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peers are written as in records: a v4 client of a dual-stack socket as v4.
    #[test]
    fn peers_as_in_records() {
        for (addr, text) in [
            ("192.0.2.7:51234", "192.0.2.7:51234"),
            ("[2001:db8::7]:51234", "[2001:db8::7]:51234"),
            ("[::ffff:192.0.2.7]:5", "192.0.2.7:5"),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(peer_text(addr), text);
            let mut peer = b"old".to_vec();
            peer.clear();
            write_peer(&mut peer, addr);
            assert_eq!(peer, text.as_bytes());
        }
    }
}
