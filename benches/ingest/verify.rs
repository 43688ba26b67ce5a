//! Checks an output file record by record against what the load generator sent.
//!
//! logsinkd and rsyslogd frame what they receive, so their output must hold each
//! (connection, sequence) exactly once, byte for byte intact, in order per connection; anything
//! else fails the run. What "intact" means depends on the receiver's record (`Shape`): the
//! line's body or the syslog message exactly as sent, behind a prefix that must be right
//! (`default`'s time and peer), or the message's fields, each of which must carry what was sent
//! (logsinkd's `json` with `parse = "syslog"`, rsyslogd's host, tag and message template).
//!
//! The reference server does not frame: it appends whatever each read returned, so where
//! two connections' reads meet, a line of one is spliced into a line of the other. For it the
//! fair check is the byte total (nothing lost, nothing added) plus the share of lines that came
//! out whole, reported as its splice rate; it is not failed for splicing, which is the price
//! of not framing that logsinkd does not pay. Its copy of syslog frames is walked frame by
//! frame (they hold no LF), resynchronizing on the next frame's start after a splice.

use serde::Deserialize;

use crate::lines::{self, BODY, Kind, LINE, Stamp};
use crate::receivers::{DEFAULT_EXTRA_PERCENT, JSON_EXTRA_PERCENT};

/// How a receiver writes each line or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `TIME PEER BODY` (logsinkd `default`): the peer must be the sending connection's.
    Stamped,
    /// The line's body or the syslog message as sent (logsinkd `raw`, rsyslogd with a
    /// `%rawmsg%` template).
    Bare,
    /// Unframed bytes (the reference server).
    Stream,
    /// A JSON object with the message's syslog fields (logsinkd `json`, `parse = "syslog"`).
    Json,
    /// `HOSTNAME APP[PROCID] MSG` (rsyslogd's `%hostname% %syslogtag% %msg%` template).
    Fields,
}

/// What was sent.
pub struct Sent<'a> {
    pub kind: Kind,
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
        let per_record = |conn: usize, peer: &[u8]| {
            let first = Stamp {
                conn,
                seq: 0,
                sent_ns: 0,
            };
            let record = match (shape, self.kind) {
                (Shape::Stamped, _) => 27 + 1 + peer.len() + 1 + BODY,
                (Shape::Stream, _) => LINE - 1,
                (Shape::Bare, Kind::Line) => BODY,
                (Shape::Bare, Kind::Syslog) => lines::SYSLOG_MSG,
                (Shape::Json, _) => json_record(first, peer, EXAMPLE_TIME).len(),
                (Shape::Fields, _) => fields_record(first).len(),
            };
            (record + 1) as u64
        };
        self.peers
            .iter()
            .enumerate()
            .map(|(conn, p)| per_record(conn, p) * self.lines_per_conn as u64)
            .sum()
    }
}

/// A receipt time as logsinkd writes it; every one has this length.
const EXAMPLE_TIME: &str = "2026-11-23T21:05:01.123456Z";

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

/// Counts records as they are found: intact, damaged, duplicated or out of order.
struct Tally<'a> {
    sent: &'a Sent<'a>,
    seen: Vec<bool>,
    next_seq: Vec<usize>,
    v: Verdict,
}

impl<'a> Tally<'a> {
    fn new(sent: &'a Sent<'a>) -> Tally<'a> {
        Tally {
            sent,
            seen: vec![false; sent.lines()],
            next_seq: vec![0; sent.peers.len()],
            v: Verdict::default(),
        }
    }

    /// One record: its stamp if it is intact (see `check_record`), else `None`.
    fn record(&mut self, stamp: Option<Stamp>) {
        let Some(stamp) = stamp.filter(|s| was_sent(*s, self.sent)) else {
            self.v.damaged += 1;
            return;
        };
        let index = stamp.conn * self.sent.lines_per_conn + stamp.seq;
        if self.seen[index] {
            self.v.duplicate += 1;
            return;
        }
        self.seen[index] = true;
        self.v.intact += 1;
        if stamp.seq < self.next_seq[stamp.conn] {
            self.v.out_of_order += 1;
        }
        self.next_seq[stamp.conn] = stamp.seq + 1;
    }
}

