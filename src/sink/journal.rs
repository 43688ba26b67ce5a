//! Journal output (`journal`, `journal:/path/to/socket`): every record becomes one entry sent to
//! journald's native socket, in the protocol sd_journal_sendv(3) speaks (systemd's "Native
//! Journal Protocol"): one datagram per entry, each field `NAME=value\n`, or, where the value
//! holds control bytes, `NAME\n`, its length as a 64-bit little-endian number, the value and
//! `\n`, so any byte goes through as it is (an LF must go so; the others could, but this way
//! no byte is ever taken for anything but data). An entry too big for one datagram
//! (`EMSGSIZE`) goes as sd_journal_sendv sends it: written to a memfd, sealed, and the memfd
//! passed with `SCM_RIGHTS` in an empty datagram.
//!
//! Fields: `MESSAGE` (the line, or a parsed message's text), `PRIORITY`, `SYSLOG_FACILITY`
//! (the sender's when the line parsed as syslog, else `info` and `syslog_facility`),
//! `SYSLOG_IDENTIFIER` (the sender's tag or app name, else `logsinkd`), `SYSLOG_HOSTNAME` and
//! `SYSLOG_TIMESTAMP` (as the sender wrote them, when it did), `LOGSINKD_PEER` (the peer as in
//! every record) and `LOGSINKD_LISTENER` (the listener it came in on, as `listening on` names
//! it). journald adds its own trusted fields and its receipt time.
//!
//! Sending is the syslog unix-datagram path (`connect_unix`, `after_send_error`): the socket is
//! non-blocking; a full journald queue (`EAGAIN`) waits for the socket's writability, a
//! journald that is gone (`ECONNREFUSED`, `ENOENT`) is reconnected with back-off by the event
//! loop; entries wait in order in the queue meanwhile.

use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use socket2::SockRef;
use syslog::{Facility, Severity};

use super::queue::Queue;
use super::syslog::{AfterSendError, after_send_error};
use super::{SinkError, UnixConn, connect_unix};
use crate::framing::run_lines;
use crate::syslog_parse::Message;

/// journald's native socket.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// Send buffer asked for, as sd_journal does (8 MiB; the kernel caps it at
/// net.core.wmem_max): it bounds the largest datagram and how much waits in the kernel before
/// a send would block.
const SNDBUF: usize = 8 << 20;

/// The identifier of records that carry none of their own.
const IDENTIFIER: &[u8] = b"logsinkd";

pub struct JournalSink {
    /// The socket journald listens on.
    path: PathBuf,
    /// The output as named in messages: `journal`, `journal:/path`.
    name: String,
    /// `SYSLOG_FACILITY` of records that did not parse as syslog (`syslog_facility`).
    facility: u8,
    /// The listener the records queued next came in on (`set_listener`).
    listener: Arc<str>,
    conn: Option<UnixDatagram>,
    /// Encoded entries not yet sent, oldest first.
    queue: Queue,
}

impl JournalSink {
    /// Connects to the journal at `path` (`None`: journald's own socket); fails at start-up,
    /// naming it, if nothing listens there. `facility` is that of records without their own.
    pub fn open(path: Option<&Path>, facility: &str) -> Result<JournalSink> {
        let facility: Facility = facility
            .parse()
            .map_err(|()| anyhow!("unknown syslog facility `{facility}`"))?;
        let (path, name) = match path {
            Some(path) => (path.to_path_buf(), format!("journal:{}", path.display())),
            None => (PathBuf::from(DEFAULT_SOCKET), "journal".to_string()),
        };
        let mut sink = JournalSink {
            path,
            name,
            facility: (facility as u8) >> 3,
            listener: Arc::from(""),
            conn: None,
            queue: Queue::default(),
        };
        sink.conn = Some(sink.connect().map_err(SinkError::into_error)?);
        Ok(sink)
    }

    /// The records queued from now on came in on `listener`.
    pub fn set_listener(&mut self, listener: &Arc<str>) {
        if !Arc::ptr_eq(&self.listener, listener) {
            self.listener = Arc::clone(listener);
        }
    }

