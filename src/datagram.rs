//! Datagram sockets (UDP): each datagram is whole, so its lines are records and so is a last
//! line without LF; nothing carries over to the next one.
//!
//! Readiness is edge-triggered, as for connections: a socket is `readable` from its event until
//! a receive returns `WouldBlock`, and gets `DATAGRAM_BUDGET` datagrams per turn. At shutdown
//! each socket is read until it is empty, for at most `DATAGRAM_DRAIN` after the stop signal:
//! `SIOCINQ` tells only the size of a UDP socket's next datagram, not how many wait, and
//! senders that keep sending keep the socket from ever running empty.
//!
//! A new kind of datagram socket is a new `DatagramSocket` variant with its `recv`, which
//! writes the peer as it appears in records.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::connection::write_peer;
use crate::diag::{error, info};
use crate::input::Input;
use crate::metrics::exposition::{Kind, ListenerInfo};
use crate::unix::transport::UnixDgram;

/// Datagrams one socket gets per turn.
pub const DATAGRAM_BUDGET: usize = 256;
/// How long the drain reads a datagram socket at most. What a UDP socket's full 4 MiB buffer
/// holds at the stop signal takes under 0.1 s to record even in a debug build.
pub const DATAGRAM_DRAIN: Duration = Duration::from_secs(1);

/// A socket that receives whole datagrams.
pub enum DatagramSocket {
    Udp(UdpSocket),
    /// Its senders' peer is their credentials (`unix:pid=1234,uid=1000`).
    Unix(UnixDgram),
}

impl DatagramSocket {
    /// Receives one datagram into `buf`; `peer` is set to its sender as written in records.
    /// Also gives a UDP sender's address (for `allow`).
    #[inline]
    pub fn recv(
        &self,
        buf: &mut [u8],
        peer: &mut Vec<u8>,
    ) -> io::Result<(usize, Option<SocketAddr>)> {
        match self {
            DatagramSocket::Udp(socket) => {
                let (n, from) = socket.recv_from(buf)?;
                peer.clear();
                write_peer(peer, from);
                Ok((n, Some(from)))
            }
            DatagramSocket::Unix(socket) => Ok((socket.recv(buf, peer)?, None)),
        }
    }

    /// The bound address as named in `listening on` messages.
    fn local_name(&self) -> io::Result<String> {
        match self {
            DatagramSocket::Udp(socket) => Ok(format!("udp {}", socket.local_addr()?)),
            DatagramSocket::Unix(socket) => socket.local_name(),
        }
    }

    /// How the metrics name it; `name` is its name in messages, for a socket whose address
    /// cannot be read.
    fn metric_info(&self, name: &str) -> ListenerInfo {
        let named = self.local_name().unwrap_or_else(|_| name.into());
        match self {
            DatagramSocket::Udp(_) => {
                ListenerInfo::new(Kind::Udp, named.strip_prefix("udp ").unwrap_or(&named))
            }
            DatagramSocket::Unix(_) => ListenerInfo::new(
                Kind::UnixDgram,
                named.strip_prefix("unix-dgram ").unwrap_or(&named),
            ),
        }
    }

    /// What the kernel counted at the socket (`metrics::kernel_drops`): datagrams dropped
    /// because its receive buffer was full. UDP only.
    fn kernel_drops(&self) -> Option<u64> {
        match self {
            DatagramSocket::Udp(socket) => crate::metrics::kernel_drops(socket.as_fd()),
            DatagramSocket::Unix(_) => None,
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            DatagramSocket::Udp(socket) => registry.register(socket, token, Interest::READABLE),
            DatagramSocket::Unix(d) => registry.register(&mut d.socket, token, Interest::READABLE),
        }
    }
}

impl From<std::os::unix::net::UnixDatagram> for DatagramSocket {
    fn from(socket: std::os::unix::net::UnixDatagram) -> DatagramSocket {
        DatagramSocket::Unix(UnixDgram::new(mio::net::UnixDatagram::from_std(socket)))
    }
}

impl From<std::net::UdpSocket> for DatagramSocket {
    fn from(socket: std::net::UdpSocket) -> DatagramSocket {
        DatagramSocket::Udp(UdpSocket::from_std(socket))
    }
}

/// One datagram socket and whether it may hold unread datagrams.
struct Port {
    socket: DatagramSocket,
    /// As named in messages and the journal output's `LOGSINKD_LISTENER`: the address bound
    /// (port 0 resolved).
    name: Arc<str>,
    /// Its listener's settings (only `parse` means something to datagrams).
    input: Input,
    readable: bool,
}

/// What one receive brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A datagram of this many bytes (in the buffer; its sender in `peer`), and a UDP
    /// sender's address.
    Datagram(usize, Option<SocketAddr>),
    /// None waits: the socket is not readable until its next event.
    Empty,
    /// The receive failed (logged): an error to count; wait for the next event.
    Failed,
}

/// All datagram sockets, with the drain's deadline.
pub struct Datagrams {
    ports: Vec<Port>,
    /// While the drain reads them: when it stops.
    drain_until: Option<Instant>,
}

impl Datagrams {
    /// Registers `sockets` (with their names) under consecutive tokens from `first`.
    pub fn new(
        sockets: Vec<(DatagramSocket, String, Input)>,
        registry: &Registry,
        first: usize,
    ) -> Result<Datagrams> {
        let mut ports = Vec::new();
        for (i, (mut socket, name, input)) in sockets.into_iter().enumerate() {
            socket
                .register(registry, Token(first + i))
                .with_context(|| format!("registering {name}"))?;
            let name = Arc::from(socket.local_name().unwrap_or(name));
            // Datagrams may have arrived before registration (socket activation).
            ports.push(Port {
                socket,
                name,
                input,
                readable: true,
            });
        }
        Ok(Datagrams {
            ports,
            drain_until: None,
        })
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// `listening on udp 127.0.0.1:5140` for each socket.
    pub fn listening(&self) -> impl Iterator<Item = String> + '_ {
        self.names().map(|name| format!("listening on {name}"))
    }

