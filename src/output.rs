//! The output: the sink, its name in messages, and keeping it flowing: writing out batches,
//! and what happens when the output cannot take data. A failure episode (disk full, syslog
//! receiver gone) is logged once, retried with back-off, and ends with the first flush that
//! succeeds; a receiver that is merely busy (`EAGAIN`) wakes the loop through its socket's
//! writability, or, where no socket can say when (a full listen backlog, `ENOBUFS`), is tried
//! again on a short timer. The records stay queued in order throughout; the event loop stops
//! reading from clients at `HIGH_WATER` (`full`).
//!
//! `Health` is the episode's state machine alone (no I/O), so its transitions are unit-tested;
//! `Output` does the writing and the messages.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::diag::{error, info, warning};
use crate::sink::{FileCounters, Flush, Sink, SinkError, wait_writable};

/// Output backlog at which a busy loop writes out mid-iteration, so the batch stays about
/// this size however much the clients send at once.
pub const FLUSH_AT: usize = 1 << 20;
/// Output backlog at which reading from clients pauses until a failing output takes data
/// again.
pub const HIGH_WATER: usize = 8 << 20;
/// Back-off between attempts to write to a failing output.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Retry interval while a receiver is there but briefly takes no more (EAGAIN), should its
/// socket's writability event not come.
const BUSY_RETRY: Duration = Duration::from_millis(50);
/// How long a receiver may stay busy before that is logged.
const BUSY_GRACE: Duration = Duration::from_secs(1);
/// How long shutdown keeps trying to write out what it holds if the output fails.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// What one `Output::flush` did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes written.
    pub written: usize,
    /// The write failed.
    pub failed: bool,
    /// A failure episode began (and was logged): a first failed write, or a receiver busy
    /// for `BUSY_GRACE`.
    pub episode: bool,
}

/// An open output and the state of its current failure episode.
pub struct Output {
    sink: Sink,
    /// The output as named in messages.
    target: String,
    /// The token under which the output's socket is watched for writability while its
    /// receiver is busy.
    token: Token,
    health: Health,
}

impl Output {
    pub fn new(sink: Sink, target: String, token: Token) -> Output {
        Output {
            sink,
            target,
            token,
            health: Health::default(),
        }
    }

    /// The sink, to queue records in.
    #[inline]
    pub fn sink(&mut self) -> &mut Sink {
        &mut self.sink
    }

    /// Bytes queued but not yet written.
    #[inline]
    pub fn backlog(&self) -> usize {
        self.sink.backlog()
    }

    /// Bytes queued and not yet handed to the writer thread: the batch being filled.
    #[inline]
    pub fn queued(&self) -> usize {
        self.sink.queued()
    }

    /// True while the backlog is at `HIGH_WATER`: read nothing more from clients.
    #[inline]
    pub fn full(&self) -> bool {
        self.sink.backlog() >= HIGH_WATER
    }

    /// The backlog at which a turn stops reading to write out: `FLUSH_AT` while the output
    /// is healthy; a failing one holds up to `HIGH_WATER` before reading stops.
    #[inline]
    pub fn batch_limit(&self) -> usize {
        if self.health.failing() {
            HIGH_WATER
        } else {
            FLUSH_AT
        }
    }

    /// When the next attempt is due, during an episode.
    pub fn retry_at(&self) -> Option<Instant> {
        self.health.retry_at
    }

    /// The output's socket became writable: try again now.
    pub fn wake(&mut self) {
        self.health.retry_at = None;
    }

    /// Output files open now: the file sink's one, a templated output's open files and its
    /// fallback (syslog and journal outputs have none).
    pub fn open_files(&self) -> u64 {
        match &self.sink {
            Sink::File(_) => 1,
            Sink::Files(s) => s.counters().open,
            Sink::Syslog(_) | Sink::Journal(_) => 0,
        }
    }

    /// A templated output's files: open now, opens, evictions (zero for other outputs).
    pub fn file_counters(&self) -> FileCounters {
        match &self.sink {
            Sink::Files(s) => s.counters(),
            _ => FileCounters::default(),
        }
    }

