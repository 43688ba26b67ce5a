//! Signals: SIGHUP reopens (logrotate's mv + HUP loses nothing), SIGTERM drains and exits 0,
//! SIGUSR1 reports statistics.

use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::util::*;

/// A client streaming numbered lines across 20 mv+HUP rotations: nothing lost or duplicated.
#[test]
fn rotation_loses_nothing() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let stream = d.connect();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = BufWriter::with_capacity(4096, stream);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 1000 {
                writeln!(w, "{}", numbered_line(n)).unwrap();
                n += 1;
            }
            w.flush().unwrap();
            n
        })
    };
    let mut files = Vec::new();
    for i in 1..=20 {
        // Let some lines land in every file before moving it.
        let before = std::fs::metadata(&d.out).map(|m| m.len()).unwrap_or(0);
        wait_until("records between rotations", DEADLINE, || {
            (std::fs::metadata(&d.out).map(|m| m.len()).unwrap_or(0) > before).then_some(())
        });
        let rotated = dir.path().join(format!("out.log.{i}"));
        std::fs::rename(&d.out, &rotated).unwrap();
        files.push(rotated);
        d.signal(libc::SIGHUP);
        d.log.wait_for_nth("reopened ", i);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    files.push(d.out.clone());
    wait_until("all lines recorded", DEADLINE, || {
        let total: usize = files
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum();
        (total as u64 >= sent).then_some(())
    });
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&file_texts(&files), 0..sent, Layout::Default);
}

/// SIGTERM with unread socket data and a partial line records both and exits 0 within a second.
#[test]
fn sigterm_records_unread_data_and_partial_line() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let mut idle = d.connect();
    let mut busy = d.connect();
    idle.write_all(numbered_lines(0..1).as_bytes()).unwrap();
    d.wait_for_lines(1);
    // Stopped, the daemon cannot read: the next bytes wait in its socket's receive buffer.
    d.signal(libc::SIGSTOP);
    // Lines 1 and 2, and line 3 without its LF.
    let unread = numbered_lines(1..4);
    busy.write_all(unread.trim_end_matches('\n').as_bytes())
        .unwrap();
    let (status, took) = d.stop_paused(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    assert_numbered(&file_texts(&[&d.out]), 0..4, Layout::Default);
    let log = d.log.wait_for("stopped");
    assert!(log.contains("lines=4"), "{log}");
    drop(idle);
}

/// SIGINT stops cleanly too; the summary names the counters.
#[test]
fn sigint_stops_cleanly() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    send(d.addr, b"seq 0\n");
    d.wait_for_lines(1);
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(DEADLINE).code(), Some(0));
    let line = d.log.wait_for("stopped");
    assert!(
        line.contains("connections open=0 total=1 lines=1 bytes=6 errors=0"),
        "{line}"
    );
}

/// SIGUSR1 logs a one-line statistics summary and the daemon keeps running.
#[test]
fn sigusr1_logs_stats() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let _open = d.connect();
    send(d.addr, b"a\nb\n");
    d.wait_for_lines(2);
    d.signal(libc::SIGUSR1);
    let line = d.log.wait_for("stats:");
    assert!(
        line.contains("lines=2") && line.contains("bytes=4"),
        "{line}"
    );
    d.wait_for_stats("stats: connections open=1 total=2");
    send(d.addr, b"c\n");
    d.wait_for_lines(3);
    assert_eq!(d.stop().code(), Some(0));
}

/// A reopen that fails keeps the old file, says why, and a later HUP that can, recovers.
#[test]
fn failed_reopen_keeps_old_file() {
    let dir = temp_dir();
    let logdir = dir.path().join("logs");
    std::fs::create_dir(&logdir).unwrap();
    let out = logdir.join("out.log");
    let mut d = DaemonBuilder::new(dir.path())
        .arg("--output")
        .arg(&out)
        .output(out.to_str().unwrap())
        .start();
    let mut s = d.connect();
    s.write_all(numbered_lines(0..1).as_bytes()).unwrap();
    d.wait_for_lines(1);
    // The directory is gone: the new file cannot be created.
    let moved = dir.path().join("moved");
    std::fs::rename(&logdir, &moved).unwrap();
    d.signal(libc::SIGHUP);
    let err = d.log.wait_for("reopening failed");
    assert!(err.contains("out.log"), "{err}");
    s.write_all(numbered_lines(1..2).as_bytes()).unwrap();
    let old = moved.join("out.log");
    wait_until("line in the old file", DEADLINE, || {
        std::fs::read_to_string(&old)
            .unwrap()
            .contains(&numbered_line(1))
            .then_some(())
    });
    std::fs::create_dir(&logdir).unwrap();
    d.signal(libc::SIGHUP);
    d.log.wait_for("reopened ");
    s.write_all(numbered_lines(2..3).as_bytes()).unwrap();
    d.wait_for_lines(1);
    drop(s);
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&file_texts(&[old, out]), 0..3, Layout::Default);
}
