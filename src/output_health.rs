//! Keeping the output flowing: writing out batches, and what happens when the output cannot
//! take data. A failure episode (disk full, syslog receiver gone) is logged once, retried with
//! back-off, and ends with the first flush that succeeds; a receiver that is merely busy
//! (`EAGAIN`) wakes the loop through its socket's writability, or, where no socket can say
//! when (a full listen backlog, `ENOBUFS`), is tried again on a short timer. The records stay
//! queued in order throughout; the event loop stops reading from clients at `HIGH_WATER`.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::diag::{error, info, warning};
use crate::sink::{Sink, SinkError};
use crate::stats::Stats;

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

/// The state of the current failure episode, if any.
#[derive(Default)]
pub struct OutputHealth {
    /// When to try again.
    retry_at: Option<Instant>,
    /// The current back-off after failures (doubling from RETRY_MIN to RETRY_MAX).
    backoff: Duration,
    /// When the episode began.
    since: Option<Instant>,
    /// The episode was logged.
    logged: bool,
}

impl OutputHealth {
    /// When the next attempt is due, during an episode.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// True during an episode: the output holds data it could not write.
    pub fn failing(&self) -> bool {
        self.retry_at.is_some()
    }

    /// The output's socket became writable: try again now.
    pub fn wake(&mut self) {
        self.retry_at = None;
    }

    /// Writes out what the sink holds, unless an attempt is not due yet. `token` is the one
    /// under which the output's socket is watched for writability while its receiver is busy;
    /// `target` names the output in messages.
    pub fn flush(
        &mut self,
        sink: &mut Sink,
        target: &str,
        registry: &Registry,
        token: Token,
        stats: &mut Stats,
        now: Instant,
    ) {
        if sink.backlog() == 0 || self.retry_at.is_some_and(|at| at > now) {
            return;
        }
        match sink.flush() {
            Ok(()) => {
                if self.logged {
                    info!("output {target} takes data again; everything held was written");
                }
                *self = OutputHealth::default();
            }
            Err(busy @ (SinkError::Busy(_) | SinkError::BusyRetry(_))) => {
                // Not an error yet: a receiver may be briefly behind. Said once it lasts.
                // After `Busy` its socket's writability wakes the loop (a local syslog
                // daemon's datagram queue holds only net.unix.max_dgram_qlen messages, 10 by
                // default). After `BusyRetry` only the timer does: there is no connection
                // yet, or its socket is writable all along (ENOBUFS on UDP), and watching it
                // would wake the loop at once, over and over.
                let watch = matches!(busy, SinkError::Busy(_));
                let e = busy.into_error();
                if let Some(fd) = sink.raw_fd().filter(|_| watch) {
                    let mut source = SourceFd(&fd);
                    // The fd may be new (reconnected) or already watched.
                    if registry
                        .register(&mut source, token, Interest::WRITABLE)
                        .is_err()
                    {
                        let _ = registry.reregister(&mut source, token, Interest::WRITABLE);
                    }
                }
                let since = *self.since.get_or_insert(now);
                self.retry_at = Some(now + BUSY_RETRY);
                if !self.logged && now - since >= BUSY_GRACE {
                    self.logged = true;
                    warning!(
                        "{e:#}; holding {} bytes (reading from clients pauses at {} MiB held)",
                        sink.backlog(),
                        HIGH_WATER >> 20
                    );
                }
            }
            Err(SinkError::Failed(e)) => {
                stats.errors += 1;
                self.since.get_or_insert(now);
                if !self.logged {
                    self.logged = true;
                    error!(
                        "{e:#}; holding {} bytes and retrying (reading from clients pauses at {} MiB held)",
                        sink.backlog(),
                        HIGH_WATER >> 20
                    );
                }
                self.backoff = (self.backoff * 2).clamp(RETRY_MIN, RETRY_MAX);
                self.retry_at = Some(now + self.backoff);
            }
        }
    }
}

/// At shutdown, with nothing else left to do: writes out everything, waiting for a busy
/// receiver's socket and retrying a failing output for up to SHUTDOWN_FLUSH. Returns the
/// bytes that could not be written.
pub fn flush_before_exit(sink: &mut Sink) -> usize {
    let deadline = Instant::now() + SHUTDOWN_FLUSH;
    let mut backoff = RETRY_MIN;
    while let Err(e) = sink.flush() {
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
            (SinkError::Busy(_), Some(fd)) => wait_writable(fd, left),
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

/// Blocks until `fd` is writable or `timeout` passes (shutdown only).
fn wait_writable(fd: RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd; an error or timeout just leads to the next attempt.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}
