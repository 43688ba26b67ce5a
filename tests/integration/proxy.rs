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
    let stats = d.wait_for_stats("refused=0");
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

/// Connections that send no header, a garbage one, or a forged v1 line (huge ports, bad
/// addresses, wrong family, LF without CR) are each reset, nothing of theirs recorded, each
/// counted; the source is logged once. A good client alongside is recorded.
#[test]
fn bad_headers_are_reset() {
    let dir = temp_dir();
    let d = start(dir.path(), &[]);
    let bad: &[&[u8]] = &[
        b"hello, no header\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"PROXY garbage\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 99999999999999999999 5140\r\nline\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 65536 5140\r\nline\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 0080 5140\r\nline\n",
        b"PROXY TCP4 192.0.2.300 127.0.0.1 80 5140\r\nline\n",
        b"PROXY TCP4 ::1 127.0.0.1 80 5140\r\nline\n",
        b"PROXY TCP6 192.0.2.7 ::1 80 5140\r\nline\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 80 5140\nline\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04abcd",
    ];
    for data in bad {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(data).unwrap();
        expect_reset(&mut s);
    }
    send(
        d.addr,
        &[
            &v2_header("192.0.2.9:4000".parse().unwrap(), 0)[..],
            b"good\n",
        ]
        .concat(),
    );
    let lines = d.wait_for_lines(1);
    assert_eq!(split_record(&lines[0]).1, "192.0.2.9:4000");
    d.wait_for_stats(&format!("refused={}", bad.len()));
    let logged = d.log.matching(": refused 127.0.0.1:");
    assert_eq!(logged.len(), 1, "once per source: {logged:?}");
    assert!(
        logged[0].contains("does not start with a PROXY protocol header"),
        "{logged:?}"
    );
    assert_eq!(d.output().lines().count(), 1, "{}", d.output());
}

/// A valid header from outside `proxy_from` (127.0.0.2) is reset at accept; it names no one.
#[test]
fn header_from_outside_proxy_from_is_reset() {
    let dir = temp_dir();
    let d = start(dir.path(), &[]);
    let mut s = connect_from("127.0.0.2", d.addr);
    s.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 80 5140\r\nforged\n")
        .unwrap();
    expect_reset(&mut s);
    let logged = d.log.wait_for("refused 127.0.0.2:");
    assert!(logged.contains("not in proxy_from"), "{logged}");
    d.wait_for_stats("refused=1");
    assert_eq!(d.output(), "");
}

/// Half a header (v1), or a v2 header announcing 65,535 bytes of which 100 come, then a
/// stall: each is reset at the 3 s header deadline, not before; meanwhile other clients are
/// served, and a client waiting at the connection cap gets the freed slot.
#[test]
fn stalled_headers_are_reset_at_the_deadline() {
    let dir = temp_dir();
    let d = start(dir.path(), &["--max-connections", "3"]);
    let start = Instant::now();
    let mut half = TcpStream::connect(d.addr).unwrap();
    half.write_all(b"PROXY TCP4 192.0.2.7 127.0").unwrap();
    let mut long = TcpStream::connect(d.addr).unwrap();
    let mut claim = v2_header("192.0.2.8:1".parse().unwrap(), 65535 - 12);
    claim.resize(100, 0xee);
    long.write_all(&claim).unwrap();
    // The third slot: a good client is served while the two stall.
    let mut good = TcpStream::connect(d.addr).unwrap();
    good.write_all(
        &[
            &v2_header("192.0.2.9:2".parse().unwrap(), 0)[..],
            b"served\n",
        ]
        .concat(),
    )
    .unwrap();
    d.wait_for_lines(1);
    // At the cap now: a fourth waits in the backlog until a stalled one is reset.
    let mut waiting = TcpStream::connect(d.addr).unwrap();
    waiting
        .write_all(
            &[
                &v2_header("192.0.2.10:3".parse().unwrap(), 0)[..],
                b"waited\n",
            ]
            .concat(),
        )
        .unwrap();
    expect_reset(&mut half);
    expect_reset(&mut long);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(2900), "reset after {took:?}");
    assert!(took < Duration::from_secs(8), "reset after {took:?}");
    let lines = d.wait_for_lines(2);
    assert_eq!(
        split_record(&lines[1]),
        (split_record(&lines[1]).0, "192.0.2.10:3", "waited")
    );
    d.wait_for_stats("refused=2");
    assert_eq!(
        d.log.matching("no complete PROXY header within 3 s").len(),
        1,
        "logged once for the source"
    );
    drop(good);
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
        stats.contains("total=6 ") && stats.contains("refused=0"),
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
    s.write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 4001 5140\r\ndenied\n")
        .unwrap();
    expect_reset(&mut s);
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
    d.wait_for_stats("denied=1 refused=0");
}
