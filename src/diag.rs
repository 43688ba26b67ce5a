//! The daemon's own diagnostics (not the records it receives).
//!
//! In the foreground they go to stderr, one line each; when stderr is the journal
//! (`JOURNAL_STREAM` names it) each line starts with an sd-daemon priority prefix such as `<6>`,
//! so journald files it at the right level. Once daemonized they go to syslog, facility
//! `daemon`, through a non-blocking socket: a message the local syslog daemon cannot take at
//! once (its queue is full, it is stalled or gone) is dropped and counted, never waited for,
//! since the event loop logs; the next message that gets through says how many were dropped.
//! Only the event loop's thread logs; the mutex only satisfies `static`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, LogFormat, Severity};

use crate::sink::{UnixConn, connect_local};

/// syslog(3) priorities used by logsinkd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

enum Target {
    Stderr { journal: bool },
    Syslog(SyslogDiag),
}

/// Diagnostics to the local syslog socket.
struct SyslogDiag {
    formatter: Formatter3164,
    /// `None` until connected, and after the connection broke; connected again (without
    /// waiting) by the next message.
    conn: Option<UnixConn>,
    /// Messages dropped since the last one that got through.
    dropped: u64,
}

static TARGET: Mutex<Target> = Mutex::new(Target::Stderr { journal: false });

/// Sends diagnostics to stderr, with priority prefixes if stderr is connected to the journal.
pub fn to_stderr() {
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = Target::Stderr {
        journal: stderr_is_journal(),
    };
}

/// Sends diagnostics to the local syslog (after daemonizing, when stderr is /dev/null).
pub fn to_syslog() {
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "logsinkd".into(),
        pid: std::process::id(),
    };
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = Target::Syslog(SyslogDiag {
        formatter,
        conn: connect_local().ok(),
        dropped: 0,
    });
}

impl SyslogDiag {
    /// Sends one message if the socket takes it at once; else drops and counts it.
    fn log(&mut self, level: Level, args: fmt::Arguments<'_>) {
        if self.dropped > 0 {
            let note = format!(
                "{} diagnostic messages were dropped: syslog took no more at the time",
                self.dropped
            );
            if !self.send(Level::Warning, format_args!("{note}")) {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if !self.send(level, args) {
            self.dropped += 1;
        }
    }

    /// True if the whole message was sent. A syslog daemon that restarted left the socket
    /// connected to nothing (`ECONNREFUSED`): connect anew once and try again.
    fn send(&mut self, level: Level, args: fmt::Arguments<'_>) -> bool {
        let severity = match level {
            Level::Error => Severity::LOG_ERR,
            Level::Warning => Severity::LOG_WARNING,
            Level::Info => Severity::LOG_INFO,
        };
        let mut frame = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.formatter.format(&mut frame, severity, args);
        for fresh in [false, true] {
            if fresh || self.conn.is_none() {
                // Non-blocking: a stream listener with a full backlog fails at once.
                self.conn = connect_local().ok();
            }
            let sent = match &mut self.conn {
                None => return false,
                Some(UnixConn::Dgram(sock)) => sock.send(&frame).map(|_| true),
                Some(UnixConn::Stream(sock)) => {
                    // syslog(3) ends each message with NUL on a stream.
                    frame.push(0);
                    let result = sock.write(&frame).map(|n| {
                        // A message cut short would run into the next one: end it with the
                        // connection (the receiver takes EOF as its end) and count it lost.
                        if n > 0 && n < frame.len() {
                            self.conn = None;
                        }
                        n == frame.len()
                    });
                    frame.pop();
                    result
                }
            };
            match sent {
                Ok(sent) => return sent,
                // Full (EAGAIN, ENOBUFS): drop this message rather than wait.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    return false;
                }
                Err(_) => self.conn = None,
            }
        }
        false
    }
}

/// `JOURNAL_STREAM` is `device:inode` of the journal stream; it only counts if stderr is still
/// that stream (a child with redirected stderr inherits the variable).
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

pub fn log(level: Level, args: fmt::Arguments<'_>) {
    let mut target = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    match &mut *target {
        Target::Stderr { journal: true } => {
            let _ = writeln!(std::io::stderr(), "<{}>{}", level as u8, args);
        }
        Target::Stderr { journal: false } => {
            let label = match level {
                Level::Error => "error: ",
                Level::Warning => "warning: ",
                Level::Info => "",
            };
            let _ = writeln!(std::io::stderr(), "logsinkd: {label}{args}");
        }
        Target::Syslog(syslog) => syslog.log(level, args),
    }
}

macro_rules! info {
    ($($arg:tt)*) => { $crate::diag::log($crate::diag::Level::Info, format_args!($($arg)*)) };
}
macro_rules! warning {
    ($($arg:tt)*) => { $crate::diag::log($crate::diag::Level::Warning, format_args!($($arg)*)) };
}
macro_rules! error {
    ($($arg:tt)*) => { $crate::diag::log($crate::diag::Level::Error, format_args!($($arg)*)) };
}
pub(crate) use {error, info, warning};
