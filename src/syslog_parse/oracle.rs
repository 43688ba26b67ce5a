//! `syslog_loose` (Vector's parser) as an oracle: on generated well-formed RFC 5424 and
//! RFC 3164 messages, the fields `parse` returns agree with those `syslog_loose` returns when
//! it reads the message as the same protocol.
//!
//! The generators stay inside what both should read alike. Where the two differ on purpose,
//! the generator either avoids the case or the test asserts the difference; each one:
//!
//! 1. A 3164 `tag: msg` with no host: `syslog_loose` takes the word as the hostname (unless it
//!    has a `[pid]`); here, as in rsyslog, a word ending in `:` is a tag. Asserted.
//! 2. A word after a 3164 host that is not shaped as a tag (`host some text`): `syslog_loose`
//!    makes it the app name; here it stays message text, since nothing marks it as a tag.
//!    Not generated.
//! 3. `syslog_loose` trims whitespace off both ends of the whole message and strips every
//!    space (and a `:`) between header and text; here `msg` is the rest after one SP, as sent
//!    (indentation, a trailing CR or LF kept: the raw message is never changed). Messages are
//!    generated without whitespace at their ends.
//! 4. `syslog_loose` reads `[id k="v"]` at the start of a 3164 text as structured data, and a
//!    `-` there as nil structured data (`app: -- MARK --` loses a `-`); 3164 has none, so
//!    here both stay in `msg`. Not generated.
//! 5. RFC 5424 strictness: `syslog_loose` accepts several spaces between fields, a space after
//!    `=` in structured data, structured data run into the text, fields over RFC 5424's
//!    limits, `t`/`z` in lower case and fractions of any length; here any of these breaks the
//!    5424 reading, and the message keeps its PRI with the rest as `msg`. Not generated.
//! 6. A message `syslog_loose` cannot read becomes all text, with no PRI; here a valid PRI is
//!    always kept, and PRIs out of range (`<192>`) or with a leading zero are not PRIs at all,
//!    where `syslog_loose` reads any digits.
//! 7. Times: `syslog_loose` needs a year and a zone for a BSD time and takes them from the
//!    caller (here given the same year rule and UTC, so they agree); here the time is handed
//!    out as sent, and converted only by `rfc3339_timestamp`. It does not read fractions, zone
//!    names or Cisco's marks in BSD times; not generated.
//! 8. `syslog_loose` rejects 5424 fields that are a lone `:` and hostnames ending in `:`,
//!    which RFC 5424 allows and `parse` reads. Not generated.
//! 9. A 3164 host here is letters, digits and `.-_:`; `syslog_loose` takes any word. Hosts are
//!    generated from the common set.

use chrono::{DateTime, FixedOffset};
use proptest::prelude::*;
use syslog_loose::{ProcId, Variant};
use time::OffsetDateTime;

use super::testing::check_slices;
use super::{Message, Protocol, parse, rfc3339_timestamp, sd_elements, timestamp};

/// A generated message and what `parse` must make of it (when `syslog_loose` agrees).
#[derive(Debug, Clone)]
struct Case {
    text: String,
    /// 3164 with a tag and neither host nor pid: difference 1.
    bare_tag: bool,
}

/// An RFC 3339 time as senders write it: 1 to 6 fraction digits or none, `Z` or an offset.
fn rfc3339() -> impl Strategy<Value = String> {
    (
        (1970..2100u32, 1..=12u32, 1..=28u32),
        (0..24u32, 0..60u32, 0..60u32),
        prop::option::of("[0-9]{1,6}"),
        prop::option::of((any::<bool>(), 0..24u32, 0..60u32)),
    )
        .prop_map(|((y, mo, d), (h, mi, s), fraction, offset)| {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let offset = match offset {
                None => "Z".to_string(),
                Some((east, oh, om)) => format!("{}{oh:02}:{om:02}", if east { '+' } else { '-' }),
            };
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{offset}")
        })
}

