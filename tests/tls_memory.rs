//! The memory an idle TLS connection holds after its handshake, counted by a counting
//! allocator (its own test binary, so no other test's allocations are counted).
//!
//! 1,000 server-side `TlsStream`s over unix socketpairs complete a TLS 1.3 handshake with a
//! rustls client (ECDSA P-256 certificates, as rcgen makes them) and read one line; the clients
//! are then dropped. The figure is the growth of live heap bytes from the 500th to the 1000th
//! connection, divided by 500: the shared session cache (256 entries) is full by then, so only
//! what each connection holds is counted. A second figure is a hostile client's: one that sent
//! a handshake message just under `HANDSHAKE_LIMIT` and stalls, which the event loop's
//! handshake timeout ends.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use logsinkd::tls::{HANDSHAKE_LIMIT, TlsServer, TlsSettings, TlsStream};
use rustls::pki_types::ServerName;

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test while it counts: the counter is global, the tests run in parallel.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

// The unit tests' CA and certificates (not every piece of it is used here).
#[allow(dead_code)]
#[path = "../src/tls/testpki.rs"]
mod testpki;

/// A server certificate for `localhost` and a client configuration that trusts it.
fn certificates(dir: &std::path::Path) -> (TlsSettings, Arc<rustls::ClientConfig>) {
    let pki = testpki::Pki::new();
    let (cert, key) = pki
        .server(&["localhost"], testpki::Validity::Now)
        .write(dir, "server");
    let settings = TlsSettings {
        cert,
        key,
        ..TlsSettings::default()
    };
    (settings, pki.client_config(None))
}

/// One connection through its handshake and one line, in this thread: the client and the
/// server take turns until the server has read the line.
fn connect(server: &TlsServer, client_config: &Arc<rustls::ClientConfig>) -> TlsStream<UnixStream> {
    let (server_sock, mut client_sock) = UnixStream::pair().unwrap();
    server_sock.set_nonblocking(true).unwrap();
    client_sock.set_nonblocking(true).unwrap();
    let mut tls = server.accept(server_sock).unwrap();
    let mut client = rustls::ClientConnection::new(
        client_config.clone(),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    client.writer().write_all(b"<13>one line\n").unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..20 {
        while client.wants_write() {
            client.write_tls(&mut client_sock).unwrap();
        }
        match tls.read_plaintext(&mut buf) {
            Ok(13) => {
                assert_eq!(&buf[..13], b"<13>one line\n");
                assert!(tls.handshake_done());
                return tls;
            }
            Ok(n) => panic!("read {n} bytes"),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("{err}"),
        }
        match client.read_tls(&mut client_sock) {
            Ok(_) => {
                client.process_new_packets().unwrap();
                let _ = client.reader().read(&mut buf);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("{err}"),
        }
    }
    panic!("no handshake after 20 turns");
}

/// An idle TLS connection after its handshake holds a bounded, small amount of memory (the
/// figure is printed; ARCHITECTURE.md carries it).
#[test]
fn an_idle_tls_connection_holds_little_memory() {
    let _alone = COUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (settings, client_config) = certificates(dir.path());
    let (server, _) = TlsServer::load(settings).unwrap();
    let mut open = Vec::new();
    let live_at = |n: usize, open: &mut Vec<TlsStream<UnixStream>>| {
        while open.len() < n {
            open.push(connect(&server, &client_config));
        }
        LIVE.load(Ordering::Relaxed)
    };
    let at_500 = live_at(500, &mut open);
    let at_1000 = live_at(1000, &mut open);
    let per_connection = (at_1000 - at_500) / 500;
    eprintln!(
        "live heap per idle TLS connection after its handshake: {per_connection} bytes \
         (x 10,000 = {:.1} MiB)",
        per_connection as f64 * 10_000.0 / 1048576.0
    );
    assert!(per_connection > 0);
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per connection"
    );
}

/// A connection whose client sent just under `HANDSHAKE_LIMIT` of one large handshake message
/// and stalls: the server stays at `WouldBlock`.
fn stall(server: &TlsServer) -> (TlsStream<UnixStream>, UnixStream) {
    let (server_sock, mut client_sock) = UnixStream::pair().unwrap();
    server_sock.set_nonblocking(true).unwrap();
    let mut tls = server.accept(server_sock).unwrap();
    // A record of HANDSHAKE_LIMIT - 5 bytes starting a ClientHello of 65,280.
    let len = (HANDSHAKE_LIMIT - 5) as u16;
    let mut bytes = vec![0x16, 0x03, 0x01];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&[0x01, 0x00, 0xff, 0x00]);
    bytes.resize(HANDSHAKE_LIMIT, 0);
    assert!(bytes.len() <= HANDSHAKE_LIMIT);
    client_sock.write_all(&bytes).unwrap();
    let mut buf = [0u8; 64];
    let err = tls.read_plaintext(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    assert!(!tls.handshake_done());
    (tls, client_sock)
}

/// A client stalled mid-handshake just under the limit holds a bounded amount of memory until
/// the loop's handshake timeout (the figure is printed; ARCHITECTURE.md carries it).
#[test]
fn a_stalled_handshake_holds_bounded_memory() {
    let _alone = COUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = certificates(dir.path());
    let (server, _) = TlsServer::load(settings).unwrap();
    let mut open = Vec::new();
    open.push(stall(&server));
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..200 {
        open.push(stall(&server));
    }
    let per_connection = (LIVE.load(Ordering::Relaxed) - before) / 200;
    eprintln!(
        "live heap per connection stalled mid-handshake at the limit: {per_connection} bytes \
         (x 10,000 = {:.1} MiB)",
        per_connection as f64 * 10_000.0 / 1048576.0
    );
    assert!(
        per_connection < 2 * HANDSHAKE_LIMIT as isize,
        "{per_connection} bytes"
    );
}
