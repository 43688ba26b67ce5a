//! The real binary under test: `Daemon` (foreground, built by `DaemonBuilder`) and
//! `ClassicDaemon` (forked, with a pid file), the stderr lines they print, their memory, and
//! the records they write.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{DEADLINE, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_logsinkd");

/// Lines the daemon printed on stderr, collected by a reader thread. The reader runs behind
/// the daemon: a line the daemon wrote may not be here yet. Once a later line is (found by
/// `wait_for`), every line before it is; once the daemon has exited, `Daemon::wait_exit`
/// waits for the end of its stderr, so then every line is.
#[derive(Clone, Default)]
pub struct LogLines(Arc<(Mutex<Log>, Condvar)>);

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    /// The stream ended: every line is in.
    closed: bool,
}

impl LogLines {
    fn collect(self, stream: impl std::io::Read + Send + 'static) {
        std::thread::spawn(move || {
            let (log, cv) = &*self.0;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().lines.push(line);
                cv.notify_all();
            }
            log.lock().unwrap().closed = true;
            cv.notify_all();
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().lines.clone()
    }

    /// The lines so far that contain `pattern`.
    pub fn matching(&self, pattern: &str) -> Vec<String> {
        let log = self.0.0.lock().unwrap();
        log.lines
            .iter()
            .filter(|l| l.contains(pattern))
            .cloned()
            .collect()
    }

    /// Waits up to `within` for the end of the stream (every line read); false if it did not
    /// come (something else still holds the daemon's stderr open).
    fn wait_closed(&self, within: Duration) -> bool {
        let (log, cv) = &*self.0;
        let guard = log.lock().unwrap();
        let (guard, _) = cv.wait_timeout_while(guard, within, |l| !l.closed).unwrap();
        guard.closed
    }

    /// Waits until `count` lines contain `pattern`; returns the last of them.
    pub fn wait_for_nth(&self, pattern: &str, count: usize) -> String {
        let (log, cv) = &*self.0;
        let end = Instant::now() + DEADLINE;
        let mut guard = log.lock().unwrap();
        loop {
            let found: Vec<&String> = guard.lines.iter().filter(|l| l.contains(pattern)).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            let now = Instant::now();
            assert!(
                now < end,
                "timed out waiting for log line {pattern:?} #{count}; got {:#?}",
                guard.lines
            );
            guard = cv.wait_timeout(guard, end - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, pattern: &str) -> String {
        self.wait_for_nth(pattern, 1)
    }

    /// The address of the (first) listener logged as `listening on {kind}ADDR` (`udp `,
    /// `tls `; `127.0.0.1:` for a TCP one on that address).
    pub fn listening_on(&self, kind: &str) -> SocketAddr {
        let line = self.wait_for(&format!("listening on {kind}"));
        let addr = line.rsplit(' ').next().unwrap_or_default();
        addr.parse()
            .unwrap_or_else(|e| panic!("no address in {line:?}: {e}"))
    }

    /// The address of the (first) UDP socket.
    pub fn udp_addr(&self) -> SocketAddr {
        self.listening_on("udp ")
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
    /// Add `--listen 127.0.0.1:0` unless the command line has a `--listen`.
    default_listen: bool,
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
        DaemonBuilder {
            cmd,
            out,
            default_listen: true,
        }
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

    /// The listeners are those of the config file (`-c`): no `--listen` is added.
    pub fn listen_from_config(mut self) -> Self {
        self.default_listen = false;
        self
    }

    /// Output to somewhere other than `dir/out.log` (a path or a syslog target).
    pub fn output(mut self, target: &str) -> Self {
        self.out = PathBuf::from(target);
        self
    }

    pub fn start(mut self) -> Daemon {
        let has = |flag: &str| self.cmd.get_args().any(|a| a == flag);
        let (listen, output) = (self.default_listen && !has("--listen"), !has("--output"));
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
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill {signal}");
    }

    /// Sends SIGTERM and waits for the exit, at most `within`.
    pub fn stop_within(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(within)
    }

    /// Stops a daemon paused with SIGSTOP: the SIGTERM waits while it is stopped and SIGCONT
    /// lets it act on it, so what was sent meanwhile sits unread in its sockets at the signal.
    /// Returns the exit status (at most `within`) and how long the exit took from SIGTERM.
    pub fn stop_paused(&mut self, within: Duration) -> (ExitStatus, Duration) {
        self.signal(libc::SIGTERM);
        let start = std::time::Instant::now();
        self.signal(libc::SIGCONT);
        let status = self.wait_exit(within);
        (status, start.elapsed())
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(DEADLINE)
    }

    /// Waits for the daemon to exit, then for the end of its stderr, so `log` holds every
    /// line it wrote.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = &mut self.child;
        let status = wait_until("logsinkd to exit", within, || child.try_wait().unwrap());
        assert!(
            self.log.wait_closed(DEADLINE),
            "logsinkd exited ({status}) but its stderr stays open"
        );
        status
    }

    /// The output file's content.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// The first `n` records of a `json` output, parsed (waiting until there are `n`).
    pub fn wait_for_json(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_for_lines(n)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
            .collect()
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

/// A record in `default` format, split into (time, peer, line).
pub fn split_record(record: &str) -> (&str, &str, &str) {
    let mut parts = record.splitn(3, ' ');
    let time = parts.next().unwrap();
    let peer = parts.next().expect("peer field");
    let line = parts.next().expect("line field");
    (time, peer, line)
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
        // SAFETY: kill(2) on the daemon this test started; it may be gone already.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}
