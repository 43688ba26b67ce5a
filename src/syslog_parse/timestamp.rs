//! Syslog timestamps: recognising one at the start of a header field, and writing it as
//! RFC 3339 for the `syslog` file format.
//!
//! Two forms are recognised. RFC 3339 (`2026-12-01T16:20:01.123+01:00`), RFC 5424's only
//! form and what rsyslog's forwarding templates put in 3164 framing: checked in full (calendar
//! date, ranges, `T` and `Z` in capitals as RFC 5424 writes them, 1 to 9 fraction digits for
//! the nanosecond senders, an offset). And the BSD form of RFC 3164, with the variants devices
//! send, all seen by rsyslog's `ParseTIMESTAMP3164`: `Mmm dd hh:mm:ss`, the month in any case,
//! the day padded with a space (`Dec  1`) or not (`Dec 1`, `Dec 01`), a year before the month
//! or after the day (`2026 Dec  1 …`, `Dec  1 2026 16:20:01`), a fraction (`.123`), and, in
//! Cisco's framing only, a zone name ending the field (`16:20:01.123 UTC:`; elsewhere a word
//! after the time is the hostname).
//!
//! A BSD time has no year and usually no zone. `rfc3339_timestamp` takes the year from the
//! receipt time: the latest year that does not put the message more than 31 days after its
//! receipt (a December message received in January is last year's; a January message received
//! on 31 December, from a sender a zone ahead, is next year's). A time without a zone is taken
//! to be in the receipt time's offset, so the caller chooses: the receipt in UTC writes
//! `+00:00` (the sender's wall clock, labelled UTC), the receipt in local time reads the time
//! as the receiver's local time, as rsyslog and `syslog_loose` do. A Cisco zone named `UTC`,
//! `GMT` or `UT` is `+00:00`; any other name (`EST`, `CET`: a device's `clock timezone` can
//! be called anything) is no usable time, and the caller writes the receipt time instead.

use time::OffsetDateTime;

use super::Message;

/// The longest RFC 3339 timestamp accepted: `2026-12-01T16:20:01.123456789+01:00`.
pub(super) const MAX_RFC3339: usize = 35;

/// How far after its receipt a BSD time may lie before it is taken to be from the year before.
const MONTH_AHEAD: i64 = 31 * 86_400;

/// A position in a timestamp being scanned.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    /// Steps over `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        self.at += usize::from(next);
        next
    }

    /// The `min..=max` decimal digits next, as a number.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let digits = self.s.get(self.at..)?;
        let n = digits
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        self.at += n;
        Some(
            digits[..n]
                .iter()
                .fold(0, |v, &d| v * 10 + u32::from(d - b'0')),
        )
    }

    /// The `min..=max` decimal number next, if it lies in `range`.
    fn number_in(
        &mut self,
        min: usize,
        max: usize,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u32> {
        self.number(min, max).filter(|n| range.contains(n))
    }
}

/// The length of the RFC 3339 timestamp at the start of `s`, if there is one.
pub(super) fn rfc3339_len(s: &[u8]) -> Option<usize> {
    // `YYYY-MM-DDTHH:MM:SS` has every digit and separator at a fixed place (RFC 3339 allows
    // no other widths): checked at once, then the fraction and the offset.
    let head: &[u8; 19] = s.get(..19)?.try_into().ok()?;
    // Without early exit, so that the compiler checks the 19 bytes together.
    let shaped = head
        .iter()
        .zip(b"dddd-dd-ddTdd:dd:dd")
        .fold(true, |ok, (&b, &shape)| {
            ok & if shape == b'd' {
                b.is_ascii_digit()
            } else {
                b == shape
            }
        });
    if !shaped {
        return None;
    }
    let d = head.map(|b| b.wrapping_sub(b'0'));
    let two = |i: usize| u32::from(d[i]) * 10 + u32::from(d[i + 1]);
    let month = two(5);
    let in_range = (1..=12).contains(&month)
        && (1..=days_in_month(i64::from(two(0) * 100 + two(2)), month)).contains(&two(8))
        && two(11) <= 23
        && two(14) <= 59
        && two(17) <= 60;
    if !in_range {
        return None;
    }
    let mut c = Cursor { s, at: 19 };
    if c.eat(b'.') {
        // TIME-SECFRAC: 1 to 6 digits in RFC 5424, up to 9 as senders write them; only
        // checked, never read.
        let digits = s[c.at..]
            .iter()
            .take(9)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        c.at += digits;
    }
    if !c.eat(b'Z') {
        (c.eat(b'+') || c.eat(b'-')).then_some(())?;
        c.number_in(2, 2, 0..=23)?;
        c.eat(b':').then_some(())?;
        c.number_in(2, 2, 0..=59)?;
    }
    Some(c.at)
}

