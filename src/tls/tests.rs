//! Real TLS over real sockets on 127.0.0.1: a rustls client in a thread, the server side a
//! `TlsStream` over a `mio::net::TcpStream` driven by a mio `Poll`, as in the event loop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection};

use super::testpki::{Issued, Pki, Validity};
use super::*;

/// How long any one wait in these tests may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// The server side of one connection, with its own poll.
struct Side {
    poll: Poll,
    events: Events,
    tls: TlsStream<mio::net::TcpStream>,
}

/// A connected pair: the server side and the client's socket.
fn connect(server: &TlsServer) -> (Side, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (sock, _) = listener.accept().unwrap();
    (server_side(server, sock), client)
}

/// The server side of an accepted socket, registered with a poll of its own.
fn server_side(server: &TlsServer, sock: TcpStream) -> Side {
    sock.set_nonblocking(true).unwrap();
    let mut sock = mio::net::TcpStream::from_std(sock);
    let poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    Side {
        poll,
        events: Events::with_capacity(8),
        tls: server.accept(sock).unwrap(),
    }
}

impl Side {
    /// Waits for the next readiness event (failing the test at `deadline`), and writes what
    /// rustls has for the client, as the loop does on writable.
    fn wait(&mut self, deadline: Instant) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the deadline passed waiting for the client");
        self.poll.poll(&mut self.events, Some(left)).unwrap();
        assert!(
            !self.events.is_empty(),
            "no event from the client in {DEADLINE:?}"
        );
        self.tls.flush_tls().unwrap();
    }

    /// Reads with `buf_size` reads until the client closes (`Ok`) or the connection fails
    /// (`Err` with the reason), returning the plaintext and the number of reads that gave data.
    fn serve(&mut self, buf_size: usize) -> (Vec<u8>, usize, Result<(), String>) {
        let deadline = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        let mut reads = 0;
        let mut buf = vec![0; buf_size];
        loop {
            match self.tls.read_plaintext(&mut buf) {
                Ok(0) => return (got, reads, Ok(())),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    reads += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.wait(deadline),
                Err(err) => {
                    let reason = match TlsFailure::of(&err) {
                        Some(failure) => failure.to_string(),
                        None => format!("not a TLS failure: {err}"),
                    };
                    return (got, reads, Err(reason));
                }
            }
        }
    }

    /// Reads until `want` bytes of plaintext came, or fails the test.
    fn read_exactly(&mut self, want: usize) -> Vec<u8> {
        let deadline = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while got.len() < want {
            match self.tls.read_plaintext(&mut buf) {
                Ok(0) => panic!("closed after {} of {want} bytes", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.wait(deadline),
                Err(err) => panic!("failed after {} of {want} bytes: {err}", got.len()),
            }
        }
        got
    }
}

/// What the client saw.
struct ClientEnd {
    /// The server's certificate.
    server_cert: Option<CertificateDer<'static>>,
    /// The first error (handshake, write, or an alert read back), if any.
    error: Option<String>,
}

/// Runs a rustls client on `tcp` in a thread: finishes the handshake, writes each message from
/// `messages` until the sender is dropped, sends close_notify, then reads until the server
/// closes (so the kernel never answers the server's unread tickets with a reset).
fn client(
    mut conn: ClientConnection,
    mut tcp: TcpStream,
    messages: mpsc::Receiver<Vec<u8>>,
) -> JoinHandle<ClientEnd> {
    std::thread::spawn(move || {
        // A safety net only: the server side ends every test well before.
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut error = None;
        while conn.is_handshaking() && error.is_none() {
            if let Err(err) = conn.complete_io(&mut tcp) {
                error = Some(err.to_string());
            }
        }
        let server_cert = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned());
        if error.is_none() {
            'send: for data in messages {
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let n = conn.writer().write(rest).unwrap();
                    rest = &rest[n..];
                    while conn.wants_write() {
                        if let Err(err) = conn.write_tls(&mut tcp) {
                            error = Some(err.to_string());
                            break 'send;
                        }
                    }
                }
            }
            conn.send_close_notify();
            while conn.wants_write() && conn.write_tls(&mut tcp).is_ok() {}
        }
        loop {
            match conn.read_tls(&mut tcp) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Err(err) = conn.process_new_packets() {
                        error.get_or_insert(err.to_string());
                        break;
                    }
                    let _ = conn.reader().read(&mut [0; 4096]);
                }
            }
        }
        ClientEnd { server_cert, error }
    })
}

