//! Test certificates made with rcgen: a CA, server and client certificates signed by it, their
//! files in a temp dir, and rustls client configurations that use them. Used by the unit tests
//! in this directory and, through `#[path]`, by the integration tests
//! (tests/integration/util/tlspki.rs): so nothing here may use the crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// When a test certificate is valid.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From a day ago to a year ahead.
    Now,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    NotYet,
}

/// A test CA.
pub struct Pki {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate.
    pub ca_der: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA's subject CN.
    pub name: String,
}

/// A certificate issued by a test CA, with its key.
pub struct Issued {
    /// The certificate (DER).
    pub der: CertificateDer<'static>,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The private key (PKCS#8 DER).
    pub key_der: Vec<u8>,
}

impl Pki {
    /// A new CA with a fresh key and a name of its own.
    pub fn new() -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Pki::named(&format!(
            "logsinkd-test-ca-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// A new CA with a fresh key and this subject CN.
    pub fn named(cn: &str) -> Pki {
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
            name: cn.to_string(),
        }
    }

    /// A certificate with these subject alternative names (IP addresses where they parse as
    /// one, else DNS names), for a server or a client, with the subject CN `logsinkd-test`.
    pub fn issue(&self, names: &[&str], validity: Validity) -> Issued {
        self.issue_as(names, validity, "logsinkd-test")
    }

    fn issue_as(&self, names: &[&str], validity: Validity, cn: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = OffsetDateTime::now_utc();
        let (from, to) = match validity {
            Validity::Now => (now - Duration::days(1), now + Duration::days(365)),
            Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
            Validity::NotYet => (now + Duration::days(1), now + Duration::days(30)),
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

    /// A client certificate with these subject alternative names (IP addresses where they
    /// parse as one, else DNS names) and the subject CN `logsinkd-test-client`.
    pub fn client(&self, names: &[&str], validity: Validity) -> Issued {
        self.issue_as(names, validity, "logsinkd-test-client")
    }

    /// A server certificate with these subject alternative names.
    pub fn server(&self, names: &[&str], validity: Validity) -> Issued {
        self.issue_as(names, validity, "logsinkd-test-server")
    }

    /// Writes the CA certificate as `dir/NAME.crt`.
    pub fn write_ca(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// A rustls client that trusts this CA and presents `client` (if any).
    pub fn client_config(&self, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match client {
            Some(client) => builder
                .with_client_auth_cert(vec![client.der.clone()], client.private_key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

impl Issued {
    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `NAME.crt` and `NAME.key` (mode 0600) in `dir`; their paths.
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
