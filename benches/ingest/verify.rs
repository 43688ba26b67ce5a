//! Checks an output file line by line against what the load generator sent.
//!
//! logsinkd and rsyslogd frame lines, so their output must hold each (connection, sequence)
//! exactly once, byte for byte intact, in order per connection; anything else fails the run.
//! The reference server does not frame: it appends whatever each read returned, so where
//! two connections' reads meet, a line of one is spliced into a line of the other. For it the
//! fair check is the byte total (nothing lost, nothing added) plus the share of lines that came
//! out whole, reported as its splice rate; it is not failed for splicing, which is the price
//! of not framing that logsinkd does not pay.

use crate::lines::{self, BODY};

/// How a receiver writes each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `TIME PEER BODY` (logsinkd `default`): the peer must be the sending connection's.
    Stamped,
    /// `BODY` (logsinkd `raw`, rsyslogd with a `%rawmsg%` template).
    Bare,
    /// Unframed bytes (the reference server).
    Stream,
}

/// What was sent.
pub struct Sent<'a> {
    pub lines_per_conn: usize,
    /// Each connection's local address as the receiver sees it (`127.0.0.1:PORT`).
    pub peers: &'a [Vec<u8>],
    /// Send times by `conn * lines_per_conn + seq`, when the scenario stamps them.
    pub sent_ns: Option<&'a [u64]>,
}

impl Sent<'_> {
    pub fn lines(&self) -> usize {
        self.peers.len() * self.lines_per_conn
    }

    /// The exact size of the output once every line is in it.
    pub fn expected_bytes(&self, shape: Shape) -> u64 {
        let per_record = |peer: &[u8]| match shape {
            Shape::Stamped => (27 + 1 + peer.len() + 1 + BODY + 1) as u64,
            Shape::Bare | Shape::Stream => lines::LINE as u64,
        };
        self.peers
            .iter()
            .map(|p| per_record(p) * self.lines_per_conn as u64)
            .sum()
    }
}

/// The findings; `failure` says why the run does not count.
#[derive(Debug, Default)]
pub struct Verdict {
    pub intact: usize,
    pub missing: usize,
    pub duplicate: usize,
    pub damaged: usize,
    pub out_of_order: usize,
    /// For the reference: lines not whole because reads of different connections met.
    pub spliced: usize,
    pub note: String,
    pub failure: Option<String>,
}

pub fn verify(out: &[u8], shape: Shape, sent: &Sent) -> Verdict {
    let per_conn = sent.lines_per_conn;
    let mut seen = vec![false; sent.lines()];
    let mut next_seq = vec![0usize; sent.peers.len()];
    let mut v = Verdict::default();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', out) {
        let record = &out[start..end];
        start = end + 1;
        let Some(stamp) = check_record(record, shape, sent) else {
            v.damaged += 1;
            continue;
        };
        let index = stamp.conn * per_conn + stamp.seq;
        if seen[index] {
            v.duplicate += 1;
            continue;
        }
        seen[index] = true;
        v.intact += 1;
        if stamp.seq < next_seq[stamp.conn] {
            v.out_of_order += 1;
        }
        next_seq[stamp.conn] = stamp.seq + 1;
    }
    if start != out.len() {
        v.damaged += 1; // an unterminated last line
    }
    v.missing = sent.lines() - v.intact;
    let expected = sent.expected_bytes(shape);
    if shape == Shape::Stream {
        // Each splice damages about one line and makes another look lost; the bytes must add up.
        v.spliced = v.missing.max(v.damaged);
        v.note = format!(
            "{:.3}% of lines spliced",
            100.0 * v.spliced as f64 / sent.lines() as f64
        );
        if out.len() as u64 != expected {
            v.failure = Some(format!("{} bytes written, {expected} sent", out.len()));
        } else if v.duplicate + v.out_of_order > 0 {
            v.failure = Some(v.summary());
        }
    } else if v.missing + v.duplicate + v.damaged + v.out_of_order > 0 {
        v.failure = Some(v.summary());
    } else if out.len() as u64 != expected {
        v.failure = Some(format!("{} bytes written, {expected} expected", out.len()));
    }
    v
}

