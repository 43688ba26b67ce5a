//! Test harness: a temp dir per test and a `Daemon` that runs the real binary.
//!
//! Nothing here sleeps to wait. The daemon is started on `127.0.0.1:0` and says where it
//! listens on stderr; tests wait for such log lines, or for file contents, with a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_logsinkd");

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` every few milliseconds until it returns `Some`, or panics after `within`.
pub fn wait_until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lines the daemon printed on stderr, collected by a reader thread.
#[derive(Clone, Default)]
pub struct LogLines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl LogLines {
    fn collect(self, stream: impl std::io::Read + Send + 'static) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*self.0;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until `count` lines contain `pattern`; returns the last of them.
    pub fn wait_for_nth(&self, pattern: &str, count: usize) -> String {
        let (lines, cv) = &*self.0;
        let end = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            let found: Vec<&String> = guard.iter().filter(|l| l.contains(pattern)).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            let now = Instant::now();
            assert!(
                now < end,
                "timed out waiting for log line {pattern:?} #{count}; got {:#?}",
                *guard
            );
            guard = cv.wait_timeout(guard, end - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, pattern: &str) -> String {
        self.wait_for_nth(pattern, 1)
    }
}

/// A running logsinkd in the foreground.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: LogLines,
    /// The output file (when the output is a file).
    pub out: PathBuf,
}

/// Builds the command line of a foreground daemon writing to `dir/out.log` on a free port.
pub struct DaemonBuilder {
    cmd: Command,
    out: PathBuf,
}

impl DaemonBuilder {
    pub fn new(dir: &Path) -> DaemonBuilder {
        DaemonBuilder::wrapped(dir, &[])
    }

    /// Runs the daemon through a wrapper command (e.g. `unshare`), which must exec it.
    pub fn wrapped(dir: &Path, wrapper: &[&str]) -> DaemonBuilder {
        let out = dir.join("out.log");
        let mut cmd = logsinkd_command(wrapper);
        cmd.arg("--foreground")
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM");
        DaemonBuilder { cmd, out }
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Changes the command in ways the builder has no method for.
    pub fn with_command(mut self, f: impl FnOnce(&mut Command)) -> Self {
        f(&mut self.cmd);
        self
    }

    /// Output to somewhere other than `dir/out.log` (a path or a syslog target).
    pub fn output(mut self, target: &str) -> Self {
        self.out = PathBuf::from(target);
        self
    }

    pub fn start(mut self) -> Daemon {
        let has = |flag: &str| self.cmd.get_args().any(|a| a == flag);
        let (listen, output) = (!has("--listen"), !has("--output"));
        if listen {
            self.cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if output {
            self.cmd.arg("--output").arg(&self.out);
        }
        let mut child = self
            .cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawning logsinkd");
        let log = LogLines::default();
        log.clone().collect(child.stderr.take().unwrap());
        let line = log.wait_for("listening on ");
        let addr = line
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .expect("address in `listening on` line");
        Daemon {
            child,
            addr,
            log,
            out: self.out,
        }
    }
}

impl Daemon {
    /// A foreground daemon on a free port writing to `dir/out.log`, with extra arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        DaemonBuilder::new(dir).args(extra).start()
    }

    pub fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).expect("connecting to logsinkd")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(self.pid(), signal) },
            0,
            "kill {signal}"
        );
    }

    /// Sends SIGTERM and waits for the exit, at most `within`.
    pub fn stop_within(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(within)
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(DEADLINE)
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_until("logsinkd to exit", within, || child.try_wait().unwrap())
    }

    /// The output file's content.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// Waits until the output file holds at least `n` lines; returns them.
    pub fn wait_for_lines(&self, n: usize) -> Vec<String> {
        wait_until(
            &format!("{n} lines in {}", self.out.display()),
            DEADLINE,
            || {
                let text = self.output();
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                (lines.len() >= n).then_some(lines)
            },
        )
    }

    /// Waits until the output file holds at least `n` LF bytes, without decoding it (for
    /// large outputs).
    pub fn wait_for_line_count(&self, n: usize) {
        wait_until(
            &format!("{n} lines in {}", self.out.display()),
            DEADLINE * 3,
            || {
                let bytes = std::fs::read(&self.out).unwrap_or_default();
                (bytes.iter().filter(|&&b| b == b'\n').count() >= n).then_some(())
            },
        )
    }

    /// Asks for statistics (SIGUSR1) until the newest `stats:` line contains `want`; returns it.
    pub fn wait_for_stats(&self, want: &str) -> String {
        wait_until(&format!("stats with {want}"), DEADLINE * 3, || {
            self.signal(libc::SIGUSR1);
            let last = self
                .log
                .all()
                .into_iter()
                .rev()
                .find(|l| l.contains("stats:"))?;
            last.contains(want).then_some(last)
        })
    }

    /// A field of /proc/PID/status, such as `VmHWM` or `Uid`.
    pub fn proc_status(&self, field: &str) -> String {
        proc_status(self.pid(), field)
    }
}

pub fn proc_status(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: i32) -> u64 {
    proc_status(pid, "VmHWM")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `message` with tag `mytag` through util-linux `logger` (`--tcp` or `--udp`) to the
/// daemon at `addr`, then checks the first record: logger's message, from a 127.0.0.1 peer.
pub fn logger_message_recorded(d: &Daemon, transport: &str, addr: SocketAddr, message: &str) {
    let status = Command::new("logger")
        .args([transport, "-n", "127.0.0.1", "-P", &addr.port().to_string()])
        .args(["-t", "mytag", message])
        .status()
        .expect("running util-linux logger (apt-get install bsdutils)");
    assert!(status.success());
    let lines = d.wait_for_lines(1);
    let (_, peer, line) = split_record(&lines[0]);
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    assert!(line.contains("mytag") && line.ends_with(message), "{line}");
}

/// A record in `default` format, split into (time, peer, line).
pub fn split_record(record: &str) -> (&str, &str, &str) {
    let mut parts = record.splitn(3, ' ');
    let time = parts.next().unwrap();
    let peer = parts.next().expect("peer field");
    let line = parts.next().expect("line field");
    (time, peer, line)
}

/// Sends `data` on a new connection and closes it.
pub fn send(addr: SocketAddr, data: &[u8]) -> SocketAddr {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(data).unwrap();
    s.local_addr().unwrap()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("logsinkd-test")
        .tempdir()
        .unwrap()
}

/// True when the tests run as root (CI does): tests needing it say so and return otherwise.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For a test that needs root: false (after saying why the test is skipped) when not root.
pub fn root_for(what: &str) -> bool {
    if !is_root() {
        skip(&format!("needs root to {what}"));
    }
    is_root()
}

/// Says why a test cannot run here. Outside CI the test then passes without its check; in CI
/// (`CI` set), where `.ci/run` installs every peer and runs as root, a skip is a failure.
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "in CI nothing may be skipped: {why}"
    );
    eprintln!("skipped: {why}");
}

/// Bytes waiting unread in the receive queue of the daemon's side of a TCP connection
/// (from /proc/net/tcp): a growing queue shows the daemon has stopped reading.
pub fn daemon_recv_queue(daemon: SocketAddr, client: SocketAddr) -> Option<u64> {
    tcp_queues(daemon, client).map(|(_, rx)| rx)
}

/// (send queue, receive queue) of the TCP socket `local` connected to `remote`, from
/// /proc/net/tcp. The send queue holds what the peer has not yet received.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let want_local = format!(":{:04X}", local.port());
    let want_remote = format!(":{:04X}", remote.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(f[1].ends_with(&want_local) && f[2].ends_with(&want_remote)) {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// A client thread that sends `count` numbered lines of 100 bytes (`seq N` padded) with
/// blocking writes; returns its local address and the thread.
pub fn stream_numbered(addr: SocketAddr, count: u64) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let stream = TcpStream::connect(addr).unwrap();
    let local = stream.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, stream);
        for n in 0..count {
            writeln!(w, "{:<99}", format!("seq {n}")).unwrap();
        }
        w.flush().unwrap();
    });
    (local, handle)
}

/// Checks that the records of `texts` (concatenated in order) are lines `seq 0` … `seq
/// count-1`, each once, in order, intact.
pub fn assert_numbered(texts: &[String], count: u64, raw: bool) {
    let mut expected = 0u64;
    for text in texts {
        for record in text.lines() {
            let line = if raw { record } else { split_record(record).2 };
            let n: u64 = line
                .trim_end()
                .strip_prefix("seq ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("mangled record {record:?}"));
            assert_eq!(n, expected, "lost or duplicated around {expected}");
            assert_eq!(line.len(), 99, "intact: {record:?}");
            expected += 1;
        }
    }
    assert_eq!(expected, count, "lines recorded");
}

/// The logsinkd binary, run through `wrapper` (a command that execs it with its arguments, e.g.
/// `unshare`) unless that is empty.
fn logsinkd_command(wrapper: &[&str]) -> Command {
    match wrapper.split_first() {
        None => Command::new(BIN),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(BIN);
            cmd
        }
    }
}

