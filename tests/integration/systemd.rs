//! The packaging of issue 3, proven against a real systemd (see systemd/machine.rs): each test
//! boots its own systemd in private namespaces, installs the files the .deb ships, at the paths
//! it ships them to (read from `[package.metadata.deb]` in Cargo.toml), and drives the service
//! with systemctl, logrotate, journalctl and TCP clients on the machine's loopback. The tests
//! need root and systemd; elsewhere they say why they are skipped and pass.

mod machine;
mod package;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use machine::{Install, JournalEntry, MACHINE_DEADLINE, Machine, describe};

use crate::util::{split_record, wait_until};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Where the shipped config sends records.
const LOG: &str = "/var/log/logsinkd/logsinkd.log";
/// The shipped config's and socket's listen address.
const ADDR: &str = "127.0.0.1:5140";
/// The drop-in that makes the service socket-activated and network-less, where the README
/// tells administrators to put it.
const ACTIVATION_DROP_IN: &str = "/etc/systemd/system/logsinkd.service.d/socket-activation.conf";
/// Exposure targets of issue 3 (`systemd-analyze security`, lower is safer).
const MAX_EXPOSURE: f64 = 1.5;
const MAX_EXPOSURE_ACTIVATED: f64 = 0.5;

/// Boots a machine with the package's files installed, or says why it cannot and returns None.
fn boot_with_package(test: &str) -> Option<Machine> {
    if let Some(why) = machine::unavailable() {
        eprintln!("skipping {test}: {why}");
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
            assert!(source.exists(), "package asset {} does not exist (not built?)", source.display());
            let mut dest = format!("/{}", dest.as_str().unwrap());
            if dest.ends_with('/') {
                dest.push_str(&source.file_name().unwrap().to_string_lossy());
            }
            let mode = u32::from_str_radix(mode.as_str().unwrap(), 8).unwrap();
            Install { source, dest: dest.leak(), mode }
        })
        .collect()
}

/// The shipped unit's ExecStart= command line.
fn shipped_exec_start() -> String {
    let unit = std::fs::read_to_string(packaging("systemd/logsinkd.service")).unwrap();
    unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart= in logsinkd.service").to_string()
}

fn packaging(rel: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("packaging").join(rel)
}

/// Runs the shipped command line with `extra` options appended, through a runtime drop-in.
fn start_with_options(machine: &Machine, extra: &str) -> std::process::Output {
    machine.write(
        "/run/systemd/system/logsinkd.service.d/test.conf",
        &format!("[Service]\nExecStart=\nExecStart={} {extra}\n", shipped_exec_start()),
    );
    machine.ok("systemctl", &["daemon-reload"]);
    machine.systemctl(&["start", "logsinkd.service"])
}

fn start(machine: &Machine) {
    let out = machine.systemctl(&["start", "logsinkd.service"]);
    assert!(out.status.success(), "systemctl start logsinkd failed:\n{}\njournal: {:#?}", describe(&out), machine.journal(Some("logsinkd")));
}

