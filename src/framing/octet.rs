//! Octet-counted framing (RFC 6587 3.4.1): `MSG-LEN SP SYSLOG-MSG`, what rsyslog, syslog-ng
//! and RFC 5425 (TLS) senders use so that a message may hold LFs.
//!
//! MSG-LEN is a decimal count of the bytes after the SP: 1 to 9 digits, the first not `0`. A
//! frame is one record, whatever bytes it holds, but for one LF at its very end: rsyslog's
//! forwarding templates end each message with one, counted in the frame, and rsyslog drops it
//! on receipt (`DropTrailingLFOnReception`); so does logsinkd. One longer than `max_line` is handed out in
//! pieces of exactly `max_line` bytes, as a long line is, so a connection never holds more than
//! `max_line` bytes whatever the count says. An LF or CRLF between frames (some senders end each
//! frame with one) is skipped.
//!
//! A header that breaks these rules (not a digit, no SP after the digits, a count of 0 or with
//! a leading zero, more than 9 digits) is not guessed around: `push` stops there and returns
//! where, and the caller frames the rest of the connection as lines, starting with the header
//! bytes taken so far (`take_header`), so nothing is lost. Like the line framer, the records
//! depend only on the bytes, never on how reads split them.

/// Most digits in a MSG-LEN: up to 999,999,999 bytes.
pub const MAX_DIGITS: usize = 9;

/// Capacity above which an emptied buffer gives its memory back, so idle connections stay small.
const KEEP_CAPACITY: usize = 4096;

/// The state of one octet-counted connection.
#[derive(Debug, Default)]
pub struct OctetBuffer {
    /// The digits of the header being read (between frames).
    head: [u8; MAX_DIGITS],
    head_len: usize,
    /// Bytes of the current frame still to come; 0 between frames.
    remaining: usize,
    /// Bytes of the current frame received so far and not yet handed out (at most `max_line`).
    partial: Vec<u8>,
    /// Part of the current frame was already handed out in pieces.
    continued: bool,
}

/// How a connection ended, for the stats.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Between frames: nothing was cut short.
    Clean,
    /// Inside a frame or its header: what had come of it was recorded.
    Truncated,
}

impl OctetBuffer {
    /// Frames `data` (the next bytes of the stream), calling `emit` for every record completed.
    /// `Err(at)`: the header starting before `data[at]` is not a valid one; nothing from
    /// `data[at..]` was taken, and the header's bytes so far are in `take_header`.
    pub fn push(
        &mut self,
        mut data: &[u8],
        max_line: usize,
        emit: &mut impl FnMut(&[u8]),
    ) -> Result<(), usize> {
        let total = data.len();
        while let Some(&b) = data.first() {
            if self.remaining == 0 && self.head_len == 0 {
                // The common case, a whole frame in this read: header and body in one step.
                if let Some((len, start)) = whole_header(data) {
                    if let Some(body) = data.get(start..start + len).filter(|_| len <= max_line) {
                        emit(body.strip_suffix(b"\n").unwrap_or(body));
                        data = &data[start + len..];
                        continue;
                    }
                }
            }
            if self.remaining == 0 {
                match b {
                    b'\n' | b'\r' if self.head_len == 0 => {}
                    b'1'..=b'9' if self.head_len < MAX_DIGITS => self.push_digit(b),
                    b'0' if (1..MAX_DIGITS).contains(&self.head_len) => self.push_digit(b),
                    b' ' if self.head_len > 0 => {
                        self.remaining = self.head[..self.head_len]
                            .iter()
                            .fold(0, |n, d| n * 10 + usize::from(d - b'0'));
                        self.head_len = 0;
                    }
                    _ => return Err(total - data.len()),
                }
                data = &data[1..];
                continue;
            }
            let take = self.remaining.min(data.len());
            let (body, rest) = data.split_at(take);
            self.remaining -= take;
            data = rest;
            if self.remaining == 0 && self.partial.is_empty() && !self.continued {
                // The whole frame is in this read: out without a copy, if it fits.
                if body.len() <= max_line {
                    emit(body.strip_suffix(b"\n").unwrap_or(body));
                    continue;
                }
            }
            self.append(body, max_line, emit);
            if self.remaining == 0 {
                // A full piece waits for one more byte, so the frame's last byte is here.
                let last = self.partial.strip_suffix(b"\n").unwrap_or(&self.partial);
                // An LF alone after pieces was only the frame's end.
                if !(last.is_empty() && self.continued) {
                    emit(last);
                }
                self.partial.clear();
                self.continued = false;
                self.release_if_idle();
            }
        }
        Ok(())
    }

    #[inline]
    fn push_digit(&mut self, digit: u8) {
        self.head[self.head_len] = digit;
        self.head_len += 1;
    }

    /// The header bytes taken since the last frame (after `push` returned `Err`), emptied.
    pub fn take_header(&mut self) -> Vec<u8> {
        let head = self.head[..self.head_len].to_vec();
        self.head_len = 0;
        head
    }

    /// Hands out what came of a frame cut short (the client is gone or the daemon stops): its
    /// body so far, or the digits of its header (in `max_line` pieces, as any record).
    pub fn finish(&mut self, max_line: usize, emit: &mut impl FnMut(&[u8])) -> End {
        let end = if self.remaining > 0 || self.head_len > 0 {
            End::Truncated
        } else {
            End::Clean
        };
        if !self.partial.is_empty() {
            emit(&self.partial);
        } else {
            self.head[..self.head_len].chunks(max_line).for_each(emit);
        }
        *self = OctetBuffer::default();
        end
    }

