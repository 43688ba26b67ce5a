//! Syslog fields of a received message (`parse = "syslog"`): one pass over the header of an
//! RFC 5424 or RFC 3164 message, returning slices of it; no allocation, no UTF-8 check, the
//! message text after the header is not looked at.
//!
//! A message (one line, one octet-counted frame or one datagram) is scanned as rsyslog's
//! parser chain does: after a valid `<PRI>` (0 to 191, at most three digits, no leading zero
//! but in `<0>`), RFC 5424 is tried only when `1 ` follows; anything else, and a 5424 message
//! that breaks the grammar further on, is scanned as RFC 3164, whose scan never rejects: what
//! it does not recognise is message text. So a message with a valid PRI always parses, with at
//! least `pri` and `msg`; without a PRI it parses only when it starts with a timestamp (rsyslog
//! would assume `user.notice`; the writer decides), else `parse` returns None and the record
//! is written as without `parse`.
//!
//! RFC 5424 (`<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG]`) is
//! checked in full: each field one SP apart, `-` for none, printable US-ASCII within RFC 5424's
//! limits (`MAX_HOSTNAME` …), the timestamp and the structured data well formed (`timestamp`,
//! `sd`). A break anywhere gives up the whole 5424 reading: the 3164 scan then finds no
//! timestamp in `1 …` and returns `pri` and `msg` = all after the PRI. rsyslog keeps the
//! fields read before the break instead; a record's fields here are either a valid header's
//! or none, and no byte is lost. MSG keeps its UTF-8 BOM as sent, as RFC 5424's grammar has it
//! (`Message::msg_without_bom` drops it).
//!
//! RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`) as real senders write it:
//! - the timestamp: BSD or RFC 3339, with the variants of `timestamp.rs`; one space between the
//!   PRI and it, as HP ProCurve and Aruba send, is stepped over;
//! - HOST is missing as often as not (`<13>Dec  1 16:20:01 sshd[42]: …`): a word ending in
//!   `:` or holding `[pid]` is the tag, a host does not; a host is made of letters, digits and
//!   `.-_:` (IPv6 included), and a lone `-` is none;
//! - the tag is `app:`, `app[pid]:` or `app[pid]` and a space (or the end); `app` is printable
//!   ASCII but for `[]:"{` (so JSON text is not a tag), at most `MAX_TAG` bytes. A word that is
//!   not so shaped after the host is message text, not a tag (rsyslog and `syslog_loose` take
//!   the word after the host as the tag whatever it is); a lone `:` is an empty tag. Without a
//!   timestamp, a tag right after the PRI is still taken (`<27>xapi: …`, `<166>%ASA-6-302013:
//!   …`); anything else there is message text;
//! - Cisco IOS: `<189>123: *Dec  1 16:20:01.123 UTC: %SYS-5-CONFIG_I: Configured …`. The
//!   message counter, the second number `service sequence-numbers` adds (`123: 000045: `), the
//!   origin `logging origin-id` adds (`123: host: `, becoming `hostname`), the `*` (clock not
//!   set) or `.` (not in sync) before the time, a year (`Dec  1 2026 …`), milliseconds and a
//!   zone name (`show-timezone`) are all recognised; the numbers are dropped, not kept in any
//!   field. After a counter, either this whole shape is found (a time, or a `%FAC-SEV-MNEMONIC:`
//!   tag) or nothing is: an uptime stamp (`123: 00:13:28: %SYS…`) leaves everything after the
//!   PRI as message text.
//!
//! After the tag and its one space, the rest is `msg`, LFs (a Java stack trace) and all.

mod rfc3164;
mod sd;
mod timestamp;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

use crate::simd::{Stop, first_stop};

pub use sd::{SdElement, SdElements, SdParams, sd_elements, unescape_sd_value};
pub use timestamp::rfc3339_timestamp;

/// RFC 5424's limit on HOSTNAME (section 6), also the longest 3164 host or Cisco origin.
const MAX_HOSTNAME: usize = 255;
/// RFC 5424's limit on APP-NAME.
const MAX_APP_NAME: usize = 48;
/// RFC 5424's limit on PROCID, also the longest 3164 `[pid]`.
const MAX_PROCID: usize = 128;
/// RFC 5424's limit on MSGID.
const MAX_MSGID: usize = 32;

