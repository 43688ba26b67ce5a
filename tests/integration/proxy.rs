//! Load balancers in front (`proxy_protocol`, `proxy_from`): a real HAProxy's `send-proxy`
//! (v1) and `send-proxy-v2` headers make every record carry the original client's address and
//! port; hostile connections (no header, garbage, forged fields, the wrong source, half a
//! header, a huge announced length) are reset and logged once, without holding a slot past
//! the header deadline or blocking other clients; `allow` is matched against the original
//! client.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::*;

const PROXY_FROM_LOOPBACK: [&str; 3] = ["--proxy-protocol", "--proxy-from", "127.0.0.1"];

/// A daemon reading PROXY headers from 127.0.0.1, with `extra` arguments.
fn start(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    Daemon::start(dir, &[&PROXY_FROM_LOOPBACK[..], extra].concat())
}

/// A version 2 PROXY header for a TCP/IPv4 client `src`, announcing `extra` bytes of TLVs
/// (sent: the header alone, without them).
fn v2_header(src: SocketAddr, extra: u16) -> Vec<u8> {
    let SocketAddr::V4(src) = src else {
        panic!("an IPv4 client")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    h.extend((12 + extra).to_be_bytes());
    h.extend(src.ip().octets());
    h.extend([127, 0, 0, 1]);
    h.extend(src.port().to_be_bytes());
    h.extend(5140u16.to_be_bytes());
    h
}

/// Records carry the client's own address and port through a real HAProxy, with `send`.
fn through_haproxy(send: &str) {
    let dir = temp_dir();
    let mut d = start(dir.path(), &[]);
    let Some(proxy) = Haproxy::start(dir.path(), d.addr, send) else {
        return;
    };
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(proxy.addr).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("line {i}.1\nline {i}.2\n").as_bytes())
            .unwrap();
    }
    let lines = d.wait_for_lines(6);
    for (i, c) in clients.iter().enumerate() {
        let own = c.local_addr().unwrap().to_string();
        let mine: Vec<&String> = lines.iter().filter(|l| split_record(l).1 == own).collect();
        assert_eq!(mine.len(), 2, "client {i} ({own}): {lines:#?}");
        assert!(
            mine[0].ends_with(&format!("line {i}.1")) && mine[1].ends_with(&format!("line {i}.2"))
        );
    }
    drop(clients);
    d.wait_for_stats("open=0 ");
    let stats = d.wait_for_stats("proxy_refused=0");
    assert!(stats.contains("denied=0 "), "{stats}");
    assert_eq!(d.stop().code(), Some(0));
}

/// HAProxy `send-proxy` (version 1): each record carries its client's address and port.
#[test]
fn haproxy_send_proxy_v1_records_the_client() {
    through_haproxy("send-proxy");
}

/// HAProxy `send-proxy-v2`: the same.
#[test]
fn haproxy_send_proxy_v2_records_the_client() {
    through_haproxy("send-proxy-v2");
}

/// Sends each of `bad` on a connection of its own to a fresh PROXY daemon: each is reset,
/// nothing of theirs recorded, each counted `proxy_refused=`, the source (127.0.0.1) logged once,
/// with the first one's reason (`first_why`). A good client afterwards is recorded.
fn each_reset(bad: &[&[u8]], first_why: &str) {
    let dir = temp_dir();
    let d = start(dir.path(), &[]);
    for data in bad {
        write_expect_reset(&mut TcpStream::connect(d.addr).unwrap(), data);
    }
    let good = [
        &v2_header("192.0.2.9:4000".parse().unwrap(), 0)[..],
        b"good\n",
    ]
    .concat();
    send(d.addr, &good);
    let lines = d.wait_for_lines(1);
    assert_eq!(split_record(&lines[0]).1, "192.0.2.9:4000");
    d.wait_for_stats(&format!("proxy_refused={}", bad.len()));
    let logged = d.log.matching(": refused 127.0.0.1:");
    assert_eq!(logged.len(), 1, "once per source: {logged:?}");
    assert!(logged[0].contains(first_why), "{logged:?}");
    assert_eq!(d.output().lines().count(), 1, "{}", d.output());
}

