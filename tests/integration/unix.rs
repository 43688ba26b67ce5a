//! Unix-domain sockets (`--listen-unix`, `--listen-unix-dgram`) with real clients: util-linux
//! `logger -u` (datagrams, as /dev/log clients send, and `--tcp` for a stream), clients run as
//! another user with `setpriv`, and this process's own sockets. The peer of a unix client is its
//! credentials as the kernel vouches for them: `unix:pid=1234,uid=1000`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::*;

/// This process as the peer of its own unix sockets.
fn my_peer() -> String {
    // SAFETY: geteuid cannot fail.
    format!("unix:pid={},uid={}", std::process::id(), unsafe {
        libc::geteuid()
    })
}

/// A foreground daemon (TCP on a free port too, which the harness needs) with the extra
/// arguments, once it says it listens on every unix socket it was given.
fn start(dir: &Path, extra: &[&str]) -> Daemon {
    let d = Daemon::start(dir, extra);
    let sockets = extra
        .iter()
        .filter(|a| a.starts_with("--listen-unix"))
        .count();
    if sockets > 0 {
        d.log.wait_for_nth("listening on unix", sockets);
    }
    d
}

/// A daemon on a unix stream socket `dir/in.sock` and a unix datagram socket `dir/log`, with
/// `extra` arguments; returns it and the two paths.
fn start_stream_and_dgram(dir: &Path, extra: &[&str]) -> (Daemon, PathBuf, PathBuf) {
    let (path, dgram) = (dir.join("in.sock"), dir.join("log"));
    let mut args = vec![
        "--listen-unix",
        path.to_str().unwrap(),
        "--listen-unix-dgram",
        dgram.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (start(dir, &args), path, dgram)
}

/// Runs util-linux `logger` with `args`, as this process or through `setpriv` as uid and gid
/// `as_user`; returns its pid and what it did.
fn logger(as_user: Option<u32>, args: &[&str]) -> (u32, Output) {
    let mut cmd = match as_user {
        None => Command::new("logger"),
        Some(id) => {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                &format!("--reuid={id}"),
                &format!("--regid={id}"),
                "--clear-groups",
                "logger",
            ]);
            cmd
        }
    };
    // `setpriv` execs logger: the pid stays the same.
    let child = cmd
        .arg("--socket-errors=on")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running util-linux logger (apt-get install bsdutils)");
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

/// The records of the output in `default` format, as (peer, line).
fn records(d: &Daemon, n: usize) -> Vec<(String, String)> {
    d.wait_for_lines(n)
        .iter()
        .map(|r| {
            let (_, peer, line) = split_record(r);
            (peer.to_string(), line.to_string())
        })
        .collect()
}

/// `logger -u PATH` (datagrams, as every /dev/log client sends) is recorded with the sender's
/// pid and uid; a datagram's lines are records and so is its last line without LF.
#[test]
fn logger_datagram_is_recorded_with_its_sender() {
    let dir = temp_dir();
    let path = dir.path().join("log");
    let mut d = start(dir.path(), &["--listen-unix-dgram", path.to_str().unwrap()]);
    let line = d.log.wait_for("listening on unix");
    assert!(
        line.ends_with(&format!("listening on unix-dgram {}", path.display())),
        "{line}"
    );
    let (pid, out) = logger(
        None,
        &["-u", path.to_str().unwrap(), "-t", "mytag", "from logger"],
    );
    assert!(out.status.success(), "{out:?}");
    let got = records(&d, 1);
    assert_eq!(got[0].0, format!("unix:pid={pid},uid={}", uid()));
    assert!(
        got[0].1.contains("mytag") && got[0].1.ends_with("from logger"),
        "{got:?}"
    );

    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"one\ntwo\nthree", &path).unwrap();
    let got = records(&d, 4);
    let lines: Vec<&str> = got[1..].iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(lines, ["one", "two", "three"]);
    assert!(got[1..].iter().all(|(p, _)| *p == my_peer()), "{got:?}");
    assert_eq!(d.stop().code(), Some(0));
}

