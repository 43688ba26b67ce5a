//! Counters shown by SIGUSR1, systemd's STATUS= line and the `stopped` summary.

use std::fmt;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted since start.
    pub connections: u64,
    /// Records written (a line cut into pieces counts once per piece).
    pub lines: u64,
    /// Bytes received from clients.
    pub bytes: u64,
    /// Failed reads, accepts and output writes.
    pub errors: u64,
    /// Octet-counted frames cut short by the end of their connection (recorded as far as
    /// they came).
    pub truncated: u64,
    /// Messages of listeners with `parse = "syslog"` that did not parse (recorded as they are).
    pub unparsed: u64,
    /// TCP clients reset and UDP datagrams dropped for not being in `allow`.
    pub denied: u64,
    /// Connections to PROXY protocol listeners reset: not from `proxy_from`, or no valid
    /// header in time.
    pub refused: u64,
    /// The same two per listener, in token order (stream listeners, then datagram sockets),
    /// with each listener's name.
    pub listeners: Vec<ListenerStats>,
}

/// One listener's counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    /// As named in messages (`127.0.0.1:5140`, `udp 127.0.0.1:5140`).
    pub name: String,
    pub denied: u64,
    pub refused: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections open={} total={} lines={} bytes={} errors={} truncated={} unparsed={} \
             denied={} refused={}",
            self.open,
            self.connections,
            self.lines,
            self.bytes,
            self.errors,
            self.truncated,
            self.unparsed,
            self.denied,
            self.refused
        )
    }
}

impl Stats {
    /// The text of systemd's STATUS= line.
    pub fn status(&self) -> String {
        format!(
            "{} open, {} total connections; {} lines, {} bytes; {} errors",
            self.open, self.connections, self.lines, self.bytes, self.errors
        )
    }
}
