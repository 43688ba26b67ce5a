//! Syslog targets as written in `output`: `syslog`, `syslog:/path`, `syslog+udp://host:port`,
//! `syslog+tcp://host:port`.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Result, bail};

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every syslog target form parses and prints back; a path is not a syslog target.
    #[test]
    fn targets() {
        for t in [
            "syslog",
            "syslog:/dev/log",
            "syslog+udp://127.0.0.1:514",
            "syslog+tcp://[::1]:514",
        ] {
            assert_eq!(SyslogAddr::parse(t).unwrap().unwrap().to_string(), t);
        }
        assert_eq!(SyslogAddr::parse("/var/log/x.log").unwrap(), None);
        assert!(SyslogAddr::parse("syslog+udp://nohost").is_err());
        assert!(SyslogAddr::parse("syslog+quic://h:1").is_err());
    }
}