fn client_conn(config: Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Connects a client that sends `data` and closes; returns what the server read, how it
/// ended, the server side (for its peer name) and what the client saw.
fn exchange(
    server: &TlsServer,
    config: Arc<ClientConfig>,
    data: &[u8],
) -> (Vec<u8>, Result<(), String>, Side, ClientEnd) {
    let (mut side, tcp) = connect(server);
    let (send, messages) = mpsc::channel();
    send.send(data.to_vec()).unwrap();
    drop(send);
    let handle = client(client_conn(config), tcp, messages);
    let (got, _, end) = side.serve(4096);
    // Closing the server side ends the client's read.
    side.tls.close().ok();
    let _ = side.tls.socket().shutdown(std::net::Shutdown::Both);
    let seen = handle.join().unwrap();
    (got, end, side, seen)
}

/// A server for `pki` with these client rules, files in `dir`.
fn server(pki: &Pki, dir: &std::path::Path, ca: bool, peers: &[&str]) -> TlsServer {
    let mut settings = TlsSettings::with_files(
        pki.server(&["localhost"], Validity::Now)
            .write(dir, "server"),
    );
    if ca {
        settings.client_ca = Some(pki.write_ca(dir, "ca"));
    }
    settings.peers = peers.iter().map(|rule| rule.parse().unwrap()).collect();
    let (server, warnings) = TlsServer::load(settings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    server
}

/// With client certificates required, a client that reconnects gets a full handshake every
/// time (no session resumption, which would skip the certificate check); without them, it
/// resumes.
#[test]
fn sessions_resume_only_without_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let client_cert = pki.client(&["web1.example.net"], Validity::Now);
    let checked = server(&pki, dir.path(), true, &[]);
    let config = pki.client_config(Some(&client_cert));
    for _ in 0..2 {
        let (got, end, side, _) = exchange(&checked, config.clone(), b"x\n");
        assert_eq!((got, end), (b"x\n".to_vec(), Ok(())));
        let kind = side.tls.connection().handshake_kind();
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    }
    let dir2 = dir.path().join("open");
    std::fs::create_dir(&dir2).unwrap();
    let open = server(&pki, &dir2, false, &[]);
    let config = pki.client_config(None);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (_, end, side, _) = exchange(&open, config.clone(), b"x\n");
        assert_eq!(end, Ok(()));
        kinds.push(side.tls.connection().handshake_kind().unwrap());
    }
    assert_eq!(
        kinds,
        [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed]
    );
}

/// Without client authentication a client's lines come through and it has no peer name.
#[test]
fn a_client_without_certificates_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);
    let (got, end, side, seen) = exchange(&server, pki.client_config(None), b"<13>hello\n");
    assert_eq!(end, Ok(()));
    assert_eq!(got, b"<13>hello\n");
    assert!(side.tls.handshake_done());
    assert_eq!(side.tls.peer(), None);
    assert_eq!(seen.error, None);
}

