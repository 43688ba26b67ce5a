//! Who a TLS client is: the `tls_peers` rules, the client-certificate verifier that applies
//! them during the handshake, and the name a verified client gets in records (`tls_peer`).
//!
//! Names are matched by rustls-webpki itself (`verify_is_valid_for_subject_name`), the very code
//! rustls uses to check a server's name: DNS names case-insensitively, a wildcard in the
//! certificate (`*.example.net`) standing for exactly one leftmost label (RFC 6125), IP
//! addresses as bytes, and never the subject's common name. Listing the names in a certificate
//! (for `tls_peer` and for the reason a client is refused) takes `x509-parser`, because webpki
//! does not expose them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

/// One entry of `tls_peers`: who may connect, besides being issued by `tls_client_ca`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRule {
    /// A DNS name, lowercase, without a wildcard: matches a certificate whose DNS subject
    /// alternative names include it, or a wildcard (`*.example.net`) covering it.
    Dns(String),
    /// An IP address: matches an IP subject alternative name with the same address. An
    /// IPv4-mapped IPv6 address in a rule is taken as its IPv4 address.
    Ip(IpAddr),
    /// The SHA-256 of the end-entity certificate (DER): matches that certificate only.
    Fingerprint([u8; 32]),
}

impl FromStr for PeerRule {
    type Err = String;

    /// `sha256:` then 64 hex digits (colons between pairs allowed, any case); an IPv4 or IPv6
    /// address; or a DNS name. A wildcard rule is refused: a certificate for `*.example.net` is
    /// matched by a rule naming a host under it, but a rule that admits a whole domain is what
    /// `tls_client_ca` alone (a CA that issues for that domain only) already says.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(hex) = strip_prefix_ignore_case(text, "sha256:") {
            return parse_fingerprint(hex)
                .map(PeerRule::Fingerprint)
                .ok_or_else(|| {
                    format!(
                        "tls_peers entry {text:?}: a fingerprint is sha256: and 64 hex digits \
                     (32 bytes, colons between them allowed)"
                    )
                });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerRule::Ip(ip.to_canonical()));
        }
        if text.contains('*') {
            return Err(format!(
                "tls_peers entry {text:?}: wildcards are not allowed in tls_peers (list each \
                 name; a wildcard certificate is matched by the names it covers)"
            ));
        }
        let lower = text.to_ascii_lowercase();
        // Validated with the same rules rustls applies to a server name.
        match ServerName::try_from(lower.as_str()) {
            Ok(ServerName::DnsName(_)) => Ok(PeerRule::Dns(lower)),
            _ => Err(format!(
                "tls_peers entry {text:?} is neither a DNS name, an IP address nor a \
                 sha256: fingerprint"
            )),
        }
    }
}

impl fmt::Display for PeerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerRule::Dns(name) => f.write_str(name),
            PeerRule::Ip(ip) => write!(f, "{ip}"),
            PeerRule::Fingerprint(digest) => f.write_str(&fingerprint_text(digest)),
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// 64 hex digits, optionally with a colon between each pair (as `openssl x509 -fingerprint`
/// prints them), any case.
fn parse_fingerprint(hex: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = if hex.contains(':') {
        let pairs: Vec<&str> = hex.split(':').collect();
        if pairs.iter().any(|pair| pair.len() != 2) {
            return None;
        }
        pairs.concat().into_bytes()
    } else {
        hex.as_bytes().to_vec()
    };
    if digits.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

/// `sha256:` and the digest as uppercase hex pairs with colons, as `openssl x509 -fingerprint
/// -sha256` prints it, so an admin can copy it into `tls_peers`.
pub fn fingerprint_text(digest: &[u8; 32]) -> String {
    let pairs: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
    format!("sha256:{}", pairs.join(":"))
}

/// The SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The subject alternative names of a certificate, as far as they name a host.
#[derive(Debug, Default)]
pub struct SubjectNames {
    /// The DNS names, in certificate order, as written (wildcards included).
    pub dns: Vec<String>,
    /// The IP addresses, in certificate order.
    pub ips: Vec<IpAddr>,
}

/// The DNS and IP subject alternative names of a DER certificate; none for a certificate
/// x509-parser cannot read (webpki, which verified it, is the judge of validity, not this).
pub fn subject_names(cert: &CertificateDer<'_>) -> SubjectNames {
    use x509_parser::extensions::GeneralName;
    let mut names = SubjectNames::default();
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return names;
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return names;
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => names.dns.push(dns.to_string()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    names.ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    names.ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    names
}

/// The name of a verified client in records (`tls_peer`): its certificate's first DNS subject
/// alternative name, else its first IP address, else its SHA-256 fingerprint.
pub fn peer_name(cert: &CertificateDer<'_>) -> String {
    let names = subject_names(cert);
    if let Some(dns) = names.dns.into_iter().next() {
        return dns;
    }
    if let Some(ip) = names.ips.into_iter().next() {
        return ip.to_string();
    }
    fingerprint_text(&fingerprint(cert))
}

/// Whether an end-entity certificate matches any of the rules.
pub fn matches_any(cert: &CertificateDer<'_>, rules: &[PeerRule]) -> bool {
    let digest = fingerprint(cert);
    let end_entity = webpki::EndEntityCert::try_from(cert).ok();
    rules.iter().any(|rule| match rule {
        PeerRule::Fingerprint(want) => *want == digest,
        PeerRule::Dns(name) => {
            let Ok(server_name) = ServerName::try_from(name.as_str()) else {
                return false;
            };
            end_entity
                .as_ref()
                .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&server_name).is_ok())
        }
        PeerRule::Ip(ip) => {
            let server_name = ServerName::IpAddress((*ip).into());
            end_entity
                .as_ref()
                .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&server_name).is_ok())
        }
    })
}

