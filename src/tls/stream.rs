//! `TlsStream`: one server-side TLS connection over a non-blocking socket, in the shape the event
//! loop reads plain sockets: `read_plaintext` until `WouldBlock`, `Ok(0)` at the end.
//!
//! rustls does no I/O of its own: `read_tls` moves ciphertext from the socket into it (at most
//! one read of the socket per call), `process_new_packets` decrypts and runs the handshake, and
//! `reader()` hands out the plaintext. rustls holds at most 16 KiB of decrypted plaintext and
//! refuses `read_tls` beyond that ("received plaintext buffer full"), so `read_plaintext`
//! drains the reader before it reads the socket again, every time.
//!
//! What the event loop must do around it:
//! - register the socket for READABLE and WRITABLE (edge-triggered);
//! - on readable: `read_plaintext` until `WouldBlock` (or `Ok(0)`: closed; or an error: the
//!   handshake or the connection failed, `TlsFailure` says why; log it and close);
//! - on writable: `flush_tls`, then, if `wants_write` is now false, `read_plaintext` again:
//!   reading stops while handshake output is stuck in a full socket (see `read_plaintext`);
//! - keep the handshake timeout (10 s by default): a client that sends half a ClientHello and
//!   stalls just leaves `read_plaintext` at `WouldBlock`, and only the loop's timer ends it.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{CertificateError, ServerConfig, ServerConnection};

use super::peer::{NotAPeer, peer_name};

/// The most outgoing TLS data rustls may hold for one connection. The server writes no
/// application data (syslog is one-way); what it writes is the handshake (a few KiB, most of
/// it the certificate chain), session tickets and alerts.
pub const OUTGOING_LIMIT: usize = 64 * 1024;

/// The most a client may send before its handshake completes. A real client's flight is a
/// ClientHello (0.5 to 2 KiB) and, when asked, its certificate chain and two short messages
/// (2 to 8 KiB); rustls alone would buffer a handshake message of up to 64 KiB, and a client
/// that trickles one in could hold that much until the handshake timeout. Checked after each
/// socket read (at most 4 KiB), so rustls' receive buffer, which doubles as it grows, stops at
/// 16 KiB (at a 16 KiB limit it reached 32 KiB: 35 KB per stalled client, measured).
pub const HANDSHAKE_LIMIT: usize = 12 * 1024;

/// Why a TLS connection failed, said for a log line by its `Display`.
#[derive(Debug)]
pub struct TlsFailure {
    /// What went wrong.
    pub cause: Cause,
    /// Whether it happened before the handshake completed.
    pub during_handshake: bool,
    /// The first byte the client sent, for a client that does not speak TLS.
    pub first_byte: Option<u8>,
}

/// What ended a TLS connection.
#[derive(Debug)]
pub enum Cause {
    /// What rustls reported.
    Tls(rustls::Error),
    /// The client sent more than `HANDSHAKE_LIMIT` bytes before its handshake completed.
    HandshakeTooLarge,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rustls::Error;
        let error = match &self.cause {
            Cause::Tls(error) => error,
            Cause::HandshakeTooLarge => {
                return write!(
                    f,
                    "the client sent more than {} KiB without completing its handshake",
                    HANDSHAKE_LIMIT / 1024
                );
            }
        };
        match error {
            // 0x16 starts a TLS handshake record: such a client speaks TLS, badly.
            Error::InvalidMessage(_) | Error::InappropriateMessage { .. }
                if self.during_handshake && self.first_byte != Some(0x16) =>
            {
                f.write_str("not a TLS client: its first bytes are not a TLS ClientHello")?;
                match self.first_byte {
                    Some(b'<') => {
                        f.write_str(" (it starts with '<': plaintext syslog on the TLS port?)")
                    }
                    Some(byte) if byte.is_ascii_graphic() => {
                        write!(f, " (it starts with {:?})", byte as char)
                    }
                    Some(byte) => write!(f, " (it starts with 0x{byte:02x})"),
                    None => Ok(()),
                }
            }
            Error::NoCertificatesPresented => {
                f.write_str("no client certificate (tls_client_ca requires one)")
            }
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                f.write_str("client certificate not issued by a CA in tls_client_ca")
            }
            Error::InvalidCertificate(CertificateError::BadSignature) => f.write_str(
                "client certificate refused: its signature does not verify with the CA of that \
                 name in tls_client_ca (another CA with the same name?)",
            ),
            Error::InvalidCertificate(CertificateError::Other(other))
                if other.0.downcast_ref::<NotAPeer>().is_some() =>
            {
                write!(f, "{}", other.0)
            }
            Error::InvalidCertificate(
                err @ (CertificateError::Expired | CertificateError::ExpiredContext { .. }),
            ) => write!(f, "client certificate expired ({err})"),
            Error::InvalidCertificate(err) => write!(f, "client certificate refused: {err}"),
            Error::AlertReceived(alert) if self.during_handshake => write!(
                f,
                "the client ended the handshake with the alert {alert:?} (does it trust our \
                 certificate?)"
            ),
            Error::PeerIncompatible(_) => write!(
                f,
                "no TLS version or cipher suite in common (TLS 1.2 and 1.3 only): {error}"
            ),
            other if self.during_handshake => write!(f, "TLS handshake failed: {other}"),
            other => write!(f, "TLS error: {other}"),
        }
    }
}