/// A client that sends its lines with no header (as if it connected directly) is reset.
#[test]
fn no_header_is_reset() {
    each_reset(
        &[b"<13>hello, no header\n", b"PROXY is not a header\n"],
        "does not start with a PROXY protocol header",
    );
}

/// Garbage where the header should be (a TLS hello, binary noise, a v2 signature with a bad
/// version or command or family, a v2 length too short for its addresses, a v1 line without
/// CRLF in 107 bytes) is reset.
#[test]
fn garbage_header_is_reset() {
    let endless = [&b"PROXY TCP4 "[..], &[b'7'; 120]].concat();
    each_reset(
        &[
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x22\x11\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x51\x00\x0c",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04abcd",
            b"\r\n\r\n\0\r\nQUIX\n",
            &endless,
        ],
        "does not start with a PROXY protocol header",
    );
}

/// Forged v1 lines are reset: ports past 65535 (one of twenty digits), zero-padded, signed;
/// addresses out of range, zero-padded, of the other family; an unknown protocol; a bare LF;
/// a missing field.
#[test]
fn forged_v1_fields_are_reset() {
    each_reset(
        &[
            b"PROXY TCP4 192.0.2.7 127.0.0.1 99999999999999999999 5140\r\nline\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 65536 5140\r\nline\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 80 4294967376\r\nline\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 0080 5140\r\nline\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 +80 5140\r\nline\n",
            b"PROXY TCP4 192.0.2.300 127.0.0.1 80 5140\r\nline\n",
            b"PROXY TCP4 192.0.2.07 127.0.0.1 80 5140\r\nline\n",
            b"PROXY TCP4 ::1 127.0.0.1 80 5140\r\nline\n",
            b"PROXY TCP6 192.0.2.7 ::1 80 5140\r\nline\n",
            b"PROXY UDP4 192.0.2.7 127.0.0.1 80 5140\r\nline\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 80 5140\nline\n",
            b"PROXY TCP4 192.0.2.7 127.0.0.1 80\r\nline\n",
        ],
        "a port that is not a number from 0 to 65535",
    );
}

/// A valid header from outside `proxy_from` (127.0.0.2) is reset at accept; it names no one.
#[test]
fn header_from_outside_proxy_from_is_reset() {
    let dir = temp_dir();
    let d = start(dir.path(), &[]);
    let mut s = connect_from("127.0.0.2", d.addr);
    write_expect_reset(
        &mut s,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 80 5140\r\nforged\n",
    );
    let logged = d.log.wait_for("refused 127.0.0.2:");
    assert!(logged.contains("not in proxy_from"), "{logged}");
    d.wait_for_stats("proxy_refused=1");
    assert_eq!(d.output(), "");
}

/// Sends `partial` on one connection and stalls: it is reset at the 3 s header deadline, not
/// before, logged for that reason; meanwhile it holds a slot (`max_connections` 2), another
/// client is served, and a client waiting at the cap gets the slot once the stalled one is
/// reset.
fn stalled_is_reset_at_the_deadline(partial: &[u8]) {
    let dir = temp_dir();
    let d = start(dir.path(), &["--max-connections", "2"]);
    let start = Instant::now();
    let mut stalled = TcpStream::connect(d.addr).unwrap();
    stalled.write_all(partial).unwrap();
    let mut good = TcpStream::connect(d.addr).unwrap();
    let served = [
        &v2_header("192.0.2.9:2".parse().unwrap(), 0)[..],
        b"served\n",
    ]
    .concat();
    good.write_all(&served).unwrap();
    d.wait_for_lines(1);
    // At the cap now: this one waits in the backlog until the stalled one is reset.
    let mut waiting = TcpStream::connect(d.addr).unwrap();
    let waited = [
        &v2_header("192.0.2.10:3".parse().unwrap(), 0)[..],
        b"waited\n",
    ]
    .concat();
    waiting.write_all(&waited).unwrap();
    expect_reset(&mut stalled);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(2900), "reset after {took:?}");
    assert!(took < Duration::from_secs(8), "reset after {took:?}");
    let lines = d.wait_for_lines(2);
    let (_, peer, line) = split_record(&lines[1]);
    assert_eq!((peer, line), ("192.0.2.10:3", "waited"));
    d.wait_for_stats("proxy_refused=1");
    let logged = d.log.matching(": refused 127.0.0.1:");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].contains("no complete PROXY header within 3 s"),
        "{logged:?}"
    );
    drop(good);
}

