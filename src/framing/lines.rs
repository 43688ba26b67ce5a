//! Line framing: turns the byte stream of one connection into records.
//!
//! A record is a line without its LF (and without a CR right before the LF). Complete lines are
//! handed out straight from the read buffer, without copying; only the unfinished tail of a
//! read is kept in the connection's `LineBuffer`. A line longer than `max_line` is handed out in
//! pieces of exactly `max_line` bytes, so a connection never holds more than `max_line` bytes,
//! whatever it sends. The pieces depend only on the bytes, never on how reads split them.

use crate::simd::count_lines_without_cr;

/// The unfinished line of one connection.
#[derive(Debug, Default)]
pub struct LineBuffer {
    /// Bytes of the current line received so far (at most `max_line`).
    partial: Vec<u8>,
    /// The current line has already been handed out in pieces, so an empty rest is not a record.
    continued: bool,
}

/// Capacity above which an emptied buffer gives its memory back, so idle connections stay small.
const KEEP_CAPACITY: usize = 4096;

/// What `push_pieces` hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// One record.
    Line(&'a [u8]),
    /// Whole lines exactly as received, each with its LF, that need no change to be records:
    /// none holds a CR, none is longer than `max_line`. Each line is one record; the number
    /// is how many lines there are.
    Lines(&'a [u8], u64),
}

/// The lines of a run (`Piece::Lines`), each without its LF.
pub fn run_lines(run: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', run).map(move |end| {
        let line = &run[start..end];
        start = end + 1;
        line
    })
}

