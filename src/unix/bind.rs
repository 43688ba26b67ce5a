//! Binding unix-domain sockets at a path (`listen_unix`, `listen_unix_dgram`), and removing
//! them at exit.
//!
//! A path is only ever taken over from a socket nobody listens on: a path that exists and is
//! not a socket (a file, a directory, a symbolic link) is refused, a socket something still
//! listens on is refused as in use, and a stale one (left by a daemon that was killed) is
//! removed, saying so. The socket is created with its mode (`unix_mode`, through the umask
//! during bind(2), so there is no chmod to race with), then given its owner and group
//! (`unix_owner`, `unix_group`) by lchown(2), which never follows a symbolic link someone put in
//! its place; until then only logsinkd's own user and group can connect. At exit the file is
//! removed, if it is still the one logsinkd created.

use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::diag::{self, Level};
use crate::sink::{FileId, file_id, file_kind, still_names};
use crate::unix::cred;
use crate::unix::settings::Access;

/// Longest path a unix socket can be bound at: `sun_path` holds 108 bytes with the NUL.
const MAX_PATH: usize = 107;

/// A socket file logsinkd created. Dropping it removes the file, unless it has been replaced
/// meanwhile (another daemon's socket at the same path is never removed).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the socket created.
    id: FileId,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if !still_names(&self.path, self.id) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            // After dropping privileges the user may not write the socket's directory.
            diag::log(
                Level::Warning,
                format_args!(
                    "removing socket {}: {e}; the next start removes it as stale",
                    self.path.display()
                ),
            );
        }
    }
}

/// Binds a listening unix stream socket at `path`.
pub fn bind_stream(
    path: &Path,
    backlog: u32,
    access: &Access,
) -> Result<(UnixListener, SocketFile)> {
    let (socket, file) = bind_at(path, Type::STREAM, access, |socket| {
        socket.listen(backlog.min(i32::MAX as u32) as i32)
    })
    .with_context(|| format!("binding unix {}", path.display()))?;
    Ok((socket.into(), file))
}

/// Binds a unix datagram socket at `path`, asking for each datagram's sender (`SO_PASSCRED`).
pub fn bind_dgram(path: &Path, access: &Access) -> Result<(UnixDatagram, SocketFile)> {
    let (socket, file) = bind_at(path, Type::DGRAM, access, |_| Ok(()))
        .with_context(|| format!("binding unix-dgram {}", path.display()))?;
    Ok((socket.into(), file))
}

/// Makes the socket, clears the way, binds, applies `setup` (listen, SO_PASSCRED) and the
/// access settings. On any failure after the bind the file is removed again.
fn bind_at(
    path: &Path,
    kind: Type,
    access: &Access,
    setup: impl FnOnce(&Socket) -> std::io::Result<()>,
) -> Result<(Socket, SocketFile)> {
    // Absolute, so the file can be removed at exit after the daemon moved to `/`.
    let path = std::path::absolute(path).context("resolving the path")?;
    let len = path.as_os_str().len();
    if len > MAX_PATH {
        bail!("the path is {len} bytes long; a unix socket's path has at most {MAX_PATH}");
    }
    let socket = Socket::new(Domain::UNIX, kind, None).context("creating the socket")?;
    if kind == Type::DGRAM {
        // Before the bind, so no datagram arrives without its sender's credentials.
        cred::pass_cred(socket.as_fd()).context("setting SO_PASSCRED")?;
    }
    clear_stale(&path)?;
    let addr = SockAddr::unix(&path)?;
    with_umask(!access.mode & 0o777, || socket.bind(&addr))?;
    let meta = std::fs::symlink_metadata(&path).context("reading the socket file")?;
    let file = SocketFile {
        path,
        id: file_id(&meta),
    };
    setup(&socket)?;
    socket.set_nonblocking(true)?;
    if access.owner.is_some() || access.group.is_some() {
        std::os::unix::fs::lchown(
            &file.path,
            access.owner.as_ref().map(|o| o.id),
            access.group.as_ref().map(|g| g.id),
        )
        .context("changing the socket's owner")?;
    }
    Ok((socket, file))
}

/// Clears the way for a socket at `path`: nothing there is fine; a stale socket is removed
/// (and said so); a socket in use, or anything that is not a socket, is an error.
fn clear_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context("checking the path"),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        bail!(
            "the path exists and is {}, not a socket; logsinkd replaces only a stale socket",
            file_kind(&meta)
        );
    }
    // Whether anything listens: a connect of either type reaches a live socket (one of the
    // other type answers EPROTOTYPE), and only a socket nobody has open refuses it.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None).context("creating a probe")?;
    probe.set_nonblocking(true).context("creating a probe")?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            std::fs::remove_file(path).context("removing the stale socket")?;
            diag::log(
                Level::Warning,
                format_args!(
                    "removed stale socket {} (no process listened on it)",
                    path.display()
                ),
            );
            Ok(())
        }
        Ok(()) => bail!("the socket is in use: another process listens on it"),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPROTOTYPE | libc::EAGAIN)) => {
            bail!("the socket is in use: another process listens on it")
        }
        Err(e) => Err(e).context("checking whether the socket is in use"),
    }
}

