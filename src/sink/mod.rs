//! Where records go: a file (`file.rs`), syslog (`syslog.rs`) or the journal (`journal.rs`).
//!
//! All keep what they could not write yet in a backlog and report its size, so the event loop
//! can stop reading from clients while the output cannot take data (TCP flow control then
//! pushes back on the clients) instead of dropping anything.

mod file;
mod files;
mod journal;
mod queue;
mod syslog;
mod syslog_addr;
pub mod template;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::format::Format;
use crate::framing::run_lines;
use crate::syslog_parse::Message;
pub use file::{FileId, FileSink, Owner, chown_to, file_id, file_kind, open_regular, still_names};
pub use files::{DEFAULT_IDLE_CLOSE, DateTz, FileCounters, FilesSink, FilesTarget};
pub use journal::{DEFAULT_SOCKET as JOURNAL_SOCKET, JournalSink};
pub use syslog::{SyslogFraming, SyslogOptions, SyslogProtocol, SyslogSink};
pub(crate) use syslog::{UnixConn, connect_local, connect_unix};
pub use syslog_addr::SyslogAddr;
pub use writer::Writer;

/// An output as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    /// A path with fields: one file per sender (`files.rs`).
    Files(Box<FilesTarget>),
    Syslog(SyslogAddr),
    /// journald's native socket, or (`journal:/path`) a socket at this path.
    Journal(Option<PathBuf>),
}

impl Target {
    /// `syslog`, `syslog:/path`, `syslog+udp://host:port`, `syslog+tcp://host:port`,
    /// `journal`, `journal:/path`, else a path.
    pub fn parse(text: &str) -> Result<Target> {
        if text.is_empty() {
            bail!("empty output");
        }
        if text == "journal" {
            return Ok(Target::Journal(None));
        }
        if let Some(path) = text.strip_prefix("journal:") {
            if path.is_empty() {
                bail!("expected a socket path after `journal:`");
            }
            return Ok(Target::Journal(Some(PathBuf::from(path))));
        }
        if let Some(addr) = SyslogAddr::parse(text)? {
            return Ok(Target::Syslog(addr));
        }
        Ok(match template::parse(text)? {
            template::Parsed::Plain(path) => Target::File(PathBuf::from(path)),
            template::Parsed::Template(t) => Target::Files(Box::new(FilesTarget::new(t))),
        })
    }

    /// Makes a relative file or syslog socket path absolute, so a daemon that changes
    /// directory (to `/`, once daemonized) still finds it when it reopens or reconnects.
    pub fn absolutize(&mut self, base: &Path) {
        if let Target::File(path)
        | Target::Syslog(SyslogAddr::Unix(path))
        | Target::Journal(Some(path)) = self
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        if let Target::Files(files) = self {
            files.template.absolutize(base);
            if let Some(path) = files.fallback.as_mut().filter(|p| p.is_relative()) {
                *path = base.join(&*path);
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Files(files) => write!(f, "{}", files.template),
            Target::Syslog(addr) => write!(f, "{addr}"),
            Target::Journal(None) => write!(f, "journal"),
            Target::Journal(Some(path)) => write!(f, "journal:{}", path.display()),
        }
    }
}

/// What a flush that did not fail did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Written (what was handed to the file output's writer thread, or written here).
    Done,
    /// Handed to the file output's writer thread, whose outcome is not known yet: it wakes
    /// the event loop when it is, and the next flush takes it.
    Writing,
}

/// Why a flush left data queued; the event loop retries sooner after `Busy` and `BusyRetry`.
#[derive(Debug)]
pub enum SinkError {
    /// The receiver is there but takes no more for now (`EAGAIN` on a send): the output's
    /// socket (`Sink::raw_fd`) becomes writable when it does.
    Busy(anyhow::Error),
    /// The receiver is there but takes nothing for now, and no socket can tell when it will:
    /// a unix stream listener with a full backlog (`EAGAIN` on a connect, so there is no
    /// connection to watch) or no kernel buffer for a datagram (`ENOBUFS`, while the UDP
    /// socket reports writable all along). Tried again on a short timer.
    BusyRetry(anyhow::Error),
    /// The write failed (disk full, receiver gone).
    Failed(anyhow::Error),
}

impl SinkError {
    pub fn error(&self) -> &anyhow::Error {
        match self {
            SinkError::Busy(e) | SinkError::BusyRetry(e) | SinkError::Failed(e) => e,
        }
    }

    pub fn into_error(self) -> anyhow::Error {
        match self {
            SinkError::Busy(e) | SinkError::BusyRetry(e) | SinkError::Failed(e) => e,
        }
    }
}

