//! TLS for the tests: a CA made with rcgen, certificates it issues (their files in the test's
//! temp dir), a logsinkd with a TLS listener, and a rustls client.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use time::{Duration, OffsetDateTime};

use super::{Daemon, DaemonBuilder};

/// When a test certificate is valid.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From a day ago to a year ahead.
    Now,
    /// Ended yesterday.
    Expired,
}

/// A test CA.
pub struct Pki {
    params: CertificateParams,
    key: KeyPair,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
}

/// A certificate a test CA issued, with its key.
pub struct Issued {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Pki {
    /// A CA with a fresh key and the subject CN `cn`.
    pub fn new(cn: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            params,
            key,
        }
    }

    /// A certificate with these subject alternative names (IP addresses where they parse as
    /// one, else DNS names), for a server or a client.
    pub fn issue(&self, names: &[&str], validity: Validity) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "logsinkd-test");
        let now = OffsetDateTime::now_utc();
        let (from, to) = match validity {
            Validity::Now => (now - Duration::days(1), now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
        };
        params.not_before = from;
        params.not_after = to;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Issued {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes the CA certificate as `dir/NAME.crt`.
    pub fn write_ca(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// A rustls client configuration that trusts this CA and presents `client`, if any.
    pub fn client_config(&self, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        Arc::new(match client {
            Some(client) => builder
                .with_client_auth_cert(vec![client.der.clone()], client.private_key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        })
    }
}

impl Issued {
    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `dir/NAME.crt` and `dir/NAME.key` (mode 0600); their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }
}

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
        let pki = Pki::new("logsinkd test CA");
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
    let line = d.log.wait_for("listening on tls ");
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
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
