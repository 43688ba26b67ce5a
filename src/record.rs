//! Record formats: how one received line is written out.
//!
//! `default`: `2026-11-23T21:05:01.123456Z 192.0.2.7:51234 <escaped line>`
//! `raw`:     the line's bytes exactly as received, plus LF
//! `json`:    `{"time":"…","peer":"…","line":"<escaped line>"}`
//!
//! Escaping makes a record safe to `cat` and `grep`: no client can end a record early, forge
//! another peer's record or send terminal escape sequences. Printable ASCII, tab and valid UTF-8
//! text (other than C1 controls) pass through; a backslash becomes `\\`; any other byte becomes
//! `\xHH`. The JSON `line` holds exactly the escaped text of `default`, so both formats decode
//! to the same thing and JSON stays valid whatever the bytes.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The record formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Default,
    Raw,
    Json,
}

impl Format {
    pub const NAMES: &'static str = "default, raw or json";

    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "default" => Some(Format::Default),
            "raw" => Some(Format::Raw),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Default => "default",
            Format::Raw => "raw",
            Format::Json => "json",
        })
    }
}

/// Appends one record for `line` to `out`.
pub fn write_record(format: Format, out: &mut Vec<u8>, time: &[u8], peer: &[u8], line: &[u8]) {
    match format {
        Format::Default => {
            out.reserve(time.len() + peer.len() + line.len() + 3);
            out.extend_from_slice(time);
            out.push(b' ');
            out.extend_from_slice(peer);
            out.push(b' ');
            escape_into(out, line);
        }
        Format::Raw => out.extend_from_slice(line),
        Format::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            out.extend_from_slice(time);
            out.extend_from_slice(b"\",\"peer\":\"");
            out.extend_from_slice(peer);
            out.extend_from_slice(b"\",\"line\":\"");
            let start = out.len();
            escape_into(out, line);
            json_quote_in_place(out, start);
            out.extend_from_slice(b"\"}");
        }
    }
    out.push(b'\n');
}

/// Appends the records of `lines`: whole lines, each ending in LF, none holding a CR, all
/// received at `time` from `peer`. The same bytes as `write_record` line by line, but the
/// common case, a line of printable ASCII, costs one scan and two copies: the shared
/// `time peer ` prefix, then the line with its LF straight from the read buffer.
pub fn write_records(format: Format, out: &mut Vec<u8>, time: &[u8], peer: &[u8], lines: &[u8]) {
    let mut start = 0;
    if format != Format::Default {
        for end in memchr::memchr_iter(b'\n', lines) {
            write_record(format, out, time, peer, &lines[start..end]);
            start = end + 1;
        }
        return;
    }
    let mut prefix = Vec::with_capacity(time.len() + peer.len() + 2);
    prefix.extend_from_slice(time);
    prefix.push(b' ');
    prefix.extend_from_slice(peer);
    prefix.push(b' ');
    for end in memchr::memchr_iter(b'\n', lines) {
        let line = &lines[start..end];
        out.reserve(prefix.len() + line.len() + 1);
        out.extend_from_slice(&prefix);
        if plain_len(line) == line.len() {
            out.extend_from_slice(&lines[start..=end]);
        } else {
            escape_into(out, line);
            out.push(b'\n');
        }
        start = end + 1;
    }
}

/// True for the bytes that pass through escaping unchanged on their own.
#[inline]
fn is_plain(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && b != b'\\' || b == b'\t'
}

/// Bytes checked at once by `plain_len`: one SSE2/NEON register.
const CHUNK: usize = 16;

/// True if every byte of the chunk is printable ASCII other than `\`. Written without early
/// exit so that the compiler turns it into a few vector compares; tabs (plain, but rare) are
/// left to the byte-wise path.
#[inline]
fn chunk_is_printable(chunk: &[u8; CHUNK]) -> bool {
    let mut special = 0u8;
    for &b in chunk {
        special |= (b.wrapping_sub(b' ') > b'~' - b' ') as u8 | (b == b'\\') as u8;
    }
    special == 0
}

/// Length of the longest prefix of `s` made of plain bytes.
#[inline]
fn plain_len(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + CHUNK) {
        if chunk_is_printable(chunk.try_into().expect("CHUNK bytes")) {
            i += CHUNK;
            continue;
        }
        // Something in this chunk needs a closer look (it may only be a tab).
        for &b in chunk {
            if !is_plain(b) {
                return i;
            }
            i += 1;
        }
    }
    i + s[i..].iter().take_while(|&&b| is_plain(b)).count()
}

/// Appends `line` escaped (see the module comment).
pub fn escape_into(out: &mut Vec<u8>, line: &[u8]) {
    let mut rest = line;
    loop {
        // The common case, a whole line of printable ASCII, is one scan and one copy.
        let plain = plain_len(rest);
        out.extend_from_slice(&rest[..plain]);
        rest = &rest[plain..];
        let Some(&b) = rest.first() else { break };
        if b == b'\\' {
            out.extend_from_slice(b"\\\\");
            rest = &rest[1..];
        } else if b >= 0x80 {
            let n = utf8_char_len(rest);
            if n > 0 && !is_c1_control(&rest[..n]) {
                out.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            } else {
                hex_escape(out, b);
                rest = &rest[1..];
            }
        } else {
            hex_escape(out, b);
            rest = &rest[1..];
        }
    }
}

fn hex_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

/// Length of the valid UTF-8 character at the start of `s`, or 0 if it is not one.
fn utf8_char_len(s: &[u8]) -> usize {
    let n = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 0,
    };
    match s.get(..n).map(std::str::from_utf8) {
        Some(Ok(_)) => n,
        _ => 0,
    }
}

