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
    let addr = d.log.udp_addr();
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
    assert_eq!(d.stop_paused(DEADLINE).0.code(), Some(0));
    let expected: Vec<String> = (0..n).map(|i| format!("datagram {i}")).collect();
    let got: Vec<String> = d.output().lines().map(str::to_string).collect();
    assert_eq!(got, expected);
}

/// A UDP sender's address is whatever its datagram claims: a datagram sent through a raw
/// socket with a forged source (192.0.2.1, a documentation address) is recorded with that
/// source as its peer. This is the limit README's "Guarantees" states: only a TCP peer's
/// address is proven (by the handshake); a UDP peer is the sender's word.
#[test]
fn udp_source_addresses_can_be_forged() {
    if !root_for("send a datagram with a forged source through a raw socket") {
        return;
    }
    let dir = temp_dir();
    let (mut d, addr) = start_udp(dir.path(), &[]);
    send_forged_datagram([192, 0, 2, 1], 4444, addr, b"forged hello\n");
    let lines = d.wait_for_lines(1);
    assert_eq!(d.stop().code(), Some(0));
    let (_, peer, line) = split_record(&lines[0]);
    assert_eq!((peer, line), ("192.0.2.1:4444", "forged hello"));
}

/// Sends one UDP datagram to `to` (an IPv4 loopback address) claiming to come from
/// `src:sport`, with an IP header of our own making (IPPROTO_RAW implies IP_HDRINCL). The
/// kernel fills in the IP checksum; a UDP checksum of 0 means "none" in IPv4.
fn send_forged_datagram(src: [u8; 4], sport: u16, to: SocketAddr, payload: &[u8]) {
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let udp_len = 8 + payload.len();
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&sport.to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let dest = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(to.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: plain socket calls with a valid buffer and address; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let sent = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&dest as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(sent, packet.len() as isize, "sendto: {err}");
    }
}
