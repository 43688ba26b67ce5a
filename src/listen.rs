//! Getting the listening sockets: bound here (`--listen`), or adopted from systemd socket
//! activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, see sd_listen_fds(3)).
//!
//! Both happen before daemonizing and before dropping privileges, so a port below 1024 works
//! and "address in use" reaches the person who typed the command.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::FromRawFd;

use anyhow::{Context, Result, bail};
use socket2::{Domain, Socket, Type};

/// Binds one TCP listener with the given backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener> {
    let socket = (|| {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // Lets a restarted daemon bind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        socket.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(socket)
    })()
    .with_context(|| format!("binding {addr}"))?;
    Ok(socket.into())
}

/// The TCP listeners systemd passed, with their names, or `None` if it passed none.
pub fn from_systemd() -> Result<Option<Vec<(TcpListener, String)>>> {
    let fds = sd_notify::listen_fds_with_names().context("reading LISTEN_FDS")?;
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::new();
    for (fd, name) in fds {
        // SAFETY: sd_listen_fds(3) hands these descriptors to this process; nothing else owns them.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        let stream = socket.r#type().map(|t| t == Type::STREAM).unwrap_or(false);
        if !stream || !socket.is_listener().unwrap_or(false) {
            bail!(
                "socket activation: fd {fd} ({name}) is not a listening stream socket; \
                 logsinkd.socket needs ListenStream="
            );
        }
        socket
            .set_nonblocking(true)
            .with_context(|| format!("socket activation: fd {fd} ({name})"))?;
        listeners.push((socket.into(), name));
    }
    // Children must not think the sockets are theirs.
    // SAFETY: single-threaded at this point of start-up.
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    Ok(Some(listeners))
}