/// An open output.
pub enum Sink {
    File(FileSink),
    /// Boxed: it is large, and the plain file's enum stays small.
    Files(Box<FilesSink>),
    Syslog(SyslogSink),
    Journal(JournalSink),
}

impl Sink {
    /// Opens the target; fails with a message naming it. A file logsinkd creates is given to
    /// `owner`, the user the daemon will run as.
    pub fn open(
        target: &Target,
        format: Format,
        syslog: &SyslogOptions,
        owner: Option<Owner>,
    ) -> Result<Sink> {
        Ok(match target {
            Target::File(path) => Sink::File(FileSink::open(path, format, owner)?),
            Target::Files(files) => Sink::Files(Box::new(FilesSink::open(files, format, owner)?)),
            Target::Syslog(addr) => Sink::Syslog(SyslogSink::open(addr.clone(), syslog)?),
            Target::Journal(path) => {
                Sink::Journal(JournalSink::open(path.as_deref(), &syslog.facility)?)
            }
        })
    }

    /// The records queued from now on came in on `listener` (as `listening on` names it):
    /// the journal output records it with each (`LOGSINKD_LISTENER`).
    #[inline]
    pub fn set_listener(&mut self, listener: &Arc<str>) {
        match self {
            Sink::Journal(s) => s.set_listener(listener),
            Sink::Files(s) => s.set_listener(listener),
            Sink::File(_) | Sink::Syslog(_) => {}
        }
    }

    /// True if the records' file depends on where and when they came from (`route`).
    #[inline]
    pub fn routes(&self) -> bool {
        matches!(self, Sink::Files(_))
    }

    /// The records queued from now on were received at `second` (Unix time) from `peer`: a
    /// templated output picks their file (once per read, not per record).
    #[inline]
    pub fn route(&mut self, second: i64, peer: &[u8]) {
        if let Sink::Files(s) = self {
            s.route(second, peer);
        }
    }

    /// The records queued from now on come from the verified TLS client `peer`, or from no
    /// TLS client (`None`, what each `Recorder` starts with): a `json` file records it as
    /// `tls_peer`.
    #[inline]
    pub fn set_tls_peer(&mut self, peer: Option<&str>) {
        match self {
            Sink::File(s) => s.set_tls_peer(peer),
            Sink::Files(s) => s.set_tls_peer(peer),
            Sink::Syslog(_) | Sink::Journal(_) => {}
        }
    }

    /// Queues one record (written by the next `flush`).
    #[inline]
    pub fn record(&mut self, time: &[u8], peer: &[u8], line: &[u8]) {
        match self {
            Sink::File(s) => s.record(time, peer, line),
            Sink::Files(s) => s.record(time, peer, line),
            Sink::Syslog(s) => s.record(time, peer, line),
            Sink::Journal(s) => s.record(peer, line),
        }
    }

    /// Queues one record whose syslog fields are `msg`.
    pub fn record_parsed(&mut self, time: &[u8], peer: &[u8], line: &[u8], msg: &Message<'_>) {
        match self {
            Sink::File(s) => s.record_parsed(time, peer, line, msg),
            Sink::Files(s) => s.record_parsed(time, peer, line, msg),
            Sink::Syslog(s) => s.record_parsed(time, peer, msg),
            Sink::Journal(s) => s.record_parsed(peer, msg),
        }
    }

    /// True if records show a message's syslog fields (the `json` and `syslog` formats, a
    /// syslog or journal output), so that parsing them is worth its cost.
    pub fn shows_fields(&self) -> bool {
        match self {
            Sink::File(s) => s.format().shows_fields(),
            // A path with message fields needs each record parsed.
            Sink::Files(s) => s.format().shows_fields() || s.per_record(),
            Sink::Syslog(_) | Sink::Journal(_) => true,
        }
    }

    /// Queues whole lines that need no change (`Piece::Lines`: each ends in LF, none holds a
    /// CR or is longer than max_line).
    pub fn record_lines(&mut self, time: &[u8], peer: &[u8], lines: &[u8]) {
        match self {
            Sink::File(s) => s.record_lines(time, peer, lines),
            Sink::Files(s) => s.record_lines(time, peer, lines),
            Sink::Syslog(s) => {
                for line in run_lines(lines) {
                    s.record(time, peer, line);
                }
            }
            Sink::Journal(s) => s.record_lines(peer, lines),
        }
    }