pub fn verify(out: &[u8], shape: Shape, sent: &Sent) -> Verdict {
    let mut tally = Tally::new(sent);
    if shape == Shape::Stream && sent.kind == Kind::Syslog {
        walk_frames(out, &mut tally);
    } else {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', out) {
            let record = &out[start..end];
            start = end + 1;
            tally.record(check_record(record, shape, sent));
        }
        if start != out.len() {
            tally.v.damaged += 1; // an unterminated last line
        }
    }
    let mut v = tally.v;
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

/// The connection of each record in `out` (framed outputs), `None` for a damaged one.
pub fn conns<'a>(
    out: &'a [u8],
    shape: Shape,
    sent: &'a Sent<'a>,
) -> impl Iterator<Item = Option<usize>> + 'a {
    out.split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .map(move |record| check_record(record, shape, sent).map(|s| s.conn))
}

/// The reference's copy of syslog frames: whole frames one after another, and where a splice
/// broke one, a damaged stretch up to the next frame's start.
fn walk_frames(out: &[u8], tally: &mut Tally) {
    let mut at = 0;
    while at < out.len() {
        match out.get(at..at + LINE).and_then(lines::parse_frame) {
            Some(stamp) => {
                tally.record(Some(stamp));
                at += LINE;
            }
            None => {
                tally.record(None);
                at = memchr::memmem::find(&out[at + 1..], lines::FRAME_START)
                    .map_or(out.len(), |i| at + 1 + i);
            }
        }
    }
}

/// True if `stamp` numbers a line that was sent, with the send time it was sent with.
fn was_sent(stamp: Stamp, sent: &Sent) -> bool {
    stamp.conn < sent.peers.len()
        && stamp.seq < sent.lines_per_conn
        && sent.sent_ns.is_none_or(|times| {
            times[stamp.conn * sent.lines_per_conn + stamp.seq] == stamp.sent_ns
        })
}

/// Checks one record (without its LF); returns its stamp if everything in it is right.
fn check_record(record: &[u8], shape: Shape, sent: &Sent) -> Option<Stamp> {
    let (stamp, prefix) = match (shape, sent.kind) {
        (Shape::Json, _) => return check_json(record, sent),
        (Shape::Fields, _) => return check_fields(record),
        (Shape::Bare, Kind::Syslog) => return lines::parse_syslog(record),
        (Shape::Stream, Kind::Syslog) => return None, // walked as frames
        (Shape::Stamped | Shape::Bare | Shape::Stream, Kind::Line) => {
            let body = record.get(record.len().checked_sub(BODY)?..)?;
            (lines::parse(body)?, &record[..record.len() - BODY])
        }
        (Shape::Stamped, Kind::Syslog) => return None, // never sent so
    };
    let ok = match shape {
        Shape::Stamped => {
            let peer = sent.peers.get(stamp.conn)?;
            prefix.len() == 27 + 1 + peer.len() + 1
                && is_timestamp(&prefix[..27])
                && prefix[27] == b' '
                && &prefix[28..28 + peer.len()] == peer.as_slice()
                && prefix[prefix.len() - 1] == b' '
        }
        _ => prefix.is_empty(),
    };
    ok.then_some(stamp)
}

/// A record of logsinkd's `json` format for a parsed RFC 5424 message without structured
/// data: every field it writes, no other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord<'a> {
    time: &'a str,
    peer: &'a str,
    line: &'a str,
    facility: &'a str,
    severity: &'a str,
    timestamp: &'a str,
    hostname: &'a str,
    app: &'a str,
    procid: &'a str,
    msgid: &'a str,
    msg: &'a str,
}