fn clock(c: &mut Cursor<'_>, hour_digits: usize) -> Option<(u32, u32, u32)> {
    let hour = c.number_in(hour_digits, 2, 0..=23)?;
    c.eat(b':').then_some(())?;
    let minute = c.number_in(2, 2, 0..=59)?;
    c.eat(b':').then_some(())?;
    let second = c.number_in(2, 2, 0..=60)?;
    Some((hour, minute, second))
}

/// A BSD timestamp's parts.
pub(super) struct Bsd<'a> {
    year: Option<u32>,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// The digits after the `.`, if any.
    fraction: &'a [u8],
    /// Cisco's zone name (`UTC`), when it was allowed and present.
    zone: Option<&'a [u8]>,
}

/// The BSD timestamp at the start of `s` and its length; with `zone`, a zone name of 1 to 5
/// letters followed by `:` or the end may follow the time.
pub(super) fn bsd(s: &[u8], zone: bool) -> Option<(Bsd<'_>, usize)> {
    let mut c = Cursor { s, at: 0 };
    let mut year = None;
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        year = Some(c.number_in(4, 4, 1970..=2100)?);
        c.eat(b' ').then_some(())?;
    }
    let month = month(s.get(c.at..c.at + 3)?)?;
    c.at += 3;
    c.eat(b' ').then_some(())?;
    c.eat(b' ');
    let day = c.number_in(1, 2, 1..=31)?;
    c.eat(b' ').then_some(())?;
    if year.is_none() {
        let at = c.at;
        year = c.number_in(4, 4, 1970..=2100).filter(|_| c.eat(b' '));
        if year.is_none() {
            c.at = at;
        }
    }
    let (hour, minute, second) = clock(&mut c, 1)?;
    let mut fraction: &[u8] = &[];
    if c.peek() == Some(b'.') && s.get(c.at + 1).is_some_and(u8::is_ascii_digit) {
        let start = c.at + 1;
        c.at = start;
        c.number(1, 9)?;
        fraction = &s[start..c.at];
    }
    let mut zone_name = None;
    if zone && c.peek() == Some(b' ') {
        let name = s.get(c.at + 1..).unwrap_or_default();
        let n = name
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if (1..=5).contains(&n) && matches!(name.get(n), None | Some(b':')) {
            zone_name = Some(&name[..n]);
            c.at += 1 + n;
        }
    }
    let time = Bsd {
        year,
        month,
        day,
        hour,
        minute,
        second,
        fraction,
        zone: zone_name,
    };
    Some((time, c.at))
}

/// The month of a three-letter English abbreviation in any case.
fn month(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let i = MONTHS.iter().position(|m| name.eq_ignore_ascii_case(*m))?;
    u32::try_from(i + 1).ok()
}

/// The timestamp that starts a 3164 header, RFC 3339 or BSD (a zone name allowed in Cisco's
/// framing), and the text after it: a time ends at a space (stepped over), at the end, or at a
/// `:` before either (`Mar 7 19:06:53: host`, as Cisco and others send).
pub(super) fn header_time(s: &[u8], cisco: bool) -> Option<(&[u8], &[u8])> {
    let len = match rfc3339_len(s) {
        Some(len) => len,
        None => bsd(s, cisco)?.1,
    };
    let (time, mut rest) = s.split_at(len);
    if let Some(after) = rest.strip_prefix(b":") {
        rest = after;
    }
    match rest.first() {
        None => Some((time, rest)),
        Some(b' ') => Some((time, &rest[1..])),
        Some(_) => None,
    }
}

