//! Files logsinkd writes as root: the output and the pid file are never reached through a
//! symbolic link, must be regular files, and under `--user` belong to that user, so rotation
//! with the real `logrotate` works and the pid file goes away at exit.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::util::*;

/// nobody's uid and nogroup's gid (Debian).
const NOBODY: u32 = 65534;

/// Runs logsinkd with `args` in `dir` and expects it to fail at start: returns its stderr
/// after the exit 1. A daemon that starts anyway is killed and the test fails.
fn start_fails(dir: &Path, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("logsinkd {args:?} did not fail at start");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    stderr
}

/// Starts a classic daemon (no --foreground) in `dir`; returns the start command's stderr.
fn start_daemon(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "start failed: {stderr}");
    stderr
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a pid in {}", path.display()))
}

/// A temp dir that `nobody` can reach (every parent searchable; /tmp is), owned by root.
fn reachable_temp_dir() -> tempfile::TempDir {
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// An output path that is a symbolic link is refused at start, naming it; the file it points
/// to is untouched.
#[test]
fn output_symlink_refused_at_start() {
    let dir = temp_dir();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("out.log")).unwrap();
    let stderr = start_fails(dir.path(), &["--foreground", "--output", "out.log"]);
    assert!(
        stderr.contains("out.log is a symbolic link"),
        "names the path and what it is: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// An output that is not a regular file (a FIFO: opening it would block; a directory) is
/// refused at start, saying what it is.
#[test]
fn output_not_regular_file_refused() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo.log");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let stderr = start_fails(dir.path(), &["--foreground", "--output", "fifo.log"]);
    assert!(
        stderr.contains("fifo.log is a FIFO, not a regular file"),
        "{stderr}"
    );
    std::fs::create_dir(dir.path().join("dir.log")).unwrap();
    let stderr = start_fails(dir.path(), &["--foreground", "--output", "dir.log"]);
    assert!(
        stderr.contains("dir.log is a directory, not a regular file"),
        "{stderr}"
    );
}

/// A symbolic link planted where the output was, between rotations, is not followed: the
/// reopen fails, logged once, records keep going to the old file while the flushes retry
/// quietly, and once the link is gone the daemon reopens by itself (no further SIGHUP),
/// saying so, losing and repeating nothing.
#[test]
fn reopen_never_follows_a_planted_symlink() {
    let dir = temp_dir();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let mut d = Daemon::start(dir.path(), &["--format", "raw"]);
    let mut s = d.connect();
    s.write_all(numbered_lines(0..1).as_bytes()).unwrap();
    d.wait_for_lines(1);
    let rotated = dir.path().join("out.log.1");
    std::fs::rename(&d.out, &rotated).unwrap();
    std::os::unix::fs::symlink(&victim, &d.out).unwrap();
    d.signal(libc::SIGHUP);
    let err = d.log.wait_for("reopening failed");
    assert!(err.contains("out.log is a symbolic link"), "{err}");
    // Two seconds of traffic with the link in place: the flushes retry the reopen (quietly)
    // at least once more, and every line still goes to the old file.
    let mut sent = 1;
    let traffic = std::time::Instant::now();
    while traffic.elapsed() < Duration::from_secs(2) {
        s.write_all(numbered_lines(sent..sent + 1).as_bytes())
            .unwrap();
        sent += 1;
        // Load pacing.
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_until("the lines in the old file", DEADLINE, || {
        let text = std::fs::read_to_string(&rotated).unwrap();
        text.contains(&numbered_lines(sent - 1..sent)).then_some(())
    });
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    // The link goes; the next flush at least a second after the last try reopens.
    std::fs::remove_file(&d.out).unwrap();
    let reopened = wait_until("the retried reopen", DEADLINE, || {
        s.write_all(numbered_lines(sent..sent + 1).as_bytes())
            .unwrap();
        sent += 1;
        // Load pacing: one line per poll, not a wait.
        std::thread::sleep(Duration::from_millis(20));
        d.log
            .all()
            .into_iter()
            .find(|l| l.contains("reopened ") && l.contains("failed attempts"))
    });
    let attempts: u32 = reopened
        .split("after ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reopened}"));
    assert!(
        attempts >= 2,
        "retried while the link was there: {reopened}"
    );
    s.write_all(numbered_lines(sent..sent + 1).as_bytes())
        .unwrap();
    sent += 1;
    wait_until("the last line in the new file", DEADLINE, || {
        let text = std::fs::read_to_string(&d.out).ok()?;
        text.contains(&numbered_lines(sent - 1..sent)).then_some(())
    });
    drop(s);
    assert_eq!(d.stop().code(), Some(0));
    assert_numbered(&file_texts(&[&rotated, &d.out]), 0..sent, Layout::Raw);
    let failures = d
        .log
        .all()
        .iter()
        .filter(|l| l.contains("reopening failed"))
        .count();
    assert_eq!(failures, 1, "logged once per episode: {:#?}", d.log.all());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// A pid file path that is a symbolic link is refused, in the foreground and as a classic
/// daemon; the file it points to is untouched.
#[test]
fn pid_file_symlink_refused() {
    let dir = temp_dir();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("run.pid")).unwrap();
    for mode in [&["--foreground"][..], &[]] {
        let mut args = vec!["--output", "out.log", "--pid-file", "run.pid"];
        args.extend(mode);
        let stderr = start_fails(dir.path(), &args);
        assert!(
            stderr.contains("run.pid is a symbolic link"),
            "{mode:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious\n",
            "{mode:?}"
        );
    }
}

/// A second foreground daemon with the same pid file is refused, naming the running one;
/// the pid file keeps the first daemon's pid, and goes at its exit.
#[test]
fn pid_file_locked_in_foreground() {
    let dir = temp_dir();
    let mut first = Daemon::start(dir.path(), &["--pid-file", "run.pid"]);
    let pid_file = dir.path().join("run.pid");
    assert_eq!(read_pid(&pid_file), first.pid());
    let stderr = start_fails(
        dir.path(),
        &[
            "--foreground",
            "--output",
            "o2.log",
            "--pid-file",
            "run.pid",
        ],
    );
    assert!(
        stderr.contains(&format!(
            "run.pid is locked by a running process (pid {}): is logsinkd already running?",
            first.pid()
        )),
        "{stderr}"
    );
    assert_eq!(read_pid(&pid_file), first.pid());
    assert_eq!(first.stop().code(), Some(0));
    assert!(!pid_file.exists(), "removed at exit");
}

/// Under --user, a pid file in a directory that does not exist yet: logsinkd creates the
/// directory for the user, the file belongs to the user, and it is removed at exit, in the
/// foreground and as a classic daemon. The output file logsinkd creates belongs to the user.
#[test]
fn pid_file_removed_at_exit_under_user() {
    if !root_for("switch users") {
        return;
    }
    let dir = reachable_temp_dir();
    let run = dir.path().join("run");
    let pid_file = run.join("logsinkd.pid");
    let args = ["--user", "nobody", "--pid-file", "run/logsinkd.pid"];

    let mut d = Daemon::start(dir.path(), &args);
    assert_eq!(read_pid(&pid_file), d.pid());
    for path in [&run, &pid_file, &d.out] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{path:?}");
    }
    assert!(d.log.matching("pid file").is_empty());
    assert_eq!(d.stop().code(), Some(0));
    assert!(!pid_file.exists(), "foreground: removed at exit");

    std::fs::remove_dir(&run).unwrap();
    let stderr = start_daemon(dir.path(), &[&args[..], &["--output", "d.log"]].concat());
    assert!(!stderr.contains("pid file"), "{stderr}");
    let pid = read_pid(&pid_file);
    assert_eq!(std::fs::metadata(&pid_file).unwrap().uid(), NOBODY);
    // SAFETY: kill(2) on the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_until("the pid file to go", DEADLINE, || {
        (!pid_file.exists()).then_some(())
    });
}