/// Half a v1 header, then a stall.
#[test]
fn half_a_header_then_stall_is_reset_at_the_deadline() {
    stalled_is_reset_at_the_deadline(b"PROXY TCP4 192.0.2.7 127.0");
}

/// A v2 header announcing 65,535 bytes (the most), of which 100 come, then a stall; the
/// daemon holds a few bytes of it, not 64 KiB.
#[test]
fn v2_length_65535_then_stall_is_reset_at_the_deadline() {
    let mut claim = v2_header("192.0.2.8:1".parse().unwrap(), 65535 - 12);
    claim.resize(100, 0xee);
    stalled_is_reset_at_the_deadline(&claim);
}

/// A header then a disconnect: no record, nothing refused, the slot freed.
#[test]
fn header_then_disconnect_records_nothing() {
    let dir = temp_dir();
    let d = start(dir.path(), &["--max-connections", "1"]);
    for _ in 0..5 {
        send(d.addr, b"PROXY TCP6 2001:db8::7 ::1 51234 5140\r\n");
    }
    send(d.addr, b"PROXY TCP6 2001:db8::7 ::1 51234 5140\r\nafter\n");
    let lines = d.wait_for_lines(1);
    assert_eq!(split_record(&lines[0]).1, "[2001:db8::7]:51234");
    let stats = d.wait_for_stats("open=0 ");
    assert!(
        stats.contains("total=6 ") && stats.contains("proxy_refused=0"),
        "{stats}"
    );
}

/// With `allow`, the original client is what is matched: a header naming 192.0.2.7 is
/// served, one naming 198.51.100.1 is reset and counted denied (the balancer, 127.0.0.1, is
/// in neither list's way). A v2 LOCAL connection (a balancer's health check) is the
/// balancer's own: accepted, its data recorded with the balancer's address.
#[test]
fn allow_matches_the_original_client() {
    let dir = temp_dir();
    let d = start(dir.path(), &["--allow", "192.0.2.0/24"]);
    send(
        d.addr,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 5140\r\nallowed\n",
    );
    let mut s = TcpStream::connect(d.addr).unwrap();
    write_expect_reset(
        &mut s,
        b"PROXY TCP4 198.51.100.1 127.0.0.1 4001 5140\r\ndenied\n",
    );
    let logged = d.log.wait_for("denied 198.51.100.1:4001");
    assert!(
        logged.contains("not in allow (the client named by the PROXY header of 127.0.0.1:"),
        "{logged}"
    );
    let local = send(d.addr, b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00health\n");
    let lines = d.wait_for_lines(2);
    assert_eq!(
        split_record(&lines[0]),
        (split_record(&lines[0]).0, "192.0.2.7:4000", "allowed")
    );
    assert_eq!(
        split_record(&lines[1]),
        (split_record(&lines[1]).0, &*local.to_string(), "health")
    );
    d.wait_for_stats("denied=1 proxy_refused=0");
}

/// SIGTERM while one connection stalls inside its header and another, past its header,
/// holds a partial line: exit 0 at once (not at the header deadline), the partial line
/// recorded with the client the header named.
#[test]
fn sigterm_with_a_header_pending() {
    let dir = temp_dir();
    let mut d = start(dir.path(), &[]);
    let mut stalled = TcpStream::connect(d.addr).unwrap();
    stalled.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    let mut partial = TcpStream::connect(d.addr).unwrap();
    let header = v2_header("192.0.2.11:7".parse().unwrap(), 0);
    partial
        .write_all(&[&header[..], b"no LF yet"].concat())
        .unwrap();
    wait_until("both read", DEADLINE, || {
        let stats = d.wait_for_stats("open=2 ");
        stats
            .contains(&format!("bytes={} ", 20 + header.len() + 9))
            .then_some(())
    });
    let start = Instant::now();
    assert_eq!(d.stop_within(Duration::from_secs(2)).code(), Some(0));
    assert!(start.elapsed() < Duration::from_secs(2));
    let out = d.output();
    let (_, peer, line) = split_record(out.lines().next().expect("the partial line"));
    assert_eq!((peer, line), ("192.0.2.11:7", "no LF yet"));
    assert_eq!(out.lines().count(), 1, "{out}");
}
