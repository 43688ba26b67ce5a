//! Framing: turns the byte stream of one connection into records, by one of the input codecs:
//!
//! - `lines.rs`: a record is a line (`LineBuffer`); the default, and what `logger` and most
//!   applications send.
//! - `octet.rs`: a record is an octet-counted frame, RFC 6587 `MSG-LEN SP SYSLOG-MSG`
//!   (`OctetBuffer`); what rsyslog and syslog-ng forwarders and TLS senders use.
//!
//! A listener's `framing` setting (`Mode`) picks one for each of its connections; `auto` looks
//! at the first bytes of each connection and decides once, only on a complete octet-counting
//! header followed by the PRI that starts every syslog message (`[1-9][0-9]{0,8} <[0-9]{1,3}>`):
//! a line that merely starts with a digit (`54 <1 minute elapsed`, `2026-12-01 ...`) stays a
//! line. An octet-counted connection that sends a bad
//! header is framed as lines from there on (`Framer::push` says so once), so nothing is lost
//! and the connection stays open. Whatever the codec, a connection holds at most `max_line`
//! bytes (plus a header's few), and the records depend only on the bytes, never on how reads
//! split them.

mod lines;
mod octet;

use std::fmt;

pub use lines::{LineBuffer, Piece, run_lines};

use crate::config::Choice;
pub use octet::{End, OctetBuffer};

use octet::MAX_DIGITS;

/// How a listener's connections are framed (`framing` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Each line is a record.
    #[default]
    Lines,
    /// Each octet-counted frame is a record.
    Octet,
    /// Octet-counted if the connection starts with a complete header, else lines.
    Auto,
}

impl Choice for Mode {
    const WHAT: &'static str = "framing";
    const CHOICES: &'static [(&'static str, Mode)] = &[
        ("lines", Mode::Lines),
        ("octet", Mode::Octet),
        ("auto", Mode::Auto),
    ];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The framing state of one connection.
#[derive(Debug)]
pub enum Framer {
    Lines(LineBuffer),
    Octet(OctetBuffer),
    /// `auto`, before the first bytes tell: those bytes so far (at most a header and a PRI).
    Undecided(Head),
}

/// The first bytes of an `auto` connection: digits, a SP, then a PRI (`<13>`).
#[derive(Debug, Default)]
pub struct Head {
    bytes: [u8; MAX_DIGITS + 6],
    len: usize,
}

/// What a push found out about the connection, for the caller to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Switch {
    /// An octet-counted connection sent a bad header: these bytes (the header so far and up
    /// to 16 that follow) and everything after are framed as lines.
    BadHeader(Vec<u8>),
}

impl Framer {
    pub fn new(mode: Mode) -> Framer {
        match mode {
            Mode::Lines => Framer::Lines(LineBuffer::default()),
            Mode::Octet => Framer::Octet(OctetBuffer::default()),
            Mode::Auto => Framer::Undecided(Head::default()),
        }
    }

    /// The line buffer, if the connection is framed as lines (the recorder's fast paths).
    #[inline]
    pub fn lines(&mut self) -> Option<&mut LineBuffer> {
        match self {
            Framer::Lines(lines) => Some(lines),
            _ => None,
        }
    }

    /// Frames `data` (the next bytes of the stream), calling `emit` for every record
    /// completed (an octet frame is always one `Piece::Line`).
    pub fn push(
        &mut self,
        data: &[u8],
        max_line: usize,
        emit: &mut impl FnMut(Piece),
    ) -> Option<Switch> {
        match self {
            Framer::Lines(lines) => {
                lines.push_pieces(data, max_line, emit);
                None
            }
            Framer::Octet(octet) => {
                let at = octet
                    .push(data, max_line, &mut |r: &[u8]| emit(Piece::Line(r)))
                    .err()?;
                let head = octet.take_header();
                let rest = &data[at..];
                let mut seen = head.clone();
                seen.extend_from_slice(&rest[..rest.len().min(16)]);
                let mut lines = LineBuffer::default();
                lines.push_pieces(&head, max_line, emit);
                lines.push_pieces(rest, max_line, emit);
                *self = Framer::Lines(lines);
                Some(Switch::BadHeader(seen))
            }
            Framer::Undecided(head) => {
                let (mode, used) = head.decide(data)?;
                let taken = Head {
                    bytes: head.bytes,
                    len: head.len,
                };
                *self = Framer::new(mode);
                // The bytes taken go first: a frame as short as `1 <` ends inside them, and
                // what follows it may already be a bad header.
                let first = self.push(&taken.bytes[..taken.len], max_line, emit);
                let rest = self.push(&data[used..], max_line, emit);
                first.or(rest)
            }
        }
    }

