//! The daemon's own diagnostics (not the records it receives).
//!
//! In the foreground they go to stderr, one line each; when stderr is the journal
//! (`JOURNAL_STREAM` names it) each line starts with an sd-daemon priority prefix such as `<6>`,
//! so journald files it at the right level. Once daemonized they go to syslog, facility
//! `daemon`. The process is single-threaded; the mutex only satisfies `static`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// syslog(3) priorities used by logsinkd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

enum Target {
    Stderr { journal: bool },
    Syslog(Logger<LoggerBackend, Formatter3164>),
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
    if let Ok(logger) = syslog::unix(formatter) {
        *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = Target::Syslog(logger);
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
        Target::Syslog(logger) => {
            let _ = match level {
                Level::Error => logger.err(args),
                Level::Warning => logger.warning(args),
                Level::Info => logger.info(args),
            };
        }
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
