//! The TLS scenarios' clients and certificates: a CA and a server certificate (for
//! `localhost` and 127.0.0.1) made once with rcgen and written into each run's directory, and
//! rustls clients that complete their handshakes before the clock starts, then encrypt each
//! connection's messages up front, so the timed part sends ciphertext as fast as the receiver
//! takes it (the clients' own encryption is not what is measured).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};

use std::net::TcpStream;

/// The CA certificate, and the server's certificate and key, PEM.
struct Pki {
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca.distinguished_name
            .push(DnType::CommonName, "ingest bench CA");
        let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
        let key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server parameters");
        let issuer = Issuer::from_params(&ca, &ca_key);
        let cert = server
            .signed_by(&key, &issuer)
            .expect("the server certificate");
        Pki {
            ca_der: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    })
}

/// The files a TLS receiver needs in `dir`: (CA, certificate, key).
pub fn write_files(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let pki = pki();
    let files = [
        ("ca.crt", &pki.ca_pem),
        ("server.crt", &pki.cert_pem),
        ("server.key", &pki.key_pem),
    ]
    .map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).map(|()| path)
    });
    let [ca, cert, key] = files;
    let err = |e: std::io::Error| format!("writing the TLS files: {e}");
    Ok((ca.map_err(err)?, cert.map_err(err)?, key.map_err(err)?))
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki().ca_der.clone()).expect("the CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// A TLS client for the bench's connections.
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            config: client_config(),
            name: ServerName::try_from("localhost").expect("a server name"),
        }
    }

    /// Completes a TLS handshake on connection `i` (blocking) and returns `plain` encrypted
    /// for it, in records of up to 16 KiB, ending with the close_notify alert a well-behaved
    /// sender ends with. Called right after each connect, as real clients handshake: a
    /// receiver may cap the handshakes in progress.
    pub fn handshake_and_encrypt(
        &self,
        i: usize,
        sock: &mut TcpStream,
        plain: &[u8],
    ) -> Result<Vec<u8>, String> {
        let err = |e: std::io::Error| format!("TLS on connection {i}: {e}");
        let mut conn = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| format!("TLS on connection {i}: {e}"))?;
        while conn.is_handshaking() {
            conn.complete_io(sock).map_err(err)?;
        }
        let mut cipher = Vec::with_capacity(plain.len() + plain.len() / 64 + 64);
        for chunk in plain.chunks(16 * 1024) {
            conn.writer().write_all(chunk).map_err(err)?;
            while conn.wants_write() {
                conn.write_tls(&mut cipher).map_err(err)?;
            }
        }
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut cipher).map_err(err)?;
        }
        Ok(cipher)
    }
}
