//! The path from received bytes to the output: read them from the client's socket, frame them
//! into records (lines or octet-counted frames, `framing/`), scan each for syslog fields where
//! the listener parses and the output shows them (`syslog_parse.rs`), stamp each with the
//! receipt time and the peer, and queue the records in the sink.
//!
//! A `Recorder` is a short-lived view made for each read pass: the `Framing` (the clock and
//! `max_line`, kept by the event loop), the output's sink and the counters of the listener
//! whose bytes it records (the server owns them, see stats.rs).
//!
//! Raw format to a file skips a copy: records are the bytes as received, so a read lands
//! straight in the output batch, behind the connection's unfinished line, and stays there when
//! its lines need no change (no CR, none too long), which is nearly always. Only a short
//! unfinished line is copied in front of a read (`IN_PLACE_CARRY`): a client trickling a long
//! line must not make every read copy and rescan all of it again.

use std::io::{self, Read};
use std::os::fd::AsFd;

use socket2::SockRef;

use crate::clock::Clock;
use crate::diag::warning;
use crate::format::raw_record;
use crate::framing::{End, Framer, LineBuffer, Piece, Switch, run_lines};
use crate::input::Parse;
use crate::sink::Sink;
use crate::stats::ListenerStats;
use crate::syslog_parse;

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

/// Records into `sink`, counting lines and bytes in `stats`: its listener's counters.
pub struct Recorder<'a> {
    pub sink: &'a mut Sink,
    pub stats: &'a mut ListenerStats,
    framing: &'a mut Framing,
}

impl<'a> Recorder<'a> {
    /// The records come in on the listener whose counters `stats` are (and whose name the
    /// journal output records).
    #[inline]
    pub fn new(framing: &'a mut Framing, sink: &'a mut Sink, stats: &'a mut ListenerStats) -> Self {
        sink.set_listener(&stats.name);
        sink.set_tls_peer(None);
        Recorder {
            sink,
            stats,
            framing,
        }
    }

    /// True if records of a listener with `parse` are scanned for syslog fields: it parses,
    /// and the output shows them (otherwise the scan would cost and change nothing).
    #[inline]
    pub fn scans(&self, parse: Parse) -> bool {
        parse == Parse::Syslog && self.sink.shows_fields()
    }

