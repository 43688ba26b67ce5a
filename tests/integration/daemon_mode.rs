//! Classic daemon mode (no --foreground): the start command returns only once the daemon
//! serves, the pid file is right, and start-up errors reach the person who typed the command.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Start returns after ready (a client connecting right away is served), the pid file holds the
/// daemon's pid, relative paths work after the daemon moves to /, SIGTERM removes the pid file.
#[test]
fn daemon_start_ready_and_pid_file() {
    let dir = temp_dir();
    let d = ClassicDaemon::start(dir.path(), &[], &["--output", "rel.log"]);
    let (addr, pid) = (d.addr, d.pid);
    // The start command has returned: the daemon must already serve.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"hello daemon\n").unwrap();
    drop(s);
    assert!(pid_alive(pid));
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .contains("logsinkd")
    );
    let log = dir.path().join("rel.log");
    wait_until("the record", DEADLINE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("hello daemon"))
            .map(|_| ())
    });
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("the daemon to exit", DEADLINE, || {
        (!pid_alive(pid)).then_some(())
    });
    assert!(
        !dir.path().join("run.pid").exists(),
        "pid file removed at exit"
    );
}

/// A port already in use: non-zero exit naming the address, and no daemon left behind.
#[test]
fn port_in_use_fails_naming_the_address() {
    let dir = temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for foreground in [false, true] {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(["--listen", &addr, "--pid-file", "p.pid"]);
        if foreground {
            cmd.arg("--foreground");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("binding {addr}")), "{stderr}");
        assert!(stderr.contains("Address already in use"), "{stderr}");
        assert!(!dir.path().join("p.pid").exists());
    }
}

/// An output that cannot be opened fails the start command (exit 1) naming the path.
#[test]
fn unwritable_output_fails_start() {
    let dir = temp_dir();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--output", "no/such/dir/x.log"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no/such/dir/x.log") && stderr.contains("No such file"),
        "{stderr}"
    );
}

/// A second daemon with the same pid file is refused while the first runs, saying why, and
/// leaves the first one's pid file intact.
#[test]
fn pid_file_is_locked() {
    let dir = temp_dir();
    let start = || {
        Command::new(BIN)
            .current_dir(dir.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--output",
                "o.log",
                "--pid-file",
                "d.pid",
            ])
            .output()
            .unwrap()
    };
    assert!(start().status.success());
    let pid: i32 = std::fs::read_to_string(dir.path().join("d.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let second = start();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "d.pid is locked by a running process (pid {pid}): is logsinkd already running?"
        )),
        "says why: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("d.pid")).unwrap(),
        format!("{pid}\n"),
        "the running daemon's pid file is intact"
    );
    assert!(pid_alive(pid));
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("the daemon to exit", Duration::from_secs(10), || {
        (!pid_alive(pid)).then_some(())
    });
}

/// As root, --user/--group drop privileges after binding and opening the output.
#[test]
fn drops_privileges() {
    if !root_for("switch users") {
        return;
    }
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--user", "nobody", "--group", "nogroup"]);
    let uid = d.proc_status("Uid");
    let gid = d.proc_status("Gid");
    assert!(uid.split_whitespace().all(|u| u == "65534"), "Uid: {uid}");
    assert!(gid.split_whitespace().all(|g| g == "65534"), "Gid: {gid}");
    assert_eq!(d.proc_status("Groups"), "65534");
    assert!(d.log.matching("running as root").is_empty());
    send(d.addr, b"as nobody\n");
    d.wait_for_lines(1);
    assert_eq!(d.stop().code(), Some(0));
}

/// Running as root without --user draws a warning.
#[test]
fn warns_when_root() {
    if !root_for("see the warning for root") {
        return;
    }
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &[]);
    d.log.wait_for("warning: running as root");
}
