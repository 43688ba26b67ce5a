//! The path from received bytes to the output: read them from the client's socket, frame them
//! into lines (`line_buffer.rs`), stamp each with the receipt time and the peer, and queue the
//! records in the sink.
//!
//! A `Recorder` is a short-lived view made for each read pass: the `Framing` (the clock and
//! `max_line`, kept by the event loop), the output's sink and the server's stats.
//!
//! Raw format to a file skips a copy: records are the bytes as received, so a read lands
//! straight in the output batch, behind the connection's unfinished line, and stays there when
//! its lines need no change (no CR, none too long), which is nearly always. Only a short
//! unfinished line is copied in front of a read (`IN_PLACE_CARRY`): a client trickling a long
//! line must not make every read copy and rescan all of it again.

use std::io::{self, Read};
use std::os::fd::AsFd;

use socket2::SockRef;

use crate::line_buffer::{LineBuffer, Piece};
use crate::record::Clock;
use crate::sink::Sink;
use crate::stats::Stats;

/// The longest unfinished line a read is framed in place behind; a longer one takes the general
/// path, which only ever appends the new bytes. So the in-place path costs at most this much
/// extra per read, whatever the client does, and still covers lines of up to a few KiB.
const IN_PLACE_CARRY: usize = 4096;

/// What turns bytes into records beyond the bytes themselves: the longest line and the clock
/// that stamps them.
pub struct Framing {
    pub max_line: usize,
    clock: Clock,
}

impl Framing {
    pub fn new(max_line: usize) -> Framing {
        Framing {
            max_line,
            clock: Clock::default(),
        }
    }
}

/// Records into `sink`, counting lines and bytes in `stats`.
pub struct Recorder<'a> {
    pub sink: &'a mut Sink,
    pub stats: &'a mut Stats,
    framing: &'a mut Framing,
}

impl<'a> Recorder<'a> {
    #[inline]
    pub fn new(framing: &'a mut Framing, sink: &'a mut Sink, stats: &'a mut Stats) -> Self {
        Recorder {
            sink,
            stats,
            framing,
        }
    }

    /// Reads once from `socket` (at most `scratch.len()` bytes) and records what came; `Ok(0)`
    /// at the end of the stream. `scratch` is the read buffer all connections share.
    pub fn read_from(
        &mut self,
        socket: &mut (impl Read + AsFd),
        peer: &[u8],
        lines: &mut LineBuffer,
        scratch: &mut [u8],
    ) -> io::Result<usize> {
        let carry = lines.unfinished().filter(|u| u.len() <= IN_PLACE_CARRY);
        if let (Some(batch), Some(unfinished)) = (self.sink.raw_batch(), carry) {
            let start = batch.len();
            batch.extend_from_slice(unfinished);
            let n = recv_appending(SockRef::from(&*socket), batch, scratch.len())
                .inspect_err(|_| batch.truncate(start))?;
            if n == 0 {
                batch.truncate(start);
                return Ok(0);
            }
            self.stats.bytes += n as u64;
            if let Some((complete, count)) = lines.take_run(&batch[start..], self.framing.max_line)
            {
                batch.truncate(start + complete);
                self.stats.lines += count;
                return Ok(n);
            }
            // Some line needs a change: frame the new bytes the general way.
            scratch[..n].copy_from_slice(&batch[batch.len() - n..]);
            batch.truncate(start);
            self.frame(peer, lines, &scratch[..n]);
            return Ok(n);
        }
        let n = socket.read(scratch)?;
        if n > 0 {
            self.ingest(peer, lines, &scratch[..n]);
        }
        Ok(n)
    }

    /// Records the lines `data` completes; all get the same receipt time (one clock read per
    /// read from the socket).
    pub fn ingest(&mut self, peer: &[u8], lines: &mut LineBuffer, data: &[u8]) {
        self.stats.bytes += data.len() as u64;
        self.frame(peer, lines, data);
    }

    fn frame(&mut self, peer: &[u8], lines: &mut LineBuffer, data: &[u8]) {
        let time = self.framing.clock.now();
        let (sink, count) = (&mut *self.sink, &mut self.stats.lines);
        // The lines of a read that need no change come as one run, queued in one go.
        lines.push_pieces(data, self.framing.max_line, &mut |piece| match piece {
            Piece::Line(line) => {
                sink.record(time, peer, line);
                *count += 1;
            }
            Piece::Lines(run, lines) => {
                sink.record_lines(time, peer, run);
                *count += lines;
            }
        });
    }