    /// The batch that raw-format records are queued in, for reading straight into it: the
    /// records are the bytes as received. `None` for other formats, syslog and the journal.
    #[inline]
    pub fn raw_batch(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Sink::File(s) => s.raw_batch(),
            Sink::Files(s) => s.raw_batch(),
            Sink::Syslog(_) | Sink::Journal(_) => None,
        }
    }

    /// Writes out what is queued. On error the unwritten part stays queued for the next try.
    pub fn flush(&mut self) -> Result<Flush, SinkError> {
        match self {
            Sink::File(s) => s.flush().map_err(SinkError::Failed),
            Sink::Files(s) => s.flush().map(|()| Flush::Done).map_err(SinkError::Failed),
            Sink::Syslog(s) => s.flush().map(|()| Flush::Done),
            Sink::Journal(s) => s.flush().map(|()| Flush::Done),
        }
    }

    /// A file output writes its batches on `writer`'s thread from now on (other outputs do
    /// not use it).
    pub fn use_writer(&mut self, writer: Writer) {
        if let Sink::File(s) = self {
            s.use_writer(writer);
        }
    }

    /// True if this output would write on a writer thread (`use_writer`).
    pub fn wants_writer(&self) -> bool {
        matches!(self, Sink::File(_))
    }

    /// Waits for a batch the writer thread is writing, if any.
    pub fn settle(&mut self) {
        if let Sink::File(s) = self {
            s.settle();
        }
    }

    /// Bytes queued and not yet handed over: what the next write takes (`backlog` also
    /// counts a batch the writer thread is writing).
    #[inline]
    pub fn queued(&self) -> usize {
        match self {
            Sink::File(s) => s.queued(),
            _ => self.backlog(),
        }
    }

    /// Bytes queued but not yet written.
    pub fn backlog(&self) -> usize {
        match self {
            Sink::File(s) => s.backlog(),
            Sink::Files(s) => s.backlog(),
            Sink::Syslog(s) => s.backlog(),
            Sink::Journal(s) => s.backlog(),
        }
    }

    /// Opens the output anew (SIGHUP). The old one stays in use if that fails.
    pub fn reopen(&mut self) -> Result<()> {
        match self {
            Sink::File(s) => s.reopen(),
            Sink::Files(s) => s.reopen(),
            Sink::Syslog(s) => s.reopen(),
            Sink::Journal(s) => s.reopen(),
        }
    }

    /// The socket to watch for writability while the receiver is busy (syslog, journal).
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Sink::File(_) | Sink::Files(_) => None,
            Sink::Syslog(s) => s.raw_fd(),
            Sink::Journal(s) => s.raw_fd(),
        }
    }

    /// Makes written data durable (at shutdown).
    pub fn sync(&mut self) -> Result<()> {
        match self {
            Sink::File(s) => s.sync(),
            Sink::Files(s) => s.sync(),
            Sink::Syslog(_) | Sink::Journal(_) => Ok(()),
        }
    }
}

/// Blocks until `fd` is writable or `timeout` passes; true if it is writable (or has an error
/// or hang-up to report, which the next write or `take_error` then tells). Used only where
/// blocking is right: at start-up (a syslog TCP connect) and at shutdown (a busy receiver).
pub(crate) fn wait_writable(fd: std::os::fd::BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for an fd borrowed for the call; an error or a timeout is
    // reported as not writable.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative file and syslog socket paths are resolved against the start directory;
    /// absolute paths and network targets stay as they are.
    #[test]
    fn absolutize_resolves_relative_paths() {
        let base = Path::new("/srv/logs");
        for (given, expected) in [
            ("out.log", "/srv/logs/out.log"),
            ("/var/log/x.log", "/var/log/x.log"),
            ("syslog:rel/sock", "syslog:/srv/logs/rel/sock"),
            ("syslog:/dev/log", "syslog:/dev/log"),
            ("syslog", "syslog"),
            ("syslog+tcp://host:514", "syslog+tcp://host:514"),
            ("journal", "journal"),
            ("journal:rel/sock", "journal:/srv/logs/rel/sock"),
            (
                "journal:/run/systemd/journal/socket",
                "journal:/run/systemd/journal/socket",
            ),
        ] {
            let mut target = Target::parse(given).unwrap();
            target.absolutize(base);
            assert_eq!(target.to_string(), expected, "{given}");
        }
    }

    /// `journal:` needs a path; a name that only starts like it is a file.
    #[test]
    fn journal_targets() {
        assert!(Target::parse("journal:").is_err());
        assert_eq!(
            Target::parse("journalx").unwrap(),
            Target::File(PathBuf::from("journalx"))
        );
    }
}