    /// Queues a line that did not parse as syslog (or was not scanned): `info`, the
    /// configured facility, identifier `logsinkd`.
    pub fn record(&mut self, peer: &[u8], line: &[u8]) {
        let facility = self.facility;
        let listener = &self.listener;
        self.queue.push(|entry| {
            put_field(entry, "MESSAGE", line);
            put_number(entry, "PRIORITY", Severity::LOG_INFO as u8);
            put_number(entry, "SYSLOG_FACILITY", facility);
            put_field(entry, "SYSLOG_IDENTIFIER", IDENTIFIER);
            put_field(entry, "LOGSINKD_PEER", peer);
            put_field(entry, "LOGSINKD_LISTENER", listener.as_bytes());
        });
    }

    /// Queues whole lines (each ends in LF), one entry each.
    pub fn record_lines(&mut self, peer: &[u8], lines: &[u8]) {
        for line in run_lines(lines) {
            self.record(peer, line);
        }
    }

    /// Queues a message that parsed as syslog with its sender's fields. Without a PRI it is
    /// `notice` in the configured facility, as the syslog output (and rsyslog) take it.
    pub fn record_parsed(&mut self, peer: &[u8], msg: &Message<'_>) {
        let (facility, severity) = match msg.pri {
            Some(pri) => (pri.facility, pri.severity),
            None => (self.facility, Severity::LOG_NOTICE as u8),
        };
        let identifier = msg.app.filter(|app| !app.is_empty()).unwrap_or(IDENTIFIER);
        let listener = &self.listener;
        self.queue.push(|entry| {
            put_field(entry, "MESSAGE", msg.msg_without_bom());
            put_number(entry, "PRIORITY", severity);
            put_number(entry, "SYSLOG_FACILITY", facility);
            put_field(entry, "SYSLOG_IDENTIFIER", identifier);
            if let Some(host) = msg.hostname {
                put_field(entry, "SYSLOG_HOSTNAME", host);
            }
            if let Some(stamp) = msg.timestamp {
                put_field(entry, "SYSLOG_TIMESTAMP", stamp);
            }
            put_field(entry, "LOGSINKD_PEER", peer);
            put_field(entry, "LOGSINKD_LISTENER", listener.as_bytes());
        });
    }