    /// Records one datagram: each of its lines, and a last line without LF, since a datagram
    /// is whole (nothing carries over to the next one).
    pub fn record_datagram(&mut self, peer: &[u8], data: &[u8]) {
        let mut lines = LineBuffer::default();
        self.ingest(peer, &mut lines, data);
        self.finish(peer, &mut lines);
    }

    /// Records the unfinished line of a connection that ends.
    pub fn finish(&mut self, peer: &[u8], lines: &mut LineBuffer) {
        let time = self.framing.clock.now();
        let (sink, count) = (&mut *self.sink, &mut self.stats.lines);
        lines.finish(&mut |line: &[u8]| {
            sink.record(time, peer, line);
            *count += 1;
        });
    }
}

/// `recv(2)` of at most `max` bytes appended to `out`, without first zeroing the space (which
/// `Read::read` would need).
#[inline]
fn recv_appending(socket: SockRef<'_>, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    out.reserve(max);
    let n = socket.recv(&mut out.spare_capacity_mut()[..max])?;
    // SAFETY: recv initialized the first `n` bytes of the spare capacity.
    unsafe { out.set_len(out.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_buffer::testing::{split_at, stream};
    use crate::record::Format;
    use crate::sink::Target;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// Sends `chunks` through a real socket, one after another, reading each with `read_from`
    /// in reads of at most `read_size` bytes; returns what the output file holds and the stats.
    fn through_socket(
        chunks: &[&[u8]],
        format: Format,
        max_line: usize,
        read_size: usize,
    ) -> (Vec<u8>, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let sink = Sink::open(&Target::File(path.clone()), format, "user", None).unwrap();
        let mut sink = sink;
        let (mut framing, mut stats) = (Framing::new(max_line), Stats::default());
        let mut recorder = Recorder::new(&mut framing, &mut sink, &mut stats);
        let (mut client, mut server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut lines = LineBuffer::default();
        let mut scratch = vec![0; read_size];
        for chunk in chunks {
            client.write_all(chunk).unwrap();
            loop {
                match recorder.read_from(&mut server, b"peer", &mut lines, &mut scratch) {
                    Ok(n) => assert!(n > 0, "the client is still there"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(lines.pending() <= max_line);
        }
        drop(client);
        assert_eq!(
            recorder
                .read_from(&mut server, b"peer", &mut lines, &mut scratch)
                .unwrap(),
            0
        );
        recorder.finish(b"peer", &mut lines);
        recorder
            .sink
            .flush()
            .map_err(|e| e.error().to_string())
            .unwrap();
        let stats = (recorder.stats.lines, recorder.stats.bytes);
        (std::fs::read(path).unwrap(), stats.0, stats.1)
    }

    proptest::proptest! {
        /// Raw output read straight into the batch is exactly the framer's records, each plus
        /// LF, whatever the bytes and however they are cut into sends and reads.
        #[test]
        fn raw_in_place_matches_framer(
            data in stream(600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
            max_line in 1usize..300,
            read_size in 1usize..200,
            keep_cr in proptest::bool::ANY,
        ) {
            // Without CRs, most reads take the in-place path; with them, many fall back.
            let data: Vec<u8> = data.into_iter().filter(|&b| keep_cr || b != b'\r').collect();
            let chunks = split_at(&data, cuts);
            let mut expected = Vec::new();
            let mut count = 0;
            let mut framer = LineBuffer::default();
            let mut emit = |line: &[u8]| {
                expected.extend_from_slice(line);
                expected.push(b'\n');
                count += 1;
            };
            framer.push(&data, max_line, &mut emit);
            framer.finish(&mut emit);
            let (got, lines, bytes) = through_socket(&chunks, Format::Raw, max_line, read_size);
            proptest::prop_assert_eq!(got, expected);
            proptest::prop_assert_eq!(lines, count);
            proptest::prop_assert_eq!(bytes, data.len() as u64);
        }
    }
}
