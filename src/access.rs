//! Who may send: a listener's `allow` list (which clients it serves) and `proxy_from` list
//! (which load balancers may send it a PROXY protocol header, see proxy_header.rs), and the
//! rate-limited log of the clients turned away.
//!
//! A TCP client outside `allow` is closed right after accept with a reset (`SO_LINGER` 0: no
//! TIME_WAIT left behind for a scanner) and never takes a connection slot; a datagram from
//! outside it is dropped. On a PROXY listener the address matched is the original client's,
//! from the header. IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`, a v4 client of a dual-stack
//! `[::]` socket) match IPv4 entries. Allow-lists filter, they do not authenticate: a UDP
//! source address is the sender's word.
//!
//! Unix-domain listeners are governed by their socket file's mode and group instead: the
//! top-level `allow` does not apply to them, and an `allow` in a unix listener's table is a
//! config error.
//!
//! Each turned-away address is logged the first time, then only counted: one summary line a
//! minute says how many more there were. The set of addresses already logged holds at most
//! `SEEN_MAX`; once it is full (a flood of forged UDP sources), further new addresses are
//! counted without being logged, and the set is emptied at the next summary. Memory stays
//! bounded whatever arrives.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ipnet::IpNet;

use crate::diag::{info, warning};

/// Most distinct addresses logged one by one between summaries: about 40 KiB at most. A
/// flood of forged sources past it is counted, not remembered.
pub const SEEN_MAX: usize = 1024;
/// How often the repeats are summarized (when there were any).
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// A list of networks (`10.0.0.0/8`, `2001:db8::/32`) and single addresses (`127.0.0.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Reads `list`, the value of `key`; a bad entry is an error naming the key and the
    /// entry, an empty list one too (it would turn every client away: leave the key out to
    /// serve all).
    pub fn parse(key: &str, list: &[String]) -> Result<AllowList> {
        if list.is_empty() {
            bail!(
                "key `{key}`: an empty list would turn every client away; leave the key out to \
                 accept any address"
            );
        }
        let nets = list
            .iter()
            .map(|entry| {
                let text = entry.trim();
                text.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "key `{key}`: `{entry}` is not an address or a CIDR block (such as \
                             10.0.0.0/8, 2001:db8::/32 or 127.0.0.1)"
                        )
                    })
            })
            .collect::<Result<_>>()?;
        Ok(AllowList(nets))
    }

    /// True if `ip` is in the list. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is
    /// also matched as the IPv4 address it maps.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v4 = ip.to_canonical();
        self.0
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&v4))
    }

    /// The entries as `--check-config` prints them (`10.0.0.0/8`, `127.0.0.1/32`).
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(IpNet::to_string).collect()
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries().join(", "))
    }
}

/// Who may send to one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// The clients served (`allow`); `None`: any.
    pub allow: Option<Arc<AllowList>>,
    /// With `proxy_protocol` on (TCP listeners only): the load balancers that may send a
    /// PROXY header, and so every connection must start with one. `None`: off.
    pub proxy_from: Option<Arc<AllowList>>,
}

/// What becomes of a TCP client just accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A connection like any other.
    Serve,
    /// A connection whose PROXY header is read first (its `allow` is matched then).
    ReadHeader,
    /// Reset at once, and why.
    TurnAway(Turned, &'static str),
}

impl Access {
    /// True if `ip` may send (it is in `allow`, or there is none).
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.as_ref().is_none_or(|list| list.contains(ip))
    }

    /// Whether a TCP client from `ip` is served, must send a PROXY header first (it is a
    /// balancer in `proxy_from`), or is turned away.
    pub fn admit(&self, ip: IpAddr) -> Admission {
        match &self.proxy_from {
            Some(from) if from.contains(ip) => Admission::ReadHeader,
            Some(_) => Admission::TurnAway(
                Turned::Refused,
                "not in proxy_from (the load balancers that may send a PROXY header)",
            ),
            None if self.allows(ip) => Admission::Serve,
            None => Admission::TurnAway(Turned::Denied, "not in allow"),
        }
    }
}

/// Why a client was turned away, for the log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// Its address is not in the listener's `allow`.
    Denied,
    /// On a PROXY listener: not from `proxy_from`, or no valid header in time.
    Refused,
}

/// The log of turned-away clients of one kind (`Turned`): each address once, then a summary
/// a minute (see the module's doc for the bound).
#[derive(Debug)]
pub struct TurnedAwayLog {
    kind: Turned,
    /// Addresses already logged, at most `SEEN_MAX`.
    seen: HashSet<IpAddr>,
    /// Turned away since the last summary without a line of their own.
    repeats: u64,
    /// Of those, from addresses not remembered because `seen` was full.
    unremembered: u64,
    /// When the next summary is due (set by the first repeat after one).
    summary_at: Option<Instant>,
}

impl TurnedAwayLog {
    pub fn new(kind: Turned) -> TurnedAwayLog {
        TurnedAwayLog {
            kind,
            seen: HashSet::new(),
            repeats: 0,
            unremembered: 0,
            summary_at: None,
        }
    }

    /// `ip` was turned away at `now`: logs `line()` if it is the first time for it, else
    /// counts it for the summary. True if it was logged.
    pub fn note(&mut self, now: Instant, ip: IpAddr, line: impl FnOnce() -> String) -> bool {
        let ip = ip.to_canonical();
        let first = if self.seen.contains(&ip) {
            false
        } else if self.seen.len() < SEEN_MAX {
            self.seen.insert(ip);
            true
        } else {
            self.unremembered += 1;
            false
        };
        if first {
            let what = match self.kind {
                Turned::Denied => "denied",
                Turned::Refused => "refused",
            };
            warning!(
                "{}; further ones from {ip} are counted ({what}= in the statistics) and \
                 summarized once a minute",
                line()
            );
            return true;
        }
        self.repeats += 1;
        self.summary_at.get_or_insert(now + SUMMARY_EVERY);
        false
    }