    /// Reads once from `socket` (at most `scratch.len()` bytes) and records what came; `Ok(0)`
    /// at the end of the stream. `scratch` is the read buffer all connections share.
    pub fn read_from(
        &mut self,
        socket: &mut (impl Read + AsFd),
        peer: &[u8],
        framer: &mut Framer,
        parse: Parse,
        scratch: &mut [u8],
    ) -> io::Result<usize> {
        let scan = self.scans(parse);
        if let (false, Some(lines)) = (scan, framer.lines()) {
            let carry = lines.unfinished().filter(|u| u.len() <= IN_PLACE_CARRY);
            if self.sink.routes() {
                // A templated output: the read's file, picked before reading into its batch.
                self.stamp(peer);
            }
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
                if let Some((complete, count)) =
                    lines.take_run(&batch[start..], self.framing.max_line)
                {
                    batch.truncate(start + complete);
                    self.stats.lines += count;
                    return Ok(n);
                }
                // Some line needs a change: frame the new bytes the general way.
                scratch[..n].copy_from_slice(&batch[batch.len() - n..]);
                batch.truncate(start);
                self.frame(peer, framer, scan, &scratch[..n]);
                return Ok(n);
            }
        }
        let n = socket.read(scratch)?;
        if n > 0 {
            self.stats.bytes += n as u64;
            self.frame(peer, framer, scan, &scratch[..n]);
        }
        Ok(n)
    }

    /// Reads the clock for the records that follow, and routes them: a templated output picks
    /// the file of `peer` at this second (see sink/files.rs).
    #[inline]
    fn stamp(&mut self, peer: &[u8]) {
        self.framing.clock.now();
        self.sink.route(self.framing.clock.second(), peer);
    }

    /// Records what `data`, the next bytes of a stream read elsewhere (after a PROXY
    /// header, already counted), completes.
    pub fn record_stream(&mut self, peer: &[u8], framer: &mut Framer, parse: Parse, data: &[u8]) {
        let scan = self.scans(parse);
        self.frame(peer, framer, scan, data);
    }

    /// Records the records `data` (the next bytes of a stream) completes; all get the same
    /// receipt time (one clock read per read from the socket).
    fn frame(&mut self, peer: &[u8], framer: &mut Framer, scan: bool, data: &[u8]) {
        self.stamp(peer);
        let time = self.framing.clock.text();
        let (sink, stats) = (&mut *self.sink, &mut *self.stats);
        let max_line = self.framing.max_line;
        let switch = match sink.raw_batch().filter(|_| !scan) {
            // Raw format to a file: a record is the line (or frame) and an LF, queued here.
            Some(batch) => framer.push(data, max_line, &mut |piece| match piece {
                Piece::Line(line) => {
                    stats.lines += 1;
                    raw_record(batch, line);
                }
                Piece::Lines(run, count) => {
                    batch.extend_from_slice(run);
                    stats.lines += count;
                }
            }),
            None => framer.push(data, max_line, &mut |piece| match piece {
                Piece::Line(line) => record(sink, stats, time, peer, line, scan),
                // The lines of a read that need no change come as one run, queued in one go.
                Piece::Lines(run, count) if !scan => {
                    sink.record_lines(time, peer, run);
                    stats.lines += count;
                }
                Piece::Lines(run, _) => {
                    for line in run_lines(run) {
                        record(sink, stats, time, peer, line, scan);
                    }
                }
            }),
        };
        if let Some(Switch::BadHeader(seen)) = switch {
            let mut shown = Vec::new();
            crate::format::escape_into(&mut shown, &seen);
            warning!(
                "{}: not an octet-counting header: `{}`; recording the rest of this connection \
                 as lines",
                String::from_utf8_lossy(peer),
                String::from_utf8_lossy(&shown)
            );
        }
    }

    /// Records one datagram. With `parse = syslog` it is one message (RFC 5426), an LF (or
    /// CRLF) at its end dropped, in `max_line` pieces if longer; otherwise each of its lines,
    /// and a last line without LF. Nothing carries over to the next datagram; an empty one is
    /// no record.
    pub fn record_datagram(&mut self, peer: &[u8], data: &[u8], parse: Parse) {
        self.stats.bytes += data.len() as u64;
        let scan = self.scans(parse);
        if parse == Parse::Syslog {
            self.stamp(peer);
            let time = self.framing.clock.text();
            let message = data.strip_suffix(b"\n").unwrap_or(data);
            let message = message.strip_suffix(b"\r").unwrap_or(message);
            let (sink, stats) = (&mut *self.sink, &mut *self.stats);
            for piece in message.chunks(self.framing.max_line) {
                record(sink, stats, time, peer, piece, scan);
            }
            return;
        }
        let mut framer = Framer::Lines(LineBuffer::default());
        self.frame(peer, &mut framer, scan, data);
        self.finish(peer, &mut framer, parse);
    }

    /// Records the unfinished record of a connection that ends; one cut short inside an
    /// octet-counted frame counts as truncated.
    pub fn finish(&mut self, peer: &[u8], framer: &mut Framer, parse: Parse) {
        let scan = self.scans(parse);
        self.stamp(peer);
        let time = self.framing.clock.text();
        let (sink, stats) = (&mut *self.sink, &mut *self.stats);
        let end = framer.finish(self.framing.max_line, &mut |line: &[u8]| {
            record(sink, stats, time, peer, line, scan);
        });
        if end == End::Truncated {
            self.stats.truncated += 1;
        }
    }
}

/// Queues one record, with its syslog fields if `scan` and it has them.
#[inline]
fn record(
    sink: &mut Sink,
    stats: &mut ListenerStats,
    time: &[u8],
    peer: &[u8],
    line: &[u8],
    scan: bool,
) {
    stats.lines += 1;
    if scan {
        match syslog_parse::parse(line) {
            Some(msg) => return sink.record_parsed(time, peer, line, &msg),
            None => stats.unparsed += 1,
        }
    }
    sink.record(time, peer, line);
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
    use crate::format::Format;
    use crate::framing::testing::{split_at, stream};
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
        let syslog = crate::sink::SyslogOptions {
            facility: "user".into(),
            protocol: Default::default(),
            framing: Default::default(),
        };
        let sink = Sink::open(&Target::File(path.clone()), format, &syslog, None).unwrap();
        let mut sink = sink;
        let (mut framing, mut stats) = (Framing::new(max_line), ListenerStats::default());
        let mut recorder = Recorder::new(&mut framing, &mut sink, &mut stats);
        let (mut client, mut server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut lines = Framer::Lines(LineBuffer::default());
        let mut scratch = vec![0; read_size];
        for chunk in chunks {
            client.write_all(chunk).unwrap();
            loop {
                match recorder.read_from(
                    &mut server,
                    b"peer",
                    &mut lines,
                    Parse::None,
                    &mut scratch,
                ) {
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
                .read_from(&mut server, b"peer", &mut lines, Parse::None, &mut scratch)
                .unwrap(),
            0
        );
        recorder.finish(b"peer", &mut lines, Parse::None);
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