/// A message's priority: `<PRI>` is `facility * 8 + severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pri {
    /// 0..=23 (`kern` … `local7`).
    pub facility: u8,
    /// 0..=7 (`emerg` … `debug`).
    pub severity: u8,
}

/// The facility names syslog uses (as rsyslog's `syslogfacility-text`), by number.
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// The severity names syslog uses, by number.
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl Pri {
    /// The priority of a PRI value, if it is one (0..=191).
    pub fn from_value(value: u8) -> Option<Pri> {
        (value <= 191).then_some(Pri {
            facility: value / 8,
            severity: value % 8,
        })
    }

    /// The PRI value, `facility * 8 + severity`.
    pub fn value(&self) -> u8 {
        self.facility.wrapping_mul(8).wrapping_add(self.severity)
    }

    /// The facility's name: `kern`, `user`, … `solaris-cron`, `local0` … `local7`
    /// (`unknown` for a number out of range, which `parse` never gives).
    pub fn facility_name(&self) -> &'static str {
        FACILITIES
            .get(usize::from(self.facility))
            .copied()
            .unwrap_or("unknown")
    }

    /// The severity's name: `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info`,
    /// `debug` (`unknown` for a number out of range, which `parse` never gives).
    pub fn severity_name(&self) -> &'static str {
        SEVERITIES
            .get(usize::from(self.severity))
            .copied()
            .unwrap_or("unknown")
    }
}

/// Which grammar a message was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 5424, the whole header valid.
    Rfc5424,
    /// RFC 3164 and its variants, or a PRI followed by text not read as either.
    Rfc3164,
}

/// The syslog fields of one message, each a slice of it, in the message's order (but for a
/// Cisco origin, which comes before the time). A field is None when the message does not have
/// it or sends RFC 5424's nil `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// None when the message has no `<PRI>`.
    pub pri: Option<Pri>,
    /// The grammar the header was read with.
    pub protocol: Protocol,
    /// Exactly as sent: `2026-12-01T16:20:01.123+01:00`, `Dec  1 16:20:01`,
    /// `Dec  1 2026 16:20:01.123 UTC` (without Cisco's `*` or `.` before it, or the `:` after
    /// it); always a valid RFC 3339 or BSD time (see `rfc3339_timestamp`).
    pub timestamp: Option<&'a [u8]>,
    /// 5424 HOSTNAME, 3164 HOST, Cisco's origin.
    pub hostname: Option<&'a [u8]>,
    /// 5424 APP-NAME, 3164 TAG without `[pid]` and `:`.
    pub app: Option<&'a [u8]>,
    /// 5424 PROCID, the 3164 tag's `[pid]`.
    pub procid: Option<&'a [u8]>,
    /// 5424 MSGID (3164 has none).
    pub msgid: Option<&'a [u8]>,
    /// 5424 STRUCTURED-DATA as sent, checked well formed (`sd_elements` walks it).
    pub sd: Option<&'a [u8]>,
    /// The text after the header, to the end of the message: 5424 after the structured data
    /// and one SP (a UTF-8 BOM kept), 3164 after `TAG: ` or `TAG[pid]: ` (one SP), or after
    /// whatever part of the header was recognised.
    pub msg: &'a [u8],
}

impl<'a> Message<'a> {
    /// `msg` without the UTF-8 BOM that may start a 5424 MSG.
    pub fn msg_without_bom(&self) -> &'a [u8] {
        self.msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(self.msg)
    }
}

/// The syslog fields of `message` (see the module comment), or None when it has neither a
/// valid PRI nor a timestamp at its start.
pub fn parse(message: &[u8]) -> Option<Message<'_>> {
    let Some((pri, rest)) = pri(message) else {
        let (time, rest) = timestamp::header_time(message, false)?;
        return Some(rfc3164::after_time(None, time, rest));
    };
    let m5424 = rest
        .strip_prefix(b"1 ")
        .and_then(|header| rfc5424(pri, header));
    Some(m5424.unwrap_or_else(|| rfc3164::after_pri(pri, rest)))
}

