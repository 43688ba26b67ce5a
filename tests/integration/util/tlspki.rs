//! TLS for the tests: a CA made with rcgen, certificates it issues (their files in the test's
//! temp dir), a logsinkd with a TLS listener, and a rustls client.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::{Daemon, DaemonBuilder};

// The CA and its certificates are the unit tests' own (src/tls/testpki.rs); not every piece of
// it is used here.
#[allow(dead_code)]
#[path = "../../../src/tls/testpki.rs"]
mod testpki;

pub use testpki::{Issued, Pki, Validity};

/// The files of a TLS test: a CA, the server's certificate (for `localhost` and 127.0.0.1)
/// and key, written in the temp dir.
pub struct TlsFiles {
    pub pki: Pki,
    pub server: Issued,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn new(dir: &Path) -> TlsFiles {
        let pki = Pki::named("logsinkd test CA");
        let server = pki.issue(&["localhost", "127.0.0.1"], Validity::Now);
        let ca = pki.write_ca(dir, "ca");
        let (cert, key) = server.write(dir, "server");
        TlsFiles {
            pki,
            server,
            ca,
            cert,
            key,
        }
    }

    /// The arguments that give logsinkd a TLS listener on a free port with these files.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--listen-tls".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// A logsinkd from `builder` (a plain TCP listener on a free port first, as `Daemon::addr`)
/// and the address of its TLS listener.
pub fn start_tls(builder: DaemonBuilder) -> (Daemon, SocketAddr) {
    let d = builder.args(["--listen", "127.0.0.1:0"]).start();
    let addr = d.log.listening_on("tls ");
    (d, addr)
}

/// A rustls client on a TCP stream, blocking.
pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client of `addr` (as `localhost`) with `config`, its handshake done.
pub fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsClient {
    tls_over(TcpStream::connect(addr).unwrap(), config)
}

/// A TLS client over `tcp` with `config`, its handshake done.
pub fn tls_over(tcp: TcpStream, config: Arc<rustls::ClientConfig>) -> TlsClient {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut client = rustls::StreamOwned::new(conn, tcp);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock).unwrap();
    }
    client
}

/// Writes `data` over TLS and flushes it.
pub fn tls_send(client: &mut TlsClient, data: &[u8]) {
    client.write_all(data).unwrap();
    client.flush().unwrap();
}