/// With tls_client_ca, a client with a certificate from that CA is accepted and named by its
/// first DNS name; TLS 1.2 is served as well as 1.3.
#[test]
fn a_valid_client_certificate_is_accepted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), true, &[]);
    let client_cert = pki.client(&["web1.example.net", "192.0.2.7"], Validity::Now);
    let (got, end, side, _) = exchange(&server, pki.client_config(Some(&client_cert)), b"line\n");
    assert_eq!(end, Ok(()));
    assert_eq!(got, b"line\n");
    assert_eq!(side.tls.peer(), Some("web1.example.net"));
    assert_eq!(
        side.tls.connection().protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    let tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        roots
    })
    .with_client_auth_cert(vec![client_cert.der.clone()], client_cert.private_key())
    .unwrap();
    let (got, end, side, _) = exchange(&server, Arc::new(tls12), b"line\n");
    assert_eq!(end, Ok(()));
    assert_eq!(got, b"line\n");
    assert_eq!(
        side.tls.connection().protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(side.tls.peer(), Some("web1.example.net"));
}

/// Each kind of refused client fails its handshake with a reason that says which, and none of
/// its bytes come through as plaintext.
#[test]
fn refused_clients_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let other_ca = Pki::new();
    let same_name = Pki::named(&pki.name);
    let server = server(&pki, dir.path(), true, &["web1.example.net", "192.0.2.7"]);
    let cases: Vec<(&str, Option<Issued>, &str)> = vec![
        ("no certificate", None, "no client certificate"),
        (
            "another CA",
            Some(other_ca.client(&["web1.example.net"], Validity::Now)),
            "not issued by a CA in tls_client_ca",
        ),
        (
            "another CA with the same name",
            Some(same_name.client(&["web1.example.net"], Validity::Now)),
            "does not verify with the CA of that name in tls_client_ca",
        ),
        (
            "expired",
            Some(pki.client(&["web1.example.net"], Validity::Expired)),
            "client certificate expired",
        ),
        (
            "not yet valid",
            Some(pki.client(&["web1.example.net"], Validity::NotYet)),
            "client certificate refused",
        ),
        (
            "not in tls_peers",
            Some(pki.client(&["web2.example.net", "192.0.2.8"], Validity::Now)),
            "client certificate not in tls_peers (DNS:web2.example.net, IP:192.0.2.8, sha256:",
        ),
    ];
    for (what, cert, want) in cases {
        let (got, end, side, seen) =
            exchange(&server, pki.client_config(cert.as_ref()), b"secret\n");
        let reason = end.expect_err(what);
        assert!(reason.contains(want), "{what}: {reason:?} lacks {want:?}");
        assert!(got.is_empty(), "{what}: {got:?} came through");
        assert_eq!(side.tls.peer(), None, "{what}");
        assert!(seen.error.is_some(), "{what}: the client saw no error");
    }
}

/// An IP rule accepts a certificate with that IP address (and names the client by it when it
/// has no DNS name); a fingerprint rule pins a self-signed certificate without any CA.
#[test]
fn ip_and_fingerprint_rules_accept_their_client() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server_ip = server(&pki, dir.path(), true, &["2001:db8::7"]);
    let by_ip = pki.client(&["2001:DB8:0::7"], Validity::Now);
    let (got, end, side, _) = exchange(&server_ip, pki.client_config(Some(&by_ip)), b"ip\n");
    assert_eq!((got, end), (b"ip\n".to_vec(), Ok(())));
    assert_eq!(side.tls.peer(), Some("2001:db8::7"));

    // A client CA nobody else knows stands in for a self-signed client certificate.
    let private = Pki::new();
    let pinned = private.client(&[], Validity::Expired);
    let pin = fingerprint_text(&fingerprint(&pinned.der));
    let dir2 = dir.path().join("pinned");
    std::fs::create_dir(&dir2).unwrap();
    let plain_pin = format!(
        "SHA256:{}",
        pin["sha256:".len()..].to_lowercase().replace(':', "")
    );
    let server_pin = server(&pki, &dir2, false, &[&plain_pin]);
    let (got, end, side, _) = exchange(&server_pin, pki.client_config(Some(&pinned)), b"pinned\n");
    assert_eq!((got, end), (b"pinned\n".to_vec(), Ok(())));
    assert_eq!(side.tls.peer(), Some(pin.as_str()));
    let stranger = private.client(&[], Validity::Now);
    let (got, end, _, _) = exchange(&server_pin, pki.client_config(Some(&stranger)), b"no\n");
    assert!(got.is_empty());
    let reason = end.unwrap_err();
    assert!(reason.contains("not in tls_peers"), "{reason}");
}

