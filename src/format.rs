//! Record formats: how one received line is written out.
//!
//! `default`: `2026-11-23T21:05:01.123456Z 192.0.2.7:51234 <escaped line>`
//! `raw`:     the line's bytes exactly as received, plus LF
//! `json`:    `{"time":"…","peer":"…","line":"<escaped line>"}`
//!
//! Escaping makes a record safe to `cat` and `grep`: no client can end a record early, forge
//! another peer's record or send terminal escape sequences. Printable ASCII, tab and valid UTF-8
//! text pass through, except C1 controls (each byte becomes `\xHH`) and the characters that
//! change how the text around them is displayed: the Unicode bidirectional embeddings,
//! overrides and isolates (U+202A-U+202E, U+2066-U+2069), which can make a record read as
//! something else in a terminal or viewer, and the line and paragraph separators (U+2028,
//! U+2029), which some viewers break lines at; these become `\u202e` (four lowercase hex
//! digits). A backslash becomes `\\`, so a client sending the text `\u202e` gets `\\u202e`
//! and every escape stays unambiguous; any other byte becomes `\xHH`. The JSON `line` holds
//! exactly the escaped text of `default`, so both formats decode to the same thing and JSON
//! stays valid whatever the bytes.

use std::fmt;

use crate::simd::{self, CopyScan, first_special};

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
/// common case, a line of printable ASCII, costs a copy of the shared `time peer ` prefix and
/// one pass over the line that copies it while finding both its end and that it needs no
/// escaping (32 bytes at a time where the CPU has AVX2, else 16).
pub fn write_records(format: Format, out: &mut Vec<u8>, time: &[u8], peer: &[u8], lines: &[u8]) {
    let len = time.len() + peer.len() + 2;
    // A prefix over PREFIX_ROOM never comes from logsinkd's own times and peers.
    if format != Format::Default || len > PREFIX_ROOM {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', lines) {
            write_record(format, out, time, peer, &lines[start..end]);
            start = end + 1;
        }
        return;
    }
    // The prefix, padded so that its copy is a fixed number of vector stores, not a call.
    let mut prefix = [0u8; PREFIX_ROOM];
    prefix[..time.len()].copy_from_slice(time);
    prefix[time.len()] = b' ';
    prefix[time.len() + 1..len - 1].copy_from_slice(peer);
    prefix[len - 1] = b' ';
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2() {
        // SAFETY: the CPU was just found to support AVX2.
        return unsafe { write_default_avx2(out, &prefix, len, lines) };
    }
    // SAFETY: `Baseline` runs on any CPU.
    unsafe { write_default::<simd::Baseline>(out, &prefix, len, lines) };
}

/// Room for the `time peer ` prefix of a `default` record: 27 + 1 + up to 58 + 1 bytes (the
/// longest peer is an IPv6 address with a zone index).
const PREFIX_ROOM: usize = 96;

/// `write_default` with `Avx2` steps, built for AVX2 so that they inline into its loop.
///
/// # Safety
/// The CPU must have AVX2 (`simd::has_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn write_default_avx2(
    out: &mut Vec<u8>,
    prefix: &[u8; PREFIX_ROOM],
    len: usize,
    lines: &[u8],
) {
    // SAFETY: the caller promises AVX2, all that `Avx2` needs.
    unsafe { write_default::<simd::Avx2>(out, prefix, len, lines) };
}