/// A unix datagram larger than the 64 KiB read buffer (UDP ones cannot be) is recorded cut to
/// 64 KiB, and that is logged once per socket, not per datagram; the next datagram is whole.
#[test]
fn oversized_datagram_is_cut_and_said_once() {
    let dir = temp_dir();
    let path = dir.path().join("log");
    let mut d = start(
        dir.path(),
        &[
            "--listen-unix-dgram",
            path.to_str().unwrap(),
            "--format",
            "raw",
            "--max-line",
            "1M",
        ],
    );
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(&[b'x'; 100_000], &path).unwrap();
    client.send_to(&[b'y'; 100_000], &path).unwrap();
    client.send_to(b"whole", &path).unwrap();
    let lines = d.wait_for_lines(3);
    assert_eq!(lines[0], "x".repeat(65536));
    assert_eq!(lines[1], "y".repeat(65536));
    assert_eq!(lines[2], "whole");
    let warning = d.log.wait_for("was cut to");
    assert!(
        warning.contains("100000 bytes") && warning.contains(&my_peer()),
        "{warning}"
    );
    assert_eq!(d.stop().code(), Some(0));
    let said = d
        .log
        .all()
        .iter()
        .filter(|l| l.contains("was cut to"))
        .count();
    assert_eq!(said, 1);
}

/// A classic daemon (which moves to `/`) given a relative socket path binds it in the start
/// directory, serves it, and removes that very file at exit.
#[test]
fn relative_path_in_daemon_mode() {
    let dir = temp_dir();
    let d = ClassicDaemon::start(
        dir.path(),
        &[],
        &[
            "--listen-unix",
            "rel.sock",
            "--output",
            "out.log",
            "--format",
            "raw",
        ],
    );
    let path = dir.path().join("rel.sock");
    UnixStream::connect(&path)
        .unwrap()
        .write_all(b"daemon mode\n")
        .unwrap();
    wait_until("the line in out.log", DEADLINE, || {
        let text = std::fs::read_to_string(dir.path().join("out.log")).ok()?;
        (text == "daemon mode\n").then_some(())
    });
    d.signal(libc::SIGTERM);
    wait_until("the socket removed at exit", DEADLINE, || {
        (!path.exists()).then_some(())
    });
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// `logger --tcp -u PATH` (a unix stream socket) is recorded with the sender's pid and uid;
/// a stream client's lines are framed as over TCP: in order, a partial line recorded when it
/// disconnects.
#[test]
fn stream_clients_are_recorded_with_their_credentials() {
    let dir = temp_dir();
    let path = dir.path().join("in.sock");
    let mut d = start(dir.path(), &["--listen-unix", path.to_str().unwrap()]);
    let (pid, out) = logger(
        None,
        &["--tcp", "-u", path.to_str().unwrap(), "-t", "t", "stream"],
    );
    assert!(out.status.success(), "{out:?}");
    let got = records(&d, 1);
    assert_eq!(got[0].0, format!("unix:pid={pid},uid={}", uid()));
    assert!(got[0].1.ends_with("t: stream"), "{got:?}");

    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"first\nsec").unwrap();
    client.write_all(b"ond\nunfinished").unwrap();
    drop(client);
    let got = records(&d, 4);
    assert_eq!(
        got[1..].to_vec(),
        ["first", "second", "unfinished"].map(|l| (my_peer(), l.to_string()))
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// The socket is created with `unix_mode` (0660 by default) and `unix_group`: a user outside
/// its group cannot connect (logger fails, nothing is recorded), a member of the group can,
/// and is recorded with its own uid, which it cannot forge.
#[test]
fn only_the_sockets_group_may_send() {
    if !root_for("run clients as another user and give a socket a group") {
        return;
    }
    let dir = temp_dir();
    // Others may pass through the test's directory, so only the socket's mode decides.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let closed = dir.path().join("closed.sock");
    let open = dir.path().join("group.sock");
    let (outsider, member) = (65534, 4242);
    let mut d = start(
        dir.path(),
        &["--listen-unix-dgram", closed.to_str().unwrap()],
    );
    let meta = std::fs::symlink_metadata(&closed).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let (_, out) = logger(
        Some(outsider),
        &["-u", closed.to_str().unwrap(), "not allowed"],
    );
    assert!(!out.status.success(), "an outsider could send: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(d.output(), "", "an outsider's message was recorded");

    let mut d = start(
        dir.path(),
        &[
            "--listen-unix",
            open.to_str().unwrap(),
            "--unix-group",
            &member.to_string(),
            "--unix-mode",
            "0620",
        ],
    );
    let meta = std::fs::symlink_metadata(&open).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o620);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), member);
    let (_, out) = logger(
        Some(outsider),
        &["--tcp", "-u", open.to_str().unwrap(), "outsider"],
    );
    assert!(!out.status.success(), "an outsider could connect: {out:?}");
    let (pid, out) = logger(
        Some(member),
        &["--tcp", "-u", open.to_str().unwrap(), "member"],
    );
    assert!(out.status.success(), "{out:?}");
    let got = records(&d, 1);
    assert_eq!(got[0].0, format!("unix:pid={pid},uid={member}"));
    assert!(got[0].1.ends_with("member"), "{got:?}");
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(d.output().lines().count(), 1);
}

