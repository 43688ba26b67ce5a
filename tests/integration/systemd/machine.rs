//! A real systemd for the packaging tests: booted as PID 1 of private pid, mount, UTS, IPC and
//! network namespaces by `systemd_boot.sh`, which keeps every change inside the test's own
//! directory (the script's header says what a bare boot would do to the host). A `Machine`
//! runs commands inside with nsenter, reads and writes its files through `/proc/PID/root`,
//! connects to its loopback from a thread that joined its network namespace,
//! and is always powered off and cleaned up when dropped, whether the test passed or not.

use std::fs::{self, File};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{is_root, wait_until};

/// The INIT that prepares the namespaces and execs systemd.
const BOOT_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/systemd_boot.sh"
);

/// How long booting, or any one command inside, may take.
pub const MACHINE_DEADLINE: Duration = Duration::from_secs(30);

/// How long a clean poweroff may take before the namespace's PID 1 is killed.
const POWEROFF_DEADLINE: Duration = Duration::from_secs(10);

/// The programs the machine needs from the host.
const NEEDED: &[&str] = &[
    "/lib/systemd/systemd",
    "/usr/bin/unshare",
    "/usr/bin/nsenter",
];

/// Why a real systemd cannot be booted here, or `None` if it can.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not running as root".into());
    }
    NEEDED
        .iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is missing"))
}

/// A file to install into the machine before it boots: host source, absolute destination
/// under /usr or /etc, mode.
pub struct Install {
    pub source: PathBuf,
    pub dest: &'static str,
    pub mode: u32,
}

/// A booted systemd and the directory holding everything it changed.
pub struct Machine {
    /// `unshare`, whose only child is the namespace's PID 1.
    unshare: Child,
    /// Host pid of the namespace's systemd; 0 until it has started.
    pid: u32,
    /// Overlay upper dirs, staged files and the console log; removed after poweroff.
    state: tempfile::TempDir,
}

