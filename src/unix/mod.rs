//! Unix-domain sockets: `listen_unix` (stream: lines, as over TCP) and `listen_unix_dgram`
//! (each datagram a message, as over UDP; what `logger -u` and /dev/log clients send).
//!
//! - `settings.rs`: their config keys and options (`unix_mode`, `unix_owner`, `unix_group`);
//! - `bind.rs`: binding at a path (refusing what is not a stale socket), mode and owner, and
//!   removing the socket at exit;
//! - `cred.rs`: the peer of a unix client is its credentials (`unix:pid=1234,uid=1000`), as
//!   the kernel vouches for them;
//! - `transport.rs`: accepting and receiving, behind the event loop's `Listener`, `Stream` and
//!   `DatagramSocket` variants.

pub mod bind;
pub mod cred;
pub mod settings;
pub mod transport;