    /// Closes a templated output's files idle for `file_idle_close`.
    pub fn housekeep(&mut self, now: Instant) {
        if let Sink::Files(s) = &mut self.sink {
            s.housekeep(now);
        }
    }

    /// When `housekeep` has work next.
    pub fn housekeep_at(&self) -> Option<Instant> {
        match &self.sink {
            Sink::Files(s) => s.housekeep_at(),
            _ => None,
        }
    }

    /// Writes out what the sink holds, unless an attempt is not due yet. Says what it wrote
    /// and whether the write failed (a busy receiver is no failure).
    pub fn flush(&mut self, now: Instant, registry: &Registry) -> Flushed {
        let before = self.sink.backlog();
        if before == 0 || !self.health.due(now) {
            return Flushed::default();
        }
        let (failed, episode) = self.attempt(now, registry);
        Flushed {
            written: before.saturating_sub(self.sink.backlog()),
            failed,
            episode,
        }
    }

    /// One attempt at writing out: (failed, a failure episode began and was logged).
    fn attempt(&mut self, now: Instant, registry: &Registry) -> (bool, bool) {
        let target = &self.target;
        match self.sink.flush() {
            Ok(Flush::Done) => {
                if self.health.on_written() {
                    info!("output {target} takes data again; everything held was written");
                }
                (false, false)
            }
            // Known when the writer thread is done (it wakes the loop).
            Ok(Flush::Writing) => (false, false),
            Err(busy @ (SinkError::Busy(_) | SinkError::BusyRetry(_))) => {
                // Not an error yet: a receiver may be briefly behind. Said once it lasts.
                // After `Busy` its socket's writability wakes the loop (a local syslog
                // daemon's datagram queue holds only net.unix.max_dgram_qlen messages, 10 by
                // default). After `BusyRetry` only the timer does: there is no connection
                // yet, or its socket is writable all along (ENOBUFS on UDP), and watching it
                // would wake the loop at once, over and over.
                let watch = matches!(busy, SinkError::Busy(_));
                let e = busy.into_error();
                if let Some(fd) = self.sink.raw_fd().filter(|_| watch) {
                    let mut source = SourceFd(&fd);
                    // The fd may be new (reconnected) or already watched.
                    if registry
                        .register(&mut source, self.token, Interest::WRITABLE)
                        .is_err()
                    {
                        let _ = registry.reregister(&mut source, self.token, Interest::WRITABLE);
                    }
                }
                let logged = self.health.on_busy(now);
                if logged {
                    warning!(
                        "{e:#}; holding {} bytes (reading from clients pauses at {} MiB held)",
                        self.sink.backlog(),
                        HIGH_WATER >> 20
                    );
                }
                (false, logged)
            }
            Err(SinkError::Failed(e)) => {
                let logged = self.health.on_failed(now);
                if logged {
                    error!(
                        "{e:#}; holding {} bytes and retrying (reading from clients pauses at {} MiB held)",
                        self.sink.backlog(),
                        HIGH_WATER >> 20
                    );
                }
                (true, logged)
            }
        }
    }

    /// SIGHUP: opens the output anew (after logrotate moved it away); the old one stays in
    /// use if that fails. True if it succeeded.
    pub fn reopen(&mut self) -> bool {
        match self.sink.reopen() {
            Ok(()) => {
                info!("reopened {}", self.target);
                true
            }
            Err(e) => {
                error!("reopening failed, still writing to the old output: {e:#}");
                false
            }
        }
    }