/// A BSD time: the day padded with a space or a zero or not, with a year after the day or not.
fn bsd() -> impl Strategy<Value = String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    (
        (0..12usize, 1..=28u32, 0..3u8),
        prop::option::of(1970..2100u32),
        (0..24u32, 0..60u32, 0..60u32),
    )
        .prop_map(|((mo, d, pad), year, (h, mi, s))| {
            let day = match pad {
                0 => format!("{d:2}"),
                1 => format!("{d:02}"),
                _ => d.to_string(),
            };
            let year = year.map(|y| format!("{y} ")).unwrap_or_default();
            format!("{} {day} {year}{h:02}:{mi:02}:{s:02}", MONTHS[mo])
        })
}

/// A 5424 field of 1 to `max` printable US-ASCII bytes, or `-`, never a lone `:` nor ending in
/// `:` (difference 8).
fn field(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("-".to_string()),
        4 => proptest::string::string_regex(&format!("([!-~]{{0,{}}}[!-9;-~])", max - 1))
            .expect("regex"),
    ]
}

/// 5424 STRUCTURED-DATA: `-` or one to three elements with escapes, an unescaped `]`, UTF-8.
fn structured_data() -> impl Strategy<Value = String> {
    let name = || proptest::string::string_regex(r"[!#-<>-\\^-~]{1,32}").expect("regex");
    let value = prop::collection::vec(
        prop_oneof![
            proptest::string::string_regex(r"[a-zA-Z0-9 =\]\[é]{1,5}").expect("regex"),
            Just(r#"\""#.to_string()),
            Just(r"\\".to_string()),
            Just(r"\]".to_string()),
            Just(r"\n".to_string()),
        ],
        0..4,
    )
    .prop_map(|v| v.concat());
    let param = (name(), value).prop_map(|(n, v)| format!(" {n}=\"{v}\""));
    let element = (name(), prop::collection::vec(param, 0..3))
        .prop_map(|(id, params)| format!("[{id}{}]", params.concat()));
    prop_oneof![
        1 => Just("-".to_string()),
        3 => prop::collection::vec(element, 1..4).prop_map(|e| e.concat()),
    ]
}

/// Message text with no whitespace at its ends (difference 3), LFs inside allowed.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[!-Z\\\\-~é]([ -~\n]{0,40}[!-~])?").expect("regex")
}

/// Well-formed RFC 5424 messages.
fn rfc5424() -> impl Strategy<Value = Case> {
    (
        0..=191u8,
        prop_oneof![1 => Just("-".to_string()), 4 => rfc3339()],
        (field(255), field(48), field(128), field(32)),
        structured_data(),
        prop::option::of((any::<bool>(), text())),
    )
        .prop_map(|(pri, time, (host, app, procid, msgid), sd, msg)| {
            let msg = match msg {
                None => String::new(),
                Some((bom, m)) => format!(" {}{m}", if bom { "\u{feff}" } else { "" }),
            };
            Case {
                text: format!("<{pri}>1 {time} {host} {app} {procid} {msgid} {sd}{msg}"),
                bare_tag: false,
            }
        })
}

/// Well-formed RFC 3164 messages: BSD or RFC 3339 time, host or not, `tag:` or
/// `tag[pid]:`, text not starting with `[` or `-` (difference 4).
fn rfc3164() -> impl Strategy<Value = Case> {
    (
        0..=191u8,
        prop_oneof![bsd(), rfc3339()],
        prop::option::of("[a-z0-9][a-z0-9.-]{0,15}"),
        "[A-Za-z][A-Za-z0-9_./()-]{0,15}",
        prop::option::of("[1-9][0-9]{0,6}"),
        text().prop_filter("not structured data", |t| !t.starts_with(['[', '-'])),
    )
        .prop_map(|(pri, time, host, tag, pid, msg)| {
            let bare_tag = host.is_none() && pid.is_none();
            let host = host.map(|h| format!("{h} ")).unwrap_or_default();
            let pid = pid.map(|p| format!("[{p}]")).unwrap_or_default();
            Case {
                text: format!("<{pri}>{time} {host}{tag}{pid}: {msg}"),
                bare_tag,
            }
        })
}

/// `bytes` as text (the generators make only UTF-8).
fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("generated UTF-8")
}

