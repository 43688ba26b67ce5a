//! Syslog output through the `syslog` crate: every line becomes one message, tag `logsinkd`,
//! severity `info`, the configured facility, text `<peer> <escaped line>`.
//!
//! Messages wait in a queue until the receiver takes them; if it is gone, the connection is
//! dropped and made again on the next flush (the event loop retries with back-off and stops
//! reading from clients while the queue is full).

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

use crate::record::escape_into;

/// Longest message text sent in one message. rsyslog's default `maxMessageSize` is 8 KiB
/// including the header and it truncates what is longer, so longer lines go as several
/// messages of this size rather than being cut short at the receiver.
pub const MAX_TEXT: usize = 7 * 1024;

/// A syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddr {
    /// The local syslog socket (/dev/log).
    Local,
    /// A unix socket at this path.
    Unix(PathBuf),
    /// `host:port` over UDP.
    Udp(String),
    /// `host:port` over TCP (messages end with LF).
    Tcp(String),
}

impl SyslogAddr {
    /// `Ok(None)` if `text` is not a syslog target at all (then it is a file path).
    pub fn parse(text: &str) -> Result<Option<SyslogAddr>> {
        let host_port = |rest: &str| -> Result<String> {
            match rest.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(rest.to_string())
                }
                _ => bail!("expected host:port after the scheme"),
            }
        };
        Ok(Some(if text == "syslog" {
            SyslogAddr::Local
        } else if let Some(path) = text.strip_prefix("syslog:") {
            if path.starts_with("//") {
                bail!("unknown syslog scheme; use syslog+udp:// or syslog+tcp://");
            }
            if path.is_empty() {
                bail!("expected a socket path after `syslog:`");
            }
            SyslogAddr::Unix(PathBuf::from(path))
        } else if let Some(rest) = text.strip_prefix("syslog+udp://") {
            SyslogAddr::Udp(host_port(rest)?)
        } else if let Some(rest) = text.strip_prefix("syslog+tcp://") {
            SyslogAddr::Tcp(host_port(rest)?)
        } else if text.starts_with("syslog+") {
            bail!("unknown syslog scheme; use syslog+udp:// or syslog+tcp://");
        } else {
            return Ok(None);
        }))
    }
}

impl fmt::Display for SyslogAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogAddr::Local => write!(f, "syslog"),
            SyslogAddr::Unix(path) => write!(f, "syslog:{}", path.display()),
            SyslogAddr::Udp(hp) => write!(f, "syslog+udp://{hp}"),
            SyslogAddr::Tcp(hp) => write!(f, "syslog+tcp://{hp}"),
        }
    }
}

pub struct SyslogSink {
    addr: SyslogAddr,
    facility: Facility,
    /// `None` after a failure, until the next flush connects again.
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    /// Message texts not yet sent, oldest first.
    queue: VecDeque<String>,
    queued_bytes: usize,
}

impl SyslogSink {
    pub fn open(addr: SyslogAddr, facility: &str) -> Result<SyslogSink> {
        let facility = facility
            .parse()
            .map_err(|()| anyhow!("unknown syslog facility `{facility}`"))?;
        let logger = Some(connect(&addr, facility)?);
        Ok(SyslogSink { addr, facility, logger, queue: VecDeque::new(), queued_bytes: 0 })
    }

    /// Queues `<peer> <escaped line>`; a line too long for one message goes as several, each
    /// starting with the peer.
    pub fn record(&mut self, peer: &[u8], line: &[u8]) {
        let mut escaped = Vec::with_capacity(line.len());
        escape_into(&mut escaped, line);
        // Escaped text is printable ASCII, tab and valid UTF-8 by construction.
        let escaped = String::from_utf8_lossy(&escaped);
        let peer = String::from_utf8_lossy(peer);
        let room = MAX_TEXT.saturating_sub(peer.len() + 1).max(64);
        let mut rest = escaped.as_ref();
        loop {
            let mut cut = rest.len().min(room);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            self.push(format!("{peer} {}", &rest[..cut]));
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
        }
    }

    fn push(&mut self, mut text: String) {
        if matches!(self.addr, SyslogAddr::Tcp(_)) {
            // Plain TCP syslog frames messages by LF (RFC 6587 non-transparent framing).
            text.push('\n');
        }
        self.queued_bytes += text.len();
        self.queue.push_back(text);
    }

    pub fn flush(&mut self) -> Result<()> {
        while let Some(text) = self.queue.front() {
            let logger = match &mut self.logger {
                Some(logger) => logger,
                None => self.logger.insert(connect(&self.addr, self.facility)?),
            };
            if let Err(e) = logger.info(text) {
                self.logger = None;
                return Err(anyhow!("{e}")).with_context(|| format!("sending to {}", self.addr));
            }
            self.queued_bytes -= text.len();
            self.queue.pop_front();
        }
        Ok(())
    }

    pub fn backlog(&self) -> usize {
        self.queued_bytes
    }

    /// Connects anew; on failure the old connection stays in use.
    pub fn reopen(&mut self) -> Result<()> {
        self.logger = Some(connect(&self.addr, self.facility)?);
        Ok(())
    }
}

fn connect(addr: &SyslogAddr, facility: Facility) -> Result<Logger<LoggerBackend, Formatter3164>> {
    let remote = matches!(addr, SyslogAddr::Udp(_) | SyslogAddr::Tcp(_));
    let formatter = Formatter3164 {
        facility,
        // The local syslog daemon adds the host name itself; a remote one needs it.
        hostname: if remote { hostname() } else { None },
        process: "logsinkd".into(),
        pid: std::process::id(),
    };
    let logger = match addr {
        SyslogAddr::Local => syslog::unix(formatter),
        SyslogAddr::Unix(path) => syslog::unix_custom(formatter, path),
        SyslogAddr::Udp(hp) => {
            let local = if hp.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
            syslog::udp(formatter, local, hp.as_str())
        }
        SyslogAddr::Tcp(hp) => syslog::tcp(formatter, hp.as_str()),
    };
    logger.map_err(|e| anyhow!("{e}")).with_context(|| format!("connecting to {addr}"))
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    std::str::from_utf8(&buf[..end]).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every syslog target form parses and prints back; a path is not a syslog target.
    #[test]
    fn targets() {
        for t in ["syslog", "syslog:/dev/log", "syslog+udp://127.0.0.1:514", "syslog+tcp://[::1]:514"] {
            assert_eq!(SyslogAddr::parse(t).unwrap().unwrap().to_string(), t);
        }
        assert_eq!(SyslogAddr::parse("/var/log/x.log").unwrap(), None);
        assert!(SyslogAddr::parse("syslog+udp://nohost").is_err());
        assert!(SyslogAddr::parse("syslog+quic://h:1").is_err());
    }
}
