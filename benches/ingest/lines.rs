//! The test lines: fixed-size, numbered and self-checking, so every output record can be traced
//! back to the (connection, sequence) that sent it and compared byte for byte. Two kinds:
//!
//! - **Lines** (`Kind::Line`): `LINE` bytes on the wire, LF included:
//!   `L00042 00001234 00000000075bcd15 ` (connection, sequence, send time in ns as hex: the
//!   *stamp*), then padding whose letters depend on connection and sequence, then LF. Every
//!   byte is printable ASCII, so `default` format writes the body unchanged and the body is
//!   always the last `BODY` bytes of an output record, whatever the receiver puts in front of
//!   it.
//! - **Syslog** (`Kind::Syslog`): an RFC 6587 octet-counted frame, also `LINE` bytes on the
//!   wire, header included and no LF:
//!   `97 <13>1 2026-12-01T16:00:00.000000Z c00042 ingest 4242 ID47 - L00042 00001234 …`:
//!   the count, then an RFC 5424 message (facility user, severity notice) whose HOSTNAME names
//!   the connection (`c` and its number), APP-NAME, PROCID and MSGID are fixed, there is no
//!   structured data, and MSG is the stamp with `SYSLOG_TEXT - 33` letters of padding. A
//!   receiver's record holds the whole message (`parse_syslog`) or its fields, MSG among them
//!   (`parse_text`); the host must name the connection the stamp names.

/// Bytes of one line on the wire, LF included (the S = 100); also of one syslog frame.
pub const LINE: usize = 100;
/// Bytes of one line without its LF: what a receiver writes as the message.
pub const BODY: usize = LINE - 1;
/// Bytes of the stamp: `L00042 00001234 00000000075bcd15 `.
const HEADER: usize = 33;
const PAD: usize = BODY - HEADER;
/// `PAD` letters starting at any offset below 26.
const ALPHABET: &[u8; 26 + PAD] =
    b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmn";

/// What the load generator sends on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// LF-terminated lines.
    Line,
    /// Octet-counted RFC 5424 messages.
    Syslog,
}

/// The octet count in front of every syslog message: the frame is `LINE` bytes in all.
const FRAME_COUNT: &[u8] = b"97 ";
/// Bytes of the syslog message in a frame (its MSG-LEN): what logsinkd's `raw` format writes.
pub const SYSLOG_MSG: usize = LINE - FRAME_COUNT.len();
/// The RFC 5424 header of every message, MSG excluded, with connection 0 in the host.
const SYSLOG_HEADER: &[u8] = b"<13>1 2026-12-01T16:00:00.000000Z c00000 ingest 4242 ID47 - ";
/// Where the connection's five digits are in `SYSLOG_HEADER`.
const SYSLOG_HOST_DIGITS: std::ops::Range<usize> = 35..40;
/// Bytes of MSG: the stamp and its padding.
pub const SYSLOG_TEXT: usize = SYSLOG_MSG - SYSLOG_HEADER.len();
/// How every frame starts: where to look for the next whole frame in an unframed copy.
pub const FRAME_START: &[u8] = b"97 <13>1 ";
/// The TIMESTAMP of every message, as sent.
pub const SYSLOG_TIMESTAMP: &str = "2026-12-01T16:00:00.000000Z";
/// The APP-NAME of every message.
pub const SYSLOG_APP: &str = "ingest";
/// The PROCID of every message.
pub const SYSLOG_PROCID: &str = "4242";
/// The MSGID of every message.
pub const SYSLOG_MSGID: &str = "ID47";
/// Facility and severity of `<13>`, as logsinkd names them.
pub const SYSLOG_FACILITY: &str = "user";
/// See `SYSLOG_FACILITY`.
pub const SYSLOG_SEVERITY: &str = "notice";

const _: () = assert!(SYSLOG_TEXT >= HEADER && SYSLOG_TEXT <= BODY);

/// What a line says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub conn: usize,
    pub seq: usize,
    /// Send time in ns since the bench's clock origin (0 in throughput scenarios).
    pub sent_ns: u64,
}

fn pad_offset(conn: usize, seq: usize) -> usize {
    (conn * 7 + seq * 13) % 26
}

/// Fills `line` (exactly `LINE` bytes) with the line for `stamp`.
pub fn fill(line: &mut [u8], stamp: Stamp) {
    fill_text(&mut line[..BODY], stamp);
    line[BODY] = b'\n';
}

/// Fills `text` (`HEADER` to `BODY` bytes) with the stamp, then padding to its end.
fn fill_text(text: &mut [u8], stamp: Stamp) {
    assert!(
        stamp.conn < 100_000 && stamp.seq < 100_000_000,
        "line numbering out of range"
    );
    text[0] = b'L';
    decimal(&mut text[1..6], stamp.conn as u64);
    text[6] = b' ';
    decimal(&mut text[7..15], stamp.seq as u64);
    text[15] = b' ';
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in text[16..32].iter_mut().enumerate() {
        *b = HEX[((stamp.sent_ns >> (60 - 4 * i)) & 15) as usize];
    }
    text[32] = b' ';
    let off = pad_offset(stamp.conn, stamp.seq);
    let pad = text.len() - HEADER;
    text[HEADER..].copy_from_slice(&ALPHABET[off..off + pad]);
}

/// Fills `frame` (exactly `LINE` bytes) with the octet-counted syslog message for `stamp`.
pub fn fill_frame(frame: &mut [u8], stamp: Stamp) {
    let (count, msg) = frame.split_at_mut(FRAME_COUNT.len());
    count.copy_from_slice(FRAME_COUNT);
    let (header, text) = msg.split_at_mut(SYSLOG_HEADER.len());
    header.copy_from_slice(SYSLOG_HEADER);
    decimal(&mut header[SYSLOG_HOST_DIGITS], stamp.conn as u64);
    fill_text(text, stamp);
}

