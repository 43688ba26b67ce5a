//! The TLS files (`tls_cert`, `tls_key`, `tls_client_ca`) read into a rustls `ServerConfig`,
//! with errors that name the key, the file and what is wrong with it.
//!
//! A path that starts with `%d/` names a systemd credential: `tls_key = "%d/logsinkd.key"` is
//! the file `logsinkd.key` in `$CREDENTIALS_DIRECTORY`, where `LoadCredential=logsinkd.key:...`
//! put it. `%d` is systemd's own specifier for that directory, so the unit's `ExecStart=` and
//! the config file spell it the same way. Any other path is used as written.
//!
//! Expired or not yet valid certificates are warnings, not errors: refusing to start would stop
//! every listener (plaintext ones too) and lose the logs, while the fix (a renewed certificate
//! and SIGHUP) works without a restart; nginx and rsyslog start with an expired certificate
//! too. The warning names the file and the date.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rustls::pki_types::pem::{self, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::peer::{PeerRule, PeerVerifier};

/// The prefix of a path that names a systemd credential (systemd's specifier for
/// `$CREDENTIALS_DIRECTORY`).
pub const CREDENTIAL_PREFIX: &str = "%d/";

/// What a TLS listener needs, as the config file writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `tls_cert`: the server's certificate chain (PEM), its own certificate first.
    pub cert: PathBuf,
    /// `tls_key`: the server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `tls_client_ca`: when set, clients must present a certificate issued by a CA in it.
    pub client_ca: Option<PathBuf>,
    /// `tls_peers`: when not empty, only client certificates matching one of these.
    pub peers: Vec<PeerRule>,
}

#[cfg(test)]
impl TlsSettings {
    /// Settings with this certificate and key (`Issued::write`'s files), no client rules.
    pub(crate) fn with_files((cert, key): (PathBuf, PathBuf)) -> TlsSettings {
        TlsSettings {
            cert,
            key,
            ..TlsSettings::default()
        }
    }
}

/// A loaded configuration and what an admin should hear about it.
pub struct Loaded {
    /// The rustls configuration for new connections.
    pub config: Arc<ServerConfig>,
    /// Problems that do not stop loading (an expired certificate, a key others can read),
    /// each naming its file.
    pub warnings: Vec<String>,
}

impl TlsSettings {
    /// Reads the files, resolving `%d/` paths in `$CREDENTIALS_DIRECTORY`.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        self.load_with(credentials.as_deref(), UnixTime::now())
    }

    /// Reads the files, with the credentials directory and the time given.
    pub fn load_with(&self, credentials: Option<&Path>, now: UnixTime) -> anyhow::Result<Loaded> {
        let mut warnings = Vec::new();
        let cert_path = resolve("tls_cert", &self.cert, credentials)?;
        let key_path = resolve("tls_key", &self.key, credentials)?;
        let ca_path = match &self.client_ca {
            Some(ca) => Some(resolve("tls_client_ca", ca, credentials)?),
            None => None,
        };

        let chain = load_certs("tls_cert", &cert_path)?;
        check_dates("tls_cert", &cert_path, &chain[0], now, &mut warnings)?;
        let key = load_key(&key_path)?;
        warn_if_world_readable(&key_path, &mut warnings);

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = match &ca_path {
            Some(ca_path) => Some(client_verifier(ca_path, &provider, now, &mut warnings)?),
            None => None,
        };
        let verifier: Option<Arc<dyn ClientCertVerifier>> = match (verifier, self.peers.is_empty())
        {
            (chain, true) => chain,
            (chain, false) => {
                if chain.is_none() {
                    if let Some(rule) = self
                        .peers
                        .iter()
                        .find(|rule| !matches!(rule, PeerRule::Fingerprint(_)))
                    {
                        bail!(
                            "tls_peers names {rule} but tls_client_ca is not set: without a CA \
                             anyone can make a certificate with that name. Set tls_client_ca, or \
                             list only sha256: fingerprints"
                        );
                    }
                }
                Some(Arc::new(PeerVerifier {
                    chain,
                    rules: self.peers.clone(),
                    algorithms: provider.signature_verification_algorithms,
                }))
            }
        };

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("choosing the TLS versions")?;
        let client_auth = verifier.is_some();
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|err| match err {
                rustls::Error::InconsistentKeys(_) => anyhow!(
                    "tls_key {} does not match the certificate in tls_cert {} (their public keys \
                 differ)",
                    key_path.display(),
                    cert_path.display()
                ),
                other => anyhow!(
                    "tls_key {}: the key cannot be used: {other}",
                    key_path.display()
                ),
            })?;
        // Syslog clients send no early data; 0-RTT data could be replayed.
        config.max_early_data_size = 0;
        if client_auth {
            // A resumed session skips the client-certificate check: without resumption every
            // connection is checked against the CA, its dates and tls_peers as they are now.
            // Syslog connections are long-lived; a full handshake per connection costs little.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(Loaded {
            config: Arc::new(config),
            warnings,
        })
    }
}