/// A stale socket at the path (its daemon was killed) is removed at start, saying so; the
/// daemon's own socket is removed at exit. A path that is not a socket is refused naming it
/// (exit 1), and left as it was; so is a socket another process listens on.
#[test]
fn socket_files_stale_refused_and_removed_at_exit() {
    let dir = temp_dir();
    let path = dir.path().join("in.sock");
    let dgram = dir.path().join("log");
    drop(UnixListener::bind(&path).unwrap());
    drop(UnixDatagram::bind(&dgram).unwrap());
    let args = [
        "--listen-unix",
        path.to_str().unwrap(),
        "--listen-unix-dgram",
        dgram.to_str().unwrap(),
    ];
    let mut d = start(dir.path(), &args);
    d.log
        .wait_for(&format!("removed stale socket {}", path.display()));
    d.log
        .wait_for(&format!("removed stale socket {}", dgram.display()));
    UnixStream::connect(&path).unwrap();

    // A second daemon on the same paths: refused, and the first keeps its sockets.
    let second = Command::new(BIN)
        .args(["--foreground", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--output")
        .arg(dir.path().join("second.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("binding unix {}", path.display())) && err.contains("in use"),
        "{err}"
    );
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"still served\n").unwrap();
    assert_eq!(records(&d, 1)[0].1, "still served");

    assert_eq!(d.stop().code(), Some(0));
    assert!(
        !path.exists() && !dgram.exists(),
        "sockets left behind at exit"
    );

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let refused = Command::new(BIN)
        .args([
            "--foreground",
            "--listen",
            "127.0.0.1:0",
            "--listen-unix-dgram",
        ])
        .arg(&file)
        .arg("--output")
        .arg(dir.path().join("third.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains(file.to_str().unwrap()) && err.contains("is a regular file, not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
}

/// 10,000 unix stream clients each holding a partial line, as for TCP: memory stays within
/// about 1 KiB per connection on top of the base, and every partial line is recorded.
#[test]
fn many_unix_clients_bounded_memory() {
    crate::limits::raise_own_fd_limit();
    let dir = temp_dir();
    let path = dir.path().join("in.sock");
    let mut d = start(
        dir.path(),
        &[
            "--listen-unix",
            path.to_str().unwrap(),
            "--format",
            "raw",
            "--backlog",
            "4096",
        ],
    );
    crate::limits::many_partial_lines_within_bound(&mut d, "unix", || {
        UnixStream::connect(&path).unwrap()
    });
}

/// SIGTERM with unread data in unix stream sockets and datagrams queued: everything sent
/// before the signal is recorded, partial lines too, the exit is 0 within a second and the
/// socket files are gone.
#[test]
fn sigterm_drains_unix_clients() {
    let dir = temp_dir();
    let (mut d, path, dgram) = start_stream_and_dgram(dir.path(), &["--format", "raw"]);
    let mut clients: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("hello {i}\n").as_bytes()).unwrap();
    }
    d.wait_for_lines(20);
    // Stopped, the daemon cannot read: what follows waits in its sockets.
    d.signal(libc::SIGSTOP);
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("stream {i}\nunfinished {i}").as_bytes())
            .unwrap();
    }
    let sender = UnixDatagram::unbound().unwrap();
    for i in 0..5 {
        sender
            .send_to(format!("datagram {i}").as_bytes(), &dgram)
            .unwrap();
    }
    let (status, took) = d.stop_paused(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    let text = d.output();
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| {
            [
                format!("hello {i}"),
                format!("stream {i}"),
                format!("unfinished {i}"),
            ]
        })
        .chain((0..5).map(|i| format!("datagram {i}")))
        .collect();
    let mut got: Vec<String> = text.lines().map(str::to_string).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(!path.exists() && !dgram.exists());
    drop(clients);
}