/// Connection `conn`'s `count` lines or frames `0..count`, with send time 0.
pub fn generate(kind: Kind, conn: usize, count: usize) -> Vec<u8> {
    let mut out = vec![0; count * LINE];
    for (seq, line) in out.chunks_exact_mut(LINE).enumerate() {
        let stamp = Stamp {
            conn,
            seq,
            sent_ns: 0,
        };
        match kind {
            Kind::Line => fill(line, stamp),
            Kind::Syslog => fill_frame(line, stamp),
        }
    }
    out
}

fn decimal(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Reads the stamp of a line body (without LF) and checks that every byte is exactly what was
/// sent for that stamp. `None`: not a whole, intact test line.
pub fn parse(body: &[u8]) -> Option<Stamp> {
    if body.len() != BODY {
        return None;
    }
    parse_text(body)
}

/// Reads the stamp of a text of `HEADER` to `BODY` bytes (a line body, a syslog MSG) and
/// checks every byte of it, padding included.
pub fn parse_text(text: &[u8]) -> Option<Stamp> {
    if !(HEADER..=BODY).contains(&text.len())
        || text[0] != b'L'
        || text[6] != b' '
        || text[15] != b' '
        || text[32] != b' '
    {
        return None;
    }
    let conn = parse_decimal(&text[1..6])? as usize;
    let seq = parse_decimal(&text[7..15])? as usize;
    let mut sent_ns = 0u64;
    for &b in &text[16..32] {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        sent_ns = sent_ns << 4 | digit as u64;
    }
    let off = pad_offset(conn, seq);
    let pad = text.len() - HEADER;
    (text[HEADER..] == ALPHABET[off..off + pad]).then_some(Stamp { conn, seq, sent_ns })
}

/// Reads a whole syslog message as sent (a frame without its octet count, `SYSLOG_MSG`
/// bytes): every byte of its header must be what was sent for the connection its stamp names.
pub fn parse_syslog(msg: &[u8]) -> Option<Stamp> {
    if msg.len() != SYSLOG_MSG {
        return None;
    }
    let (header, text) = msg.split_at(SYSLOG_HEADER.len());
    let stamp = parse_text(text)?;
    let host = SYSLOG_HOST_DIGITS;
    let ok = header[..host.start] == SYSLOG_HEADER[..host.start]
        && parse_decimal(&header[host.clone()])? == stamp.conn as u64
        && header[host.end..] == SYSLOG_HEADER[host.end..];
    ok.then_some(stamp)
}

/// Reads a whole frame as sent (`LINE` bytes, octet count included).
pub fn parse_frame(frame: &[u8]) -> Option<Stamp> {
    frame
        .strip_prefix(FRAME_COUNT)
        .filter(|_| frame.len() == LINE)
        .and_then(parse_syslog)
}

/// The HOSTNAME of connection `conn`'s messages.
pub fn syslog_host(conn: usize) -> String {
    format!("c{conn:05}")
}

/// The MSG of the message for `stamp`, as sent.
pub fn syslog_text(stamp: Stamp) -> Vec<u8> {
    let mut text = vec![0; SYSLOG_TEXT];
    fill_text(&mut text, stamp);
    text
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |v, &b| {
        b.is_ascii_digit().then(|| v * 10 + (b - b'0') as u64)
    })
}

/// Round trips and rejection of damaged lines and frames; run by the smoke mode at start.
pub fn self_check() {
    let mut line = [0u8; LINE];
    let stamp = Stamp {
        conn: 9_999,
        seq: 12_345_678,
        sent_ns: 0xdead_beef,
    };
    fill(&mut line, stamp);
    assert_eq!(line.len(), LINE);
    assert!(
        line[..BODY]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
    );
    assert_eq!(parse(&line[..BODY]), Some(stamp));
    line[50] ^= 1;
    assert_eq!(parse(&line[..BODY]), None);

    let mut frame = [0u8; LINE];
    fill_frame(&mut frame, stamp);
    assert_eq!(
        &frame[..],
        [
            b"97 <13>1 2026-12-01T16:00:00.000000Z c09999 ingest 4242 ID47 - ".as_slice(),
            b"L09999 12345678 00000000deadbeef ",
            &ALPHABET[pad_offset(9_999, 12_345_678)..][..SYSLOG_TEXT - HEADER],
        ]
        .concat()
    );
    assert_eq!(
        FRAME_COUNT,
        format!("{SYSLOG_MSG} ").as_bytes(),
        "the octet count must be the message's length"
    );
    assert_eq!(parse_frame(&frame), Some(stamp));
    assert_eq!(
        parse_text(&frame[LINE - SYSLOG_TEXT..]),
        Some(stamp),
        "MSG carries the stamp"
    );
    assert_eq!(syslog_text(stamp), &frame[LINE - SYSLOG_TEXT..]);
    assert_eq!(syslog_host(stamp.conn).as_bytes(), &frame[37..43]);
    for at in [0, 5, 40, 42, LINE - 1] {
        let mut damaged = frame;
        damaged[at] ^= 1;
        assert_eq!(parse_frame(&damaged), None, "damage at {at} went unseen");
    }
    let mut other_host = frame;
    other_host[42] = b'8';
    assert_eq!(
        parse_frame(&other_host),
        None,
        "the host must name the stamp's connection"
    );
}
