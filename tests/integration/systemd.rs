//! The packaging (the .deb, its units and config), proven against a real systemd (see systemd/machine.rs): each test
//! boots its own systemd in private namespaces, installs the files the .deb ships, at the paths
//! it ships them to (read from `[package.metadata.deb]` in Cargo.toml), and drives the service
//! with systemctl, logrotate, journalctl and TCP clients on the machine's loopback. The tests
//! need root and systemd; elsewhere they say why they are skipped and pass.

mod journal;
mod machine;
mod package;
mod parse;
mod rotation;
mod sandbox;
mod unix;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use machine::{Install, JournalEntry, MACHINE_DEADLINE, Machine, describe};
use parse::{parse_status, parse_timespan};

use crate::util::{split_record, wait_until};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Where the shipped config sends records.
const LOG: &str = "/var/log/logsinkd/logsinkd.log";
/// The shipped config's and socket's listen address.
const ADDR: &str = "127.0.0.1:5140";
/// The drop-in that makes the service socket-activated and network-less, where the README
/// tells administrators to put it.
const ACTIVATION_DROP_IN: &str = "/etc/systemd/system/logsinkd.service.d/socket-activation.conf";
/// Exposure the shipped service must stay under (`systemd-analyze security`, lower is safer).
const MAX_EXPOSURE: f64 = 1.5;
const MAX_EXPOSURE_ACTIVATED: f64 = 0.5;

/// Boots a machine with the package's files installed, or says why it cannot and returns None.
fn boot_with_package(test: &str) -> Option<Machine> {
    if let Some(why) = machine::unavailable() {
        crate::util::skip(&format!("{test}: {why}"));
        return None;
    }
    Some(Machine::boot(&package_files()))
}

/// The assets of `[package.metadata.deb]`, from the sources they are built from here:
/// `target/release/` stands for the directory of the binary under test.
fn package_files() -> Vec<Install> {
    let manifest: toml::Table = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("Cargo.toml has [package.metadata.deb] assets");
    let build_dir = Path::new(env!("CARGO_BIN_EXE_logsinkd")).parent().unwrap();
    assets
        .iter()
        .map(|asset| {
            let [source, dest, mode] = asset.as_array().unwrap().as_slice() else {
                panic!("asset {asset} is not [source, dest, mode]")
            };
            let source = source.as_str().unwrap();
            let source = match source.strip_prefix("target/release/") {
                Some(built) => build_dir.join(built),
                None => Path::new(MANIFEST_DIR).join(source),
            };
            assert!(
                source.exists(),
                "package asset {} does not exist (not built?)",
                source.display()
            );
            let mut dest = format!("/{}", dest.as_str().unwrap());
            if dest.ends_with('/') {
                dest.push_str(&source.file_name().unwrap().to_string_lossy());
            }
            let mode = u32::from_str_radix(mode.as_str().unwrap(), 8).unwrap();
            Install {
                source,
                dest: dest.leak(),
                mode,
            }
        })
        .collect()
}

/// The shipped unit's ExecStart= command line.
fn shipped_exec_start() -> String {
    let unit = std::fs::read_to_string(packaging("systemd/logsinkd.service")).unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart= in logsinkd.service")
        .to_string()
}

fn packaging(rel: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("packaging").join(rel)
}

/// Runs the shipped command line with `extra` options appended, through a runtime drop-in.
fn start_with_options(machine: &Machine, extra: &str) -> std::process::Output {
    machine.write(
        "/run/systemd/system/logsinkd.service.d/test.conf",
        &format!(
            "[Service]\nExecStart=\nExecStart={} {extra}\n",
            shipped_exec_start()
        ),
    );
    machine.ok("systemctl", &["daemon-reload"]);
    machine.systemctl(&["start", "logsinkd.service"])
}

fn start(machine: &Machine) {
    let out = machine.systemctl(&["start", "logsinkd.service"]);
    assert!(
        out.status.success(),
        "systemctl start logsinkd failed:\n{}\njournal: {:#?}",
        describe(&out),
        machine.journal(Some("logsinkd"))
    );
}

