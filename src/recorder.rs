//! The path from received bytes to the output: frame them into lines (`line_buffer.rs`), stamp
//! each with the receipt time and the peer, and queue the records in the sink.

use crate::line_buffer::{LineBuffer, Piece};
use crate::record::Clock;
use crate::sink::Sink;
use crate::stats::Stats;

pub struct Recorder {
    pub sink: Sink,
    pub stats: Stats,
    pub max_line: usize,
    clock: Clock,
}

impl Recorder {
    pub fn new(sink: Sink, max_line: usize) -> Recorder {
        Recorder {
            sink,
            stats: Stats::default(),
            max_line,
            clock: Clock::default(),
        }
    }

    /// Records the lines `data` completes; all get the same receipt time (one clock read per
    /// read from the socket).
    pub fn ingest(&mut self, peer: &[u8], lines: &mut LineBuffer, data: &[u8]) {
        self.stats.bytes += data.len() as u64;
        let time = self.clock.now();
        let (sink, count) = (&mut self.sink, &mut self.stats.lines);
        // The lines of a read that need no change come as one run, queued in one go.
        lines.push_pieces(data, self.max_line, &mut |piece| match piece {
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

    /// Records the unfinished line of a connection that ends.
    pub fn finish(&mut self, peer: &[u8], lines: &mut LineBuffer) {
        let time = self.clock.now();
        let (sink, count) = (&mut self.sink, &mut self.stats.lines);
        lines.finish(&mut |line: &[u8]| {
            sink.record(time, peer, line);
            *count += 1;
        });
    }
}
