//! The journal output under the real systemd and journald: the shipped, sandboxed service with
//! `output = "journal"` sends what `logger` and plain TCP clients send into the journal, where
//! `journalctl -t APP` and `journalctl LOGSINKD_PEER=...` find it with its fields.

use std::io::Write;

use serde_json::{Map, Value};

use super::machine::{MACHINE_DEADLINE, Machine, describe};
use super::sandbox::install_activation_drop_in;
use super::{ADDR, boot_with_package, start};
use crate::util::{Layout, assert_numbered, numbered_lines, wait_until};

/// The shipped config's path, rewritten here to send to the journal.
const CONFIG: &str = "/etc/logsinkd/logsinkd.toml";

type Entry = Map<String, Value>;

/// `journalctl -o json --all ARGS` (--all: fields over 4 KiB are shown, not `null`).
fn journal(machine: &Machine, args: &[&str]) -> Vec<Entry> {
    let mut all = vec!["--no-pager", "-o", "json", "--all"];
    all.extend(args);
    machine
        .ok("journalctl", &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `journalctl ARGS` finds at least `n` entries; returns them.
fn wait_for_entries(machine: &Machine, args: &[&str], n: usize) -> Vec<Entry> {
    wait_until(
        &format!("{n} entries for journalctl {}", args.join(" ")),
        MACHINE_DEADLINE,
        || {
            let entries = journal(machine, args);
            (entries.len() >= n).then_some(entries)
        },
    )
}

/// A field's bytes: journalctl writes text as a string, anything else as an array of bytes.
fn bytes(entry: &Entry, name: &str) -> Vec<u8> {
    match entry.get(name) {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(Value::Array(a)) => a.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        other => panic!("field {name}: {other:?} in {entry:#?}"),
    }
}

fn text(entry: &Entry, name: &str) -> String {
    String::from_utf8(bytes(entry, name)).unwrap()
}

/// Boots the package with the shipped config sending to the journal.
fn boot_with_journal_config(test: &str) -> Option<Machine> {
    let machine = boot_with_package(test)?;
    machine.write(
        CONFIG,
        &format!(
            "listen = [\"{ADDR}\"]\noutput = \"journal\"\nparse = \"syslog\"\n\
             framing = \"auto\"\nmax_line = \"16M\"\n"
        ),
    );
    Some(machine)
}

/// Boots the package with the shipped config sending to the journal, and starts it.
fn boot_with_journal_output(test: &str) -> Option<Machine> {
    let machine = boot_with_journal_config(test)?;
    start(&machine);
    Some(machine)
}

/// `logger --tcp --octet-count` (RFC 5424) and a plain TCP line reach the journal through the
/// sandboxed service: `journalctl -t myapp` finds logger's message with its priority,
/// facility, tag, host and time; `journalctl LOGSINKD_PEER=` finds the plain line, its BEL
/// kept byte for byte, as info from identifier logsinkd; both name the listener; a 16 MiB line
/// (over any datagram, so by memfd) arrives whole.
#[test]
fn journal_output_reaches_journald() {
    let Some(machine) = boot_with_journal_output("journal_output_reaches_journald") else {
        return;
    };
    let port = ADDR.rsplit_once(':').unwrap().1;
    let out = machine.run(
        "logger",
        &[
            "--tcp",
            "--octet-count",
            "-n",
            "127.0.0.1",
            "-P",
            port,
            "-t",
            "myapp",
            "-p",
            "local4.warning",
            "hello from logger",
        ],
    );
    assert!(out.status.success(), "logger: {}", describe(&out));
    let entries = wait_for_entries(&machine, &["-t", "myapp"], 1);
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    assert_eq!(text(e, "MESSAGE"), "hello from logger");
    assert_eq!(text(e, "PRIORITY"), "4");
    assert_eq!(text(e, "SYSLOG_FACILITY"), "20");
    assert_eq!(text(e, "SYSLOG_IDENTIFIER"), "myapp");
    assert!(!text(e, "SYSLOG_HOSTNAME").is_empty(), "{e:#?}");
    assert!(
        text(e, "SYSLOG_TIMESTAMP").contains('T'),
        "RFC 5424 time: {e:#?}"
    );
    assert!(text(e, "LOGSINKD_PEER").starts_with("127.0.0.1:"), "{e:#?}");
    assert_eq!(text(e, "LOGSINKD_LISTENER"), ADDR);
    assert_eq!(text(e, "_SYSTEMD_UNIT"), "logsinkd.service");

    let mut client = machine.connect(ADDR);
    let peer = client.local_addr().unwrap().to_string();
    client.write_all(b"plain line \x07 with a bell\n").unwrap();
    let mut big = vec![b'x'; 16 << 20];
    big[0] = b'B';
    client.write_all(&big).unwrap();
    client.write_all(b"\nafter the big one\n").unwrap();
    drop(client);
    let filter = format!("LOGSINKD_PEER={peer}");
    let entries = wait_for_entries(&machine, &[&filter], 3);
    assert_eq!(entries.len(), 3, "{:#?}", entries.len());
    let plain = &entries[0];
    assert_eq!(bytes(plain, "MESSAGE"), b"plain line \x07 with a bell");
    assert_eq!(text(plain, "PRIORITY"), "6");
    assert_eq!(text(plain, "SYSLOG_FACILITY"), "1");
    assert_eq!(text(plain, "SYSLOG_IDENTIFIER"), "logsinkd");
    assert_eq!(text(plain, "LOGSINKD_LISTENER"), ADDR);
    assert!(plain.get("SYSLOG_HOSTNAME").is_none(), "{plain:#?}");
    assert!(
        bytes(&entries[1], "MESSAGE") == big,
        "the 16 MiB line whole"
    );
    assert_eq!(text(&entries[2], "MESSAGE"), "after the big one");

    // The daemon's own diagnostics are the service's entries without a peer.
    let complaints: Vec<Entry> = journal(&machine, &["-u", "logsinkd", "-p", "warning"])
        .into_iter()
        .filter(|e| !e.contains_key("LOGSINKD_PEER"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// 50,000 lines from one client in a burst, more than journald's default rate limit lets a
/// service log (10,000 per 30 s, scaled up with free space: without the shipped unit's
/// LogRateLimitBurst= exactly 35,000 arrived here): every one is in the journal, in order.
#[test]
fn journal_output_loses_nothing_to_rate_limits() {
    let Some(machine) = boot_with_journal_output("journal_output_loses_nothing_to_rate_limits")
    else {
        return;
    };
    const COUNT: u64 = 50_000;
    let mut client = machine.connect(ADDR);
    let peer = client.local_addr().unwrap().to_string();
    client
        .write_all(numbered_lines(0..COUNT).as_bytes())
        .unwrap();
    drop(client);
    let filter = format!("LOGSINKD_PEER={peer}");
    let lines = wait_until(
        &format!("{COUNT} entries from {peer}"),
        MACHINE_DEADLINE * 2,
        || {
            let out = machine.ok("journalctl", &["--no-pager", "-o", "cat", &filter]);
            let lines: Vec<String> = out.lines().map(str::to_string).collect();
            let journald = machine.ok(
                "journalctl",
                &["--no-pager", "-o", "cat", "-u", "systemd-journald"],
            );
            assert!(
                !journald.contains("Suppressed"),
                "journald dropped entries: {journald}"
            );
            (lines.len() as u64 >= COUNT).then_some(lines)
        },
    );
    assert_numbered(&lines, 0..COUNT, Layout::Raw);
}

/// Socket-activated with the shipped drop-in (no network of its own, `AF_UNIX` only), the
/// service still reaches the journal: the line whose connection woke it is an entry, named
/// with the passed socket as its listener.
#[test]
fn journal_output_from_the_socket_activated_service() {
    let Some(machine) =
        boot_with_journal_config("journal_output_from_the_socket_activated_service")
    else {
        return;
    };
    install_activation_drop_in(&machine);
    machine.ok("systemctl", &["start", "logsinkd.socket"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");
    let mut client = machine.connect(ADDR);
    let peer = client.local_addr().unwrap().to_string();
    client.write_all(b"woke the service\n").unwrap();
    drop(client);
    let filter = format!("LOGSINKD_PEER={peer}");
    let entries = wait_for_entries(&machine, &[&filter], 1);
    assert_eq!(text(&entries[0], "MESSAGE"), "woke the service");
    assert_eq!(text(&entries[0], "LOGSINKD_LISTENER"), ADDR);
    assert_eq!(text(&entries[0], "_SYSTEMD_UNIT"), "logsinkd.service");
}