/// Checks one record (without its LF); returns its stamp if everything in it is right.
fn check_record(record: &[u8], shape: Shape, sent: &Sent) -> Option<lines::Stamp> {
    let body = record.get(record.len().checked_sub(BODY)?..)?;
    let stamp = lines::parse(body)?;
    if stamp.conn >= sent.peers.len() || stamp.seq >= sent.lines_per_conn {
        return None;
    }
    if let Some(times) = sent.sent_ns {
        if times[stamp.conn * sent.lines_per_conn + stamp.seq] != stamp.sent_ns {
            return None;
        }
    }
    let prefix = &record[..record.len() - BODY];
    let ok = match shape {
        Shape::Bare | Shape::Stream => prefix.is_empty(),
        Shape::Stamped => {
            let peer = &sent.peers[stamp.conn];
            prefix.len() == 27 + 1 + peer.len() + 1
                && is_timestamp(&prefix[..27])
                && prefix[27] == b' '
                && &prefix[28..28 + peer.len()] == peer.as_slice()
                && prefix[prefix.len() - 1] == b' '
        }
    };
    ok.then_some(stamp)
}

/// `2026-11-23T21:05:01.123456Z`
fn is_timestamp(t: &[u8]) -> bool {
    t.iter().enumerate().all(|(i, &b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        26 => b == b'Z',
        _ => b.is_ascii_digit(),
    })
}

impl Verdict {
    pub fn summary(&self) -> String {
        format!(
            "{} intact, {} missing, {} duplicated, {} damaged, {} out of order",
            self.intact, self.missing, self.duplicate, self.damaged, self.out_of_order
        )
    }
}

/// The verifier catches each kind of fault; run by the smoke mode at start.
pub fn self_check() {
    let peers = vec![b"127.0.0.1:40001".to_vec(), b"127.0.0.1:40002".to_vec()];
    let sent = Sent {
        lines_per_conn: 3,
        peers: &peers,
        sent_ns: None,
    };
    let conn = |c: usize| lines::generate(c, 3);
    let (a, b) = (conn(0), conn(1));
    let line = |data: &[u8], seq: usize| data[seq * lines::LINE..(seq + 1) * lines::LINE].to_vec();
    let good: Vec<u8> = [
        line(&a, 0),
        line(&b, 0),
        line(&a, 1),
        line(&b, 1),
        line(&b, 2),
        line(&a, 2),
    ]
    .concat();
    assert!(verify(&good, Shape::Bare, &sent).failure.is_none());
    let swapped: Vec<u8> = [line(&a, 1), line(&a, 0), line(&a, 2), b.clone()].concat();
    assert_eq!(verify(&swapped, Shape::Bare, &sent).out_of_order, 1);
    let mut flipped = good.clone();
    flipped[150] = b'#';
    assert!(verify(&flipped, Shape::Bare, &sent).failure.is_some());
    let short = &good[..good.len() - lines::LINE];
    assert_eq!(verify(short, Shape::Bare, &sent).missing, 1);
    let stamped: Vec<u8> = [(0, &a), (1, &b)]
        .iter()
        .flat_map(|(c, data)| {
            data.chunks(lines::LINE)
                .flat_map(|l| {
                    [
                        b"2026-11-23T21:05:01.123456Z ".as_slice(),
                        &peers[*c],
                        b" ",
                        l,
                    ]
                    .concat()
                })
                .collect::<Vec<u8>>()
        })
        .collect();
    assert!(verify(&stamped, Shape::Stamped, &sent).failure.is_none());
    let mut wrong_peer = stamped.clone();
    wrong_peer[42] = b'9';
    assert!(verify(&wrong_peer, Shape::Stamped, &sent).failure.is_some());
    let spliced: Vec<u8> = [&a[..150], &b[..], &a[150..]].concat();
    let v = verify(&spliced, Shape::Stream, &sent);
    assert!(v.failure.is_none() && v.spliced > 0, "{v:?}");
}
