//! logsinkd between real rsyslogds: one forwarding to it (octet-counted TCP, RSYSLOG's
//! protocol-23 template), one receiving what it relays (`--output syslog+tcp://`, `+udp://`,
//! RFC 5424 and RFC 3164, octet-counted and LF-framed). Every rsyslogd is private to the test:
//! config, work files and unix socket in its temp dir, network only on 127.0.0.1.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// The lines of `path` once it has at least `n`.
fn wait_lines(path: &Path, n: usize, what: &str) -> Vec<String> {
    wait_until(&format!("{n} {what}"), DEADLINE, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
}

/// logsinkd (`--framing FRAMING --parse syslog --format json`) with a `forwarding_rsyslogd`
/// in front of it, and that rsyslogd's socket; `None` (the test skipped) without logger or
/// rsyslogd.
fn behind_rsyslogd(dir: &Path, framing: &str) -> Option<(Daemon, PrivateRsyslogd, PathBuf)> {
    tool("logger", "bsdutils")?;
    let args = [
        "--framing",
        framing,
        "--parse",
        "syslog",
        "--format",
        "json",
    ];
    let d = Daemon::start(dir, &args);
    let (rs, socket) = forwarding_rsyslogd(dir, d.addr.port())?;
    Some((d, rs, socket))
}

/// rsyslogd forwarding everything its unix socket `dir/log.sock` gets (but its own messages)
/// to logsinkd at `port`, octet-counted, in `RSYSLOG_SyslogProtocol23Format`; ready once the
/// socket is there.
fn forwarding_rsyslogd(dir: &Path, port: u16) -> Option<(PrivateRsyslogd, PathBuf)> {
    let socket = dir.join("log.sock");
    let rs = PrivateRsyslogd::start(
        dir,
        &format!(
            r#"module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
if $programname != "rsyslogd" then action(type="omfwd" target="127.0.0.1" port="{port}"
    protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
"#,
            socket = socket.display()
        ),
    )?;
    wait_until("rsyslogd's socket", DEADLINE, || {
        socket.exists().then_some(())
    });
    Some((rs, socket))
}

/// What one logger run sends (`-p PRI`, message arguments or stdin), and the messages
/// rsyslogd forwards of it.
struct Sent {
    facility: &'static str,
    severity: &'static str,
    /// Given as logger's message argument, or on its stdin.
    text: String,
    stdin: bool,
    /// The message text of each forwarded message (rsyslogd's `%msg%`).
    forwarded: Vec<String>,
}

/// 200 logger runs, many priorities; every tenth message has an LF inside (rsyslogd, escaping
/// control characters on receipt, forwards it as `#012`), and every twentieth comes on stdin
/// as two lines (logger sends each line of its input as a message of its own).
fn messages() -> Vec<Sent> {
    const FACILITIES: [&str; 6] = ["user", "daemon", "mail", "local0", "local3", "local7"];
    const SEVERITIES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    (0..200)
        .map(|i| {
            let (facility, severity) = (FACILITIES[i % 6], SEVERITIES[i % 8]);
            let (text, stdin, forwarded) = match i % 20 {
                0 => {
                    let t = format!("message {i} first line\nmessage {i} second line");
                    let f = t.lines().map(str::to_string).collect();
                    (t, true, f)
                }
                10 => {
                    let t = format!("message {i} line one\nline two \"quoted\"");
                    let f = vec![t.replace('\n', "#012")];
                    (t, false, f)
                }
                _ => {
                    let t = format!("message {i} h\u{e9}llo [x] {{json: 1}}");
                    (t.clone(), false, vec![t])
                }
            };
            Sent {
                facility,
                severity,
                text,
                stdin,
                forwarded,
            }
        })
        .collect()
}

/// rsyslogd forwards 200 logger messages (from its unix socket) to logsinkd with
/// `--framing FRAMING`: each arrives exactly once, in order, as one record whose fields are
/// what was sent: app (the tag), procid (`--id`), rsyslogd's host name, facility, severity.
fn rsyslogd_forwards_every_message(framing: &str) {
    let dir = temp_dir();
    let Some((d, _rs, socket)) = behind_rsyslogd(dir.path(), framing) else {
        return;
    };
    let socket = socket.to_str().unwrap();
    let sent = messages();
    for s in &sent {
        let pri = format!("{}.{}", s.facility, s.severity);
        let mut args = vec!["-u", socket, "--socket-errors=on", "-t", "app", "--id=4242"];
        args.extend(["-p", &pri]);
        if s.stdin {
            let mut child = std::process::Command::new("logger")
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(s.text.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        } else {
            args.push(&s.text);
            logger(&args);
        }
    }
    // A last message, after which nothing may come: none was sent twice.
    logger(&[
        "-u",
        socket,
        "--socket-errors=on",
        "-t",
        "app",
        "--id=4242",
        "the end",
    ]);
    let expected: usize = sent.iter().map(|s| s.forwarded.len()).sum::<usize>() + 1;
    let records: Vec<Value> = d.wait_for_json(expected);
    // rsyslogd's own name, the domain (if any) stripped as rsyslogd does by default.
    let host = hostname().split('.').next().unwrap().to_string();
    let wanted = sent
        .iter()
        .flat_map(|s| {
            s.forwarded
                .iter()
                .map(move |f| (s.facility, s.severity, f.clone()))
        })
        .chain([("user", "notice", "the end".to_string())]);
    for (i, (r, (facility, severity, text))) in records.iter().zip(wanted).enumerate() {
        let field = |name: &str| r.get(name).and_then(Value::as_str);
        assert_eq!(field("app"), Some("app"), "{i}: {r}");
        assert_eq!(field("procid"), Some("4242"), "{i}: {r}");
        assert_eq!(field("hostname"), Some(host.as_str()), "{i}: {r}");
        assert_eq!(field("facility"), Some(facility), "{i}: {r}");
        assert_eq!(field("severity"), Some(severity), "{i}: {r}");
        assert!(
            field("timestamp").is_some() && r.get("msgid").is_none(),
            "{i}: {r}"
        );
        // rsyslogd's `%msg%` keeps the SP after the tag (`app[4242]: text`), and its template
        // puts one more SP before it. The LF that ends the template is inside the frame:
        // whether it is message text is `rsyslogd_frame_end_is_no_message_text`'s business.
        let msg = field("msg").unwrap();
        let msg = msg.strip_suffix("\\x0a").unwrap_or(msg);
        assert_eq!(msg, format!(" {text}"), "{i}: {r}");
    }
    // The peer is rsyslogd's one connection.
    let peers: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert!(
        d.log.matching("octet-counting").is_empty(),
        "{:#?}",
        d.log.all()
    );
}

#[test]
fn rsyslogd_forwards_every_message_octet() {
    rsyslogd_forwards_every_message("octet");
}

#[test]
fn rsyslogd_forwards_every_message_auto() {
    rsyslogd_forwards_every_message("auto");
}

/// rsyslogd's forwarding template (`RSYSLOG_SyslogProtocol23Format`, the one its docs give for
/// octet-counted forwarding) ends with LF, so every frame it sends ends with one. That LF
/// frames nothing (rsyslogd itself drops it on receipt, `DropTrailingLFOnReception`), so the
/// message is the frame without it: `msg` and `line` do not end in `\x0a`.
#[test]
fn rsyslogd_frame_end_is_no_message_text() {
    let dir = temp_dir();
    let Some((d, _rs, socket)) = behind_rsyslogd(dir.path(), "octet") else {
        return;
    };
    logger(&[
        "-u",
        socket.to_str().unwrap(),
        "--socket-errors=on",
        "-t",
        "app",
        "hello",
    ]);
    let r: Value = serde_json::from_str(&d.wait_for_lines(1)[0]).unwrap();
    assert_eq!(r["msg"], " hello", "{r}");
    assert!(r["line"].as_str().unwrap().ends_with("  hello"), "{r}");
}

/// rsyslogd receiving on TCP and UDP, writing what it gets as
/// `facility|severity|hostname|syslogtag|app-name|procid|msg` (but its own messages).
struct Receiver {
    _rs: PrivateRsyslogd,
    received: PathBuf,
    tcp: u16,
    udp: u16,
}

impl Receiver {
    fn start(dir: &Path) -> Option<Receiver> {
        let received = dir.join("received.log");
        let (tcp, udp) = (free_port(), free_port());
        let rs = PrivateRsyslogd::start(
            dir,
            &format!(
                r#"module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
template(name="t" type="string"
    string="%syslogfacility-text%|%syslogseverity-text%|%hostname%|%syslogtag%|%app-name%|%procid%|%msg%\n")
if $programname != "rsyslogd" then action(type="omfile" file="{received}" template="t")
"#,
                received = received.display()
            ),
        )?;
        wait_until("rsyslogd to listen", DEADLINE, || {
            (TcpStream::connect(("127.0.0.1", tcp)).is_ok() && udp_bound(udp)).then_some(())
        });
        Some(Receiver {
            _rs: rs,
            received,
            tcp,
            udp,
        })
    }

    /// The `n`th message rsyslogd wrote (from 1), its msg with the SP rsyslogd keeps in
    /// front of a 3164 message's text trimmed.
    fn message(&self, n: usize) -> String {
        let line = wait_lines(&self.received, n, "messages at rsyslogd").swap_remove(n - 1);
        let (fields, msg) = line.rsplit_once('|').unwrap();
        format!("{fields}|{}", msg.trim_start())
    }
}

/// What logsinkd relays keeps the sender's facility, severity, host and tag, as rsyslogd
/// reads it, with `--output TARGET` and `extra` options; a message with an LF arrives as one
/// message (the LF escaped); a line that is no syslog message goes as logsinkd's own.
fn relay_keeps_the_senders_fields(target: &str, extra: &[&str]) {
    if tool("logger", "bsdutils").is_none() {
        return;
    }
    let dir = temp_dir();
    let Some(rs) = Receiver::start(dir.path()) else {
        return;
    };
    let target = target
        .replace("TCP", &rs.tcp.to_string())
        .replace("UDP", &rs.udp.to_string());
    let d = DaemonBuilder::new(dir.path())
        .args([
            "--framing",
            "auto",
            "--parse",
            "syslog",
            "--syslog-facility",
            "local5",
        ])
        .args(["--output", &target])
        .args(extra)
        .output(&target)
        .start();
    let port = d.addr.port().to_string();
    // rsyslogd writes host names of its own domain without it (its default).
    let short = hostname().split('.').next().unwrap().to_string();
    // rsyslogd's `%syslogtag%` of an RFC 5424 message is `APP[PROCID]`, of a 3164 one the
    // tag as sent, with its colon.
    let c = if extra.contains(&"rfc5424") { "" } else { ":" };
    let mut n = 0;
    let mut expect = |want: String| {
        n += 1;
        assert_eq!(rs.message(n), want, "{target} {extra:?}");
    };

    // logger, both formats, over TCP: octet-counted and lines.
    let tcp = [
        "--tcp",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-p",
        "local3.warning",
    ];
    let with = |more: &[&'static str]| [&tcp[..], more].concat();
    logger(&with(&[
        "--octet-count",
        "--rfc5424",
        "-t",
        "myapp",
        "--id=77",
        "via 5424",
    ]));
    expect(format!(
        "local3|warning|{short}|myapp[77]{c}|myapp|77|via 5424"
    ));
    logger(&with(&["--rfc3164", "-t", "myapp", "--id=77", "via 3164"]));
    expect(format!(
        "local3|warning|{short}|myapp[77]{c}|myapp|77|via 3164"
    ));

    // A host of its own, sent raw (logger has no option for it over TCP).
    send(
        d.addr,
        b"<156>1 2026-12-01T16:20:01.123Z web-3 myapp 77 ID47 - relayed from web-3\n",
    );
    expect(format!(
        "local3|warning|web-3|myapp[77]{c}|myapp|77|relayed from web-3"
    ));
    send(d.addr, b"<134>Dec  1 16:20:01 router-1 linkd: port 3 up\n");
    expect(format!("local0|info|router-1|linkd{c}|linkd|-|port 3 up"));

    // An LF inside an octet-counted frame: one message, the LF escaped.
    let msg = "<156>1 - web-3 myapp 77 - - first line\nsecond line";
    send(d.addr, format!("{} {msg}", msg.len()).as_bytes());
    expect(format!(
        "local3|warning|web-3|myapp[77]{c}|myapp|77|first line\\x0asecond line"
    ));

    // No syslog message: the peer and the line, as logsinkd's own message.
    let peer = send(d.addr, b"just a line\n");
    let pid = d.pid();
    expect(format!(
        "local5|info|{short}|logsinkd[{pid}]{c}|logsinkd|{pid}|{peer} just a line"
    ));
}

#[test]
fn relay_rfc5424_octet_counted_to_rsyslogd() {
    relay_keeps_the_senders_fields(
        "syslog+tcp://127.0.0.1:TCP",
        &["--syslog-format", "rfc5424", "--syslog-framing", "octet"],
    );
}

#[test]
fn relay_rfc3164_lines_to_rsyslogd() {
    relay_keeps_the_senders_fields(
        "syslog+tcp://127.0.0.1:TCP",
        &["--syslog-format", "rfc3164", "--syslog-framing", "lines"],
    );
}

#[test]
fn relay_over_udp_to_rsyslogd() {
    for format in ["rfc5424", "rfc3164"] {
        relay_keeps_the_senders_fields("syslog+udp://127.0.0.1:UDP", &["--syslog-format", format]);
    }
}

/// `--syslog-framing octet` frames a TCP stream: with any other output it is refused at
/// start (exit 2), in one readable sentence naming the key and the output.
#[test]
fn octet_relay_framing_needs_a_tcp_output() {
    for output in ["syslog+udp://127.0.0.1:514", "out.log"] {
        let out = std::process::Command::new(BIN)
            .args(["--syslog-framing", "octet", "--output", output])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "logsinkd: error: key `syslog_framing`: `octet` frames messages on a \
                 `syslog+tcp://` output; the output is `{output}`"
            )
        );
    }
}
