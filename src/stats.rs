//! The counters: shown by SIGUSR1, systemd's STATUS= line and the `stopped` summary, and served
//! to Prometheus (`metrics/`).
//!
//! The server owns them; a `Recorder` borrows the counters of the listener it records for.
//! They are plain integers bumped where the events happen, no atomics (one thread), and the
//! per-listener ones sit in a `Vec` indexed by the listener's index (its token's offset), so a
//! record costs one add to a field it already has a reference to: no lookup, no allocation.
//! Totals over the listeners are summed when asked for (a few dozen listeners at most).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// One listener's counters (a stream listener or a datagram socket). Adding a counter here is
/// one field, plus one line in `metrics::exposition::LISTENER_METRICS` to serve it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections open now (stream listeners).
    pub open: u64,
    /// Connections accepted since start (stream listeners).
    pub accepted: u64,
    /// Records received (a line cut into `max_line` pieces counts once per piece).
    pub lines: u64,
    /// Bytes received from clients.
    pub bytes: u64,
    /// Octet-counted frames cut short by the end of their connection (recorded as far as
    /// they came).
    pub truncated: u64,
    /// Messages of a listener with `parse = "syslog"` that did not parse (recorded as they are).
    pub unparsed: u64,
    /// TCP clients reset and UDP datagrams dropped for not being in `allow`.
    pub denied: u64,
    /// Connections to a PROXY protocol listener reset: not from `proxy_from`, or no valid
    /// header in time.
    pub proxy_refused: u64,
    /// TLS clients closed before their handshake completed (TLS listeners): not TLS, a
    /// certificate refused, not in `tls_peers`, no handshake in time, or gone mid-handshake.
    pub tls_handshake_failures: u64,
    /// As named in messages and the journal output's `LOGSINKD_LISTENER` (`127.0.0.1:5140`,
    /// `udp 127.0.0.1:5140`): the address bound, port 0 resolved.
    pub name: Arc<str>,
}

/// What happened to the output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutputStats {
    /// Records the output took: every record queued before the last time its backlog was
    /// written out completely.
    pub records: u64,
    /// Bytes the output took.
    pub bytes: u64,
    /// Failed writes.
    pub errors: u64,
    /// Failure episodes: each began with a failed write, or a receiver busy for over a second,
    /// and ended with a write that took everything held (see output.rs).
    pub failures: u64,
    /// Reopens done (SIGHUP).
    pub reopens: u64,
    /// Reopens that failed (the old output stays in use).
    pub reopen_failures: u64,
    /// Output files open now (a templated output's files and fallback; 1 for a plain file).
    pub open_files: u64,
    /// Files a templated output opened since start.
    pub file_opens: u64,
    /// Files a templated output closed to make room under `max_open_files`.
    pub file_evictions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Per listener, by index: the stream listeners, then the datagram sockets.
    pub listeners: Vec<ListenerStats>,
    /// Failed reads, accepts and output writes.
    pub errors: u64,
    pub output: OutputStats,
    /// When the daemon started, for `process_start_time_seconds`.
    pub started: SystemTime,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new(0)
    }
}

impl Stats {
    /// Counters at zero for `listeners` listeners.
    pub fn new(listeners: usize) -> Stats {
        Stats {
            listeners: vec![ListenerStats::default(); listeners],
            errors: 0,
            output: OutputStats::default(),
            started: SystemTime::now(),
        }
    }

    /// One counter summed over all listeners.
    pub fn total(&self, counter: impl Fn(&ListenerStats) -> u64) -> u64 {
        self.listeners.iter().map(counter).sum()
    }

    /// The text of systemd's STATUS= line; with a templated output (once it opened a file),
    /// its files too.
    pub fn status(&self) -> String {
        let mut text = format!(
            "{} open, {} total connections; {} lines, {} bytes; {} errors",
            self.total(|l| l.open),
            self.total(|l| l.accepted),
            self.total(|l| l.lines),
            self.total(|l| l.bytes),
            self.errors
        );
        let o = &self.output;
        if o.file_opens > 0 {
            text += &format!(
                "; {} files open, {} opens, {} evictions",
                o.open_files, o.file_opens, o.file_evictions
            );
        }
        text
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections open={} total={} lines={} bytes={} errors={} truncated={} unparsed={} \
             denied={} proxy_refused={} tls_handshake_failures={} open_files={} file_opens={} \
             file_evictions={}",
            self.total(|l| l.open),
            self.total(|l| l.accepted),
            self.total(|l| l.lines),
            self.total(|l| l.bytes),
            self.errors,
            self.total(|l| l.truncated),
            self.total(|l| l.unparsed),
            self.total(|l| l.denied),
            self.total(|l| l.proxy_refused),
            self.total(|l| l.tls_handshake_failures),
            self.output.open_files,
            self.output.file_opens,
            self.output.file_evictions
        )
    }
}
