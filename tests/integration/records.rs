//! What gets recorded: framing, peers, formats and escaping, over real TCP.

use std::io::Write;
use std::net::TcpStream;

use crate::util::*;

/// Concurrent clients writing interleaved partial lines get intact records with their own peer.
#[test]
fn concurrent_partial_lines_stay_whole() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let clients = 8;
    let per_client = 200;
    let mut conns: Vec<(TcpStream, String)> = (0..clients)
        .map(|_| {
            let s = d.connect();
            let peer = s.local_addr().unwrap().to_string();
            (s, peer)
        })
        .collect();
    // Every line goes out in three pieces, each client's pieces interleaved with the others'.
    for n in 0..per_client {
        for piece in 0..3 {
            for (c, (s, _)) in conns.iter_mut().enumerate() {
                let text = match piece {
                    0 => format!("client {c} "),
                    1 => format!("line {n} "),
                    _ => "end\n".to_string(),
                };
                s.write_all(text.as_bytes()).unwrap();
                s.flush().unwrap();
            }
        }
    }
    let lines = d.wait_for_lines(clients * per_client);
    assert_eq!(d.stop().code(), Some(0));
    let mut next = vec![0; clients];
    for record in &lines {
        let (time, peer, line) = split_record(record);
        assert_eq!(time.len(), 27, "time {time}");
        assert!(
            time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "time {time}"
        );
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words.len(), 5, "whole record: {record}");
        let c: usize = words[1].parse().unwrap();
        let n: usize = words[3].parse().unwrap();
        assert_eq!(words[4], "end");
        assert_eq!(peer, conns[c].1, "peer of client {c}");
        assert_eq!(n, next[c], "client {c} in order");
        next[c] += 1;
    }
    assert_eq!(next, vec![per_client; clients]);
}

/// A final line without LF is recorded when the client disconnects; CRLF loses its CR.
#[test]
fn final_partial_line_and_crlf() {
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &[]);
    send(
        d.addr,
        b"first\r\nsecond\r\r\nthird\n\nlast without newline",
    );
    let lines = d.wait_for_lines(5);
    let texts: Vec<&str> = lines.iter().map(|r| split_record(r).2).collect();
    assert_eq!(
        texts,
        ["first", "second\\x0d", "third", "", "last without newline"]
    );
    // Created O_APPEND|O_CREAT with mode 0640 (less the umask, 022 here).
    let meta = std::fs::metadata(&d.out).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o640
    );
}

/// An over-long line is recorded in max_line pieces and memory stays bounded while a client
/// streams 1 GiB without a newline.
#[test]
fn long_line_split_and_memory_bounded() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--format", "raw", "--max-line", "1000"]);
    send(d.addr, &[b'a'; 2500]);
    let mut s = d.connect();
    s.write_all(&[b'b'; 1000]).unwrap();
    s.write_all(b"\n").unwrap();
    let lines = d.wait_for_lines(4);
    assert_eq!(
        lines[..3],
        ["a".repeat(1000), "a".repeat(1000), "a".repeat(500)]
    );
    assert_eq!(lines[3], "b".repeat(1000));
    drop(s);
    assert_eq!(d.stop().code(), Some(0));

    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--format", "raw"]);
    let before = peak_rss_kib(d.pid());
    let mut s = d.connect();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..1024 {
        s.write_all(&chunk).unwrap();
    }
    drop(s);
    // 1 GiB in 16,384 records of 64 KiB, each with its LF.
    let expected = (1u64 << 30) + 16 * 1024;
    wait_until("1 GiB recorded", DEADLINE * 3, || {
        (std::fs::metadata(&d.out).ok()?.len() >= expected).then_some(())
    });
    let peak = peak_rss_kib(d.pid());
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(std::fs::metadata(&d.out).unwrap().len(), expected);
    let mut reader =
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&d.out).unwrap());
    let mut record = Vec::with_capacity(64 * 1024 + 1);
    while std::io::BufRead::read_until(&mut reader, b'\n', &mut record).unwrap() > 0 {
        assert_eq!(record.len(), 64 * 1024 + 1, "a 64 KiB piece and its LF");
        record.clear();
    }
    // The stream is 1 GiB without a newline; what the daemon holds must not grow with it.
    assert!(
        peak < before + 8 * 1024,
        "peak RSS {peak} KiB (at start {before} KiB)"
    );
}

const NASTY: &[u8] = b"esc \x1b[31mred\x1b[0m bell\x07 nul\x00 del\x7f tab\tback\\slash quote\" \xff\xfe bad utf8 \xc3\x28 ok \xc3\xa9 csi \xc2\x9b end";

