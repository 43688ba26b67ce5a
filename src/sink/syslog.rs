//! Syslog output: every record becomes one message, in RFC 3164 (the default) or RFC 5424
//! (`syslog_format`), on TCP ended by LF or octet-counted (`syslog_framing`).
//!
//! A message that parsed as syslog (`parse = "syslog"`) is relayed as rsyslog forwards: with
//! its sender's facility, severity, timestamp, hostname, tag (app and pid) and, in RFC 5424,
//! msgid and structured data; its text escaped as in the `default` format. Any other line goes
//! as `<peer> <escaped line>`, tag `logsinkd`, severity `info`, the configured facility,
//! stamped at receipt (in RFC 3164 formatted by the `syslog` crate).
//!
//! Nothing here ever blocks the event loop, whatever the receiver does: every socket is
//! non-blocking from its creation, every connect and every send. Messages wait in a queue; a
//! receiver that cannot take more (`EAGAIN` on a send) wakes the loop through its socket's
//! writability; one that has no room for a connection (a unix stream listener whose backlog
//! is full refuses a non-blocking connect with `EAGAIN`) or whose kernel has no buffer
//! (`ENOBUFS`) is tried again on a short timer; one that fails is reconnected with back-off
//! by the event loop, which stops reading from clients while the queue is at its high-water
//! mark. Unix sockets are connected here, datagram first and stream if the receiver is a
//! stream socket (`EPROTOTYPE`), as syslog(3) does; TCP connects complete in the background.
//! Host names are looked up at start and, at each reopen, on a short-lived thread whose
//! answer the next flush picks up (the old address stays in use until then), so a slow
//! resolver never stalls the loop. Datagrams go whole or not at all; on a stream a message
//! may be cut by a broken connection, and is then sent again whole on the next one.

use std::io::{self, ErrorKind, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use syslog::{Facility, Formatter3164, LogFormat, Severity};

use super::queue::Queue;
use super::{SinkError, SyslogAddr};
use crate::config::Choice;
use crate::diag::{error, info, warning};
use crate::format::{escape_into, local_hostname, peer_host};
use crate::syslog_parse::{Message, Pri, rfc3339_timestamp};

/// Longest message text sent in one message. rsyslog's default `maxMessageSize` is 8 KiB
/// including the header and it truncates what is longer, so longer lines go as several
/// messages of this size rather than being cut short at the receiver.
pub const MAX_TEXT: usize = 7 * 1024;

/// The message format sent (`syslog_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyslogProtocol {
    /// `<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`, what syslog(3) and most devices send.
    #[default]
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
    Rfc5424,
}

impl Choice for SyslogProtocol {
    const WHAT: &'static str = "format";
    const CHOICES: &'static [(&'static str, SyslogProtocol)] = &[
        ("rfc3164", SyslogProtocol::Rfc3164),
        ("rfc5424", SyslogProtocol::Rfc5424),
    ];
}

