//! Syslog over TLS (`listen_tls`): real peers (`openssl s_client`, rsyslogd with its gtls
//! driver, rustls clients), certificates made by the test (rcgen) in its temp dir, and hostile
//! clients: plaintext on the TLS port, stalled and half handshakes, half records, floods of
//! connections that never handshake, and SIGTERM while clients stream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// What `openssl s_client` (from the loopback address `bind`) does with `input` against the
/// TLS listener `addr`, trusting `ca` and presenting `cert` (a certificate and key), if any.
/// Returns its stdout and stderr; waits for it to end: at the end of `input` if `eof_ends`,
/// else when the server closes (so it reads the alert of a refusal).
fn s_client(
    addr: SocketAddr,
    bind: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    input: &[u8],
    eof_ends: bool,
) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-servername", "localhost"]);
    if eof_ends {
        cmd.arg("-no_ign_eof");
    }
    cmd.arg("-connect")
        .arg(addr.to_string())
        .arg("-bind")
        .arg(format!("{bind}:0"))
        .arg("-CAfile")
        .arg(ca);
    if let Some((cert, key)) = cert {
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running openssl s_client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = wait_until("openssl s_client to end", DEADLINE, || {
        child.try_wait().unwrap()
    });
    let _ = out;
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// The records of a json output, parsed.
fn json_records(d: &Daemon, n: usize) -> Vec<Value> {
    d.wait_for_lines(n)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The SIGUSR1 line of the TLS listener `addr` once it counts `failures` failed handshakes.
fn wait_for_failures(d: &Daemon, addr: SocketAddr, failures: u64) -> String {
    let want =
        format!("stats of tls {addr}: denied=0 proxy_refused=0 tls_handshake_failures={failures}");
    wait_until(&want, DEADLINE, || {
        d.signal(libc::SIGUSR1);
        d.log.matching(&want).pop()
    })
}

/// Mutual TLS with `tls_peers` against `openssl s_client`: a valid client is recorded with
/// its `tls_peer`; one without a certificate, one from another CA, an expired one, one not in
/// `tls_peers` and a plaintext syslog sender are each refused (the client gets the alert),
/// logged with the reason, once per address, and counted; a second refusal of the same address
/// within the minute is counted but not logged.
#[test]
fn openssl_clients_refused_logged_and_counted() {
    if !have("openssl", "openssl") {
        return;
    }
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let good = files.pki.issue(&["client1.test"], Validity::Now);
    let (good_cert, good_key) = good.write(dir, "good");
    let stranger = Pki::new("another CA").issue(&["client1.test"], Validity::Now);
    let (stranger_cert, stranger_key) = stranger.write(dir, "stranger");
    let expired = files.pki.issue(&["client1.test"], Validity::Expired);
    let (expired_cert, expired_key) = expired.write(dir, "expired");
    let other = files.pki.issue(&["client2.test"], Validity::Now);
    let (other_cert, other_key) = other.write(dir, "other");
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--tls-client-ca", files.ca.to_str().unwrap()])
            .args(["--tls-peers", "client1.test", "--format", "json"]),
    );
    let ca = files.ca.as_path();
    let out = s_client(
        addr,
        "127.0.0.1",
        ca,
        Some((&good_cert, &good_key)),
        b"<13>hello over TLS\n",
        true,
    );
    assert!(!out.contains("alert"), "{out}");
    let records = json_records(&d, 1);
    assert_eq!(records[0]["line"], "<13>hello over TLS", "{:?}", records[0]);
    assert_eq!(records[0]["tls_peer"], "client1.test", "{:?}", records[0]);
    assert!(
        records[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let refused: [(&str, Option<(&Path, &Path)>, &str); 4] = [
        (
            "127.0.0.2",
            None,
            "no client certificate (tls_client_ca requires one)",
        ),
        (
            "127.0.0.3",
            Some((&stranger_cert, &stranger_key)),
            "client certificate not issued by a CA in tls_client_ca",
        ),
        (
            "127.0.0.4",
            Some((&expired_cert, &expired_key)),
            "client certificate expired",
        ),
        (
            "127.0.0.5",
            Some((&other_cert, &other_key)),
            "client certificate not in tls_peers (DNS:client2.test",
        ),
    ];
    for (i, (from, cert, why)) in refused.iter().enumerate() {
        let out = s_client(addr, from, ca, *cert, b"<13>must not be recorded\n", false);
        assert!(out.contains("alert"), "{from}: the client hears why: {out}");
        let line = d.log.wait_for(&format!("refused TLS client {from}:"));
        assert!(line.contains(why), "{line}");
        wait_for_failures(&d, addr, i as u64 + 1);
    }
    // Plaintext syslog on the TLS port.
    let mut plain = connect_from("127.0.0.6", addr);
    plain
        .write_all(b"<13>Dec  1 10:00:00 host app: plaintext\n")
        .unwrap();
    let line = d.log.wait_for("refused TLS client 127.0.0.6:");
    assert!(
        line.contains("not a TLS client: its first bytes are not a TLS ClientHello (it starts with '<': plaintext syslog on the TLS port?)"),
        "{line}"
    );
    wait_for_failures(&d, addr, 5);
    // The same address again within the minute: counted, not logged.
    s_client(addr, "127.0.0.2", ca, None, b"again\n", false);
    wait_for_failures(&d, addr, 6);
    assert_eq!(
        d.log.matching("refused TLS client 127.0.0.2:").len(),
        1,
        "{:#?}",
        d.log.all()
    );
    // Nothing of theirs recorded.
    assert_eq!(d.output().lines().count(), 1, "{}", d.output());
    let stats = d.wait_for_stats("tls_handshake_failures=6");
    assert!(stats.contains("lines=1 "), "{stats}");
}

/// rsyslogd (omfwd with the gtls stream driver, mutual TLS, `x509/name` checking logsinkd's
/// certificate against `StreamDriverPermittedPeers`) forwards logger's messages to logsinkd's
/// TLS listener, octet-counted: each arrives once, with its fields, and `tls_peer` names
/// rsyslogd's certificate.
#[test]
fn rsyslogd_gtls_forwards_every_message() {
    let gtls = [
        "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
        "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
    ];
    if !gtls.iter().any(|p| Path::new(p).exists()) {
        skip("rsyslog's gtls driver is not installed (apt-get install rsyslog-gnutls)");
        return;
    }
    if tool("logger", "bsdutils").is_none() {
        return;
    }
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let client = files.pki.issue(&["rsyslog.test"], Validity::Now);
    let (client_cert, client_key) = client.write(dir, "rsyslog");
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--tls-client-ca", files.ca.to_str().unwrap()])
            .args(["--tls-peers", "rsyslog.test"])
            .args(["--parse", "syslog", "--format", "json"]),
    );
    let socket = dir.join("log.sock");
    let Some(_rs) = PrivateRsyslogd::start(
        dir,
        &format!(
            r#"global(DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
if $programname != "rsyslogd" then action(type="omfwd" target="127.0.0.1" port="{port}"
    protocol="tcp" StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
    StreamDriverPermittedPeers="localhost" TCP_Framing="octet-counted"
    template="RSYSLOG_SyslogProtocol23Format")
"#,
            ca = files.ca.display(),
            cert = client_cert.display(),
            key = client_key.display(),
            socket = socket.display(),
            port = addr.port(),
        ),
    ) else {
        return;
    };
    wait_until("rsyslogd's socket", DEADLINE, || {
        socket.exists().then_some(())
    });
    let socket = socket.to_str().unwrap();
    const SEVERITIES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    let sent: Vec<(String, &str)> = (0..100)
        .map(|i| {
            (
                format!("message {i} over TLS h\u{e9}llo [x]"),
                SEVERITIES[i % 8],
            )
        })
        .collect();
    for (text, severity) in &sent {
        let pri = format!("local3.{severity}");
        logger(&[
            "-u",
            socket,
            "--socket-errors=on",
            "-t",
            "app",
            "--id=4242",
            "-p",
            &pri,
            text,
        ]);
    }
    logger(&[
        "-u",
        socket,
        "--socket-errors=on",
        "-t",
        "app",
        "--id=4242",
        "the end",
    ]);
    let records = json_records(&d, sent.len() + 1);
    let wanted = sent
        .iter()
        .map(|(t, s)| (t.as_str(), "local3", *s))
        .chain([("the end", "user", "notice")]);
    for (i, (r, (text, facility, severity))) in records.iter().zip(wanted).enumerate() {
        let field = |name: &str| r.get(name).and_then(Value::as_str);
        assert_eq!(field("app"), Some("app"), "{i}: {r}");
        assert_eq!(field("procid"), Some("4242"), "{i}: {r}");
        assert_eq!(field("facility"), Some(facility), "{i}: {r}");
        assert_eq!(field("severity"), Some(severity), "{i}: {r}");
        assert_eq!(field("tls_peer"), Some("rsyslog.test"), "{i}: {r}");
        let msg = field("msg").unwrap();
        let msg = msg.strip_suffix("\\x0a").unwrap_or(msg);
        assert_eq!(msg, format!(" {text}"), "{i}: {r}");
    }
    // Nothing twice, nothing refused.
    d.log.wait_for("listening on");
    assert_eq!(d.output().lines().count(), sent.len() + 1);
    assert!(
        d.log.matching("refused TLS client").is_empty(),
        "{:#?}",
        d.log.all()
    );
}