/// Binary and control bytes come out escaped in `default`, exact in `raw`, valid in `json`.
#[test]
fn bytes_escaped_raw_and_json() {
    let expected_escaped = "esc \\x1b[31mred\\x1b[0m bell\\x07 nul\\x00 del\\x7f tab\tback\\\\slash quote\" \\xff\\xfe bad utf8 \\xc3( ok \u{e9} csi \\xc2\\x9b end";
    let mut line = NASTY.to_vec();
    line.push(b'\n');

    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--format", "default"]);
    let peer = send(d.addr, &line);
    let lines = d.wait_for_lines(1);
    assert_eq!(lines.len(), 1);
    assert_eq!(split_record(&lines[0]).1, peer.to_string());
    assert_eq!(split_record(&lines[0]).2, expected_escaped);
    let bytes = std::fs::read(&d.out).unwrap();
    assert!(
        !bytes[..bytes.len() - 1]
            .iter()
            .any(|&b| b < 0x20 && b != b'\t' || b == 0x7f)
    );

    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--format", "raw"]);
    send(d.addr, &line);
    d.wait_for_lines(1);
    assert_eq!(std::fs::read(&d.out).unwrap(), line);

    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--format", "json"]);
    let peer = send(d.addr, &line);
    d.wait_for_lines(1);
    let text = std::fs::read_to_string(&d.out).expect("json output is UTF-8");
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect("valid JSON");
    assert_eq!(v["peer"], peer.to_string());
    assert_eq!(v["line"], expected_escaped);
    assert_eq!(v["time"].as_str().unwrap().len(), 27);
}

/// A client cannot forge a second record (another peer's line) with an embedded CR or NUL.
#[test]
fn client_cannot_forge_records() {
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &[]);
    let forged =
        b"innocent\r2026-01-01T00:00:00.000000Z 10.0.0.1:1 forged\x00 and \x1b]0;title\x07\n";
    let peer = send(d.addr, forged);
    let lines = d.wait_for_lines(1);
    assert_eq!(lines.len(), 1);
    let (_, p, line) = split_record(&lines[0]);
    assert_eq!(p, peer.to_string());
    assert!(line.starts_with("innocent\\x0d2026"), "{line}");
    assert!(!lines[0].contains('\r') && !lines[0].contains('\x1b'));
}

/// util-linux `logger --tcp` as a real client: its message is recorded with its peer.
#[test]
fn logger_tcp_client() {
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &[]);
    logger_message_recorded(&d, "--tcp", d.addr, "hello from logger");
}

/// A dual-stack/IPv6 listener writes IPv6 peers as [addr]:port.
#[test]
fn ipv6_peer_format() {
    if TcpStream::connect("[::1]:1").is_err_and(|e| e.raw_os_error() == Some(libc::EADDRNOTAVAIL)) {
        skip("no IPv6 loopback here");
        return;
    }
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--listen", "[::1]:0"]);
    let peer = send(d.addr, b"v6\n");
    let lines = d.wait_for_lines(1);
    assert!(peer.to_string().starts_with("[::1]:"));
    assert_eq!(split_record(&lines[0]).1, peer.to_string());
}

/// Characters that change how the text around them is displayed (bidirectional embeddings,
/// overrides and isolates, line and paragraph separators) come out as `\uXXXX` in `default`
/// and `json`, exact in `raw`; other UTF-8 passes; a client's own `\u202e` text keeps its
/// backslash escaped, so an escape cannot be faked.
#[test]
fn display_controls_escaped_in_default_and_json() {
    let controls = [
        '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
        '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ];
    let mut sent = String::new();
    let mut expected = Vec::new();
    for c in controls {
        // "user admin<RLO>nimda" would read "user adminadmin" with the override obeyed.
        sent.push_str(&format!("user admin{c}nimda ok\n"));
        expected.push(format!("user admin\\u{:04x}nimda ok", c as u32));
    }
    sent.push_str("caf\u{e9} \u{65e5}\u{672c} \u{1f980} \u{200f}\u{202f}\n");
    expected.push("caf\u{e9} \u{65e5}\u{672c} \u{1f980} \u{200f}\u{202f}".to_string());
    sent.push_str("literal \\u202e text\n");
    expected.push("literal \\\\u202e text".to_string());

    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--format", "default"]);
    send(d.addr, sent.as_bytes());
    let lines = d.wait_for_lines(expected.len());
    let texts: Vec<&str> = lines.iter().map(|r| split_record(r).2).collect();
    assert_eq!(texts, expected);
    let has_control = |text: &str| text.chars().any(|c| controls.contains(&c));
    assert!(!has_control(&d.output()));

    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--format", "json"]);
    send(d.addr, sent.as_bytes());
    d.wait_for_lines(expected.len());
    let text = std::fs::read_to_string(&d.out).unwrap();
    assert!(!has_control(&text), "{text}");
    assert!(
        text.contains(r#""line":"user admin\\u202enimda ok""#),
        "{text}"
    );
    let decoded: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON");
            v["line"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(decoded, expected, "json's line is default's escaped text");

    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &["--format", "raw"]);
    send(d.addr, sent.as_bytes());
    d.wait_for_lines(expected.len());
    assert_eq!(d.output(), sent);
}
