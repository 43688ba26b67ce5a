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
//!
//! Who may send (access.rs) is set the same way: `allow` for TCP and UDP listeners (a unix
//! listener's table may not have one, and the top-level one does not apply to unix sockets:
//! their file's mode decides), `proxy_protocol` and `proxy_from` for TCP listeners only.
//! `proxy_protocol` needs `proxy_from`: a header is a claim about who the client is, which
//! only the balancers listed may make (anyone else could claim any address); `proxy_from`
//! where no listener has `proxy_protocol` is refused as a mistake.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::access::{Access, AllowList};
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

/// How one listener's input is read, and who may send to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Input {
    pub framing: Mode,
    pub parse: Parse,
    pub access: Access,
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
    allow: Option<Vec<String>>,
    proxy_protocol: Option<bool>,
    proxy_from: Option<Vec<String>>,
}

/// A listener's table, checked: what it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub framing: Option<Mode>,
    pub parse: Option<Parse>,
    pub allow: Option<Arc<AllowList>>,
    pub proxy_protocol: Option<bool>,
    pub proxy_from: Option<Arc<AllowList>>,
}

/// The checked settings of every listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The top-level keys: every listener's unless its table says otherwise (`access`
    /// applies to TCP and UDP listeners; its `proxy_from` to TCP ones, and is set only if
    /// the top-level `proxy_protocol` is on).
    pub default: Input,
    /// The top-level `proxy_from`, also where the top-level `proxy_protocol` is off (a
    /// table's `proxy_protocol = true` takes it).
    pub proxy_from: Option<Arc<AllowList>>,
    /// The listeners' own tables: what each sets.
    pub listeners: BTreeMap<ListenAddr, Table>,
    /// Whether the top-level `framing` was given: TLS listeners default to `auto` otherwise.
    pub framing_given: bool,
}

/// The top-level `framing`, `parse`, access keys and the `listener` tables as written.
pub struct RawInputs<'a> {
    pub framing: Option<&'a str>,
    pub parse: Option<&'a str>,
    pub allow: Option<&'a [String]>,
    pub proxy_protocol: Option<bool>,
    pub proxy_from: Option<&'a [String]>,
    pub listeners: &'a BTreeMap<String, RawListener>,
}

/// An allow-list key's value, checked.
fn allow_list(key: &str, list: Option<&[String]>) -> Result<Option<Arc<AllowList>>> {
    list.map(|l| AllowList::parse(key, l).map(Arc::new))
        .transpose()
}

/// The error for `proxy_protocol` without `proxy_from`, about `what`.
fn needs_proxy_from(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: `proxy_protocol` needs `proxy_from`, the addresses of the load balancers \
         allowed to send a PROXY header (any other client could claim to be anyone); \
         `proxy_from = [\"0.0.0.0/0\", \"::/0\"]` trusts every client to say who it is"
    )
}

