//! The effective configuration: built-in defaults, overridden by the TOML file (`--config`),
//! overridden by command-line options.
//!
//! The file is read as a TOML table and each key converted on its own, so every error names
//! the file, the key and the problem (`logsinkd.toml: key `max_line`: ...`) and an unknown key
//! is an error rather than silently ignored.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;

use crate::cli::Cli;
use crate::record::Format;
use crate::sink::Target;
use crate::unix::settings::{self as unix, RawUnix, UnixSettings};

/// Default listen address: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5140";
/// Default output in the foreground and as a daemon (resolved against the start directory).
pub const DEFAULT_OUTPUT: &str = "./logsinkd.log";
/// Default longest line recorded whole: long stack traces fit, one client cannot hog memory.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Upper bound on `max_line`: it bounds the memory each connection may hold.
pub const MAX_MAX_LINE: usize = 16 * 1024 * 1024;
/// Default listen backlog (the kernel caps it at net.core.somaxconn).
pub const DEFAULT_BACKLOG: u32 = 1024;
/// File descriptors kept free for listeners, the output, signals and syslog when the
/// connection cap is derived from the open-file limit.
pub const FD_HEADROOM: usize = 64;
/// Longest `idle_timeout`, in seconds: a year. Longer is as good as off (0), and this keeps
/// every deadline computed from it far inside the clock's range.
pub const MAX_IDLE_TIMEOUT: u64 = 365 * 24 * 60 * 60;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub listen_udp: Vec<SocketAddr>,
    /// Unix-domain sockets: `listen_unix`, `listen_unix_dgram`, `unix_*` (see unix/settings.rs).
    pub unix: UnixSettings,
    pub output: Target,
    pub format: Format,
    pub max_line: usize,
    pub foreground: bool,
    pub pid_file: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub syslog_facility: String,
    pub max_connections: usize,
    pub backlog: u32,
    /// `None`: connections may stay idle for ever.
    pub idle_timeout: Option<Duration>,
}

/// Every key the file may hold.
const KEYS: &[&str] = &[
    "listen",
    "listen_udp",
    "output",
    "format",
    "max_line",
    "foreground",
    "pid_file",
    "user",
    "group",
    "syslog_facility",
    "max_connections",
    "backlog",
    "idle_timeout",
];

impl Config {
    /// Builds the configuration from the command line and the file it names.
    /// `fd_limit` is the process's open-file limit, which sizes the default connection cap.
    pub fn load(cli: &Cli, fd_limit: usize) -> Result<Config> {
        let mut raw = match &cli.config {
            Some(path) => {
                let raw = Raw::from_file(path)?;
                // Check the file on its own first, so its errors name the file.
                raw.clone()
                    .resolve(fd_limit)
                    .with_context(|| format!("config {}", path.display()))?;
                raw
            }
            None => Raw::default(),
        };
        raw.apply_cli(cli);
        raw.resolve(fd_limit)
    }
}

impl Config {
    /// Parses and validates a config file's text alone (the fuzz target's entry point).
    pub fn from_toml(text: &str, fd_limit: usize) -> Result<Config> {
        Raw::parse(text)?.resolve(fd_limit)
    }
}

/// Settings as written, before defaults and validation.
#[derive(Default, Clone)]
struct Raw {
    listen: Option<Vec<String>>,
    listen_udp: Option<Vec<String>>,
    unix: RawUnix,
    output: Option<String>,
    format: Option<String>,
    max_line: Option<String>,
    foreground: Option<bool>,
    pid_file: Option<PathBuf>,
    user: Option<String>,
    group: Option<String>,
    syslog_facility: Option<String>,
    max_connections: Option<usize>,
    backlog: Option<u32>,
    idle_timeout: Option<u64>,
}

