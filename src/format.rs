//! Record formats: how one received line is written out.
//!
//! `default`: `2026-11-23T21:05:01.123456Z 192.0.2.7:51234 <escaped line>`
//! `raw`:     the line's bytes exactly as received, plus LF
//! `json`:    `{"time":"…","peer":"…","line":"<escaped line>"}`, and when the message parsed
//!            as syslog (`parse = "syslog"`) its fields: `facility`, `severity`, `timestamp`,
//!            `hostname`, `app`, `procid`, `msgid`, `sd` (`{"SD-ID":{"name":"value"}}`),
//!            `msg`, each only when the message has it
//! `syslog`:  the classic syslog file layout (what rsyslog's `RSYSLOG_FileFormat` writes):
//!            `TIMESTAMP HOSTNAME TAG: MSG`, the sender's time as RFC 3339 (the receipt time
//!            when it sent none) and its host (else the peer's address), escaped as `default`;
//!            a message that did not parse is `TIMESTAMP HOST <escaped line>`
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

use crate::config::Choice;
use crate::framing::run_lines;
use crate::simd::{self, CopyScan, Stop, first_special};
use crate::syslog_parse::{Message, rfc3339_timestamp, sd_elements, unescape_sd_value};

/// The record formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Default,
    Raw,
    Json,
    Syslog,
}

impl Choice for Format {
    const WHAT: &'static str = "format";
    const CHOICES: &'static [(&'static str, Format)] = &[
        ("default", Format::Default),
        ("raw", Format::Raw),
        ("json", Format::Json),
        ("syslog", Format::Syslog),
    ];
}

impl Format {
    /// True if records show a message's syslog fields, so parsing them is worth its cost.
    pub fn shows_fields(self) -> bool {
        matches!(self, Format::Json | Format::Syslog)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
        Format::Raw => return raw_record(out, line),
        Format::Json => {
            json_open(out, time, peer, line);
            out.push(b'}');
        }
        Format::Syslog => {
            out.extend_from_slice(time);
            out.push(b' ');
            out.extend_from_slice(peer_host(peer));
            out.push(b' ');
            escape_into(out, line);
        }
    }
    out.push(b'\n');
}

/// Appends the `raw` record of `line`: the line and an LF, in one copy.
#[inline]
pub fn raw_record(out: &mut Vec<u8>, line: &[u8]) {
    let len = line.len() + 1;
    out.reserve(len);
    let end = out.len();
    // SAFETY: `reserve` made room for `len` more bytes after `end`; the line and the LF fill
    // exactly them (the line cannot overlap the vector's spare capacity: it is borrowed
    // shared while `out` is borrowed mutably) before the length grows over them.
    unsafe {
        let at = out.as_mut_ptr().add(end);
        std::ptr::copy_nonoverlapping(line.as_ptr(), at, line.len());
        at.add(line.len()).write(b'\n');
        out.set_len(end + len);
    }
}

/// Appends one record for `line`, whose syslog fields are `msg`: as `write_record`, plus the
/// fields in `json` and `syslog` formats.
pub fn write_parsed(
    format: Format,
    out: &mut Vec<u8>,
    time: &[u8],
    peer: &[u8],
    line: &[u8],
    msg: &Message<'_>,
) {
    match format {
        Format::Default | Format::Raw => write_record(format, out, time, peer, line),
        // Nearly every message: no structured data, and nothing in the line to escape.
        Format::Json
            if msg.sd.is_none() && simd::first_stop(line, Stop::JsonSpecial) == line.len() =>
        {
            json_plain(out, time, peer, line, msg)
        }
        Format::Json => {
            let plain = json_open(out, time, peer, line);
            json_fields(out, msg, plain);
            out.extend_from_slice(b"}\n");
        }
        Format::Syslog => {
            if !rfc3339_timestamp(msg, receipt_time(time), out) {
                out.extend_from_slice(time);
            }
            out.push(b' ');
            match msg.hostname {
                Some(host) => escape_into(out, host),
                None => out.extend_from_slice(peer_host(peer)),
            }
            if let Some(app) = msg.app {
                out.push(b' ');
                escape_into(out, app);
                if let Some(pid) = msg.procid {
                    out.push(b'[');
                    escape_into(out, pid);
                    out.push(b']');
                }
                out.push(b':');
            }
            let text = msg.msg_without_bom();
            if !text.is_empty() {
                out.push(b' ');
                escape_into(out, text);
            }
            out.push(b'\n');
        }
    }
}

