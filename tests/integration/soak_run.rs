//! The soak run, at CI size (`load::soak_scaled_down`) and at full size (`load::soak_full_size`,
//! which `cargo bench --bench soak` runs): many clients stream numbered lines with
//! random disconnects and reconnects while the output is rotated (mv + HUP) every few
//! milliseconds; then SIGTERM. Every line must be in exactly one file, once, intact, in order
//! per connection.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::util::*;

pub struct Size {
    pub clients: usize,
    pub lines: u64,
    pub rotations: usize,
    pub rotation_gap: Duration,
}

pub struct Report {
    pub lines: u64,
    pub connections: u64,
    pub files: usize,
    pub elapsed: Duration,
}

/// A tiny deterministic PRNG (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One client: sends `lines` lines over successive connections of random length; some
/// connections end in the middle of a line (the partial line is then a record of its own).
/// Returns, per connection, its peer address and the lines it sent.
fn client(addr: std::net::SocketAddr, id: usize, lines: u64) -> Vec<(String, Vec<String>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
    let mut conns = Vec::new();
    let mut sent = 0u64;
    let mut generation = 0u64;
    while sent < lines {
        let stream = TcpStream::connect(addr).unwrap();
        let peer = stream.local_addr().unwrap().to_string();
        let mut w = std::io::BufWriter::with_capacity(16 * 1024, stream);
        let burst = (1 + rng.below(2000)).min(lines - sent);
        let mut texts = Vec::with_capacity(burst as usize);
        for seq in 0..burst {
            let text = format!(
                "c{id} g{generation} s{seq} {}",
                "x".repeat(rng.below(80) as usize)
            );
            let cut_short = seq + 1 == burst && rng.below(4) == 0;
            if cut_short {
                // Disconnect mid-line: the partial line is recorded at disconnect.
                w.write_all(text.as_bytes()).unwrap();
            } else {
                writeln!(w, "{text}").unwrap();
            }
            texts.push(text);
        }
        w.flush().unwrap();
        sent += burst;
        generation += 1;
        conns.push((peer, texts));
    }
    conns
}

pub fn run(size: &Size) -> Report {
    let dir = temp_dir();
    let mut d = Daemon::start(dir.path(), &["--backlog", "4096"]);
    let start = Instant::now();
    let clients: Vec<_> = (0..size.clients)
        .map(|id| {
            let addr = d.addr;
            // The first `lines % clients` clients send one line more: `lines` in all.
            let share = size.lines / size.clients as u64
                + u64::from((id as u64) < size.lines % size.clients as u64);
            std::thread::spawn(move || client(addr, id, share))
        })
        .collect();
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 1..=size.rotations {
        // Pacing the load, not waiting for the daemon.
        std::thread::sleep(size.rotation_gap);
        let rotated = dir.path().join(format!("out.log.{i}"));
        if std::fs::rename(&d.out, &rotated).is_ok() {
            files.push(rotated);
        }
        d.signal(libc::SIGHUP);
        d.log.wait_for_nth("reopened ", i);
    }
    let sent: Vec<Vec<(String, Vec<String>)>> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(d.stop().code(), Some(0), "clean exit");
    let elapsed = start.elapsed();
    files.push(d.out.clone());

    // Index what was sent by connection: (client, generation) -> (peer, lines).
    let mut expected: HashMap<(usize, u64), (&str, &[String], usize)> = HashMap::new();
    let mut connections = 0u64;
    for (id, conns) in sent.iter().enumerate() {
        for (generation, (peer, texts)) in conns.iter().enumerate() {
            expected.insert(
                (id, generation as u64),
                (peer.as_str(), texts.as_slice(), 0),
            );
            connections += 1;
        }
    }
    let mut recorded = 0u64;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for record in text.lines() {
            let (_, peer, line) = split_record(record);
            let mut words = line.splitn(3, ' ');
            let (Some(c), Some(g)) = (words.next(), words.next()) else {
                panic!("mangled: {record:?}")
            };
            let key = (c[1..].parse().unwrap(), g[1..].parse().unwrap());
            let (want_peer, texts, next) = expected
                .get_mut(&key)
                .unwrap_or_else(|| panic!("unknown: {record:?}"));
            assert_eq!(peer, *want_peer, "peer of {record:?}");
            assert!(*next < texts.len(), "duplicated: {record:?}");
            assert_eq!(
                line,
                texts[*next],
                "in {}: lost, reordered or corrupted",
                f.display()
            );
            *next += 1;
            recorded += 1;
        }
    }
    for ((c, g), (_, texts, next)) in &expected {
        assert_eq!(*next, texts.len(), "client {c} connection {g}: lines lost");
    }
    assert_eq!(recorded, size.lines);
    Report {
        lines: recorded,
        connections,
        files: files.len(),
        elapsed,
    }
}
