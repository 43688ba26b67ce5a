//! The RFC 3164 scan, and Cisco's framing: what follows a PRI when it is not RFC 5424, or a
//! message without a PRI that starts with a timestamp. It never fails after a PRI: what it
//! does not recognise is message text (the module comment of `syslog_parse` has the rules).

use super::{MAX_HOSTNAME, MAX_PROCID, Message, Pri, Protocol, timestamp};

/// The longest 3164 tag taken as one. RFC 3164 says 32, rsyslog lifted that limit after
/// sysklogd's users sent longer ones; a bound keeps a long word of text from being scanned
/// twice.
const MAX_TAG: usize = 255;

/// The 3164 reading of what follows a PRI; never fails.
pub(super) fn after_pri(pri: Pri, s: &[u8]) -> Message<'_> {
    if let Some(m) = cisco(pri, s) {
        return m;
    }
    let timed = timestamp::header_time(s, false)
        .or_else(|| timestamp::header_time(s.strip_prefix(b" ")?, false));
    if let Some((time, rest)) = timed {
        return after_time(Some(pri), time, rest);
    }
    // Without a tag, only the PRI was read: the rest is the message.
    let tag = tag(s).filter(|t| t.app.is_some()).unwrap_or(Tag::none(s));
    message(Some(pri), None, None, tag)
}

/// A message of which only the PRI was read.
fn unparsed(pri: Pri, msg: &[u8]) -> Message<'_> {
    message(Some(pri), None, None, Tag::none(msg))
}

/// A 3164 message of the parts read.
fn message<'a>(
    pri: Option<Pri>,
    timestamp: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    tag: Tag<'a>,
) -> Message<'a> {
    Message {
        pri,
        protocol: Protocol::Rfc3164,
        timestamp,
        hostname,
        app: tag.app,
        procid: tag.procid,
        msgid: None,
        sd: None,
        msg: tag.rest,
    }
}

/// The rest of a 3164 header after its timestamp: `[HOST SP] [TAG]`, then the message; a
/// host `-` is none, as in RFC 5424.
pub(super) fn after_time<'a>(pri: Option<Pri>, time: &'a [u8], rest: &'a [u8]) -> Message<'a> {
    let (hostname, tag) = match tag(rest) {
        Some(t) => (None, Some(t)),
        None => match host(rest) {
            Some((host, after)) => {
                let host = (host != b"-").then_some(host);
                (host, tag(after).or(Some(Tag::none(after))))
            }
            None => (None, None),
        },
    };
    message(pri, Some(time), hostname, tag.unwrap_or(Tag::none(rest)))
}

/// A 3164 tag and the message after it.
struct Tag<'a> {
    /// None for the empty tag, a lone `:`.
    app: Option<&'a [u8]>,
    procid: Option<&'a [u8]>,
    rest: &'a [u8],
}

impl<'a> Tag<'a> {
    /// No tag: `rest` is the message.
    fn none(rest: &'a [u8]) -> Tag<'a> {
        Tag {
            app: None,
            procid: None,
            rest,
        }
    }
}

/// The tag at the start of `s`: `app:`, `app[pid]:` or `app[pid]`, then a space (stepped
/// over) or the end; or a lone `:`.
fn tag(s: &[u8]) -> Option<Tag<'_>> {
    let n = s
        .iter()
        .take(MAX_TAG + 1)
        .take_while(|&&b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b':' | b'"' | b'{'))
        .count();
    if n > MAX_TAG {
        return None;
    }
    let mut at = n;
    let mut procid = None;
    if s.get(at) == Some(&b'[') {
        let pid = s.get(at + 1..).unwrap_or_default();
        let len = pid
            .iter()
            .take(MAX_PROCID + 1)
            .take_while(|&&b| b.is_ascii_graphic() && !matches!(b, b'[' | b']'))
            .count();
        if n == 0 || len == 0 || len > MAX_PROCID || pid.get(len) != Some(&b']') {
            return None;
        }
        procid = Some(&pid[..len]);
        at += len + 2;
    }
    let colon = s.get(at) == Some(&b':');
    at += usize::from(colon);
    if !colon && procid.is_none() {
        return None;
    }
    let rest = match s.get(at) {
        None => &s[at..],
        Some(b' ') => &s[at + 1..],
        Some(_) => return None,
    };
    Some(Tag {
        app: (n > 0).then_some(&s[..n]),
        procid,
        rest,
    })
}

