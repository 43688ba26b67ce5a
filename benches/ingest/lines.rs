//! The test lines: fixed-size, numbered and self-checking, so every output line can be traced
//! back to the (connection, sequence) that sent it and compared byte for byte.
//!
//! A line is `LINE` bytes on the wire, its LF included:
//! `L00042 00001234 00000000075bcd15 ` (connection, sequence, send time in ns as hex), then
//! padding whose letters depend on connection and sequence, then LF. Every byte is printable
//! ASCII, so `default` format writes the body unchanged and the body is always the last
//! `BODY` bytes of an output record, whatever the receiver puts in front of it.

/// Bytes of one line on the wire, LF included (the S = 100).
pub const LINE: usize = 100;
/// Bytes of one line without its LF: what a receiver writes as the message.
pub const BODY: usize = LINE - 1;
const HEADER: usize = 33;
const PAD: usize = BODY - HEADER;
/// `PAD` letters starting at any offset below 26.
const ALPHABET: &[u8; 26 + PAD] =
    b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmn";

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
    assert!(
        stamp.conn < 100_000 && stamp.seq < 100_000_000,
        "line numbering out of range"
    );
    line[0] = b'L';
    decimal(&mut line[1..6], stamp.conn as u64);
    line[6] = b' ';
    decimal(&mut line[7..15], stamp.seq as u64);
    line[15] = b' ';
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in line[16..32].iter_mut().enumerate() {
        *b = HEX[((stamp.sent_ns >> (60 - 4 * i)) & 15) as usize];
    }
    line[32] = b' ';
    let off = pad_offset(stamp.conn, stamp.seq);
    line[HEADER..BODY].copy_from_slice(&ALPHABET[off..off + PAD]);
    line[BODY] = b'\n';
}

/// Appends the lines `0..count` of connection `conn`, with send time 0.
pub fn generate(conn: usize, count: usize) -> Vec<u8> {
    let mut out = vec![0; count * LINE];
    for (seq, line) in out.chunks_exact_mut(LINE).enumerate() {
        fill(
            line,
            Stamp {
                conn,
                seq,
                sent_ns: 0,
            },
        );
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
    if body.len() != BODY
        || body[0] != b'L'
        || body[6] != b' '
        || body[15] != b' '
        || body[32] != b' '
    {
        return None;
    }
    let conn = parse_decimal(&body[1..6])? as usize;
    let seq = parse_decimal(&body[7..15])? as usize;
    let mut sent_ns = 0u64;
    for &b in &body[16..32] {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        sent_ns = sent_ns << 4 | digit as u64;
    }
    let off = pad_offset(conn, seq);
    (body[HEADER..] == ALPHABET[off..off + PAD]).then_some(Stamp { conn, seq, sent_ns })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |v, &b| {
        b.is_ascii_digit().then(|| v * 10 + (b - b'0') as u64)
    })
}

/// Round trip and rejection of a damaged line; run by the smoke mode at start.
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
}
