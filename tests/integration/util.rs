//! Test harness, by job: `daemon` runs the real binary and reads what it wrote, `wait` waits
//! with a deadline, `env` gives each test its own temp dir (and says when it cannot run),
//! `net` sends and inspects connections, `numbered` generates and checks numbered lines,
//! `rsyslog` runs a private rsyslogd, `tlspki` makes
//! certificates and TLS clients, `haproxy` a private HAProxy.
//! Tests `use crate::util::*`.
//!
//! Nothing here sleeps to wait. The daemon is started on `127.0.0.1:0` and says where it
//! listens on stderr; tests wait for such log lines, or for file contents, with a deadline.

mod daemon;
mod env;
mod haproxy;
mod net;
mod numbered;
mod rsyslog;
mod tlspki;
mod wait;

pub use daemon::*;
pub use env::*;
pub use haproxy::*;
pub use net::*;
pub use numbered::*;
pub use rsyslog::*;
pub use tlspki::*;
pub use wait::*;
