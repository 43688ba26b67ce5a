//! Output faults: a full disk and a vanished syslog receiver cost nothing. The daemon keeps
//! running, says so once, stops reading from clients while it cannot write (TCP pushes back on
//! them), and writes everything, in order, once the output takes data again.

use std::time::Duration;

use crate::util::*;

/// Disk full on a small tmpfs mounted in the daemon's own mount namespace.
#[test]
fn disk_full_pushes_back_and_recovers() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a tmpfs in a private mount namespace");
        return;
    }
    let dir = temp_dir();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    // In a private mount namespace: a 32 MiB tmpfs, nearly filled before the daemon starts.
    let script = "mount -t tmpfs -o size=32m logsinkd-test \"$0\" && \
                  head -c 33292288 /dev/zero > \"$0/filler\" && exec \"$@\"";
    let small_s = small.to_str().unwrap();
    let out = small.join("out.log");
    let mut d = DaemonBuilder::wrapped(
        dir.path(),
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            small_s,
        ],
    )
    .arg("--output")
    .arg(&out)
    .args(["--format", "raw"])
    .start();
    // The test sees the daemon's tmpfs through its root directory.
    let pid = d.pid();
    let inside = |name: &str| std::path::PathBuf::from(format!("/proc/{pid}/root{small_s}/{name}"));
    let count = 150_000; // 15 MB: more than the room left and the 8 MiB the daemon may hold
    let (client, writer) = stream_numbered(d.addr, count);
    d.log.wait_for("No space left on device");
    // Back-pressure: the daemon stops reading, so data piles up in its socket.
    wait_until("the daemon to stop reading", DEADLINE, || {
        (daemon_recv_queue(d.addr, client)? > 64 * 1024).then_some(())
    });
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
    std::fs::remove_file(inside("filler")).unwrap();
    writer.join().unwrap();
    d.log.wait_for("takes data again");
    wait_until("every line written", DEADLINE, || {
        let len = std::fs::metadata(inside("out.log")).ok()?.len();
        (len >= count * 100).then_some(())
    });
    let text = std::fs::read_to_string(inside("out.log")).unwrap();
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&[text], count, true);
    let complaints = d
        .log
        .all()
        .iter()
        .filter(|l| l.contains("No space left"))
        .count();
    assert_eq!(complaints, 1, "logged once per episode: {:#?}", d.log.all());
}

/// Shutdown while the output is full does not hang past the flush deadline and says how much
/// was lost (exit 1), rather than pretending success.
#[test]
fn shutdown_with_full_disk_reports_loss() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = temp_dir();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let script = "mount -t tmpfs -o size=1m logsinkd-test \"$0\" && \
                  head -c 1048576 /dev/zero > \"$0/filler\"; exec \"$@\"";
    let out = small.join("out.log");
    let mut d = DaemonBuilder::wrapped(
        dir.path(),
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            small.to_str().unwrap(),
        ],
    )
    .arg("--output")
    .arg(&out)
    .start();
    send(d.addr, b"cannot be written\n");
    d.log.wait_for("No space left on device");
    let status = d.stop_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    d.log.wait_for("bytes unwritten");
}
