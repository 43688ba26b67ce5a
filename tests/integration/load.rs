//! Under load: shutdown while 256 clients stream, and the soak run (CI size).

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::soak_run::{Size, run};
use crate::util::*;

/// The soak run scaled down for CI: 32 clients, 50,000 lines with random disconnects and
/// reconnects, 50 mv+HUP rotations 20 ms apart, then SIGTERM: nothing lost, duplicated,
/// corrupted or reordered. `cargo bench --bench soak` runs it at full size.
#[test]
fn soak_scaled_down() {
    soak(32, 50_000);
}

/// The soak run at full size: 256 clients, 1,000,000 lines. Run by `cargo bench --bench
/// soak` (optimized); too long for every `cargo test`.
#[test]
#[ignore = "full size: run by `cargo bench --bench soak`"]
fn soak_full_size() {
    soak(256, 1_000_000);
}

/// The soak run with `clients` clients sending `lines` lines in total, 50 rotations 20 ms
/// apart.
fn soak(clients: usize, lines: u64) {
    let report = run(&Size {
        clients,
        lines,
        rotations: 50,
        rotation_gap: Duration::from_millis(20),
    });
    println!(
        "soak: {} lines from {clients} clients over {} connections, {} files, {:.2?}: none \
         lost, duplicated, corrupted or reordered",
        report.lines, report.connections, report.files, report.elapsed
    );
}

/// One streaming client on a non-blocking socket: numbered lines, partial writes tracked.
struct Streamer {
    stream: TcpStream,
    id: usize,
    next: u64,
    /// The line being written and how much of it the kernel took.
    pending: Vec<u8>,
    written: usize,
    /// Bytes the kernel took.
    bytes_taken: u64,
    closed: bool,
}

impl Streamer {
    fn line(id: usize, n: u64) -> Vec<u8> {
        format!("c{id} s{n} {}\n", "y".repeat(40)).into_bytes()
    }

    /// Writes until the kernel takes no more (or `limit` bytes); returns the bytes taken.
    fn pump(&mut self, limit: usize) -> usize {
        let mut taken = 0;
        while !self.closed && taken < limit {
            if self.written == self.pending.len() {
                self.pending = Streamer::line(self.id, self.next);
                self.written = 0;
            }
            match self.stream.write(&self.pending[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    taken += n;
                    self.bytes_taken += n as u64;
                    if self.written == self.pending.len() {
                        self.next += 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
        taken
    }
}

/// SIGTERM while 256 clients stream: everything the daemon read and everything already in
/// its sockets' receive buffers is recorded, each connection's lines intact and in order,
/// and it exits 0 well within a systemd TimeoutStopSec.
#[test]
fn sigterm_under_load_records_everything_received() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--backlog", "512"]);
    let mut clients: Vec<Streamer> = (0..256)
        .map(|id| {
            let stream = d.connect();
            stream.set_nonblocking(true).unwrap();
            Streamer {
                stream,
                id,
                next: 0,
                pending: Vec::new(),
                written: 0,
                bytes_taken: 0,
                closed: false,
            }
        })
        .collect();
    // Stream for a while with all 256 clients.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        for c in clients.iter_mut() {
            c.pump(4096);
        }
    }
    // Freeze the daemon: what the clients send now can only wait in its receive buffers.
    d.signal(libc::SIGSTOP);
    for c in clients.iter_mut() {
        c.pump(2048);
    }
    // What reached the daemon's receive buffers: what each client's kernel took, less what
    // still waits in the client's own send queue. The daemon cannot read while stopped, so
    // all of it is still in its receive buffers when SIGTERM is handled.
    let unsent: Vec<u64> = clients
        .iter()
        .map(|c| {
            tcp_queues(c.stream.local_addr().unwrap(), d.addr)
                .expect("client socket")
                .0
        })
        .collect();
    let received: Vec<u64> = clients
        .iter()
        .zip(&unsent)
        .map(|(c, u)| c.bytes_taken - u)
        .collect();
    d.signal(libc::SIGTERM);
    let stop_at = Instant::now();
    d.signal(libc::SIGCONT);
    // The clients keep streaming until the daemon closes them.
    let status = loop {
        for c in clients.iter_mut() {
            c.pump(4096);
        }
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stop_at.elapsed() < Duration::from_secs(10),
            "shutdown took too long"
        );
    };
    let took = stop_at.elapsed();
    assert_eq!(status.code(), Some(0));
    eprintln!("shutdown with 256 streaming clients took {took:?}");

