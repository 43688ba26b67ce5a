//! The sandbox: what the service can still do (TCP and UDP listening, socket activation of
//! either without a network of its own, syslog outputs), what it cannot (run privileged,
//! write outside /var/log/logsinkd), and the unit checks: `systemd-analyze verify` and the
//! exposure scores.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::machine::{MACHINE_DEADLINE, Machine, describe};
use super::parse::parse_exposure;
use super::{
    ACTIVATION_DROP_IN, ADDR, LOG, MAX_EXPOSURE, MAX_EXPOSURE_ACTIVATED, boot_with_package,
    packaging, start, start_with_options, wait_for_records,
};
use crate::util::split_record;

/// Only logsinkd.socket started: the first client's line is recorded by a network-less service.
#[test]
fn socket_activation_records_first_client() {
    let Some(machine) = boot_with_package("socket_activation_records_first_client") else {
        return;
    };
    install_activation_drop_in(&machine);
    let pid = activate_by_first_client(&machine);
    assert_ne!(
        netns(&machine, pid),
        netns(&machine, 1),
        "PrivateNetwork=yes of the drop-in is not in effect"
    );
}

/// Without the drop-in, logsinkd.socket activates the service as shipped just the same.
#[test]
fn socket_activation_works_without_the_drop_in() {
    let Some(machine) = boot_with_package("socket_activation_works_without_the_drop_in") else {
        return;
    };
    let pid = activate_by_first_client(&machine);
    assert_eq!(netns(&machine, pid), netns(&machine, 1));
}