    /// Hands out what is left when the connection ends (the client is gone or the daemon
    /// stops): the unfinished line or frame.
    pub fn finish(&mut self, max_line: usize, emit: &mut impl FnMut(&[u8])) -> End {
        match self {
            Framer::Lines(lines) => {
                lines.finish(emit);
                End::Clean
            }
            Framer::Octet(octet) => octet.finish(max_line, emit),
            Framer::Undecided(head) => {
                head.bytes[..head.len].chunks(max_line).for_each(emit);
                *head = Head::default();
                End::Clean
            }
        }
    }

    /// Bytes held for the unfinished record (at most `max_line`, plus a header's few).
    pub fn pending(&self) -> usize {
        match self {
            Framer::Lines(lines) => lines.pending(),
            Framer::Octet(octet) => octet.pending(),
            Framer::Undecided(head) => head.len,
        }
    }
}

impl Head {
    /// Takes bytes of `data` until they tell how the connection is framed: the mode and how
    /// many bytes of `data` were taken (all in `self.bytes`), or `None` if all were taken and
    /// they do not tell yet.
    fn decide(&mut self, data: &[u8]) -> Option<(Mode, usize)> {
        for (i, &b) in data.iter().enumerate() {
            self.bytes[self.len] = b;
            self.len += 1;
            if let Some(mode) = tell(&self.bytes[..self.len]) {
                return Some((mode, i + 1));
            }
        }
        None
    }
}

/// How a connection that starts with `head` is framed: `Octet` once it holds a complete
/// header and the PRI that starts a syslog message (`[1-9][0-9]{0,8} <[0-9]{1,3}>`), `Lines`
/// as soon as it cannot become one, `None` while it still may.
fn tell(head: &[u8]) -> Option<Mode> {
    let digits = head.iter().take_while(|b| b.is_ascii_digit()).count();
    if head.first() == Some(&b'0') || digits > MAX_DIGITS {
        return Some(Mode::Lines);
    }
    let rest = &head[digits..];
    match (digits, rest) {
        (_, []) | (1.., [b' ']) | (1.., [b' ', b'<']) => return None,
        (1.., [b' ', b'<', ..]) => {}
        _ => return Some(Mode::Lines),
    }
    let pri = &rest[2..];
    let pri_digits = pri.iter().take_while(|b| b.is_ascii_digit()).count();
    match pri.get(pri_digits) {
        None if pri_digits <= 3 => None,
        Some(b'>') if (1..=3).contains(&pri_digits) => Some(Mode::Octet),
        _ => Some(Mode::Lines),
    }
}

/// Helpers shared by the framers' and the recorder's property tests and the fuzz targets
/// (built with `--cfg fuzzing`).
#[cfg(any(test, fuzzing))]
pub mod testing {
    pub use super::lines::testing::*;
    use super::octet::MAX_DIGITS;
    use super::{Framer, Mode, Piece};

    /// The records of `chunks` through a `Framer` of `mode`, the final ones included, and
    /// the bad headers it reported.
    pub fn frame_with(chunks: &[&[u8]], mode: Mode, max_line: usize) -> (Vec<Vec<u8>>, usize) {
        let mut out = Vec::new();
        let mut switches = 0;
        let mut framer = Framer::new(mode);
        for chunk in chunks {
            let switch = framer.push(chunk, max_line, &mut |piece| match piece {
                Piece::Line(r) => out.push(r.to_vec()),
                Piece::Lines(run, count) => expand(&mut out, run, count),
            });
            switches += usize::from(switch.is_some());
            assert!(framer.pending() <= max_line + MAX_DIGITS + 6);
        }
        framer.finish(max_line, &mut |r: &[u8]| out.push(r.to_vec()));
        (out, switches)
    }