/// A `json` record: valid JSON, its `line` the whole message as sent, its `msg` the stamp
/// text, and every other field what that connection's messages carry (the receipt time only
/// in shape). A field holding an escape cannot be borrowed, so fails: nothing sent needs one.
fn check_json(record: &[u8], sent: &Sent) -> Option<Stamp> {
    let r: JsonRecord = serde_json::from_slice(record).ok()?;
    let stamp = lines::parse_syslog(r.line.as_bytes())?;
    let ok = lines::parse_text(r.msg.as_bytes()) == Some(stamp)
        && r.line.ends_with(r.msg)
        && r.msg.len() == lines::SYSLOG_TEXT
        && is_timestamp(r.time.as_bytes())
        && sent.peers.get(stamp.conn)?.as_slice() == r.peer.as_bytes()
        && r.hostname == lines::syslog_host(stamp.conn)
        && r.app == lines::SYSLOG_APP
        && r.procid == lines::SYSLOG_PROCID
        && r.msgid == lines::SYSLOG_MSGID
        && r.timestamp == lines::SYSLOG_TIMESTAMP
        && r.facility == lines::SYSLOG_FACILITY
        && r.severity == lines::SYSLOG_SEVERITY;
    ok.then_some(stamp)
}

/// The `json` record logsinkd writes for `stamp`'s message from `peer` at `time` (its fields in
/// logsinkd's order): the expected output size, and the self-check's sample.
fn json_record(stamp: Stamp, peer: &[u8], time: &str) -> Vec<u8> {
    let text = lines::syslog_text(stamp);
    let mut frame = [0u8; LINE];
    lines::fill_frame(&mut frame, stamp);
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).expect("test lines are ASCII");
    format!(
        r#"{{"time":"{time}","peer":"{peer}","line":"{line}","facility":"{facility}","severity":"{severity}","timestamp":"{timestamp}","hostname":"{host}","app":"{app}","procid":"{procid}","msgid":"{msgid}","msg":"{msg}"}}"#,
        peer = s(peer),
        line = s(&frame[LINE - lines::SYSLOG_MSG..]),
        facility = lines::SYSLOG_FACILITY,
        severity = lines::SYSLOG_SEVERITY,
        timestamp = lines::SYSLOG_TIMESTAMP,
        host = lines::syslog_host(stamp.conn),
        app = lines::SYSLOG_APP,
        procid = lines::SYSLOG_PROCID,
        msgid = lines::SYSLOG_MSGID,
        msg = s(&text),
    )
    .into_bytes()
}

/// rsyslogd's `%hostname% %syslogtag% %msg%` for `stamp`'s message: for RFC 5424 its tag is
/// `APP-NAME[PROCID]` (no colon) and its MSG has no leading space.
fn fields_record(stamp: Stamp) -> Vec<u8> {
    let mut record = format!(
        "{} {}[{}] ",
        lines::syslog_host(stamp.conn),
        lines::SYSLOG_APP,
        lines::SYSLOG_PROCID
    )
    .into_bytes();
    record.extend_from_slice(&lines::syslog_text(stamp));
    record
}

/// A `fields_record`: its MSG the stamp text, its host and tag what that connection's
/// messages carry.
fn check_fields(record: &[u8]) -> Option<Stamp> {
    let text = record.get(record.len().checked_sub(lines::SYSLOG_TEXT)?..)?;
    let stamp = lines::parse_text(text)?;
    (fields_record(stamp) == record).then_some(stamp)
}

