//! Syslog output: every line becomes one message, tag `logsinkd`, severity `info`, the
//! configured facility, text `<peer> <escaped line>`, formatted by the `syslog` crate
//! (RFC 3164, stamped at receipt).
//!
//! The socket is non-blocking, so a stalled or vanished receiver never blocks the event loop:
//! messages wait in a queue, a receiver that cannot take more (`EAGAIN`) is tried again
//! shortly, and one that fails is reconnected with back-off by the event loop, which stops
//! reading from clients while the queue is at its high-water mark. Unix-socket and UDP
//! connections are made by the `syslog` crate (they never block); TCP connects
//! non-blockingly here. Datagrams go whole or not at all; on a stream a message may be cut by
//! a broken connection, and is then sent again whole on the next one.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};

use anyhow::{Context, Result, anyhow, bail};
use socket2::{Domain, Socket, Type};
use syslog::{Facility, Formatter3164, LogFormat, LoggerBackend, Severity};

use super::{SinkError, SyslogAddr};
use crate::record::escape_into;

/// Longest message text sent in one message. rsyslog's default `maxMessageSize` is 8 KiB
/// including the header and it truncates what is longer, so longer lines go as several
/// messages of this size rather than being cut short at the receiver.
pub const MAX_TEXT: usize = 7 * 1024;

/// An open connection to the receiver.
enum Conn {
    /// Unix datagram socket (/dev/log and the like): one message per datagram.
    Dgram(UnixDatagram),
    /// Unix stream socket: messages end with NUL, as syslog(3) sends them.
    Stream(UnixStream),
    /// UDP, connected to the receiver: one message per datagram.
    Udp(UdpSocket),
    /// TCP, messages end with LF (RFC 6587 non-transparent framing).
    Tcp(std::net::TcpStream),
    /// A TCP connect in progress.
    Connecting(Socket),
}

pub struct SyslogSink {
    addr: SyslogAddr,
    /// The resolved address of a network receiver (looked up at start and at each reopen, so
    /// a DNS lookup never stalls the loop later).
    resolved: Option<SocketAddr>,
    formatter: Formatter3164,
    conn: Option<Conn>,
    /// Framed messages not yet sent, oldest first.
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the front message already written to a stream connection.
    sent: usize,
    queued_bytes: usize,
}

impl SyslogSink {
    pub fn open(addr: SyslogAddr, facility: &str) -> Result<SyslogSink> {
        let facility: Facility = facility
            .parse()
            .map_err(|()| anyhow!("unknown syslog facility `{facility}`"))?;
        let remote = matches!(addr, SyslogAddr::Udp(_) | SyslogAddr::Tcp(_));
        let formatter = Formatter3164 {
            facility,
            // The local syslog daemon adds the host name itself; a remote one needs it.
            hostname: if remote { hostname() } else { None },
            process: "logsinkd".into(),
            pid: std::process::id(),
        };
        let mut sink = SyslogSink {
            resolved: resolve(&addr)?,
            addr,
            formatter,
            conn: None,
            queue: VecDeque::new(),
            sent: 0,
            queued_bytes: 0,
        };
        // Fail at start-up, where the admin sees it, if the receiver is not there at all.
        sink.conn = Some(match sink.connect()? {
            Conn::Connecting(socket) => {
                wait_connected(&socket, &sink.addr)?;
                Conn::Tcp(socket.into())
            }
            conn => conn,
        });
        Ok(sink)
    }

    /// Queues `<peer> <escaped line>`; a line too long for one message goes as several, each
    /// starting with the peer.
    pub fn record(&mut self, peer: &[u8], line: &[u8]) {
        let mut escaped = Vec::with_capacity(line.len());
        escape_into(&mut escaped, line);
        // Escaped text is printable ASCII, tab and valid UTF-8 by construction.
        let escaped = String::from_utf8_lossy(&escaped);
        let peer = String::from_utf8_lossy(peer);
        let room = MAX_TEXT.saturating_sub(peer.len() + 1).max(64);
        let mut rest = escaped.as_ref();
        loop {
            let mut cut = rest.len().min(room);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            self.push(&format!("{peer} {}", &rest[..cut]));
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
        }
    }