impl Machine {
    /// Boots a systemd with `files` installed and waits until it has reached basic.target.
    pub fn boot(files: &[Install]) -> Machine {
        let state = tempfile::Builder::new()
            .prefix("logsinkd-systemd-")
            .tempdir()
            .unwrap();
        for file in files {
            let dest = state
                .path()
                .join("root")
                .join(file.dest.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(&file.source, &dest)
                .unwrap_or_else(|e| panic!("staging {}: {e}", file.source.display()));
            set_mode(&dest, file.mode);
        }
        let console = File::create(state.path().join("console.log")).unwrap();
        let mut unshare = Command::new("unshare");
        unshare
            // --kill-child: should unshare die, the kernel kills the namespace's PID 1 with it.
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
                "--uts",
                "--ipc",
                "--net",
                "--",
            ])
            .arg("bash")
            .arg(BOOT_SCRIPT)
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console);
        // Should the test's thread (and so the test process) die before Drop runs, the kernel
        // kills unshare, and with it (--kill-child) the whole machine: nothing outlives the test.
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
        unsafe {
            unshare.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let unshare = unshare.spawn().expect("spawning unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let console_log = state.path().join("console.log");
        // From here on, Drop powers the machine off (or kills it) whatever happens.
        let mut machine = Machine {
            unshare,
            pid: 0,
            state,
        };
        machine.pid = wait_until(
            "systemd to start in the namespaces",
            MACHINE_DEADLINE,
            || {
                if let Some(status) = machine.unshare.try_wait().unwrap() {
                    let log = fs::read_to_string(&console_log).unwrap_or_default();
                    panic!("the boot script exited ({status}) before systemd started:\n{log}");
                }
                let pid: u32 = fs::read_to_string(&children).ok()?.trim().parse().ok()?;
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim() == "systemd").then_some(pid)
            },
        );
        wait_until("systemd to finish booting", MACHINE_DEADLINE, || {
            let out = machine
                .command("systemctl")
                .arg("is-system-running")
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            matches!(state.as_str(), "running" | "degraded").then_some(())
        });
        machine
    }

    /// A command run inside all of the machine's namespaces, with a clean environment and a
    /// time limit (a hung command fails the test instead of hanging it).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid))
            .args(["--mount", "--pid", "--uts", "--ipc", "--net", "--"])
            .args([
                "timeout",
                "--kill-after=5",
                &MACHINE_DEADLINE.as_secs().to_string(),
                program,
            ])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `program args` inside and returns what it did, successful or not.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .expect("spawning nsenter")
    }

    /// Runs `program args` inside, asserts it succeeded and returns its stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "`{program} {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.run("systemctl", args)
    }

    /// `systemctl show -p PROPERTY --value UNIT`.
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.ok("systemctl", &["show", "-p", property, "--value", unit])
            .trim()
            .to_string()
    }

    /// The unit's main pid inside the machine; panics when it has none.
    pub fn main_pid(&self, unit: &str) -> u32 {
        let pid: u32 = self.show(unit, "MainPID").parse().unwrap();
        assert_ne!(pid, 0, "{unit} has no main process");
        pid
    }

    /// A field of /proc/PID/status of a process inside the machine (PID as the machine sees it).
    pub fn proc_status(&self, pid: u32, field: &str) -> String {
        let status = fs::read_to_string(self.path(&format!("/proc/{pid}/status"))).unwrap();
        let prefix = format!("{field}:");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
            .trim()
            .to_string()
    }

    /// The host's path to `path` inside the machine. Only relative symlinks resolve correctly
    /// through it (systemd makes the LogsDirectory= link relative).
    pub fn path(&self, path: &str) -> PathBuf {
        assert!(path.starts_with('/'), "{path} is not absolute");
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// The content of a file inside the machine; empty if it does not exist.
    pub fn read(&self, path: &str) -> String {
        String::from_utf8_lossy(&fs::read(self.path(path)).unwrap_or_default()).into_owned()
    }

    /// Writes a file inside the machine (its /etc and /usr are overlays, /run a tmpfs).
    pub fn write(&self, path: &str, content: &str) {
        let host = self.path(path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, content).unwrap_or_else(|e| panic!("writing {path} in the machine: {e}"));
    }

    /// A TCP connection to `addr` on the machine's own loopback.
    pub fn connect(&self, addr: &str) -> TcpStream {
        let addr = addr.to_string();
        self.in_network(move || TcpStream::connect(&addr))
            .unwrap_or_else(|e| panic!("connecting to the machine's loopback: {e}"))
    }

    /// A UDP socket bound to 127.0.0.1 on the machine's loopback, on a free port.
    pub fn bind_udp(&self) -> UdpSocket {
        self.bind_udp_at("127.0.0.1:0")
    }

    /// A UDP socket bound to `addr` in the machine's network namespace.
    pub fn bind_udp_at(&self, addr: &str) -> UdpSocket {
        let addr = addr.to_string();
        self.in_network(move || UdpSocket::bind(&addr))
            .unwrap_or_else(|e| panic!("binding UDP in the machine: {e}"))
    }

    /// True if the machine's loopback has the IPv6 address ::1 (IPv6 may be disabled in the
    /// kernel); read from the network namespace of its PID 1.
    pub fn has_ipv6_loopback(&self) -> bool {
        // The machine's /proc/1 is its systemd, so this shows the machine's namespace.
        fs::read_to_string(self.path("/proc/1/net/if_inet6"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("00000000000000000000000000000001 ") && l.ends_with(" lo"))
    }

    /// Runs `make` in a thread that joined the machine's network namespace. setns(2) moves only
    /// the calling thread, and a socket stays in the namespace it was created in wherever its
    /// descriptor goes, so the test's other threads stay on the host's network.
    fn in_network<T: Send + 'static>(&self, make: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = File::open(format!("/proc/{}/ns/net", self.pid)).unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns on a descriptor we own; it affects only this short-lived thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            make()
        })
        .join()
        .unwrap()
    }

    /// The machine's journal for `unit` (all units when `None`), oldest first.
    pub fn journal(&self, unit: Option<&str>) -> Vec<JournalEntry> {
        let mut args = vec!["--no-pager", "-o", "json"];
        if let Some(unit) = unit {
            args.extend(["-u", unit]);
        }
        self.ok("journalctl", &args)
            .lines()
            .map(JournalEntry::parse)
            .collect()
    }

    /// Waits until the journal holds an entry matching `matches`; returns it. journald reads
    /// the services' output asynchronously, so what a service just printed may not be there yet.
    pub fn wait_for_journal(
        &self,
        unit: Option<&str>,
        what: &str,
        matches: impl Fn(&JournalEntry) -> bool,
    ) -> JournalEntry {
        wait_until(&format!("journal entry: {what}"), MACHINE_DEADLINE, || {
            self.journal(unit).into_iter().find(|e| matches(e))
        })
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.pid == 0 {
            // Booting failed: --kill-child takes the namespace down with unshare.
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
            remove_cgroups(&self.state.path().file_name().unwrap().to_string_lossy());
            return;
        }
        // A process nsenter put into the pid namespace would hold up systemd-shutdown (it waits
        // for every process it signalled); none is left running, and there is a deadline anyway.
        let _ = self
            .command("systemctl")
            .args(["--no-block", "poweroff"])
            .output();
        let end = Instant::now() + POWEROFF_DEADLINE;
        while Instant::now() < end && matches!(self.unshare.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.unshare.try_wait(), Ok(None)) {
            eprintln!("systemd did not power off within {POWEROFF_DEADLINE:?}; killing it");
            // SIGKILL to a pid namespace's PID 1 makes the kernel kill every process in it.
            // SAFETY: kill(2) on the pid we started; it is still alive, as unshare is.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            let _ = self.unshare.wait();
        }
        remove_cgroups(&self.state.path().file_name().unwrap().to_string_lossy());
    }
}

