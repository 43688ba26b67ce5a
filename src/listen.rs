//! Getting the listening sockets: bound here (`--listen` for TCP, `--listen-udp` for UDP,
//! `--listen-unix` and `--listen-unix-dgram` for unix-domain sockets, see unix/bind.rs), or
//! adopted from systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, see
//! sd_listen_fds(3)) by domain and type: a `ListenStream=` socket is a TCP or unix stream
//! listener, a `ListenDatagram=` one a UDP or unix datagram socket. Passed sockets logsinkd
//! cannot serve are refused at start, naming them, rather than taken and then failed: sockets
//! of other families and types (`ListenSequentialPacket=`, netlink, ...), and more sockets than
//! the event loop has tokens for (`MAX_LISTENERS`). Adopted unix sockets belong to systemd:
//! logsinkd never removes their files.
//!
//! Both happen before daemonizing and before dropping privileges, so a port below 1024 works
//! and "address in use" reaches the person who typed the command.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};

use anyhow::{Context, Result, bail};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::datagram::DatagramSocket;
use crate::event_loop::MAX_LISTENERS;
use crate::input::{Input, Inputs, ListenAddr};
use crate::listener::Listener;
use crate::unix::bind::{SocketFile, bind_dgram, bind_stream};
use crate::unix::cred;
use crate::unix::settings::UnixSettings;

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

/// Sockets to receive on, each with the name used in messages and its listener's settings.
#[derive(Default)]
pub struct Listeners {
    pub tcp: Named<TcpListener>,
    pub udp: Named<UdpSocket>,
    /// TLS listeners (`listen_tls`): TCP listeners whose clients speak TLS.
    pub tls: Named<TcpListener>,
    /// Unix stream listeners: `unix /run/logsinkd/in.sock`.
    pub unix: Named<UnixListener>,
    /// Unix datagram sockets, with `SO_PASSCRED` set: `unix-dgram /dev/log`.
    pub unix_dgram: Named<UnixDatagram>,
    /// The socket files logsinkd created, to be removed at exit by dropping them (none for
    /// adopted sockets: systemd owns those).
    pub socket_files: Vec<SocketFile>,
    /// The metrics endpoint's listener (`metrics_listen`), if any.
    pub metrics: Option<TcpListener>,
}

/// Listen backlog of the metrics listener: a few scrapers, and a flood of connects waits (or
/// is refused) in the kernel rather than in logsinkd.
pub const METRICS_BACKLOG: u32 = 64;

/// Sockets of one kind, each with its name in messages and its listener's framing and parsing.
pub type Named<T> = Vec<(T, String, Input)>;

impl Listeners {
    /// The sockets as the event loop serves them, each with its name in messages: the stream
    /// listeners (TCP, then unix) and the datagram sockets (UDP, then unix). Take
    /// `socket_files` first: they are dropped here.
    pub fn into_parts(self) -> (Named<Listener>, Named<DatagramSocket>) {
        fn convert<S, T: From<S>>(list: Named<S>) -> impl Iterator<Item = (T, String, Input)> {
            list.into_iter()
                .map(|(socket, name, input)| (T::from(socket), name, input))
        }
        let tls = self
            .tls
            .into_iter()
            .map(|(socket, name, input)| (Listener::tls(socket), name, input));
        let streams = convert(self.tcp)
            .chain(tls)
            .chain(convert(self.unix))
            .collect();
        let datagrams = convert(self.udp).chain(convert(self.unix_dgram)).collect();
        (streams, datagrams)
    }
}