impl LineBuffer {
    /// Frames `data` (the next bytes of the stream), calling `emit` for every record completed.
    pub fn push(&mut self, data: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8])) {
        if let Some(data) = self.carry_over(data, max_line, emit) {
            self.push_whole(data, max_line, emit);
        }
    }

    /// Frames like `push` (the same records, in the same order), but hands the complete lines
    /// of a read out as one `Piece::Lines` when none of them needs a change, so a consumer
    /// that writes lines as they came (raw format) copies a whole read at once.
    pub fn push_pieces(&mut self, data: &[u8], max_line: usize, emit: &mut impl FnMut(Piece)) {
        let mut one = |line: &[u8]| emit(Piece::Line(line));
        let Some(data) = self.carry_over(data, max_line, &mut one) else {
            return;
        };
        if let Some(last) = memchr::memrchr(b'\n', data) {
            let (lines, rest) = data.split_at(last + 1);
            // Every line in `lines` is shorter than `lines`, LF included: no cut can fall inside.
            let count = (lines.len() <= max_line + 1)
                .then(|| count_lines_without_cr(lines))
                .flatten();
            if let Some(count) = count {
                emit(Piece::Lines(lines, count));
                self.append(rest, max_line, &mut |line: &[u8]| emit(Piece::Line(line)));
                self.release_if_idle();
                return;
            }
        }
        self.push_whole(data, max_line, &mut |line: &[u8]| emit(Piece::Line(line)));
    }

    /// The unfinished line as received so far, for a consumer that frames in place
    /// (`take_run`); `None` while a long line is being handed out in pieces.
    pub fn unfinished(&self) -> Option<&[u8]> {
        (!self.continued).then_some(&self.partial[..])
    }

    /// Frames in place, for a consumer that keeps the bytes where they landed (raw format reads
    /// straight into the output batch). `data` is `unfinished()` followed by the new bytes. If
    /// every line `data` completes is its own record exactly as received (no CR, none longer
    /// than `max_line`), keeps the rest of `data` as the unfinished line and returns the length
    /// of the complete lines (each with its LF) and their number: the records `push_pieces`
    /// would give. Otherwise changes nothing and returns `None`; the caller then frames the
    /// new bytes with `push_pieces`.
    pub fn take_run(&mut self, data: &[u8], max_line: usize) -> Option<(usize, u64)> {
        debug_assert!(!self.continued && data.starts_with(&self.partial));
        let complete = memchr::memrchr(b'\n', data).map_or(0, |last| last + 1);
        let (lines, rest) = data.split_at(complete);
        if rest.len() > max_line {
            return None;
        }
        let count = if lines.is_empty() {
            0
        } else {
            // The first line may hold bytes of earlier reads; every later line is shorter than
            // the run after the first, LF included.
            let first = memchr::memchr(b'\n', lines)?;
            if first > max_line || lines.len() - first - 1 > max_line + 1 {
                return None;
            }
            count_lines_without_cr(lines)?
        };
        self.partial.clear();
        self.partial.extend_from_slice(rest);
        self.release_if_idle();
        Some((complete, count))
    }

    /// Finishes the line carried over from earlier reads; returns the rest of `data`, or `None`
    /// if all of it went into that line.
    fn carry_over<'a>(
        &mut self,
        data: &'a [u8],
        max_line: usize,
        emit: &mut impl FnMut(&[u8]),
    ) -> Option<&'a [u8]> {
        if self.partial.is_empty() && !self.continued {
            return Some(data);
        }
        match memchr::memchr(b'\n', data) {
            Some(end) => {
                self.append(&data[..end], max_line, emit);
                self.finish_line(emit);
                Some(&data[end + 1..])
            }
            None => {
                self.append(data, max_line, emit);
                None
            }
        }
    }

    /// Frames `data`, which starts at the beginning of a line.
    fn push_whole(&mut self, data: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8])) {
        // Lines wholly inside this read go out without a copy.
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            let line = &data[start..end];
            start = end + 1;
            if line.len() <= max_line + 1 {
                let line = strip_cr(line);
                if line.len() <= max_line {
                    emit(line);
                    continue;
                }
            }
            self.append(line, max_line, emit);
            self.finish_line(emit);
        }
        self.append(&data[start..], max_line, emit);
        self.release_if_idle();
    }

    /// Hands out the unfinished line, if any (the client is gone or the daemon stops).
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
        }
        self.partial = Vec::new();
        self.continued = false;
    }

    /// Bytes held for the unfinished line (never more than `max_line`).
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Adds bytes that contain no LF to the current line, emitting `max_line` pieces whenever
    /// more than `max_line` bytes are waiting. A full piece waits for one more byte, so a line of
    /// exactly `max_line` bytes stays one record.
    fn append(&mut self, bytes: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8])) {
        append_in_pieces(
            &mut self.partial,
            &mut self.continued,
            bytes,
            max_line,
            emit,
        );
    }

    /// The LF of the current line arrived.
    fn finish_line(&mut self, emit: &mut impl FnMut(&[u8])) {
        let line = strip_cr(&self.partial);
        // A line cut into pieces whose rest is empty (or only the CR) was already recorded.
        if !(line.is_empty() && self.continued) {
            emit(line);
        }
        self.partial.clear();
        self.continued = false;
        self.release_if_idle();
    }

    fn release_if_idle(&mut self) {
        if self.partial.is_empty() && self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        }
    }
}