/// Waits until the output file inside the machine holds at least `n` records; returns them.
fn wait_for_records(machine: &Machine, path: &str, n: usize) -> Vec<String> {
    wait_until(&format!("{n} records in {path}"), MACHINE_DEADLINE, || {
        let lines: Vec<String> = machine.read(path).lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
}

/// The counters of a `STATUS=` text: open, total connections, lines, bytes, errors.
fn parse_status(text: &str) -> Option<[u64; 5]> {
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let words_ok = ["open", "total connections", "lines", "bytes", "errors"].iter().all(|w| text.contains(w));
    (words_ok && numbers.len() == 5).then(|| numbers.try_into().unwrap())
}

/// `systemctl show` time spans such as `10s`, `1min 30s`, `500ms`.
fn parse_timespan(text: &str) -> Duration {
    text.split_whitespace()
        .map(|part| {
            let digits = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
            let (n, unit) = part.split_at(digits);
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("time span {text:?}"));
            match unit {
                "min" => Duration::from_secs(n * 60),
                "s" | "" => Duration::from_secs(n),
                "ms" => Duration::from_millis(n),
                _ => panic!("unit {unit:?} in time span {text:?}"),
            }
        })
        .sum()
}

/// The exposure `systemd-analyze security` reports in its last line, e.g. `... logsinkd.service: 1.1 OK`.
fn parse_exposure(output: &str) -> f64 {
    let last = output.lines().rfind(|l| l.contains("Overall exposure level")).expect("an exposure line");
    let after = last.rsplit_once(": ").unwrap().1;
    after.split_whitespace().next().unwrap().parse().unwrap_or_else(|_| panic!("exposure in {last:?}"))
}

/// `systemctl start logsinkd` returns only once the daemon is ready: a client that connects
/// right after it returns is served, and `systemctl status` shows the daemon's STATUS= counters.
#[test]
fn start_returns_when_ready_and_status_shows_counters() {
    let Some(machine) = boot_with_package("start_returns_when_ready_and_status_shows_counters") else { return };
    start(&machine);
    // No retry: a refused connection here would mean start returned before the daemon listened.
    let mut client = machine.connect(ADDR);
    client.write_all(b"first client\n").unwrap();
    drop(client);
    let records = wait_for_records(&machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "first client");

    let counters = wait_until("STATUS= to count the client's line", MACHINE_DEADLINE, || {
        let counters = parse_status(&machine.show("logsinkd.service", "StatusText"))?;
        (counters[1] >= 1 && counters[2] >= 1).then_some(counters)
    });
    let status = String::from_utf8_lossy(&machine.systemctl(&["status", "--no-pager", "logsinkd.service"]).stdout).into_owned();
    let shown = status.lines().find_map(|l| l.trim().strip_prefix("Status: ")).expect("a Status: line in systemctl status");
    assert_eq!(parse_status(shown.trim_matches('"')).map(|c| c[2] >= counters[2]), Some(true), "{status}");
    assert!(status.contains("Active: active (running)"), "{status}");
}

/// Lines from several concurrent clients land in /var/log/logsinkd, each with its own client's
/// address as the peer and in the order that client sent them.
#[test]
fn lines_of_several_clients_land_with_their_peers() {
    let Some(machine) = boot_with_package("lines_of_several_clients_land_with_their_peers") else { return };
    start(&machine);
    const CLIENTS: usize = 5;
    const LINES: usize = 20;
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| machine.connect(ADDR)).collect();
    let peers: Vec<String> = clients.iter().map(|c| c.local_addr().unwrap().to_string()).collect();
    for j in 0..LINES {
        for (i, client) in clients.iter_mut().enumerate() {
            client.write_all(format!("client {i} line {j}\n").as_bytes()).unwrap();
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

/// `logrotate -f` with the shipped config, twice, while a client streams numbered lines: the
/// rotated files and the new one hold every number exactly once, in order; the service was
/// reloaded (never restarted) and the new file belongs to the service's user.
#[test]
fn logrotate_while_streaming_loses_and_repeats_nothing() {
    let Some(machine) = boot_with_package("logrotate_while_streaming_loses_and_repeats_nothing") else { return };
    start(&machine);
    let pid_before = machine.main_pid("logsinkd.service");

    let stop = Arc::new(AtomicBool::new(false));
    let mut client = machine.connect(ADDR);
    let streamer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: String = (sent..sent + 50).map(|n| format!("seq {n:08}\n")).collect();
                client.write_all(batch.as_bytes()).unwrap();
                sent += 50;
            }
            sent
        })
    };
    let rotate = || {
        // notifempty: only rotate a file that has records, so each rotation splits the stream.
        wait_for_records(&machine, LOG, 500);
        machine.ok("logrotate", &["-f", "/etc/logrotate.d/logsinkd"]);
    };
    rotate();
    rotate();
    wait_for_records(&machine, LOG, 500);
    stop.store(true, Ordering::Relaxed);
    let sent = streamer.join().unwrap();

    let files = [format!("{LOG}.2.gz"), format!("{LOG}.1"), LOG.to_string()];
    let all = wait_until("every streamed line on disk", MACHINE_DEADLINE, || {
        let mut args = vec!["-f"];
        args.extend(files.iter().map(String::as_str));
        let text = machine.ok("zcat", &args);
        (text.lines().count() as u64 >= sent).then_some(text)
    });
    let numbers: Vec<u64> = all
        .lines()
        .map(|r| split_record(r).2.strip_prefix("seq ").unwrap().parse().unwrap())
        .collect();
    let expected: Vec<u64> = (0..sent).collect();
    assert!(numbers == expected, "{} records for {sent} lines sent; first difference at index {:?}", numbers.len(),
        numbers.iter().zip(&expected).position(|(a, b)| a != b));
    for file in &files {
        assert!(!machine.ok("zcat", &["-f", file]).is_empty(), "{file} is empty: a rotation did not split the stream");
    }

    assert_eq!(machine.main_pid("logsinkd.service"), pid_before, "the service was restarted");
    assert_eq!(machine.show("logsinkd.service", "NRestarts"), "0");
    let reopened = machine.journal(Some("logsinkd")).iter().filter(|e| e.is_daemon() && e.message == format!("reopened {LOG}")).count();
    assert_eq!(reopened, 2, "one reopen per rotation");
    let uid = machine.proc_status(pid_before, "Uid");
    let owner = std::fs::metadata(machine.path(LOG)).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    assert_eq!(uid.split_whitespace().next().unwrap(), owner.to_string(), "owner of the new {LOG}");
}