/// Our time as `rfc3339_timestamp` writes it, read by chrono.
fn our_time(m: &Message<'_>, receipt: OffsetDateTime) -> Option<DateTime<FixedOffset>> {
    let mut out = Vec::new();
    if !rfc3339_timestamp(m, receipt, &mut out) {
        return None;
    }
    Some(DateTime::parse_from_rfc3339(utf8(&out)).expect("rfc3339_timestamp writes RFC 3339"))
}

/// Asserts `parse` and `syslog_loose` agree on `case` (with the deliberate differences).
fn agree(case: &Case, receipt: OffsetDateTime) -> Result<(), TestCaseError> {
    let input = case.text.as_bytes();
    let ours = parse(input).expect("a PRI always parses");
    check_slices(input, &ours);
    let year = |(month, day, h, mi, s): syslog_loose::IncompleteDate| {
        let second_of_day = h * 3600 + mi * 60 + s;
        let y = timestamp::infer_year(month, day, second_of_day, 0, receipt);
        i32::try_from(y).expect("a year")
    };
    let theirs = syslog_loose::parse_message_with_year_exact_tz(
        &case.text,
        year,
        Some(chrono::Utc),
        Variant::Either,
    )
    .map_err(|e| TestCaseError::fail(format!("syslog_loose: {e}")))?;
    let protocol = match theirs.protocol {
        syslog_loose::Protocol::RFC5424(_) => Protocol::Rfc5424,
        syslog_loose::Protocol::RFC3164 => Protocol::Rfc3164,
    };
    prop_assert_eq!(ours.protocol, protocol);
    let pri = ours.pri.expect("a PRI");
    prop_assert_eq!(theirs.facility.map(|f| f as u8), Some(pri.facility));
    prop_assert_eq!(theirs.severity.map(|s| s as u8), Some(pri.severity));
    let our_time = our_time(&ours, receipt);
    prop_assert_eq!(
        our_time.map(|t| (t, t.offset().local_minus_utc())),
        theirs.timestamp.map(|t| (t, t.offset().local_minus_utc()))
    );
    let (host, app) = match case.bare_tag {
        // Difference 1: the bare tag is syslog_loose's hostname.
        true => {
            prop_assert_eq!(theirs.appname, None);
            (None, theirs.hostname)
        }
        false => (theirs.hostname, theirs.appname),
    };
    prop_assert_eq!(ours.hostname.map(utf8), host);
    prop_assert_eq!(ours.app.map(utf8), app);
    prop_assert_eq!(ours.procid.map(|p| ProcId::from(utf8(p))), theirs.procid);
    prop_assert_eq!(ours.msgid.map(utf8), theirs.msgid);
    let our_sd: Vec<(&str, Vec<(&str, &str)>)> = sd_elements(ours.sd.unwrap_or_default())
        .map(|e| {
            (
                utf8(e.id),
                e.params.map(|(n, v)| (utf8(n), utf8(v))).collect(),
            )
        })
        .collect();
    let their_sd: Vec<(&str, Vec<(&str, &str)>)> = theirs
        .structured_data
        .iter()
        .map(|e| (e.id, e.params.clone()))
        .collect();
    prop_assert_eq!(our_sd, their_sd);
    prop_assert_eq!(utf8(ours.msg), theirs.msg);
    Ok(())
}

/// A receipt time between 2000 and 2090, in UTC.
fn receipt() -> impl Strategy<Value = OffsetDateTime> {
    (946_684_800..3_786_912_000i64)
        .prop_map(|t| OffsetDateTime::from_unix_timestamp(t).expect("in range"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Well-formed RFC 5424 messages: the same fields as `syslog_loose`.
    #[test]
    fn rfc5424_agrees(case in rfc5424(), receipt in receipt()) {
        agree(&case, receipt)?;
    }

    /// Well-formed RFC 3164 messages: the same fields as `syslog_loose`, but for a bare tag
    /// (difference 1).
    #[test]
    fn rfc3164_agrees(case in rfc3164(), receipt in receipt()) {
        agree(&case, receipt)?;
    }
}
