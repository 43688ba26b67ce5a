//! Who may send (`allow`): TCP clients outside the list are reset at accept and take no
//! connection slot, datagrams from outside are dropped, IPv4-mapped peers of a dual-stack
//! socket match IPv4 entries, unix sockets are not concerned; each denied address is logged
//! once, however many come (a flood of forged sources included); bad lists are refused at
//! start, naming the value.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;

use crate::util::*;

/// Clients from 127.0.0.2, outside `allow`, are reset (not closed in order) right after
/// accept and hold no slot: with the cap at 2 and ten of them still connected on their side,
/// two allowed clients are served. The address is logged once; `denied=10` counted.
#[test]
fn denied_tcp_clients_are_reset_and_take_no_slot() {
    let dir = temp_dir();
    let mut d = Daemon::start(
        dir.path(),
        &["--allow", "127.0.0.1", "--max-connections", "2"],
    );
    let mut denied: Vec<TcpStream> = (0..10).map(|_| connect_from("127.0.0.2", d.addr)).collect();
    for s in &mut denied {
        expect_reset(s);
    }
    let mut a = connect_from("127.0.0.1", d.addr);
    let mut b = connect_from("127.0.0.1", d.addr);
    a.write_all(b"from a\n").unwrap();
    b.write_all(b"from b\n").unwrap();
    let lines = d.wait_for_lines(2);
    assert!(
        lines
            .iter()
            .all(|l| split_record(l).1.starts_with("127.0.0.1:")),
        "{lines:?}"
    );
    let stats = d.wait_for_stats("denied=10 ");
    assert!(stats.contains("open=2 "), "{stats}");
    let logged = d.log.matching("denied 127.0.0.2:");
    assert_eq!(logged.len(), 1, "logged once per address: {logged:?}");
    assert!(
        logged[0].contains("not in allow; connection reset"),
        "{logged:?}"
    );
    assert!(
        logged[0].contains(&format!("{}: denied", d.addr)),
        "named by its bound address: {logged:?}"
    );
    assert_eq!(d.stop().code(), Some(0));
    assert!(
        d.log
            .wait_for("stopped:")
            .contains("denied=10 proxy_refused=0")
    );
}

/// A flood of 10,000 connections from outside `allow`, while an allowed client sends 2,000
/// numbered lines: every line is recorded, whole and in order, every flood connection is counted and the
/// address is logged once.
#[test]
fn denied_flood_does_not_starve_allowed_clients() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--allow", "127.0.0.1"]);
    let addr = d.addr;
    // A connect may fail (the reset can overtake its return, or the kernel refuse a SYN
    // while the backlog is full): the daemon counts between those that succeeded and all.
    let flood = std::thread::spawn(move || {
        (0..10_000)
            .filter(|_| try_connect_from("127.0.0.2", addr).is_ok())
            .count()
    });
    let mut client = connect_from("127.0.0.1", d.addr);
    for i in 0..100 {
        client
            .write_all(numbered_lines(i * 20..i * 20 + 20).as_bytes())
            .unwrap();
    }
    drop(client);
    let connected = flood.join().unwrap();
    assert!(connected > 5000, "{connected} connected");
    wait_until("the flood counted", DEADLINE, || {
        d.signal(libc::SIGUSR1);
        let last = d.log.matching("stats:").pop()?;
        let denied: usize = last
            .split(" denied=")
            .nth(1)?
            .split(' ')
            .next()?
            .parse()
            .ok()?;
        (connected..=10_000).contains(&denied).then_some(())
    });
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&[d.output()], 0..2000, Layout::Default);
    assert_eq!(d.log.matching("denied 127.0.0.2:").len(), 1);
}

/// UDP: datagrams from 127.0.0.2 are dropped, those from 127.0.0.1 recorded, on the same
/// socket; counted as denied, in total and for their socket (SIGUSR1 shows each listener that
/// turned someone away: here a TCP one too).
#[test]
fn denied_datagrams_are_dropped() {
    let dir = temp_dir();
    let d = Daemon::start(
        dir.path(),
        &[
            "--listen-udp",
            "127.0.0.1:0",
            "--allow",
            "127.0.0.0/32",
            "--allow",
            "127.0.0.1",
        ],
    );
    let addr = d.log.udp_addr();
    let outsider = UdpSocket::bind("127.0.0.2:0").unwrap();
    let insider = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3 {
        outsider
            .send_to(format!("dropped {i}\n").as_bytes(), addr)
            .unwrap();
        insider
            .send_to(format!("kept {i}\n").as_bytes(), addr)
            .unwrap();
    }
    let lines = d.wait_for_lines(3);
    d.wait_for_stats("denied=3 ");
    let out = d.output();
    assert!(!out.contains("dropped"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(lines.iter().all(|l| l.contains(" kept ")), "{lines:?}");
    let logged = d.log.matching("denied 127.0.0.2:");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].starts_with("logsinkd: warning: udp 127.0.0.1:"),
        "{logged:?}"
    );
    assert!(logged[0].contains("datagram dropped"), "{logged:?}");
    assert!(
        logged[0].contains(&format!("udp {addr}: denied")),
        "{logged:?}"
    );
    expect_reset_connecting("127.0.0.3", d.addr);
    d.wait_for_stats("denied=4 ");
    d.log
        .wait_for(&format!("stats of udp {addr}: denied=3 proxy_refused=0"));
    d.log
        .wait_for(&format!("stats of {}: denied=1 proxy_refused=0", d.addr));
}

