//! Who sent it: the credentials of a unix-domain peer, as the kernel vouches for them.
//!
//! A unix client's peer in records is `unix:pid=1234,uid=1000`. For a stream client the kernel
//! records the credentials of the process that called connect(2), and `SO_PEERCRED` reads them
//! once at accept. For datagrams, a socket with `SO_PASSCRED` gets the sender's credentials with
//! every datagram (`SCM_CREDENTIALS`, read with recvmsg(2)). Either way the kernel fills them in:
//! a process can claim other credentials only with privileges (`CAP_SYS_ADMIN` for another pid,
//! `CAP_SETUID`/`CAP_SETGID` for another uid or gid), so an unprivileged local process cannot
//! pass for another. Pids and uids are as seen from logsinkd's namespaces.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Credentials of a unix peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cred {
    pub pid: libc::pid_t,
    pub uid: libc::uid_t,
}

impl Cred {
    /// The peer as written in records: `unix:pid=1234,uid=1000`. A pid of 0 is no process: the
    /// kernel gives it for a sender whose pid logsinkd's pid namespace cannot see, and for a
    /// datagram queued before `SO_PASSCRED` was set (socket activation without
    /// `PassCredentials=yes`; its uid is then the overflow uid, not the sender's). So no
    /// credentials are claimed for it: `unix:unknown`.
    pub fn peer_text(cred: Option<Cred>) -> String {
        let mut peer = Vec::new();
        Cred::write_peer(cred, &mut peer);
        String::from_utf8(peer).expect("ASCII")
    }

    /// Appends the peer as `peer_text` writes it, without a `String` of its own (once per
    /// datagram).
    pub fn write_peer(cred: Option<Cred>, peer: &mut Vec<u8>) {
        match cred {
            Some(Cred { pid, uid }) if pid != 0 => {
                // Writing into a Vec cannot fail.
                let _ = write!(peer, "unix:pid={pid},uid={uid}");
            }
            _ => peer.extend_from_slice(UNKNOWN.as_bytes()),
        }
    }
}

/// The peer of a unix client whose credentials are not known.
pub const UNKNOWN: &str = "unix:unknown";

impl From<libc::ucred> for Cred {
    fn from(c: libc::ucred) -> Cred {
        Cred {
            pid: c.pid,
            uid: c.uid,
        }
    }
}

/// The credentials of the process that connected a unix stream socket (`SO_PEERCRED`): taken
/// by the kernel at connect(2), so they name the client even if it later passes the socket on.
pub fn peer_cred(socket: BorrowedFd<'_>) -> io::Result<Cred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a valid ucred.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.into())
}

/// Asks the kernel to attach the sender's credentials to every datagram (`SO_PASSCRED`). The
/// kernel attaches them when a datagram is sent, so it must be set before the first one comes.
pub fn pass_cred(socket: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one int from the valid pointer.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram received by `recv_with_cred`.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The datagram's full size: more than `len` when it did not fit (the rest is lost).
    pub size: usize,
    /// The sender's credentials (`None` if the kernel attached none).
    pub cred: Option<Cred>,
}

/// Room for the one control message asked for: `CMSG_SPACE(sizeof(struct ucred))`, aligned as
/// `cmsghdr` needs.
#[repr(C, align(8))]
struct ControlBuf([u8; 64]);

