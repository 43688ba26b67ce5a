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

/// A client certificate and its key, or none.
type ClientCert<'a> = Option<(&'a Path, &'a Path)>;

/// What `openssl s_client` (from the loopback address `bind`) does with `input` against the
/// TLS listener `addr`, trusting `ca` and presenting `cert` (a certificate and key), if any.
/// Returns its stdout and stderr; waits for it to end: at the end of `input` if `eof_ends`,
/// else when the server closes (so it reads the alert of a refusal).
fn s_client(
    addr: SocketAddr,
    bind: &str,
    ca: &Path,
    cert: ClientCert<'_>,
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
    let stranger = Pki::named("another CA").issue(&["client1.test"], Validity::Now);
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
    let records = d.wait_for_json(1);
    assert_eq!(records[0]["line"], "<13>hello over TLS", "{:?}", records[0]);
    assert_eq!(records[0]["tls_peer"], "client1.test", "{:?}", records[0]);
    assert!(
        records[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let refused: [(&str, ClientCert<'_>, &str); 4] = [
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
    let records = d.wait_for_json(sent.len() + 1);
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

/// A TLS client that writes `lines` as one TLS record each, then waits for nothing.
fn send_lines(client: &mut TlsClient, lines: impl IntoIterator<Item = String>) {
    for line in lines {
        client.write_all(line.as_bytes()).unwrap();
    }
    client.flush().unwrap();
}

/// The certificate logsinkd presented to `client`.
fn presented(client: &TlsClient) -> Vec<u8> {
    client.conn.peer_certificates().unwrap()[0].to_vec()
}

/// SIGHUP while a client streams: the files are read again, new connections get the new
/// certificate (checked from the client side), the streaming client keeps its connection and
/// loses nothing. A reload that fails (the key gone) is logged with the file and the reason,
/// and new connections keep getting the certificate last loaded.
#[test]
fn sighup_rotates_the_certificate_while_a_client_streams() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--format", "json"]),
    );
    let config = files.pki.client_config(None);
    let mut streaming = tls_connect(addr, config.clone());
    assert_eq!(presented(&streaming), files.server.der.to_vec());
    send_lines(&mut streaming, (0..250).map(|i| format!("streamed {i}\n")));

    let renewed = files.pki.issue(&["localhost", "127.0.0.1"], Validity::Now);
    renewed.write(dir, "server");
    d.signal(libc::SIGHUP);
    d.log.wait_for("TLS: certificate, key and CA read again");
    send_lines(
        &mut streaming,
        (250..500).map(|i| format!("streamed {i}\n")),
    );
    let mut fresh = tls_connect(addr, config.clone());
    assert_eq!(
        presented(&fresh),
        renewed.der.to_vec(),
        "new connections get the new one"
    );
    send_lines(&mut fresh, ["from the fresh client\n".to_string()]);

    // A reload that fails keeps what was loaded.
    std::fs::remove_file(&files.key).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.log.wait_for("TLS: reloading failed");
    assert!(
        line.contains(&format!("tls_key {}: does not exist", files.key.display())),
        "{line}"
    );
    let mut after = tls_connect(addr, config);
    assert_eq!(presented(&after), renewed.der.to_vec());
    send_lines(&mut after, ["after the failed reload\n".to_string()]);
    send_lines(
        &mut streaming,
        (500..600).map(|i| format!("streamed {i}\n")),
    );
    streaming.conn.send_close_notify();
    streaming.flush().unwrap();

    let records = d.wait_for_json(602);
    let lines: Vec<&str> = records
        .iter()
        .map(|r| r["line"].as_str().unwrap())
        .collect();
    let streamed: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("streamed "))
        .collect();
    let want: Vec<String> = (0..600).map(|i| format!("streamed {i}")).collect();
    assert_eq!(streamed, want, "the streaming client lost nothing");
    assert!(lines.contains(&"from the fresh client") && lines.contains(&"after the failed reload"));
    assert!(
        records.iter().all(|r| r.get("tls_peer").is_none()),
        "no client certificates asked"
    );
}

/// The first `n` bytes a TLS client sends: part of its ClientHello.
fn client_hello(config: std::sync::Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// A client that sends half a ClientHello and stalls is reset at `tls_handshake_timeout`,
/// counted and logged; meanwhile other clients are served at once.
#[test]
fn stalled_handshake_closed_at_the_timeout() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--tls-handshake-timeout", "1"]),
    );
    let config = files.pki.client_config(None);
    let hello = client_hello(config.clone());
    let mut stalled = connect_from("127.0.0.2", addr);
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    let started = std::time::Instant::now();
    let mut other = tls_connect(addr, config);
    send_lines(&mut other, ["served meanwhile\n".to_string()]);
    d.wait_for_lines(1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served before the timeout"
    );
    expect_reset(&mut stalled);
    let line = d.log.wait_for("refused TLS client 127.0.0.2:");
    assert!(
        line.contains("no complete TLS handshake within 1 s (tls_handshake_timeout)"),
        "{line}"
    );
    wait_for_failures(&d, addr, 1);
}

/// A client that completes its handshake, sends a line and half the next record and stalls
/// holds its connection (the idle timeout is off) without harm; one that disconnects in the
/// middle of a record is closed, its complete lines recorded; other clients are served; and
/// SIGTERM still ends the daemon at once.
#[test]
fn half_records_stalled_or_cut_off() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (mut d, addr) = start_tls(DaemonBuilder::new(dir).args(files.args()));
    let config = files.pki.client_config(None);
    let half_record = |client: &mut TlsClient, complete: &str, partial: &str| {
        send_lines(client, [complete.to_string()]);
        client.conn.writer().write_all(partial.as_bytes()).unwrap();
        let mut record = Vec::new();
        client.conn.write_tls(&mut record).unwrap();
        client.sock.write_all(&record[..record.len() / 2]).unwrap();
    };
    let mut stalled = tls_connect(addr, config.clone());
    half_record(
        &mut stalled,
        "complete before the stall\n",
        "never completed\n",
    );
    let mut cut = tls_connect(addr, config.clone());
    half_record(&mut cut, "complete before the cut\n", "cut off\n");
    drop(cut);
    let mut fine = tls_connect(addr, config);
    send_lines(&mut fine, ["still served\n".to_string()]);
    let lines = d.wait_for_lines(3);
    for want in [
        "complete before the stall",
        "complete before the cut",
        "still served",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.ends_with(want)).count(),
            1,
            "{lines:#?}"
        );
    }
    let started = std::time::Instant::now();
    assert!(d.stop().success());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(d.output().lines().count(), 3, "{}", d.output());
    drop(stalled);
}