/// The sockets systemd passed, or `None` if it passed none. Fails, naming the socket, if one is
/// not a TCP or unix stream listener or a UDP or unix datagram socket, and if there are more
/// than `MAX_LISTENERS`.
/// Each socket's settings are those of the listener at its address (`inputs`); a TCP listener
/// bound to `metrics` (`metrics_listen`) is the metrics endpoint's, one bound to an address in
/// `tls` (`listen_tls`) a TLS listener.
pub fn from_systemd(
    inputs: &Inputs,
    metrics: Option<SocketAddr>,
    tls: &[SocketAddr],
) -> Result<Option<Listeners>> {
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
        let at = describe(local.as_ref());
        let local_ip = local.as_ref().and_then(SockAddr::as_socket);
        let input = local
            .as_ref()
            .and_then(listen_addr)
            .map_or_else(|| inputs.default.clone(), |addr| inputs.at(&addr));
        // `unknown` is what sd_listen_fds_with_names(3) gives without LISTEN_FDNAMES.
        let what = match name.as_str() {
            "unknown" => format!("fd {fd} at {at}"),
            name => format!("fd {fd} `{name}` at {at}"),
        };
        // By domain and type: each kind of socket is served by its own code (peers are IP
        // addresses or unix credentials), so a socket is never taken for another kind.
        let domain = socket.domain().ok();
        let unix = match domain {
            Some(Domain::IPV4 | Domain::IPV6) => false,
            Some(Domain::UNIX) => true,
            _ => bail!(
                "socket activation: {what} is {}; logsinkd serves only TCP, UDP and unix-domain \
                 sockets (ListenStream= and ListenDatagram= with an IP address and port, or a \
                 path)",
                match domain {
                    Some(d) => format!("a socket of address family {}", libc::c_int::from(d)),
                    None => "not a socket".to_string(),
                }
            ),
        };
        let kind = socket.r#type().ok();
        let listening = socket.is_listener().unwrap_or(false);
        socket
            .set_nonblocking(true)
            .with_context(|| format!("socket activation: {what}"))?;
        match kind {
            Some(Type::STREAM) if listening && unix => {
                listeners
                    .unix
                    .push((socket.into(), format!("unix {at}"), input))
            }
            Some(Type::STREAM) if listening && local_ip.is_some() && local_ip == metrics => {
                listeners.metrics = Some(socket.into())
            }
            Some(Type::STREAM) if listening && local_ip.is_some_and(|a| tls.contains(&a)) => {
                let input = local
                    .as_ref()
                    .and_then(listen_addr)
                    .map_or_else(|| inputs.default.clone(), |addr| inputs.at_tls(&addr));
                let name = format!("tls {at}");
                listeners.tls.push((socket.into(), name, input))
            }
            Some(Type::STREAM) if listening => listeners.tcp.push((socket.into(), name, input)),
            Some(Type::DGRAM) if unix => {
                // Datagrams sent before this carry no credentials (`unix:unknown`): the unit
                // should say `PassCredentials=yes`, which sets it before the first one.
                cred::pass_cred(socket.as_fd())
                    .with_context(|| format!("socket activation: {what}: setting SO_PASSCRED"))?;
                listeners
                    .unix_dgram
                    .push((socket.into(), format!("unix-dgram {at}"), input));
            }
            Some(Type::DGRAM) => listeners.udp.push((socket.into(), name, input)),
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

/// A passed socket's address as its listener's table is keyed (`inputs`): the IP address and
/// port, or the path; `None` for a socket without either (only the top-level settings apply).
fn listen_addr(addr: &SockAddr) -> Option<ListenAddr> {
    addr.as_socket().map(ListenAddr::Ip).or_else(|| {
        addr.as_pathname()
            .map(|p| ListenAddr::Path(p.to_path_buf()))
    })
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

/// Binds the configured addresses and paths. On failure, the socket files already created
/// are removed again.
pub fn bind_all(
    tcp: &[SocketAddr],
    udp: &[SocketAddr],
    tls: &[SocketAddr],
    unix: &UnixSettings,
    backlog: u32,
    inputs: &Inputs,
) -> Result<Listeners> {
    let ip = |addr: SocketAddr| inputs.at(&ListenAddr::Ip(addr));
    let path = |path: &std::path::Path| inputs.at(&ListenAddr::Path(path.to_path_buf()));
    let mut listeners = Listeners {
        tcp: tcp
            .iter()
            .map(|&addr| Ok((bind(addr, backlog)?, addr.to_string(), ip(addr))))
            .collect::<Result<_>>()?,
        udp: udp
            .iter()
            .map(|&addr| Ok((bind_udp(addr)?, format!("udp {addr}"), ip(addr))))
            .collect::<Result<_>>()?,
        tls: tls
            .iter()
            .map(|&addr| {
                let input = inputs.at_tls(&ListenAddr::Ip(addr));
                Ok((bind(addr, backlog)?, format!("tls {addr}"), input))
            })
            .collect::<Result<_>>()?,
        ..Listeners::default()
    };
    for at in &unix.listen {
        let (socket, file) = bind_stream(at, backlog, &unix.access)?;
        let name = format!("unix {}", file.path().display());
        listeners.unix.push((socket, name, path(at)));
        listeners.socket_files.push(file);
    }
    for at in &unix.listen_dgram {
        let (socket, file) = bind_dgram(at, &unix.access)?;
        let name = format!("unix-dgram {}", file.path().display());
        listeners.unix_dgram.push((socket, name, path(at)));
        listeners.socket_files.push(file);
    }
    Ok(listeners)
}
