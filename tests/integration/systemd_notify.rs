//! The systemd protocol without a systemd: a datagram socket in the temp dir stands in for
//! NOTIFY_SOCKET, and a file for the journal stream (JOURNAL_STREAM names its device:inode).

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn next_message(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits for a notification containing `needle`, skipping others.
fn wait_message(sock: &UnixDatagram, needle: &str) -> String {
    wait_until(needle, DEADLINE, || {
        Some(next_message(sock)).filter(|m| m.contains(needle))
    })
}

/// READY=1 with STATUS= counters, RELOADING=1 then READY=1 around SIGHUP, watchdog pings,
/// STOPPING=1 at shutdown.
#[test]
fn sd_notify_protocol() {
    let dir = temp_dir();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut d = DaemonBuilder::new(dir.path())
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .start();
    let ready = wait_message(&sock, "READY=1");
    assert!(
        ready.contains("STATUS=0 open, 0 total connections"),
        "{ready}"
    );
    wait_message(&sock, "WATCHDOG=1");
    send(d.addr, b"one\ntwo\n");
    d.wait_for_lines(2);
    let status = wait_message(
        &sock,
        "STATUS=0 open, 1 total connections; 2 lines, 8 bytes",
    );
    assert!(status.contains("0 errors"), "{status}");
    d.signal(libc::SIGHUP);
    let reloading = wait_message(&sock, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert_eq!(wait_message(&sock, "READY=1"), "READY=1\n");
    wait_message(&sock, "WATCHDOG=1");
    d.signal(libc::SIGTERM);
    wait_message(&sock, "STOPPING=1");
    assert_eq!(d.wait_exit(DEADLINE).code(), Some(0));
}

/// With stderr on the journal stream, each diagnostic carries an sd-daemon priority prefix.
#[test]
fn journal_priority_prefixes() {
    let dir = temp_dir();
    let err_path = dir.path().join("stderr.txt");
    let mut child = spawn_on_journal(dir.path(), &err_path, "missing-dir/x.log");
    let status = wait_until("exit", Duration::from_secs(10), || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&err_path).unwrap();
    assert!(text.starts_with("<3>opening "), "{text}");

    let mut child = spawn_on_journal(dir.path(), &err_path, "x.log");
    wait_until("listening line", DEADLINE, || {
        std::fs::read_to_string(&err_path)
            .unwrap()
            .contains("<6>listening on 127.0.0.1:")
            .then_some(())
    });
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        std::fs::read_to_string(&err_path)
            .unwrap()
            .contains("<6>stopped: ")
    );
}

/// Starts the daemon with stderr on the file `err_path` and `JOURNAL_STREAM` naming that file,
/// as systemd does with the journal's stream socket.
fn spawn_on_journal(
    dir: &std::path::Path,
    err_path: &std::path::Path,
    output: &str,
) -> std::process::Child {
    let err = std::fs::File::create(err_path).unwrap();
    let meta = err.metadata().unwrap();
    Command::new(BIN)
        .current_dir(dir)
        .args([
            "--foreground",
            "--listen",
            "127.0.0.1:0",
            "--output",
            output,
        ])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}