/// A wrapper for `DaemonBuilder::wrapped` (or any command) that runs it in a private mount
/// namespace after `script` (sh, with `arg` as `$0`) has set that namespace up; the script ends
/// in `exec "$@"`. What the script mounts is seen by the daemon alone.
pub fn in_private_mounts<'a>(script: &'a str, arg: &'a str) -> [&'a str; 8] {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        arg,
    ]
}

/// A logsinkd started as a classic daemon (no `--foreground`) in `dir`, listening on a free
/// port, pid file `dir/run.pid`. Its start command has returned 0, so it already serves. It is
/// killed when dropped, however the test ends.
pub struct ClassicDaemon {
    pub addr: SocketAddr,
    pub pid: i32,
}

impl ClassicDaemon {
    /// Runs `wrapper` (empty, or a command that execs the rest) with logsinkd and `args`.
    pub fn start(dir: &Path, wrapper: &[&str], args: &[&str]) -> ClassicDaemon {
        let out = logsinkd_command(wrapper)
            .args(["--listen", "127.0.0.1:0", "--pid-file", "run.pid"])
            .args(args)
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "start failed: {stderr}");
        let addr = stderr
            .lines()
            .find_map(|l| l.strip_prefix("logsinkd: listening on "))
            .unwrap_or_else(|| panic!("no listening line: {stderr}"))
            .parse()
            .unwrap();
        let pid = std::fs::read_to_string(dir.join("run.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        ClassicDaemon { addr, pid }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the daemon this test started.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0, "kill {signal}");
    }
}

impl Drop for ClassicDaemon {
    fn drop(&mut self) {
        // SAFETY: as in `signal`; the daemon may be gone already.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}
