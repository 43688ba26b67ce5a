//! Syslog output, received by a real rsyslogd that listens only inside the test's temp dir
//! (its unix socket there, and TCP/UDP on 127.0.0.1).

use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::util::*;

/// A private rsyslogd writing every message it receives to `received.log` as
/// `tag|facility|severity|message`.
struct Rsyslogd {
    child: Child,
    bin: PathBuf,
    dir: PathBuf,
    received: PathBuf,
    socket: PathBuf,
    tcp_port: u16,
    udp_port: u16,
}

impl Rsyslogd {
    fn start(dir: &Path) -> Option<Rsyslogd> {
        let bin = tool("rsyslogd", "rsyslog")?;
        let socket = dir.join("log.sock");
        let received = dir.join("received.log");
        let (tcp_port, udp_port) = (
            free_port(),
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        );
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}")
main_queue(queue.size="1000000")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp_port}")
template(name="t" type="string" string="%syslogtag%|%syslogfacility-text%|%syslogseverity-text%|%msg%\n")
*.* action(type="omfile" file="{received}" template="t")
"#,
                dir = dir.display(),
                socket = socket.display(),
                received = received.display(),
            ),
        )
        .unwrap();
        let child = spawn_rsyslogd(&bin, dir);
        let r = Rsyslogd {
            child,
            received,
            socket,
            tcp_port,
            udp_port,
            bin,
            dir: dir.to_path_buf(),
        };
        r.wait_listening();
        Some(r)
    }

    fn wait_listening(&self) {
        wait_until("rsyslogd to listen", DEADLINE, || {
            (self.socket.exists() && TcpStream::connect(("127.0.0.1", self.tcp_port)).is_ok())
                .then_some(())
        });
    }

    /// Kills rsyslogd hard (it gets no chance to clean up).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same configuration, sockets and output file.
    fn restart(&mut self) {
        self.kill();
        self.child = spawn_rsyslogd(&self.bin, &self.dir);
        self.wait_listening();
    }

    /// A foreground logsinkd in `dir` whose output is this rsyslogd's unix socket.
    fn logsinkd_to_socket(&self, dir: &Path) -> Daemon {
        let target = format!("syslog:{}", self.socket.display());
        DaemonBuilder::new(dir)
            .args(["--output", &target])
            .output(&target)
            .start()
    }

    /// Waits for `n` received messages, returns them.
    fn wait_for(&self, n: usize) -> Vec<String> {
        wait_until(&format!("{n} messages at rsyslogd"), DEADLINE, || {
            let text = std::fs::read_to_string(&self.received).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() >= n).then_some(lines)
        })
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each line becomes one message, tag logsinkd, the configured facility, severity info, with
/// the peer first and the line escaped (an empty line too); over the unix socket, UDP and TCP.
#[test]
fn rsyslogd_receives_lines() {
    let dir = temp_dir();
    let Some(rs) = Rsyslogd::start(dir.path()) else {
        return;
    };
    let targets = [
        format!("syslog:{}", rs.socket.display()),
        format!("syslog+udp://127.0.0.1:{}", rs.udp_port),
        format!("syslog+tcp://127.0.0.1:{}", rs.tcp_port),
    ];
    let mut expected = 0;
    for (i, target) in targets.iter().enumerate() {
        let mut d = DaemonBuilder::new(dir.path())
            .args(["--output", target, "--syslog-facility", "local3"])
            .output(target)
            .start();
        let peer = send(
            d.addr,
            format!("via {i} first\n\nvia {i} second \x1b[1m\n").as_bytes(),
        );
        // The empty line is a record too: a message with the peer alone.
        expected += 3;
        let got = rs.wait_for(expected);
        let pid = d.pid();
        assert_eq!(d.stop().code(), Some(0));
        for (line, text) in got[expected - 3..].iter().zip([
            format!("{peer} via {i} first"),
            format!("{peer}"),
            format!("{peer} via {i} second \\x1b[1m"),
        ]) {
            let fields: Vec<&str> = line.splitn(4, '|').collect();
            assert_eq!(fields[0], format!("logsinkd[{pid}]:"), "{target}: {line}");
            assert_eq!(fields[1], "local3", "{target}: {line}");
            assert_eq!(fields[2], "info", "{target}: {line}");
            assert_eq!(fields[3].trim(), text, "{target}: {line}");
        }
    }
}

