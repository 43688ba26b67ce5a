//! One client connection: its stream, its peer as written in records, and its unfinished
//! line.
//!
//! A connection's `Stream` is whatever a listener (`listener.rs`) accepted: a new kind of
//! stream socket is a new `Stream` variant (read, fd, registration), framed as lines like TCP.
//!
//! At shutdown a connection is read up to what its socket held when the stop signal came (its
//! `stop_quota`) and no further: a client that keeps sending cannot hold the daemon up.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::framing::Framer;
use crate::input::{Input, Parse};
use crate::recorder::Recorder;

/// An accepted stream socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl AsFd for Stream {
    #[inline]
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
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
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}

pub struct Connection {
    pub stream: Stream,
    /// The peer as written in records: `192.0.2.7:51234` or `[2001:db8::7]:51234`.
    pub peer: Box<[u8]>,
    /// The listener it came in on, as `listening on` names it (shared with the listener).
    pub listener: Arc<str>,
    /// Unique for the daemon's life (slab keys are reused), so stale timers can be told apart.
    pub id: u64,
    /// Its unfinished record, framed as its listener says.
    pub framer: Framer,
    /// Whether its messages are scanned for syslog fields (its listener's `parse`).
    pub parse: Parse,
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
    /// `listener` names its listener, `input` is that listener's framing and parsing.
    pub fn new(
        stream: Stream,
        peer: Box<[u8]>,
        listener: Arc<str>,
        id: u64,
        now: Instant,
        input: Input,
    ) -> Connection {
        Connection {
            stream,
            peer,
            listener,
            id,
            framer: Framer::new(input.framing),
            parse: input.parse,
            readable: true,
            last_active: now,
            idle_at: None,
            stop_quota: None,
        }
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
        while *budget > 0 {
            if recorder.sink.backlog() >= limit {
                return Status::Full;
            }
            *budget -= 1;
            let max = self
                .stop_quota
                .map_or(buf.len(), |quota| quota.min(buf.len()));
            match recorder.read_from(
                &mut self.stream,
                &self.peer,
                &mut self.framer,
                self.parse,
                &mut buf[..max],
            ) {
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