/// 1,100 connections that never start a handshake: the TLS listener holds at most
/// `tls_max_handshakes` of them (the rest wait in the backlog), logs the cap once, and the
/// daemon stays small; plain TCP clients are served meanwhile. When they go, each is counted
/// as a failed handshake, and a TLS client is served again.
#[test]
fn connections_that_never_handshake_hold_the_cap() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (d, addr) = start_tls(DaemonBuilder::new(dir).args(files.args()).args([
        "--tls-max-handshakes",
        "100",
        "--backlog",
        "2048",
    ]));
    let silent: Vec<TcpStream> = (0..1100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    d.log
        .wait_for("100 TLS handshakes in progress, the cap (tls_max_handshakes)");
    let stats = d.wait_for_stats("connections open=100 ");
    assert!(stats.contains("total=100 "), "{stats}");
    send(d.addr, b"plain TCP served meanwhile\n");
    d.wait_for_lines(1);
    let rss: u64 = d
        .proc_status("VmRSS")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    assert!(rss < 64 * 1024, "VmRSS {rss} kB with 100 handshakes held");
    assert_eq!(d.log.matching("TLS handshakes in progress").len(), 1);
    drop(silent);
    wait_for_failures(&d, addr, 1100);
    let mut client = tls_connect(addr, files.pki.client_config(None));
    send_lines(&mut client, ["TLS served again\n".to_string()]);
    let lines = d.wait_for_lines(2);
    assert!(lines[1].ends_with("TLS served again"), "{lines:#?}");
}