/// Adds `,"name":"<escaped value>"` to the JSON record that `out` ends with (its `}\n`
/// moved after it): the TLS listeners' `tls_peer` (sink/file.rs).
pub fn json_add_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    debug_assert!(out.ends_with(b"}\n"), "a json record ends with }}\\n");
    out.truncate(out.len() - 2);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    json_string(out, value, false);
    out.extend_from_slice(b"}\n");
}

/// The `json` record of a parsed message whose line needs no escaping and that has no
/// structured data, so every value goes in as it is: the same bytes as `json_open`,
/// `json_fields` and `}` write, put into room reserved once (each value's closing quote is the
/// next key's first byte).
fn json_plain(out: &mut Vec<u8>, time: &[u8], peer: &[u8], line: &[u8], msg: &Message<'_>) {
    // The keys and the longest facility and severity names take 149 bytes; the fields are
    // slices of the line, none overlapping, so they add at most its length again.
    out.reserve(160 + time.len() + peer.len() + 2 * line.len());
    let mut room = Room {
        buf: out.spare_capacity_mut(),
        at: 0,
    };
    room.put(b"{\"time\":\"");
    room.put(time);
    room.put(b"\",\"peer\":\"");
    room.put(peer);
    room.put(b"\",\"line\":\"");
    room.put(line);
    if let Some(pri) = msg.pri {
        room.put(b"\",\"facility\":\"");
        room.put(pri.facility_name().as_bytes());
        room.put(b"\",\"severity\":\"");
        room.put(pri.severity_name().as_bytes());
    }
    let fields = [
        (&b"\",\"timestamp\":\""[..], msg.timestamp),
        (b"\",\"hostname\":\"", msg.hostname),
        (b"\",\"app\":\"", msg.app),
        (b"\",\"procid\":\"", msg.procid),
        (b"\",\"msgid\":\"", msg.msgid),
        (b"\",\"msg\":\"", Some(msg.msg_without_bom())),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            room.put(key);
            room.put(value);
        }
    }
    room.put(b"\"}\n");
    let written = room.at;
    // SAFETY: `Room::put` initialized the first `written` bytes of the spare capacity, one
    // piece after another from its start, and nothing else touched `out` meanwhile.
    unsafe { out.set_len(out.len() + written) };
}

/// Pieces copied one after another into a vector's spare capacity: each checked against the
/// room (a slice bound) rather than grown into, and the short ones copied without a call.
struct Room<'a> {
    buf: &'a mut [std::mem::MaybeUninit<u8>],
    /// Bytes put so far, all initialized.
    at: usize,
}

impl Room<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let dst = &mut self.buf[self.at..self.at + n];
        if (8..=16).contains(&n) {
            // Two eight-byte copies that overlap in the middle.
            uninit_copy(&mut dst[..8], &bytes[..8]);
            uninit_copy(&mut dst[n - 8..], &bytes[n - 8..]);
        } else {
            uninit_copy(dst, bytes);
        }
        self.at += n;
    }
}

/// `dst` initialized with `src` (`MaybeUninit::copy_from_slice`, which is newer than this
/// crate's minimum Rust): one `memcpy`, or a move for a length the compiler knows.
#[inline(always)]
fn uninit_copy(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: both are `len` bytes long (checked above; `MaybeUninit<u8>` is laid out as
    // `u8`), and they cannot overlap: `dst` is borrowed mutably, `src` shared.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len());
    }
}

/// Appends a JSON record's `{"time":"…","peer":"…","line":"…"`, the object left open for
/// more fields; true if the line went in as it is (see `json_string`).
fn json_open(out: &mut Vec<u8>, time: &[u8], peer: &[u8], line: &[u8]) -> bool {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\",\"peer\":\"");
    out.extend_from_slice(peer);
    out.extend_from_slice(b"\",\"line\":");
    json_string(out, line, false)
}

/// Appends the syslog fields `msg` has, each `,"name":"<escaped value>"`. `plain`: the line
/// they are slices of went into the record unchanged, so each of them goes in unchanged too
/// (it is cut from the line at ASCII delimiters, never inside a character) and is copied
/// without a scan: nearly every message, and most of the cost of a parsed record.
fn json_fields(out: &mut Vec<u8>, msg: &Message<'_>, plain: bool) {
    // `,"name":"` whole, so that a field costs three appends (and, plain, no call).
    let field = |out: &mut Vec<u8>, key: &[u8], value: &[u8]| {
        out.extend_from_slice(key);
        if plain {
            out.extend_from_slice(value);
        } else {
            json_text(out, value, false);
        }
        out.push(b'"');
    };
    if let Some(pri) = msg.pri {
        field(out, b",\"facility\":\"", pri.facility_name().as_bytes());
        field(out, b",\"severity\":\"", pri.severity_name().as_bytes());
    }
    let fields = [
        (&b",\"timestamp\":\""[..], msg.timestamp),
        (b",\"hostname\":\"", msg.hostname),
        (b",\"app\":\"", msg.app),
        (b",\"procid\":\"", msg.procid),
        (b",\"msgid\":\"", msg.msgid),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            field(out, key, value);
        }
    }
    if let Some(sd) = msg.sd {
        json_sd(out, sd, plain);
    }
    field(out, b",\"msg\":\"", msg.msg_without_bom());
}

