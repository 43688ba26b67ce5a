//! Output faults: a full disk and a vanished syslog receiver cost nothing. The daemon keeps
//! running, says so once, stops reading from clients while it cannot write (TCP pushes back on
//! them), and writes everything, in order, once the output takes data again.

use std::time::Duration;

use crate::util::*;

/// Disk full on a small tmpfs mounted in the daemon's own mount namespace.
#[test]
fn disk_full_pushes_back_and_recovers() {
    if !root_for("mount a tmpfs in a private mount namespace") {
        return;
    }
    let dir = temp_dir();
    // 32 MiB with 256 KiB left: less than the 15 MB the client sends.
    let (mut d, small) = start_on_small_tmpfs(dir.path(), 32, 256 * 1024, &["--format", "raw"]);
    let small_s = small.to_str().unwrap();
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
    if !root_for("mount a tmpfs in a private mount namespace") {
        return;
    }
    let dir = temp_dir();
    let (mut d, _) = start_on_small_tmpfs(dir.path(), 1, 0, &[]);
    send(d.addr, b"cannot be written\n");
    d.log.wait_for("No space left on device");
    let status = d.stop_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    d.log.wait_for("bytes unwritten");
}

/// Starts the daemon in a private mount namespace whose `dir/small` is a tmpfs of `size_mb`
/// MiB with only `room` bytes free, writing to `small/out.log`. The test reaches the files
/// through `/proc/PID/root`.
fn start_on_small_tmpfs(
    dir: &std::path::Path,
    size_mb: u64,
    room: u64,
    args: &[&str],
) -> (Daemon, std::path::PathBuf) {
    let small = dir.join("small");
    std::fs::create_dir(&small).unwrap();
    let script = format!(
        "mount -t tmpfs -o size={size_mb}m logsinkd-test \"$0\" && \
         head -c {} /dev/zero > \"$0/filler\"; exec \"$@\"",
        (size_mb << 20) - room
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        small.to_str().unwrap(),
    ];
    let d = DaemonBuilder::wrapped(dir, &wrapper)
        .arg("--output")
        .arg(small.join("out.log"))
        .args(args)
        .start();
    (d, small)
}
