//! Line framing: turns the byte stream of one connection into records.
//!
//! A record is a line without its LF (and without a CR right before the LF). Complete lines are
//! handed out straight from the read buffer, without copying; only the unfinished tail of a
//! read is kept in the connection's `LineBuffer`. A line longer than `max_line` is handed out in
//! pieces of exactly `max_line` bytes, so a connection never holds more than `max_line` bytes,
//! whatever it sends. The pieces depend only on the bytes, never on how reads split them.

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

impl LineBuffer {
    /// Frames `data` (the next bytes of the stream), calling `emit` for every record completed.
    pub fn push(&mut self, mut data: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8])) {
        // Finish the line carried over from earlier reads first.
        if !self.partial.is_empty() || self.continued {
            match memchr::memchr(b'\n', data) {
                Some(end) => {
                    self.append(&data[..end], max_line, emit);
                    self.finish_line(emit);
                    data = &data[end + 1..];
                }
                None => {
                    self.append(data, max_line, emit);
                    return;
                }
            }
        }
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
    fn append(&mut self, mut bytes: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            if self.partial.len() == max_line {
                emit(&self.partial);
                self.partial.clear();
                self.continued = true;
            }
            let take = bytes.len().min(max_line - self.partial.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
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

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;

    fn frame(chunks: &[&[u8]], max_line: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = LineBuffer::default();
        for chunk in chunks {
            buf.push(chunk, max_line, &mut |l: &[u8]| out.push(l.to_vec()));
            assert!(buf.pending() <= max_line);
        }
        buf.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

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
            data in proptest::collection::vec(
                proptest::prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), proptest::num::u8::ANY],
                0..300,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            max_line in 1usize..20,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&data[at..c]);
                at = c;
            }
            chunks.push(&data[at..]);
            let got = frame(&chunks, max_line);
            proptest::prop_assert!(got.iter().all(|r| r.len() <= max_line));
            proptest::prop_assert_eq!(got, model(&data, max_line));
        }
    }
}