    let text = std::fs::read_to_string(&d.out).unwrap();
    let mut next = vec![0u64; clients.len()];
    let mut partial = vec![false; clients.len()];
    let mut recorded = vec![0u64; clients.len()];
    for record in text.lines() {
        let line = split_record(record).2;
        let c: usize = line[1..line.find(' ').unwrap()].parse().unwrap();
        assert!(
            !partial[c],
            "a record after client {c}'s partial line: {record:?}"
        );
        let want = Streamer::line(c, next[c]);
        let want = std::str::from_utf8(&want[..want.len() - 1]).unwrap();
        recorded[c] += line.len() as u64 + 1;
        if line != want {
            // Only the last record of a connection may be cut: the line in flight at the end.
            assert!(
                want.starts_with(line),
                "client {c}: lost, reordered or corrupted: {record:?}"
            );
            partial[c] = true;
        } else {
            next[c] += 1;
        }
    }
    for c in 0..clients.len() {
        // A cut last line counts its LF that never came; allow for it.
        let got = recorded[c] - u64::from(partial[c]);
        assert!(
            got >= received[c],
            "client {c}: {got} bytes recorded, {} had reached the daemon",
            received[c]
        );
    }
}

/// The thread of the daemon named `writer` (a file output's writer thread). The new thread
/// names itself once it runs, which may be just after the daemon says it is ready.
fn writer_thread(pid: i32) -> std::path::PathBuf {
    wait_until("the daemon's writer thread", DEADLINE, || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|t| t.unwrap().path())
            .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "writer"))
    })
}

/// How often a thread has blocked: each batch the writer thread takes ends with it waiting
/// for the next.
fn voluntary_switches(task: &std::path::Path) -> u64 {
    let status = std::fs::read_to_string(task.join("status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A file output's big batches go to its writer thread, small ones do not: lines arriving one
/// at a time are written by the loop without waking the writer, a flood is handed over, and
/// every line lands once, in order.
#[test]
fn writer_thread_takes_only_big_batches() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let writer = writer_thread(d.pid());
    // Counted once it waits for its first batch (blocking there is its first switch).
    wait_until("the writer thread to wait for work", DEADLINE, || {
        let status = std::fs::read_to_string(writer.join("status")).unwrap();
        status
            .lines()
            .any(|l| l.starts_with("State:\tS"))
            .then_some(())
    });
    let idle = voluntary_switches(&writer);
    let mut client = d.connect();
    for n in 0..20 {
        writeln!(client, "{}", numbered_line(n)).unwrap();
        d.wait_for_lines(n as usize + 1);
    }
    assert_eq!(
        voluntary_switches(&writer),
        idle,
        "lines one at a time woke the writer thread"
    );
    drop(client);
    // 20 MB made beforehand and sent at once, faster than the daemon takes it: its socket
    // stays full, and its batches reach 1 MiB.
    let count = 200_000;
    let flood = numbered_lines(0..count);
    let mut client = d.connect();
    client.write_all(flood.as_bytes()).unwrap();
    drop(client);
    let lines = d.wait_for_lines(20 + count as usize);
    assert!(
        voluntary_switches(&writer) > idle,
        "a flood was written without the writer thread"
    );
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&lines[..20], 0..20, Layout::Default);
    assert_numbered(&lines[20..], 0..count, Layout::Default);
}

/// Where the writer thread cannot be started (here the daemon's user may run one task, by
/// RLIMIT_NPROC, once privileges are dropped), the daemon says so once and writes on its loop:
/// a flood lands whole and in order, and it stops cleanly.
#[test]
fn without_a_writer_thread_the_loop_writes() {
    if !root_for("limit the daemon's user to one task") {
        return;
    }
    let dir = temp_dir();
    let mut d = DaemonBuilder::wrapped(dir.path(), &["prlimit", "--nproc=1:1", "--"])
        .args(["--user", "nobody", "--group", "nogroup"])
        .start();
    d.log.wait_for("cannot start the writer thread");
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .unwrap()
        .count();
    assert_eq!(tasks, 1, "the daemon runs on one thread");
    let count = 200_000;
    let mut client = d.connect();
    client
        .write_all(numbered_lines(0..count).as_bytes())
        .unwrap();
    drop(client);
    let lines = d.wait_for_lines(count as usize);
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&lines, 0..count, Layout::Default);
    assert_eq!(d.log.matching("cannot start the writer thread").len(), 1);
}
