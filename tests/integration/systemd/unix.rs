//! Unix-domain sockets passed by a real systemd: `ListenStream=PATH` and `ListenDatagram=PATH`
//! in logsinkd.socket are adopted by domain and type, wake the network-less service, and their
//! clients are recorded with their credentials.

use super::machine::{Machine, describe};
use super::sandbox::install_activation_drop_in;
use super::{LOG, boot_with_package, wait_for_records};
use crate::util::split_record;

const STREAM: &str = "/run/logsinkd/in.sock";
const DGRAM: &str = "/run/logsinkd/dev-log";

/// Runs `logger --socket-errors=on ARGS` inside the machine, as `user` if given (uid and gid),
/// and returns its pid as the machine sees it (the shell prints its own, then execs logger).
fn logger(machine: &Machine, user: Option<u32>, args: &str) -> u32 {
    let as_user = user.map_or(String::new(), |id| {
        format!("setpriv --reuid={id} --regid={id} --clear-groups ")
    });
    let script = format!("echo $$; exec {as_user}logger --socket-errors=on {args}");
    let out = machine.run("sh", &["-c", &script]);
    assert!(out.status.success(), "logger {args}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `ListenDatagram=/run/logsinkd/dev-log` with `PassCredentials=yes`: `logger -u` wakes the
/// service and its first datagram is recorded with logger's pid and uid; `ListenStream=` on a
/// path takes `logger --tcp -u`'s line likewise. Under the shipped `PrivateUsers=yes` a sender
/// that is neither root nor the service's user shows as uid 65534 (the service's user
/// namespace maps no other uid). The socket files are systemd's: still there after the
/// service stops.
#[test]
fn socket_activation_of_unix_sockets() {
    let Some(machine) = boot_with_package("socket_activation_of_unix_sockets") else {
        return;
    };
    install_activation_drop_in(&machine);
    machine.write(
        "/run/systemd/system/logsinkd.socket.d/unix.conf",
        &format!(
            "[Socket]\nListenStream={STREAM}\nListenDatagram={DGRAM}\nPassCredentials=yes\n\
             SocketMode=0666\n"
        ),
    );
    machine.ok("systemctl", &["daemon-reload"]);
    machine.ok("systemctl", &["start", "logsinkd.socket"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");

    let pid = logger(&machine, None, &format!("-u {DGRAM} -t tag first datagram"));
    let records = wait_for_records(&machine, LOG, 1);
    let (_, peer, line) = split_record(&records[0]);
    assert_eq!(peer, format!("unix:pid={pid},uid=0"));
    assert!(line.ends_with("tag: first datagram"), "{line}");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");

    let pid = logger(
        &machine,
        None,
        &format!("--tcp -u {STREAM} -t tag over a stream"),
    );
    let records = wait_for_records(&machine, LOG, 2);
    let (_, peer, line) = split_record(&records[1]);
    assert_eq!(peer, format!("unix:pid={pid},uid=0"));
    assert!(line.ends_with("tag: over a stream"), "{line}");

    let pid = logger(
        &machine,
        Some(4242),
        &format!("-u {DGRAM} -t tag another user"),
    );
    let records = wait_for_records(&machine, LOG, 3);
    let (_, peer, _) = split_record(&records[2]);
    assert_eq!(peer, format!("unix:pid={pid},uid=65534"));

    machine.ok("systemctl", &["stop", "logsinkd.service"]);
    for path in [STREAM, DGRAM] {
        assert!(
            std::fs::symlink_metadata(machine.path(path)).is_ok(),
            "{path} was removed"
        );
    }
}
