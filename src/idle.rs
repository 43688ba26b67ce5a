//! Idle timers (`idle_timeout`): one timer per open connection, in deadline order, removed when
//! the connection closes, so their memory follows the open connections.
//!
//! Timers are lazy: a read only notes its time in the connection (`last_active`) and touches no
//! timer. When a timer goes off, `expired` decides: a connection that was active since is armed
//! again for `timeout` after its last activity; one whose socket holds data that logsinkd has
//! not read (it stopped reading because the output is backed up) is not idle either, and is
//! armed again for a full `timeout`; only a connection that sent nothing is idle.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub struct IdleTimers {
    timeout: Duration,
    /// (deadline, slab key) of every armed timer. Each connection keeps its timer's deadline
    /// (its `slot`) so that its entry can be found and removed when it closes.
    armed: BTreeSet<(Instant, usize)>,
}

impl IdleTimers {
    pub fn new(timeout: Duration) -> IdleTimers {
        IdleTimers {
            timeout,
            armed: BTreeSet::new(),
        }
    }

    /// Arms the timer of connection `key` to go off `timeout` after `from`, replacing the one
    /// `slot` names. Checked: a deadline past the clock's range never comes, so none is armed.
    pub fn arm(&mut self, key: usize, slot: &mut Option<Instant>, from: Instant) {
        self.disarm(key, slot);
        *slot = from.checked_add(self.timeout);
        if let Some(at) = *slot {
            self.armed.insert((at, key));
        }
    }

    /// Removes the timer of connection `key` (it closes).
    pub fn disarm(&mut self, key: usize, slot: &mut Option<Instant>) {
        if let Some(at) = slot.take() {
            self.armed.remove(&(at, key));
        }
    }

    /// When the earliest timer goes off.
    pub fn next(&self) -> Option<Instant> {
        self.armed.first().map(|&(at, _)| at)
    }

    /// Takes the earliest timer if it is due at `now`; returns its connection's key. The
    /// caller hands that connection to `expired`.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let &(at, key) = self.armed.first()?;
        (at <= now).then(|| {
            self.armed.pop_first();
            key
        })
    }

    /// The timer of connection `key` went off (`pop_due`): true if the connection is idle
    /// (close it), else its timer is armed again. `unread` says whether its socket holds data
    /// not read yet; it is asked only of a connection silent for `timeout`.
    pub fn expired(
        &mut self,
        key: usize,
        slot: &mut Option<Instant>,
        last_active: Instant,
        now: Instant,
        unread: impl FnOnce() -> bool,
    ) -> bool {
        // The entry is gone already (pop_due).
        *slot = None;
        if last_active
            .checked_add(self.timeout)
            .is_none_or(|due| due > now)
        {
            self.arm(key, slot, last_active);
            false
        } else if unread() {
            self.arm(key, slot, now);
            false
        } else {
            true
        }
    }

    /// Timers armed (one per open connection).
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn secs(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    /// A connection silent for the timeout is idle; its timer is gone.
    #[test]
    fn silent_connection_is_idle() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        let mut slot = None;
        timers.arm(3, &mut slot, start);
        assert_eq!(timers.next(), Some(secs(start, 10)));
        assert_eq!(timers.pop_due(secs(start, 9)), None);
        assert_eq!(timers.pop_due(secs(start, 10)), Some(3));
        assert!(timers.expired(3, &mut slot, start, secs(start, 10), || false));
        assert!(timers.is_empty());
        assert_eq!(slot, None);
    }

    /// Activity since the timer was armed moves it to `timeout` after the last activity.
    #[test]
    fn activity_rearms_for_the_rest() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        let mut slot = None;
        timers.arm(0, &mut slot, start);
        let key = timers.pop_due(secs(start, 10)).unwrap();
        let unread_asked = std::cell::Cell::new(false);
        let idle = timers.expired(key, &mut slot, secs(start, 4), secs(start, 10), || {
            unread_asked.set(true);
            false
        });
        assert!(!idle);
        assert!(
            !unread_asked.get(),
            "an active connection's socket is not asked"
        );
        assert_eq!(timers.next(), Some(secs(start, 14)));
        assert_eq!(slot, Some(secs(start, 14)));
    }

    /// A connection whose socket holds unread data (logsinkd stopped reading while the output
    /// is backed up) is never idle: armed again for a full timeout from now.
    #[test]
    fn unread_data_is_not_idle() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        let mut slot = None;
        timers.arm(5, &mut slot, start);
        for round in 1..=3 {
            let now = secs(start, 10 * round);
            assert_eq!(timers.pop_due(now), Some(5));
            assert!(!timers.expired(5, &mut slot, start, now, || true));
            assert_eq!(timers.next(), Some(secs(start, 10 * (round + 1))));
        }
        assert_eq!(timers.len(), 1);
    }

    /// Closing removes the timer: after many connections came and went, nothing is left.
    #[test]
    fn closed_connections_leave_nothing() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(Duration::from_secs(3600));
        let mut open = Vec::new();
        for i in 0..10_000 {
            let mut slot = None;
            timers.arm(i % 7, &mut slot, secs(start, i as u64));
            if i % 1000 == 0 {
                open.push((i % 7, slot));
            } else {
                timers.disarm(i % 7, &mut slot);
            }
        }
        assert_eq!(timers.len(), open.len());
        for (key, mut slot) in open {
            timers.disarm(key, &mut slot);
        }
        assert!(timers.is_empty());
    }

    /// A timeout so long that its deadline is past the clock's range never goes off.
    #[test]
    fn deadline_out_of_range_is_never() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(Duration::MAX);
        let mut slot = None;
        timers.arm(1, &mut slot, start);
        assert_eq!(slot, None);
        assert_eq!(timers.next(), None);
    }

    /// Timers go off in deadline order whatever order they were armed in.
    #[test]
    fn deadline_order() {
        let start = Instant::now();
        let mut timers = IdleTimers::new(T);
        let mut slots = [None; 3];
        for (key, from) in [(0, 5), (1, 1), (2, 3)] {
            timers.arm(key, &mut slots[key], secs(start, from));
        }
        let now = secs(start, 20);
        let order: Vec<usize> = std::iter::from_fn(|| timers.pop_due(now)).collect();
        assert_eq!(order, [1, 2, 0]);
    }
}
