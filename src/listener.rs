//! Listening stream sockets, as the event loop sees them: each accepts into a `Stream` and
//! the peer as written in records. A new kind of listener is a new `Listener` variant (its
//! `accept`, its name, its registration), with a matching `Stream` variant in connection.rs;
//! the loop, the accept gate and the connections stay as they are.

use std::io;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use crate::connection::{Stream, peer_text};

pub enum Listener {
    Tcp(TcpListener),
}

impl Listener {
    /// Accepts one client: its stream and the peer as written in records
    /// (`192.0.2.7:51234`).
    pub fn accept(&self) -> io::Result<(Stream, Box<[u8]>)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, addr) = l.accept()?;
                Ok((Stream::Tcp(stream), peer_text(addr).into_bytes().into()))
            }
        }
    }

    /// The bound address as named in `listening on` messages (port 0 resolved).
    pub fn local_name(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(l.local_addr()?.to_string()),
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.register(l, token, Interest::READABLE),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.deregister(l),
        }
    }
}

impl From<std::net::TcpListener> for Listener {
    fn from(listener: std::net::TcpListener) -> Listener {
        Listener::Tcp(TcpListener::from_std(listener))
    }
}
