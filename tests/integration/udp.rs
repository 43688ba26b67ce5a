//! UDP listening (`--listen-udp`): every line of a datagram is a record with the sender as peer,
//! and so is a last line without LF; util-linux `logger --udp` as a real client; datagrams the
//! kernel holds when SIGTERM arrives are recorded.

use std::net::{SocketAddr, UdpSocket};

use crate::util::*;

/// Starts a daemon that also takes datagrams; returns it and its UDP address.
fn start_udp(dir: &std::path::Path, extra: &[&str]) -> (Daemon, SocketAddr) {
    let mut args = vec!["--listen-udp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let d = Daemon::start(dir, &args);
    let line = d.log.wait_for("listening on udp ");
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (d, addr)
}

/// Lines of datagrams from two senders: each a record with its own sender as peer, in the
/// order sent; CRLF and a final line without LF handled as on TCP; escapes escaped.
#[test]
fn datagram_lines_are_records_with_their_sender() {
    let dir = temp_dir();
    let (mut d, addr) = start_udp(dir.path(), &[]);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.send_to(b"one\ntwo\r\nthree", addr).unwrap();
    b.send_to(b"from b\n", addr).unwrap();
    a.send_to(b"\x1b[31mred", addr).unwrap();
    let lines = d.wait_for_lines(5);
    assert_eq!(d.stop().code(), Some(0));
    let (pa, pb) = (
        a.local_addr().unwrap().to_string(),
        b.local_addr().unwrap().to_string(),
    );
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|r| {
            let (_, peer, line) = split_record(r);
            (peer, line)
        })
        .collect();
    assert_eq!(
        got,
        [
            (pa.as_str(), "one"),
            (pa.as_str(), "two"),
            (pa.as_str(), "three"),
            (pb.as_str(), "from b"),
            (pa.as_str(), "\\x1b[31mred"),
        ]
    );
}

/// util-linux `logger --udp` as a real client.
#[test]
fn logger_udp_client() {
    let dir = temp_dir();
    let (mut d, addr) = start_udp(dir.path(), &[]);
    logger_message_recorded(&d, "--udp", addr, "hello over udp");
    assert_eq!(d.stop().code(), Some(0));
}

/// Datagrams that reached the kernel before SIGTERM are recorded before the exit 0: the daemon
/// is stopped (SIGSTOP) while they arrive and gets SIGTERM before it can read any of them.
#[test]
fn sigterm_records_queued_datagrams() {
    let dir = temp_dir();
    let (mut d, addr) = start_udp(dir.path(), &["--format", "raw"]);
    d.signal(libc::SIGSTOP);
    wait_until("the daemon to be stopped", DEADLINE, || {
        d.proc_status("State").starts_with('T').then_some(())
    });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // More than one turn's worth (256), few enough for the 4 MiB receive buffer logsinkd
    // asks for. The kernel caps that at net.core.rmem_max; where that is small (208 KiB holds
    // about 200 small datagrams) fewer are sent.
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let n = if rmem_max >= 1 << 20 { 300 } else { 100 };
    for i in 0..n {
        sender
            .send_to(format!("datagram {i}").as_bytes(), addr)
            .unwrap();
    }
    d.signal(libc::SIGTERM);
    d.signal(libc::SIGCONT);
    assert_eq!(d.wait_exit(DEADLINE).code(), Some(0));
    let expected: Vec<String> = (0..n).map(|i| format!("datagram {i}")).collect();
    let got: Vec<String> = d.output().lines().map(str::to_string).collect();
    assert_eq!(got, expected);
}