/// Starts logsinkd.socket alone, checks that a client's line wakes and reaches the service;
/// returns the service's pid.
fn activate_by_first_client(machine: &Machine) -> u32 {
    machine.ok("systemctl", &["start", "logsinkd.socket"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");

    machine
        .connect(ADDR)
        .write_all(b"wakes the service\n")
        .unwrap();
    let records = wait_for_records(machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "wakes the service");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");
    assert_eq!(
        machine.show("logsinkd.service", "TriggeredBy"),
        "logsinkd.socket"
    );
    machine.main_pid("logsinkd.service")
}

/// UDP listening works under the shipped sandbox: a datagram is recorded with its sender.
#[test]
fn udp_listening_works_inside_the_sandbox() {
    let Some(machine) = boot_with_package("udp_listening_works_inside_the_sandbox") else {
        return;
    };
    let out = start_with_options(&machine, &format!("--listen-udp {UDP_ADDR}"));
    assert!(out.status.success(), "{}", describe(&out));
    let sender = machine.bind_udp();
    sender.send_to(b"over udp\n", UDP_ADDR).unwrap();
    let records = wait_for_records(&machine, LOG, 1);
    let (_, peer, line) = split_record(&records[0]);
    assert_eq!(line, "over udp");
    assert_eq!(peer, sender.local_addr().unwrap().to_string());
}

/// A `ListenDatagram=` socket activates the network-less service too: the first datagram wakes
/// it and is recorded.
#[test]
fn socket_activation_by_a_datagram() {
    let Some(machine) = boot_with_package("socket_activation_by_a_datagram") else {
        return;
    };
    install_activation_drop_in(&machine);
    machine.write(
        "/run/systemd/system/logsinkd.socket.d/udp.conf",
        &format!("[Socket]\nListenDatagram={UDP_ADDR}\n"),
    );
    machine.ok("systemctl", &["daemon-reload"]);
    machine.ok("systemctl", &["start", "logsinkd.socket"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");
    let sender = machine.bind_udp();
    sender.send_to(b"wakes it by udp\n", UDP_ADDR).unwrap();
    let records = wait_for_records(&machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "wakes it by udp");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");
    let pid = machine.main_pid("logsinkd.service");
    assert_ne!(netns(&machine, pid), netns(&machine, 1));
    // The TCP socket of logsinkd.socket is served by the same process.
    machine.connect(ADDR).write_all(b"and by tcp\n").unwrap();
    let records = wait_for_records(&machine, LOG, 2);
    assert_eq!(split_record(&records[1]).2, "and by tcp");
}

/// The socket override the shipped logsinkd.socket gives as its example (the `#   ` lines
/// from `#   [Socket]` on, after the one naming `systemctl edit logsinkd.socket`), installed
/// where `systemctl edit` puts it: TCP and UDP clients over 127.0.0.1 and over ::1 are all
/// recorded, each with its own peer.
#[test]
fn socket_override_example_serves_ipv4_and_ipv6() {
    let Some(machine) = boot_with_package("socket_override_example_serves_ipv4_and_ipv6") else {
        return;
    };
    if !machine.has_ipv6_loopback() {
        crate::util::skip(
            "socket_override_example_serves_ipv4_and_ipv6: no IPv6 loopback (::1) in the \
             machine's network namespace",
        );
        return;
    }
    let unit = std::fs::read_to_string(packaging("systemd/logsinkd.socket")).unwrap();
    let example: Vec<&str> = unit
        .lines()
        .skip_while(|l| !l.contains("systemctl edit logsinkd.socket"))
        .skip_while(|l| *l != "#   [Socket]")
        .map_while(|l| l.strip_prefix("#   "))
        .collect();
    assert!(
        !example.is_empty(),
        "no example override in logsinkd.socket"
    );
    let example = example.join("\n") + "\n";
    let (tcp, udp) = (5140, 514);
    for port in [tcp, udp] {
        assert!(
            example.contains(&format!("0.0.0.0:{port}"))
                && example.contains(&format!("[::]:{port}")),
            "the example listens on 0.0.0.0:{port} and [::]:{port}:\n{example}"
        );
    }
    machine.write(
        "/etc/systemd/system/logsinkd.socket.d/override.conf",
        &example,
    );
    install_activation_drop_in(&machine);
    let out = machine.systemctl(&["start", "logsinkd.socket"]);
    assert!(
        out.status.success(),
        "the example override does not start:\n{example}\n{}\njournal: {:#?}",
        describe(&out),
        machine.journal(Some("logsinkd.socket"))
    );
    let mut expected = Vec::new();
    for ip in ["127.0.0.1", "[::1]"] {
        let mut client = machine.connect(&format!("{ip}:{tcp}"));
        let line = format!("tcp over {ip}");
        client.write_all(format!("{line}\n").as_bytes()).unwrap();
        expected.push((client.local_addr().unwrap().to_string(), line));
        let sender = machine.bind_udp_at(&format!("{ip}:0"));
        let line = format!("udp over {ip}");
        sender
            .send_to(line.as_bytes(), format!("{ip}:{udp}"))
            .unwrap();
        expected.push((sender.local_addr().unwrap().to_string(), line));
    }
    let records = wait_for_records(&machine, LOG, expected.len());
    let mut got: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let (_, peer, line) = split_record(r);
            (peer.to_string(), line.to_string())
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

/// The UDP address the tests above use, in the machine's own network namespace.
const UDP_ADDR: &str = "127.0.0.1:5514";

/// capabilities(7): the capability that allows raising a hard resource limit.
const CAP_SYS_RESOURCE: u32 = 24;

/// The soft and hard open-file limits of a process in the machine.
fn nofile_limits(machine: &Machine, pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(machine.path(&format!("/proc/{pid}/limits"))).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// The network namespace of a process in the machine.
fn netns(machine: &Machine, pid: u32) -> std::path::PathBuf {
    std::fs::read_link(machine.path(&format!("/proc/{pid}/ns/net"))).unwrap()
}

/// Runs as a capability-less dynamic user with LimitNOFILE=; an output under /etc fails clearly.
#[test]
fn runs_unprivileged_and_cannot_write_outside_its_directory() {
    let Some(machine) =
        boot_with_package("runs_unprivileged_and_cannot_write_outside_its_directory")
    else {
        return;
    };
    start(&machine);
    let pid = machine.main_pid("logsinkd.service");
    let uids: Vec<u32> = machine
        .proc_status(pid, "Uid")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert!(
        uids.iter().all(|&u| u == uids[0] && u != 0),
        "uids {uids:?}"
    );
    let logs_owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(machine.path("/var/log/logsinkd")).unwrap(),
    );
    assert_eq!(
        logs_owner, uids[0],
        "/var/log/logsinkd belongs to the service's user"
    );
    assert_eq!(machine.proc_status(pid, "CapEff"), "0000000000000000");
    assert_eq!(machine.proc_status(pid, "NoNewPrivs"), "1");
    // LimitNOFILE=65536 of the unit, unless the manager itself may not go that high: raising a
    // hard limit needs CAP_SYS_RESOURCE, which some sandboxes (this CI's) take away.
    let may_raise = u64::from_str_radix(&machine.proc_status(1, "CapBnd"), 16).unwrap()
        & (1 << CAP_SYS_RESOURCE)
        != 0;
    let expected = if may_raise {
        65536
    } else {
        nofile_limits(&machine, 1).1.min(65536)
    };
    assert_eq!(
        nofile_limits(&machine, pid),
        (expected, expected),
        "open-file limits"
    );
    machine.ok("systemctl", &["stop", "logsinkd.service"]);

    let out = start_with_options(&machine, "--output /etc/logsinkd/stolen.log");
    assert!(
        !out.status.success(),
        "logsinkd started with its output under /etc"
    );
    let error = machine.wait_for_journal(Some("logsinkd"), "the error about /etc", |e| {
        e.is_daemon() && e.message.contains("/etc/logsinkd/stolen.log")
    });
    assert_eq!(error.priority, 3, "{error:?}");
    assert!(error.message.contains("Read-only file system"), "{error:?}");
    assert!(!machine.path("/etc/logsinkd/stolen.log").exists());
    let _ = machine.systemctl(&["stop", "logsinkd.service"]);
}

/// In the sandbox `syslog` reaches the journal via /dev/log, `syslog+udp://` a UDP peer.
#[test]
fn syslog_outputs_work_inside_the_sandbox() {
    let Some(machine) = boot_with_package("syslog_outputs_work_inside_the_sandbox") else {
        return;
    };
    let out = start_with_options(&machine, "--output syslog");
    assert!(out.status.success(), "{}", describe(&out));
    machine
        .connect(ADDR)
        .write_all(b"through dev-log\n")
        .unwrap();
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
    assert!(
        text.contains("logsinkd") && text.ends_with("over udp"),
        "{text:?}"
    );
}

/// `systemd-analyze verify` prints nothing for the installed units, with or without drop-in.
#[test]
fn installed_units_verify_clean() {
    let Some(machine) = boot_with_package("installed_units_verify_clean") else {
        return;
    };
    let verify = |what: &str| {
        let out = machine.run(
            "systemd-analyze",
            &["verify", "logsinkd.service", "logsinkd.socket"],
        );
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "verify {what}:\n{}",
            describe(&out)
        );
    };
    verify("the units as shipped");
    install_activation_drop_in(&machine);
    verify("with the socket-activation drop-in");
    let exposure = parse_exposure(&machine.ok(
        "systemd-analyze",
        &["security", "--no-pager", "logsinkd.service"],
    ));
    assert!(
        exposure <= MAX_EXPOSURE_ACTIVATED,
        "installed socket-activated service: exposure {exposure}"
    );
}

/// Offline exposure: the service at most 1.5, socket-activated with the drop-in at most 0.5.
#[test]
fn exposure_scores_meet_targets() {
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        crate::util::skip("exposure_scores_meet_targets: no systemd-analyze");
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
    assert!(
        standalone <= MAX_EXPOSURE,
        "logsinkd.service: exposure {standalone}"
    );

    // As installed: the unit with the drop-in in logsinkd.service.d/ next to it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logsinkd.service.d")).unwrap();
    std::fs::copy(
        packaging("systemd/logsinkd.service"),
        dir.path().join("logsinkd.service"),
    )
    .unwrap();
    std::fs::copy(
        packaging("systemd/logsinkd.socket"),
        dir.path().join("logsinkd.socket"),
    )
    .unwrap();
    std::fs::copy(
        packaging("systemd/socket-activation.conf"),
        dir.path().join("logsinkd.service.d/socket-activation.conf"),
    )
    .unwrap();
    let activated = security(&dir.path().join("logsinkd.service"));
    assert!(
        activated <= MAX_EXPOSURE_ACTIVATED,
        "socket-activated logsinkd.service: exposure {activated}"
    );
    eprintln!("exposure: logsinkd.service {standalone}, socket-activated {activated}");
}

/// Installs the shipped socket-activation drop-in as the README says, and reloads systemd.
pub(super) fn install_activation_drop_in(machine: &Machine) {
    machine.ok(
        "install",
        &[
            "-D",
            "-m",
            "0644",
            "/usr/share/logsinkd/socket-activation.conf",
            ACTIVATION_DROP_IN,
        ],
    );
    machine.ok("systemctl", &["daemon-reload"]);
}

/// The metrics address the tests give the service (the documented example).
const METRICS_ADDR: &str = "127.0.0.1:9140";

/// `GET /metrics` on the machine's loopback: the value of `logsinkd_lines_received_total` of
/// the shipped listener.
fn lines_received(machine: &Machine) -> Option<u64> {
    use std::io::Read;
    let mut s = machine.connect(METRICS_ADDR);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let series = format!("logsinkd_lines_received_total{{listener=\"tcp://{ADDR}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.parse().unwrap())
}

/// The shipped service serves the metrics from inside its sandbox.
#[test]
fn metrics_are_served_inside_the_sandbox() {
    let Some(machine) = boot_with_package("metrics_are_served_inside_the_sandbox") else {
        return;
    };
    let out = start_with_options(&machine, &format!("--metrics-listen {METRICS_ADDR}"));
    assert!(out.status.success(), "{}", describe(&out));
    machine.connect(ADDR).write_all(b"counted\n").unwrap();
    wait_for_records(&machine, LOG, 1);
    assert_eq!(lines_received(&machine), Some(1));
}

/// Socket-activated and network-less (the drop-in), the service serves the metrics on a
/// `ListenStream=` socket of logsinkd.socket bound to `metrics_listen`.
#[test]
fn socket_activated_metrics_without_a_network() {
    let Some(machine) = boot_with_package("socket_activated_metrics_without_a_network") else {
        return;
    };
    install_activation_drop_in(&machine);
    machine.write(
        "/run/systemd/system/logsinkd.socket.d/metrics.conf",
        &format!("[Socket]\nListenStream={METRICS_ADDR}\n"),
    );
    machine.write(
        "/run/systemd/system/logsinkd.service.d/test.conf",
        &format!(
            "[Service]\nExecStart=\nExecStart={} --metrics-listen {METRICS_ADDR}\n",
            super::shipped_exec_start()
        ),
    );
    machine.ok("systemctl", &["daemon-reload"]);
    machine.ok("systemctl", &["start", "logsinkd.socket"]);
    machine.connect(ADDR).write_all(b"counted\n").unwrap();
    wait_for_records(&machine, LOG, 1);
    let pid = machine.main_pid("logsinkd.service");
    assert_ne!(netns(&machine, pid), netns(&machine, 1), "not network-less");
    assert_eq!(lines_received(&machine), Some(1));
}