    /// Bytes held for the unfinished frame (never more than `max_line`, plus a header's digits).
    pub fn pending(&self) -> usize {
        self.partial.len() + self.head_len
    }

    /// Adds bytes of the current frame, emitting `max_line` pieces whenever more than
    /// `max_line` bytes are waiting. A full piece waits for one more byte, so a frame of
    /// exactly `max_line` bytes stays one record.
    fn append(&mut self, bytes: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8])) {
        super::lines::append_in_pieces(
            &mut self.partial,
            &mut self.continued,
            bytes,
            max_line,
            emit,
        );
    }

    fn release_if_idle(&mut self) {
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        }
    }
}

/// A valid header that `data` starts with, whole: (MSG-LEN, where the message starts). `None`
/// for anything else (a header cut by the read's end, or not a valid one), which the byte by
/// byte path then takes.
#[inline]
fn whole_header(data: &[u8]) -> Option<(usize, usize)> {
    let (&first, _) = data.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut len = usize::from(first - b'0');
    for (i, &b) in data.iter().enumerate().take(MAX_DIGITS + 1).skip(1) {
        match b {
            b'0'..=b'9' if i < MAX_DIGITS => len = len * 10 + usize::from(b - b'0'),
            b' ' => return Some((len, i + 1)),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of `chunks` and where a bad header stopped framing (chunk, offset).
    fn frame(chunks: &[&[u8]], max_line: usize) -> (Vec<Vec<u8>>, Option<(usize, usize)>, End) {
        let mut out = Vec::new();
        let mut buf = OctetBuffer::default();
        for (i, chunk) in chunks.iter().enumerate() {
            if let Err(at) = buf.push(chunk, max_line, &mut |r: &[u8]| out.push(r.to_vec())) {
                return (out, Some((i, at)), End::Clean);
            }
            assert!(buf.pending() <= max_line + MAX_DIGITS);
        }
        let end = buf.finish(max_line, &mut |r: &[u8]| out.push(r.to_vec()));
        (out, None, end)
    }

    fn records(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Frames with LFs inside, back to back, with and without an LF after each.
    #[test]
    fn frames() {
        let (got, bad, end) = frame(&[b"5 hello3 a\nb\n11 <13>1 x\ny z\n"], 100);
        assert_eq!(got, records(&["hello", "a\nb", "<13>1 x\ny z"]));
        assert_eq!((bad, end), (None, End::Clean));
        // One LF ending a frame is dropped (rsyslog's forwarding adds it); only one.
        let (got, bad, end) = frame(&[b"6 hello\n3 a\n\n1 \n"], 100);
        assert_eq!(got, records(&["hello", "a\n", ""]));
        assert_eq!((bad, end), (None, End::Clean));
    }

    /// Frames split anywhere, across header and body, come out the same.
    #[test]
    fn split_anywhere() {
        let data: &[u8] = b"5 hello\n12 twelve bytes10 0123456789";
        let (whole, _, _) = frame(&[data], 100);
        for cut in 0..=data.len() {
            for cut2 in cut..=data.len() {
                let parts = [&data[..cut], &data[cut..cut2], &data[cut2..]];
                assert_eq!(frame(&parts, 100).0, whole, "cut {cut}/{cut2}");
            }
        }
    }

    /// A frame longer than max_line comes in max_line pieces; an exact fit is one record.
    #[test]
    fn long_frames_in_pieces() {
        assert_eq!(
            frame(&[b"7 abcdefg3 abc"], 3).0,
            records(&["abc", "def", "g", "abc"])
        );
        assert_eq!(frame(&[b"6 abc", b"def"], 3).0, records(&["abc", "def"]));
        assert_eq!(frame(&[b"4 abc\n"], 3).0, records(&["abc"]));
        assert_eq!(frame(&[b"4 ab", b"c\n"], 3).0, records(&["abc"]));
        assert_eq!(frame(&[b"5 abcd\n"], 3).0, records(&["abc", "d"]));
    }

    /// Bad headers stop framing at the offending byte; the digits so far are kept.
    #[test]
    fn bad_headers() {
        for (data, at, head) in [
            (&b"x hello"[..], 0, &b""[..]),
            (b"5 hello0 x", 7, b""),
            (b"05 hello", 0, b""),
            (b"12x", 2, b"12"),
            (b" 5 hello", 0, b""),
            (b"1234567890 x", 9, b"123456789"),
            (b"3 abc\r\nx", 7, b""),
        ] {
            let mut buf = OctetBuffer::default();
            let got = buf.push(data, 100, &mut |_| {});
            assert_eq!(got, Err(at), "{:?}", String::from_utf8_lossy(data));
            assert_eq!(buf.take_header(), head);
        }
        // Nine digits are fine.
        let mut buf = OctetBuffer::default();
        assert_eq!(buf.push(b"999999999 ab", 100, &mut |_| {}), Ok(()));
        assert_eq!(buf.pending(), 2);
    }

    /// A frame cut short is recorded as far as it came, and said to be truncated.
    #[test]
    fn cut_short() {
        let (got, _, end) = frame(&[b"10 abc"], 100);
        assert_eq!((got, end), (records(&["abc"]), End::Truncated));
        let (got, _, end) = frame(&[b"4 ab", b"cd1"], 100);
        assert_eq!((got, end), (records(&["abcd", "1"]), End::Truncated));
        let (got, _, end) = frame(&[b"4 "], 100);
        assert_eq!((got, end), (vec![], End::Truncated));
        let (got, _, end) = frame(&[b"8 abcdefg"], 3);
        assert_eq!((got, end), (records(&["abc", "def", "g"]), End::Truncated));
    }
}