impl RawInputs<'_> {
    /// Checks the values; `known` are the configured listeners' addresses, which every table
    /// must name (a typo would otherwise be a table that silently applies to nothing);
    /// `streams` those of stream listeners, the only ones `framing` means something to.
    pub fn resolve(&self, known: &[ListenAddr], streams: &[ListenAddr]) -> Result<Inputs> {
        let proxy_from = allow_list("proxy_from", self.proxy_from)?;
        let proxy = self.proxy_protocol.unwrap_or(false);
        if proxy && proxy_from.is_none() {
            return Err(needs_proxy_from("key `proxy_protocol`"));
        }
        let default = Input {
            framing: choice("framing", self.framing)?,
            parse: choice("parse", self.parse)?,
            access: Access {
                allow: allow_list("allow", self.allow)?,
                proxy_from: proxy_from.clone().filter(|_| proxy),
            },
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
            let allow = match (&table.allow, &addr) {
                (Some(_), ListenAddr::Path(_)) => bail!(
                    "table `{}`: key `allow`: a unix socket is governed by its file's mode and \
                     group (`unix_mode`, `unix_group`); allow-lists are for TCP and UDP \
                     listeners",
                    at()
                ),
                (list, _) => allow_list(&format!("{}.allow", at()), list.as_deref())?,
            };
            let tcp = matches!(addr, ListenAddr::Ip(_)) && streams.contains(&addr);
            if !tcp && (table.proxy_protocol.is_some() || table.proxy_from.is_some()) {
                bail!(
                    "table `{}`: the PROXY protocol (`proxy_protocol`, `proxy_from`) is for TCP \
                     listeners",
                    at()
                );
            }
            let own_from =
                allow_list(&format!("{}.proxy_from", at()), table.proxy_from.as_deref())?;
            let on = table.proxy_protocol.unwrap_or(proxy);
            if on && own_from.is_none() && proxy_from.is_none() {
                return Err(needs_proxy_from(&format!("table `{}`", at())));
            }
            if !on && own_from.is_some() {
                bail!(
                    "table `{}`: key `proxy_from` without `proxy_protocol = true`: the \
                     listener reads no PROXY header",
                    at()
                );
            }
            let table = Table {
                framing: mode,
                parse,
                allow,
                proxy_protocol: table.proxy_protocol,
                proxy_from: own_from,
            };
            listeners.insert(addr, table);
        }
        let any_proxy = proxy || listeners.values().any(|t| t.proxy_protocol == Some(true));
        if proxy_from.is_some() && !any_proxy {
            bail!(
                "key `proxy_from` without `proxy_protocol = true` (at the top level or in a \
                 listener's table): no listener reads a PROXY header"
            );
        }
        Ok(Inputs {
            default,
            proxy_from,
            listeners,
            framing_given: self.framing.is_some(),
        })
    }
}