/// A reload with a new certificate serves it to new connections, while a connection made
/// before keeps working; a reload that fails says why and keeps the last good one.
#[test]
fn reload_affects_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let first = pki.server(&["localhost"], Validity::Now);
    let settings = TlsSettings::with_files(first.write(dir.path(), "server"));
    let (mut server, _) = TlsServer::load(settings.clone()).unwrap();

    // An old client: handshake done, one line read, still open.
    let (mut old_side, old_tcp) = connect(&server);
    let (old_send, old_messages) = mpsc::channel();
    old_send.send(b"before\n".to_vec()).unwrap();
    let old = client(client_conn(pki.client_config(None)), old_tcp, old_messages);
    assert_eq!(old_side.read_exactly(7), b"before\n");

    let second = pki.server(&["localhost"], Validity::Now);
    second.write(dir.path(), "server");
    assert!(server.reload().unwrap().is_empty());
    let (_, end, _, seen) = exchange(&server, pki.client_config(None), b"new\n");
    assert_eq!(end, Ok(()));
    assert_eq!(seen.server_cert.as_ref(), Some(&second.der));

    std::fs::write(&settings.cert, "not a certificate\n").unwrap();
    let err = format!("{:#}", server.reload().unwrap_err());
    assert!(err.contains("not PEM"), "{err}");
    assert!(err.contains(&settings.cert.display().to_string()), "{err}");
    let (_, end, _, seen) = exchange(&server, pki.client_config(None), b"still\n");
    assert_eq!(end, Ok(()));
    assert_eq!(seen.server_cert.as_ref(), Some(&second.der));

    // The old connection still reads, with its old certificate.
    old_send.send(b"after\n".to_vec()).unwrap();
    drop(old_send);
    let (got, _, end) = old_side.serve(4096);
    assert_eq!((got, end), (b"after\n".to_vec(), Ok(())));
    old_side.tls.close().ok();
    let _ = old_side.tls.socket().shutdown(std::net::Shutdown::Both);
    assert_eq!(old.join().unwrap().server_cert.as_ref(), Some(&first.der));
}

/// Plaintext syslog on the TLS port, or a record header that claims an oversized record, fails
/// at once with a reason that says so.
#[test]
fn garbage_instead_of_a_client_hello_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);
    let cases: [(&[u8], &str); 4] = [
        (
            b"<13>Dec  1 12:00:00 host app: hello\n",
            "not a TLS client: its first bytes are not a TLS ClientHello (it starts with '<': \
             plaintext syslog on the TLS port?)",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", "(it starts with 'G')"),
        (
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0],
            "TLS handshake failed: received corrupt message of type MessageTooLarge",
        ),
        // A ClientHello that claims 16 MiB: refused at its header, nothing is buffered for it.
        (
            &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff],
            "TLS handshake failed: received corrupt message of type HandshakePayloadTooLarge",
        ),
    ];
    for (bytes, want) in cases {
        let (mut side, mut tcp) = connect(&server);
        tcp.write_all(bytes).unwrap();
        let (got, reads, end) = side.serve(4096);
        assert_eq!((got.len(), reads), (0, 0));
        let reason = end.unwrap_err();
        assert!(reason.contains(want), "{reason:?} lacks {want:?}");
    }
}