    /// When the next summary is due, for the poll timeout.
    pub fn summary_at(&self) -> Option<Instant> {
        self.summary_at
    }

    /// Logs the summary if it is due at `now`; true if it did. A full set of remembered
    /// addresses is emptied then.
    pub fn summarize(&mut self, now: Instant) -> bool {
        if self.summary_at.is_none_or(|at| at > now) {
            return false;
        }
        self.summary_at = None;
        let (n, other) = (
            std::mem::take(&mut self.repeats),
            std::mem::take(&mut self.unremembered),
        );
        let what = match self.kind {
            Turned::Denied => "denied (not in allow)",
            Turned::Refused => "refused (PROXY protocol)",
        };
        let others = match other {
            0 => String::new(),
            k => format!(
                "; {k} of them from addresses past the {SEEN_MAX} logged one by one, which \
                 are forgotten now"
            ),
        };
        info!(
            "{n} more clients {what} in the last {} s{others}",
            SUMMARY_EVERY.as_secs()
        );
        if self.seen.len() >= SEEN_MAX {
            self.seen.clear();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let owned: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowList::parse("allow", &owned).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Networks, single addresses, both families; IPv4-mapped peers match IPv4 entries.
    #[test]
    fn matching() {
        let allow = list(&["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"]);
        assert!(allow.contains(ip("10.200.0.1")));
        assert!(allow.contains(ip("127.0.0.1")));
        assert!(!allow.contains(ip("127.0.0.2")));
        assert!(!allow.contains(ip("11.0.0.1")));
        assert!(allow.contains(ip("2001:db8:1::7")));
        assert!(!allow.contains(ip("2001:db9::7")));
        assert!(allow.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!allow.contains(ip("::ffff:11.1.2.3")));
        assert!(!allow.contains(ip("::1")));
        let v6 = list(&["::1", "::ffff:0:0/96"]);
        assert!(v6.contains(ip("::1")));
        assert!(
            v6.contains(ip("::ffff:192.0.2.1")),
            "a v6 entry for mapped addresses"
        );
        assert_eq!(
            list(&["10.1.2.3/8", " 192.0.2.1 "]).entries(),
            ["10.0.0.0/8", "192.0.2.1/32"]
        );
    }

    /// A bad entry is refused naming the key and the entry; so is an empty list.
    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0",
            "example.com",
            "",
            "10.0.0.0/8/8",
            "::g",
        ] {
            let err = AllowList::parse("allow", &[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("key `allow`: `{bad}`")), "{err}");
        }
        let err = AllowList::parse("proxy_from", &[]).unwrap_err().to_string();
        assert!(err.contains("key `proxy_from`: an empty list"), "{err}");
    }

    /// A PROXY listener takes only its balancers, whose `allow` waits for the header; a
    /// plain one takes `allow`.
    #[test]
    fn admission() {
        let plain = Access {
            allow: Some(Arc::new(list(&["10.0.0.0/8"]))),
            proxy_from: None,
        };
        assert_eq!(plain.admit(ip("10.0.0.1")), Admission::Serve);
        assert!(matches!(
            plain.admit(ip("11.0.0.1")),
            Admission::TurnAway(Turned::Denied, _)
        ));
        assert_eq!(Access::default().admit(ip("11.0.0.1")), Admission::Serve);
        let proxied = Access {
            proxy_from: Some(Arc::new(list(&["192.0.2.1"]))),
            ..plain
        };
        assert_eq!(
            proxied.admit(ip("192.0.2.1")),
            Admission::ReadHeader,
            "not in allow"
        );
        assert!(matches!(
            proxied.admit(ip("10.0.0.1")),
            Admission::TurnAway(Turned::Refused, _)
        ));
    }

    /// Each address is logged once; repeats are summarized once a minute; a flood of new
    /// addresses past `SEEN_MAX` is counted, not remembered, and the set is emptied at the
    /// summary.
    #[test]
    fn each_address_once_then_a_summary() {
        let start = Instant::now();
        let mut log = TurnedAwayLog::new(Turned::Denied);
        let a = ip("192.0.2.1");
        assert!(log.note(start, a, || "first".into()));
        assert!(!log.note(start, a, || unreachable!()));
        assert!(
            !log.note(start, ip("::ffff:192.0.2.1"), || unreachable!()),
            "mapped"
        );
        assert_eq!(log.summary_at(), Some(start + SUMMARY_EVERY));
        assert!(!log.summarize(start + SUMMARY_EVERY / 2));
        assert!(log.summarize(start + SUMMARY_EVERY));
        assert_eq!(log.summary_at(), None, "nothing to summarize");
        assert!(!log.note(start, a, || unreachable!()), "still remembered");
        for n in 0..(SEEN_MAX as u32 * 4) {
            log.note(
                start,
                IpAddr::from(((n + 1) << 8).to_be_bytes()),
                String::new,
            );
        }
        assert_eq!(log.seen.len(), SEEN_MAX, "bounded");
        assert_eq!(log.unremembered, SEEN_MAX as u64 * 3 + 1);
        assert!(log.summarize(start + SUMMARY_EVERY));
        assert!(log.seen.is_empty(), "a full set is emptied at the summary");
        assert!(log.note(start, a, || "again".into()));
    }
}