/// A byte of a 3164 host: a name or an IPv4 or IPv6 address.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':')
}

/// The host at the start of `s`, ended by a space (stepped over) or the end, and what follows.
fn host(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = s
        .iter()
        .take(MAX_HOSTNAME + 1)
        .take_while(|&&b| is_host_byte(b))
        .count();
    match s.get(n) {
        _ if n == 0 || n > MAX_HOSTNAME => None,
        None => Some((s, &s[n..])),
        Some(b' ') => Some((&s[..n], &s[n + 1..])),
        Some(_) => None,
    }
}

/// Cisco's framing after the PRI, if it starts with a counter (`123: `, `: ` from NX-OS) or a
/// marked time (`*Dec  1 …`): its fields, or, after a counter, only the PRI when the rest is
/// not Cisco's shape. None when it does not start so, or a marked time leads nowhere.
fn cisco(pri: Pri, s: &[u8]) -> Option<Message<'_>> {
    if matches!(s.first(), Some(b'*' | b'.')) {
        return cisco_body(pri, s);
    }
    let mut p = counter(s)?;
    if let Some(after) = counter(p) {
        p = after;
    }
    Some(cisco_body(pri, p).unwrap_or(unparsed(pri, s)))
}

/// Digits and `: ` at the start of `s`, and what follows.
fn counter(s: &[u8]) -> Option<&[u8]> {
    let n = s.iter().take(20).take_while(|b| b.is_ascii_digit()).count();
    s[n..].strip_prefix(b": ")
}

/// Cisco's `[ORIGIN: ][[*.]TIME: ]%TAG: MSG` after its counters; a time or a `%` tag needed.
fn cisco_body(pri: Pri, s: &[u8]) -> Option<Message<'_>> {
    let (hostname, s) = match origin(s) {
        Some((host, rest)) => (Some(host), rest),
        None => (None, s),
    };
    let marked = s.strip_prefix(b"*").or_else(|| s.strip_prefix(b"."));
    let (timestamp, s) = match timestamp::header_time(marked.unwrap_or(s), true) {
        Some((time, rest)) => (Some(time), rest),
        None if marked.is_some() => return None,
        None => (None, s),
    };
    let tag = match tag(s) {
        Some(t)
            if t.app
                .is_some_and(|a| timestamp.is_some() || a.starts_with(b"%")) =>
        {
            t
        }
        _ if timestamp.is_some() => Tag::none(s),
        _ => return None,
    };
    Some(message(Some(pri), timestamp, hostname, tag))
}

/// Cisco's origin (`logging origin-id`): a host and `: ` at the start of `s`, not an uptime
/// stamp; and what follows.
fn origin(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = s
        .iter()
        .take(MAX_HOSTNAME + 2)
        .take_while(|&&b| is_host_byte(b))
        .count();
    let host = s[..n].strip_suffix(b":")?;
    if host.is_empty() || host.len() > MAX_HOSTNAME || s.get(n) != Some(&b' ') || uptime(host) {
        return None;
    }
    Some((host, &s[n + 1..]))
}

/// Whether `s` is an IOS uptime stamp (`service timestamps log uptime`): `00:13:28`, `1d02h`,
/// `1w2d`, `1y2w`.
fn uptime(s: &[u8]) -> bool {
    let units = |b: &u8| b"ywdhm".contains(b);
    let clock = s.iter().all(|b| b.is_ascii_digit() || b == &b':') && s.contains(&b':');
    let days = s.first().is_some_and(u8::is_ascii_digit)
        && s.last().is_some_and(units)
        && s.iter().all(|b| b.is_ascii_digit() || units(b));
    clock || days
}
