//! Clients and the kernel's view of connections: one-shot sends, util-linux `logger`, and
//! the TCP queues of /proc/net/tcp that show whether the daemon is reading.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use super::{Daemon, split_record};

/// Sends `data` on a new connection and closes it.
pub fn send(addr: SocketAddr, data: &[u8]) -> SocketAddr {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(data).unwrap();
    s.local_addr().unwrap()
}

/// A TCP connection to `to` from the loopback address `from` (any of 127.0.0.0/8 works on
/// Linux's `lo`), for a client an allow-list tells apart from 127.0.0.1.
pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    try_connect_from(from, to).unwrap()
}

/// `connect_from`, failing as connect(2) does.
pub fn try_connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let local = SocketAddr::new(from.parse().unwrap(), 0);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&local.into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// Waits until the daemon resets `stream` (a read fails with ECONNRESET); fails if it closes
/// it in order (FIN) or not at all within the deadline.
pub fn expect_reset(stream: &mut TcpStream) {
    use std::io::Read;
    stream.set_read_timeout(Some(super::DEADLINE)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed in order (FIN), not reset"),
            Ok(_) => panic!("the daemon sent data"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("expected a reset, got {e}"),
        }
    }
}

/// Connects from the loopback address `from` to `to` and expects the daemon to reset the
/// connection. A reset that arrives before connect(2) returns counts too: on loopback the
/// daemon may accept and reset before the connecting thread runs again.
pub fn expect_reset_connecting(from: &str, to: SocketAddr) {
    match try_connect_from(from, to) {
        Ok(mut stream) => expect_reset(&mut stream),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connecting from {from} to {to}: {e}"),
    }
}

/// Waits until the daemon closes `stream` in order (a read returns end of file) without
/// sending anything; fails on data, a reset, or nothing within the deadline.
pub fn expect_closed(stream: &mut TcpStream) {
    use std::io::Read;
    stream.set_read_timeout(Some(super::DEADLINE)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("the daemon sent {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("expected a close, got {e}"),
        }
    }
}

/// Writes `data` on `stream` and waits until the daemon resets it: the reset may already
/// come as the write's error (a daemon that resets at accept can be that quick).
pub fn write_expect_reset(stream: &mut TcpStream, data: &[u8]) {
    match stream.write_all(data) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("writing: {e}"),
        Ok(()) => expect_reset(stream),
    }
}

/// Sends `message` with tag `mytag` through util-linux `logger` (`--tcp` or `--udp`) to the
/// daemon at `addr`, then checks the first record: logger's message, from a 127.0.0.1 peer.
pub fn logger_message_recorded(d: &Daemon, transport: &str, addr: SocketAddr, message: &str) {
    let status = Command::new("logger")
        .args([transport, "-n", "127.0.0.1", "-P", &addr.port().to_string()])
        .args(["-t", "mytag", message])
        .status()
        .expect("running util-linux logger (apt-get install bsdutils)");
    assert!(status.success());
    let lines = d.wait_for_lines(1);
    let (_, peer, line) = split_record(&lines[0]);
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    assert!(line.contains("mytag") && line.ends_with(message), "{line}");
}

/// Bytes waiting unread in the receive queue of the daemon's side of a TCP connection
/// (from /proc/net/tcp).
pub fn daemon_recv_queue(daemon: SocketAddr, client: SocketAddr) -> Option<u64> {
    tcp_row(daemon, client).map(|row| row.recv_queue)
}

/// True once the daemon has stopped reading `client`'s connection while the client still has
/// data for it: more than 64 KiB wait unread in the daemon's socket, or the client's data
/// waits on its own side, held up by a zero window (its zero-window probe timer runs). The
/// second is what it looks like when the daemon's receive buffer has not grown (the kernel
/// grows it only while the daemon reads fast): the window closes with little queued, 15-40 KB
/// in runs of the whole suite (many tests at once, a slow debug daemon).
pub fn daemon_stopped_reading(daemon: SocketAddr, client: SocketAddr) -> bool {
    daemon_recv_queue(daemon, client).is_some_and(|q| q > 64 * 1024)
        || tcp_row(client, daemon).is_some_and(|c| c.send_queue > 0 && c.probing_zero_window)
}

/// (send queue, receive queue) of the TCP socket `local` connected to `remote`. The send
/// queue holds what the peer has not yet received.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    tcp_row(local, remote).map(|row| (row.send_queue, row.recv_queue))
}

/// What /proc/net/tcp says of one TCP socket.
pub struct TcpRow {
    pub send_queue: u64,
    pub recv_queue: u64,
    /// The peer advertises a zero window and this side probes it (timer 4, `ICSK_TIME_PROBE0`).
    pub probing_zero_window: bool,
}

/// The row of the TCP socket `local` connected to `remote`, from /proc/net/tcp. An earlier
/// connection between the same ports, closed and lingering in TIME_WAIT (its queues empty),
/// may stand in the table before the live one: it is skipped.
pub fn tcp_row(local: SocketAddr, remote: SocketAddr) -> Option<TcpRow> {
    const TIME_WAIT: &str = "06";
    const PROBE0: &str = "04";
    let want_local = format!(":{:04X}", local.port());
    let want_remote = format!(":{:04X}", remote.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(f[1].ends_with(&want_local) && f[2].ends_with(&want_remote) && f[3] != TIME_WAIT) {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        let (timer, _) = f[5].split_once(':')?;
        Some(TcpRow {
            send_queue: u64::from_str_radix(tx, 16).ok()?,
            recv_queue: u64::from_str_radix(rx, 16).ok()?,
            probing_zero_window: timer == PROBE0,
        })
    })
}

/// A TCP port free on 127.0.0.1, below the kernel's ephemeral range (32768 and up by default),
/// for a peer whose port must be known before it starts (a receiver in a config file, a
/// listener keyed by its address): no other test's port-0 bind (always ephemeral) can take
/// it, also while a receiver on it is down for a restart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Spread over 10000-31999, starting where this process's id points.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = std::process::id() + NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + n % 22_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// Runs util-linux `logger` with `args` and checks that it succeeded, showing its stderr if
/// not (give it `--socket-errors=on` for a unix socket, so a send that fails says so).
pub fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("running util-linux logger (apt-get install bsdutils)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "logger {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True if a UDP socket is bound to `port` on 127.0.0.1 (from /proc/net/udp): a receiver
/// that has bound it takes datagrams from then on.
pub fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// True if a TCP socket listens on `port` on 127.0.0.1 (from /proc/net/tcp, state 0A).
pub fn tcp_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
}
