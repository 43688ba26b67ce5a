//! The load generator: opens all connections first, then sends (throughput: as fast as the
//! receiver takes it, from one nonblocking mio loop; latency: at a fixed rate with a send time
//! in each line, while a tailer timestamps each line's arrival in the output file).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::lines::{self, BODY, LINE, Stamp};

/// How long a run may make no progress before it counts as failed.
pub const STALL: Duration = Duration::from_secs(60);

/// The clock the send times in lines count from.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Open client connections and the peer address the receiver sees for each.
pub struct Clients {
    pub streams: Vec<TcpStream>,
    pub peers: Vec<Vec<u8>>,
}

/// Opens `count` connections one after another (each completes its handshake before the next
/// starts, so the receiver's accept backlog never overflows into SYN retries).
pub fn connect(addr: SocketAddr, count: usize) -> Result<Clients, String> {
    connect_each(addr, count, |_, _| Ok(()))
}

/// `connect`, calling `then(i, stream)` on each connection as soon as it is open (a TLS
/// client's handshake).
pub fn connect_each(
    addr: SocketAddr,
    count: usize,
    mut then: impl FnMut(usize, &mut TcpStream) -> Result<(), String>,
) -> Result<Clients, String> {
    let mut clients = Clients {
        streams: Vec::with_capacity(count),
        peers: Vec::with_capacity(count),
    };
    for i in 0..count {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("opening connection {i} of {count}: {e}"))?;
        // Lines go out when written: Nagle would hold back the latency scenario's small writes.
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        clients.peers.push(
            stream
                .local_addr()
                .map_err(|e| e.to_string())?
                .to_string()
                .into_bytes(),
        );
        then(i, &mut stream)?;
        clients.streams.push(stream);
    }
    Ok(clients)
}

/// Sends `data[i]` on connection `i`, all connections at once, as fast as the receiver takes
/// them. Returns the instant the first byte was sent.
pub fn send_all(clients: &mut Clients, data: &[Vec<u8>]) -> Result<Instant, String> {
    let err = |e: std::io::Error| format!("sending: {e}");
    let mut poll = Poll::new().map_err(err)?;
    let mut streams: Vec<mio::net::TcpStream> = clients
        .streams
        .drain(..)
        .map(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            mio::net::TcpStream::from_std(s)
        })
        .collect();
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::WRITABLE)
            .map_err(err)?;
    }
    let mut sent = vec![0usize; streams.len()];
    let mut left = data.iter().filter(|d| !d.is_empty()).count();
    let mut ready: Vec<usize> = (0..streams.len()).collect();
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    while left > 0 {
        for i in std::mem::take(&mut ready) {
            while sent[i] < data[i].len() {
                match streams[i].write(&data[i][sent[i]..]) {
                    Ok(n) => {
                        sent[i] += n;
                        if sent[i] == data[i].len() {
                            left -= 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("sending on connection {i}: {e}")),
                }
            }
        }
        if left == 0 {
            break;
        }
        poll.poll(&mut events, Some(STALL)).map_err(err)?;
        if events.is_empty() {
            return Err(format!("the receiver took nothing for {STALL:?}"));
        }
        ready.extend(events.iter().map(|e| e.token().0));
    }
    // Back to blocking std streams: the caller closes them once the output is complete.
    clients.streams = streams
        .into_iter()
        .map(|s| {
            let s = TcpStream::from(std::os::fd::OwnedFd::from(s));
            s.set_nonblocking(false).expect("blocking");
            s
        })
        .collect();
    Ok(start)
}

/// The size of the output file at `path`, or the sum of the files in the directory at `path`
/// (a template scenario's one file per connection).
fn output_size(path: &Path) -> u64 {
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum(),
        Err(_) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    }
}