/// The file a TLS key names: a `%d/NAME` credential in `credentials`, or the path as written.
pub fn resolve(key: &str, written: &Path, credentials: Option<&Path>) -> anyhow::Result<PathBuf> {
    let Some(name) = written
        .to_str()
        .and_then(|text| text.strip_prefix(CREDENTIAL_PREFIX))
    else {
        return Ok(written.to_path_buf());
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!(
            "{key} {}: a credential is %d/ and a file name (as in LoadCredential=NAME:...)",
            written.display()
        );
    }
    match credentials {
        Some(dir) if !dir.as_os_str().is_empty() => Ok(dir.join(name)),
        _ => bail!(
            "{key} {} names a systemd credential, but $CREDENTIALS_DIRECTORY is not set (is \
             there LoadCredential={name}:/path/to/file in the unit?)",
            written.display()
        ),
    }
}

/// The file's bytes, or an error that says whether it is missing or unreadable.
fn read(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| {
        let what = match err.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let uid = unsafe { libc::geteuid() };
                format!(
                    "cannot be read by user {uid} (it is read again at SIGHUP, after \
                     privileges are dropped)"
                )
            }
            _ => format!("cannot be read: {err}"),
        };
        anyhow!("{key} {}: {what}", path.display())
    })
}

/// The PEM sections of a file, or an error that says it is not PEM.
fn sections(key: &str, path: &Path) -> anyhow::Result<Vec<(SectionKind, Vec<u8>)>> {
    let bytes = read(key, path)?;
    let mut reader: &[u8] = &bytes;
    let mut found = Vec::new();
    loop {
        match pem::from_buf(&mut reader as &mut dyn BufRead) {
            Ok(Some(section)) => found.push(section),
            Ok(None) => break,
            Err(err) => bail!("{key} {}: broken PEM: {err:?}", path.display()),
        }
    }
    if found.is_empty() {
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            bail!(
                "{key} {}: the private key is encrypted; logsinkd needs it unencrypted \
                 (openssl pkey -in FILE -out NEW), readable only by the service",
                path.display()
            );
        }
        if text.contains("-----BEGIN ") {
            bail!("{key} {}: no certificate or key in its PEM", path.display());
        }
        bail!(
            "{key} {}: not PEM (no -----BEGIN line; a DER file converts with openssl x509 \
             -inform der / openssl pkey -inform der)",
            path.display()
        );
    }
    Ok(found)
}

fn kind_name(kind: &SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        SectionKind::EchConfigList => "ECHCONFIG",
        _ => "other",
    }
}

fn found_list(found: &[(SectionKind, Vec<u8>)]) -> String {
    let names: Vec<&str> = found.iter().map(|(kind, _)| kind_name(kind)).collect();
    names.join(", ")
}

/// The certificates in a PEM file, in order; an error if there is none.
fn load_certs(key: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let found = sections(key, path)?;
    let certs: Vec<CertificateDer<'static>> = found
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        bail!(
            "{key} {}: no certificate in it (it holds: {})",
            path.display(),
            found_list(&found)
        );
    }
    for (n, cert) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(cert.as_ref()).is_err() {
            bail!(
                "{key} {}: certificate {} of {} is not a valid X.509 certificate",
                path.display(),
                n + 1,
                certs.len()
            );
        }
    }
    Ok(certs)
}

/// The one private key in a PEM file.
fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let found = sections("tls_key", path)?;
    let mut keys = found.iter().filter_map(|(kind, der)| match kind {
        SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(der.clone().into())),
        SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(der.clone().into())),
        SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(der.clone().into())),
        _ => None,
    });
    let Some(key) = keys.next() else {
        bail!(
            "tls_key {}: no private key in it (it holds: {})",
            path.display(),
            found_list(&found)
        );
    };
    if keys.next().is_some() {
        bail!(
            "tls_key {}: more than one private key in it; keep the one for tls_cert",
            path.display()
        );
    }
    Ok(key)
}

