//! What a listener's clients send, and so how it is read: the framing of its streams
//! (`framing`: lines, octet-counted or auto, see framing/) and whether each message is
//! scanned for syslog fields (`parse`: none or syslog, see syslog_parse.rs).
//!
//! Both are set for every listener by the top-level keys (`--framing`, `--parse`), and a
//! listener's own table overrides them, keyed by the address or path as written in its listen
//! key:
//!
//! ```toml
//! listen = ["0.0.0.0:5140", "0.0.0.0:6514"]
//! parse = "syslog"
//!
//! [listener."0.0.0.0:6514"]
//! framing = "octet"
//! ```
//!
//! A table applies to every socket at its address (a TCP and a UDP listener may share one);
//! sockets adopted from systemd find theirs by the address they are bound to. `framing` means
//! nothing to a datagram socket: each datagram is one message (with `parse = "syslog"`) or
//! split at LF (with `parse = "none"`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::{Choice, choice, choose};
use crate::framing::Mode;

/// Whether messages are scanned for syslog fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parse {
    /// Records are the bytes as received, with no fields.
    #[default]
    None,
    /// Each message is scanned for RFC 5424 / RFC 3164 fields; what does not parse is
    /// recorded as it is, with no fields.
    Syslog,
}

impl Choice for Parse {
    const WHAT: &'static str = "parse";
    const CHOICES: &'static [(&'static str, Parse)] =
        &[("none", Parse::None), ("syslog", Parse::Syslog)];
}

impl fmt::Display for Parse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one listener's input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Input {
    pub framing: Mode,
    pub parse: Parse,
}

/// Where a listener is: what its table is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListenAddr {
    Ip(SocketAddr),
    Path(PathBuf),
}

impl ListenAddr {
    /// An address (`IP:PORT`, `[IPv6]:PORT`), else a path (as written in `listen_unix`,
    /// relative ones too).
    fn parse(text: &str) -> ListenAddr {
        match text.parse() {
            Ok(addr) => ListenAddr::Ip(addr),
            Err(_) => ListenAddr::Path(text.into()),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Ip(addr) => write!(f, "{addr}"),
            ListenAddr::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A listener's table as written: each key overrides the top-level one.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    framing: Option<String>,
    parse: Option<String>,
}

/// The checked settings of every listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The top-level keys: every listener's unless its table says otherwise.
    pub default: Input,
    /// The listeners' own tables: what each sets.
    pub listeners: BTreeMap<ListenAddr, (Option<Mode>, Option<Parse>)>,
}

/// The top-level `framing`, `parse` and the `listener` tables as written.
pub struct RawInputs<'a> {
    pub framing: Option<&'a str>,
    pub parse: Option<&'a str>,
    pub listeners: &'a BTreeMap<String, RawListener>,
}

impl RawInputs<'_> {
    /// Checks the values; `known` are the configured listeners' addresses, which every table
    /// must name (a typo would otherwise be a table that silently applies to nothing);
    /// `streams` those of stream listeners, the only ones `framing` means something to.
    pub fn resolve(&self, known: &[ListenAddr], streams: &[ListenAddr]) -> Result<Inputs> {
        let default = Input {
            framing: choice("framing", self.framing)?,
            parse: choice("parse", self.parse)?,
        };
        let mut listeners = BTreeMap::new();
        for (text, table) in self.listeners {
            let at = || format!("listener.\"{text}\"");
            let addr = ListenAddr::parse(text);
            if !known.contains(&addr) {
                bail!(
                    "table `{}`: `{text}` is not the address or path of a listener (in `listen`, \
                     `listen_udp`, `listen_unix` or `listen_unix_dgram`), written the same way",
                    at()
                );
            }
            let mode = match &table.framing {
                None => None,
                Some(_) if !streams.contains(&addr) => bail!(
                    "table `{}`: key `framing`: a datagram socket takes each datagram as one \
                     message; framing is for stream listeners",
                    at()
                ),
                Some(name) => Some(choose(&format!("{}.framing", at()), name)?),
            };
            let parse = table
                .parse
                .as_deref()
                .map(|name| choose(&format!("{}.parse", at()), name))
                .transpose()?;
            listeners.insert(addr, (mode, parse));
        }
        Ok(Inputs { default, listeners })
    }
}

