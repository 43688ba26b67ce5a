//! What the event loop needs of unix sockets, behind its `Listener`, `Stream` and
//! `DatagramSocket` variants: accepting a stream client with its credentials as the peer, and
//! receiving a datagram with its sender's. Everything else (framing, turns, back-pressure,
//! idle timers, the shutdown drain) is the same code as for TCP and UDP.

use std::cell::Cell;
use std::io;
use std::os::fd::AsFd;

use mio::net::{UnixDatagram, UnixListener, UnixStream};

use crate::diag::warning;
use crate::unix::cred::{self, Cred};

/// Accepts one stream client; its peer is the credentials of the process that connected
/// (`SO_PEERCRED`, asked once here, never per read).
pub fn accept(listener: &UnixListener) -> io::Result<(UnixStream, Box<[u8]>)> {
    let (stream, _) = listener.accept()?;
    // Cannot fail on a connected unix socket; a peer without credentials is `unix:unknown`.
    let cred = cred::peer_cred(stream.as_fd()).ok();
    Ok((stream, Cred::peer_text(cred).into_bytes().into()))
}

/// A socket's name in messages: `unix /run/logsinkd/in.sock`, `unix-dgram /dev/log`
/// (`kind` first), `@name` for an abstract one.
fn name(kind: &str, addr: io::Result<std::os::unix::net::SocketAddr>) -> io::Result<String> {
    use std::os::linux::net::SocketAddrExt;
    let addr = addr?;
    Ok(match (addr.as_pathname(), addr.as_abstract_name()) {
        (Some(path), _) => format!("{kind} {}", path.display()),
        (_, Some(name)) => format!("{kind} @{}", String::from_utf8_lossy(name)),
        _ => format!("{kind} (unnamed)"),
    })
}

/// A listener's name in `listening on` messages: `unix /run/logsinkd/in.sock`.
pub fn listener_name(listener: &UnixListener) -> io::Result<String> {
    name("unix", listener.local_addr())
}

/// A unix datagram socket (`SO_PASSCRED` set, see bind.rs and listen.rs).
pub struct UnixDgram {
    pub socket: UnixDatagram,
    /// A datagram too big for the read buffer was cut (logged once per socket).
    cut_logged: Cell<bool>,
}

impl UnixDgram {
    pub fn new(socket: UnixDatagram) -> UnixDgram {
        UnixDgram {
            socket,
            cut_logged: Cell::new(false),
        }
    }

    /// Receives one datagram into `buf`; `peer` is set to its sender's credentials. A datagram
    /// larger than `buf` (the 64 KiB read buffer; unix datagrams can be larger, UDP ones not)
    /// is recorded cut to that size: the kernel drops the rest. Said once per socket.
    pub fn recv(&self, buf: &mut [u8], peer: &mut Vec<u8>) -> io::Result<usize> {
        let got = cred::recv_with_cred(self.socket.as_fd(), buf)?;
        peer.clear();
        Cred::write_peer(got.cred, peer);
        if got.size > got.len && !self.cut_logged.replace(true) {
            warning!(
                "{}: a datagram of {} bytes from {} was cut to {} bytes (datagrams longer than \
                 that are cut; said once)",
                self.local_name().unwrap_or_else(|_| "unix-dgram".into()),
                got.size,
                String::from_utf8_lossy(peer),
                got.len
            );
        }
        Ok(got.len)
    }

    /// The socket's name in messages: `unix-dgram /dev/log`.
    pub fn local_name(&self) -> io::Result<String> {
        name("unix-dgram", self.socket.local_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream client accepted through mio has its credentials as the peer, and the listener
    /// is named by its path.
    #[test]
    fn accepted_client_is_named_by_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (_stream, peer) = accept(&listener).unwrap();
        assert_eq!(&*peer, Cred::peer_text(Some(me())).as_bytes());
        assert_eq!(
            listener_name(&listener).unwrap(),
            format!("unix {}", path.display())
        );
    }

    /// A datagram's sender is its peer; a datagram over the buffer is cut to it.
    #[test]
    fn datagram_sender_is_the_peer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        let socket = UnixDatagram::bind(&path).unwrap();
        cred::pass_cred(socket.as_fd()).unwrap();
        let d = UnixDgram::new(socket);
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.send_to(b"hi", &path).unwrap();
        sender.send_to(&[b'x'; 300], &path).unwrap();
        let (mut buf, mut peer) = ([0u8; 100], b"stale".to_vec());
        assert_eq!(d.recv(&mut buf, &mut peer).unwrap(), 2);
        assert_eq!(peer, Cred::peer_text(Some(me())).as_bytes());
        assert_eq!(d.recv(&mut buf, &mut peer).unwrap(), 100);
        assert_eq!(
            d.recv(&mut buf, &mut peer).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            d.local_name().unwrap(),
            format!("unix-dgram {}", path.display())
        );
    }

    fn me() -> Cred {
        // SAFETY: getpid and getuid cannot fail.
        unsafe {
            Cred {
                pid: libc::getpid(),
                uid: libc::getuid(),
            }
        }
    }
}