/// Appends `value` escaped (as in `default`) and JSON-quoted, in quotes; true if it went in
/// unchanged. `plain`: the caller knows it does (a slice of a value that did), so it is
/// copied as it is.
fn json_string(out: &mut Vec<u8>, value: &[u8], plain: bool) -> bool {
    out.push(b'"');
    let unchanged = json_text(out, value, plain);
    out.push(b'"');
    unchanged
}

/// `json_string` without the quotes.
#[inline]
fn json_text(out: &mut Vec<u8>, value: &[u8], plain: bool) -> bool {
    let start = out.len();
    // Nearly every value is printable ASCII without `\` or `"`: one scan, one copy.
    if plain || simd::first_stop(value, Stop::JsonSpecial) == value.len() {
        out.extend_from_slice(value);
        return true;
    }
    escape_into(out, value);
    json_quote_in_place(out, start);
    // Escaping and quoting only ever lengthen: the same length is the same bytes.
    out.len() - start == value.len()
}

/// Appends `,"sd":{"SD-ID":{"name":"value",…},…}`, each value with RFC 5424's escapes undone
/// (`plain`: as `json_fields`; a value with an escape has a backslash, so its line is never
/// plain).
fn json_sd(out: &mut Vec<u8>, sd: &[u8], plain: bool) {
    out.extend_from_slice(b",\"sd\":{");
    for (i, element) in sd_elements(sd).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(out, element.id, plain);
        out.extend_from_slice(b":{");
        for (j, (name, value)) in element.params.enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json_string(out, name, plain);
            out.push(b':');
            if value.contains(&b'\\') {
                let mut unescaped = Vec::with_capacity(value.len());
                unescape_sd_value(value, &mut unescaped);
                json_string(out, &unescaped, false);
            } else {
                json_string(out, value, plain);
            }
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// The host part of a peer as written in records: `192.0.2.7` of `192.0.2.7:51234`,
/// `2001:db8::7` of `[2001:db8::7]:51234`; this host's name for a unix peer
/// (`unix:pid=…`), which is local.
pub fn peer_host(peer: &[u8]) -> &[u8] {
    if peer.starts_with(b"unix") {
        return local_hostname().as_bytes();
    }
    let host = match memchr::memrchr(b':', peer) {
        Some(colon) => &peer[..colon],
        None => peer,
    };
    host.strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host)
}

/// This host's name (`gethostname`), looked up once.
pub fn local_hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        match std::str::from_utf8(&buf[..end]) {
            Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
            _ => "localhost".to_string(),
        }
    })
}