/// Why a certificate was refused by `tls_peers`: what it names, so the admin sees what to add.
#[derive(Debug)]
pub struct NotAPeer {
    /// The certificate's names and fingerprint, as the log line shows them.
    pub names: String,
}

impl fmt::Display for NotAPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client certificate not in tls_peers ({})", self.names)
    }
}

impl std::error::Error for NotAPeer {}

/// What a certificate names, for a log line: its DNS and IP names, and its fingerprint.
pub fn describe(cert: &CertificateDer<'_>) -> String {
    let names = subject_names(cert);
    let mut parts: Vec<String> = names.dns.iter().map(|dns| format!("DNS:{dns}")).collect();
    parts.extend(names.ips.iter().map(|ip| format!("IP:{ip}")));
    parts.push(fingerprint_text(&fingerprint(cert)));
    parts.join(", ")
}

/// The client-certificate verifier of a TLS listener with `tls_peers`: the CA's verifier (when
/// `tls_client_ca` is set) and then the rules. Without a CA the rules are fingerprints only
/// (checked at load), and the certificate is pinned: its chain and dates are not looked at, as
/// with rsyslog's `x509/fingerprint`; the handshake still proves the client holds its key.
#[derive(Debug)]
pub struct PeerVerifier {
    /// The chain check against `tls_client_ca`; `None` when only fingerprints are pinned.
    pub(crate) chain: Option<Arc<dyn ClientCertVerifier>>,
    /// `tls_peers`; empty means every certificate the chain check accepts.
    pub(crate) rules: Vec<PeerRule>,
    /// The signature algorithms of the crypto provider, for the handshake signatures.
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.chain {
            Some(chain) => chain.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_client_cert(end_entity, intermediates, now)?;
        }
        if self.rules.is_empty() || matches_any(end_entity, &self.rules) {
            return Ok(ClientCertVerified::assertion());
        }
        let refusal = NotAPeer {
            names: describe(end_entity),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(refusal)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.chain {
            Some(chain) => chain.verify_tls12_signature(message, cert, dss),
            None => rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.chain {
            Some(chain) => chain.verify_tls13_signature(message, cert, dss),
            None => rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        match &self.chain {
            Some(chain) => chain.supported_verify_schemes(),
            None => self.algorithms.supported_schemes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testpki::{Pki, Validity};

    const DIGEST_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    /// A fingerprint rule is read with or without colons, in any case, and with any case of
    /// `sha256:`; a wrong length or a stray character is refused, naming the entry.
    #[test]
    fn fingerprint_rules_parse_in_every_spelling() {
        let plain: PeerRule = format!("sha256:{DIGEST_HEX}").parse().unwrap();
        let pairs: Vec<String> = DIGEST_HEX
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect();
        let colons: PeerRule = format!("SHA256:{}", pairs.join(":").to_lowercase())
            .parse()
            .unwrap();
        assert_eq!(plain, colons);
        let PeerRule::Fingerprint(digest) = plain else {
            panic!("not a fingerprint: {plain:?}")
        };
        assert_eq!(digest[0], 0x00);
        assert_eq!(digest[15], 0xff);
        for bad in [
            "sha256:0011",
            &format!("sha256:{DIGEST_HEX}00"),
            &format!("sha256:{}g", &DIGEST_HEX[..63]),
            "sha256:00:11:2233",
        ] {
            let err = bad.parse::<PeerRule>().unwrap_err();
            assert!(err.contains(bad.trim()), "{err}");
            assert!(err.contains("64 hex digits"), "{err}");
        }
    }

    /// IP rules are parsed (v4, v6, IPv4-mapped taken as v4); DNS rules are lowercased; wildcard
    /// and malformed names are refused with a reason.
    #[test]
    fn name_and_address_rules_parse() {
        assert_eq!(
            "10.0.0.7".parse::<PeerRule>(),
            Ok(PeerRule::Ip("10.0.0.7".parse().unwrap()))
        );
        assert_eq!(
            "::ffff:10.0.0.7".parse::<PeerRule>(),
            Ok(PeerRule::Ip("10.0.0.7".parse().unwrap()))
        );
        assert_eq!(
            "2001:DB8::1".parse::<PeerRule>(),
            Ok(PeerRule::Ip("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            "Web1.Example.NET".parse::<PeerRule>(),
            Ok(PeerRule::Dns("web1.example.net".into()))
        );
        let err = "*.example.net".parse::<PeerRule>().unwrap_err();
        assert!(err.contains("wildcards are not allowed"), "{err}");
        let err = "bad name!".parse::<PeerRule>().unwrap_err();
        assert!(err.contains("neither a DNS name"), "{err}");
    }

    /// DNS rules match a certificate's DNS names case-insensitively; a wildcard certificate
    /// matches exactly one label; the subject CN and other names do not count.
    #[test]
    fn dns_rules_follow_rfc_6125() {
        let pki = Pki::new();
        let cert = pki.client(&["Web1.Example.net", "*.pool.example.net"], Validity::Now);
        let rule = |text: &str| vec![text.parse::<PeerRule>().unwrap()];
        assert!(matches_any(&cert.der, &rule("web1.example.net")));
        assert!(matches_any(&cert.der, &rule("a.pool.example.net")));
        assert!(!matches_any(&cert.der, &rule("a.b.pool.example.net")));
        assert!(!matches_any(&cert.der, &rule("pool.example.net")));
        assert!(!matches_any(&cert.der, &rule("example.net")));
        assert!(!matches_any(&cert.der, &rule("web2.example.net")));
        // The test PKI writes the subject CN "logsinkd-test-client": never matched.
        assert!(!matches_any(&cert.der, &rule("logsinkd-test-client")));
    }

    /// IP rules compare addresses, not text: `::1` in a rule matches `0:0::1` in a certificate,
    /// and an IP rule never matches a DNS name that spells the address.
    #[test]
    fn ip_rules_compare_addresses() {
        let pki = Pki::new();
        let cert = pki.client(&["0:0::1", "192.0.2.9"], Validity::Now);
        let rule = |text: &str| vec![text.parse::<PeerRule>().unwrap()];
        assert!(matches_any(&cert.der, &rule("::1")));
        assert!(matches_any(&cert.der, &rule("192.0.2.9")));
        assert!(matches_any(&cert.der, &rule("::ffff:192.0.2.9")));
        assert!(!matches_any(&cert.der, &rule("192.0.2.10")));
        let dns_cert = pki.client(&["host.example"], Validity::Now);
        assert!(!matches_any(&dns_cert.der, &rule("192.0.2.9")));
    }

    /// The record's peer name: first DNS name, else first IP, else the fingerprint, which is
    /// also exactly what a fingerprint rule for that certificate says.
    #[test]
    fn peer_names_prefer_dns_then_ip_then_fingerprint() {
        let pki = Pki::new();
        let both = pki.client(
            &["192.0.2.1", "first.example", "second.example"],
            Validity::Now,
        );
        assert_eq!(peer_name(&both.der), "first.example");
        let ip = pki.client(&["192.0.2.1", "2001:db8::2"], Validity::Now);
        assert_eq!(peer_name(&ip.der), "192.0.2.1");
        let none = pki.client(&[], Validity::Now);
        let name = peer_name(&none.der);
        assert!(name.starts_with("sha256:"), "{name}");
        assert_eq!(name.len(), "sha256:".len() + 32 * 3 - 1);
        assert!(matches_any(&none.der, &[name.parse().unwrap()]));
        assert!(!matches_any(&both.der, &[name.parse().unwrap()]));
        assert_eq!(
            describe(&both.der),
            format!(
                "DNS:first.example, DNS:second.example, IP:192.0.2.1, {}",
                fingerprint_text(&fingerprint(&both.der))
            )
        );
    }
}
