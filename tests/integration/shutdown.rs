//! Shutdown under load: a client that keeps sending when SIGTERM comes (over TCP or UDP)
//! cannot hold the daemon up or make its memory grow; the daemon reads what the sockets held
//! at SIGTERM, records every other client's partial line and exits 0 in time.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::*;

/// How long the daemon may take from SIGTERM to its exit here: well inside systemd's
/// TimeoutStopSec (10 s in the shipped unit).
const STOP_WITHIN: Duration = Duration::from_secs(3);
/// The daemon's peak memory may not pass this (normal running stays under 16 MiB).
const PEAK_RSS_KIB: u64 = 64 * 1024;

/// Peak resident memory of a process in KiB, or `None` once it has exited (a zombie's status
/// has no memory fields).
fn peak_rss_if_running(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches(" kB").trim().parse().ok()
}

/// Sends SIGTERM and waits for the exit, sampling the peak memory meanwhile; returns the exit
/// code, the time it took and the peak RSS in KiB.
fn stop_watching_memory(d: &mut Daemon) -> (Option<i32>, Duration, u64) {
    let pid = d.pid();
    let mut peak = peak_rss_kib(pid);
    d.signal(libc::SIGTERM);
    let start = Instant::now();
    let child = &mut d.child;
    let status = wait_until("logsinkd to exit after SIGTERM", STOP_WITHIN, || {
        // Sampled before each check for the exit, so the last sample is from just before it.
        if let Some(kib) = peak_rss_if_running(pid) {
            peak = peak.max(kib);
        }
        child.try_wait().unwrap()
    });
    (status.code(), start.elapsed(), peak)
}

/// A client whose partial line must be recorded at shutdown; returns it still connected.
fn innocent_client(d: &Daemon) -> TcpStream {
    let mut s = d.connect();
    s.write_all(b"innocent partial line").unwrap();
    s
}

/// The innocent client's partial line is a record in `default` format.
fn assert_innocent_recorded(d: &Daemon, innocent: &TcpStream) {
    let peer = innocent.local_addr().unwrap().to_string();
    let bytes = std::fs::read(&d.out).unwrap();
    let found = bytes
        .split(|&b| b == b'\n')
        .rev()
        .any(|r| r.ends_with(format!(" {peer} innocent partial line").as_bytes()));
    assert!(found, "the innocent client's partial line was not recorded");
}

/// Threads that keep sending until `stop` is set (or the daemon is gone).
struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    fn spawn(senders: usize, send: impl Fn(&AtomicBool) + Send + Sync + Clone + 'static) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..senders)
            .map(|_| {
                let (stop, send) = (stop.clone(), send.clone());
                std::thread::spawn(move || send(&stop))
            })
            .collect();
        Flood { stop, threads }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Waits until the daemon has written `bytes` of output (the flood is flowing).
fn wait_for_output(d: &Daemon, bytes: u64) {
    wait_until("the flood in the output", DEADLINE, || {
        (std::fs::metadata(&d.out).map_or(0, |m| m.len()) > bytes).then_some(())
    });
}

/// A client sending empty lines without pause (each costs the daemon a record, so it cannot
/// keep up) when SIGTERM comes: the daemon still exits 0 in time with bounded memory, and
/// another client's partial line is recorded. Before, shutdown read the flooder until its
/// socket was empty, which it never was, holding everything in memory.
#[test]
fn sigterm_during_a_tcp_flood() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &[]);
    let innocent = innocent_client(&d);
    let flooder = Arc::new(d.connect());
    let flooder_addr = flooder.local_addr().unwrap();
    let flood = Flood::spawn(1, move |stop| {
        let mut s = &*flooder;
        let chunk = [b'\n'; 64 * 1024];
        // Ends with an error once the daemon has closed the connection.
        while !stop.load(Ordering::Relaxed) && s.write_all(&chunk).is_ok() {}
    });
    wait_for_output(&d, 4 << 20);
    wait_until("the flooder's socket to fill", DEADLINE, || {
        daemon_stopped_reading(d.addr, flooder_addr).then_some(())
    });
    let (code, took, peak) = stop_watching_memory(&mut d);
    drop(flood);
    eprintln!("stopped during a TCP flood in {took:?}, peak RSS {peak} KiB");
    assert_eq!(code, Some(0));
    assert!(peak < PEAK_RSS_KIB, "peak RSS {peak} KiB");
    assert_innocent_recorded(&d, &innocent);
    d.log.wait_for("stopped: ");
}

/// Datagrams (from two senders) arriving without pause when SIGTERM comes: the
/// daemon exits 0 in time with bounded memory, and a TCP client's partial line is recorded.
#[test]
fn sigterm_during_a_udp_flood() {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--listen-udp", "127.0.0.1:0"]);
    let udp: SocketAddr = d.log.udp_addr();
    let innocent = innocent_client(&d);
    let flood = Flood::spawn(2, move |stop| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(udp).unwrap();
        // Control bytes, each escaped as four: recording a datagram costs the daemon more
        // than sending it costs the sender.
        let datagram = [1u8; 8192];
        while !stop.load(Ordering::Relaxed) {
            // ECONNREFUSED once the daemon is gone: keep going until told to stop.
            for _ in 0..100 {
                let _ = s.send(&datagram);
            }
        }
    });
    wait_for_output(&d, 4 << 20);
    wait_until("datagrams queued in the daemon's socket", DEADLINE, || {
        (udp_recv_queue(udp)? > 64 * 1024).then_some(())
    });
    let (code, took, peak) = stop_watching_memory(&mut d);
    drop(flood);
    eprintln!("stopped during a UDP flood in {took:?}, peak RSS {peak} KiB");
    assert_eq!(code, Some(0));
    assert!(peak < PEAK_RSS_KIB, "peak RSS {peak} KiB");
    assert_innocent_recorded(&d, &innocent);
    d.log.wait_for("stopped: ");
}

/// Bytes the kernel holds for a UDP socket bound to `local` (from /proc/net/udp: the memory
/// its queued datagrams take).
fn udp_recv_queue(local: SocketAddr) -> Option<u64> {
    let want = format!(":{:04X}", local.port());
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !f[1].ends_with(&want) {
            return None;
        }
        u64::from_str_radix(f[4].split_once(':')?.1, 16).ok()
    })
}
