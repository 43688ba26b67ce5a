//! Numbered lines, the tests' one way to prove "each line once, whole, in order": a client
//! sends `seq 0`, `seq 1`, … each padded with spaces to `NUMBERED_LEN` bytes (100 on the wire
//! with the LF), and `assert_numbered` reads them back out of files or syslog messages.
//!
//! The padding makes a line cut short (or two lines run together) visible: every intact line
//! has the same length. Tests that need other shapes (many connections with random lengths
//! and disconnects: `soak_run.rs`, `load.rs`) carry their own per-connection check.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::path::Path;
use std::thread::JoinHandle;

use super::split_record;

/// Bytes of a numbered line without its LF.
pub const NUMBERED_LEN: usize = 99;

/// Line `n`: `seq N` padded with spaces to `NUMBERED_LEN` bytes, without LF.
pub fn numbered_line(n: u64) -> String {
    format!("{:<NUMBERED_LEN$}", format!("seq {n}"))
}

/// Lines `numbers`, each followed by LF, as one block to write.
pub fn numbered_lines(numbers: Range<u64>) -> String {
    numbers.map(|n| numbered_line(n) + "\n").collect()
}

/// A client thread that sends lines `0..count` with blocking writes; returns its local
/// address and the thread.
pub fn stream_numbered(addr: SocketAddr, count: u64) -> (SocketAddr, JoinHandle<()>) {
    let stream = TcpStream::connect(addr).unwrap();
    let local = stream.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, stream);
        for n in 0..count {
            writeln!(w, "{}", numbered_line(n)).unwrap();
        }
        w.flush().unwrap();
    });
    (local, handle)
}

/// What surrounds each line in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The record is the line (`--format raw`, or a syslog message's text after the peer).
    Raw,
    /// `TIME PEER LINE` (`--format default`).
    Default,
}

/// Checks that the records in `texts` (each a file's content or one message, oldest first)
/// are exactly the numbered lines `expected`, each once, in order, intact.
pub fn assert_numbered(texts: &[impl AsRef<str>], expected: Range<u64>, layout: Layout) {
    let mut next = expected.start;
    for (i, text) in texts.iter().enumerate() {
        for record in text.as_ref().lines() {
            let line = match layout {
                Layout::Raw => record,
                Layout::Default => split_record(record).2,
            };
            let n: u64 = line
                .trim_end()
                .strip_prefix("seq ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("text {i}: mangled record {record:?}"));
            assert_eq!(n, next, "text {i}: lost or duplicated around {next}");
            assert_eq!(line, numbered_line(n), "text {i}: intact");
            next += 1;
        }
    }
    assert_eq!(next, expected.end, "lines recorded");
}

/// The contents of `files`, in order, for `assert_numbered`.
pub fn file_texts(files: &[impl AsRef<Path>]) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            let f = f.as_ref();
            std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()))
        })
        .collect()
}

/// The checker itself: it passes what it should and catches each kind of fault.
#[test]
fn assert_numbered_catches_loss_duplication_reordering_and_damage() {
    let fails = |texts: Vec<String>, expected: Range<u64>| {
        std::panic::catch_unwind(|| assert_numbered(&texts, expected, Layout::Raw)).is_err()
    };
    let good = numbered_lines(0..3);
    assert!(!fails(vec![good.clone()], 0..3));
    // Split across files (a rotation), or one message each.
    assert!(!fails(
        vec![numbered_lines(0..1), numbered_lines(1..3)],
        0..3
    ));
    let messages = (5..8).map(numbered_line).collect();
    assert!(!fails(messages, 5..8));
    assert!(fails(vec![good.clone()], 0..4), "lost at the end");
    assert!(fails(vec![numbered_lines(1..3)], 0..3), "lost at the start");
    let dup = numbered_lines(0..2) + &numbered_lines(1..3);
    assert!(fails(vec![dup], 0..3), "duplicated");
    let swapped = numbered_lines(1..2) + &numbered_lines(0..1) + &numbered_lines(2..3);
    assert!(fails(vec![swapped], 0..3), "reordered");
    let cut = good.replacen(&numbered_line(1), "seq 1", 1);
    assert!(fails(vec![cut], 0..3), "cut short");
    let stamped = format!(
        "2026-11-23T21:05:01.123456Z 127.0.0.1:4000 {}",
        numbered_line(0)
    );
    assert!(
        std::panic::catch_unwind(|| assert_numbered(&[&stamped], 0..1, Layout::Default)).is_ok()
    );
    assert!(std::panic::catch_unwind(|| assert_numbered(&[&stamped], 0..1, Layout::Raw)).is_err());
}