/// Runs `f` with the process's umask set to `mask`, then restores it. The umask is
/// process-wide: the daemon binds at start-up, before any other thread exists; the lock keeps
/// callers on several threads (unit tests) from getting each other's mask.
fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _only_us = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: umask cannot fail.
    let old = unsafe { libc::umask(mask) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unix::settings::Named;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    fn access(mode: u32) -> Access {
        Access {
            mode,
            owner: None,
            group: None,
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// A stream socket gets its mode, takes clients, and is removed when its file is dropped.
    #[test]
    fn stream_socket_mode_and_removal_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.sock");
        let (listener, file) = bind_stream(&path, 8, &access(0o660)).unwrap();
        assert_eq!(mode_of(&path), 0o660);
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok());
        drop(file);
        assert!(!path.exists(), "removed at exit");
    }

    /// A datagram socket gets its mode, and each datagram its sender's credentials.
    #[test]
    fn dgram_socket_mode_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (socket, _file) = bind_dgram(&path, &access(0o620)).unwrap();
        assert_eq!(mode_of(&path), 0o620);
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"msg", &path)
            .unwrap();
        let mut buf = [0u8; 16];
        let got = cred::recv_with_cred(socket.as_fd(), &mut buf).unwrap();
        // SAFETY: getpid cannot fail.
        assert_eq!(got.cred.map(|c| c.pid), Some(unsafe { libc::getpid() }));
    }

    /// A socket nobody listens on is removed and the new one bound in its place.
    #[test]
    fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.sock");
        // A socket bound and closed leaves its file behind, as a killed daemon's does.
        drop(UnixListener::bind(&path).unwrap());
        drop(UnixDatagram::bind(dir.path().join("dgram")).unwrap());
        let (_listener, _file) = bind_stream(&path, 8, &access(0o600)).unwrap();
        let _client = UnixStream::connect(&path).unwrap();
        let (_socket, _file) = bind_dgram(&dir.path().join("dgram"), &access(0o600)).unwrap();
    }

    /// A socket another process listens on is refused as in use, whatever its type, and left
    /// alone.
    #[test]
    fn socket_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("stream.sock");
        let dgram = dir.path().join("dgram.sock");
        let _live = UnixListener::bind(&stream).unwrap();
        let _live_dgram = UnixDatagram::bind(&dgram).unwrap();
        for (path, is_stream) in [
            (&stream, true),
            (&dgram, false),
            (&stream, false),
            (&dgram, true),
        ] {
            let err = if is_stream {
                format!("{:#}", bind_stream(path, 8, &access(0o600)).unwrap_err())
            } else {
                format!("{:#}", bind_dgram(path, &access(0o600)).unwrap_err())
            };
            assert!(
                err.contains("in use") && err.contains(path.to_str().unwrap()),
                "{err}"
            );
        }
        let _still = UnixStream::connect(&stream).unwrap();
    }

    /// A path that exists and is not a socket is refused, naming the path and what it is, and
    /// left as it was.
    #[test]
    fn non_socket_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        for (path, what) in [
            (&file, "a regular file"),
            (&link, "a symbolic link"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            let err = format!("{:#}", bind_stream(path, 8, &access(0o600)).unwrap_err());
            assert!(
                err.contains(path.to_str().unwrap()) && err.contains(what),
                "{err}"
            );
            let err = format!("{:#}", bind_dgram(path, &access(0o600)).unwrap_err());
            assert!(err.contains(what), "{err}");
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        assert!(!dir.path().join("elsewhere").exists());
    }

    /// A socket file replaced after the bind (another daemon took the path) is not removed.
    #[test]
    fn replaced_socket_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.sock");
        let (_listener, file) = bind_stream(&path, 8, &access(0o600)).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _other = UnixListener::bind(&path).unwrap();
        drop(file);
        assert!(path.exists());
    }

    /// A relative path is bound relative to the current directory and kept absolute, so the
    /// removal at exit works after the daemon moved to `/`; an over-long path is refused
    /// naming the limit.
    #[test]
    fn paths_absolute_and_not_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(120));
        let err = format!("{:#}", bind_stream(&long, 8, &access(0o600)).unwrap_err());
        assert!(err.contains("at most 107"), "{err}");
        let (_l, file) = bind_stream(&dir.path().join("a.sock"), 8, &access(0o600)).unwrap();
        assert!(file.path().is_absolute());
    }

    /// As root: the socket gets the owner and group asked for, and its mode.
    #[test]
    fn owner_and_group_are_set() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to change a socket's owner");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.sock");
        let access = Access {
            mode: 0o640,
            owner: Some(Named {
                name: "65534".into(),
                id: 65534,
            }),
            group: Some(Named {
                name: "65533".into(),
                id: 65533,
            }),
        };
        let (_socket, _file) = bind_dgram(&path, &access).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (65534, 65533, 0o640)
        );
    }
}