/// Appends `m`'s timestamp to `out` as RFC 3339, for the `syslog` file format (what rsyslog's
/// `RSYSLOG_FileFormat` writes): an RFC 3339 time as sent; a BSD time with its year inferred
/// from `receipt` and, having no zone, in `receipt`'s offset (see the module comment). Returns
/// false, writing nothing, when the message has no usable time (none, or a Cisco zone name
/// other than UTC's, or a 29 February in a year without one); the caller then writes the
/// receipt time.
pub fn rfc3339_timestamp(m: &Message<'_>, receipt: OffsetDateTime, out: &mut Vec<u8>) -> bool {
    let Some(ts) = m.timestamp else {
        return false;
    };
    if rfc3339_len(ts) == Some(ts.len()) {
        out.extend_from_slice(ts);
        return true;
    }
    let Some((t, len)) = bsd(ts, true) else {
        return false;
    };
    if len != ts.len() {
        return false;
    }
    let offset = match t.zone {
        None => i64::from(receipt.offset().whole_seconds()),
        Some(z)
            if [&b"UTC"[..], b"GMT", b"UT"]
                .iter()
                .any(|u| z.eq_ignore_ascii_case(u)) =>
        {
            0
        }
        Some(_) => return false,
    };
    let second_of_day = t.hour * 3600 + t.minute * 60 + t.second;
    let year = match t.year {
        Some(y) => i64::from(y),
        None => infer_year(t.month, t.day, second_of_day, offset, receipt),
    };
    let Ok(year4) = u32::try_from(year) else {
        return false;
    };
    if year4 > 9999 || t.day > days_in_month(year, t.month) {
        return false;
    }
    push_number(out, year4, 4);
    out.push(b'-');
    push_number(out, t.month, 2);
    out.push(b'-');
    push_number(out, t.day, 2);
    out.push(b'T');
    push_number(out, t.hour, 2);
    out.push(b':');
    push_number(out, t.minute, 2);
    out.push(b':');
    push_number(out, t.second, 2);
    if !t.fraction.is_empty() {
        out.push(b'.');
        out.extend_from_slice(t.fraction);
    }
    out.push(if offset < 0 { b'-' } else { b'+' });
    let offset = offset.unsigned_abs();
    push_number(out, (offset / 3600) as u32, 2);
    out.push(b':');
    push_number(out, (offset / 60 % 60) as u32, 2);
    true
}