/// Warns about a certificate outside its validity period (see the module's note on why this is
/// a warning).
fn check_dates(
    key: &str,
    path: &Path,
    cert: &CertificateDer<'_>,
    now: UnixTime,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| anyhow!("{key} {}: not a valid X.509 certificate", path.display()))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = parsed.validity();
    if validity.not_after.timestamp() < now {
        warnings.push(format!(
            "{key} {}: the certificate expired on {}; clients will refuse it until it is \
             renewed (then SIGHUP)",
            path.display(),
            validity.not_after
        ));
    } else if validity.not_before.timestamp() > now {
        warnings.push(format!(
            "{key} {}: the certificate is not valid before {}; clients will refuse it until then",
            path.display(),
            validity.not_before
        ));
    }
    Ok(())
}

/// Warns when every user can read the private key.
fn warn_if_world_readable(path: &Path, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        warnings.push(format!(
            "tls_key {}: every user can read this private key (mode {:o}); chmod o-r it",
            path.display(),
            meta.permissions().mode() & 0o7777
        ));
    }
}

/// The chain check against `tls_client_ca`: an error if the file holds no CA certificate.
fn client_verifier(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    now: UnixTime,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let certs = load_certs("tls_client_ca", path)?;
    let mut roots = RootCertStore::empty();
    let mut not_ca = 0;
    for cert in certs.iter() {
        let is_ca = x509_parser::parse_x509_certificate(cert.as_ref())
            .map(|(_, parsed)| parsed.is_ca())
            .unwrap_or(false);
        if !is_ca {
            not_ca += 1;
            continue;
        }
        check_dates("tls_client_ca", path, cert, now, warnings)?;
        roots.add(cert.clone()).map_err(|err| {
            anyhow!(
                "tls_client_ca {}: a CA certificate cannot be used: {err}",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        bail!(
            "tls_client_ca {}: no CA certificate in it ({} certificate(s), none with \
             basicConstraints CA:TRUE); to accept one client certificate, list its sha256: \
             fingerprint in tls_peers",
            path.display(),
            certs.len()
        );
    }
    if not_ca > 0 {
        warnings.push(format!(
            "tls_client_ca {}: {not_ca} certificate(s) in it are not CAs and are ignored",
            path.display()
        ));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| anyhow!("tls_client_ca {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::{Pki, Validity};
    use std::os::unix::fs::PermissionsExt;

    /// Settings for a server certificate from `pki`, written in `dir`.
    fn settings(pki: &Pki, dir: &Path, validity: Validity) -> TlsSettings {
        let server = pki.server(&["localhost", "127.0.0.1"], validity);
        TlsSettings::with_files(server.write(dir, "server"))
    }

    fn load_err(settings: &TlsSettings) -> String {
        match settings.load_with(None, UnixTime::now()) {
            Ok(_) => panic!("{settings:?} loaded"),
            Err(err) => format!("{err:#}"),
        }
    }

    /// A good certificate and key load without warnings; with a CA and rules too.
    #[test]
    fn good_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let mut tls = settings(&pki, dir.path(), Validity::Now);
        let loaded = tls.load_with(None, UnixTime::now()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        tls.client_ca = Some(pki.write_ca(dir.path(), "ca"));
        tls.peers = vec!["client.example".parse().unwrap()];
        let loaded = tls.load_with(None, UnixTime::now()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.max_early_data_size, 0);
    }

    /// Each broken file is refused with the key, the path and the problem.
    #[test]
    fn bad_files_are_named_with_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let good = settings(&pki, dir.path(), Validity::Now);
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let key_text = std::fs::read_to_string(&good.key).unwrap();
        let cert_text = std::fs::read_to_string(&good.cert).unwrap();

        let missing = dir.path().join("missing.pem");
        let cases: Vec<(TlsSettings, String)> = vec![
            (
                TlsSettings {
                    cert: missing.clone(),
                    ..good.clone()
                },
                format!("tls_cert {}: does not exist", missing.display()),
            ),
            (
                TlsSettings {
                    cert: file("garbage.pem", "hello\n"),
                    ..good.clone()
                },
                "garbage.pem: not PEM".into(),
            ),
            (
                TlsSettings {
                    cert: file("keyonly.pem", &key_text),
                    ..good.clone()
                },
                "keyonly.pem: no certificate in it (it holds: PRIVATE KEY)".into(),
            ),
            (
                TlsSettings {
                    key: file("certonly.pem", &cert_text),
                    ..good.clone()
                },
                "tls_key".to_string()
                    + " "
                    + &dir.path().join("certonly.pem").display().to_string()
                    + ": no private key in it (it holds: CERTIFICATE)",
            ),
            (
                TlsSettings {
                    key: file(
                        "enc.pem",
                        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                    ),
                    ..good.clone()
                },
                "enc.pem: the private key is encrypted".into(),
            ),
            (
                TlsSettings {
                    client_ca: Some(file("ca-none.pem", &key_text)),
                    ..good.clone()
                },
                "tls_client_ca ".to_string()
                    + &dir.path().join("ca-none.pem").display().to_string()
                    + ": no certificate in it",
            ),
            (
                TlsSettings {
                    client_ca: Some(good.cert.clone()),
                    ..good.clone()
                },
                "no CA certificate in it (1 certificate(s), none with basicConstraints CA:TRUE)"
                    .into(),
            ),
            (
                TlsSettings {
                    peers: vec!["client.example".parse().unwrap()],
                    ..good.clone()
                },
                "tls_peers names client.example but tls_client_ca is not set".into(),
            ),
        ];
        for (settings, want) in cases {
            let got = load_err(&settings);
            assert!(got.contains(&want), "want {want:?}, got {got:?}");
        }
    }

    /// A key from another certificate is refused as not matching, naming both files.
    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let one = settings(&pki, dir.path(), Validity::Now);
        let other_dir = dir.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        let other = settings(&pki, &other_dir, Validity::Now);
        let mixed = TlsSettings {
            key: other.key.clone(),
            ..one.clone()
        };
        let got = load_err(&mixed);
        let want = format!(
            "tls_key {} does not match the certificate in tls_cert {}",
            other.key.display(),
            one.cert.display()
        );
        assert!(got.contains(&want), "{got}");
    }

    /// An unreadable key is refused saying so (skipped as root, who reads everything).
    #[test]
    fn an_unreadable_key_is_named() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("skipped: root reads files whatever their mode");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let tls = settings(&pki, dir.path(), Validity::Now);
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o000)).unwrap();
        let got = load_err(&tls);
        assert!(got.contains("cannot be read by user"), "{got}");
    }

    /// An expired certificate, or one not yet valid, loads with a warning naming the file and
    /// the date; so does a key every user can read.
    #[test]
    fn expired_certificates_and_open_keys_warn() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let tls = settings(&pki, dir.path(), Validity::Expired);
        let loaded = tls.load_with(None, UnixTime::now()).unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("the certificate expired on"));
        assert!(loaded.warnings[0].contains(&tls.cert.display().to_string()));

        let tls = settings(&pki, dir.path(), Validity::NotYet);
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = tls.load_with(None, UnixTime::now()).unwrap();
        let all = loaded.warnings.join("\n");
        assert!(all.contains("is not valid before"), "{all}");
        assert!(
            all.contains("every user can read this private key (mode 644)"),
            "{all}"
        );
    }

    /// `%d/NAME` is NAME in the credentials directory; without one, or with a path after %d/,
    /// it is an error that says what to do; other paths stay as written.
    #[test]
    fn credential_paths_resolve_in_the_credentials_directory() {
        let creds = Path::new("/run/credentials/logsinkd.service");
        assert_eq!(
            resolve("tls_key", Path::new("%d/logsinkd.key"), Some(creds)).unwrap(),
            creds.join("logsinkd.key")
        );
        assert_eq!(
            resolve("tls_key", Path::new("keys/a.key"), Some(creds)).unwrap(),
            Path::new("keys/a.key")
        );
        let err = resolve("tls_key", Path::new("%d/logsinkd.key"), None).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("$CREDENTIALS_DIRECTORY is not set"), "{err}");
        assert!(err.contains("LoadCredential=logsinkd.key:"), "{err}");
        for bad in ["%d/", "%d/../etc/shadow", "%d/a/b", "%d/.."] {
            let err = resolve("tls_cert", Path::new(bad), Some(creds)).unwrap_err();
            assert!(
                format!("{err}").contains("a credential is %d/ and a file name"),
                "{bad}"
            );
        }
    }

    /// Loading through a credentials directory reads the files there.
    #[test]
    fn settings_load_from_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        settings(&pki, dir.path(), Validity::Now);
        let tls = TlsSettings {
            cert: "%d/server.crt".into(),
            key: "%d/server.key".into(),
            ..TlsSettings::default()
        };
        tls.load_with(Some(dir.path()), UnixTime::now()).unwrap();
        let err = format!("{:#}", tls.load_with(None, UnixTime::now()).err().unwrap());
        assert!(
            err.starts_with("tls_cert %d/server.crt names a systemd credential"),
            "{err}"
        );
    }
}
