//! Which refused TLS clients to log: each address at most once a minute, saying how many of its
//! refusals since went unlogged, in a table of bounded size. (Counting every refusal is the
//! stats' job; this only keeps the log readable when a client retries in a loop.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an address's refusals stay quiet after one is logged.
pub const QUIET_FOR: Duration = Duration::from_secs(60);

/// The most addresses remembered at once (about 48 bytes each). Beyond it, in a minute with
/// that many refused addresses (a scan), refusals from addresses not in the table are not
/// logged one by one but counted, and the count is logged with the next refusal that is.
pub const MAX_ADDRESSES: usize = 4096;

/// One address's state.
struct Entry {
    /// When a refusal of it was last logged.
    logged_at: Instant,
    /// Its refusals since then that were not logged.
    unlogged: u64,
}

/// The table of recently logged addresses.
pub struct Refusals {
    by_address: HashMap<IpAddr, Entry>,
    /// Refusals not logged because the table was full.
    overflow: u64,
}

/// What to log about one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, adding how many refusals of this address (`same`) and of addresses the table had
    /// no room for (`others`) went unlogged before it.
    Log { same: u64, others: u64 },
    /// Say nothing: this address was logged less than `QUIET_FOR` ago.
    Quiet,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new()
    }
}

impl Refusals {
    /// An empty table.
    pub fn new() -> Refusals {
        Refusals {
            by_address: HashMap::new(),
            overflow: 0,
        }
    }

    /// Notes a refusal of `address` at `now` and says whether to log it. IPv4-mapped IPv6
    /// addresses count as their IPv4 address.
    pub fn note(&mut self, address: IpAddr, now: Instant) -> Verdict {
        let address = address.to_canonical();
        if let Some(entry) = self.by_address.get_mut(&address) {
            if now.saturating_duration_since(entry.logged_at) < QUIET_FOR {
                entry.unlogged += 1;
                return Verdict::Quiet;
            }
            let same = std::mem::take(&mut entry.unlogged);
            entry.logged_at = now;
            return Verdict::Log {
                same,
                others: std::mem::take(&mut self.overflow),
            };
        }
        if self.by_address.len() >= MAX_ADDRESSES {
            self.by_address
                .retain(|_, entry| now.saturating_duration_since(entry.logged_at) < QUIET_FOR);
            if self.by_address.len() >= MAX_ADDRESSES {
                self.overflow += 1;
                return Verdict::Quiet;
            }
        }
        self.by_address.insert(
            address,
            Entry {
                logged_at: now,
                unlogged: 0,
            },
        );
        Verdict::Log {
            same: 0,
            others: std::mem::take(&mut self.overflow),
        }
    }

    /// How many addresses the table holds.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// An address is logged once a minute, then with the count of its unlogged refusals;
    /// another address is logged independently; an IPv4-mapped address is its IPv4 address.
    #[test]
    fn an_address_is_logged_once_a_minute() {
        let mut refusals = Refusals::new();
        let start = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(refusals.note(a, start), Verdict::Log { same: 0, others: 0 });
        for s in 1..60 {
            let at = start + Duration::from_secs(s);
            assert_eq!(refusals.note(a, at), Verdict::Quiet);
        }
        assert_eq!(
            refusals.note(ip("::ffff:192.0.2.1"), start + Duration::from_secs(59)),
            Verdict::Quiet
        );
        assert_eq!(
            refusals.note(ip("192.0.2.2"), start + Duration::from_secs(30)),
            Verdict::Log { same: 0, others: 0 }
        );
        assert_eq!(
            refusals.note(a, start + QUIET_FOR),
            Verdict::Log {
                same: 60,
                others: 0
            }
        );
        assert_eq!(refusals.note(a, start + QUIET_FOR), Verdict::Quiet);
    }

    /// A scan from more addresses than the table holds cannot grow it: refusals it has no room
    /// for are counted and the count goes with the next logged refusal; stale addresses make
    /// room again.
    #[test]
    fn a_scan_cannot_grow_the_table() {
        let mut refusals = Refusals::new();
        let start = Instant::now();
        let address = |n: usize| IpAddr::from([10, 0, (n >> 8) as u8, n as u8]);
        for n in 0..MAX_ADDRESSES {
            assert!(matches!(
                refusals.note(address(n), start),
                Verdict::Log { .. }
            ));
        }
        for n in 0..1000 {
            let at = start + Duration::from_secs(1);
            let v6 = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n as u16]);
            assert_eq!(refusals.note(v6, at), Verdict::Quiet);
        }
        assert_eq!(refusals.len(), MAX_ADDRESSES);
        let later = start + QUIET_FOR;
        assert_eq!(
            refusals.note(ip("2001:db8::1:0"), later),
            Verdict::Log {
                same: 0,
                others: 1000
            }
        );
        assert_eq!(refusals.len(), 1);
    }
}