/// SIGTERM while TLS clients stream: what they sent before the signal (held in the sockets
/// while the daemon was stopped) is all recorded, as over plain TCP.
#[test]
fn sigterm_drains_tls_clients() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (mut d, addr) = start_tls(DaemonBuilder::new(dir).args(files.args()));
    let config = files.pki.client_config(None);
    let mut clients: Vec<TlsClient> = (0..4).map(|_| tls_connect(addr, config.clone())).collect();
    // A first line each: their handshakes are done on both sides.
    for (c, client) in clients.iter_mut().enumerate() {
        send_lines(client, [format!("client {c} hello\n")]);
    }
    d.wait_for_lines(4);
    d.signal(libc::SIGSTOP);
    for (c, client) in clients.iter_mut().enumerate() {
        send_lines(client, (0..300).map(|i| format!("client {c} line {i}\n")));
    }
    for client in &clients {
        let local = client.sock.local_addr().unwrap();
        wait_until(
            "the client's bytes in the daemon's socket",
            DEADLINE,
            || (tcp_queues(local, addr)?.0 == 0).then_some(()),
        );
    }
    let (status, took) = d.stop_paused(DEADLINE);
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let out = d.output();
    for c in 0..4 {
        for i in 0..300 {
            let want = format!(" client {c} line {i}\n");
            assert_eq!(out.matches(&want).count(), 1, "{want:?} in\n{out}");
        }
    }
}

/// `--check-config` reads the TLS files: a missing key is an error naming the key and the
/// file (exit 1); an expired certificate is a warning naming the file (exit 0).
#[test]
fn check_config_reads_the_tls_files() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let check = |cert: &Path, key: &Path, extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("--check-config")
            .args(["--listen-tls", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = check(&files.cert, &files.key, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("tls_key = \"{}\"", files.key.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("listen_tls = [\"127.0.0.1:0\"]"),
        "{stdout}"
    );
    assert!(stdout.contains("tls_handshake_timeout = 10"), "{stdout}");

    let missing = dir.join("missing.key");
    let (code, _, stderr) = check(&files.cert, &missing, &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("tls_key {}: does not exist", missing.display())),
        "{stderr}"
    );

    let expired = files.pki.issue(&["localhost"], Validity::Expired);
    let (cert, key) = expired.write(dir, "expired");
    let (code, _, stderr) = check(&cert, &key, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "logsinkd: warning: tls_cert {}: the certificate expired on",
            cert.display()
        )),
        "{stderr}"
    );

    let (code, _, stderr) = check(
        &files.cert,
        &files.key,
        &["--tls-peers", "web1.example.net"],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("tls_peers names web1.example.net but tls_client_ca is not set"),
        "{stderr}"
    );
}

/// `%d/NAME` paths are files in `$CREDENTIALS_DIRECTORY`, as systemd's `LoadCredential=`
/// hands them over; a plain TLS client (no client certificate asked) is recorded, with no
/// `tls_peer`.
#[test]
fn credentials_directory_paths() {
    let dir = temp_dir();
    let dir = dir.path();
    let creds = dir.join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let files = TlsFiles::new(&creds);
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .args(["--listen-tls", "127.0.0.1:0"])
            .args(["--tls-cert", "%d/server.crt", "--tls-key", "%d/server.key"])
            .args(["--format", "json"]),
    );
    let mut client = tls_connect(addr, files.pki.client_config(None));
    tls_send(&mut client, b"with credentials\n");
    let records = d.wait_for_json(1);
    assert_eq!(records[0]["line"], "with credentials");
    assert!(records[0].get("tls_peer").is_none(), "{:?}", records[0]);
}

/// 10,000 idle TLS connections, each after its handshake holding a partial line: the daemon's
/// memory grows by a bounded amount per connection (the figure is printed; REFERENCE.md
/// carries it), and every partial line is recorded when they close.
#[test]
fn ten_thousand_idle_tls_connections() {
    crate::limits::raise_own_fd_limit();
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (mut d, addr) = start_tls(DaemonBuilder::new(dir).args(files.args()).args([
        "--format",
        "raw",
        "--backlog",
        "4096",
    ]));
    let config = files.pki.client_config(None);
    let base = peak_rss_kib(d.pid());
    let n = 10_000;
    let clients: Vec<TlsClient> = (0..n)
        .map(|i| {
            let mut client = tls_connect(addr, config.clone());
            tls_send(&mut client, format!("{i:05} {}", "p".repeat(94)).as_bytes());
            client
        })
        .collect();
    let stats = d.wait_for_stats(&format!("bytes={}", n * 100));
    assert!(stats.contains(&format!("open={n}")), "{stats}");
    let peak = peak_rss_kib(d.pid());
    let per_connection = (peak - base) * 1024 / n as u64;
    eprintln!(
        "10,000 idle TLS connections: peak RSS {peak} KiB (base {base} KiB), \
         {per_connection} bytes per connection"
    );
    drop(clients);
    let lines = d.wait_for_lines(n);
    assert_eq!(d.stop().code(), Some(0));
    assert!(lines.iter().all(|l| l.len() == 100));
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per idle TLS connection"
    );
}