impl Inputs {
    /// True if no listener has a table of its own.
    pub fn no_tables(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The settings of the listener at `addr` (a unix socket's access is always open: its
    /// file's mode decides).
    pub fn at(&self, addr: &ListenAddr) -> Input {
        let table = self.listeners.get(addr).cloned().unwrap_or_default();
        let access = match addr {
            ListenAddr::Path(_) => Access::default(),
            ListenAddr::Ip(_) => Access {
                allow: table.allow.or_else(|| self.default.access.allow.clone()),
                proxy_from: table
                    .proxy_protocol
                    .unwrap_or(self.default.access.proxy_from.is_some())
                    .then(|| table.proxy_from.or_else(|| self.proxy_from.clone()))
                    .flatten(),
            },
        };
        Input {
            framing: table.framing.unwrap_or(self.default.framing),
            parse: table.parse.unwrap_or(self.default.parse),
            access,
        }
    }
}

impl Inputs {
    /// The settings of the TLS listener at `addr`: as `at`, but framing `auto` unless the
    /// top-level `framing` or its table says otherwise (RFC 5425 senders count octets; older
    /// ones send lines).
    pub fn at_tls(&self, addr: &ListenAddr) -> Input {
        let mut input = self.at(addr);
        let own = self.listeners.get(addr).and_then(|t| t.framing);
        if own.is_none() && !self.framing_given {
            input.framing = Mode::Auto;
        }
        input
    }
}

/// The `listener` tables as `--check-config` prints them.
impl Serialize for Inputs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Printed {
            #[serde(skip_serializing_if = "Option::is_none")]
            framing: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            parse: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            allow: Option<Vec<String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            proxy_protocol: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            proxy_from: Option<Vec<String>>,
        }
        let mut map = s.serialize_map(Some(self.listeners.len()))?;
        for (addr, t) in &self.listeners {
            let table = Printed {
                framing: t.framing.map(|f| f.to_string()),
                parse: t.parse.map(|p| p.to_string()),
                allow: t.allow.as_ref().map(|l| l.entries()),
                proxy_protocol: t.proxy_protocol,
                proxy_from: t.proxy_from.as_ref().map(|l| l.entries()),
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
            allow: Option<Vec<String>>,
            proxy_protocol: Option<bool>,
            proxy_from: Option<Vec<String>>,
            #[serde(default)]
            listener: BTreeMap<String, RawListener>,
        }
        let file: File = toml::from_str(text)?;
        let addrs =
            |l: &[&str]| -> Vec<ListenAddr> { l.iter().map(|a| ListenAddr::parse(a)).collect() };
        RawInputs {
            framing: file.framing.as_deref(),
            parse: file.parse.as_deref(),
            allow: file.allow.as_deref(),
            proxy_protocol: file.proxy_protocol,
            proxy_from: file.proxy_from.as_deref(),
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
            access: Access::default(),
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

    /// `allow` and the PROXY keys: top-level ones apply to TCP and UDP listeners (PROXY to
    /// TCP only), never to unix ones; tables override them.
    #[test]
    fn access_per_listener() {
        let known = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:9", "/run/in.sock"];
        let streams = ["127.0.0.1:1", "127.0.0.1:2", "/run/in.sock"];
        let inputs = resolve(
            "allow = [\"10.0.0.0/8\"]\nproxy_protocol = true\nproxy_from = [\"192.0.2.1\"]\n\
             [listener.\"127.0.0.1:2\"]\nallow = [\"::1\"]\nproxy_protocol = false\n",
            &known,
            &streams,
        )
        .unwrap();
        let at = |a: &str| inputs.at(&ListenAddr::parse(a)).access;
        let ip = |t: &str| t.parse().unwrap();
        let one = at("127.0.0.1:1");
        assert!(one.allows(ip("10.1.1.1")) && !one.allows(ip("::1")));
        assert!(one.proxy_from.unwrap().contains(ip("192.0.2.1")));
        let two = at("127.0.0.1:2");
        assert!(two.allows(ip("::1")) && !two.allows(ip("10.1.1.1")));
        assert_eq!(two.proxy_from, None, "turned off by its table");
        assert!(
            !at("127.0.0.1:9").allows(ip("192.0.2.1")),
            "UDP takes allow"
        );
        assert_eq!(
            at("/run/in.sock"),
            Access::default(),
            "unix: its mode decides"
        );
        // PROXY on one listener only, with the top-level proxy_from.
        let inputs = resolve(
            "proxy_from = [\"192.0.2.0/24\"]\n[listener.\"127.0.0.1:2\"]\nproxy_protocol = true\n",
            &known,
            &streams,
        )
        .unwrap();
        assert_eq!(
            inputs
                .at(&ListenAddr::parse("127.0.0.1:1"))
                .access
                .proxy_from,
            None
        );
        let two = inputs.at(&ListenAddr::parse("127.0.0.1:2")).access;
        assert!(two.proxy_from.unwrap().contains(ip("192.0.2.9")));
    }

    /// Access mistakes are refused, naming the key or table and the value.
    #[test]
    fn access_errors() {
        let known = ["127.0.0.1:1", "127.0.0.1:9", "/run/in.sock"];
        let streams = ["127.0.0.1:1", "/run/in.sock"];
        let err = |text: &str| format!("{:#}", resolve(text, &known, &streams).unwrap_err());
        assert!(err("allow = [\"10.0.0.0/33\"]").contains("key `allow`: `10.0.0.0/33`"));
        assert!(
            err("[listener.\"127.0.0.1:1\"]\nallow = [\"x\"]")
                .contains("key `listener.\"127.0.0.1:1\".allow`: `x`")
        );
        assert!(
            err("[listener.\"/run/in.sock\"]\nallow = [\"::1\"]")
                .contains("table `listener.\"/run/in.sock\"`: key `allow`: a unix socket")
        );
        assert!(
            err("proxy_protocol = true")
                .contains("key `proxy_protocol`: `proxy_protocol` needs `proxy_from`")
        );
        assert!(
            err("[listener.\"127.0.0.1:1\"]\nproxy_protocol = true")
                .contains("table `listener.\"127.0.0.1:1\"`: `proxy_protocol` needs")
        );
        assert!(err("proxy_from = [\"::1\"]").contains("key `proxy_from` without"));
        assert!(
            err("[listener.\"127.0.0.1:1\"]\nproxy_from = [\"::1\"]")
                .contains("key `proxy_from` without")
        );
        assert!(
            err("[listener.\"127.0.0.1:9\"]\nproxy_protocol = true\nproxy_from = [\"::1\"]")
                .contains("for TCP listeners"),
            "PROXY on a UDP socket"
        );
        assert!(
            err("[listener.\"/run/in.sock\"]\nproxy_protocol = false")
                .contains("for TCP listeners")
        );
        assert!(err("allow = []").contains("an empty list"));
    }
}