/// A line longer than one syslog message is sent as several messages, nothing cut off.
#[test]
fn long_lines_become_several_messages() {
    let dir = temp_dir();
    let Some(rs) = Rsyslogd::start(dir.path()) else {
        return;
    };
    let d = rs.logsinkd_to_socket(dir.path());
    let long: String = (0..2000).map(|i| format!("{i:05}")).collect(); // 10,000 bytes
    let peer = send(d.addr, format!("{long}\n").as_bytes());
    let got = rs.wait_for(2);
    let text: String = got
        .iter()
        .map(|l| {
            let msg = l.splitn(4, '|').nth(3).unwrap().trim_start();
            msg.strip_prefix(&format!("{peer} "))
                .unwrap_or_else(|| panic!("peer first: {msg}"))
                .to_string()
        })
        .collect();
    assert_eq!(text, long);
}

/// The syslog receiver goes away and comes back: the daemon keeps running, holds the lines
/// (at most its high-water mark, then TCP pushes back on the client), reconnects with
/// back-off and delivers everything, in order, once.
#[test]
fn syslog_receiver_restart_loses_nothing() {
    let dir = temp_dir();
    let Some(mut rs) = Rsyslogd::start(dir.path()) else {
        return;
    };
    for (round, target) in [
        format!("syslog:{}", rs.socket.display()),
        format!("syslog+tcp://127.0.0.1:{}", rs.tcp_port),
    ]
    .iter()
    .enumerate()
    {
        let _ = std::fs::remove_file(&rs.received);
        let mut d = DaemonBuilder::new(dir.path())
            .args(["--output", target])
            .output(target)
            .start();
        let base = peak_rss_kib(d.pid());
        rs.kill();
        // 120,000 lines of 100 bytes: more than the 8 MiB the daemon may hold.
        let count = 120_000;
        let (client, writer) = stream_numbered(d.addr, count);
        wait_until("the daemon to stop reading", DEADLINE * 3, || {
            daemon_stopped_reading(d.addr, client).then_some(())
        });
        d.log.wait_for_nth(&format!("sending to {target}"), 1);
        let held = peak_rss_kib(d.pid()) - base;
        assert!(
            held < 24 * 1024,
            "{target}: held {held} KiB while the receiver was gone"
        );
        rs.restart();
        writer.join().unwrap();
        d.log.wait_for_nth("takes data again", 1);
        let got = wait_until("every message at rsyslogd", DEADLINE * 3, || {
            let text = std::fs::read_to_string(&rs.received).unwrap_or_default();
            (text.lines().count() as u64 >= count).then_some(text)
        });
        assert_eq!(d.stop_within(Duration::from_secs(10)).code(), Some(0));
        let lines: Vec<String> = got
            .lines()
            .map(|l| {
                // tag|facility|severity|<peer> <line>: keep the line.
                let message = l.splitn(4, '|').nth(3).unwrap().trim_start();
                message.split_once(' ').unwrap().1.to_string()
            })
            .collect();
        assert_numbered(&lines, 0..count, Layout::Raw);
        let complaints = d
            .log
            .all()
            .iter()
            .filter(|l| l.contains(&format!("sending to {target}")))
            .count();
        assert_eq!(
            complaints,
            1,
            "round {round}: logged once per episode: {:#?}",
            d.log.all()
        );
    }
}

