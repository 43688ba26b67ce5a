//! Listening stream sockets, as the event loop sees them: each accepts into a `Stream` and
//! the peer as written in records. A new kind of listener is a new `Listener` variant (its
//! `accept`, its name, its registration), with a matching `Stream` variant in connection.rs;
//! the loop, the accept gate and the connections stay as they are.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::{Context, Result};

use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};

use crate::connection::{Stream, peer_text};
use crate::input::Input;
use crate::metrics::exposition::{Kind, ListenerInfo};
use crate::unix::transport;

pub enum Listener {
    Tcp(TcpListener),
    /// Its clients speak TLS: it accepts TCP streams, which the event loop wraps in a
    /// `TlsStream` with the configuration of the moment (`tls::TlsServer`).
    Tls(TcpListener),
    /// Its clients' peer is their credentials (`unix:pid=1234,uid=1000`).
    Unix(UnixListener),
}

impl Listener {
    /// Accepts one client: its stream, the peer as written in records (`192.0.2.7:51234`)
    /// and, for TCP, its address (for `allow` and `proxy_from`).
    pub fn accept(&self) -> io::Result<(Stream, Box<[u8]>, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l) => {
                let (stream, addr) = l.accept()?;
                let peer = peer_text(addr).into_bytes().into();
                Ok((Stream::Tcp(stream), peer, Some(addr)))
            }
            Listener::Unix(l) => {
                transport::accept(l).map(|(s, peer)| (Stream::Unix(s), peer, None))
            }
        }
    }

    /// The bound address as named in `listening on` messages (port 0 resolved).
    pub fn local_name(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(l.local_addr()?.to_string()),
            Listener::Tls(l) => Ok(format!("tls {}", l.local_addr()?)),
            Listener::Unix(l) => transport::listener_name(l),
        }
    }

    /// How the metrics name it and what applies to it; `name` is its name in messages, for
    /// a socket whose address cannot be read.
    pub fn metric_info(&self, name: &str) -> ListenerInfo {
        match self {
            Listener::Tcp(l) => {
                let addr = l
                    .local_addr()
                    .map_or_else(|_| name.into(), |a| a.to_string());
                ListenerInfo::new(Kind::Tcp, &addr)
            }
            Listener::Tls(l) => {
                let addr = l.local_addr().map_or_else(
                    |_| name.trim_start_matches("tls ").into(),
                    |a| a.to_string(),
                );
                ListenerInfo::new(Kind::Tls, &addr)
            }
            Listener::Unix(l) => {
                let named = transport::listener_name(l).unwrap_or_else(|_| name.into());
                let path = named.strip_prefix("unix ").unwrap_or(&named);
                ListenerInfo::new(Kind::Unix, path)
            }
        }
    }

    /// What the kernel counted at the listener (`metrics::kernel_drops`): connections it
    /// refused because the backlog was full. TCP only.
    pub fn kernel_drops(&self) -> Option<u64> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l) => crate::metrics::kernel_drops(l.as_fd()),
            Listener::Unix(_) => None,
        }
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l) => registry.register(l, token, Interest::READABLE),
            Listener::Unix(l) => registry.register(l, token, Interest::READABLE),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l) => registry.deregister(l),
            Listener::Unix(l) => registry.deregister(l),
        }
    }
}

impl Listener {
    /// A TLS listener over a bound TCP listener.
    pub fn tls(listener: std::net::TcpListener) -> Listener {
        Listener::Tls(TcpListener::from_std(listener))
    }

    /// Whether its clients speak TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Listener::Tls(_))
    }
}

impl From<std::net::TcpListener> for Listener {
    fn from(listener: std::net::TcpListener) -> Listener {
        Listener::Tcp(TcpListener::from_std(listener))
    }
}

/// The stream listeners, each with its name in messages, under consecutive tokens.
pub struct StreamListeners {
    /// Each listener, its name (the address bound, port 0 resolved, as `listening on` and
    /// the journal output's `LOGSINKD_LISTENER` give it) and its settings.
    list: Vec<(Listener, Arc<str>, Input)>,
}

impl StreamListeners {
    /// Registers `listeners` (with their names) under consecutive tokens from `first`.
    pub fn new(
        listeners: Vec<(Listener, String, Input)>,
        registry: &Registry,
        first: usize,
    ) -> Result<StreamListeners> {
        let mut list = Vec::with_capacity(listeners.len());
        for (i, (mut listener, name, input)) in listeners.into_iter().enumerate() {
            listener
                .register(registry, Token(first + i))
                .with_context(|| format!("registering listener {name}"))?;
            let name = listener.local_name().unwrap_or(name);
            list.push((listener, Arc::from(name), input));
        }
        Ok(StreamListeners { list })
    }

    /// Listeners open (none once closed).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Listener `index`, its name and its settings.
    pub fn get(&self, index: usize) -> (&Listener, &Arc<str>, &Input) {
        let (listener, name, input) = &self.list[index];
        (listener, name, input)
    }

    /// The listeners' names as bound (port 0 resolved), in token order.
    pub fn names(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.list.iter().map(|(_, name, _)| Arc::clone(name))
    }

    /// `listening on 127.0.0.1:5140` for each listener.
    pub fn listening(&self) -> impl Iterator<Item = String> + '_ {
        self.names().map(|name| format!("listening on {name}"))
    }

    /// Each listener as the metrics name it.
    pub fn metric_info(&self) -> impl Iterator<Item = ListenerInfo> + '_ {
        self.list.iter().map(|(l, name, _)| l.metric_info(name))
    }

    /// Listener `index`'s count of what the kernel dropped (see `Listener::kernel_drops`).
    pub fn kernel_drops(&self, index: usize) -> Option<u64> {
        self.list.get(index).and_then(|(l, _, _)| l.kernel_drops())
    }

    /// Closes every listener (the drain): new clients are refused rather than left waiting.
    pub fn close(&mut self, registry: &Registry) {
        for (mut listener, _, _) in self.list.drain(..) {
            let _ = listener.deregister(registry);
        }
    }
}

impl From<std::os::unix::net::UnixListener> for Listener {
    fn from(listener: std::os::unix::net::UnixListener) -> Listener {
        Listener::Unix(UnixListener::from_std(listener))
    }
}