    /// Each socket as the metrics name it.
    pub fn metric_info(&self) -> impl Iterator<Item = ListenerInfo> + '_ {
        self.ports.iter().map(|p| p.socket.metric_info(&p.name))
    }

    /// Socket `index`'s count of what the kernel dropped (see `DatagramSocket::kernel_drops`).
    pub fn kernel_drops(&self, index: usize) -> Option<u64> {
        self.ports.get(index).and_then(|p| p.socket.kernel_drops())
    }

    /// Socket `index` had a readiness event.
    pub fn mark_readable(&mut self, index: usize) {
        self.ports[index].readable = true;
    }

    /// True if some socket may hold unread datagrams.
    pub fn unread(&self) -> bool {
        self.ports.iter().any(|p| p.readable)
    }

    /// The settings of socket `index`'s listener.
    pub fn input(&self, index: usize) -> &Input {
        &self.ports[index].input
    }

    /// The sockets' names as bound (port 0 resolved), in token order.
    pub fn names(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.ports.iter().map(|p| Arc::clone(&p.name))
    }

    /// True if socket `index` may hold unread datagrams: it gets a turn.
    pub fn is_readable(&self, index: usize) -> bool {
        self.ports[index].readable
    }

    /// Receives one datagram from socket `index` into `buf`, its sender into `peer`.
    pub fn recv(&mut self, index: usize, buf: &mut [u8], peer: &mut Vec<u8>) -> Received {
        let port = &mut self.ports[index];
        loop {
            match port.socket.recv(buf, peer) {
                Ok((n, from)) => return Received::Datagram(n, from),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    port.readable = false;
                    return Received::Empty;
                }
                // A signal arrived during the receive; nothing was lost.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Nothing a sender does makes a receive fail; wait for the next event.
                    error!("receiving on {}: {e}", port.name);
                    port.readable = false;
                    return Received::Failed;
                }
            }
        }
    }

    /// The stop signal came at `now`: read every socket until it is empty, for at most
    /// `DATAGRAM_DRAIN`.
    pub fn start_drain(&mut self, now: Instant) {
        self.drain_until = Some(now + DATAGRAM_DRAIN);
        for p in &mut self.ports {
            p.readable = true;
        }
    }

    /// While the drain reads sockets that have not run empty: when it stops reading them.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.drain_until.filter(|_| self.unread())
    }

    /// Ends the drain's reading at its deadline: sockets still readable are left alone (said
    /// for each). True once no socket is read any more.
    pub fn drain_done(&mut self, now: Instant) -> bool {
        if self.drain_deadline().is_some_and(|until| now >= until) {
            for p in self.ports.iter_mut().filter(|p| p.readable) {
                p.readable = false;
                info!(
                    "stopped reading {} {} s after the stop signal, datagrams still coming in; \
                     those left in its buffer are not recorded",
                    p.name,
                    DATAGRAM_DRAIN.as_secs()
                );
            }
        }
        !self.unread()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;
    use std::net::SocketAddr;

    fn bound() -> (Datagrams, Poll, std::net::UdpSocket, SocketAddr) {
        let poll = Poll::new().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let sockets = vec![(
            DatagramSocket::from(socket),
            format!("udp {addr}"),
            Input::default(),
        )];
        let datagrams = Datagrams::new(sockets, poll.registry(), 5).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (datagrams, poll, sender, addr)
    }

    /// A socket starts readable (datagrams may predate registration), gives its datagrams
    /// with their sender, and is not readable once a receive finds none, until its next event.
    #[test]
    fn readable_until_empty() {
        let (mut d, _poll, sender, addr) = bound();
        assert!(d.unread());
        sender.send_to(b"one\ntwo", addr).unwrap();
        let (mut buf, mut peer) = (vec![0; 100], Vec::new());
        let from = sender.local_addr().unwrap();
        assert_eq!(
            d.recv(0, &mut buf, &mut peer),
            Received::Datagram(7, Some(from))
        );
        assert_eq!(&buf[..7], b"one\ntwo");
        assert_eq!(peer, sender.local_addr().unwrap().to_string().as_bytes());
        assert_eq!(d.recv(0, &mut buf, &mut peer), Received::Empty);
        assert!(!d.unread());
        assert!(!d.is_readable(0));
        d.mark_readable(0);
        assert!(d.is_readable(0));
    }

    /// The drain reads every socket again; one that runs empty is done; one still readable at
    /// `DATAGRAM_DRAIN` is left, and then the drain is done too.
    #[test]
    fn drain_is_bounded() {
        let (mut d, _poll, _sender, _) = bound();
        let start = Instant::now();
        assert_eq!(d.drain_deadline(), None, "no drain before the stop signal");
        d.start_drain(start);
        assert!(d.unread());
        assert_eq!(d.drain_deadline(), Some(start + DATAGRAM_DRAIN));
        assert!(!d.drain_done(start + DATAGRAM_DRAIN / 2));
        assert!(d.drain_done(start + DATAGRAM_DRAIN));
        assert!(!d.unread());
        assert_eq!(d.drain_deadline(), None, "no more wake-ups once done");
        // Ran empty before the deadline: done at once.
        d.start_drain(start);
        let (mut buf, mut peer) = (vec![0; 10], Vec::new());
        assert_eq!(d.recv(0, &mut buf, &mut peer), Received::Empty);
        assert!(d.drain_done(start));
    }
}