/// Under --user, a pid file in a directory the user cannot write: a warning at start names
/// the directory and the fix (the starting command shows it in daemon mode too), and at exit
/// the file is emptied, as readers take an empty pid file for stale.
#[test]
fn pid_file_emptied_at_exit_when_its_dir_is_not_the_users() {
    if !root_for("switch users") {
        return;
    }
    let dir = reachable_temp_dir();
    let pid_file = dir.path().join("logsinkd.pid");
    let args = ["--user", "nobody", "--pid-file", "logsinkd.pid"];
    let warning = format!(
        "user nobody cannot write its directory {}, so at exit the pid file is emptied",
        dir.path().display()
    );

    let mut d = Daemon::start(dir.path(), &args);
    d.log.wait_for(&warning);
    assert_eq!(read_pid(&pid_file), d.pid());
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "", "emptied");

    let stderr = start_daemon(dir.path(), &[&args[..], &["--output", "d.log"]].concat());
    assert!(stderr.contains(&warning), "{stderr}");
    let pid = read_pid(&pid_file);
    // SAFETY: kill(2) on the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_until("the pid file to be emptied", DEADLINE, || {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .is_empty()
            .then_some(())
    });
}

/// The shipped logrotate config (path and postrotate adapted) with the real `logrotate`,
/// rotating three times while a client streams, the daemon started as root with --user
/// nobody writing into a directory owned by nobody: every line once, in order; the new file
/// belongs to nobody; no reopen fails.
#[test]
fn logrotate_under_user_loses_and_repeats_nothing() {
    if !root_for("switch users") {
        return;
    }
    if Command::new("logrotate").arg("--version").output().is_err() {
        skip("logrotate is not installed (apt-get install logrotate)");
        return;
    }
    let dir = reachable_temp_dir();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let mut d = Daemon::start(dir.path(), &["--user", "nobody"]);
    assert_eq!(std::fs::metadata(&d.out).unwrap().uid(), NOBODY);

    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/logrotate/logsinkd"),
    )
    .unwrap();
    let (head, rest) = shipped.split_once("    postrotate\n").unwrap();
    let (_, tail) = rest.split_once("    endscript\n").unwrap();
    let config = format!(
        "{head}    postrotate\n        kill -HUP {}\n    endscript\n{tail}",
        d.pid()
    );
    let glob = format!("{}/*.log", dir.path().display());
    assert!(config.contains("/var/log/logsinkd/*.log"), "{config}");
    let config = config.replace("/var/log/logsinkd/*.log", &glob);
    let conf = dir.path().join("logrotate.conf");
    std::fs::write(&conf, config).unwrap();
    let state = dir.path().join("logrotate.state");

    let stop = Arc::new(AtomicBool::new(false));
    let stream = d.connect();
    let streamer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(4096, stream);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    writeln!(w, "{}", numbered_line(n)).unwrap();
                    n += 1;
                }
                w.flush().unwrap();
                // Load pacing, so the files stay small.
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    let lines_in = |path: &Path| {
        std::fs::read(path)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    };
    const ROTATIONS: usize = 3;
    for i in 1..=ROTATIONS {
        // notifempty: only a file with records is rotated.
        wait_until("records in the current file", DEADLINE, || {
            (lines_in(&d.out) >= 200).then_some(())
        });
        let out = Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(&state)
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "logrotate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d.log.wait_for_nth("reopened ", i);
    }
    wait_until("records in the newest file", DEADLINE, || {
        (lines_in(&d.out) >= 200).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let sent = streamer.join().unwrap();
    let files = ["out.log.3.gz", "out.log.2.gz", "out.log.1", "out.log"];
    let texts = wait_until("every streamed line on disk", DEADLINE, || {
        let texts: Vec<String> = files
            .iter()
            .map(|f| {
                let out = Command::new("zcat")
                    .arg("-f")
                    .arg(dir.path().join(f))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "zcat {f}");
                String::from_utf8(out.stdout).unwrap()
            })
            .collect();
        let total: usize = texts.iter().map(|t| t.lines().count()).sum();
        (total as u64 >= sent).then_some(texts)
    });
    assert_eq!(d.stop().code(), Some(0));
    for (file, text) in files.iter().zip(&texts) {
        assert!(
            !text.is_empty(),
            "{file} is empty: a rotation did not split the stream"
        );
    }
    assert_numbered(&texts, 0..sent, Layout::Default);
    assert_eq!(std::fs::metadata(&d.out).unwrap().uid(), NOBODY);
    let log = d.log.all();
    assert!(
        !log.iter()
            .any(|l| l.contains("Permission denied") || l.contains("failed")),
        "{log:#?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.contains("reopened ")).count(),
        ROTATIONS
    );
}

