//! Record writing: the records of a run of whole lines (`write_records`, with its vector
//! paths that copy while they scan) are exactly the records of its lines written one by one
//! (`write_record`), in every format and for any bytes; `default` and `json` records hold no
//! control byte but their LF (and tabs in `default`), nor a character that changes how the text
//! around it displays (bidirectional controls U+202A-U+202E and U+2066-U+2069, separators U+2028
//! and U+2029), so a client can neither end a record early, reach a terminal, nor make a record
//! read as something else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logsinkd::format::{Format, write_record, write_records};

fuzz_target!(|input: &[u8]| {
    // First byte: how long the peer text is; the rest: the lines (CRs removed, as the framer
    // only hands out runs without them), cut at LFs, the last one closed with an LF.
    let Some((&peer_len, data)) = input.split_first() else {
        return;
    };
    let peer = "p".repeat(usize::from(peer_len % 100));
    let time = b"2026-11-23T21:05:01.123456Z";
    let mut run: Vec<u8> = data.iter().copied().filter(|&b| b != b'\r').collect();
    run.push(b'\n');
    let lines = run[..run.len() - 1].split(|&b| b == b'\n').count();
    for format in [Format::Default, Format::Raw, Format::Json] {
        let mut one = Vec::new();
        for line in run[..run.len() - 1].split(|&b| b == b'\n') {
            write_record(format, &mut one, time, peer.as_bytes(), line);
        }
        // Written behind other data, as in a batch.
        let mut all = b"earlier records\n".to_vec();
        write_records(format, &mut all, time, peer.as_bytes(), &run);
        assert_eq!(
            &all[16..],
            &one[..],
            "{format}: run differs from line by line"
        );
        let lfs = one.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lfs, lines, "{format}: records are not one per line");
        // Tabs pass through in `default`; JSON escapes them too.
        let allowed = |b: u8| b == b'\n' || (b == b'\t' && format == Format::Default);
        if format != Format::Raw {
            assert!(
                !one.iter().any(|&b| (b < 0x20 && !allowed(b)) || b == 0x7f),
                "{format}: control byte in a record"
            );
            let text = String::from_utf8_lossy(&one);
            assert!(
                !text
                    .chars()
                    .any(|c| matches!(c, '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
                "{format}: bidirectional control or separator in a record"
            );
        }
    }
});
