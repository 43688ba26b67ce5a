//! The PROXY protocol header reader: whatever the bytes and however reads split them, it
//! never panics, reaches the same verdict (the same client, the same reason), finds the
//! client's data at the same offset, never takes more than it was given, and a complete
//! header is never longer than the spec allows (107 bytes for v1, 16 + 65,535 for v2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logsinkd::proxy_header::testing::{read_in_pieces, split};
use logsinkd::proxy_header::{Progress, V1_MAX};

fuzz_target!(|input: &[u8]| {
    // First three bytes: cut points; the rest: the stream.
    if input.len() < 3 {
        return;
    }
    let data = &input[3..];
    let cuts = input[..3]
        .iter()
        .map(|&c| usize::from(c) * data.len() / 255)
        .collect();
    let (whole, at) = read_in_pieces(&[data]);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let (byte_by_byte, at_bytes) = read_in_pieces(&bytes);
    let (pieces, at_pieces) = read_in_pieces(&split(data, cuts));
    let verdict = |p: Progress| match p {
        Progress::Done { source, .. } => Some(Ok(source)),
        Progress::Invalid(why) => Some(Err(why)),
        Progress::More => None,
    };
    assert_eq!(verdict(whole), verdict(byte_by_byte), "one byte at a time");
    assert_eq!(verdict(whole), verdict(pieces), "in pieces");
    if let Progress::Done { .. } = whole {
        assert_eq!(at, at_bytes);
        assert_eq!(at, at_pieces);
        assert!(at <= data.len());
        let limit = if data[0] == b'P' { V1_MAX } else { 16 + 65535 };
        assert!(at <= limit, "a header of {at} bytes");
    }
});