/// Waits until `path` (a file, or a directory of them) holds at least `bytes`; returns when it first did. Polls the size every
/// 100 us (the receivers write in blocks, so this is far finer than the runs are long).
pub fn wait_for_size(path: &Path, bytes: u64, within: Duration) -> Result<Instant, String> {
    let mut last = (0, Instant::now());
    loop {
        let size = output_size(path);
        let now = Instant::now();
        if size >= bytes {
            return Ok(now);
        }
        if size != last.0 {
            last = (size, now);
        } else if now - last.1 > within {
            return Err(format!(
                "output stuck at {size} of {bytes} bytes for {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// What a latency run measured.
pub struct Latencies {
    /// Send-to-in-file delay of every line seen, in ns, sorted.
    pub sorted_ns: Vec<u64>,
    /// Send time of every line by `conn * per_conn + seq`.
    pub sent_ns: Vec<u64>,
}

/// Sends `per_conn` lines on each connection, `rate` lines per second per connection, spread
/// evenly over time and connections; a tailer thread watches `out` and timestamps each line's
/// arrival there.
pub fn send_paced(
    clients: &mut Clients,
    per_conn: usize,
    rate: u32,
    out: &Path,
) -> Result<Latencies, String> {
    let conns = clients.streams.len();
    let total = conns * per_conn;
    let tailer = Tailer::watch(out)?;
    let tail = std::thread::spawn(move || tailer.run(total));
    let interval = Duration::from_secs(1) / (rate * conns as u32);
    let mut sent_ns = vec![0u64; total];
    let mut line = [0u8; LINE];
    let start = Instant::now();
    for g in 0..total {
        let (conn, seq) = (g % conns, g / conns);
        let due = start + interval * g as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let stamp = Stamp {
            conn,
            seq,
            sent_ns: now_ns(),
        };
        lines::fill(&mut line, stamp);
        sent_ns[conn * per_conn + seq] = stamp.sent_ns;
        clients.streams[conn]
            .write_all(&line)
            .map_err(|e| format!("sending on connection {conn}: {e}"))?;
    }
    let arrivals = tail
        .join()
        .map_err(|_| "the tailer panicked".to_string())??;
    let mut sorted_ns: Vec<u64> = arrivals
        .into_iter()
        .filter(|(stamp, _)| stamp.conn < conns && stamp.seq < per_conn)
        .filter(|(stamp, _)| sent_ns[stamp.conn * per_conn + stamp.seq] == stamp.sent_ns)
        .map(|(stamp, at)| at.saturating_sub(stamp.sent_ns))
        .collect();
    sorted_ns.sort_unstable();
    Ok(Latencies { sorted_ns, sent_ns })
}

/// Follows the output file with inotify: woken by each write to it (IN_MODIFY), it takes the
/// time, then reads what was appended. A line's arrival time is thus the moment the tailer
/// noticed the write that completed it: late by the wake-up delay (tens of microseconds on an
/// idle core), never early.
struct Tailer {
    inotify: std::fs::File,
    file: std::fs::File,
}

impl Tailer {
    fn watch(path: &Path) -> Result<Tailer, String> {
        let file =
            std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        // SAFETY: plain syscalls; the descriptor is owned by the File built from it.
        let inotify = unsafe {
            let fd = libc::inotify_init1(libc::IN_CLOEXEC);
            if fd < 0 {
                return Err(format!(
                    "inotify_init1: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let inotify = <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd);
            let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            if libc::inotify_add_watch(fd, cpath.as_ptr(), libc::IN_MODIFY) < 0 {
                return Err(format!(
                    "inotify_add_watch: {}",
                    std::io::Error::last_os_error()
                ));
            }
            inotify
        };
        Ok(Tailer { inotify, file })
    }

    /// Returns (stamp, arrival ns) for every line until `total` lines arrived or nothing
    /// arrived for `STALL`.
    fn run(mut self, total: usize) -> Result<Vec<(Stamp, u64)>, String> {
        let mut arrivals = Vec::with_capacity(total);
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        let mut events = [0u8; 4096];
        let mut lines_seen = 0;
        let mut idle_since = Instant::now();
        while lines_seen < total {
            let mut pfd = libc::pollfd {
                fd: self.inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let woke = unsafe { libc::poll(&mut pfd, 1, 50) } > 0;
            let at = now_ns();
            if woke {
                let _ = self.inotify.read(&mut events);
            }
            let mut got = false;
            loop {
                let n = self
                    .file
                    .read(&mut chunk)
                    .map_err(|e| format!("tailing: {e}"))?;
                if n == 0 {
                    break;
                }
                got = true;
                pending.extend_from_slice(&chunk[..n]);
            }
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &pending) {
                let record = &pending[start..end];
                start = end + 1;
                lines_seen += 1;
                if let Some(stamp) = record
                    .len()
                    .checked_sub(BODY)
                    .and_then(|b| lines::parse(&record[b..]))
                {
                    arrivals.push((stamp, at));
                }
            }
            pending.drain(..start);
            if got {
                idle_since = Instant::now();
            } else if idle_since.elapsed() > STALL {
                return Err(format!(
                    "only {lines_seen} of {total} lines reached the file"
                ));
            }
        }
        Ok(arrivals)
    }
}
