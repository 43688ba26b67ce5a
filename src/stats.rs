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
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections open={} total={} lines={} bytes={} errors={}",
            self.open, self.connections, self.lines, self.bytes, self.errors
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
