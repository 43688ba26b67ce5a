//! A private rsyslogd: its configuration, work files and sockets all in the test's temp dir,
//! listening only there and on 127.0.0.1. What it loads and does (`body`) is the test's.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::tool;

/// A running rsyslogd (`-n`, the foreground), killed when dropped.
pub struct PrivateRsyslogd {
    pub child: Child,
}

impl PrivateRsyslogd {
    /// Starts rsyslogd with `dir/rsyslog.conf`: a `global()` that keeps its work files in
    /// `dir`, then `body` (modules, inputs, templates, actions). None, after saying why (see
    /// `skip`), when rsyslogd is not installed. The caller waits for what it needs to be ready.
    pub fn start(dir: &Path, body: &str) -> Option<PrivateRsyslogd> {
        let bin = tool("rsyslogd", "rsyslog")?;
        std::fs::write(
            dir.join("rsyslog.conf"),
            format!(
                "global(workDirectory=\"{}\")\nmain_queue(queue.size=\"1000000\")\n{body}",
                dir.display()
            ),
        )
        .unwrap();
        Some(PrivateRsyslogd {
            child: spawn_rsyslogd(&bin, dir),
        })
    }

    /// Kills it hard (it gets no chance to clean up).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRsyslogd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `bin` (rsyslogd) in the foreground with `dir/rsyslog.conf`, its pid file in `dir`.
pub fn spawn_rsyslogd(bin: &Path, dir: &Path) -> Child {
    Command::new(bin)
        .arg("-n")
        .arg("-f")
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}