/// `2026-11-23T21:05:01.123456Z`
fn is_timestamp(t: &[u8]) -> bool {
    t.len() == 27
        && t.iter().enumerate().all(|(i, &b)| match i {
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
        kind: Kind::Line,
        lines_per_conn: 3,
        peers: &peers,
        sent_ns: None,
    };
    let conn = |c: usize| lines::generate(Kind::Line, c, 3);
    let (a, b) = (conn(0), conn(1));
    let line = |data: &[u8], seq: usize| data[seq * LINE..(seq + 1) * LINE].to_vec();
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
    let short = &good[..good.len() - LINE];
    assert_eq!(verify(short, Shape::Bare, &sent).missing, 1);
    let stamped: Vec<u8> = [(0, &a), (1, &b)]
        .iter()
        .flat_map(|(c, data)| {
            data.chunks(LINE)
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
    self_check_syslog(&peers);
}

/// Writes the record a receiver writes for one message.
type RecordFn<'a> = dyn Fn(Stamp) -> Vec<u8> + 'a;

/// The syslog shapes: each receiver's records for two connections' three messages verify,
/// and a fault in any field, a lost, repeated or reordered record does not.
fn self_check_syslog(peers: &[Vec<u8>]) {
    let sent = Sent {
        kind: Kind::Syslog,
        lines_per_conn: 3,
        peers,
        sent_ns: None,
    };
    let stamp = |conn, seq| Stamp {
        conn,
        seq,
        sent_ns: 0,
    };
    let order = [(0, 0), (1, 0), (0, 1), (1, 1), (1, 2), (0, 2)];
    let output = |record: &RecordFn<'_>, order: &[(usize, usize)]| -> Vec<u8> {
        order
            .iter()
            .flat_map(|&(c, s)| [record(stamp(c, s)), b"\n".to_vec()].concat())
            .collect()
    };
    let bare = |s: Stamp| {
        let mut frame = [0u8; LINE];
        lines::fill_frame(&mut frame, s);
        frame[LINE - lines::SYSLOG_MSG..].to_vec()
    };
    let json = |s: Stamp| json_record(s, &peers[s.conn], EXAMPLE_TIME);
    let records: [(Shape, &RecordFn<'_>); 3] = [
        (Shape::Bare, &bare),
        (Shape::Json, &json),
        (Shape::Fields, &fields_record),
    ];
    for (shape, record) in records {
        let good = output(record, &order);
        let v = verify(&good, shape, &sent);
        assert!(v.failure.is_none(), "{shape:?}: {v:?}");
        let mut swapped = order;
        swapped.swap(0, 2);
        assert_eq!(
            verify(&output(record, &swapped), shape, &sent).out_of_order,
            1
        );
        assert_eq!(
            verify(&output(record, &order[1..]), shape, &sent).missing,
            1
        );
        let twice = [&order[..], &order[..1]].concat();
        assert_eq!(verify(&output(record, &twice), shape, &sent).duplicate, 1);
        // Any byte changed, in the header, a field or the stamp, is caught (a JSON record's
        // receipt time only where it breaks its shape).
        let first = record(stamp(0, 0)).len();
        for at in 0..first {
            if shape == Shape::Json && (9..9 + 27).contains(&at) && good[at].is_ascii_digit() {
                continue;
            }
            let mut damaged = good.clone();
            damaged[at] = if damaged[at] == b'#' { b'$' } else { b'#' };
            let v = verify(&damaged, shape, &sent);
            assert!(v.failure.is_some(), "{shape:?}: byte {at} changed, unseen");
        }
    }
    // The equal-bytes ceilings write as many bytes as logsinkd's records hold, from a peer with
    // a five-digit port as the bench's clients have.
    let one = Sent {
        lines_per_conn: 1,
        peers: &peers[..1],
        ..sent
    };
    assert_eq!(
        one.expected_bytes(Shape::Json),
        (LINE * (100 + JSON_EXTRA_PERCENT) / 100) as u64,
        "JSON_EXTRA_PERCENT"
    );
    let lines = Sent {
        kind: Kind::Line,
        ..one
    };
    assert_eq!(
        lines.expected_bytes(Shape::Stamped),
        (LINE * (100 + DEFAULT_EXTRA_PERCENT) / 100) as u64,
        "DEFAULT_EXTRA_PERCENT"
    );
    // A JSON record from the wrong peer, or with a field more, is caught.
    let mut wrong_peer = json(stamp(0, 0));
    let at = wrong_peer.windows(5).position(|w| w == b"40001").unwrap();
    wrong_peer[at + 4] = b'2';
    assert!(check_json(&wrong_peer, &sent).is_none());
    let mut extra = json(stamp(0, 0));
    extra.truncate(extra.len() - 1);
    extra.extend_from_slice(br#","sd":{}}"#);
    assert!(check_json(&extra, &sent).is_none());
    // The reference's unframed copy: intact, and spliced where reads met.
    let frames = |c| lines::generate(Kind::Syslog, c, 3);
    let (a, b) = (frames(0), frames(1));
    let whole = [&a[..], &b[..]].concat();
    let v = verify(&whole, Shape::Stream, &sent);
    assert!(v.failure.is_none() && v.spliced == 0, "{v:?}");
    let spliced = [&a[..150], &b[..], &a[150..]].concat();
    let v = verify(&spliced, Shape::Stream, &sent);
    assert!(v.failure.is_none() && v.spliced > 0, "{v:?}");
    assert!(verify(&whole[1..], Shape::Stream, &sent).failure.is_some());
}
