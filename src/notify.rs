//! Talking to systemd through `NOTIFY_SOCKET` (sd_notify(3)): READY=1, STATUS= counters,
//! RELOADING=1 around a reopen, STOPPING=1, and WATCHDOG=1 pings when `WATCHDOG_USEC` asks
//! for them. Without `NOTIFY_SOCKET` every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::stats::Stats;

/// How often STATUS= is refreshed while counters change.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

pub struct Notifier {
    enabled: bool,
    /// Half the watchdog interval systemd asked for.
    watchdog: Option<Duration>,
    next_watchdog: Instant,
    next_status: Instant,
    last_status: String,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let now = Instant::now();
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled().map(|d| d / 2),
            next_watchdog: now,
            next_status: now,
            last_status: String::new(),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled {
            // A lost notification only costs systemd a status update; never fatal.
            let _ = sd_notify::notify(states);
        }
    }

    pub fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_status = status.to_string();
    }

    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        // systemd 253+ wants the time of the reload with it; older ones ignore it.
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    pub fn reloaded(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Sends what is due (watchdog ping, changed status) and says when to call again.
    pub fn tick(&mut self, now: Instant, stats: &Stats) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        if let Some(interval) = self.watchdog {
            if now >= self.next_watchdog {
                self.send(&[NotifyState::Watchdog]);
                self.next_watchdog = now + interval;
            }
        }
        if now >= self.next_status {
            let status = stats.status();
            if status != self.last_status {
                self.send(&[NotifyState::Status(&status)]);
                self.last_status = status;
            }
            self.next_status = now + STATUS_INTERVAL;
        }
        Some(match self.watchdog {
            Some(_) => self.next_status.min(self.next_watchdog),
            None => self.next_status,
        })
    }
}