/// `write_records` in `default` format, `C::LEN` bytes a step. `prefix[..len]` is the prefix.
///
/// # Safety
/// The CPU must have what `C` needs (see `CopyScan::copy_scan`).
#[inline(always)]
unsafe fn write_default<C: CopyScan>(
    out: &mut Vec<u8>,
    prefix: &[u8; PREFIX_ROOM],
    len: usize,
    lines: &[u8],
) {
    let mut start = 0;
    while start < lines.len() {
        let rest = &lines[start..];
        // Room for the padded prefix and for every whole chunk of `rest`, each stored before it
        // is checked (`rest` is at most one read, so this only checks the capacity).
        out.reserve(PREFIX_ROOM + rest.len());
        let base = out.len();
        let mut i = 0;
        let mut plain = None;
        // SAFETY: `base + PREFIX_ROOM + rest.len()` bytes are allocated (reserved above). The
        // prefix store writes `PREFIX_ROOM` bytes at `base`; step `i` reads `rest[i..i + LEN]`
        // (in bounds by the loop condition) and writes as many at `base + len + i`, below
        // `base + len + rest.len()`, into spare capacity that `rest` does not overlap; the
        // CPU has what `C` needs, as the caller promises. The mask's bits are below `LEN`
        // (`CopyScan`), so `plain` lies in the bytes just stored.
        let line = unsafe {
            let dst = out.as_mut_ptr().add(base);
            std::ptr::copy_nonoverlapping(prefix.as_ptr(), dst, PREFIX_ROOM);
            let line = dst.add(len);
            while i + C::LEN <= rest.len() {
                let mask = C::copy_scan(rest.as_ptr().add(i), line.add(i));
                if mask != 0 {
                    plain = Some(i + mask.trailing_zeros() as usize);
                    break;
                }
                i += C::LEN;
            }
            line
        };
        // Past the last whole chunk (the end of the run): a scan, then a copy.
        let plain = plain.unwrap_or_else(|| {
            let n = i + first_special(&rest[i..]);
            let upto = if rest.get(n) == Some(&b'\n') {
                n + 1
            } else {
                n
            };
            // SAFETY: `rest[i..upto]` is in bounds and lands below `base + len + rest.len()`.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr().add(i), line.add(i), upto - i) };
            n
        });
        let end = if rest.get(plain) == Some(&b'\n') {
            // SAFETY: the prefix and `rest[..=plain]` (the LF included) were stored above.
            unsafe { out.set_len(base + len + plain + 1) };
            plain
        } else {
            // Something to escape (or a tab) before the LF; the plain start is already out.
            // SAFETY: the prefix and `rest[..plain]` were stored above.
            unsafe { out.set_len(base + len + plain) };
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            escape_into(out, &rest[plain..end]);
            out.push(b'\n');
            end
        };
        start += end + 1;
    }
}