/// SIGTERM while the syslog receiver is stalled with messages queued: the daemon waits on the
/// receiver's socket and delivers every message before exiting 0.
#[test]
fn shutdown_waits_for_a_busy_receiver() {
    let dir = temp_dir();
    let Some(rs) = Rsyslogd::start(dir.path()) else {
        return;
    };
    let mut d = rs.logsinkd_to_socket(dir.path());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(rs.child.id() as i32, libc::SIGSTOP) };
    let count = 3000;
    let (_, writer) = stream_numbered(d.addr, count);
    writer.join().unwrap();
    d.wait_for_stats(&format!("lines={count}"));
    d.signal(libc::SIGTERM);
    // SAFETY: as above.
    unsafe { libc::kill(rs.child.id() as i32, libc::SIGCONT) };
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let got = wait_until("every message at rsyslogd", DEADLINE, || {
        let text = std::fs::read_to_string(&rs.received).unwrap_or_default();
        (text.lines().count() as u64 >= count).then_some(text)
    });
    let lines: Vec<&str> = got
        .lines()
        .map(|l| {
            l.splitn(4, '|')
                .nth(3)
                .unwrap()
                .trim_start()
                .split_once(' ')
                .unwrap()
                .1
        })
        .collect();
    assert_numbered(&lines, 0..count, Layout::Raw);
}

/// True if `text` is whole escapes and characters: it does not end inside `\\` or `\xHH`.
fn escapes_whole(text: &str) -> bool {
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = match (b, tail) {
            (b'\\', [b'\\', more @ ..]) => more,
            (b'\\', [b'x', h, l, more @ ..]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                more
            }
            (b'\\', _) => return false,
            _ => tail,
        };
    }
    true
}

/// A long line is cut into messages between escapes, never inside one (`\x1b`, `\\`): each
/// message reads on its own, and together they are the whole escaped line. Where the cut
/// falls depends on the peer's length, so each line comes with 0 to 3 bytes in front.
#[test]
fn long_lines_are_cut_between_escapes() {
    let dir = temp_dir();
    let Some(rs) = Rsyslogd::start(dir.path()) else {
        return;
    };
    let d = rs.logsinkd_to_socket(dir.path());
    let mut lines = Vec::new();
    let mut escaped = Vec::new();
    for (byte, text) in [("\x1b", "\\x1b"), ("\\", "\\\\")] {
        for offset in 0..4 {
            // 8,000 bytes of escaped text: two messages.
            let count = (8000 - offset) / text.len();
            lines.push("a".repeat(offset) + &byte.repeat(count));
            escaped.push("a".repeat(offset) + &text.repeat(count));
        }
    }
    let mut stream = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(&mut stream, (lines.join("\n") + "\n").as_bytes()).unwrap();
    let peer = stream.local_addr().unwrap();
    drop(stream);
    let got = rs.wait_for(2 * lines.len());
    let texts: Vec<&str> = got
        .iter()
        .map(|l| {
            let msg = l.splitn(4, '|').nth(3).unwrap().trim_start();
            msg.strip_prefix(&format!("{peer} "))
                .unwrap_or_else(|| panic!("peer first: {msg}"))
        })
        .collect();
    for (i, pair) in texts.chunks(2).enumerate() {
        for text in pair {
            assert!(
                escapes_whole(text),
                "line {i}: a message ends inside an escape: …{}",
                &text[text.len().saturating_sub(12)..]
            );
        }
        assert_eq!(pair.concat(), escaped[i], "line {i}");
    }
}

/// `syslog:PATH` with a relative path, in daemon mode (which moves to `/`): the path is
/// resolved at start, so a reconnect (the receiver restarted) and a reopen (SIGHUP) find the
/// socket again, and every line arrives.
#[test]
fn relative_syslog_socket_in_daemon_mode() {
    let dir = temp_dir();
    let rs_dir = dir.path().join("rs");
    std::fs::create_dir(&rs_dir).unwrap();
    let Some(mut rs) = Rsyslogd::start(&rs_dir) else {
        return;
    };
    let d = ClassicDaemon::start(dir.path(), &[], &["--output", "syslog:rs/log.sock"]);
    let (addr, pid) = (d.addr, d.pid);
    let line = |rs: &Rsyslogd, n: usize| {
        send(addr, format!("line {n}\n").as_bytes());
        let got = rs.wait_for(n + 1);
        assert!(got[n].ends_with(&format!(" line {n}")), "{:#?}", got);
    };
    line(&rs, 0);
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    line(&rs, 1);
    // The receiver restarts: the daemon's socket is connected to nothing and must reconnect.
    rs.restart();
    line(&rs, 2);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    line(&rs, 3);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("the daemon to exit", DEADLINE, || {
        // SAFETY: signal 0 only checks for existence.
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
}