    /// Sends queued entries, oldest first, until the queue is empty or journald takes no more.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        let result = self.send_queued();
        self.queue.compact();
        result
    }

    fn send_queued(&mut self) -> Result<(), SinkError> {
        while let Some(entry) = self.queue.front() {
            let socket = match &self.conn {
                Some(socket) => socket,
                None => {
                    let socket = self.connect()?;
                    self.conn.insert(socket)
                }
            };
            let sent = match socket.send(entry) {
                Ok(_) => Ok(()),
                // Bigger than a datagram may be (the send buffer, net.core.wmem_max).
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => send_memfd(socket, entry),
                Err(e) => Err(e),
            };
            let e = match sent {
                Ok(()) => {
                    self.queue.pop();
                    continue;
                }
                Err(e) => e,
            };
            let busy = || format!("sending to {}: journald takes no more for now", self.name);
            match after_send_error(&e) {
                AfterSendError::Retry => {}
                AfterSendError::WhenWritable => {
                    return Err(SinkError::Busy(anyhow!(e).context(busy())));
                }
                AfterSendError::AfterTimer => {
                    return Err(SinkError::BusyRetry(anyhow!(e).context(busy())));
                }
                AfterSendError::Reconnect => {
                    self.conn = None;
                    return Err(SinkError::Failed(
                        anyhow!(e).context(format!("sending to {}", self.name)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Bytes queued but not yet sent.
    pub fn backlog(&self) -> usize {
        self.queue.bytes()
    }

    /// Connects anew (SIGHUP: journald may have been restarted); the old connection stays in
    /// use if that fails.
    pub fn reopen(&mut self) -> Result<()> {
        let socket = self.connect().map_err(SinkError::into_error)?;
        self.conn = Some(socket);
        Ok(())
    }

    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.conn.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// A non-blocking datagram socket connected to the journal. A stream socket there is not
    /// journald's native socket: refused, naming it.
    fn connect(&self) -> Result<UnixDatagram, SinkError> {
        let failed =
            |e: anyhow::Error| SinkError::Failed(e.context(format!("connecting to {}", self.name)));
        match connect_unix(&self.path) {
            Ok(UnixConn::Dgram(socket)) => {
                // A smaller buffer only means smaller datagrams (the rest go by memfd).
                let _ = SockRef::from(&socket).set_send_buffer_size(SNDBUF);
                Ok(socket)
            }
            Ok(UnixConn::Stream(_)) => Err(failed(anyhow!(
                "{} is a stream socket; the journal's native socket takes datagrams",
                self.path.display()
            ))),
            Err(e) => Err(failed(e.into())),
        }
    }
}

/// Appends one field: `NAME=value\n`, or where the value holds a control byte (other than
/// TAB) `NAME\n`, the value's length (64 bits, little-endian), the value and `\n`.
pub fn put_field(entry: &mut Vec<u8>, name: &str, value: &[u8]) {
    entry.extend_from_slice(name.as_bytes());
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        entry.push(b'\n');
        entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        entry.push(b'=');
    }
    entry.extend_from_slice(value);
    entry.push(b'\n');
}

/// Appends `NAME=number\n`.
fn put_number(entry: &mut Vec<u8>, name: &str, number: u8) {
    // Writing into a Vec cannot fail.
    let _ = writeln!(entry, "{name}={number}");
}

/// Sends `entry` as sd_journal_sendv does when it is too big for a datagram: in a memfd,
/// sealed against any change (journald maps it only then), passed with `SCM_RIGHTS` in an
/// empty datagram. The memfd is closed here; journald holds its own copy of the descriptor.
fn send_memfd(socket: &UnixDatagram, entry: &[u8]) -> io::Result<()> {
    let fd = memfd_create(
        "logsinkd-journal",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.write_all(entry)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    let fds = [file.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(socket, &[], &mut control, SendFlags::DONTWAIT)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes an entry in the native protocol into its fields, in order; `None` if it is
    /// not well formed (a field without `=` or `\n`, a length past the end, no final `\n`).
    pub fn decode(mut entry: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
        let mut fields = Vec::new();
        while !entry.is_empty() {
            let end = entry.iter().position(|&b| b == b'\n')?;
            let line = &entry[..end];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                let name = String::from_utf8(line[..eq].to_vec()).ok()?;
                fields.push((name, line[eq + 1..].to_vec()));
                entry = &entry[end + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).ok()?;
                let rest = &entry[end + 1..];
                let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
                let value = rest.get(8..8 + len)?;
                if rest.get(8 + len) != Some(&b'\n') {
                    return None;
                }
                fields.push((name, value.to_vec()));
                entry = &rest[8 + len + 1..];
            }
        }
        Some(fields)
    }

    fn field(value: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        put_field(&mut entry, "MESSAGE", value);
        entry
    }

    /// Printable text (TAB too) goes as `NAME=value`; a value with an LF, a NUL, another
    /// control byte or DEL as `NAME\n` + little-endian length + bytes + `\n`.
    #[test]
    fn fields_are_text_or_binary_safe() {
        assert_eq!(
            field(b"hello\tw\xc3\xb6rld"),
            b"MESSAGE=hello\tw\xc3\xb6rld\n"
        );
        assert_eq!(field(b""), b"MESSAGE=\n");
        assert_eq!(
            field(b"a\nb"),
            b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n".as_slice()
        );
        for control in [0u8, 0x1b, b'\r', 0x7f] {
            let value = [b'x', control, b'y'];
            let mut expected = b"MESSAGE\n\x03\0\0\0\0\0\0\0".to_vec();
            expected.extend_from_slice(&value);
            expected.push(b'\n');
            assert_eq!(field(&value), expected, "{control:#x}");
        }
    }

    proptest::proptest! {
        /// Any bytes, in any field, decode back to exactly themselves.
        #[test]
        fn any_value_decodes_to_itself(
            values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 1..6)
        ) {
            let mut entry = Vec::new();
            for (i, value) in values.iter().enumerate() {
                put_field(&mut entry, &format!("F{i}"), value);
            }
            let decoded = decode(&entry).unwrap();
            proptest::prop_assert_eq!(decoded.len(), values.len());
            for (i, ((name, got), want)) in decoded.iter().zip(&values).enumerate() {
                proptest::prop_assert_eq!(name, &format!("F{i}"));
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    fn sink(dir: &Path) -> (JournalSink, UnixDatagram) {
        let path = dir.join("socket");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let mut sink = JournalSink::open(Some(&path), "local3").unwrap();
        sink.set_listener(&Arc::from("127.0.0.1:5140"));
        (sink, receiver)
    }

    fn queued(sink: &JournalSink) -> Vec<Vec<(String, String)>> {
        sink.queue
            .messages()
            .map(|entry| {
                decode(entry)
                    .unwrap()
                    .into_iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            })
            .collect()
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// A plain line: info, the configured facility (local3 = 19), identifier logsinkd; a
    /// parsed one: the sender's priority, facility, tag, host and time as written.
    #[test]
    fn entries_carry_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, _receiver) = sink(dir.path());
        sink.record(b"192.0.2.7:5", b"plain line");
        let msg = crate::syslog_parse::parse(b"<13>Dec  1 16:19:59 web-3 sshd[7]: bye").unwrap();
        sink.record_parsed(b"192.0.2.7:5", &msg);
        let msg =
            crate::syslog_parse::parse(b"<165>1 2026-12-01T17:20:01+01:00 - - - - - x").unwrap();
        sink.record_parsed(b"192.0.2.7:5", &msg);
        let got = queued(&sink);
        assert_eq!(
            got[0],
            fields(&[
                ("MESSAGE", "plain line"),
                ("PRIORITY", "6"),
                ("SYSLOG_FACILITY", "19"),
                ("SYSLOG_IDENTIFIER", "logsinkd"),
                ("LOGSINKD_PEER", "192.0.2.7:5"),
                ("LOGSINKD_LISTENER", "127.0.0.1:5140"),
            ])
        );
        assert_eq!(
            got[1],
            fields(&[
                ("MESSAGE", "bye"),
                ("PRIORITY", "5"),
                ("SYSLOG_FACILITY", "1"),
                ("SYSLOG_IDENTIFIER", "sshd"),
                ("SYSLOG_HOSTNAME", "web-3"),
                ("SYSLOG_TIMESTAMP", "Dec  1 16:19:59"),
                ("LOGSINKD_PEER", "192.0.2.7:5"),
                ("LOGSINKD_LISTENER", "127.0.0.1:5140"),
            ])
        );
        // RFC 5424 nil fields: no host, logsinkd's identifier.
        assert_eq!(
            got[2],
            fields(&[
                ("MESSAGE", "x"),
                ("PRIORITY", "5"),
                ("SYSLOG_FACILITY", "20"),
                ("SYSLOG_IDENTIFIER", "logsinkd"),
                ("SYSLOG_TIMESTAMP", "2026-12-01T17:20:01+01:00"),
                ("LOGSINKD_PEER", "192.0.2.7:5"),
                ("LOGSINKD_LISTENER", "127.0.0.1:5140"),
            ])
        );
    }

    /// An entry bigger than the send buffer allows in one datagram goes as a sealed memfd:
    /// an empty datagram carrying one descriptor that holds the whole entry.
    #[test]
    fn oversized_entry_goes_by_memfd() {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, receiver) = sink(dir.path());
        let line = vec![b'x'; 16 << 20];
        sink.record(b"peer", &line);
        sink.flush().map_err(|e| e.into_error()).unwrap();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 16];
        let got = recvmsg(
            &receiver,
            &mut [io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::DONTWAIT,
        )
        .unwrap();
        assert_eq!(got.bytes, 0, "an empty datagram");
        let mut fds: Vec<_> = control
            .drain()
            .flat_map(|m| match m {
                RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(fds.len(), 1);
        let seals = rustix::fs::fcntl_get_seals(&fds[0]).unwrap();
        assert!(
            seals
                .contains(SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL)
        );
        // The descriptor shares the sender's file offset, at the end: read from the start.
        let mut memfd = File::from(fds.remove(0));
        io::Seek::seek(&mut memfd, io::SeekFrom::Start(0)).unwrap();
        let mut entry = Vec::new();
        io::Read::read_to_end(&mut memfd, &mut entry).unwrap();
        let decoded = decode(&entry).unwrap();
        assert_eq!(decoded[0].0, "MESSAGE");
        assert_eq!(decoded[0].1.len(), line.len());
        assert_eq!(sink.backlog(), 0);
    }
}