impl Inputs {
    /// True if no listener has a table of its own.
    pub fn no_tables(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The settings of the listener at `addr`.
    pub fn at(&self, addr: &ListenAddr) -> Input {
        let (framing, parse) = self.listeners.get(addr).copied().unwrap_or_default();
        Input {
            framing: framing.unwrap_or(self.default.framing),
            parse: parse.unwrap_or(self.default.parse),
        }
    }
}

/// The `listener` tables as `--check-config` prints them.
impl Serialize for Inputs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Table {
            #[serde(skip_serializing_if = "Option::is_none")]
            framing: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            parse: Option<String>,
        }
        let mut map = s.serialize_map(Some(self.listeners.len()))?;
        for (addr, (framing, parse)) in &self.listeners {
            let table = Table {
                framing: framing.map(|f| f.to_string()),
                parse: parse.map(|p| p.to_string()),
            };
            map.serialize_entry(&addr.to_string(), &table)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, known: &[&str], streams: &[&str]) -> Result<Inputs> {
        #[derive(Deserialize)]
        struct File {
            framing: Option<String>,
            parse: Option<String>,
            #[serde(default)]
            listener: BTreeMap<String, RawListener>,
        }
        let file: File = toml::from_str(text)?;
        let addrs =
            |l: &[&str]| -> Vec<ListenAddr> { l.iter().map(|a| ListenAddr::parse(a)).collect() };
        RawInputs {
            framing: file.framing.as_deref(),
            parse: file.parse.as_deref(),
            listeners: &file.listener,
        }
        .resolve(&addrs(known), &addrs(streams))
    }

    /// A listener's table overrides the top-level keys for that listener only.
    #[test]
    fn tables_override_the_top_level() {
        let inputs = resolve(
            "parse = \"syslog\"\n[listener.\"127.0.0.1:2\"]\nframing = \"octet\"\n\
             [listener.\"/run/in.sock\"]\nparse = \"none\"\n\
             [listener.\"rel.sock\"]\nframing = \"auto\"\n",
            &["127.0.0.1:1", "127.0.0.1:2", "/run/in.sock", "rel.sock"],
            &["127.0.0.1:1", "127.0.0.1:2", "/run/in.sock", "rel.sock"],
        )
        .unwrap();
        let at = |a: &str| inputs.at(&ListenAddr::parse(a));
        let syslog = |framing| Input {
            framing,
            parse: Parse::Syslog,
        };
        assert_eq!(at("127.0.0.1:1"), syslog(Mode::Lines));
        assert_eq!(at("127.0.0.1:2"), syslog(Mode::Octet));
        assert_eq!(at("/run/in.sock").parse, Parse::None);
        assert_eq!(at("rel.sock").framing, Mode::Auto, "a relative unix path");
    }

    /// Unknown values and tables that name no listener are refused, naming the table.
    #[test]
    fn errors_name_the_table() {
        let err = |text: &str| {
            resolve(text, &["127.0.0.1:1", "127.0.0.1:9"], &["127.0.0.1:1"])
                .unwrap_err()
                .to_string()
        };
        assert!(err("framing = \"x\"").contains("key `framing`: unknown framing `x`"));
        assert!(err("parse = \"x\"").contains("key `parse`: unknown parse `x`"));
        assert!(err("[listener.\"127.0.0.1:2\"]\nparse = \"none\"").contains("127.0.0.1:2"));
        assert!(err("[listener.\"127.0.0.1:1\"]\nparse = \"5424\"").contains(".parse"));
        assert!(
            err("[listener.\"127.0.0.1:9\"]\nframing = \"octet\"").contains("datagram"),
            "framing on a datagram socket"
        );
        assert!(
            resolve("[listener.\"127.0.0.1:1\"]\nframe = 1", &[], &[]).is_err(),
            "unknown key in a table"
        );
    }
}