    /// What a `Framer` must give, written the slow obvious way on the whole stream: frames
    /// while the headers are good, then lines (as `LineBuffer` frames them) from the first bad
    /// header on; `auto` frames only a stream that starts with a complete header and `<`.
    pub fn model(data: &[u8], mode: Mode, max_line: usize) -> Vec<Vec<u8>> {
        let lines = |rest: &[u8]| frame(&[rest], max_line);
        let header = |at: usize| -> Option<(usize, usize)> {
            let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            let text = std::str::from_utf8(&data[at..at + digits]).unwrap();
            let ok = (1..=MAX_DIGITS).contains(&digits)
                && !text.starts_with('0')
                && data.get(at + digits) == Some(&b' ');
            ok.then(|| (text.parse().unwrap(), at + digits + 1))
        };
        match mode {
            Mode::Lines => return lines(data),
            Mode::Auto => match header(0) {
                Some((_, body)) if starts_with_pri(&data[body..]) => {}
                _ => return lines(data),
            },
            Mode::Octet => {}
        }
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            while matches!(data.get(at), Some(b'\n' | b'\r')) {
                at += 1;
            }
            if at == data.len() {
                return out;
            }
            let Some((len, body)) = header(at) else {
                // A header cut short by the end: its digits are one record.
                let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                let cut = digits <= MAX_DIGITS && at + digits == data.len() && data[at] != b'0';
                if cut {
                    out.extend(data[at..].chunks(max_line).map(<[u8]>::to_vec));
                } else {
                    out.extend(lines(&data[at..]));
                }
                return out;
            };
            let end = (body + len).min(data.len());
            let mut frame = &data[body..end];
            // A whole frame's last LF is dropped; a frame that is only that LF is empty.
            if end == body + len {
                if let Some(stripped) = frame.strip_suffix(b"\n") {
                    if stripped.is_empty() {
                        out.push(Vec::new());
                    }
                    frame = stripped;
                }
            }
            out.extend(frame.chunks(max_line).map(<[u8]>::to_vec));
            at = end;
        }
    }

    /// True if `body` starts with `<`, 1 to 3 digits and `>`.
    fn starts_with_pri(body: &[u8]) -> bool {
        let Some(pri) = body.strip_prefix(b"<") else {
            return false;
        };
        let digits = pri.iter().take_while(|b| b.is_ascii_digit()).count();
        (1..=3).contains(&digits) && pri.get(digits) == Some(&b'>')
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{frame_with as frame, model, split_at, stream};
    use super::*;

    fn records(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// `auto` takes a frame only on a complete header with `<` after it.
    #[test]
    fn auto_decides_on_a_complete_header() {
        let lines = |s: &str| frame(&[s.as_bytes()], Mode::Auto, 100).0;
        assert_eq!(
            lines("54 <1 minute elapsed\n"),
            records(&["54 <1 minute elapsed"])
        );
        assert_eq!(lines("5 <13>x7 <14>a\nb"), records(&["<13>x", "<14>a\nb"]));
        assert_eq!(lines("3 <0>"), records(&["<0>"]));
        assert_eq!(lines("9 <1234> x\n"), records(&["9 <1234> x"]));
        assert_eq!(lines("9 <> x\n"), records(&["9 <> x"]));
        assert_eq!(lines("9 <1"), records(&["9 <1"]));
        assert_eq!(lines("54 minutes\n"), records(&["54 minutes"]));
        assert_eq!(lines("2026-12-01 x\n"), records(&["2026-12-01 x"]));
        assert_eq!(lines("0 <x\n"), records(&["0 <x"]));
        assert_eq!(lines("1234567890 <x\n"), records(&["1234567890 <x"]));
        assert_eq!(lines("<13>hi\n5 <13>x"), records(&["<13>hi", "5 <13>x"]));
        // Cut short before it tells: the bytes are one record.
        assert_eq!(lines("12 "), records(&["12 "]));
        assert_eq!(lines(""), records(&[]));
    }

    /// An octet connection that sends a bad header goes on as lines, losing nothing.
    #[test]
    fn bad_header_falls_back_to_lines() {
        let (got, switches) = frame(&[b"3 abc12x\nnext\n", b"4 more\n"], Mode::Octet, 100);
        assert_eq!(got, records(&["abc", "12x", "next", "4 more"]));

        assert_eq!(switches, 1);
        let (got, switches) = frame(&[b"3 <1>3 <2>hello\n"], Mode::Auto, 100);
        assert_eq!(got, records(&["<1>", "<2>", "hello"]));
        assert_eq!(switches, 1);
    }

    /// Bytes rich in what octet framing cares about: digits, SPs, `<`, LFs, CRs.
    fn octet_stream() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                // A good frame, mostly.
                4 => (0u8..3, stream(40), proptest::bool::ANY).prop_map(|(pri, body, lf)| {
                    // Most start as syslog does (a PRI), so that `auto` takes them as frames.
                    let mut msg = match pri {
                        0 => b"<13>".to_vec(),
                        1 => b"<1".to_vec(),
                        _ => Vec::new(),
                    };
                    msg.extend_from_slice(&body);
                    if msg.is_empty() {
                        msg.push(b'x');
                    }
                    let mut f = format!("{} ", msg.len()).into_bytes();
                    f.extend_from_slice(&msg);
                    if lf {
                        f.push(b'\n');
                    }
                    f
                }),
                1 => proptest::collection::vec(
                    prop_oneof![
                        Just(b'1'), Just(b'0'), Just(b' '), Just(b'<'), Just(b'>'), Just(b'\n')
                    ],
                    0..6,
                ),
                1 => stream(10),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        /// Any split of any bytes into reads gives the model's records, none over max_line,
        /// in every mode.
        #[test]
        fn any_split_matches_model(
            data in octet_stream(),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            max_line in 1usize..50,
        ) {
            let chunks = split_at(&data, cuts);
            for mode in [Mode::Lines, Mode::Octet, Mode::Auto] {
                let (got, _) = frame(&chunks, mode, max_line);
                proptest::prop_assert!(got.iter().all(|r| r.len() <= max_line));
                proptest::prop_assert_eq!(&got, &model(&data, mode, max_line), "{}", mode);
            }
        }
    }
}