/// The TLS key is read at start, as root, before the switch to --user nobody: a key only
/// root can read serves. A SIGHUP can then not read it: the reload fails saying so (the user
/// who cannot), and new TLS clients keep getting the key and certificate loaded at start.
#[test]
fn tls_key_read_before_the_privilege_drop() {
    if !root_for("switch users") {
        return;
    }
    let dir = reachable_temp_dir();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let files = TlsFiles::new(&keys);
    // The key 0600 root (as TlsFiles writes it), in a directory only root can enter.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir.path())
            .args(files.args())
            .args(["--user", "nobody"]),
    );
    assert_eq!(
        d.proc_status("Uid").split_whitespace().next(),
        Some("65534")
    );
    let config = files.pki.client_config(None);
    let mut first = tls_connect(addr, config.clone());
    tls_send(&mut first, b"served by nobody\n");
    d.wait_for_lines(1);
    d.signal(libc::SIGHUP);
    let line = d.log.wait_for("TLS: reloading failed");
    assert!(line.contains("cannot be read by user 65534"), "{line}");
    let mut second = tls_connect(addr, config);
    assert_eq!(
        second.conn.peer_certificates().unwrap()[0].to_vec(),
        files.server.der.to_vec()
    );
    tls_send(&mut second, b"after the failed reload\n");
    let lines = d.wait_for_lines(2);
    assert!(lines[1].ends_with("after the failed reload"), "{lines:#?}");
}
