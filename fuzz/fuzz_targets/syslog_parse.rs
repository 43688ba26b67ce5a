//! The syslog scanner: whatever the bytes, `parse` does not panic, returns only slices of the
//! message, in the header's order with `msg` last and ending it, reads every message that
//! starts with a valid PRI, and its structured data walks (elements, parameters, unescaped
//! values); its `json` record is the same whichever path writes it; a timestamp converts to
//! RFC 3339 that the `time` crate reads back, or the conversion says it cannot and writes
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logsinkd::format::testing::json_both_ways;
use logsinkd::syslog_parse::testing::check_slices;
use logsinkd::syslog_parse::{parse, rfc3339_timestamp, sd_elements, unescape_sd_value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Whether `input` starts with a PRI: `<`, 0 to 191 in 1 to 3 digits without a leading zero,
/// `>`.
fn has_pri(input: &[u8]) -> bool {
    let Some(rest) = input.strip_prefix(b"<") else {
        return false;
    };
    let Some(end) = rest.iter().take(4).position(|&b| b == b'>') else {
        return false;
    };
    let digits = &rest[..end];
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0')
        && std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
            .is_some_and(|v| v <= 191)
}

fuzz_target!(|input: &[u8]| {
    let Some(m) = parse(input) else {
        assert!(!has_pri(input), "a message with a PRI not read");
        return;
    };
    check_slices(input, &m);
    // Its json record: the plain path's bytes are the general path's.
    let (written, general) =
        json_both_ways(b"2026-12-01T21:00:00.000001Z", b"192.0.2.7:5", input, &m);
    assert_eq!(
        written, general,
        "json record differs from the general path's"
    );
    let mut value = Vec::new();
    for element in sd_elements(m.sd.unwrap_or_default()) {
        for (_, v) in element.params {
            value.clear();
            unescape_sd_value(v, &mut value);
            assert!(value.len() <= v.len(), "unescaping grew a value");
        }
    }
    let receipt = OffsetDateTime::from_unix_timestamp(1_795_467_901).expect("a time");
    let mut out = b"before".to_vec();
    if rfc3339_timestamp(&m, receipt, &mut out) {
        let mut time = out.split_off(6);
        // RFC 3339 allows a leap second anywhere, the time crate only at the end of a UTC day.
        if time.get(17..19) == Some(b"60") {
            time[17..19].copy_from_slice(b"59");
        }
        let text = std::str::from_utf8(&time).expect("ASCII");
        assert!(
            OffsetDateTime::parse(text, &Rfc3339).is_ok(),
            "not RFC 3339: {text}"
        );
    } else {
        assert_eq!(out, b"before", "no time, yet something written");
    }
});
