//! Output faults: a full disk and a vanished syslog receiver cost nothing. The daemon keeps
//! running, says so once, stops reading from clients while it cannot write (TCP pushes back on
//! them), and writes everything, in order, once the output takes data again; what it holds
//! meanwhile takes bounded memory.

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
        daemon_stopped_reading(d.addr, client).then_some(())
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
    assert_numbered(&[text], 0..count, Layout::Raw);
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
    let wrapper = in_private_mounts(&script, small.to_str().unwrap());
    let d = DaemonBuilder::wrapped(dir, &wrapper)
        .arg("--output")
        .arg(small.join("out.log"))
        .args(args)
        .start();
    (d, small)
}

/// Queued output while a failing output holds it (`HIGH_WATER` in src/output.rs).
const HIGH_WATER: u64 = 8 << 20;

/// Numbered line `n` cut or padded to exactly `len` bytes, then LF: the memory tests need
/// lines from empty to 1000 bytes, and count them by the daemon's statistics, not by number.
fn line_of_len(n: u64, len: usize) -> Vec<u8> {
    let mut line = numbered_line(n).into_bytes();
    line.resize(len, b' ');
    line.push(b'\n');
    line
}

/// Sends lines of `len` bytes on `stream` from number `from` on, until the connection fails
/// (the daemon is gone), in a thread of its own.
fn flood(stream: std::net::TcpStream, from: u64, len: usize) {
    std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, stream);
        for n in from.. {
            if std::io::Write::write_all(&mut w, &line_of_len(n, len)).is_err() {
                break;
            }
        }
    });
}

/// The `lines=` counter of a fresh SIGUSR1 statistics line.
fn lines_recorded(d: &Daemon) -> u64 {
    let seen = d.log.all().len();
    d.signal(libc::SIGUSR1);
    wait_until("a stats line", DEADLINE, || {
        d.log.all()[seen..]
            .iter()
            .rev()
            .find_map(|l| l.split("lines=").nth(1))
            .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
    })
}

/// Floods the daemon on `client` (lines of `len` bytes, from number `from` on) until its
/// output holds `HIGH_WATER`: `queued(lines)` is the exact size of what `lines` records queue
/// (nothing leaves: the output takes nothing). The daemon reads nothing more from then on, so
/// its peak RSS is then that of `HIGH_WATER` queued. Returns the peak's growth over `before`
/// (KiB).
fn peak_growth_at_high_water(
    what: &str,
    d: &Daemon,
    client: std::net::TcpStream,
    from: u64,
    len: usize,
    before: u64,
    queued: impl Fn(u64) -> u64,
) -> u64 {
    flood(client, from, len);
    let lines = wait_until("HIGH_WATER queued", DEADLINE * 3, || {
        let lines = lines_recorded(d);
        (queued(lines) >= HIGH_WATER).then_some(lines)
    });
    let peak = peak_rss_kib(d.pid());
    eprintln!(
        "{what}, {len}-byte lines: peak RSS {peak} KiB, {before} KiB at start: +{} KiB with {} \
         KiB queued",
        peak - before,
        queued(lines) >> 10
    );
    peak - before
}

/// Peak RSS growth (KiB) of a file output on a full disk at `HIGH_WATER`, lines of `len` bytes.
fn file_growth(format: &str, len: usize) -> u64 {
    let dir = temp_dir();
    let (d, _) = start_on_small_tmpfs(dir.path(), 1, 0, &["--format", format]);
    let before = peak_rss_kib(d.pid());
    let client = d.connect();
    let peer = client.local_addr().unwrap().to_string();
    // `default`: time, space, peer, space, line, LF; `raw`: line, LF; `json`: the line needs
    // no escaping, so `{"time":"…","peer":"…","line":"…"}` and LF.
    let record = match format {
        "raw" => len + 1,
        "json" => r#"{"time":"","peer":"","line":""}"#.len() + 27 + peer.len() + len + 1,
        _ => 27 + 1 + peer.len() + 1 + len + 1,
    } as u64;
    let what = format!("file output, {format}");
    peak_growth_at_high_water(&what, &d, client, 0, len, before, |lines| lines * record)
}