/// The `<PRI>` at the start of `m`, and what follows it.
fn pri(m: &[u8]) -> Option<(Pri, &[u8])> {
    let rest = m.strip_prefix(b"<")?;
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits)
        || (digits > 1 && rest[0] == b'0')
        || rest.get(digits) != Some(&b'>')
    {
        return None;
    }
    let value = rest[..digits]
        .iter()
        .fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'));
    let pri = Pri::from_value(u8::try_from(value).ok()?)?;
    Some((pri, &rest[digits + 1..]))
}

/// An RFC 5424 header after `<PRI>1 `, if it is valid to its end.
fn rfc5424(pri: Pri, s: &[u8]) -> Option<Message<'_>> {
    let (timestamp, s) = field(s, timestamp::MAX_RFC3339)?;
    if timestamp.is_some_and(|t| timestamp::rfc3339_len(t) != Some(t.len())) {
        return None;
    }
    let (hostname, s) = field(s, MAX_HOSTNAME)?;
    let (app, s) = field(s, MAX_APP_NAME)?;
    let (procid, s) = field(s, MAX_PROCID)?;
    let (msgid, s) = field(s, MAX_MSGID)?;
    let (sd, s) = match s.first() {
        Some(b'-') => (None, &s[1..]),
        _ => {
            let len = sd::structured_data_len(s)?;
            (Some(&s[..len]), &s[len..])
        }
    };
    let msg = match s.first() {
        None => s,
        Some(b' ') => &s[1..],
        Some(_) => return None,
    };
    Some(Message {
        pri: Some(pri),
        protocol: Protocol::Rfc5424,
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        sd,
        msg,
    })
}

/// A 5424 header field and the text after its SP: 1 to `max` printable US-ASCII bytes, None
/// for `-`.
fn field(s: &[u8], max: usize) -> Option<(Option<&[u8]>, &[u8])> {
    // A field longer than `max` is no field: the scan need not look further.
    let len = first_stop(&s[..s.len().min(max + 1)], Stop::NotGraphic);
    if len == 0 || len > max || s.get(len) != Some(&b' ') {
        return None;
    }
    let value = &s[..len];
    Some(((value != b"-").then_some(value), &s[len + 1..]))
}

/// Helpers shared by the property tests and the fuzz target (built with `--cfg fuzzing`).
#[cfg(any(test, fuzzing))]
pub mod testing {
    use super::{Message, Protocol, sd_elements};

    /// Checks that every slice of `m` lies inside `input`, without overlap, in the header's
    /// order (a Cisco origin may come before the time), that `msg` ends `input`, and that the
    /// structured data walks into slices of itself.
    pub fn check_slices(input: &[u8], m: &Message<'_>) {
        let start = |f: &[u8]| (f.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
        let mut fields = [
            m.timestamp,
            m.hostname,
            m.app,
            m.procid,
            m.msgid,
            m.sd,
            Some(m.msg),
        ];
        if let (Protocol::Rfc3164, Some(t), Some(h)) = (m.protocol, m.timestamp, m.hostname) {
            if start(h) < start(t) {
                fields.swap(0, 1);
            }
        }
        let mut at = 0;
        for f in fields.into_iter().flatten() {
            assert!(
                start(f) >= at && start(f) + f.len() <= input.len(),
                "a field outside the input or out of order: {m:?}"
            );
            at = start(f) + f.len();
        }
        assert_eq!(at, input.len(), "msg does not end the input: {m:?}");
        if let Some(sd) = m.sd {
            let inside =
                |f: &[u8]| start(f) >= start(sd) && start(f) + f.len() <= start(sd) + sd.len();
            assert!(sd_elements(sd).count() > 0, "sd with no element: {m:?}");
            for e in sd_elements(sd) {
                assert!(inside(e.id), "sd id outside the sd");
                for (name, value) in e.params {
                    assert!(inside(name) && inside(value), "sd param outside the sd");
                }
            }
        }
    }
}