impl Raw {
    fn from_file(path: &Path) -> Result<Raw> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Raw::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    fn parse(text: &str) -> Result<Raw> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow!("{}", e.to_string().trim_end()))?;
        let mut raw = Raw::default();
        for (key, value) in table {
            let value = value.clone();
            match key.as_str() {
                "listen" => raw.listen = Some(value_as::<Vec<String>>(&key, value)?),
                "listen_udp" => raw.listen_udp = Some(value_as::<Vec<String>>(&key, value)?),
                "output" => raw.output = Some(value_as(&key, value)?),
                "format" => raw.format = Some(value_as(&key, value)?),
                "max_line" => {
                    raw.max_line = Some(match value {
                        toml::Value::Integer(n) => n.to_string(),
                        v => value_as(&key, v)?,
                    })
                }
                "foreground" => raw.foreground = Some(value_as(&key, value)?),
                "pid_file" => raw.pid_file = Some(value_as(&key, value)?),
                "user" => raw.user = Some(value_as(&key, value)?),
                "group" => raw.group = Some(value_as(&key, value)?),
                "syslog_facility" => raw.syslog_facility = Some(value_as(&key, value)?),
                "max_connections" => raw.max_connections = Some(value_as(&key, value)?),
                "backlog" => raw.backlog = Some(value_as(&key, value)?),
                "idle_timeout" => raw.idle_timeout = Some(value_as(&key, value)?),
                _ if raw.unix.take(&key, value)? => {}
                _ => bail!(
                    "unknown key `{key}` (known keys: {})",
                    [KEYS, unix::KEYS].concat().join(", ")
                ),
            }
        }
        Ok(raw)
    }

    fn apply_cli(&mut self, cli: &Cli) {
        if !cli.listen.is_empty() {
            self.listen = Some(cli.listen.clone());
        }
        if !cli.listen_udp.is_empty() {
            self.listen_udp = Some(cli.listen_udp.clone());
        }
        fn set<T: Clone>(slot: &mut Option<T>, v: &Option<T>) {
            if v.is_some() {
                *slot = v.clone();
            }
        }
        self.unix.apply_cli(cli);
        set(&mut self.output, &cli.output);
        set(&mut self.format, &cli.format);
        set(&mut self.max_line, &cli.max_line);
        set(&mut self.pid_file, &cli.pid_file);
        set(&mut self.user, &cli.user);
        set(&mut self.group, &cli.group);
        set(&mut self.syslog_facility, &cli.syslog_facility);
        set(&mut self.max_connections, &cli.max_connections);
        set(&mut self.backlog, &cli.backlog);
        set(&mut self.idle_timeout, &cli.idle_timeout);
        if cli.foreground {
            self.foreground = Some(true);
        }
    }

    fn resolve(self, fd_limit: usize) -> Result<Config> {
        let listen = addresses(
            "listen",
            &self.listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.into()]),
        )?;
        let listen_udp = addresses("listen_udp", &self.listen_udp.unwrap_or_default())?;
        let unix = self.unix.resolve()?;
        if listen.is_empty() && listen_udp.is_empty() && unix.sockets() == 0 {
            bail!(
                "key `listen`: at least one address is needed (or one in `listen_udp`, \
                 `listen_unix` or `listen_unix_dgram`)"
            );
        }
        if listen.len() + listen_udp.len() + unix.sockets() > crate::event_loop::MAX_LISTENERS {
            bail!(
                "keys `listen`, `listen_udp`, `listen_unix` and `listen_unix_dgram`: at most {} \
                 sockets in all",
                crate::event_loop::MAX_LISTENERS
            );
        }
        let output = self.output.as_deref().unwrap_or(DEFAULT_OUTPUT);
        let output = Target::parse(output).with_context(|| format!("key `output`: `{output}`"))?;
        let format = match self.format.as_deref() {
            None => Format::Default,
            Some(name) => Format::parse(name).ok_or_else(|| {
                anyhow!(
                    "key `format`: unknown format `{name}`, expected {}",
                    Format::NAMES
                )
            })?,
        };
        let max_line = match self.max_line.as_deref() {
            None => DEFAULT_MAX_LINE,
            Some(text) => parse_size(text)
                .filter(|n| (1..=MAX_MAX_LINE).contains(n))
                .ok_or_else(|| {
                    anyhow!(
                        "key `max_line`: `{text}` is not a size from 1 to {MAX_MAX_LINE} bytes \
                         (a number, optionally with a K or M suffix)"
                    )
                })?,
        };
        let syslog_facility = self.syslog_facility.unwrap_or_else(|| "user".into());
        if syslog_facility.parse::<syslog::Facility>().is_err() {
            bail!(
                "key `syslog_facility`: unknown facility `{syslog_facility}` \
                 (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0..local7)"
            );
        }
        let max_connections = match self.max_connections {
            Some(0) => bail!("key `max_connections`: must be at least 1"),
            Some(n) => n,
            None => fd_limit.saturating_sub(FD_HEADROOM).max(1),
        };
        let backlog = match self.backlog {
            Some(0) => bail!("key `backlog`: must be at least 1"),
            Some(n) => n,
            None => DEFAULT_BACKLOG,
        };
        let idle_timeout = match self.idle_timeout {
            Some(s) if s > MAX_IDLE_TIMEOUT => bail!(
                "key `idle_timeout`: {s} seconds is out of range: from 0 (off) to \
                 {MAX_IDLE_TIMEOUT} (a year)"
            ),
            Some(0) | None => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        if self.group.is_some() && self.user.is_none() {
            bail!("key `group`: needs `user` as well (logsinkd drops both or neither)");
        }
        Ok(Config {
            listen,
            listen_udp,
            unix,
            output,
            format,
            max_line,
            foreground: self.foreground.unwrap_or(false),
            pid_file: self.pid_file,
            user: self.user,
            group: self.group,
            syslog_facility,
            max_connections,
            backlog,
            idle_timeout,
        })
    }
}

/// The addresses of one listen key, each `IP:PORT` or `[IPv6]:PORT`.
fn addresses(key: &str, list: &[String]) -> Result<Vec<SocketAddr>> {
    list.iter()
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                anyhow!("key `{key}`: `{a}` is not an address of the form IP:PORT or [IPv6]:PORT")
            })
        })
        .collect()
}