/// A client that trickles in a handshake message of nearly 64 KiB (which rustls would buffer
/// whole) is refused once it has sent 12 KiB, saying so.
#[test]
fn an_oversized_handshake_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);
    let (mut side, mut tcp) = connect(&server);
    // Handshake records of 16 KiB each; the first starts a ClientHello of 65,280 bytes.
    let mut bytes = Vec::new();
    for n in 0..4 {
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
        let mut payload = vec![0u8; 16384];
        if n == 0 {
            payload[..4].copy_from_slice(&[0x01, 0x00, 0xff, 0x00]);
        }
        bytes.extend_from_slice(&payload);
    }
    let writer = std::thread::spawn(move || {
        // The server stops reading and closes; the rest of the write may fail.
        let _ = tcp.write_all(&bytes);
        tcp
    });
    let (got, _, end) = side.serve(4096);
    assert!(got.is_empty());
    let reason = end.unwrap_err();
    assert_eq!(
        reason,
        "the client sent more than 12 KiB without completing its handshake"
    );
    drop(side);
    writer.join().unwrap();
}

/// A client that sends half a ClientHello and stalls leaves the stream at WouldBlock with the
/// handshake not done (the event loop's handshake timeout ends such a client); when the rest
/// comes, the handshake completes.
#[test]
fn half_a_client_hello_waits() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);
    let (mut side, mut tcp) = connect(&server);
    let mut conn = client_conn(pki.client_config(None));
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let half = hello.len() / 2;
    tcp.write_all(&hello[..half]).unwrap();

    // Wait until the bytes arrived (a readable event), then read them.
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0; 4096];
    loop {
        side.wait(deadline);
        if side.events.iter().any(|event| event.is_readable()) {
            break;
        }
    }
    let err = side.tls.read_plaintext(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(!side.tls.handshake_done());
    assert!(!side.tls.wants_write());
    let err = side.tls.read_plaintext(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

    tcp.write_all(&hello[half..]).unwrap();
    let (send, messages) = mpsc::channel();
    send.send(b"late\n".to_vec()).unwrap();
    drop(send);
    let handle = client(conn, tcp, messages);
    let (got, _, end) = side.serve(4096);
    assert_eq!((got, end), (b"late\n".to_vec(), Ok(())));
    assert!(side.tls.handshake_done());
    side.tls.close().ok();
    let _ = side.tls.socket().shutdown(std::net::Shutdown::Both);
    assert_eq!(handle.join().unwrap().error, None);
}

/// A 1 MiB burst comes through whole and in order, through many reads, also with a read buffer
/// smaller than a TLS record (rustls holds at most 16 KiB of plaintext: each read must drain it).
#[test]
fn a_one_mib_burst_is_read_completely() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);
    let burst: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| {
            if i % 100 == 99 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    for buf_size in [1000, 64 * 1024] {
        let (mut side, tcp) = connect(&server);
        let (send, messages) = mpsc::channel();
        send.send(burst.clone()).unwrap();
        drop(send);
        let handle = client(client_conn(pki.client_config(None)), tcp, messages);
        let (got, reads, end) = side.serve(buf_size);
        assert_eq!(end, Ok(()));
        assert!(
            got == burst,
            "{} of {} bytes, not equal",
            got.len(),
            burst.len()
        );
        assert!(reads >= burst.len() / 16384, "{reads} reads");
        side.tls.close().ok();
        let _ = side.tls.socket().shutdown(std::net::Shutdown::Both);
        assert_eq!(handle.join().unwrap().error, None);
    }
}

