//! The config file, `--check-config` and usage errors.

use std::process::Command;

use crate::util::*;

/// Runs logsinkd with `text` as its config file `name` and `args`; returns the exit code,
/// stdout and stderr.
fn with_config(name: &str, text: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = temp_dir();
    let conf = dir.path().join(name);
    std::fs::write(&conf, text).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&conf)
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `--check-config` on a broken config names the file and the key, exit 1.
#[test]
fn check_config_names_the_key() {
    let (code, _, stderr) = with_config(
        "bad.toml",
        "listen = [\"127.0.0.1:5140\"]\nmax_line = \"huge\"\n",
        &["--check-config"],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("bad.toml") && stderr.contains("key `max_line`"),
        "{stderr}"
    );

    let (code, _, stderr) = with_config(
        "bad.toml",
        "lisen = [\"127.0.0.1:5140\"]\n",
        &["--check-config"],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown key `lisen`"), "{stderr}");

    let (code, _, stderr) = with_config("bad.toml", "format = \"json\"\noutput = [1]\n", &[]);
    assert_eq!(code, Some(2), "a bad config at start is a usage error");
    assert!(stderr.contains("key `output`"), "{stderr}");
}

/// `--check-config` prints the effective settings; the command line wins over the file.
#[test]
fn check_config_prints_effective_settings() {
    let (code, stdout, stderr) = with_config(
        "good.toml",
        "format = \"json\"\nmax_line = \"8K\"\nidle_timeout = 30\n",
        &["--check-config", "--format", "raw", "-l", "[::1]:9"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("format = \"raw\""), "{stdout}");
    assert!(stdout.contains("max_line = 8192"), "{stdout}");
    assert!(stdout.contains("listen = [\"[::1]:9\"]"), "{stdout}");
    assert!(stdout.contains("idle_timeout = 30"), "{stdout}");
}

/// The config file's settings are used by a running daemon.
#[test]
fn config_file_drives_the_daemon() {
    let dir = temp_dir();
    let conf = dir.path().join("d.toml");
    std::fs::write(&conf, "format = \"raw\"\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
    let d = DaemonBuilder::new(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .start();
    send(d.addr, b"raw line\n");
    assert_eq!(d.wait_for_lines(1), ["raw line"]);
}

/// Usage errors exit 2 with a message naming the culprit.
#[test]
fn usage_errors() {
    for (args, needle) in [
        (
            &["--format", "xml"][..],
            "key `format`: unknown format `xml`",
        ),
        (
            &["--listen", "localhost"][..],
            "`localhost` is not an address",
        ),
        (&["--max-line", "0"][..], "key `max_line`"),
        (&["--output", "syslog+udp://nohost"][..], "key `output`"),
        (&["--bogus"][..], "--bogus"),
        (
            &["--user", "no-such-user-here"][..],
            "no such user `no-such-user-here`",
        ),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("logsinkd "));
}

/// An `idle_timeout` past the allowed range (a year) is refused at config time, naming the key
/// and the range, by `--check-config` (exit 1) and at start (exit 2). Before, it passed and the
/// daemon panicked at its first connection (a deadline past the clock's range).
#[test]
fn idle_timeout_out_of_range_is_refused() {
    let needle = "key `idle_timeout`: 18446744073709551615 seconds is out of range: from 0 (off) \
                  to 31536000 (a year)";
    let huge = ["--idle-timeout", "18446744073709551615"];
    let check = Command::new(BIN)
        .args(huge)
        .arg("--check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");

    let dir = temp_dir();
    let start = Command::new(BIN)
        .args(huge)
        .args(["--foreground", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert_eq!(start.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");

    let (code, _, stderr) =
        with_config("bad.toml", "idle_timeout = 31536001\n", &["--check-config"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("bad.toml") && stderr.contains("key `idle_timeout`: 31536001 seconds"),
        "{stderr}"
    );

    // The longest allowed timeout works: a connection is served as usual.
    let d = Daemon::start(
        dir.path(),
        &["--idle-timeout", "31536000", "--format", "raw"],
    );
    send(d.addr, b"within range\n");
    assert_eq!(d.wait_for_lines(1), ["within range"]);
}