/// The year of a BSD time without one (`month`, `day`, `second_of_day`), at `offset` seconds
/// east of UTC: the latest of the receipt's year and its neighbours that puts it at most
/// `MONTH_AHEAD` after `receipt`.
pub(super) fn infer_year(
    month: u32,
    day: u32,
    second_of_day: u32,
    offset: i64,
    receipt: OffsetDateTime,
) -> i64 {
    let now = receipt.unix_timestamp();
    let this = i64::from(receipt.year());
    let mut year = this - 1;
    for y in this - 1..=this + 1 {
        // A 29 February of a common year counts as 1 March here; the caller rejects it.
        let at = days_from_civil(y, month, day) * 86_400 + i64::from(second_of_day) - offset;
        if at - now <= MONTH_AHEAD {
            year = y;
        }
    }
    year
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The days in `month` (1..=12) of `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Appends `n` in exactly `width` decimal digits (its lowest ones).
fn push_number(out: &mut Vec<u8>, n: u32, width: u32) {
    for i in (0..width).rev() {
        out.push(b'0' + (n / 10u32.pow(i) % 10) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 times are checked in full: calendar, ranges, capitals, fraction, offset.
    #[test]
    fn rfc3339_forms() {
        for ok in [
            &b"2026-12-01T16:20:01Z"[..],
            b"2026-12-01T16:20:01.123+01:00",
            b"2003-08-24T05:14:15.000003-07:00",
            b"2024-02-29T23:59:60.123456789Z",
        ] {
            assert_eq!(rfc3339_len(ok), Some(ok.len()), "{}", ok.escape_ascii());
        }
        for bad in [
            &b"2026-12-01t16:20:01Z"[..],
            b"2026-12-01T16:20:01z",
            b"2026-12-01T16:20:01",
            b"2026-02-29T16:20:01Z",
            b"2026-13-01T16:20:01Z",
            b"2026-12-01T24:20:01Z",
            b"2026-12-01T16:20:01.Z",
            b"2026-12-01T16:20:01.1234567890Z",
            b"2026-12-01T16:20:01+0100",
            b"2026-12-01 16:20:01Z",
            b"2026-1-01T16:20:01Z",
        ] {
            assert_ne!(rfc3339_len(bad), Some(bad.len()), "{}", bad.escape_ascii());
        }
    }

    /// The BSD variants devices send, and where each ends.
    #[test]
    fn bsd_forms() {
        // (input, Cisco framing, the time, what follows it)
        type Case<'a> = (&'a [u8], bool, &'a [u8], &'a [u8]);
        let cases: [Case; 10] = [
            (b"Dec  1 16:20:01 host", false, b"Dec  1 16:20:01", b"host"),
            (b"Dec 1 16:20:01 host", false, b"Dec 1 16:20:01", b"host"),
            (b"dec 01 16:20:01", false, b"dec 01 16:20:01", b""),
            (
                b"Mar 7 2008 19:06:53: x",
                false,
                b"Mar 7 2008 19:06:53",
                b"x",
            ),
            (
                b"2026 Jun 25 11:27:28 x",
                false,
                b"2026 Jun 25 11:27:28",
                b"x",
            ),
            (
                b"Dec  1 16:20:01.123: %X",
                true,
                b"Dec  1 16:20:01.123",
                b"%X",
            ),
            (
                b"Dec 11 12:43:29.227 EST: %X",
                true,
                b"Dec 11 12:43:29.227 EST",
                b"%X",
            ),
            (
                b"Dec 11 12:43:29 EST: %X",
                false,
                b"Dec 11 12:43:29",
                b"EST: %X",
            ),
            (
                b"Aug 10 22:18:24 2009  x",
                false,
                b"Aug 10 22:18:24",
                b"2009  x",
            ),
            (
                b"2026-12-01T16:20:01Z h",
                false,
                b"2026-12-01T16:20:01Z",
                b"h",
            ),
        ];
        for (s, cisco, time, rest) in cases {
            assert_eq!(
                header_time(s, cisco),
                Some((time, rest)),
                "{}",
                s.escape_ascii()
            );
        }
        for bad in [
            &b"Dex  1 16:20:01"[..],
            b"Dec 32 16:20:01",
            b"Dec  1 16:60:01",
            b"Dec  1 16:20:01x",
            b"Dec  1 16:20",
            b"1 2026-12-01T16:20:01Z",
            b"Dec",
        ] {
            assert_eq!(header_time(bad, true), None, "{}", bad.escape_ascii());
        }
    }

    fn converted(ts: &[u8], receipt: OffsetDateTime) -> Option<String> {
        let m = Message {
            timestamp: Some(ts),
            ..super::super::parse(b"<13>x").expect("parses")
        };
        let mut out = b"before ".to_vec();
        rfc3339_timestamp(&m, receipt, &mut out)
            .then(|| String::from_utf8(out[7..].to_vec()).expect("ASCII"))
    }

    /// BSD times get the year that keeps them at most a month after their receipt, and the
    /// receipt's offset; RFC 3339 times are written as sent.
    #[test]
    fn bsd_to_rfc3339() {
        use time::macros::datetime;
        let june = datetime!(2026-06-15 12:00:00 UTC);
        let january = datetime!(2027-01-02 00:10:00 UTC);
        let new_year = datetime!(2026-12-31 23:30:00 UTC);
        let local = datetime!(2026-06-15 14:00:00 +02:00);
        let newfoundland = datetime!(2026-06-15 14:00:00 -03:30);
        let cases: [(&[u8], OffsetDateTime, Option<&str>); 13] = [
            (b"Jun 15 11:59:58", june, Some("2026-06-15T11:59:58+00:00")),
            (b"Jul  1 00:00:00", june, Some("2026-07-01T00:00:00+00:00")),
            (b"Aug  1 00:00:00", june, Some("2025-08-01T00:00:00+00:00")),
            (
                b"Dec 31 23:59:59",
                january,
                Some("2026-12-31T23:59:59+00:00"),
            ),
            (
                b"Jan  1 00:29:00",
                new_year,
                Some("2027-01-01T00:29:00+00:00"),
            ),
            (
                b"Dec  1 2020 1:02:03.5",
                june,
                Some("2020-12-01T01:02:03.5+00:00"),
            ),
            (b"Jun 15 14:00:00", local, Some("2026-06-15T14:00:00+02:00")),
            (
                b"Jun 15 14:00:00",
                newfoundland,
                Some("2026-06-15T14:00:00-03:30"),
            ),
            (
                b"Jun 15 14:00:00.123 UTC",
                local,
                Some("2026-06-15T14:00:00.123+00:00"),
            ),
            (b"Jun 15 14:00:00 EST", june, None),
            (b"Feb 29 14:00:00", june, None),
            (
                b"2026-12-01T16:20:01.1Z",
                june,
                Some("2026-12-01T16:20:01.1Z"),
            ),
            (b"nonsense", june, None),
        ];
        for (ts, receipt, want) in cases {
            assert_eq!(
                converted(ts, receipt).as_deref(),
                want,
                "{}",
                ts.escape_ascii()
            );
        }
        let leap = datetime!(2028-03-01 00:00:00 UTC);
        assert_eq!(
            converted(b"Feb 29 23:00:00", leap).as_deref(),
            Some("2028-02-29T23:00:00+00:00")
        );
    }

    /// `days_from_civil` agrees with the `time` crate over four centuries.
    #[test]
    fn civil_days() {
        let mut date = time::Date::from_calendar_date(1900, time::Month::January, 1).expect("date");
        while date.year() < 2300 {
            let days = days_from_civil(
                i64::from(date.year()),
                date.month() as u32,
                date.day().into(),
            );
            assert_eq!(days, i64::from(date.to_julian_day()) - 2_440_588, "{date}");
            assert_eq!(
                days_in_month(i64::from(date.year()), date.month() as u32),
                u32::from(date.month().length(date.year()))
            );
            date = date.next_day().expect("next day");
        }
    }
}