/// OpenSSL's client (another TLS stack than rustls) with a client certificate is served over
/// TLS 1.2 and 1.3, its line read and its certificate named.
#[test]
fn openssl_s_client_is_served() {
    use std::process::{Command, Stdio};
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "in CI nothing may be skipped: openssl (Debian package openssl) is missing"
        );
        eprintln!("skipped: needs openssl (Debian package openssl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), true, &["relay.example.org"]);
    let (client_cert, client_key) = pki
        .client(&["relay.example.org"], Validity::Now)
        .write(dir.path(), "client");
    for version in ["-tls1_2", "-tls1_3"] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut openssl = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-verify_return_error",
                version,
                "-connect",
            ])
            .arg(listener.local_addr().unwrap().to_string())
            .arg("-CAfile")
            .arg(dir.path().join("ca.crt"))
            .arg("-cert")
            .arg(&client_cert)
            .arg("-key")
            .arg(&client_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (sock, _) = listener.accept().unwrap();
        let mut side = server_side(&server, sock);
        let mut stdin = openssl.stdin.take().unwrap();
        stdin.write_all(b"<13>from openssl\n").unwrap();
        assert_eq!(side.read_exactly(17), b"<13>from openssl\n", "{version}");
        assert_eq!(side.tls.peer(), Some("relay.example.org"), "{version}");
        let want = match version {
            "-tls1_2" => rustls::ProtocolVersion::TLSv1_2,
            _ => rustls::ProtocolVersion::TLSv1_3,
        };
        assert_eq!(side.tls.connection().protocol_version(), Some(want));
        openssl.kill().unwrap();
        openssl.wait().unwrap();
    }
}

/// A socket whose reads hand out one chunk each and whose writes block until `open`.
struct Stuck {
    chunks: std::collections::VecDeque<Vec<u8>>,
    open: bool,
    written: usize,
}

impl Read for Stuck {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(chunk) = self.chunks.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        assert!(chunk.len() <= buf.len());
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.open {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client that does not read its socket cannot make the server buffer without bound: while
/// the handshake reply is stuck, nothing more is read from the socket; once the socket takes
/// it, the reply goes out.
#[test]
fn reading_stops_while_the_reply_is_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);
    let mut conn = client_conn(pki.client_config(None));
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let sock = Stuck {
        chunks: [hello, vec![0x17; 4096], vec![0x17; 4096]].into(),
        open: false,
        written: 0,
    };
    let mut tls = server.accept(sock).unwrap();
    let mut buf = [0; 4096];
    for _ in 0..3 {
        let err = tls.read_plaintext(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(tls.wants_write());
        assert_eq!(
            tls.socket().chunks.len(),
            2,
            "read on while the reply was stuck"
        );
    }
    tls.socket_mut().open = true;
    tls.flush_tls().unwrap();
    assert!(!tls.wants_write());
    assert!(tls.socket().written > 0);
}

/// A client that disconnects mid-handshake, or in the middle of a record after sending a
/// line, is an end like a plain TCP client's: `Ok(0)`, what came whole before it delivered,
/// the handshake state telling the two apart.
#[test]
fn a_disconnect_mid_handshake_or_mid_record_is_an_end() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = server(&pki, dir.path(), false, &[]);

    let (mut side, mut tcp) = connect(&server);
    let mut conn = client_conn(pki.client_config(None));
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    tcp.write_all(&hello[..hello.len() / 2]).unwrap();
    drop(tcp);
    let (got, _, end) = side.serve(4096);
    assert_eq!((got, end), (Vec::new(), Ok(())));
    assert!(!side.tls.handshake_done());

    let (mut side, tcp) = connect(&server);
    let conn = client_conn(pki.client_config(None));
    let handle = std::thread::spawn(move || {
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"whole\n").unwrap();
        tls.flush().unwrap();
        let (mut conn, mut tcp) = (tls.conn, tls.sock);
        conn.writer().write_all(b"cut short\n").unwrap();
        let mut record = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut record).unwrap();
        }
        tcp.write_all(&record[..record.len() / 2]).unwrap();
        // Half-close and read the server's tickets until it closes, so that closing does not
        // answer them with a reset.
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let _ = io::copy(&mut tcp, &mut io::sink());
    });
    let (got, _, end) = side.serve(4096);
    assert!(side.tls.handshake_done());
    let _ = side.tls.socket().shutdown(std::net::Shutdown::Both);
    handle.join().unwrap();
    assert_eq!((got, end), (b"whole\n".to_vec(), Ok(())));
}