impl std::error::Error for TlsFailure {}

impl TlsFailure {
    /// The failure inside an `io::Error` from `read_plaintext`, if that is what it holds.
    pub fn of(err: &io::Error) -> Option<&TlsFailure> {
        err.get_ref()?.downcast_ref::<TlsFailure>()
    }
}

/// One server-side TLS connection over `S` (a `mio::net::TcpStream` in the daemon).
pub struct TlsStream<S> {
    /// The rustls state: handshake, keys, and the buffers (bounded, see `OUTGOING_LIMIT`).
    conn: ServerConnection,
    /// The socket, non-blocking.
    sock: S,
    /// The verified client's name for records, once the handshake is done and if the client
    /// presented a certificate.
    peer: Option<String>,
    /// The first byte the client sent, kept until the handshake completes.
    first_byte: Option<u8>,
    /// How many bytes the client sent before its handshake completed (see `HANDSHAKE_LIMIT`).
    handshake_bytes: usize,
    /// The socket reached end of file.
    eof: bool,
}

/// Reads during the handshake: notes the first byte and counts the bytes.
struct HandshakeReads<'a, S> {
    sock: &'a mut S,
    first: &'a mut Option<u8>,
    count: &'a mut usize,
}

impl<S: Read> Read for HandshakeReads<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if self.first.is_none() && n > 0 {
            *self.first = Some(buf[0]);
        }
        *self.count += n;
        Ok(n)
    }
}

impl<S: Read + Write> TlsStream<S> {
    /// A new connection with the given configuration (kept for the connection's life, so a
    /// reload only affects connections made after it).
    pub fn new(sock: S, config: Arc<ServerConfig>) -> Result<TlsStream<S>, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(OUTGOING_LIMIT));
        Ok(TlsStream {
            conn,
            sock,
            peer: None,
            first_byte: None,
            handshake_bytes: 0,
            eof: false,
        })
    }

    /// Reads decrypted bytes into `buf`: `Ok(n)` with data, `Ok(0)` when the client closed
    /// (close_notify, or end of file, also during the handshake: see `handshake_done`),
    /// `WouldBlock` when the socket has nothing more, or an error: an `io::Error` holding a
    /// `TlsFailure` when the handshake or the connection failed (rustls has queued an alert;
    /// `flush_tls` sends it, best effort), any other one from the socket.
    ///
    /// While handshake output cannot be written (the client does not read its socket), this
    /// stops reading and returns `WouldBlock`: the writable event resumes it. So a client can
    /// make rustls hold at most `HANDSHAKE_LIMIT` (and one read) during the handshake, and
    /// after it one record (16 KiB) and 16 KiB of plaintext.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        debug_assert!(!buf.is_empty(), "an empty buffer would read as the end");
        loop {
            // Plaintext already decrypted first: rustls refuses to read the socket while it
            // holds 16 KiB of it.
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // Closed without close_notify: to a syslog receiver a truncation attack only
                // cuts the last line short, which a plain TCP client can do too.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
            if self.eof {
                return Ok(0);
            }
            if self.conn.wants_write() {
                self.flush_tls()?;
                if self.conn.wants_write() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
            }
            let read = if self.conn.is_handshaking() {
                self.conn.read_tls(&mut HandshakeReads {
                    sock: &mut self.sock,
                    first: &mut self.first_byte,
                    count: &mut self.handshake_bytes,
                })
            } else {
                self.conn.read_tls(&mut self.sock)
            };
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let during_handshake = self.conn.is_handshaking();
            if let Err(error) = self.conn.process_new_packets() {
                // rustls queued an alert for the client; send it if the socket takes it.
                let _ = self.flush_tls();
                return Err(self.failure(Cause::Tls(error), during_handshake));
            }
            if self.conn.is_handshaking() && self.handshake_bytes > HANDSHAKE_LIMIT {
                return Err(self.failure(Cause::HandshakeTooLarge, true));
            }
            if during_handshake && !self.conn.is_handshaking() {
                self.peer = self
                    .conn
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(peer_name);
            }
            if self.conn.wants_write() {
                // Handshake replies go out now: the writable edge came long ago.
                self.flush_tls()?;
            }
        }
    }

    fn failure(&self, cause: Cause, during_handshake: bool) -> io::Error {
        let failure = TlsFailure {
            cause,
            during_handshake,
            first_byte: self.first_byte,
        };
        io::Error::new(io::ErrorKind::InvalidData, failure)
    }

    /// Writes what rustls has for the client until the socket takes no more; `wants_write`
    /// says whether some is left for the next writable event.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Whether rustls has output for the client (the loop then waits for writable).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether the handshake has completed.
    pub fn handshake_done(&self) -> bool {
        !self.conn.is_handshaking()
    }

    /// The verified client's name for records (`tls_peer`): its certificate's first DNS name,
    /// else its first IP address, else its SHA-256 fingerprint; `None` before the handshake
    /// completes or when no client certificate is asked for.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// The rustls connection (negotiated version, cipher suite, certificates).
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Queues a close_notify and writes it if the socket takes it.
    pub fn close(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls()
    }

    /// The socket (for registering it with the poll).
    pub fn socket(&self) -> &S {
        &self.sock
    }

    /// The socket, mutable (for registering it with the poll).
    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.sock
    }
}