/// `systemctl reload logsinkd` reopens the output, and the journal has the daemon's own lines
/// with their priorities: `listening on` and `reopened` at info (6), a failed reopen at err (3),
/// and no priority prefix left in any message.
#[test]
fn reload_reopens_and_journal_shows_priorities() {
    let Some(machine) = boot_with_package("reload_reopens_and_journal_shows_priorities") else { return };
    start(&machine);
    machine.wait_for_journal(Some("logsinkd"), "listening at info", |e| {
        e.is_daemon() && e.message == format!("listening on {ADDR}") && e.priority == 6
    });

    // Moved away and replaced by a directory: the reopen fails, the old file keeps the records.
    machine.ok("sh", &["-c", &format!("mv {LOG} {LOG}.moved && mkdir {LOG}")]);
    machine.ok("systemctl", &["reload", "logsinkd.service"]);
    let failed = machine.wait_for_journal(Some("logsinkd"), "failed reopen at err", |e| {
        e.is_daemon() && e.message.starts_with("reopening failed") && e.priority == 3
    });
    assert!(failed.message.contains("still writing to the old output"), "{failed:?}");
    machine.connect(ADDR).write_all(b"after failed reopen\n").unwrap();
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

    let daemon: Vec<JournalEntry> = machine.journal(Some("logsinkd")).into_iter().filter(JournalEntry::is_daemon).collect();
    assert!(daemon.iter().all(|e| !e.message.starts_with('<')), "a priority prefix reached the journal: {daemon:#?}");
}