impl std::fmt::Display for SyslogProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How messages are framed on a TCP output (`syslog_framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyslogFraming {
    /// Each message ends with LF (RFC 6587 non-transparent framing).
    #[default]
    Lines,
    /// `LEN SP MSG` (RFC 6587 octet counting).
    Octet,
}

impl Choice for SyslogFraming {
    const WHAT: &'static str = "framing";
    const CHOICES: &'static [(&'static str, SyslogFraming)] = &[
        ("lines", SyslogFraming::Lines),
        ("octet", SyslogFraming::Octet),
    ];
}

impl std::fmt::Display for SyslogFraming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How records are sent to a syslog output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogOptions {
    /// Of lines that did not parse as syslog (a name `syslog::Facility` knows).
    pub facility: String,
    pub protocol: SyslogProtocol,
    pub framing: SyslogFraming,
}

/// RFC 5424's longest HOSTNAME, APP-NAME, PROCID and MSGID: longer fields are cut to these.
const MAX_5424: [usize; 4] = [255, 48, 128, 32];

/// Where the local syslog socket may be, in the order syslog(3) and the `syslog` crate try.
const LOCAL_PATHS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// An open connection to the receiver.
enum Conn {
    /// Unix datagram socket (/dev/log and the like): one message per datagram.
    Dgram(UnixDatagram),
    /// Unix stream socket: messages end with NUL, as syslog(3) sends them.
    Stream(UnixStream),
    /// UDP, connected to the receiver: one message per datagram.
    Udp(UdpSocket),
    /// TCP, messages end with LF (RFC 6587 non-transparent framing).
    Tcp(TcpStream),
    /// A TCP connect in progress.
    Connecting(Socket),
}

/// A non-blocking unix socket connected to a local syslog receiver.
pub(crate) enum UnixConn {
    Dgram(UnixDatagram),
    Stream(UnixStream),
}

impl From<UnixConn> for Conn {
    fn from(conn: UnixConn) -> Conn {
        match conn {
            UnixConn::Dgram(s) => Conn::Dgram(s),
            UnixConn::Stream(s) => Conn::Stream(s),
        }
    }
}

/// Connects a non-blocking unix socket to the syslog receiver at `path`: a datagram socket,
/// or a stream socket if the receiver is one (the datagram connect fails with `EPROTOTYPE`).
/// Never blocks: a stream listener whose backlog is full makes a blocking connect wait until
/// it accepts, maybe forever, where this one fails at once with `WouldBlock` (`EAGAIN`).
pub(crate) fn connect_unix(path: &Path) -> io::Result<UnixConn> {
    let addr = SockAddr::unix(path)?;
    // Non-blocking from creation: a datagram connect does not wait, but the sends must not.
    let dgram = Socket::new(Domain::UNIX, Type::DGRAM.nonblocking(), None)?;
    match dgram.connect(&addr) {
        Ok(()) => return Ok(UnixConn::Dgram(dgram.into())),
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {}
        Err(e) => return Err(e),
    }
    let stream = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
    stream.connect(&addr)?;
    Ok(UnixConn::Stream(stream.into()))
}

/// Connects to the local syslog socket, the first of `LOCAL_PATHS` that exists.
pub(crate) fn connect_local() -> io::Result<UnixConn> {
    for path in LOCAL_PATHS {
        match connect_unix(Path::new(path)) {
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            other => return other,
        }
    }
    Err(io::Error::new(
        ErrorKind::NotFound,
        format!("no local syslog socket ({})", LOCAL_PATHS.join(", ")),
    ))
}

/// What to do after a send failed with an error.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterSendError {
    /// Interrupted: try again at once.
    Retry,
    /// The receiver's queue (or our socket's send buffer) is full: its socket becomes
    /// writable when there is room.
    WhenWritable,
    /// No buffer for the message (`ENOBUFS`: the kernel, or a network device queue, is out of
    /// room). A UDP socket always reports writable, so waiting for writability would wake the
    /// loop again and again at once: try again on the timer instead.
    AfterTimer,
    /// The connection is broken: reconnect with back-off.
    Reconnect,
}

pub(super) fn after_send_error(e: &io::Error) -> AfterSendError {
    match e.kind() {
        ErrorKind::Interrupted => AfterSendError::Retry,
        ErrorKind::WouldBlock => AfterSendError::WhenWritable,
        _ if e.raw_os_error() == Some(libc::ENOBUFS) => AfterSendError::AfterTimer,
        _ => AfterSendError::Reconnect,
    }
}

pub struct SyslogSink {
    addr: SyslogAddr,
    /// The resolved address of a network receiver: looked up at start; at a reopen a host
    /// name is looked up anew on a thread (`lookup`), and this one stays in use until the
    /// answer comes.
    resolved: Option<SocketAddr>,
    /// The answer of a lookup started by `reopen`, picked up by the next `flush`.
    lookup: Option<Receiver<Result<SocketAddr>>>,
    formatter: Formatter3164,
    protocol: SyslogProtocol,
    framing: SyslogFraming,
    /// A message's header, built here before it is queued.
    header: Vec<u8>,
    conn: Option<Conn>,
    /// Framed messages not yet sent, oldest first.
    queue: Queue,
    /// Bytes of the front message already written to a stream connection.
    sent: usize,
}

impl SyslogSink {
    pub fn open(addr: SyslogAddr, options: &SyslogOptions) -> Result<SyslogSink> {
        let facility: Facility = options
            .facility
            .parse()
            .map_err(|()| anyhow!("unknown syslog facility `{}`", options.facility))?;
        let remote = matches!(addr, SyslogAddr::Udp(_) | SyslogAddr::Tcp(_));
        let formatter = Formatter3164 {
            facility,
            // The local syslog daemon adds the host name itself; a remote one needs it.
            hostname: remote.then(|| local_hostname().to_string()),
            process: "logsinkd".into(),
            pid: std::process::id(),
        };
        let resolved = match &addr {
            // At start-up, before the event loop runs, a lookup may take its time.
            SyslogAddr::Udp(hp) | SyslogAddr::Tcp(hp) => Some(lookup(hp)?),
            _ => None,
        };
        let mut sink = SyslogSink {
            resolved,
            lookup: None,
            addr,
            formatter,
            protocol: options.protocol,
            framing: options.framing,
            header: Vec::new(),
            conn: None,
            queue: Queue::default(),
            sent: 0,
        };
        // Fail at start-up, where the admin sees it, if the receiver is not there at all.
        sink.conn = match sink.connect() {
            Ok(Conn::Connecting(socket)) => {
                wait_connected(&socket, &sink.addr)?;
                Some(Conn::Tcp(socket.into()))
            }
            Ok(conn) => Some(conn),
            // There, but with no room for a connection yet: the first flush tries again.
            Err(SinkError::BusyRetry(_)) => None,
            Err(e) => return Err(e.into_error()),
        };
        Ok(sink)
    }

    /// Queues `<peer> <escaped line>`, received at `time`; a line too long for one message
    /// goes as several, each starting with the peer.
    pub fn record(&mut self, time: &[u8], peer: &[u8], line: &[u8]) {
        let mut escaped = Vec::with_capacity(line.len());
        escape_into(&mut escaped, line);
        // Escaped text is printable ASCII, tab and valid UTF-8 by construction.
        let escaped = String::from_utf8_lossy(&escaped);
        let peer = String::from_utf8_lossy(peer);
        let room = MAX_TEXT.saturating_sub(peer.len() + 1).max(64);
        if self.protocol == SyslogProtocol::Rfc5424 {
            // logsinkd's own header, the same for every piece.
            let pri = Pri {
                facility: (self.formatter.facility as u8) >> 3,
                severity: Severity::LOG_INFO as u8,
            };
            let host = self.formatter.hostname.as_deref().unwrap_or("-");
            let pid = self.formatter.pid.to_string();
            self.header.clear();
            header5424(
                &mut self.header,
                pri,
                time,
                host.as_bytes(),
                b"logsinkd",
                pid.as_bytes(),
                None,
                None,
            );
        }
        for piece in pieces(&escaped, room) {
            let text = format!("{peer} {piece}");
            match self.protocol {
                SyslogProtocol::Rfc3164 => self.push(|frames, formatter| {
                    // Writing into a Vec cannot fail.
                    let _ = formatter.format(frames, Severity::LOG_INFO, text);
                }),
                SyslogProtocol::Rfc5424 => {
                    let header = std::mem::take(&mut self.header);
                    self.push(|frames, _| {
                        frames.extend_from_slice(&header);
                        frames.push(b' ');
                        frames.extend_from_slice(text.as_bytes());
                    });
                    self.header = header;
                }
            }
        }
    }

    /// Queues a message that parsed as syslog, keeping its sender's fields (see the module
    /// comment); its text, escaped, goes in as many messages as it needs, each with the
    /// same header.
    pub fn record_parsed(&mut self, time: &[u8], peer: &[u8], msg: &Message<'_>) {
        let pri = msg.pri.unwrap_or(Pri {
            facility: (self.formatter.facility as u8) >> 3,
            // What rsyslog assumes of a message without a PRI: notice.
            severity: Severity::LOG_NOTICE as u8,
        });
        let host = msg.hostname.unwrap_or_else(|| peer_host(peer));
        let mut header = std::mem::take(&mut self.header);
        header.clear();
        let mut stamp = Vec::with_capacity(40);
        if !rfc3339_timestamp(msg, crate::format::receipt_time(time), &mut stamp) {
            stamp.extend_from_slice(time);
        }
        match self.protocol {
            SyslogProtocol::Rfc3164 => {
                let _ = write!(header, "<{}>", pri.value());
                bsd_time(&stamp, &mut header);
                header.push(b' ');
                escape_into(&mut header, host);
                if let Some(app) = msg.app {
                    header.push(b' ');
                    escape_into(&mut header, app);
                    if let Some(pid) = msg.procid {
                        header.push(b'[');
                        escape_into(&mut header, pid);
                        header.extend_from_slice(b"]");
                    }
                    header.push(b':');
                }
            }
            SyslogProtocol::Rfc5424 => {
                header5424(
                    &mut header,
                    pri,
                    &stamp,
                    host,
                    msg.app.unwrap_or(b"-"),
                    msg.procid.unwrap_or(b"-"),
                    msg.msgid,
                    msg.sd,
                );
            }
        }
        let mut escaped = Vec::with_capacity(msg.msg.len());
        escape_into(&mut escaped, msg.msg_without_bom());
        let escaped = String::from_utf8_lossy(&escaped);
        let room = MAX_TEXT.saturating_sub(header.len()).max(64);
        for piece in pieces(&escaped, room) {
            self.push(|frames, _| {
                frames.extend_from_slice(&header);
                if !piece.is_empty() {
                    frames.push(b' ');
                    frames.extend_from_slice(piece.as_bytes());
                }
            });
        }
        self.header = header;
    }

    /// Queues the message `write` appends, framed for the connection.
    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>, &Formatter3164)) {
        let (formatter, tcp) = (&self.formatter, matches!(self.addr, SyslogAddr::Tcp(_)));
        let framing = self.framing;
        self.queue.push(|frames| {
            let start = frames.len();
            write(frames, formatter);
            if tcp {
                match framing {
                    SyslogFraming::Lines => frames.push(b'\n'),
                    SyslogFraming::Octet => {
                        let count = format!("{} ", frames.len() - start);
                        frames.splice(start..start, count.into_bytes());
                    }
                }
            }
        });
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.take_lookup();
        // A stream receiver that went away since the last flush has sent FIN; writing now
        // would succeed locally and the bytes be lost to its RST. Reconnect first instead.
        if self.sent == 0 && !self.queue.is_empty() && self.stream_closed_by_peer() {
            self.conn = None;
        }
        let result = self.send_queued();
        self.queue.compact();
        result
    }

    /// Sends queued messages, oldest first, until the queue is empty or the receiver takes no
    /// more.
    fn send_queued(&mut self) -> Result<(), SinkError> {
        while let Some(frame) = self.queue.front() {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => {
                    let conn = self.connect()?;
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
                    Ok(None) => Err(io::Error::from(ErrorKind::WouldBlock)),
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
            let e = match result {
                Ok(true) => {
                    self.queue.pop();
                    self.sent = 0;
                    continue;
                }
                Ok(false) => continue,
                Err(e) => e,
            };
            let next = after_send_error(&e);
            let busy = format!(
                "sending to {}: the receiver takes no more for now",
                self.addr
            );
            match next {
                AfterSendError::Retry => {}
                AfterSendError::WhenWritable => {
                    return Err(SinkError::Busy(anyhow!(e).context(busy)));
                }
                AfterSendError::AfterTimer => {
                    return Err(SinkError::BusyRetry(anyhow!(e).context(busy)));
                }
                AfterSendError::Reconnect => {
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
        self.queue.bytes()
    }

    /// True if the stream connection's receiver closed it (recv peeks EOF or an error).
    fn stream_closed_by_peer(&self) -> bool {
        let socket = match &self.conn {
            Some(Conn::Tcp(s)) => SockRef::from(s),
            Some(Conn::Stream(s)) => SockRef::from(s),
            _ => return false,
        };
        let mut byte = [MaybeUninit::uninit()];
        // MSG_PEEK leaves any data in place; MSG_DONTWAIT although the socket is non-blocking
        // already, as a guard.
        match socket.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        }
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

    /// Connects anew (to the address in use; a host name is looked up anew in the
    /// background, see `start_lookup`). If that fails, also when the receiver has no room
    /// for a connection now, the old connection stays in use.
    pub fn reopen(&mut self) -> Result<()> {
        // An answer that came while nothing was sent is taken first, so a new lookup starts.
        self.take_lookup();
        self.start_lookup();
        let conn = self.connect().map_err(SinkError::into_error)?;
        // A half-sent message is sent again whole on the new connection.
        self.sent = 0;
        self.conn = Some(conn);
        Ok(())
    }

    /// Starts looking the receiver's host name up on its own thread: the resolver may take
    /// seconds (a DNS server that does not answer), which the event loop must not wait for.
    /// An address literal needs no lookup; a lookup still running answers this reopen too.
    fn start_lookup(&mut self) {
        let (SyslogAddr::Udp(hp) | SyslogAddr::Tcp(hp)) = &self.addr else {
            return;
        };
        if self.lookup.is_some() || hp.parse::<SocketAddr>().is_ok() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let host_port = hp.clone();
        let spawned = std::thread::Builder::new()
            .name("lookup".into())
            .spawn(move || {
                // The receiver may be gone (the daemon stopped); nobody to tell then.
                let _ = tx.send(lookup(&host_port));
            });
        match spawned {
            Ok(_) => self.lookup = Some(rx),
            Err(e) => warning!("looking up {hp}: cannot start a thread ({e}); address unchanged"),
        }
    }

    /// Takes the answer of a finished lookup: a new address is used from the next message on
    /// (never in the middle of one); a failed lookup leaves the old one in use.
    fn take_lookup(&mut self) {
        if self.sent > 0 {
            return;
        }
        let Some(rx) = &self.lookup else { return };
        let answer = match rx.try_recv() {
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err(anyhow!("the lookup thread ended early")),
            Ok(answer) => answer,
        };
        self.lookup = None;
        let old = self.resolved.map_or_else(String::new, |a| a.to_string());
        match answer {
            Ok(addr) if Some(addr) != self.resolved => {
                info!("{} is now at {addr} (was {old}): reconnecting", self.addr);
                self.resolved = Some(addr);
                self.conn = None;
            }
            Ok(_) => {}
            Err(e) => error!("{e:#}; still sending to {old}"),
        }
    }

    /// Starts a connection; never blocks (a TCP connect completes in the background). A unix
    /// stream listener with a full backlog is `BusyRetry`: there is no socket to watch, so the
    /// event loop tries again on its timer.
    fn connect(&self) -> Result<Conn, SinkError> {
        let conn = match &self.addr {
            SyslogAddr::Local => connect_local().map(Conn::from),
            SyslogAddr::Unix(path) => connect_unix(path).map(Conn::from),
            SyslogAddr::Udp(_) | SyslogAddr::Tcp(_) => {
                let Some(addr) = self.resolved else {
                    return Err(SinkError::Failed(anyhow!(
                        "connecting to {}: no address",
                        self.addr
                    )));
                };
                if matches!(self.addr, SyslogAddr::Udp(_)) {
                    connect_udp(addr).map(Conn::Udp)
                } else {
                    connect_tcp(addr)
                }
            }
        };
        conn.map_err(|e| {
            if e.kind() == ErrorKind::WouldBlock {
                SinkError::BusyRetry(anyhow!(e).context(format!(
                    "connecting to {}: the receiver takes no connection for now",
                    self.addr
                )))
            } else {
                SinkError::Failed(anyhow!(e).context(format!("connecting to {}", self.addr)))
            }
        })
    }
}

/// A UDP socket connected to `addr`, so a receiver that is gone shows up as `ECONNREFUSED`.
fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM.nonblocking(), None)?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// Starts a non-blocking TCP connect to `addr`.
fn connect_tcp(addr: SocketAddr) -> io::Result<Conn> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(Conn::Tcp(socket.into())),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(Conn::Connecting(socket)),
        Err(e) => Err(e),
    }
}

/// Cuts escaped text into pieces of at most `room` bytes (`room` >= 4, the longest escape),
/// each made of whole escapes (`\\`, `\xHH`) and whole UTF-8 characters, so each piece
/// reads on its own and the pieces, put together, are the whole text.
fn pieces(escaped: &str, room: usize) -> impl Iterator<Item = &str> {
    let mut rest = escaped;
    // An empty line is a record too: it goes as one message with empty text.
    let mut first = true;
    std::iter::from_fn(move || {
        if rest.is_empty() && !std::mem::take(&mut first) {
            return None;
        }
        first = false;
        let bytes = rest.as_bytes();
        let mut cut = 0;
        while cut < bytes.len() {
            let next = cut + escape_len(&bytes[cut..]);
            if next > room {
                break;
            }
            cut = next;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// Length of the escape or character that `s` (escaped text, never empty) starts with.
fn escape_len(s: &[u8]) -> usize {
    let n = match s[0] {
        b'\\' if s.get(1) == Some(&b'x') => 4,
        b'\\' => 2,
        0..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    n.min(s.len())
}

/// Writes more of `frame` from `sent` on; true once all of it is written.
fn write_part(sock: &mut impl Write, frame: &[u8], sent: &mut usize) -> io::Result<bool> {
    *sent += sock.write(&frame[*sent..])?;
    Ok(*sent >= frame.len())
}

/// Looks `host:port` up (the first address found).
fn lookup(host_port: &str) -> Result<SocketAddr> {
    host_port
        .to_socket_addrs()
        .with_context(|| format!("looking up {host_port}"))?
        .next()
        .ok_or_else(|| anyhow!("looking up {host_port}: no address"))
}

/// At start-up only: waits (at most 5 s) for a TCP connect to finish, so a receiver that is
/// not there fails the start with a clear error.
fn wait_connected(socket: &Socket, addr: &SyslogAddr) -> Result<()> {
    use std::os::fd::AsFd;
    if !super::wait_writable(socket.as_fd(), Duration::from_secs(5)) {
        bail!("connecting to {addr}: timed out");
    }
    match socket.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(e).with_context(|| format!("connecting to {addr}")),
    }
}

/// Appends an RFC 5424 header, `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD`: each
/// field escaped, cut to RFC 5424's length, `-` when absent or empty.
#[allow(clippy::too_many_arguments)]
fn header5424(
    out: &mut Vec<u8>,
    pri: Pri,
    stamp: &[u8],
    host: &[u8],
    app: &[u8],
    procid: &[u8],
    msgid: Option<&[u8]>,
    sd: Option<&[u8]>,
) {
    let _ = write!(out, "<{}>1 ", pri.value());
    out.extend_from_slice(stamp);
    for (field, max) in [host, app, procid, msgid.unwrap_or(b"-")]
        .into_iter()
        .zip(MAX_5424)
    {
        out.push(b' ');
        let start = out.len();
        escape_into(out, field);
        // Escapes are ASCII; a cut inside a character would still be invalid UTF-8, so cut
        // back to a character boundary.
        let mut end = out.len().min(start + max);
        while end > start && end < out.len() && (out[end] & 0xc0) == 0x80 {
            end -= 1;
        }
        out.truncate(end);
        if out.len() == start {
            out.push(b'-');
        }
    }
    out.push(b' ');
    out.extend_from_slice(sd.unwrap_or(b"-"));
}

/// Appends the RFC 3339 time `stamp` (`2026-12-01T16:20:01.123+01:00`) as a BSD time
/// (`Dec  1 16:20:01`): its wall-clock time, as RFC 3164 has no zone or fraction.
fn bsd_time(stamp: &[u8], out: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let field = |at: usize, len: usize| -> Option<usize> {
        std::str::from_utf8(stamp.get(at..at + len)?)
            .ok()?
            .parse()
            .ok()
    };
    let month = field(5, 2).and_then(|m| MONTHS.get(m.checked_sub(1)?));
    match (month, field(8, 2), stamp.get(11..19)) {
        (Some(month), Some(day), Some(clock)) => {
            let _ = write!(out, "{month} {day:>2} ");
            out.extend_from_slice(clock);
        }
        // Not from the parser or the clock; never happens, but a header stays a header.
        _ => out.extend_from_slice(b"Jan  1 00:00:00"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    /// Decodes escaped text (the inverse of `escape_into`); `None` if it ends inside an
    /// escape, as a piece cut in the wrong place would.
    fn unescape(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = text.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b != b'\\' {
                out.push(b);
                rest = tail;
            } else if tail.first() == Some(&b'\\') {
                out.push(b'\\');
                rest = &tail[1..];
            } else if tail.first() == Some(&b'x') && tail.len() >= 3 {
                out.push(u8::from_str_radix(std::str::from_utf8(&tail[1..3]).ok()?, 16).ok()?);
                rest = &tail[3..];
            } else {
                return None;
            }
        }
        Some(out)
    }

    proptest::proptest! {
        /// Each piece fits, is not empty, decodes on its own (no escape or UTF-8 character is
        /// cut), and the pieces put together are the escaped line: nothing lost or added.
        #[test]
        fn pieces_cut_between_escapes(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u8::ANY.prop_map(|b| vec![b]),
                    proptest::sample::select(vec!["\\", "\x1b", "a", "\u{e9}", "\u{20ac}", "\u{1f600}", "\u{85}"])
                        .prop_map(|s| s.as_bytes().to_vec()),
                ],
                0..300,
            ),
            room in 4usize..40,
        ) {
            let bytes = parts.concat();
            let mut escaped = Vec::new();
            escape_into(&mut escaped, &bytes);
            let escaped = String::from_utf8(escaped).unwrap();
            let mut joined = String::new();
            let mut decoded = Vec::new();
            for piece in pieces(&escaped, room) {
                proptest::prop_assert!(
                    (!piece.is_empty() || escaped.is_empty()) && piece.len() <= room,
                    "{piece:?}"
                );
                let part = unescape(piece);
                proptest::prop_assert!(part.is_some(), "cut inside an escape: {piece:?}");
                decoded.extend(part.unwrap());
                joined.push_str(piece);
            }
            proptest::prop_assert_eq!(joined, escaped);
            proptest::prop_assert_eq!(decoded, bytes);
        }
    }

    /// A piece never ends in the middle of `\x1b`, `\\` or a UTF-8 character, even where
    /// the size limit falls there.
    #[test]
    fn pieces_keep_escapes_whole() {
        let cut: Vec<&str> = pieces("ab\\x1b[31m", 4).collect();
        assert_eq!(cut, ["ab", "\\x1b", "[31m"]);
        let cut: Vec<&str> = pieces("a\\\\b", 2).collect();
        assert_eq!(cut, ["a", "\\\\", "b"]);
        let cut: Vec<&str> = pieces("a\u{20ac}", 3).collect();
        assert_eq!(cut, ["a", "\u{20ac}"]);
        assert_eq!(pieces("", 4).collect::<Vec<_>>(), [""]);
    }

    /// ENOBUFS is retried on the timer, never by waiting for writability: a UDP socket is
    /// always writable, so that would wake the loop at once, over and over. (Loopback cannot
    /// be made to return ENOBUFS, so this decision is tested here rather than end to end.)
    #[test]
    fn enobufs_waits_for_the_timer_not_writability() {
        let os = |code| io::Error::from_raw_os_error(code);
        assert_eq!(
            after_send_error(&os(libc::ENOBUFS)),
            AfterSendError::AfterTimer
        );
        assert_eq!(
            after_send_error(&os(libc::EAGAIN)),
            AfterSendError::WhenWritable
        );
        assert_eq!(after_send_error(&os(libc::EINTR)), AfterSendError::Retry);
        assert_eq!(
            after_send_error(&os(libc::ECONNREFUSED)),
            AfterSendError::Reconnect
        );
        assert_eq!(
            after_send_error(&os(libc::EPIPE)),
            AfterSendError::Reconnect
        );
    }

    /// The queued messages of `sink`, each as text.
    fn queued(sink: &SyslogSink) -> Vec<String> {
        sink.queue
            .messages()
            .map(|frame| String::from_utf8_lossy(frame).into_owned())
            .collect()
    }

    /// A parsed message relays with its sender's priority, time, host and tag: RFC 5424
    /// octet-counted, or RFC 3164 ended by LF; its text escaped, the header on every piece.
    #[test]
    fn relays_keep_the_senders_fields() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SyslogAddr::Tcp(listener.local_addr().unwrap().to_string());
        let options = |protocol, framing| SyslogOptions {
            facility: "user".into(),
            protocol,
            framing,
        };
        let time = b"2026-12-01T16:20:01.123456Z";
        let bsd = b"<13>Dec  1 16:19:59 web-3 sshd[7]: bye\x07".as_slice();
        let rfc5424 =
            b"<165>1 2026-12-01T17:20:01+01:00 web-3 app 42 ID7 [a@1 k=\"v\"] hi".as_slice();
        let parsed = |line| crate::syslog_parse::parse(line).unwrap();

        let mut sink = SyslogSink::open(
            addr.clone(),
            &options(SyslogProtocol::Rfc5424, SyslogFraming::Octet),
        )
        .unwrap();
        sink.record_parsed(time, b"192.0.2.7:5", &parsed(bsd));
        sink.record_parsed(time, b"192.0.2.7:5", &parsed(rfc5424));
        let body = "<13>1 2026-12-01T16:19:59+00:00 web-3 sshd 7 - - bye\\x07";
        let second = "<165>1 2026-12-01T17:20:01+01:00 web-3 app 42 ID7 [a@1 k=\"v\"] hi";
        assert_eq!(
            queued(&sink),
            [
                format!("{} {body}", body.len()),
                format!("{} {second}", second.len())
            ]
        );

        let mut sink = SyslogSink::open(
            addr.clone(),
            &options(SyslogProtocol::Rfc3164, SyslogFraming::Lines),
        )
        .unwrap();
        sink.record_parsed(time, b"192.0.2.7:5", &parsed(rfc5424));
        let long = [
            b"<14>Dec  1 16:19:59 web-3 app: ".as_slice(),
            &[b'x'; MAX_TEXT + 10],
        ]
        .concat();
        sink.record_parsed(time, b"192.0.2.7:5", &parsed(&long));
        let got = queued(&sink);
        assert_eq!(got[0], "<165>Dec  1 17:20:01 web-3 app[42]: hi\n");
        assert_eq!(got.len(), 3, "a long text in two messages");
        assert!(got[1].starts_with("<14>Dec  1 16:19:59 web-3 app: xxx"));
        assert!(got[2].starts_with("<14>Dec  1 16:19:59 web-3 app: xxx"));

        // A line that did not parse: as before, in RFC 5424 with logsinkd's own header.
        let mut sink = SyslogSink::open(
            addr,
            &options(SyslogProtocol::Rfc5424, SyslogFraming::Lines),
        )
        .unwrap();
        sink.record(time, b"192.0.2.7:5", b"plain");
        let got = queued(&sink);
        let pid = std::process::id();
        let host = local_hostname();
        assert_eq!(
            got[0],
            format!(
                "<14>1 2026-12-01T16:20:01.123456Z {host} logsinkd {pid} - - 192.0.2.7:5 plain\n"
            )
        );
    }

    /// RFC 3339 times become BSD ones, their wall-clock time kept.
    #[test]
    fn bsd_times() {
        let bsd = |stamp: &[u8]| {
            let mut out = Vec::new();
            bsd_time(stamp, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(bsd(b"2026-12-01T17:20:01.5+01:00"), "Dec  1 17:20:01");
        assert_eq!(bsd(b"2026-01-21T07:02:03Z"), "Jan 21 07:02:03");
    }
}