/// Waits until the output file inside the machine holds at least `n` records; returns them.
fn wait_for_records(machine: &Machine, path: &str, n: usize) -> Vec<String> {
    wait_until(&format!("{n} records in {path}"), MACHINE_DEADLINE, || {
        let lines: Vec<String> = machine.read(path).lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
}

/// A client connecting as `systemctl start` returns is served; status shows the STATUS= counters.
#[test]
fn start_returns_when_ready_and_status_shows_counters() {
    let Some(machine) = boot_with_package("start_returns_when_ready_and_status_shows_counters")
    else {
        return;
    };
    start(&machine);
    // No retry: a refused connection here would mean start returned before the daemon listened.
    let mut client = machine.connect(ADDR);
    client.write_all(b"first client\n").unwrap();
    drop(client);
    let records = wait_for_records(&machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "first client");

    let counters = wait_until(
        "STATUS= to count the client's line",
        MACHINE_DEADLINE,
        || {
            let counters = parse_status(&machine.show("logsinkd.service", "StatusText"))?;
            (counters[1] >= 1 && counters[2] >= 1).then_some(counters)
        },
    );
    let status = String::from_utf8_lossy(
        &machine
            .systemctl(&["status", "--no-pager", "logsinkd.service"])
            .stdout,
    )
    .into_owned();
    let shown = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("Status: "))
        .expect("a Status: line in systemctl status");
    assert_eq!(
        parse_status(shown.trim_matches('"')).map(|c| c[2] >= counters[2]),
        Some(true),
        "{status}"
    );
    assert!(status.contains("Active: active (running)"), "{status}");
}

/// Lines of several concurrent clients land in /var/log/logsinkd with their own peers.
#[test]
fn lines_of_several_clients_land_with_their_peers() {
    let Some(machine) = boot_with_package("lines_of_several_clients_land_with_their_peers") else {
        return;
    };
    start(&machine);
    const CLIENTS: usize = 5;
    const LINES: usize = 20;
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| machine.connect(ADDR)).collect();
    let peers: Vec<String> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().to_string())
        .collect();
    for j in 0..LINES {
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .write_all(format!("client {i} line {j}\n").as_bytes())
                .unwrap();
        }
    }
    drop(clients);
    let records = wait_for_records(&machine, LOG, CLIENTS * LINES);
    assert_eq!(records.len(), CLIENTS * LINES);
    let mut next = [0usize; CLIENTS];
    for record in &records {
        let (_, peer, line) = split_record(record);
        let words: Vec<&str> = line.split(' ').collect();
        let (i, j): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
        assert_eq!(peer, peers[i], "peer of {record:?}");
        assert_eq!(j, next[i], "client {i}'s lines out of order at {record:?}");
        next[i] += 1;
    }
}

/// `systemctl reload` reopens; the journal has the daemon's lines at info (6) and err (3).
#[test]
fn reload_reopens_and_journal_shows_priorities() {
    let Some(machine) = boot_with_package("reload_reopens_and_journal_shows_priorities") else {
        return;
    };
    start(&machine);
    machine.wait_for_journal(Some("logsinkd"), "listening at info", |e| {
        e.is_daemon() && e.message == format!("listening on {ADDR}") && e.priority == 6
    });

    // Moved away and replaced by a directory: the reopen fails, the old file keeps the records.
    machine.ok(
        "sh",
        &["-c", &format!("mv {LOG} {LOG}.moved && mkdir {LOG}")],
    );
    machine.ok("systemctl", &["reload", "logsinkd.service"]);
    let failed = machine.wait_for_journal(Some("logsinkd"), "failed reopen at err", |e| {
        e.is_daemon() && e.message.starts_with("reopening failed") && e.priority == 3
    });
    assert!(
        failed.message.contains("still writing to the old output"),
        "{failed:?}"
    );
    machine
        .connect(ADDR)
        .write_all(b"after failed reopen\n")
        .unwrap();
    let moved = wait_for_records(&machine, &format!("{LOG}.moved"), 1);
    assert_eq!(split_record(&moved[0]).2, "after failed reopen");

    machine.ok("rmdir", &[LOG]);
    machine.ok("systemctl", &["reload", "logsinkd.service"]);
    machine.wait_for_journal(Some("logsinkd"), "reopened at info", |e| {
        e.is_daemon() && e.message == format!("reopened {LOG}") && e.priority == 6
    });
    machine.connect(ADDR).write_all(b"after reopen\n").unwrap();
    let records = wait_for_records(&machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "after reopen");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");

    let daemon: Vec<JournalEntry> = machine
        .journal(Some("logsinkd"))
        .into_iter()
        .filter(JournalEntry::is_daemon)
        .collect();
    assert!(
        daemon.iter().all(|e| !e.message.starts_with('<')),
        "a priority prefix reached the journal: {daemon:#?}"
    );
}