/// `systemctl stop logsinkd` with a client still connected: its final partial line is in the
/// file, the unit ends `inactive` with result `success`, well within TimeoutStopSec.
#[test]
fn stop_records_partial_line_and_ends_inactive() {
    let Some(machine) = boot_with_package("stop_records_partial_line_and_ends_inactive") else { return };
    start(&machine);
    let mut client = machine.connect(ADDR);
    // One write: once "complete" is on disk the daemon has read "partial tail" too.
    client.write_all(b"complete\npartial tail").unwrap();
    wait_for_records(&machine, LOG, 1);

    let timeout = parse_timespan(&machine.show("logsinkd.service", "TimeoutStopUSec"));
    let started = Instant::now();
    machine.ok("systemctl", &["stop", "logsinkd.service"]);
    let took = started.elapsed();
    assert!(took < timeout, "stopping took {took:?}, TimeoutStopSec is {timeout:?}");

    let records = machine.read(LOG);
    let lines: Vec<&str> = records.lines().map(|r| split_record(r).2).collect();
    assert_eq!(lines, ["complete", "partial tail"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");
    assert_eq!(machine.show("logsinkd.service", "Result"), "success");
    assert_eq!(machine.show("logsinkd.service", "ExecMainStatus"), "0");
    drop(client);
}

/// Socket activation as the README documents it (the drop-in installed, only logsinkd.socket
/// started): the first client's data is recorded, the service is then running, was triggered by
/// the socket, and lives in a network namespace of its own.
#[test]
fn socket_activation_records_first_client() {
    let Some(machine) = boot_with_package("socket_activation_records_first_client") else { return };
    machine.ok("install", &["-D", "-m", "0644", "/usr/share/logsinkd/socket-activation.conf", ACTIVATION_DROP_IN]);
    machine.ok("systemctl", &["daemon-reload"]);
    machine.ok("systemctl", &["start", "logsinkd.socket"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");

    machine.connect(ADDR).write_all(b"wakes the service\n").unwrap();
    let records = wait_for_records(&machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "wakes the service");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");
    assert_eq!(machine.show("logsinkd.service", "TriggeredBy"), "logsinkd.socket");

    let pid = machine.main_pid("logsinkd.service");
    let netns = |pid: u32| std::fs::read_link(machine.path(&format!("/proc/{pid}/ns/net"))).unwrap();
    assert_ne!(netns(pid), netns(1), "PrivateNetwork=yes of the drop-in is not in effect");
}

/// The service runs as an unprivileged dynamic user without capabilities, and cannot write
/// outside its directories: an output under /etc fails at start with a clear error in the journal.
#[test]
fn runs_unprivileged_and_cannot_write_outside_its_directory() {
    let Some(machine) = boot_with_package("runs_unprivileged_and_cannot_write_outside_its_directory") else { return };
    start(&machine);
    let pid = machine.main_pid("logsinkd.service");
    let uids: Vec<u32> = machine.proc_status(pid, "Uid").split_whitespace().map(|u| u.parse().unwrap()).collect();
    assert!(uids.iter().all(|&u| u == uids[0] && u != 0), "uids {uids:?}");
    let logs_owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(machine.path("/var/log/logsinkd")).unwrap());
    assert_eq!(logs_owner, uids[0], "/var/log/logsinkd belongs to the service's user");
    assert_eq!(machine.proc_status(pid, "CapEff"), "0000000000000000");
    assert_eq!(machine.proc_status(pid, "NoNewPrivs"), "1");
    machine.ok("systemctl", &["stop", "logsinkd.service"]);

    let out = start_with_options(&machine, "--output /etc/logsinkd/stolen.log");
    assert!(!out.status.success(), "logsinkd started with its output under /etc");
    let error = machine.wait_for_journal(Some("logsinkd"), "the error about /etc", |e| {
        e.is_daemon() && e.message.contains("/etc/logsinkd/stolen.log")
    });
    assert_eq!(error.priority, 3, "{error:?}");
    assert!(error.message.contains("Read-only file system"), "{error:?}");
    assert!(!machine.path("/etc/logsinkd/stolen.log").exists());
    let _ = machine.systemctl(&["stop", "logsinkd.service"]);
}

/// The sandbox leaves the outputs that need the network or /dev/log working: `syslog` reaches
/// the journal through /dev/log, `syslog+udp://` reaches a UDP receiver.
#[test]
fn syslog_outputs_work_inside_the_sandbox() {
    let Some(machine) = boot_with_package("syslog_outputs_work_inside_the_sandbox") else { return };
    let out = start_with_options(&machine, "--output syslog");
    assert!(out.status.success(), "{}", describe(&out));
    machine.connect(ADDR).write_all(b"through dev-log\n").unwrap();
    machine.wait_for_journal(None, "the line relayed through /dev/log", |e| {
        e.identifier == "logsinkd" && e.message.ends_with("through dev-log")
    });
    machine.ok("systemctl", &["stop", "logsinkd.service"]);

    let receiver = machine.bind_udp();
    let port = receiver.local_addr().unwrap().port();
    let out = start_with_options(&machine, &format!("--output syslog+udp://127.0.0.1:{port}"));
    assert!(out.status.success(), "{}", describe(&out));
    machine.connect(ADDR).write_all(b"over udp\n").unwrap();
    receiver.set_read_timeout(Some(MACHINE_DEADLINE)).unwrap();
    let mut datagram = [0u8; 2048];
    let n = receiver.recv(&mut datagram).expect("a syslog datagram");
    let text = String::from_utf8_lossy(&datagram[..n]);
    assert!(text.contains("logsinkd") && text.ends_with("over udp"), "{text:?}");
}

/// `systemd-analyze verify` prints nothing for the installed units, with and without the
/// socket-activation drop-in (it checks the binary and the man page exist), and the running
/// manager rates the drop-in's sandbox within target.
#[test]
fn installed_units_verify_clean() {
    let Some(machine) = boot_with_package("installed_units_verify_clean") else { return };
    let verify = |what: &str| {
        let out = machine.run("systemd-analyze", &["verify", "logsinkd.service", "logsinkd.socket"]);
        assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "verify {what}:\n{}", describe(&out));
    };
    verify("the units as shipped");
    machine.ok("install", &["-D", "-m", "0644", "/usr/share/logsinkd/socket-activation.conf", ACTIVATION_DROP_IN]);
    machine.ok("systemctl", &["daemon-reload"]);
    verify("with the socket-activation drop-in");
    let exposure = parse_exposure(&machine.ok("systemd-analyze", &["security", "--no-pager", "logsinkd.service"]));
    assert!(exposure <= MAX_EXPOSURE_ACTIVATED, "installed socket-activated service: exposure {exposure}");
}

/// `systemd-analyze security --offline=true` rates the shipped service at most 1.5, and with the
/// socket-activation drop-in at most 0.5.
#[test]
fn exposure_scores_meet_targets() {
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        eprintln!("skipping exposure_scores_meet_targets: no systemd-analyze");
        return;
    }
    let security = |unit: &Path| {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        parse_exposure(&String::from_utf8_lossy(&out.stdout))
    };
    let standalone = security(&packaging("systemd/logsinkd.service"));
    assert!(standalone <= MAX_EXPOSURE, "logsinkd.service: exposure {standalone}");

    // As installed: the unit with the drop-in in logsinkd.service.d/ next to it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logsinkd.service.d")).unwrap();
    std::fs::copy(packaging("systemd/logsinkd.service"), dir.path().join("logsinkd.service")).unwrap();
    std::fs::copy(packaging("systemd/logsinkd.socket"), dir.path().join("logsinkd.socket")).unwrap();
    std::fs::copy(packaging("systemd/socket-activation.conf"), dir.path().join("logsinkd.service.d/socket-activation.conf")).unwrap();
    let activated = security(&dir.path().join("logsinkd.service"));
    assert!(activated <= MAX_EXPOSURE_ACTIVATED, "socket-activated logsinkd.service: exposure {activated}");
    eprintln!("exposure: logsinkd.service {standalone}, socket-activated {activated}");
}

/// The parsers of systemctl and systemd-analyze output used above.
#[test]
fn systemd_output_parsers() {
    assert_eq!(parse_timespan("10s"), Duration::from_secs(10));
    assert_eq!(parse_timespan("1min 30s"), Duration::from_secs(90));
    assert_eq!(parse_status("1 open, 2 total connections; 3 lines, 4 bytes; 0 errors"), Some([1, 2, 3, 4, 0]));
    assert_eq!(parse_exposure("x\n→ Overall exposure level for logsinkd.service: 1.1 OK 🙂\n"), 1.1);
}