    /// At shutdown, with nothing else left to do: writes out everything, waiting for a busy
    /// receiver's socket and retrying a failing output for up to SHUTDOWN_FLUSH, then syncs.
    /// Returns the bytes that could not be written.
    pub fn flush_before_exit(&mut self) -> usize {
        let sink = &mut self.sink;
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let mut backoff = RETRY_MIN;
        loop {
            let e = match sink.flush() {
                // A batch is on the writer thread (handed over now or before): its outcome
                // decides.
                Ok(_) if sink.backlog() > sink.queued() => {
                    sink.settle();
                    continue;
                }
                Ok(_) => break,
                Err(e) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                error!(
                    "{:#}; giving up with {} bytes unwritten",
                    e.error(),
                    sink.backlog()
                );
                break;
            }
            match (&e, sink.raw_fd()) {
                (SinkError::Busy(_), Some(fd)) => {
                    // SAFETY: `fd` is the sink's open socket, which outlives this call.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    // Timed out or not, the next attempt tells.
                    wait_writable(fd, left);
                }
                _ => {
                    std::thread::sleep(backoff.min(left));
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
        if let Err(e) = sink.sync() {
            error!("{e:#}");
        }
        sink.backlog()
    }
}

/// The state of the current failure episode, if any.
#[derive(Default)]
struct Health {
    /// When to try again.
    retry_at: Option<Instant>,
    /// The current back-off after failures (doubling from RETRY_MIN to RETRY_MAX).
    backoff: Duration,
    /// When the episode began.
    since: Option<Instant>,
    /// The episode was logged.
    logged: bool,
}

impl Health {
    /// True during an episode: the output holds data it could not write.
    fn failing(&self) -> bool {
        self.retry_at.is_some()
    }

    /// Whether an attempt may be made at `now`.
    fn due(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| at <= now)
    }

    /// A flush wrote everything: the episode ends. True if it had been logged (say it ended).
    fn on_written(&mut self) -> bool {
        std::mem::take(self).logged
    }

    /// The receiver takes no more for now: retry after `BUSY_RETRY`. True once it has been
    /// busy for `BUSY_GRACE` (log it, once per episode).
    fn on_busy(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        self.retry_at = Some(now + BUSY_RETRY);
        if !self.logged && now - since >= BUSY_GRACE {
            self.logged = true;
            return true;
        }
        false
    }

    /// The write failed: retry with back-off doubling from `RETRY_MIN` to `RETRY_MAX`. True
    /// on the first failure of an episode (log it).
    fn on_failed(&mut self, now: Instant) -> bool {
        self.since.get_or_insert(now);
        self.backoff = (self.backoff * 2).clamp(RETRY_MIN, RETRY_MAX);
        self.retry_at = Some(now + self.backoff);
        !std::mem::replace(&mut self.logged, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failures back off from RETRY_MIN, doubling up to RETRY_MAX; only the first is logged;
    /// no attempt is due before the retry time; a write that succeeds ends the episode and
    /// says so.
    #[test]
    fn failure_backs_off_and_logs_once() {
        let start = Instant::now();
        let mut h = Health::default();
        assert!(!h.failing() && h.due(start));
        assert!(h.on_failed(start));
        assert_eq!(h.retry_at, Some(start + RETRY_MIN));
        assert!(h.failing() && !h.due(start));
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..10 {
            now = h.retry_at.unwrap();
            assert!(h.due(now));
            assert!(!h.on_failed(now), "logged once per episode");
            waits.push(h.retry_at.unwrap() - now);
        }
        assert_eq!(waits[0], RETRY_MIN * 2);
        assert_eq!(*waits.last().unwrap(), RETRY_MAX);
        assert!(h.on_written(), "the end of a logged episode is said");
        assert!(!h.failing());
        assert!(h.on_failed(now), "a new episode is logged again");
    }

    /// A busy receiver is retried every BUSY_RETRY and logged only once it has been busy for
    /// BUSY_GRACE; ending quietly if it never was.
    #[test]
    fn busy_is_logged_after_grace() {
        let start = Instant::now();
        let mut h = Health::default();
        assert!(!h.on_busy(start));
        assert_eq!(h.retry_at, Some(start + BUSY_RETRY));
        assert!(h.failing());
        assert!(!h.on_busy(start + BUSY_GRACE / 2));
        assert!(h.on_busy(start + BUSY_GRACE));
        assert!(!h.on_busy(start + BUSY_GRACE * 2), "once");
        assert!(h.on_written());
        assert!(!h.on_busy(start + BUSY_GRACE * 3));
        assert!(!h.on_written(), "a short busy spell ends quietly");
    }

    /// Writability of the output's socket makes the next attempt due at once.
    #[test]
    fn wake_makes_attempt_due() {
        let start = Instant::now();
        let mut h = Health::default();
        h.on_failed(start);
        assert!(!h.due(start));
        h.retry_at = None; // what Output::wake does
        assert!(h.due(start));
    }
}
