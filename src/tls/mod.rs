//! Syslog over TLS (RFC 5425): everything a TLS listener needs but its place in the event loop.
//!
//! - `files`: `TlsSettings` (`tls_cert`, `tls_key`, `tls_client_ca`, `tls_peers`) read into a
//!   rustls `ServerConfig`: ring, TLS 1.2 and 1.3, no early data; `%d/` credential paths.
//! - `peer`: the `tls_peers` rules, the client-certificate check, a client's name in records.
//! - `stream`: `TlsStream`, one non-blocking server-side connection, and `TlsFailure`, why one
//!   failed, said for a log line.
//! - `refusals`: which refused clients to log (each address once a minute, bounded).
//! - here: `TlsServer`, the configuration new connections get, replaced by `reload` only when
//!   the new files load.

mod files;
mod peer;
mod refusals;
mod stream;
// Shared with the integration tests, which use other parts of it.
#[cfg(test)]
#[allow(dead_code)]
mod testpki;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::ServerConfig;

pub use files::{CREDENTIAL_PREFIX, Loaded, TlsSettings, resolve};
pub use peer::{
    PeerRule, SubjectNames, describe, fingerprint, fingerprint_text, matches_any, peer_name,
    subject_names,
};
pub use refusals::{MAX_ADDRESSES, QUIET_FOR, Refusals, Verdict};
pub use stream::{Cause, HANDSHAKE_LIMIT, OUTGOING_LIMIT, TlsFailure, TlsStream};

/// A TLS listener's settings and the configuration loaded from them.
pub struct TlsServer {
    /// As the config file says; read again at each reload.
    settings: TlsSettings,
    /// What new connections get; existing ones hold their own `Arc` of an older one.
    config: Arc<ServerConfig>,
}

impl TlsServer {
    /// Loads the files; the warnings name the files they are about.
    pub fn load(settings: TlsSettings) -> anyhow::Result<(TlsServer, Vec<String>)> {
        let loaded = settings.load()?;
        Ok((
            TlsServer {
                settings,
                config: loaded.config,
            },
            loaded.warnings,
        ))
    }

    /// Reads the files again (SIGHUP). When they load, new connections get them and the
    /// warnings are returned; when they do not, the error says why and the old configuration
    /// stays. Connections already open keep the configuration they started with.
    pub fn reload(&mut self) -> anyhow::Result<Vec<String>> {
        let loaded = self.settings.load()?;
        self.config = loaded.config;
        Ok(loaded.warnings)
    }

    /// A TLS connection over a freshly accepted socket.
    pub fn accept<S: Read + Write>(&self, sock: S) -> Result<TlsStream<S>, rustls::Error> {
        TlsStream::new(sock, self.config.clone())
    }

    /// The configuration new connections get.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// The settings it was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}