/// A flood of datagrams from 3,000 different source addresses (as forged sources would be):
/// all dropped and counted, but only the first 1,024 addresses are logged one by one (the
/// remembered set is bounded); the daemon's memory does not grow with them.
#[test]
fn forged_source_flood_is_logged_within_bounds() {
    let dir = temp_dir();
    let d = Daemon::start(
        dir.path(),
        &["--listen-udp", "127.0.0.1:0", "--allow", "10.0.0.0/8"],
    );
    let addr = d.log.udp_addr();
    let before = peak_rss_kib(d.pid());
    for n in 0..3000u32 {
        let [_, _, hi, lo] = (n + 256).to_be_bytes();
        let from = UdpSocket::bind(format!("127.1.{hi}.{lo}:0")).unwrap();
        from.send_to(b"x\n", addr).unwrap();
    }
    d.wait_for_stats("denied=3000 ");
    let logged = d.log.matching(": denied 127.1.");
    assert_eq!(logged.len(), 1024, "each of the first 1024 addresses once");
    let grown = peak_rss_kib(d.pid()).saturating_sub(before);
    assert!(grown < 4 * 1024, "memory grew by {grown} KiB");
    assert_eq!(d.output(), "");
}

/// On a dual-stack `[::]` listener a v4 client is `::ffff:127.0.0.1` to the socket: it matches
/// the IPv4 entry `127.0.0.1` (and is recorded as v4); `::1` and 127.0.0.2 do not.
#[test]
fn ipv4_mapped_peer_matches_ipv4_entry() {
    if !std::path::Path::new("/proc/net/if_inet6").exists() {
        return skip("no IPv6 on this host");
    }
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--listen", "[::]:0", "--allow", "127.0.0.1"]);
    let v4: SocketAddr = format!("127.0.0.1:{}", d.addr.port()).parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{}", d.addr.port()).parse().unwrap();
    let local = send(v4, b"mapped\n");
    let lines = d.wait_for_lines(1);
    assert_eq!(
        split_record(&lines[0]).1,
        local.to_string(),
        "recorded as v4"
    );
    expect_reset_connecting("::1", v6);
    expect_reset_connecting("127.0.0.2", v4);
    d.wait_for_stats("denied=2 ");
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(d.output().lines().count(), 1);
}

/// The top-level `allow` does not apply to unix sockets (their mode decides): a unix client
/// is recorded although no address could match.
#[test]
fn allow_does_not_apply_to_unix_sockets() {
    let dir = temp_dir();
    let path = dir.path().join("in.sock");
    let d = Daemon::start(
        dir.path(),
        &[
            "--allow",
            "10.0.0.0/8",
            "--listen-unix",
            path.to_str().unwrap(),
        ],
    );
    d.log.wait_for("listening on unix ");
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.write_all(b"over unix\n").unwrap();
    let lines = d.wait_for_lines(1);
    assert!(
        lines[0].contains(" unix:pid=") && lines[0].ends_with("over unix"),
        "{lines:?}"
    );
}

/// Bad lists are refused at start (exit 2) with a message naming the value, the key or the
/// table: a bad CIDR, an empty list, `allow` in a unix listener's table, PROXY without
/// `proxy_from`. `--check-config` prints the lists.
#[test]
fn bad_access_config_is_refused_naming_it() {
    let dir = temp_dir();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--allow", "10.0.0.0/33"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("key `allow`: `10.0.0.0/33` is not an address or a CIDR block"),
        "{err}"
    );
    let (code, err) = run(&["--proxy-protocol"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`proxy_protocol` needs `proxy_from`"), "{err}");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "listen_unix = [\"in.sock\"]\n[listener.\"in.sock\"]\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let (code, err) = run(&["-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("table `listener.\"in.sock\"`: key `allow`: a unix socket is governed"),
        "{err}"
    );
    std::fs::write(&config, "allow = []\n").unwrap();
    let (code, err) = run(&["-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key `allow`: an empty list"), "{err}");
    let out = Command::new(BIN)
        .args(["-t", "--allow", "10.1.2.3/8", "--allow", "::1"])
        .args(["--proxy-protocol", "--proxy-from", "127.0.0.1"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("allow = [\"10.0.0.0/8\", \"::1/128\"]"),
        "{printed}"
    );
    assert!(printed.contains("proxy_protocol = true"), "{printed}");
    assert!(
        printed.contains("proxy_from = [\"127.0.0.1/32\"]"),
        "{printed}"
    );
}
