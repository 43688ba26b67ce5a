//! The framers behind a listener's `framing` setting (lines, octet-counted, auto): whatever the
//! bytes and however reads split them, the records are the same, none is longer than
//! max_line, the connection never holds more than max_line bytes plus a header's few, and they
//! are what the slow model written on the whole stream gives (frames while headers are good,
//! lines from the first bad one on, `auto` framing only a stream that starts with a complete
//! header and PRI).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logsinkd::framing::Mode;
use logsinkd::framing::testing::{frame_with, model, split_at};

fuzz_target!(|input: &[u8]| {
    // First byte: mode and max_line; next four: cut points; the rest: the stream.
    if input.len() < 5 {
        return;
    }
    let mode = [Mode::Lines, Mode::Octet, Mode::Auto][usize::from(input[0] % 3)];
    let max_line = usize::from(input[0] / 3 % 64) + 1;
    let data = &input[5..];
    let cuts = input[1..5]
        .iter()
        .map(|&c| usize::from(c) * data.len() / 255);
    let chunks = split_at(data, cuts.collect());
    let (whole, _) = frame_with(&[data], mode, max_line);
    let (split, _) = frame_with(&chunks, mode, max_line);
    assert_eq!(whole, split, "records depend on how reads split the stream");
    assert!(whole.iter().all(|r| r.len() <= max_line), "record over max_line");
    assert_eq!(whole, model(data, mode, max_line), "differs from the model");
});
