//! Socket activation outside systemd, with systemd's own `systemd-socket-activate`: it binds
//! the `-l` addresses, waits for the first client, then execs logsinkd with the sockets
//! (`LISTEN_FDS`, `LISTEN_PID`), as systemd does for logsinkd.socket. TCP, UDP and unix-domain
//! sockets are adopted by domain and type; sockets logsinkd cannot serve are refused at start
//! with a message naming them, never taken and then left unserved.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};

use crate::util::*;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// `systemd-socket-activate -l ADDR… logsinkd --foreground --output DIR/out.log`, its stderr
/// (then logsinkd's) read line by line. Killed when dropped.
struct Activator {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Activator {
    fn start(dir: &Path, listen: &[String]) -> Activator {
        Activator::start_with(dir, &[], listen, &[])
    }

    /// `start` with options of systemd-socket-activate's own, such as `--datagram`, and more
    /// arguments for logsinkd.
    fn start_with(dir: &Path, options: &[&str], listen: &[String], args: &[&str]) -> Activator {
        let mut cmd = Command::new(ACTIVATE);
        cmd.args(options);
        for addr in listen {
            cmd.args(["-l", addr]);
        }
        let mut child = cmd
            .arg(BIN)
            .arg("--foreground")
            .arg("--output")
            .arg(dir.join("out.log"))
            .args(args)
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning systemd-socket-activate");
        let (tx, stderr) = channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Activator {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for `count` stderr lines containing `pattern`; false if the process ended first.
    fn wait_for(&mut self, pattern: &str, count: usize) -> bool {
        let end = std::time::Instant::now() + DEADLINE;
        loop {
            if self.seen.iter().filter(|l| l.contains(pattern)).count() >= count {
                return true;
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(_) => panic!(
                    "timed out waiting for {pattern:?} #{count}: {:#?}",
                    self.seen
                ),
            }
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        wait_until("logsinkd to exit", DEADLINE, || child.try_wait().unwrap())
    }

    /// Every stderr line, once the process has ended.
    fn all_lines(&mut self) -> Vec<String> {
        self.seen.extend(self.stderr.iter());
        self.seen.clone()
    }
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `systemd-socket-activate` on `count` TCP ports of 127.0.0.1 that were free a moment
/// ago (it needs concrete ports); tries new ones should another process take one meanwhile.
fn activate_on_tcp_ports(dir: &Path, count: usize) -> (Activator, Vec<String>) {
    activate_on_tcp_ports_with(dir, count, &[])
}

/// `activate_on_tcp_ports`, logsinkd to be started with `args` as well.
fn activate_on_tcp_ports_with(dir: &Path, count: usize, args: &[&str]) -> (Activator, Vec<String>) {
    activate_on_tcp_ports_for(dir, count, |_| args.iter().map(|a| a.to_string()).collect())
}

/// `activate_on_tcp_ports`, logsinkd to be started with the arguments `args` makes of the
/// ports' addresses (a listener option naming one of them).
fn activate_on_tcp_ports_for(
    dir: &Path,
    count: usize,
    args: impl Fn(&[String]) -> Vec<String>,
) -> (Activator, Vec<String>) {
    for _ in 0..5 {
        let probes: Vec<TcpListener> = (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<String> = probes
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        drop(probes);
        let args = args(&addrs);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut activator = Activator::start_with(dir, &[], &addrs, &args);
        if activator.wait_for("Listening on ", count) {
            return (activator, addrs);
        }
        let lines = activator.all_lines();
        assert!(
            lines.iter().any(|l| l.contains("Address already in use")),
            "systemd-socket-activate failed: {lines:#?}"
        );
    }
    panic!("no {count} free ports in 5 tries");
}

fn have_activate(test: &str) -> bool {
    let present = Path::new(ACTIVATE).exists();
    if !present {
        skip(&format!(
            "{test}: needs {ACTIVATE} (apt-get install systemd)"
        ));
    }
    present
}

/// 64 passed sockets (the most logsinkd serves) are all served: a client of the last one is
/// recorded. 65 are refused at start, naming the count and the limit (exit 1).
#[test]
fn more_sockets_than_served_are_refused() {
    if !have_activate("more_sockets_than_served_are_refused") {
        return;
    }
    let dir = temp_dir();
    let (mut most, addrs) = activate_on_tcp_ports(dir.path(), 64);
    let last = addrs.last().unwrap();
    // The first client makes systemd-socket-activate exec logsinkd with all 64 sockets.
    let mut client = TcpStream::connect(last.as_str()).unwrap();
    client.write_all(b"to the 64th socket\n").unwrap();
    assert!(
        most.wait_for("listening on ", 64),
        "{:#?}",
        most.all_lines()
    );
    let lines = wait_until("the line in out.log", DEADLINE, || {
        let text = std::fs::read_to_string(dir.path().join("out.log")).ok()?;
        (!text.is_empty()).then_some(text)
    });
    assert_eq!(split_record(lines.trim_end()).2, "to the 64th socket");
    drop(most);

    let dir = temp_dir();
    let (mut too_many, addrs) = activate_on_tcp_ports(dir.path(), 65);
    let _client = TcpStream::connect(addrs[0].as_str()).unwrap();
    let status = too_many.wait_exit();
    let lines = too_many.all_lines();
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("passed 65 sockets") && l.contains("at most 64")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("listening on ")),
        "announced sockets it would not serve: {lines:#?}"
    );
}

/// A unix-domain `ListenStream=` (a path) is adopted as a unix stream listener: the first
/// client's lines are recorded with its credentials as the peer. The socket file is the
/// activator's: logsinkd leaves it at exit. Before, logsinkd refused it at start (exit 1).
#[test]
fn unix_stream_socket_is_adopted() {
    if !have_activate("unix_stream_socket_is_adopted") {
        return;
    }
    let dir = temp_dir();
    let path = dir.path().join("logsinkd.sock");
    let mut activator = Activator::start(dir.path(), &[path.to_str().unwrap().to_string()]);
    assert!(activator.wait_for("Listening on ", 1));
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"adopted\npartial").unwrap();
    drop(client);
    assert!(
        activator.wait_for(&format!("listening on unix {}", path.display()), 1),
        "{:#?}",
        activator.all_lines()
    );
    let records = wait_for_records(dir.path(), 2);
    let me = my_unix_peer();
    assert_eq!(
        records,
        [format!("{me} adopted"), format!("{me} partial")],
        "{:#?}",
        activator.all_lines()
    );
    stop(&mut activator);
    assert!(path.exists(), "logsinkd removed the activator's socket");
}

/// A unix-domain `ListenDatagram=` is adopted as a unix datagram socket, `SO_PASSCRED` set: a
/// datagram is recorded with its sender's credentials. The one that woke the service was sent
/// before logsinkd could ask for them, so its peer is `unix:unknown` (a socket unit says
/// `PassCredentials=yes` to have them from the first datagram; systemd-socket-activate cannot).
#[test]
fn unix_datagram_socket_is_adopted() {
    if !have_activate("unix_datagram_socket_is_adopted") {
        return;
    }
    let dir = temp_dir();
    let path = dir.path().join("dev-log");
    let mut activator = Activator::start_with(
        dir.path(),
        &["--datagram"],
        &[path.to_str().unwrap().to_string()],
        &[],
    );
    assert!(activator.wait_for("Listening on ", 1));
    let sender = UnixDatagram::unbound().unwrap();
    sender.send_to(b"wakes it", &path).unwrap();
    assert!(
        activator.wait_for(&format!("listening on unix-dgram {}", path.display()), 1),
        "{:#?}",
        activator.all_lines()
    );
    assert_eq!(wait_for_records(dir.path(), 1), ["unix:unknown wakes it"]);
    sender.send_to(b"one\ntwo", &path).unwrap();
    let me = my_unix_peer();
    assert_eq!(
        wait_for_records(dir.path(), 3)[1..],
        [format!("{me} one"), format!("{me} two")]
    );
    stop(&mut activator);
    assert!(path.exists(), "logsinkd removed the activator's socket");
}

/// A passed socket takes the settings of the listener table keyed by the address it is bound
/// to: of two passed TCP sockets, the one whose table says `framing = "octet"` takes frames,
/// the other (top-level settings) lines.
#[test]
fn passed_sockets_take_their_listener_tables() {
    if !have_activate("passed_sockets_take_their_listener_tables") {
        return;
    }
    let dir = temp_dir();
    let config = dir.path().join("logsinkd.toml");
    let (mut activator, addrs) =
        activate_on_tcp_ports_with(dir.path(), 2, &["--config", config.to_str().unwrap()]);
    // logsinkd starts (and reads it) at the first client.
    std::fs::write(
        &config,
        format!(
            "listen = [\"{}\", \"{}\"]\n[listener.\"{}\"]\nframing = \"octet\"\n",
            addrs[0], addrs[1], addrs[1]
        ),
    )
    .unwrap();
    let mut peers = Vec::new();
    for addr in &addrs {
        let mut client = TcpStream::connect(addr.as_str()).unwrap();
        peers.push(client.local_addr().unwrap().to_string());
        client.write_all(b"3 abc\n").unwrap();
    }
    let mut records = wait_for_records(dir.path(), 2);
    records.sort_by_key(|r| r.starts_with(&peers[1]));
    assert_eq!(
        records,
        [format!("{} 3 abc", peers[0]), format!("{} abc", peers[1])],
        "{:#?}",
        activator.all_lines()
    );
    stop(&mut activator);
}

/// This process as the peer of its unix sockets.
fn my_unix_peer() -> String {
    // SAFETY: geteuid cannot fail.
    format!("unix:pid={},uid={}", std::process::id(), unsafe {
        libc::geteuid()
    })
}

/// Waits until `dir/out.log` holds `n` records; returns them as `peer line`.
fn wait_for_records(dir: &Path, n: usize) -> Vec<String> {
    wait_until(&format!("{n} records in out.log"), DEADLINE, || {
        let text = std::fs::read_to_string(dir.join("out.log")).ok()?;
        let records: Vec<String> = text
            .lines()
            .map(|r| {
                let (_, peer, line) = split_record(r);
                format!("{peer} {line}")
            })
            .collect();
        (records.len() >= n).then_some(records)
    })
}

/// SIGTERM to logsinkd (systemd-socket-activate exec'd it: same pid); asserts exit 0.
fn stop(activator: &mut Activator) {
    let pid = activator.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = activator.wait_exit();
    assert_eq!(status.code(), Some(0), "{:#?}", activator.all_lines());
}

/// A passed TCP socket bound to `metrics_listen` serves the metrics, not log lines: the other
/// passed socket's line is counted under its own listener, and the metrics socket has none.
#[test]
fn passed_socket_at_metrics_listen_serves_the_metrics() {
    use std::io::Read;
    if !have_activate("passed_socket_at_metrics_listen_serves_the_metrics") {
        return;
    }
    let dir = temp_dir();
    let config = dir.path().join("logsinkd.toml");
    let (mut activator, addrs) =
        activate_on_tcp_ports_with(dir.path(), 2, &["--config", config.to_str().unwrap()]);
    // logsinkd starts (and reads it) at the first client.
    std::fs::write(&config, format!("metrics_listen = \"{}\"\n", addrs[1])).unwrap();
    TcpStream::connect(addrs[0].as_str())
        .unwrap()
        .write_all(b"a line\n")
        .unwrap();
    wait_for_records(dir.path(), 1);
    assert!(activator.wait_for(&format!("metrics on http://{}/metrics", addrs[1]), 1));
    let mut s = TcpStream::connect(addrs[1].as_str()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let lines = format!(
        "logsinkd_lines_received_total{{listener=\"tcp://{}\"}} 1\n",
        addrs[0]
    );
    assert!(text.contains(&lines), "{text}");
    assert!(!text.contains(&format!("tcp://{}", addrs[1])), "{text}");
    stop(&mut activator);
}

/// A passed TCP socket bound to an address in `listen_tls` is a TLS listener; the other one
/// stays plain TCP. The first TLS client wakes logsinkd and is recorded.
#[test]
fn tls_socket_is_adopted_by_its_address() {
    if !have_activate("tls_socket_is_adopted_by_its_address") {
        return;
    }
    let dir = temp_dir();
    let files = TlsFiles::new(dir.path());
    let (mut activator, addrs) = activate_on_tcp_ports_for(dir.path(), 2, |addrs| {
        vec![
            "--listen-tls".to_string(),
            addrs[1].clone(),
            "--tls-cert".to_string(),
            files.cert.display().to_string(),
            "--tls-key".to_string(),
            files.key.display().to_string(),
        ]
    });
    let tls_addr = addrs[1].parse().unwrap();
    let mut client = tls_connect(tls_addr, files.pki.client_config(None));
    tls_send(&mut client, b"over the adopted TLS socket\n");
    assert!(activator.wait_for(&format!("listening on tls {}", addrs[1]), 1));
    let mut plain = TcpStream::connect(addrs[0].as_str()).unwrap();
    plain.write_all(b"over the adopted TCP socket\n").unwrap();
    let text = wait_until("both lines in out.log", DEADLINE, || {
        let text = std::fs::read_to_string(dir.path().join("out.log")).ok()?;
        (text.lines().count() == 2).then_some(text)
    });
    let lines: Vec<&str> = text.lines().map(|l| split_record(l).2).collect();
    assert!(lines.contains(&"over the adopted TLS socket"), "{text}");
    assert!(lines.contains(&"over the adopted TCP socket"), "{text}");
}