/// U+0080..U+009F: C1 controls, which terminals obey (U+009B is CSI) and so are escaped.
fn is_c1_control(ch: &[u8]) -> bool {
    ch.len() == 2 && ch[0] == 0xc2 && ch[1] < 0xa0
}

/// JSON-quotes the escaped text `out[start..]`: it holds only tab, printable ASCII and valid
/// UTF-8, so only `"`, `\` and tab need escaping.
fn json_quote_in_place(out: &mut Vec<u8>, start: usize) {
    let extra = out[start..]
        .iter()
        .filter(|&&b| matches!(b, b'"' | b'\\' | b'\t'))
        .count();
    if extra == 0 {
        return;
    }
    let text = out.split_off(start);
    out.reserve(text.len() + extra);
    for b in text {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// The receipt time as RFC 3339 UTC text with microseconds, formatted once per second by the
/// `time` crate and patched for the microseconds in between.
pub struct Clock {
    second: i64,
    text: [u8; 27],
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            second: i64::MIN,
            text: [b'0'; 27],
        }
    }
}

impl Clock {
    /// The current time, as `2026-11-23T21:05:01.123456Z`.
    pub fn now(&mut self) -> &[u8] {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.at(since.as_secs() as i64, since.subsec_micros())
    }

    fn at(&mut self, second: i64, micros: u32) -> &[u8] {
        if second != self.second {
            let t = time::OffsetDateTime::from_unix_timestamp(second)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let fmt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let date = t.format(&fmt).unwrap_or_default();
            self.text[..19].copy_from_slice(&date.as_bytes()[..19]);
            self.text[19] = b'.';
            self.text[26] = b'Z';
            self.second = second;
        }
        let mut m = micros;
        for i in (20..26).rev() {
            self.text[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(line: &[u8]) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, line);
        String::from_utf8(out).unwrap()
    }

    /// Control bytes, backslashes, invalid UTF-8 and C1 controls are escaped; text is kept.
    #[test]
    fn escaping() {
        assert_eq!(esc(b"plain text\tok"), "plain text\tok");
        assert_eq!(esc(b"\x1b[31mred\x7f"), "\\x1b[31mred\\x7f");
        assert_eq!(esc(b"back\\slash"), "back\\\\slash");
        assert_eq!(esc(b"bad \xff \xc3"), "bad \\xff \\xc3");
        assert_eq!(esc("grüße €".as_bytes()), "grüße €");
        assert_eq!(esc("csi \u{9b}".as_bytes()), "csi \\xc2\\x9b");
        assert_eq!(esc(b"nul\0cr\r"), "nul\\x00cr\\x0d");
    }

    /// The chunked scan escapes exactly like the byte-wise rule, wherever the special byte sits.
    #[test]
    fn escaping_any_position() {
        fn bytewise(line: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            for &b in line {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    _ if is_plain(b) => out.push(b),
                    _ => hex_escape(&mut out, b),
                }
            }
            out
        }
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 99] {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(esc(&base).as_bytes(), base.as_slice());
            for pos in 0..len {
                for special in [b'\t', b'\\', 0x00, 0x1f, 0x7f, 0xff, b' ', b'~'] {
                    let mut line = base.clone();
                    line[pos] = special;
                    assert_eq!(
                        esc(&line).into_bytes(),
                        bytewise(&line),
                        "len {len} pos {pos} byte {special:#x}"
                    );
                }
            }
        }
    }

    /// Records of a run of lines are exactly the records of its lines one by one.
    #[test]
    fn runs_match_single_records() {
        let (t, p) = (
            b"2026-11-23T21:05:01.123456Z".as_slice(),
            b"192.0.2.7:51234".as_slice(),
        );
        let run: &[u8] =
            b"plain\n\nesc\x1b[1m and \\ and \xff\nlonger line of printable text, 40 bytes\n";
        for format in [Format::Default, Format::Raw, Format::Json] {
            let (mut one, mut all) = (Vec::new(), Vec::new());
            for line in run[..run.len() - 1].split(|&b| b == b'\n') {
                write_record(format, &mut one, t, p, line);
            }
            write_records(format, &mut all, t, p, run);
            assert_eq!(
                String::from_utf8_lossy(&all),
                String::from_utf8_lossy(&one),
                "{format}"
            );
        }
    }

    /// Each format's exact shape.
    #[test]
    fn formats() {
        let (t, p) = (
            b"2026-11-23T21:05:01.123456Z".as_slice(),
            b"192.0.2.7:51234".as_slice(),
        );
        let mut out = Vec::new();
        write_record(Format::Default, &mut out, t, p, b"hi\x01");
        write_record(Format::Raw, &mut out, t, p, b"hi\x01");
        write_record(Format::Json, &mut out, t, p, b"a\"b\\c\td\xff");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-23T21:05:01.123456Z 192.0.2.7:51234 hi\\x01\n\
             hi\x01\n\
             {\"time\":\"2026-11-23T21:05:01.123456Z\",\"peer\":\"192.0.2.7:51234\",\
             \"line\":\"a\\\"b\\\\\\\\c\\td\\\\xff\"}\n"
        );
    }

    /// The cached clock text is right across second changes.
    #[test]
    fn clock_text() {
        let mut c = Clock::default();
        assert_eq!(c.at(1_795_467_901, 123_456), b"2026-11-23T21:05:01.123456Z");
        assert_eq!(c.at(1_795_467_901, 7), b"2026-11-23T21:05:01.000007Z");
        assert_eq!(c.at(1_795_467_902, 999_999), b"2026-11-23T21:05:02.999999Z");
    }
}
