//! When to accept new clients: the connection cap (`max_connections`) and accept-error
//! episodes (EMFILE and the like). No sockets here, only the state machine the listeners obey.
//!
//! At the cap, clients are left in the kernel's backlog, where TCP makes them wait (accepting
//! them only to close them would lose what they send); accepting resumes when a connection
//! closes. After an accept error that retrying at once would repeat, accepting pauses for
//! `ACCEPT_PAUSE` (no busy loop) and the waiting clients stay queued. Each episode is logged
//! once, however long it lasts, and ends when a listener's backlog is drained (`WouldBlock`).

use std::io;
use std::time::{Duration, Instant};

use crate::diag::{error, info, warning};

/// Pause before accepting again after an accept error such as EMFILE: no busy loop.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

pub struct AcceptGate {
    max_connections: usize,
    /// Accepting is paused after an accept error until then.
    paused_until: Option<Instant>,
    /// An accept error episode is on: logged once, ends when the backlog is drained.
    failing: bool,
    /// The connection cap is reached; accepting resumes when a connection closes.
    at_cap: bool,
    /// A cap episode is on: logged once, ends when the backlog is drained below the cap.
    cap_logged: bool,
}

impl AcceptGate {
    pub fn new(max_connections: usize) -> AcceptGate {
        AcceptGate {
            max_connections,
            paused_until: None,
            failing: false,
            at_cap: false,
            cap_logged: false,
        }
    }

    /// Whether to accept one more client with `open` connections open: not while paused
    /// (the timer resumes) nor at the cap (a close resumes; logged once per episode).
    pub fn may_accept(&mut self, open: usize) -> bool {
        if self.paused_until.is_some() {
            return false;
        }
        if open < self.max_connections {
            return true;
        }
        if !self.cap_logged {
            warning!(
                "{open} connections open, the cap (max_connections); new clients wait until one \
                 closes"
            );
            self.cap_logged = true;
        }
        self.at_cap = true;
        false
    }

    /// A listener's backlog is empty (`WouldBlock`): every waiting client is accepted, so an
    /// episode of errors or of the cap ends. True if one did (and was said to).
    pub fn on_drained(&mut self) -> bool {
        let ended = self.failing || self.cap_logged;
        if std::mem::take(&mut self.failing) {
            info!("accepting connections again; no client waits");
        }
        if std::mem::take(&mut self.cap_logged) {
            info!("below the connection cap again; no client waits");
        }
        ended
    }

    /// Accepting on `listener` failed with `e` (EMFILE, ENFILE, ENOBUFS, ENOMEM): pause until
    /// `now + ACCEPT_PAUSE`. Logged on the first error of an episode only; true then.
    pub fn on_error(&mut self, now: Instant, listener: &str, e: &io::Error) -> bool {
        self.paused_until = Some(now + ACCEPT_PAUSE);
        if self.failing {
            return false;
        }
        self.failing = true;
        error!(
            "accepting on {listener}: {e}; retrying every {} ms, clients wait in the backlog",
            ACCEPT_PAUSE.as_millis()
        );
        true
    }

    /// A connection closed: true if accepting was held at the cap and should resume now.
    pub fn on_close(&mut self) -> bool {
        std::mem::take(&mut self.at_cap)
    }

    /// When a pause ends, for the poll timeout.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// True once the pause is over at `now` (and ends it): time to accept again.
    pub fn resume_due(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|at| at <= now) {
            self.paused_until = None;
            return true;
        }
        false
    }
}

/// Accept errors caused by the connecting client, not by logsinkd: accept the next one.
pub fn is_client_side(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    /// Below the cap every client is accepted; at it none, the episode is noted once, and a
    /// close resumes accepting once.
    #[test]
    fn cap_holds_until_a_close() {
        let mut gate = AcceptGate::new(2);
        assert!(gate.may_accept(0));
        assert!(gate.may_accept(1));
        assert!(!gate.may_accept(2));
        assert!(!gate.may_accept(2));
        assert!(gate.cap_logged);
        assert!(gate.on_close(), "a close at the cap resumes accepting");
        assert!(!gate.on_close(), "only once");
        assert!(gate.may_accept(1));
        // The backlog drained below the cap: the episode ends, said once.
        assert!(gate.on_drained());
        assert!(!gate.on_drained());
    }

    /// An accept error pauses accepting until `ACCEPT_PAUSE` has passed; repeated errors are
    /// one episode (logged once), which ends when the backlog is drained.
    #[test]
    fn error_pauses_and_logs_once_per_episode() {
        let start = Instant::now();
        let mut gate = AcceptGate::new(10);
        assert!(gate.on_error(start, "127.0.0.1:1", &emfile()));
        assert!(!gate.may_accept(0), "paused");
        assert_eq!(gate.paused_until(), Some(start + ACCEPT_PAUSE));
        assert!(!gate.resume_due(start + ACCEPT_PAUSE / 2));
        assert!(gate.resume_due(start + ACCEPT_PAUSE));
        assert!(!gate.resume_due(start + ACCEPT_PAUSE), "resumed once");
        assert!(gate.may_accept(0));
        // Still failing: paused again, not logged again.
        let later = start + ACCEPT_PAUSE;
        assert!(!gate.on_error(later, "127.0.0.1:1", &emfile()));
        assert_eq!(gate.paused_until(), Some(later + ACCEPT_PAUSE));
        assert!(gate.resume_due(later + ACCEPT_PAUSE));
        assert!(gate.on_drained(), "the episode ends");
        assert!(
            gate.on_error(later, "127.0.0.1:1", &emfile()),
            "a new episode is logged again"
        );
    }

    /// A close that was not at the cap resumes nothing; draining with no episode on ends none.
    #[test]
    fn quiet_without_episodes() {
        let mut gate = AcceptGate::new(1);
        assert!(!gate.on_close());
        assert!(!gate.on_drained());
        assert_eq!(gate.paused_until(), None);
    }

    #[test]
    fn client_side_errors() {
        let os = io::Error::from_raw_os_error;
        assert!(is_client_side(&os(libc::ECONNABORTED)));
        assert!(!is_client_side(&emfile()));
        assert!(!is_client_side(&os(libc::ENOBUFS)));
    }
}
