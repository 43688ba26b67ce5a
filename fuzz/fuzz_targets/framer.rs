//! The line framer: whatever the bytes and however reads split them, the records are the
//! same, none is longer than max_line, the buffer never holds more than max_line bytes, the
//! records with their LFs account for every input byte but stripped CRs, and the fast path
//! that hands out whole runs of lines (`push_pieces`) and the in-place framing of raw output
//! (`take_run`, falling back to `push_pieces` as `Recorder::read_from` does) give exactly the
//! same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logsinkd::framing::LineBuffer;
use logsinkd::framing::testing::{expand, frame, frame_pieces, push_expanding, split_at};

/// `frame` as raw output to a file does it: the unfinished line and the new bytes framed in
/// place where possible, else the new bytes through `push_pieces`.
fn frame_in_place(chunks: &[&[u8]], max_line: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = LineBuffer::default();
    for chunk in chunks {
        if let Some(unfinished) = buf.unfinished() {
            let data = [unfinished, chunk].concat();
            if let Some((complete, count)) = buf.take_run(&data, max_line) {
                expand(&mut out, &data[..complete], count);
                assert!(buf.pending() <= max_line, "buffer over max_line");
                continue;
            }
        }
        push_expanding(&mut buf, chunk, max_line, &mut out);
    }
    buf.finish(&mut |l: &[u8]| out.push(l.to_vec()));
    out
}

fuzz_target!(|input: &[u8]| {
    // First byte: max_line; next four: cut points; the rest: the stream.
    if input.len() < 5 {
        return;
    }
    let max_line = usize::from(input[0] % 64) + 1;
    let data = &input[5..];
    let cuts = input[1..5]
        .iter()
        .map(|&c| usize::from(c) * data.len() / 255);
    let chunks = split_at(data, cuts.collect());
    let whole = frame(&[data], max_line);
    let split = frame(&chunks, max_line);
    assert_eq!(whole, split, "records depend on how reads split the stream");
    assert_eq!(
        frame_pieces(&chunks, max_line),
        split,
        "push_pieces differs from push"
    );
    assert_eq!(
        frame_in_place(&chunks, max_line),
        split,
        "take_run differs from push"
    );
    assert!(whole.iter().all(|r| r.len() <= max_line));
    let kept: usize = whole.iter().map(Vec::len).sum();
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    let crs = data.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(kept + newlines + crs, data.len(), "bytes lost or invented");
});