/// Length of the longest prefix of `s` made of plain bytes (printable ASCII but `\`, and tab).
#[inline]
fn plain_len(s: &[u8]) -> usize {
    let mut i = 0;
    loop {
        i += first_special(&s[i..]);
        if s.get(i) != Some(&b'\t') {
            return i;
        }
        i += 1;
    }
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
                match display_control(&rest[..n]) {
                    Some(code) => unicode_escape(out, code),
                    None => out.extend_from_slice(&rest[..n]),
                }
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

/// Appends `\uXXXX` (lowercase hex) for a character below U+10000.
fn unicode_escape(out: &mut Vec<u8>, code: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digit = |shift: u16| HEX[usize::from((code >> shift) & 15)];
    out.extend_from_slice(&[b'\\', b'u', digit(12), digit(8), digit(4), digit(0)]);
}

/// The code point of `ch` (one valid UTF-8 character) if it is one that changes how the text
/// around it is displayed, and so is escaped: U+2028 LINE SEPARATOR, U+2029 PARAGRAPH
/// SEPARATOR, U+202A-U+202E (bidirectional embeddings, overrides and their end, PDF) and
/// U+2066-U+2069 (bidirectional isolates and their end, PDI). In UTF-8 these are E2 80 A8-AE
/// and E2 81 A6-A9.
fn display_control(ch: &[u8]) -> Option<u16> {
    let [0xe2, second @ (0x80 | 0x81), third] = *ch else {
        return None;
    };
    let code = 0x2000 | (u16::from(second & 0x0f) << 6) | u16::from(third & 0x3f);
    matches!(code, 0x2028..=0x202e | 0x2066..=0x2069).then_some(code)
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

    /// The characters that change how text around them displays.
    const DISPLAY_CONTROLS: [char; 11] = [
        '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
        '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ];

    /// True if `text` holds one of `DISPLAY_CONTROLS`.
    fn has_display_control(text: &[u8]) -> bool {
        String::from_utf8_lossy(text)
            .chars()
            .any(|c| DISPLAY_CONTROLS.contains(&c))
    }

    /// Bidirectional controls and line/paragraph separators become `\uXXXX`; their neighbours
    /// in the same block (U+2027, U+202F, U+2065, U+206A) and other text pass; a client's own
    /// `\u202e` text keeps its backslash escaped, so it cannot pass for an escape.
    #[test]
    fn display_controls_escaped() {
        for c in DISPLAY_CONTROLS {
            let line = format!("a{c}b");
            assert_eq!(esc(line.as_bytes()), format!("a\\u{:04x}b", c as u32));
        }
        assert_eq!(esc("\u{202e}".as_bytes()), "\\u202e");
        for c in [
            '\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}', '\u{2000}', '\u{207f}',
        ] {
            let line = format!("a{c}b");
            assert_eq!(esc(line.as_bytes()), line);
        }
        assert_eq!(esc("é 日本 🦀".as_bytes()), "é 日本 🦀");
        assert_eq!(esc(b"\\u202e"), "\\\\u202e");
    }

    /// The chunked scan escapes exactly like the byte-wise rule, wherever the special byte sits.
    #[test]
    fn escaping_any_position() {
        fn is_plain(b: u8) -> bool {
            (b' '..=b'~').contains(&b) && b != b'\\' || b == b'\t'
        }
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
                for special in [
                    b'\t', b'\\', 0x00, 0x1f, b'\r', 0x7f, 0x80, 0xc2, 0xff, b' ', b'~',
                ] {
                    let mut line = base.clone();
                    line[pos] = special;
                    assert_eq!(
                        esc(&line).into_bytes(),
                        bytewise(&line),
                        "len {len} pos {pos} byte {special:#x}"
                    );
                }
                let mut line = base.clone();
                line.splice(pos..pos, "\u{202e}".bytes());
                let mut expected = base.clone();
                expected.splice(pos..pos, *b"\\u202e");
                assert_eq!(
                    esc(&line).into_bytes(),
                    expected,
                    "len {len} pos {pos} U+202E"
                );
            }
        }
    }

    /// The records of a run of lines, in every format.
    fn run_both_ways(format: Format, run: &[u8]) -> (String, String) {
        run_both_ways_from(format, run, b"192.0.2.7:51234")
    }

    /// Records of `run` from `peer` written as a run and line by line. In `default` format
    /// the run is also written by the 16-byte path, which this CPU may not otherwise take,
    /// and must come out the same.
    fn run_both_ways_from(format: Format, run: &[u8], peer: &[u8]) -> (String, String) {
        let time = b"2026-11-23T21:05:01.123456Z".as_slice();
        let (mut one, mut all) = (Vec::new(), Vec::new());
        for line in run[..run.len() - 1].split(|&b| b == b'\n') {
            write_record(format, &mut one, time, peer, line);
        }
        write_records(format, &mut all, time, peer, run);
        let len = time.len() + peer.len() + 2;
        if format == Format::Default && len <= PREFIX_ROOM {
            let mut prefix = [0u8; PREFIX_ROOM];
            prefix[..len].copy_from_slice(&[time, b" ", peer, b" "].concat());
            let mut narrow = Vec::new();
            // SAFETY: `Baseline` runs on any CPU.
            unsafe { write_default::<simd::Baseline>(&mut narrow, &prefix, len, run) };
            assert_eq!(narrow, all, "16-byte path");
        }
        (
            String::from_utf8_lossy(&all).into_owned(),
            String::from_utf8_lossy(&one).into_owned(),
        )
    }

    /// Records of a run of lines are exactly the records of its lines one by one.
    #[test]
    fn runs_match_single_records() {
        let run: &[u8] =
            b"plain\n\nesc\x1b[1m and \\ and \xff\nlonger line of printable text, 40 bytes\n";
        for format in [Format::Default, Format::Raw, Format::Json] {
            let (all, one) = run_both_ways(format, run);
            assert_eq!(all, one, "{format}");
        }
        // The longest peer text there is (IPv6 with a zone index) still fits the fixed
        // prefix; a longer one (not from a socket address) takes the plain path.
        let longest = b"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535";
        let prefix_len = "2026-11-23T21:05:01.123456Z ".len() + longest.len() + " ".len();
        assert!(prefix_len <= PREFIX_ROOM);
        for peer in [longest.as_slice(), &[b'p'; PREFIX_ROOM]] {
            let (all, one) = run_both_ways_from(Format::Default, run, peer);
            assert_eq!(all, one);
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// The same for any run: lines of any length with anything but CR in them, among them
        /// characters that change how text displays (whole, or cut short); and no such
        /// character reaches a `default` or `json` record.
        #[test]
        fn any_run_matches_single_records(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        8 => proptest::prelude::Just(vec![b'a']),
                        1 => proptest::prelude::Just(vec![b'\t']),
                        1 => proptest::prelude::Just(vec![b'\\']),
                        1 => proptest::num::u8::ANY.prop_map(|b| vec![b]),
                        1 => (proptest::sample::select(DISPLAY_CONTROLS.to_vec()), 1..=3usize)
                            .prop_map(|(c, keep)| c.to_string().as_bytes()[..keep].to_vec()),
                    ],
                    0..70,
                ),
                1..6,
            ),
        ) {
            let mut run = Vec::new();
            for line in &lines {
                run.extend(line.concat().into_iter().filter(|&b| b != b'\n' && b != b'\r'));
                run.push(b'\n');
            }
            for format in [Format::Default, Format::Raw, Format::Json] {
                let (all, one) = run_both_ways(format, &run);
                if format != Format::Raw {
                    proptest::prop_assert!(!has_display_control(all.as_bytes()), "{all:?}");
                }
                proptest::prop_assert_eq!(all, one);
            }
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
}