/// Peak RSS growth (KiB) of a syslog output whose receiver never reads, at `HIGH_WATER`.
fn syslog_growth(len: usize) -> u64 {
    let dir = temp_dir();
    let path = dir.path().join("stalled.sock");
    let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let d = DaemonBuilder::new(dir.path())
        .output(&format!("syslog:{}", path.display()))
        .start();
    let before = peak_rss_kib(d.pid());
    // One message read: the exact size of every message of this client (the same peer, time
    // text of fixed width, lines of the same length).
    let mut client = d.connect();
    std::io::Write::write_all(&mut client, &line_of_len(0, len)).unwrap();
    receiver.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut message = vec![0; 64 * 1024];
    let message = receiver.recv(&mut message).unwrap() as u64;
    // Then the receiver's queue is filled (net.unix.max_dgram_qlen datagrams), so the daemon
    // can send nothing more: everything it records stays queued.
    let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    while filler.send_to(b"filler", &path).is_ok() {}
    let queued = |lines| (lines - 1) * message;
    peak_growth_at_high_water("syslog output", &d, client, 1, len, before, queued)
}

/// Peak RSS growth (KiB) of a journal output whose journald never reads, at `HIGH_WATER`.
fn journal_growth(len: usize) -> u64 {
    let dir = temp_dir();
    let path = dir.path().join("journal.sock");
    let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let d = DaemonBuilder::new(dir.path())
        .output(&format!("journal:{}", path.display()))
        .start();
    let before = peak_rss_kib(d.pid());
    // One entry read: the exact size of every entry of this client (the same fields, lines
    // of the same length).
    let mut client = d.connect();
    std::io::Write::write_all(&mut client, &line_of_len(0, len)).unwrap();
    receiver.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut entry = vec![0; 64 * 1024];
    let entry = receiver.recv(&mut entry).unwrap() as u64;
    let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    while filler.send_to(b"filler", &path).is_ok() {}
    let queued = |lines| (lines - 1) * entry;
    peak_growth_at_high_water("journal output", &d, client, 1, len, before, queued)
}

/// Peak RSS growth allowed with `HIGH_WATER` queued in a journal output: as `QUEUE_PEAK_KIB`,
/// but the entries of the read that crossed it are bigger: an empty line's entry is about 140
/// bytes (six fields with their names), so 64 KiB of empty lines queue 9 MiB more.
const JOURNAL_QUEUE_PEAK_KIB: u64 = 20 << 10;

/// Peak RSS growth allowed with `HIGH_WATER` queued: 8 MiB, plus the records of the read that
/// crossed it (at most 64 KiB of input: 3.2 MiB of `default` records, 5 MiB of `json` ones
/// when every line is empty), plus allocator slack. A syslog output queues its messages back
/// to back in one buffer (4 bytes of length each besides), so the same bound holds for it.
const QUEUE_PEAK_KIB: u64 = 14 << 10;

/// Memory with the output backed up: a file output on a full disk holding `HIGH_WATER` of
/// records in each format, and a syslog or journal output whose receiver never reads holding
/// `HIGH_WATER` of messages, stay within the bounds above, with lines from empty to 1000 bytes.
#[test]
fn memory_bounded_with_output_backed_up() {
    if !root_for("mount a tmpfs in a private mount namespace") {
        return;
    }
    for len in [0, 99, 1000] {
        for format in ["default", "raw", "json"] {
            let growth = file_growth(format, len);
            eprintln!("file output, {format}, {len}-byte lines: peak RSS grew {growth} KiB");
            assert!(
                growth < QUEUE_PEAK_KIB,
                "file output, {format}, {len}-byte lines: peak RSS grew {growth} KiB"
            );
        }
        let growth = syslog_growth(len);
        eprintln!("syslog output, {len}-byte lines: peak RSS grew {growth} KiB");
        assert!(
            growth < QUEUE_PEAK_KIB,
            "syslog output, {len}-byte lines: peak RSS grew {growth} KiB"
        );
        let growth = journal_growth(len);
        eprintln!("journal output, {len}-byte lines: peak RSS grew {growth} KiB");
        assert!(
            growth < JOURNAL_QUEUE_PEAK_KIB,
            "journal output, {len}-byte lines: peak RSS grew {growth} KiB"
        );
    }
}