/// `systemctl stop` records a client's partial line, ends `inactive` within TimeoutStopSec.
#[test]
fn stop_records_partial_line_and_ends_inactive() {
    let Some(machine) = boot_with_package("stop_records_partial_line_and_ends_inactive") else {
        return;
    };
    start(&machine);
    let mut client = machine.connect(ADDR);
    // One small write arrives on loopback as one segment: once "complete" is on disk, the
    // daemon holds "partial tail" too.
    client.write_all(b"complete\npartial tail").unwrap();
    wait_for_records(&machine, LOG, 1);

    let timeout = parse_timespan(&machine.show("logsinkd.service", "TimeoutStopUSec"));
    let started = Instant::now();
    machine.ok("systemctl", &["stop", "logsinkd.service"]);
    let took = started.elapsed();
    assert!(
        took < timeout,
        "stopping took {took:?}, TimeoutStopSec is {timeout:?}"
    );

    let records = machine.read(LOG);
    let lines: Vec<&str> = records.lines().map(|r| split_record(r).2).collect();
    assert_eq!(lines, ["complete", "partial tail"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");
    assert_eq!(machine.show("logsinkd.service", "Result"), "success");
    assert_eq!(machine.show("logsinkd.service", "ExecMainStatus"), "0");
    drop(client);
}

/// WATCHDOG=1 pings reach the real systemd: with WatchdogSec=2s the time systemd records for
/// the last ping keeps advancing, and after several watchdog periods the same process is still
/// running (a missed ping would have killed it and Restart=on-failure started another).
#[test]
fn watchdog_pings_keep_the_service_alive() {
    let Some(machine) = boot_with_package("watchdog_pings_keep_the_service_alive") else {
        return;
    };
    machine.write(
        "/run/systemd/system/logsinkd.service.d/watchdog.conf",
        "[Service]\nWatchdogSec=2s\n",
    );
    machine.ok("systemctl", &["daemon-reload"]);
    start(&machine);
    let pid = machine.main_pid("logsinkd.service");
    let last_ping = || machine.show("logsinkd.service", "WatchdogTimestampMonotonic");
    let mut pings = vec![last_ping()];
    // The daemon pings every half period. The first value may predate any ping (0); the six
    // after it are pings spanning five half periods, longer than a whole period.
    wait_until("seven watchdog pings", MACHINE_DEADLINE, || {
        let now = last_ping();
        if pings.last() != Some(&now) {
            pings.push(now);
        }
        (pings.len() >= 7).then_some(())
    });
    let first: u64 = pings[1].parse().unwrap();
    let last: u64 = pings[6].parse().unwrap();
    assert!(
        last - first > 2_000_000,
        "pings {pings:?} span less than the 2 s watchdog period"
    );
    assert_eq!(machine.main_pid("logsinkd.service"), pid, "restarted");
    assert_eq!(machine.show("logsinkd.service", "NRestarts"), "0");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");
    assert_eq!(machine.show("logsinkd.service", "WatchdogUSec"), "2s");
}