/// Adds `bytes` to the unfinished record `partial`, emitting `max_line` pieces (and setting
/// `continued`) whenever more than `max_line` bytes are waiting. A full piece waits for one
/// more byte, so a record of exactly `max_line` bytes stays one. The buffer grows by doubling,
/// but never past `max_line`: Vec's own doubling could reach nearly twice that, per
/// connection. Shared by the line and octet framers.
pub(super) fn append_in_pieces(
    partial: &mut Vec<u8>,
    continued: &mut bool,
    mut bytes: &[u8],
    max_line: usize,
    emit: &mut impl FnMut(&[u8]),
) {
    while !bytes.is_empty() {
        if partial.len() == max_line {
            emit(partial);
            partial.clear();
            *continued = true;
        }
        let take = bytes.len().min(max_line - partial.len());
        let need = partial.len() + take;
        if need > partial.capacity() {
            let want = need.max(2 * partial.capacity()).min(max_line);
            partial.reserve_exact(want - partial.len());
        }
        partial.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Helpers shared by the framer's and the recorder's property tests and the fuzz targets
/// (built with `--cfg fuzzing`).
#[cfg(any(test, fuzzing))]
pub mod testing {
    #[cfg(test)]
    use proptest::prelude::{Just, Strategy};

    /// A stream rich in what framing cares about: LFs, CRs, a couple of letters, any byte.
    #[cfg(test)]
    pub fn stream(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            proptest::prop_oneof![
                Just(b'\n'),
                Just(b'\r'),
                Just(b'a'),
                Just(b'b'),
                proptest::num::u8::ANY
            ],
            0..max_len,
        )
    }

    use super::{LineBuffer, Piece};

    /// The records `push` makes of `chunks` (one read each), the final unfinished line
    /// included; checks the buffer never holds more than `max_line`.
    pub fn frame(chunks: &[&[u8]], max_line: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = LineBuffer::default();
        for chunk in chunks {
            buf.push(chunk, max_line, &mut |l: &[u8]| out.push(l.to_vec()));
            assert!(buf.pending() <= max_line, "buffer over max_line");
        }
        buf.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

    /// `frame` through `push_pieces`, each run of lines expanded into its records.
    pub fn frame_pieces(chunks: &[&[u8]], max_line: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = LineBuffer::default();
        for chunk in chunks {
            push_expanding(&mut buf, chunk, max_line, &mut out);
        }
        buf.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

    /// One read through `push_pieces`, its records (runs expanded) appended to `out`; checks
    /// the buffer never holds more than `max_line`.
    pub fn push_expanding(
        buf: &mut LineBuffer,
        chunk: &[u8],
        max_line: usize,
        out: &mut Vec<Vec<u8>>,
    ) {
        buf.push_pieces(chunk, max_line, &mut |piece| match piece {
            Piece::Line(l) => out.push(l.to_vec()),
            Piece::Lines(run, count) => expand(out, run, count),
        });
        assert!(buf.pending() <= max_line, "buffer over max_line");
    }

    /// Splits a run of whole lines (`Piece::Lines`) into its records, checking it ends in LF
    /// and its count.
    pub fn expand(out: &mut Vec<Vec<u8>>, run: &[u8], count: u64) {
        if run.is_empty() {
            return assert_eq!(count, 0, "empty run count");
        }
        assert_eq!(run.last(), Some(&b'\n'), "a run ends in LF");
        let lines: Vec<&[u8]> = run[..run.len() - 1].split(|&b| b == b'\n').collect();
        assert_eq!(lines.len() as u64, count, "run count");
        out.extend(lines.into_iter().map(<[u8]>::to_vec));
    }

    /// `data` cut into reads at the given offsets (clamped to its length, any order).
    pub fn split_at(data: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&data[at..c]);
            at = c;
        }
        chunks.push(&data[at..]);
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{frame, frame_pieces, split_at, stream};
    use super::*;

    fn lines(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Complete lines, CRLF, empty lines and a final unterminated line.
    #[test]
    fn splits_lines() {
        assert_eq!(frame(&[b"a\nbb\r\n\nc"], 100), lines(&["a", "bb", "", "c"]));
    }

    /// A line split across reads comes out whole.
    #[test]
    fn joins_partial_reads() {
        assert_eq!(
            frame(&[b"he", b"llo\r", b"\nwor", b"ld\n"], 100),
            lines(&["hello", "world"])
        );
    }

    /// Over-long lines are cut into max_line pieces; an exact multiple leaves no empty record.
    #[test]
    fn cuts_long_lines() {
        assert_eq!(frame(&[b"abcdefg\n"], 3), lines(&["abc", "def", "g"]));
        assert_eq!(frame(&[b"abcdef\n"], 3), lines(&["abc", "def"]));
        assert_eq!(frame(&[b"abc\r\n"], 3), lines(&["abc"]));
        assert_eq!(frame(&[b"abcdef\r\nx\n"], 3), lines(&["abc", "def", "x"]));
        assert_eq!(
            frame(&[b"ab", b"cdefgh", b"i"], 3),
            lines(&["abc", "def", "ghi"])
        );
    }

    /// Whole lines that need no change come out as one piece; a CR or a long line means one by one.
    #[test]
    fn pieces() {
        let mut got = Vec::new();
        let mut buf = LineBuffer::default();
        let mut take = |data: &[u8], max_line: usize| {
            buf.push_pieces(data, max_line, &mut |p| got.push(format!("{p:?}")));
        };
        take(b"ab\ncd\ne", 100);
        take(b"f\ng\r\nh\n", 100);
        take(b"xyz\n", 2);
        assert_eq!(
            got,
            [
                format!("{:?}", Piece::Lines(b"ab\ncd\n", 2)),
                format!("{:?}", Piece::Line(b"ef")),
                format!("{:?}", Piece::Line(b"g")),
                format!("{:?}", Piece::Line(b"h")),
                format!("{:?}", Piece::Line(b"xy")),
                format!("{:?}", Piece::Line(b"z")),
            ]
        );
    }

    /// In-place framing takes a run only where its lines are the framer's records unchanged.
    #[test]
    fn take_run_edges() {
        let mut buf = LineBuffer::default();
        assert_eq!(buf.take_run(b"ab\ncd\nef", 5), Some((6, 2)));
        assert_eq!(buf.unfinished(), Some(&b"ef"[..]));
        // With the unfinished "ef" the first line is 6 bytes, one over max_line: cut by push.
        assert_eq!(buf.take_run(b"efghij\n", 5), None);
        assert_eq!(buf.unfinished(), Some(&b"ef"[..]));
        assert_eq!(buf.take_run(b"efghi\n", 5), Some((6, 1)));
        assert_eq!(buf.take_run(b"x\r\n", 5), None);
        assert_eq!(buf.take_run(b"a\nbcdefg", 5), None);
        assert_eq!(buf.take_run(b"a\nbcdefg\n", 5), None);
        assert_eq!(buf.take_run(b"a\nbcdef\n", 5), Some((8, 2)));
        assert_eq!(buf.unfinished(), Some(&b""[..]));
        buf.push(b"abcdefgh", 5, &mut |_| {});
        assert_eq!(buf.unfinished(), None, "a line being cut into pieces");
    }

    /// A CR that is not right before the LF is kept.
    #[test]
    fn keeps_inner_cr() {
        assert_eq!(frame(&[b"a\rb\n\r\n"], 100), lines(&["a\rb", ""]));
    }

    /// Every split of the same bytes into reads gives the same records.
    #[test]
    fn split_invariant() {
        let data: &[u8] = b"one\r\ntwo-long-line\n\nthree\r\r\nfour-is-longer-yet\rx";
        for max_line in [1, 2, 3, 5, 8, 100] {
            let whole = frame(&[data], max_line);
            for cut in 0..=data.len() {
                for cut2 in cut..=data.len() {
                    let parts = [&data[..cut], &data[cut..cut2], &data[cut2..]];
                    assert_eq!(
                        frame(&parts, max_line),
                        whole,
                        "max_line {max_line} cut {cut}/{cut2}"
                    );
                }
            }
        }
    }

    /// What `push` must produce, written the slow obvious way: split at LF, cut each line into
    /// max_line pieces as the bytes arrive, strip the CR before an LF, no empty rest after pieces.
    fn model(data: &[u8], max_line: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap();
        for (raw, terminated) in parts.into_iter().map(|p| (p, true)).chain([(last, false)]) {
            let full = raw.len().saturating_sub(1) / max_line;
            out.extend(raw.chunks(max_line).take(full).map(<[u8]>::to_vec));
            let rest = &raw[full * max_line..];
            let rest = if terminated { strip_cr(rest) } else { rest };
            if !rest.is_empty() || (terminated && full == 0) {
                out.push(rest.to_vec());
            }
        }
        out
    }

    proptest::proptest! {
        /// Any split of any bytes into reads gives the model's records, none over max_line.
        #[test]
        fn any_split_matches_model(
            data in stream(300),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            max_line in 1usize..20,
        ) {
            let chunks = split_at(&data, cuts);
            let got = frame(&chunks, max_line);
            proptest::prop_assert!(got.iter().all(|r| r.len() <= max_line));
            proptest::prop_assert_eq!(got, model(&data, max_line));
        }

        /// `push_pieces` gives exactly the records of `push`, whether or not whole reads fit.
        #[test]
        fn pieces_match_push(
            data in stream(300),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            max_line in 1usize..400,
        ) {
            let chunks = split_at(&data, cuts);
            proptest::prop_assert_eq!(frame_pieces(&chunks, max_line), frame(&chunks, max_line));
        }
    }
}