/// The receipt time of a record (`2026-11-23T21:05:01.123456Z`, from the clock) as a date,
/// to date a BSD timestamp, which has no year. Only the `syslog` format asks, and only for
/// such a timestamp; a text the clock did not make gives the epoch.
pub(crate) fn receipt_time(time: &[u8]) -> time::OffsetDateTime {
    let parse = || -> Option<time::OffsetDateTime> {
        let number = |at: usize, len: usize| -> Option<u32> {
            std::str::from_utf8(time.get(at..at + len)?)
                .ok()?
                .parse()
                .ok()
        };
        let month = time::Month::try_from(u8::try_from(number(5, 2)?).ok()?).ok()?;
        let date = time::Date::from_calendar_date(
            i32::try_from(number(0, 4)?).ok()?,
            month,
            u8::try_from(number(8, 2)?).ok()?,
        )
        .ok()?;
        let [h, m, s] = [number(11, 2)?, number(14, 2)?, number(17, 2)?].map(|n| n as u8);
        Some(date.with_hms(h, m, s).ok()?.assume_utc())
    };
    parse().unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
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
        for line in run_lines(lines) {
            write_record(format, out, time, peer, line);
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
    // Nearly always none: one vector scan, no copy.
    let Some(first) = memchr::memchr3(b'"', b'\\', b'\t', &out[start..]) else {
        return;
    };
    let text = out.split_off(start + first);
    out.reserve(text.len() + text.len() / 8 + 1);
    let mut at = 0;
    for i in memchr::memchr3_iter(b'"', b'\\', b'\t', &text) {
        out.extend_from_slice(&text[at..i]);
        out.extend_from_slice(match text[i] {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            _ => b"\\t",
        });
        at = i + 1;
    }
    out.extend_from_slice(&text[at..]);
}

/// For the fuzz target `syslog_parse`.
#[cfg(any(test, fuzzing))]
pub mod testing {
    use super::{Format, Message, json_fields, json_open, write_parsed};

    /// A parsed message's `json` record as written, and as the general path writes it (no
    /// plain shortcut): they must be the same bytes.
    pub fn json_both_ways(
        time: &[u8],
        peer: &[u8],
        line: &[u8],
        msg: &Message<'_>,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut written = Vec::new();
        write_parsed(Format::Json, &mut written, time, peer, line, msg);
        let mut general = Vec::new();
        let plain = json_open(&mut general, time, peer, line);
        json_fields(&mut general, msg, plain);
        general.extend_from_slice(b"}\n");
        (written, general)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field added to a json record (`tls_peer`) goes inside its object, escaped; the record
    /// stays one line of valid JSON.
    #[test]
    fn json_field_added_inside_the_record() {
        let mut out = Vec::new();
        write_record(Format::Json, &mut out, b"T", b"127.0.0.1:5", b"line");
        json_add_field(&mut out, "tls_peer", b"web1.example.net\"\n\x1b");
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        // Control characters as the other fields have them: `\x0a`, never raw.
        assert_eq!(value["tls_peer"], "web1.example.net\"\\x0a\\x1b");
        assert_eq!(value["line"], "line");
    }

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

    proptest::proptest! {
        /// The plain path writes a parsed message's `json` record byte for byte as the
        /// general one: syslog-shaped lines (5424 and 3164, with and without PRI, fields of
        /// every length around the eight- and sixteen-byte copies) of printable ASCII.
        #[test]
        fn json_plain_matches_the_general_path(
            pri in proptest::option::of(0u8..=191),
            rfc5424 in proptest::bool::ANY,
            words in proptest::collection::vec("[!#-\\[\\]-~]{1,20}", 4..8),
            text in "[ -!#-\\[\\]-~]{0,40}",
        ) {
            let pri = pri.map(|p| format!("<{p}>")).unwrap_or_default();
            let line = if rfc5424 {
                format!("{pri}1 2026-12-01T16:00:00.123Z {} - {text}", words[..4].join(" "))
            } else {
                format!("{pri}Dec  1 16:00:00 {} {}: {text}", words[0], words[1])
            };
            let line = line.as_bytes();
            proptest::prop_assume!(simd::first_stop(line, Stop::JsonSpecial) == line.len());
            if let Some(msg) = crate::syslog_parse::parse(line).filter(|m| m.sd.is_none()) {
                let mut out = b"before".to_vec();
                json_plain(&mut out, b"2026-12-01T21:00:00.000001Z", b"192.0.2.7:51234", line, &msg);
                let (_, general) = super::testing::json_both_ways(
                    b"2026-12-01T21:00:00.000001Z",
                    b"192.0.2.7:51234",
                    line,
                    &msg,
                );
                proptest::prop_assert_eq!(&out[..6], b"before");
                proptest::prop_assert_eq!(
                    String::from_utf8_lossy(&out[6..]),
                    String::from_utf8_lossy(&general)
                );
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

    /// Parsed messages in `json`: the receipt's time, peer and line, then the sender's fields
    /// that the message has, structured data as objects with escapes undone.
    #[test]
    fn json_with_fields() {
        let line = br#"<165>1 2026-12-01T16:20:01.5+01:00 web-3 app 42 ID7 [ex@1 k="a\"b" n="2"][t@2] hi "there""#;
        let msg = crate::syslog_parse::parse(line).unwrap();
        let mut out = Vec::new();
        write_parsed(Format::Json, &mut out, b"T", b"192.0.2.7:5", line, &msg);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["time"], "T");
        assert_eq!(json["peer"], "192.0.2.7:5");
        // The line escaped as in `default`: its backslash doubled.
        let escaped = String::from_utf8_lossy(line).replace('\\', "\\\\");
        assert_eq!(json["line"], escaped.as_str());
        assert_eq!(json["facility"], "local4");
        assert_eq!(json["severity"], "notice");
        assert_eq!(json["timestamp"], "2026-12-01T16:20:01.5+01:00");
        assert_eq!(json["hostname"], "web-3");
        assert_eq!(json["app"], "app");
        assert_eq!(json["procid"], "42");
        assert_eq!(json["msgid"], "ID7");
        assert_eq!(json["sd"]["ex@1"]["k"], "a\"b");
        assert_eq!(json["sd"]["ex@1"]["n"], "2");
        assert_eq!(json["sd"]["t@2"], serde_json::json!({}));
        assert_eq!(json["msg"], "hi \"there\"");
        // A 3164 message has no msgid or sd: the keys are left out.
        let line = b"<13>Dec  1 16:20:01 host sshd[7]: a\x1bb";
        let msg = crate::syslog_parse::parse(line).unwrap();
        out.clear();
        write_parsed(Format::Json, &mut out, b"T", b"p", line, &msg);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "app",
                "facility",
                "hostname",
                "line",
                "msg",
                "peer",
                "procid",
                "severity",
                "time",
                "timestamp"
            ]
        );
        assert_eq!(json["msg"], "a\\x1bb");
    }

    /// The `syslog` format: the sender's time (a BSD one dated by the receipt), host and tag;
    /// the receipt time and the peer's address for what did not parse, or has no time or host.
    #[test]
    fn syslog_format() {
        let receipt = b"2026-12-01T16:20:01.123456Z".as_slice();
        let record = |peer: &[u8], line: &[u8]| {
            let mut out = Vec::new();
            match crate::syslog_parse::parse(line) {
                Some(msg) => write_parsed(Format::Syslog, &mut out, receipt, peer, line, &msg),
                None => write_record(Format::Syslog, &mut out, receipt, peer, line),
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            record(
                b"192.0.2.7:5",
                b"<13>1 2026-12-01T17:20:01+01:00 web-3 app 42 - - hi\tthere"
            ),
            "2026-12-01T17:20:01+01:00 web-3 app[42]: hi\tthere\n"
        );
        assert_eq!(
            record(b"192.0.2.7:5", b"<13>Dec  1 16:19:59 web-3 sshd: bye\x07"),
            "2026-12-01T16:19:59+00:00 web-3 sshd: bye\\x07\n"
        );
        assert_eq!(
            record(b"[2001:db8::7]:5", b"<13>1 - - - - - - no time"),
            "2026-12-01T16:20:01.123456Z 2001:db8::7 no time\n"
        );
        assert_eq!(
            record(b"192.0.2.7:5", b"just a line"),
            "2026-12-01T16:20:01.123456Z 192.0.2.7 just a line\n"
        );
    }

    /// The host of a peer as written in records.
    #[test]
    fn peer_hosts() {
        assert_eq!(peer_host(b"192.0.2.7:51234"), b"192.0.2.7");
        assert_eq!(peer_host(b"[2001:db8::7]:51234"), b"2001:db8::7");
        assert_eq!(peer_host(b"unix:pid=1,uid=0"), local_hostname().as_bytes());
        assert_eq!(receipt_time(b"2026-12-01T16:20:01.123456Z").year(), 2026);
    }

    proptest::proptest! {
        /// The fields of a parsed line that went into its record unchanged are copied without
        /// a scan: that gives exactly what escaping and quoting each of them gives.
        #[test]
        fn plain_fields_copied_as_escaped(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just("<165>1 2026-12-01T16:20:01.5+01:00 web-3 app 42 ID7 "),
                    proptest::prelude::Just("<13>Dec  1 16:20:01 host sshd[7]: "),
                    proptest::prelude::Just("[ex@1 k=\"v\" n=\"2\"] "),
                    proptest::prelude::Just("- "),
                    proptest::prelude::Just("\u{feff}"),
                    proptest::prelude::Just("é 日本 "),
                    proptest::prelude::Just("\u{202e}"),
                    proptest::prelude::Just("\""),
                    proptest::prelude::Just("\\"),
                    proptest::prelude::Just("\t"),
                    proptest::prelude::Just("x:"),
                    proptest::prelude::Just("%ASA-6-1: "),
                    proptest::prelude::Just(" "),
                ],
                1..8,
            ),
        ) {
            let line = pieces.concat();
            let Some(msg) = crate::syslog_parse::parse(line.as_bytes()) else {
                return Ok(());
            };
            let mut out = Vec::new();
            if json_string(&mut out, line.as_bytes(), false) {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                json_fields(&mut fast, &msg, true);
                json_fields(&mut slow, &msg, false);
                proptest::prop_assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&slow)
                );
            }
        }
    }
}