/// `allow` applies to a TLS listener as to a TCP one: a client outside it is reset at accept,
/// before any TLS, and counted `denied=`; one inside is served.
#[test]
fn allow_applies_to_tls_listeners() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--allow", "127.0.0.1"]),
    );
    let mut outside = connect_from("127.0.0.2", addr);
    expect_reset(&mut outside);
    let line = d.log.wait_for(&format!("tls {addr}: denied 127.0.0.2:"));
    assert!(line.contains("not in allow"), "{line}");
    let mut inside = tls_connect(addr, files.pki.client_config(None));
    tls_send(&mut inside, b"inside allow\n");
    d.wait_for_lines(1);
    let want = format!("stats of tls {addr}: denied=1 proxy_refused=0 tls_handshake_failures=0");
    wait_until(&want, DEADLINE, || {
        d.signal(libc::SIGUSR1);
        d.log.matching(&want).pop()
    });
}

/// `gnutls-cli` (GnuTLS, the stack rsyslog uses) with a client certificate, forced to TLS 1.2
/// and then to TLS 1.3: both served and recorded with `tls_peer`.
#[test]
fn gnutls_cli_over_tls_1_2_and_1_3() {
    if !have("gnutls-cli", "gnutls-bin") {
        return;
    }
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let client = files.pki.issue(&["gnutls.test"], Validity::Now);
    let (cert, key) = client.write(dir, "gnutls");
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--tls-client-ca", files.ca.to_str().unwrap()])
            .args(["--format", "json"]),
    );
    for (i, version) in ["TLS1.2", "TLS1.3"].iter().enumerate() {
        let mut child = Command::new("gnutls-cli")
            .arg(format!("--priority=NORMAL:-VERS-ALL:+VERS-{version}"))
            .arg(format!("--x509cafile={}", files.ca.display()))
            .arg(format!("--x509certfile={}", cert.display()))
            .arg(format!("--x509keyfile={}", key.display()))
            .arg(format!("--port={}", addr.port()))
            .arg("localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running gnutls-cli");
        let line = format!("<13>over {version}\n");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        let records = d.wait_for_json(i + 1);
        assert_eq!(
            records[i]["line"],
            format!("<13>over {version}"),
            "{:?}",
            records[i]
        );
        assert_eq!(records[i]["tls_peer"], "gnutls.test", "{:?}", records[i]);
        let status = wait_until("gnutls-cli to end", DEADLINE, || child.try_wait().unwrap());
        assert!(status.success(), "{status}");
    }
    assert!(
        d.log.matching("refused TLS client").is_empty(),
        "{:#?}",
        d.log.all()
    );
}

/// A templated output (one file per sender) names the TLS client in `json` records as the
/// single file does, for lines that arrive together as for one alone.
#[test]
fn templated_output_names_the_tls_peer() {
    let dir = temp_dir();
    let dir = dir.path();
    let files = TlsFiles::new(dir);
    let client = files.pki.issue(&["client1.test"], Validity::Now);
    let template = dir.join("remote/{peer_ip}.log");
    let (d, addr) = start_tls(
        DaemonBuilder::new(dir)
            .args(files.args())
            .args(["--tls-client-ca", files.ca.to_str().unwrap()])
            .args(["--format", "json", "--output", template.to_str().unwrap()])
            .output(dir.join("remote/127.0.0.1.log").to_str().unwrap()),
    );
    let mut c = tls_connect(addr, files.pki.client_config(Some(&client)));
    tls_send(&mut c, b"first\nsecond\n");
    let records = d.wait_for_json(2);
    tls_send(&mut c, b"third\n");
    let records = [&records[..], &d.wait_for_json(3)[2..]].concat();
    for (r, line) in records.iter().zip(["first", "second", "third"]) {
        assert_eq!(r["line"], line, "{r:?}");
        assert_eq!(r["tls_peer"], "client1.test", "{r:?}");
    }
}