/// Removes the cgroup the boot script created in each hierarchy, with everything systemd made
/// below it. The kernel frees a cgroup a moment after its last process is reaped: retry briefly.
fn remove_cgroups(name: &str) {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
    if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
        roots.extend(hierarchies.flatten().map(|h| h.path().join(name)));
    }
    let end = Instant::now() + POWEROFF_DEADLINE;
    for root in roots.iter().filter(|r| r.is_dir()) {
        while remove_cgroup_tree(root).is_err() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if root.exists() {
            eprintln!("could not remove cgroup {}", root.display());
        }
    }
}

/// rmdir of a cgroup tree, deepest first (cgroupfs has no other way to remove one).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// stdout and stderr of a command, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One entry of `journalctl -o json`.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// syslog priority: 3 error, 4 warning, 6 info.
    pub priority: u8,
    /// SYSLOG_IDENTIFIER: `logsinkd` for the daemon, `systemd` for the manager.
    pub identifier: String,
    pub message: String,
}

impl JournalEntry {
    fn parse(line: &str) -> JournalEntry {
        let json: serde_json::Value = serde_json::from_str(line).expect("journalctl -o json line");
        let text = |key: &str| match &json[key] {
            serde_json::Value::String(s) => s.clone(),
            // journald gives messages that are not valid UTF-8 as arrays of bytes.
            serde_json::Value::Array(bytes) => {
                let bytes: Vec<u8> = bytes
                    .iter()
                    .filter_map(|b| b.as_u64())
                    .map(|b| b as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => String::new(),
        };
        JournalEntry {
            priority: text("PRIORITY").parse().unwrap_or(255),
            identifier: text("SYSLOG_IDENTIFIER"),
            message: text("MESSAGE"),
        }
    }

    /// An entry the daemon itself wrote.
    pub fn is_daemon(&self) -> bool {
        self.identifier == "logsinkd"
    }
}