    fn push(&mut self, text: &str) {
        let mut frame = Vec::with_capacity(text.len() + 48);
        // Writing into a Vec cannot fail.
        let _ = self.formatter.format(&mut frame, Severity::LOG_INFO, text);
        if matches!(self.addr, SyslogAddr::Tcp(_)) {
            frame.push(b'\n');
        }
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        // A stream receiver that went away since the last flush has sent FIN; writing now
        // would succeed locally and the bytes be lost to its RST. Reconnect first instead.
        if self.sent == 0 && !self.queue.is_empty() && self.stream_closed_by_peer() {
            self.conn = None;
        }
        while let Some(frame) = self.queue.front() {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => {
                    let conn = self.connect().map_err(SinkError::Failed)?;
                    self.conn.insert(conn)
                }
            };
            // Ok(true): the front message is sent whole.
            let result = match conn {
                Conn::Connecting(socket) => match socket.take_error() {
                    Ok(None) if socket.peer_addr().is_ok() => {
                        let Some(Conn::Connecting(socket)) = self.conn.take() else {
                            unreachable!()
                        };
                        self.conn = Some(Conn::Tcp(socket.into()));
                        continue;
                    }
                    Ok(None) => Err(std::io::Error::from(ErrorKind::WouldBlock)),
                    Ok(Some(e)) | Err(e) => Err(e),
                },
                Conn::Dgram(sock) => sock.send(frame).map(|_| true),
                Conn::Udp(sock) => sock.send(frame).map(|_| true),
                Conn::Tcp(sock) => write_part(sock, frame, &mut self.sent),
                // On a unix stream a NUL ends each message, as syslog(3) does it.
                Conn::Stream(sock) if self.sent < frame.len() => {
                    write_part(sock, frame, &mut self.sent).map(|_| false)
                }
                Conn::Stream(sock) => sock.write(b"\0").map(|n| n == 1),
            };
            match result {
                Ok(true) => {
                    self.queued_bytes -= frame.len();
                    self.queue.pop_front();
                    self.sent = 0;
                }
                Ok(false) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The receiver is there but its queue is full: try again shortly.
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    return Err(SinkError::Busy(anyhow!(e).context(format!(
                        "sending to {}: the receiver takes no more for now",
                        self.addr
                    ))));
                }
                Err(e) => {
                    // Start the message again, whole, on the next connection.
                    self.conn = None;
                    self.sent = 0;
                    return Err(SinkError::Failed(
                        anyhow!(e).context(format!("sending to {}", self.addr)),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn backlog(&self) -> usize {
        self.queued_bytes
    }

    /// True if the stream connection's receiver closed it (recv peeks EOF or an error).
    fn stream_closed_by_peer(&self) -> bool {
        let Some(fd) = self
            .raw_fd()
            .filter(|_| matches!(self.conn, Some(Conn::Tcp(_) | Conn::Stream(_))))
        else {
            return false;
        };
        let mut byte = 0u8;
        // SAFETY: a valid fd and a one-byte buffer; MSG_PEEK leaves any data in place.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return n == 0;
        }
        let err = std::io::Error::last_os_error();
        !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
    }

    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(match self.conn.as_ref()? {
            Conn::Dgram(s) => s.as_raw_fd(),
            Conn::Stream(s) => s.as_raw_fd(),
            Conn::Udp(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Connecting(s) => s.as_raw_fd(),
        })
    }

    /// Looks the receiver up and connects anew; on failure the old connection stays in use.
    pub fn reopen(&mut self) -> Result<()> {
        let resolved = resolve(&self.addr)?;
        let old = std::mem::replace(&mut self.resolved, resolved);
        match self.connect() {
            Ok(conn) => {
                // A half-sent message is sent again whole on the new connection.
                self.sent = 0;
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => {
                self.resolved = old;
                Err(e)
            }
        }
    }

    fn connect(&self) -> Result<Conn> {
        let context = || format!("connecting to {}", self.addr);
        let unix =
            |backend: Result<syslog::Logger<LoggerBackend, ()>, syslog::Error>| -> Result<Conn> {
                let conn = match backend.map_err(|e| anyhow!("{e}"))?.backend {
                    LoggerBackend::Unix(sock) => Conn::Dgram(sock),
                    LoggerBackend::UnixStream(writer) => Conn::Stream(writer.into_parts().0),
                    _ => bail!("unexpected syslog backend"),
                };
                match &conn {
                    Conn::Dgram(s) => s.set_nonblocking(true)?,
                    Conn::Stream(s) => s.set_nonblocking(true)?,
                    _ => {}
                }
                Ok(conn)
            };
        match &self.addr {
            SyslogAddr::Local => unix(syslog::unix(())).with_context(context),
            SyslogAddr::Unix(path) => unix(syslog::unix_custom((), path)).with_context(context),
            SyslogAddr::Udp(_) => {
                let addr = self
                    .resolved
                    .ok_or_else(|| anyhow!("no address"))
                    .with_context(context)?;
                let local = if addr.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let backend = syslog::udp((), local, addr)
                    .map_err(|e| anyhow!("{e}"))
                    .with_context(context)?;
                let LoggerBackend::Udp(sock, _) = backend.backend else {
                    bail!("unexpected syslog backend")
                };
                // Connected, so a receiver that is gone shows up as ECONNREFUSED.
                sock.connect(addr).with_context(context)?;
                sock.set_nonblocking(true).with_context(context)?;
                Ok(Conn::Udp(sock))
            }
            SyslogAddr::Tcp(_) => {
                let addr = self
                    .resolved
                    .ok_or_else(|| anyhow!("no address"))
                    .with_context(context)?;
                let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
                    .with_context(context)?;
                socket.set_nonblocking(true).with_context(context)?;
                match socket.connect(&addr.into()) {
                    Ok(()) => Ok(Conn::Tcp(socket.into())),
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                        Ok(Conn::Connecting(socket))
                    }
                    Err(e) => Err(e).with_context(context),
                }
            }
        }
    }
}

/// Writes more of `frame` from `sent` on; true once all of it is written.
fn write_part(sock: &mut impl Write, frame: &[u8], sent: &mut usize) -> std::io::Result<bool> {
    *sent += sock.write(&frame[*sent..])?;
    Ok(*sent >= frame.len())
}

fn resolve(addr: &SyslogAddr) -> Result<Option<SocketAddr>> {
    match addr {
        SyslogAddr::Udp(hp) | SyslogAddr::Tcp(hp) => {
            let found = hp
                .to_socket_addrs()
                .with_context(|| format!("looking up {hp}"))?
                .next();
            found
                .map(Some)
                .ok_or_else(|| anyhow!("looking up {hp}: no address"))
        }
        _ => Ok(None),
    }
}

/// At start-up only: waits (at most 5 s) for a TCP connect to finish, so a receiver that is
/// not there fails the start with a clear error.
fn wait_connected(socket: &Socket, addr: &SyslogAddr) -> Result<()> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 5000) };
    if ready <= 0 {
        bail!("connecting to {addr}: timed out");
    }
    match socket.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(e).with_context(|| format!("connecting to {addr}")),
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    std::str::from_utf8(&buf[..end]).ok().map(str::to_string)
}
