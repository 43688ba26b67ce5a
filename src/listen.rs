//! Getting the listening sockets: bound here (`--listen` for TCP, `--listen-udp` for UDP), or
//! adopted from systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, see
//! sd_listen_fds(3)): `ListenStream=` sockets are TCP listeners, `ListenDatagram=` ones UDP.
//! Passed sockets logsinkd cannot serve are refused at start, naming them, rather than taken and
//! then failed: unix-domain sockets (a path in `ListenStream=`), sockets of other families
//! and types, and more sockets than the event loop has tokens for (`MAX_LISTENERS`).
//!
//! Both happen before daemonizing and before dropping privileges, so a port below 1024 works
//! and "address in use" reaches the person who typed the command.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::FromRawFd;

use anyhow::{Context, Result, bail};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::event_loop::MAX_LISTENERS;

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

/// Receive buffer asked for on UDP sockets, so a burst waits in the kernel instead of being
/// dropped there (UDP has no flow control). The kernel caps it at net.core.rmem_max.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

/// Binds one UDP socket.
pub fn bind_udp(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = (|| {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_recv_buffer_size(UDP_RECV_BUFFER)?;
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(socket)
    })()
    .with_context(|| format!("binding udp {addr}"))?;
    Ok(socket.into())
}

/// Sockets to receive on, each with the name used in messages.
#[derive(Default)]
pub struct Listeners {
    pub tcp: Vec<(TcpListener, String)>,
    pub udp: Vec<(UdpSocket, String)>,
}

/// The sockets systemd passed, or `None` if it passed none. Fails, naming the socket, if one is
/// not a TCP listener or a UDP socket, and if there are more than `MAX_LISTENERS`.
pub fn from_systemd() -> Result<Option<Listeners>> {
    let fds = sd_notify::listen_fds_with_names().context("reading LISTEN_FDS")?;
    if fds.len() == 0 {
        return Ok(None);
    }
    if fds.len() > MAX_LISTENERS {
        // Refused rather than serving the first MAX_LISTENERS: the others would be announced
        // and their clients connect (the kernel accepts into the backlog), yet never be served.
        bail!(
            "socket activation: systemd passed {} sockets; logsinkd serves at most \
             {MAX_LISTENERS} (ListenStream= and ListenDatagram= together)",
            fds.len()
        );
    }
    let mut listeners = Listeners::default();
    for (fd, name) in fds {
        // SAFETY: sd_listen_fds(3) hands these descriptors to this process; nothing else owns them.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        let local = socket.local_addr().ok();
        // `unknown` is what sd_listen_fds_with_names(3) gives without LISTEN_FDNAMES.
        let what = match name.as_str() {
            "unknown" => format!("fd {fd} at {}", describe(local.as_ref())),
            name => format!("fd {fd} `{name}` at {}", describe(local.as_ref())),
        };
        // Only IP sockets: the event loop serves TCP and UDP (peers are IP addresses); a unix
        // listener would be taken as TCP, its every client accepted and then dropped.
        let domain = socket.domain().ok();
        if !matches!(domain, Some(Domain::IPV4 | Domain::IPV6)) {
            bail!(
                "socket activation: {what} is {}; logsinkd serves only TCP and UDP sockets \
                 (ListenStream= and ListenDatagram= with an IP address and port)",
                match domain {
                    Some(Domain::UNIX) => "a unix-domain socket".to_string(),
                    Some(d) => format!("a socket of address family {}", libc::c_int::from(d)),
                    None => "not a socket".to_string(),
                }
            );
        }
        let kind = socket.r#type().ok();
        let listening = socket.is_listener().unwrap_or(false);
        socket
            .set_nonblocking(true)
            .with_context(|| format!("socket activation: {what}"))?;
        match kind {
            Some(Type::STREAM) if listening => listeners.tcp.push((socket.into(), name)),
            Some(Type::DGRAM) => listeners.udp.push((socket.into(), name)),
            _ => bail!(
                "socket activation: {what} is neither a listening stream socket nor \
                 a datagram socket; logsinkd.socket needs ListenStream= or ListenDatagram= \
                 (and Accept=no)"
            ),
        }
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

/// A passed socket's address as named in messages: `127.0.0.1:5140`, a unix socket's path.
fn describe(addr: Option<&SockAddr>) -> String {
    let Some(addr) = addr else {
        return "address unknown".into();
    };
    if let Some(ip) = addr.as_socket() {
        return ip.to_string();
    }
    match (addr.as_pathname(), addr.as_abstract_namespace()) {
        (Some(path), _) => path.display().to_string(),
        (_, Some(name)) => format!("@{}", String::from_utf8_lossy(name)),
        _ => "unnamed".into(),
    }
}

/// Binds the configured addresses.
pub fn bind_all(tcp: &[SocketAddr], udp: &[SocketAddr], backlog: u32) -> Result<Listeners> {
    Ok(Listeners {
        tcp: tcp
            .iter()
            .map(|&addr| Ok((bind(addr, backlog)?, addr.to_string())))
            .collect::<Result<_>>()?,
        udp: udp
            .iter()
            .map(|&addr| Ok((bind_udp(addr)?, format!("udp {addr}"))))
            .collect::<Result<_>>()?,
    })
}