/// A unix stream client and a datagram sender flooding without pause when SIGTERM comes: the
/// daemon still exits 0 within 3 s with bounded memory, and another unix client's partial line
/// is recorded (the drain reads each stream up to what it held at the signal, as for TCP).
#[test]
fn sigterm_during_a_unix_flood() {
    let dir = temp_dir();
    let (mut d, path, dgram) = start_stream_and_dgram(dir.path(), &[]);
    let mut innocent = UnixStream::connect(&path).unwrap();
    innocent.write_all(b"innocent partial line").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders = [
        {
            let (mut s, stop) = (UnixStream::connect(&path).unwrap(), stop.clone());
            std::thread::spawn(move || {
                let newlines = [b'\n'; 64 * 1024];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(&newlines).is_err() {
                        break;
                    }
                }
            })
        },
        {
            let (s, stop, to) = (
                UnixDatagram::unbound().unwrap(),
                stop.clone(),
                dgram.clone(),
            );
            s.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            std::thread::spawn(move || {
                let datagram = [b'd'; 1000];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match s.send_to(&datagram, &to) {
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                        _ => {}
                    }
                }
            })
        },
    ];
    wait_until("the flood in the output", DEADLINE, || {
        (std::fs::metadata(&d.out).map_or(0, |m| m.len()) > 4 << 20).then_some(())
    });
    d.signal(libc::SIGTERM);
    let start = Instant::now();
    let mut peak = 0;
    let status = wait_until("logsinkd to exit", DEADLINE, || {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", d.pid())) {
            let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
            if let Some(kib) = hwm.and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()) {
                peak = peak.max(kib);
            }
        }
        d.child.try_wait().unwrap()
    });
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    eprintln!("unix flood: exit after {took:?}, peak RSS {peak} KiB");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    let want = format!(" {} innocent partial line", my_peer());
    let bytes = std::fs::read(&d.out).unwrap();
    assert!(
        bytes
            .split(|&b| b == b'\n')
            .any(|r| r.ends_with(want.as_bytes())),
        "the innocent client's partial line was not recorded"
    );
    drop(innocent);
}

/// `--check-config` prints the unix keys, and a bad mode is refused naming the key.
#[test]
fn check_config_shows_unix_keys() {
    let dir = temp_dir();
    let out = Command::new(BIN)
        .args([
            "--check-config",
            "--listen-unix",
            "/run/x/in.sock",
            "--unix-mode",
            "600",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("listen_unix = [\"/run/x/in.sock\"]"),
        "{text}"
    );
    assert!(text.contains("listen_unix_dgram = []"), "{text}");
    assert!(text.contains("unix_mode = \"0600\""), "{text}");
    let out = Command::new(BIN)
        .args([
            "--check-config",
            "--listen-unix",
            "/x",
            "--unix-mode",
            "0999",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key `unix_mode`"),
        "{out:?}"
    );
}