fn value_as<T: DeserializeOwned>(key: &str, value: toml::Value) -> Result<T> {
    let shown = value.to_string();
    value.try_into().map_err(|e: toml::de::Error| {
        anyhow!("key `{key}`: {} (found {shown})", e.message().trim_end())
    })
}

/// `65536`, `64K`, `64k`, `1M`, `64KiB`.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let unit = match suffix.trim() {
        "" => 1,
        "K" | "k" | "KiB" => 1024,
        "M" | "m" | "MiB" => 1024 * 1024,
        _ => return None,
    };
    number.parse::<usize>().ok()?.checked_mul(unit)
}

/// The effective configuration as a TOML file, for `--check-config`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let list = |addrs: &[SocketAddr]| {
            let quoted: Vec<String> = addrs.iter().map(|a| q(&a.to_string())).collect();
            quoted.join(", ")
        };
        writeln!(f, "listen = [{}]", list(&self.listen))?;
        writeln!(f, "listen_udp = [{}]", list(&self.listen_udp))?;
        write!(f, "{}", self.unix)?;
        writeln!(f, "output = {}", q(&self.output.to_string()))?;
        writeln!(f, "format = {}", q(&self.format.to_string()))?;
        writeln!(f, "max_line = {}", self.max_line)?;
        writeln!(f, "foreground = {}", self.foreground)?;
        if let Some(p) = &self.pid_file {
            writeln!(f, "pid_file = {}", q(&p.display().to_string()))?;
        }
        if let Some(u) = &self.user {
            writeln!(f, "user = {}", q(u))?;
        }
        if let Some(g) = &self.group {
            writeln!(f, "group = {}", q(g))?;
        }
        writeln!(f, "syslog_facility = {}", q(&self.syslog_facility))?;
        writeln!(f, "max_connections = {}", self.max_connections)?;
        writeln!(f, "backlog = {}", self.backlog)?;
        writeln!(
            f,
            "idle_timeout = {}",
            self.idle_timeout.map_or(0, |d| d.as_secs())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        Config::from_toml(text, 1024)
    }

    /// Defaults apply when nothing is set.
    #[test]
    fn defaults() {
        let c = load("").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:5140".parse().unwrap()]);
        assert!(c.listen_udp.is_empty());
        assert_eq!(c.format, Format::Default);
        assert_eq!(c.max_line, 64 * 1024);
        assert_eq!(c.max_connections, 1024 - FD_HEADROOM);
        assert_eq!(c.idle_timeout, None);
    }

    /// Every key is read, sizes take suffixes.
    #[test]
    fn all_keys() {
        let c = load(
            "listen = [\"[::1]:1\", \"0.0.0.0:2\"]\nlisten_udp = [\"127.0.0.1:514\"]\noutput = \"syslog+udp://127.0.0.1:514\"\n\
             format = \"json\"\nmax_line = \"1M\"\nforeground = true\npid_file = \"/run/x.pid\"\n\
             user = \"nobody\"\ngroup = \"nogroup\"\nsyslog_facility = \"local3\"\n\
             max_connections = 10\nbacklog = 5\nidle_timeout = 30\n",
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen_udp, vec!["127.0.0.1:514".parse().unwrap()]);
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.max_line, 1 << 20);
        assert!(c.foreground);
        assert_eq!(c.max_connections, 10);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(load("max_line = 100").unwrap().max_line, 100);
    }

    /// Errors name the key and the problem.
    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| format!("{:#}", load(t).unwrap_err());
        assert!(err("max_line = \"lots\"").contains("key `max_line`"));
        assert!(err("format = \"xml\"").contains("key `format`: unknown format `xml`"));
        assert!(err("listen = [\"nowhere\"]").contains("key `listen`"));
        assert!(err("listen_udp = [\"1.2.3.4\"]").contains("key `listen_udp`: `1.2.3.4`"));
        assert!(err("listen = []").contains("at least one address"));
        assert!(
            load("listen = []\nlisten_udp = [\"127.0.0.1:1\"]").is_ok(),
            "UDP only"
        );
        assert!(err("backlog = \"x\"").contains("key `backlog`"));
        assert!(err("colour = 1").contains("unknown key `colour`"));
        assert!(err("syslog_facility = \"mars\"").contains("key `syslog_facility`"));
        assert!(err("listen = [").contains("line 1"));
        assert!(
            err("idle_timeout = 31536001")
                .contains("key `idle_timeout`: 31536001 seconds is out of range")
        );
        assert!(err("idle_timeout = -1").contains("key `idle_timeout`"));
        assert_eq!(
            load("idle_timeout = 31536000").unwrap().idle_timeout,
            Some(Duration::from_secs(MAX_IDLE_TIMEOUT))
        );
    }

    /// The printed configuration reads back to the same settings.
    #[test]
    fn display_round_trips() {
        let c = load("listen = [\"[::1]:7\"]\nlisten_udp = [\"[::1]:8\"]\nformat = \"raw\"\nidle_timeout = 9")
            .unwrap();
        let again = load(&c.to_string()).unwrap();
        assert_eq!(again.to_string(), c.to_string());
    }
}