/// Receives one datagram into `buf` with its sender's credentials (the socket needs
/// `SO_PASSCRED`). Nonblocking sockets give `WouldBlock` when none waits.
///
/// File descriptors a sender attaches (`SCM_RIGHTS`) are closed at once: the control buffer has
/// room for the credentials only, so the kernel drops any that do not fit, and any that did
/// are closed here; a local client cannot fill logsinkd's descriptor table that way.
pub fn recv_with_cred(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = ControlBuf([0; 64]);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::ucred>() as u32) } as usize;
    debug_assert!(space <= control.0.len());
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // MSG_TRUNC: return the datagram's real size even when it did not fit.
    // MSG_CMSG_CLOEXEC: a descriptor that slips through is never inherited by a child.
    // SAFETY: `msg` points to `iov` (valid for `buf.len()` bytes) and to `control` (valid for
    // `space` bytes), both alive for the call.
    let n = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_TRUNC | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    let size = n as usize;
    let mut cred = None;
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk its control buffer
    // within `msg_controllen`, and each header's data is read within its `cmsg_len`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let data_len = header.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            match (header.cmsg_level, header.cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if data_len >= size_of::<libc::ucred>() =>
                {
                    let c = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    cred = Some(c.into());
                }
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..data_len / size_of::<libc::c_int>() {
                        let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        libc::close(fd);
                    }
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Datagram {
        len: size.min(buf.len()),
        size,
        cred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    fn me() -> Cred {
        // SAFETY: getpid and getuid cannot fail.
        unsafe {
            Cred {
                pid: libc::getpid(),
                uid: libc::getuid(),
            }
        }
    }

    /// Both ends of a stream socketpair see this process as the peer.
    #[test]
    fn stream_peer_is_the_connecting_process() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(peer_cred(a.as_fd()).unwrap(), me());
        assert_eq!(peer_cred(b.as_fd()).unwrap(), me());
        assert_eq!(
            Cred::peer_text(Some(me())),
            format!("unix:pid={},uid={}", me().pid, me().uid)
        );
    }

    /// A datagram comes with its sender's credentials once SO_PASSCRED is set, and is stored
    /// whole; an empty datagram is a datagram too.
    #[test]
    fn datagram_carries_the_senders_credentials() {
        let (rx, tx) = UnixDatagram::pair().unwrap();
        pass_cred(rx.as_fd()).unwrap();
        tx.send(b"hello\n").unwrap();
        tx.send(b"").unwrap();
        let mut buf = [0u8; 64];
        let got = recv_with_cred(rx.as_fd(), &mut buf).unwrap();
        assert_eq!(
            got,
            Datagram {
                len: 6,
                size: 6,
                cred: Some(me())
            }
        );
        assert_eq!(&buf[..6], b"hello\n");
        let empty = recv_with_cred(rx.as_fd(), &mut buf).unwrap();
        assert_eq!((empty.len, empty.size, empty.cred), (0, 0, Some(me())));
        rx.set_nonblocking(true).unwrap();
        assert_eq!(
            recv_with_cred(rx.as_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    /// A datagram sent before SO_PASSCRED was set has no usable credentials: `unix:unknown`,
    /// never the overflow uid the kernel reports for it.
    #[test]
    fn datagram_sent_before_passcred_is_unknown() {
        let (rx, tx) = UnixDatagram::pair().unwrap();
        tx.send(b"early").unwrap();
        pass_cred(rx.as_fd()).unwrap();
        let mut buf = [0u8; 64];
        let got = recv_with_cred(rx.as_fd(), &mut buf).unwrap();
        assert_eq!(got.len, 5);
        assert_eq!(Cred::peer_text(got.cred), "unix:unknown");
    }

    /// A datagram larger than the buffer: what fits is stored, and the full size is told.
    #[test]
    fn oversized_datagram_is_cut_and_its_size_told() {
        let (rx, tx) = UnixDatagram::pair().unwrap();
        pass_cred(rx.as_fd()).unwrap();
        tx.send(&[b'x'; 100]).unwrap();
        let mut buf = [0u8; 10];
        let got = recv_with_cred(rx.as_fd(), &mut buf).unwrap();
        assert_eq!((got.len, got.size, got.cred), (10, 100, Some(me())));
    }

    /// Descriptors attached to a datagram (SCM_RIGHTS) are not kept: the datagram and its
    /// credentials are still read, and the descriptor the sender passed is not installed.
    #[test]
    fn attached_descriptors_are_not_kept() {
        let (rx, tx) = UnixDatagram::pair().unwrap();
        pass_cred(rx.as_fd()).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        send_with_fd(&tx, b"with fd", file.as_file().as_raw_fd());
        let mut buf = [0u8; 64];
        let got = recv_with_cred(rx.as_fd(), &mut buf).unwrap();
        assert_eq!((got.len, got.cred), (7, Some(me())));
        assert_eq!(&buf[..7], b"with fd");
        // No descriptor of this process refers to the file but the test's own.
        let open = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == file.path())
            .count();
        assert_eq!(open, 1, "the passed descriptor was kept");
    }

    /// Sends `data` with one descriptor attached (SCM_RIGHTS).
    fn send_with_fd(socket: &UnixDatagram, data: &[u8], fd: libc::c_int) {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut control = ControlBuf([0; 64]);
        // SAFETY: a message with one SCM_RIGHTS header written within `control`.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
            assert_eq!(
                libc::sendmsg(socket.as_raw_fd(), &msg, 0),
                data.len() as isize
            );
        }
    }
}
