//! The effective configuration: built-in defaults, overridden by the TOML file (`--config`),
//! overridden by command-line options.
//!
//! Every setting is named once, as a field of [`Raw`]: serde derives the file's key from it
//! (unknown keys are refused) and clap the command-line option (see `cli.rs`), whose doc
//! comment is the `--help` text and the man page's. `Raw::resolve` applies the defaults and
//! checks each value into the typed [`Config`], which serde prints back as TOML for
//! `--check-config`. Adding a setting means a field in `Raw`, one in `Config` and its check
//! in `resolve`.
//!
//! The file is read as a TOML table and each key converted on its own, so every error names
//! the file, the key and the problem (`logsinkd.toml: key `max_line`: ...`). Values that need
//! checking beyond their TOML type (addresses, sizes, names) are kept as written until
//! `resolve`, so an option on the command line and a key in the file fail with the same message.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{ArgMatches, Args, FromArgMatches};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cli::Cli;
use crate::format::Format;
use crate::framing::Mode;
use crate::input::{Inputs, ListenAddr, Parse, RawInputs, RawListener};
use crate::sink::{SyslogFraming, SyslogProtocol, Target};
use crate::tls::{PeerRule, TlsSettings};
use crate::unix::settings::{RawUnix, UnixSettings};

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
/// Default `tls_handshake_timeout`, in seconds: a client on a slow link completes a TLS
/// handshake in a few round trips; a stalled one holds its slot (and about 18 KiB) this long.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: u64 = 10;
/// Longest `tls_handshake_timeout`, in seconds.
pub const MAX_TLS_HANDSHAKE_TIMEOUT: u64 = 300;
/// Default `tls_max_handshakes`: 1024 stalled handshakes hold about 18 MiB.
pub const DEFAULT_TLS_MAX_HANDSHAKES: usize = 1024;

/// The checked settings the daemon runs with. Serialized, it is the `--check-config` output:
/// a config file that reads back to the same settings.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub listen_udp: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    /// Unix-domain sockets: `listen_unix`, `listen_unix_dgram`, `unix_*` (see unix/settings.rs).
    #[serde(flatten)]
    pub unix: UnixSettings,
    #[serde(serialize_with = "as_text")]
    pub output: Target,
    /// A templated output's settings (also in `output`), printed back only for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_tz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_open_files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_idle_close: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "path_as_text"
    )]
    pub fallback_output: Option<PathBuf>,
    #[serde(serialize_with = "as_text")]
    pub format: Format,
    /// Every listener's framing and parsing unless its table (`listener`) says otherwise.
    #[serde(skip)]
    pub framing: Mode,
    /// `framing` as printed: left out when not given and TLS listeners exist (they default
    /// to `auto`, the others to `lines`; printing `lines` would change theirs).
    #[serde(
        rename = "framing",
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_as_text"
    )]
    pub framing_printed: Option<Mode>,
    #[serde(serialize_with = "as_text")]
    pub parse: Parse,
    pub max_line: usize,
    pub foreground: bool,
    /// Printed lossily: `--check-config` shows a path that is not UTF-8 rather than failing.
    #[serde(serialize_with = "path_as_text")]
    pub pid_file: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub syslog_facility: String,
    #[serde(serialize_with = "as_text")]
    pub syslog_format: SyslogProtocol,
    #[serde(serialize_with = "as_text")]
    pub syslog_framing: SyslogFraming,
    pub max_connections: usize,
    pub backlog: u32,
    /// `None`: connections may stay idle for ever (printed as 0, as it is written).
    #[serde(serialize_with = "seconds")]
    pub idle_timeout: Option<Duration>,
    /// Where `GET /metrics` is served (Prometheus text); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The top-level `allow`, as printed (the checked lists are in `inputs`).
    pub allow: Option<Vec<String>>,
    pub proxy_protocol: bool,
    pub proxy_from: Option<Vec<String>>,
    /// The TLS keys as printed (the checked settings are in `tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_peers: Option<Vec<String>>,
    /// How long a TLS client may take to complete its handshake.
    #[serde(serialize_with = "duration_seconds")]
    pub tls_handshake_timeout: Duration,
    pub tls_max_handshakes: usize,
    /// `tls_cert`, `tls_key`, `tls_client_ca`, `tls_peers` checked; `None` without TLS
    /// listeners.
    #[serde(skip)]
    pub tls: Option<TlsSettings>,
    /// The listeners' own tables (printed last: TOML tables follow the plain keys), and the
    /// settings that every listener's input resolves to.
    #[serde(rename = "listener", skip_serializing_if = "Inputs::no_tables")]
    pub inputs: Inputs,
}

impl Config {
    /// Builds the configuration from the command line and the file it names. `given` are
    /// clap's matches for `cli`: they tell an option given on the command line, which wins,
    /// from one left out, which leaves the file's value. `fd_limit` is the process's
    /// open-file limit, which sizes the default connection cap.
    pub fn load(cli: &Cli, given: &ArgMatches, fd_limit: usize) -> Result<Config> {
        let mut raw = match &cli.config {
            Some(path) => {
                let raw = Raw::from_file(path)?;
                // Check the file on its own first, so its errors name the file. Its listener
                // tables may name listeners given on the command line: they are checked once
                // both are merged, below.
                let mut alone = raw.clone();
                alone.listener.clear();
                alone
                    .resolve(fd_limit)
                    .with_context(|| format!("config {}", path.display()))?;
                raw
            }
            None => Raw::default(),
        };
        raw.update_from_arg_matches(given)
            .context("reading the command line")?;
        raw.resolve(fd_limit)
    }

    /// Parses and validates a config file's text alone (the fuzz target's entry point).
    pub fn from_toml(text: &str, fd_limit: usize) -> Result<Config> {
        Raw::parse(text)?.resolve(fd_limit)
    }
}

/// Settings as written in the config file or on the command line, before defaults and checks;
/// `None` where not given. Each field is a key of the file and, with dashes for underscores,
/// an option of the command line (flattened into `Cli`); its doc comment is the option's help.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// TCP address to listen on, e.g. 0.0.0.0:5140 or [::1]:5140; repeatable [default: 127.0.0.1:5140]
    #[arg(short = 'l', long, value_name = "ADDR")]
    listen: Option<Vec<String>>,

    /// UDP address to take datagrams on (each holds one or more lines), e.g. 0.0.0.0:514;
    /// repeatable [default: none]
    #[arg(long, value_name = "ADDR")]
    listen_udp: Option<Vec<String>>,

    /// TCP address to serve syslog over TLS on (RFC 5425), e.g. 0.0.0.0:6514; needs tls_cert
    /// and tls_key; repeatable [default: none]
    #[arg(long, value_name = "ADDR")]
    listen_tls: Option<Vec<String>>,

    /// The TLS listeners' certificate chain, PEM, the server's own certificate first; `%d/NAME`
    /// is a systemd credential (LoadCredential=); read again at SIGHUP
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The TLS listeners' private key, PEM, unencrypted; read at start, before dropping
    /// privileges, and again at SIGHUP (if it cannot be read then, the old key stays)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that issue client certificates: when set, every TLS client must
    /// present a certificate issued by one of them [default: none, no client certificate asked]
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,

    /// TLS clients accepted (when set, only these): a DNS name or IP address of the client
    /// certificate (needs tls_client_ca), or `sha256:` and its fingerprint; repeatable
    #[arg(long, value_name = "PEER")]
    tls_peers: Option<Vec<String>>,

    /// Seconds a TLS client may take to complete its handshake before it is closed
    /// (1 to 300) [default: 10]
    #[arg(long, value_name = "SECS")]
    tls_handshake_timeout: Option<u64>,

    /// Most TLS handshakes in progress at once (each holds about 18 KiB until it completes);
    /// at the cap, TLS listeners accept no more until one completes or fails, and new clients
    /// wait in the backlog [default: 1024]
    #[arg(long, value_name = "N")]
    tls_max_handshakes: Option<usize>,

    /// Unix stream socket to listen on (lines, as over TCP), e.g. /run/logsinkd/in.sock;
    /// repeatable [default: none]
    #[arg(long, value_name = "PATH")]
    listen_unix: Option<Vec<PathBuf>>,

    /// Unix datagram socket to take messages on (each datagram one message, as over UDP; what
    /// `logger -u PATH` sends); repeatable [default: none]
    #[arg(long, value_name = "PATH")]
    listen_unix_dgram: Option<Vec<PathBuf>>,

    /// Mode of the unix sockets logsinkd creates, in octal, as a string in the file ("0660");
    /// connecting needs write permission [default: 0660]
    #[arg(long, value_name = "MODE")]
    unix_mode: Option<String>,

    /// Owner (name or uid) of the unix sockets logsinkd creates [default: the starting user]
    #[arg(long, value_name = "USER")]
    #[serde(default, deserialize_with = "name_text")]
    unix_owner: Option<String>,

    /// Group (name or gid) of the unix sockets logsinkd creates [default: the starting group]
    #[arg(long, value_name = "GROUP")]
    #[serde(default, deserialize_with = "name_text")]
    unix_group: Option<String>,

    /// Where records go: a file path, `syslog`, `syslog:/path/to/socket`,
    /// `syslog+udp://host:port`, `syslog+tcp://host:port`, `journal` (journald's native
    /// socket, one entry per record with its fields) or `journal:/path/to/socket`. A file
    /// path may hold fields, for one file per sender: `{peer_ip}`, `{peer_port}`,
    /// `{listener}`, `{date}`, `{hour}` and, with parse = syslog, `{hostname}`, `{app}`,
    /// `{facility}`, `{severity}` (chosen by the sender); `{{` and `}}` are braces
    /// [default: ./logsinkd.log]
    #[arg(short = 'o', long, value_name = "TARGET")]
    output: Option<String>,

    /// Zone of the `{date}` and `{hour}` fields of a file output's path: `utc` or `local`
    /// [default: utc]
    #[arg(long, value_name = "ZONE")]
    date_tz: Option<String>,

    /// Most files a file output with fields in its path keeps open at once; the least
    /// recently written is closed to open another [default: derived from the open-file limit
    /// and max_connections]
    #[arg(long, value_name = "N")]
    max_open_files: Option<usize>,

    /// Close a file of a file output with fields in its path after this many seconds without
    /// a write (it is opened again on the next) [default: 60]
    #[arg(long, value_name = "SECS")]
    file_idle_close: Option<u64>,

    /// File for the records of a file output with fields in its path whose file cannot be
    /// created for good (no permission, a link in the way); without it they are held and
    /// retried, and reading from clients pauses [default: none]
    #[arg(long, value_name = "FILE")]
    fallback_output: Option<PathBuf>,

    /// Record format: `default` (time, peer, escaped line), `raw` (bytes as received), `json`,
    /// or `syslog` (the classic syslog file layout: timestamp, host, tag, message)
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,

    /// How stream clients' bytes are cut into messages: `lines` (each line), `octet` (RFC 6587
    /// octet counting, `LEN <msg>`, as rsyslog and syslog-ng forward) or `auto` (octet if a
    /// connection starts with a complete `LEN <PRI>` header, else lines); a listener's table
    /// may override it [default: lines]
    #[arg(long, value_name = "FRAMING")]
    framing: Option<String>,

    /// `syslog`: scan each message for RFC 5424 / RFC 3164 fields (for the json and syslog
    /// formats and syslog relaying; a message that does not parse is recorded as it is);
    /// `none`: record messages as they are; a listener's table may override it [default: none]
    #[arg(long, value_name = "PARSE")]
    parse: Option<String>,

    /// Longest line recorded as one record; longer lines are recorded in pieces of this size.
    /// Accepts a K, M suffix (KiB, MiB) [default: 64K]
    #[arg(long, value_name = "BYTES")]
    #[serde(default, deserialize_with = "size_text")]
    max_line: Option<String>,

    /// Stay in the foreground and log diagnostics to stderr (use this under systemd)
    // A flag that takes no value on the command line. Not clap's `SetTrue`: that one is
    // always present (false when left out), so it would override the file's `true`.
    #[arg(short = 'f', long, num_args = 0, default_missing_value = "true")]
    foreground: Option<bool>,

    /// Write the daemon's pid to this file once it is ready; removed at exit
    #[arg(short = 'p', long, value_name = "FILE")]
    pid_file: Option<PathBuf>,

    /// Switch to this user after binding the listeners and opening the output
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,

    /// Switch to this group after binding the listeners and opening the output
    /// [default: the user's primary group]
    #[arg(short = 'g', long, value_name = "GROUP")]
    group: Option<String>,

    /// Syslog facility of recorded lines when the output is syslog or the journal; a parsed
    /// message keeps its sender's [default: user]
    #[arg(long, value_name = "NAME")]
    syslog_facility: Option<String>,

    /// Message format sent to a syslog output: `rfc3164` (the classic BSD format, what
    /// syslog(3) sends) or `rfc5424` [default: rfc3164]
    #[arg(long, value_name = "FORMAT")]
    syslog_format: Option<String>,

    /// How messages are framed on a `syslog+tcp://` output: `lines` (each ends with LF) or
    /// `octet` (RFC 6587 octet counting, for messages that hold LFs) [default: lines]
    #[arg(long, value_name = "FRAMING")]
    syslog_framing: Option<String>,

    /// Most client connections open at once; at the cap new clients wait in the kernel's
    /// backlog [default: derived from the open-file limit]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Listen backlog: connections the kernel queues before logsinkd accepts them [default: 1024]
    #[arg(long, value_name = "N")]
    backlog: Option<u32>,

    /// Close a connection that sent nothing for this many seconds (its partial line is recorded);
    /// 0 turns it off; at most 31536000 (a year) [default: 0]
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,

    /// TCP address to serve Prometheus metrics on (`GET /metrics`), e.g. 127.0.0.1:9140
    /// [default: none, no metrics served]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Clients allowed to send: an address or CIDR block (10.0.0.0/8, 2001:db8::/32,
    /// 127.0.0.1); a TCP client outside is reset at accept, a UDP datagram dropped; unix
    /// sockets are governed by their mode instead; repeatable; a listener's table may
    /// override it [default: any address]
    #[arg(long, value_name = "CIDR")]
    allow: Option<Vec<String>>,

    /// Every TCP connection starts with a PROXY protocol header (v1 or v2, as a load
    /// balancer such as HAProxy sends): the client it names is the peer recorded and matched
    /// against allow; needs proxy_from; a listener's table may override it [default: off]
    #[arg(long, num_args = 0, default_missing_value = "true")]
    proxy_protocol: Option<bool>,

    /// Load balancers allowed to send the PROXY header: an address or CIDR block; a
    /// connection from elsewhere on a proxy_protocol listener is reset; repeatable
    #[arg(long, value_name = "CIDR")]
    proxy_from: Option<Vec<String>>,

    /// Per-listener settings, in the file only: `[listener."ADDR"]` tables keyed by a
    /// listener's address or path as written in its listen key.
    #[arg(skip)]
    #[serde(default)]
    listener: BTreeMap<String, RawListener>,
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
        // Each key on its own first: serde's error for the whole table would not say which
        // key it is about.
        let keys = Raw::keys();
        for (key, value) in &table {
            if !keys.contains(key) {
                bail!("unknown key `{key}` (known keys: {})", keys.join(", "));
            }
            let alone = toml::Table::from_iter([(key.clone(), value.clone())]);
            toml::Value::Table(alone)
                .try_into::<Raw>()
                .map_err(|e| anyhow!("key `{key}`: {} (found {value})", e.message().trim_end()))?;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("{}", e.message().trim_end()))
    }

    /// The file's keys, in their order in `Raw`: the ids clap derives from the field names,
    /// which are also serde's (a unit test holds them equal).
    fn keys() -> Vec<String> {
        let mut keys: Vec<String> = Raw::augment_args(clap::Command::new("keys"))
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect();
        // The one key that is no option: tables do not fit a command line.
        keys.push("listener".into());
        keys
    }

    fn resolve(self, fd_limit: usize) -> Result<Config> {
        let listen = addresses(
            "listen",
            &self.listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.into()]),
        )?;
        let listen_udp = addresses("listen_udp", &self.listen_udp.unwrap_or_default())?;
        let listen_tls = addresses("listen_tls", &self.listen_tls.unwrap_or_default())?;
        if let Some(addr) = listen_tls
            .iter()
            .find(|a| a.port() != 0 && listen.contains(a))
        {
            bail!(
                "key `listen_tls`: `{addr}` is also in `listen`; a TLS listener needs an address \
                 (or port) of its own"
            );
        }
        let tls = tls_settings(
            &listen_tls,
            self.tls_cert,
            self.tls_key,
            self.tls_client_ca,
            self.tls_peers.as_deref(),
        )?;
        let tls_handshake_timeout = match self.tls_handshake_timeout {
            None => DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            Some(s) if (1..=MAX_TLS_HANDSHAKE_TIMEOUT).contains(&s) => s,
            Some(s) => bail!(
                "key `tls_handshake_timeout`: {s} seconds is out of range: from 1 to \
                 {MAX_TLS_HANDSHAKE_TIMEOUT}"
            ),
        };
        let tls_handshake_timeout = Duration::from_secs(tls_handshake_timeout);
        let tls_max_handshakes = match self.tls_max_handshakes {
            Some(0) => bail!("key `tls_max_handshakes`: must be at least 1"),
            Some(n) => n,
            None => DEFAULT_TLS_MAX_HANDSHAKES,
        };
        let unix = RawUnix {
            listen: self.listen_unix,
            listen_dgram: self.listen_unix_dgram,
            mode: self.unix_mode,
            owner: self.unix_owner,
            group: self.unix_group,
        }
        .resolve()?;
        if listen.is_empty()
            && listen_udp.is_empty()
            && listen_tls.is_empty()
            && unix.sockets() == 0
        {
            bail!(
                "key `listen`: at least one address is needed (or one in `listen_udp`, \
                 `listen_tls`, `listen_unix` or `listen_unix_dgram`)"
            );
        }
        if listen.len() + listen_udp.len() + listen_tls.len() + unix.sockets()
            > crate::event_loop::MAX_LISTENERS
        {
            bail!(
                "keys `listen`, `listen_udp`, `listen_tls`, `listen_unix` and \
                 `listen_unix_dgram`: at most {} sockets in all",
                crate::event_loop::MAX_LISTENERS
            );
        }
        let output = self.output.as_deref().unwrap_or(DEFAULT_OUTPUT);
        let mut output =
            Target::parse(output).with_context(|| format!("key `output`: `{output}`"))?;
        let format = choice("format", self.format.as_deref())?;
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
        let known: Vec<ListenAddr> = listen
            .iter()
            .chain(&listen_udp)
            .chain(&listen_tls)
            .map(|&a| ListenAddr::Ip(a))
            .chain(
                unix.listen
                    .iter()
                    .chain(&unix.listen_dgram)
                    .map(|p| ListenAddr::Path(p.clone())),
            )
            .collect();
        let streams: Vec<ListenAddr> = listen
            .iter()
            .chain(&listen_tls)
            .map(|&a| ListenAddr::Ip(a))
            .chain(unix.listen.iter().map(|p| ListenAddr::Path(p.clone())))
            .collect();
        let inputs = RawInputs {
            framing: self.framing.as_deref(),
            parse: self.parse.as_deref(),
            allow: self.allow.as_deref(),
            proxy_protocol: self.proxy_protocol,
            proxy_from: self.proxy_from.as_deref(),
            listeners: &self.listener,
        }
        .resolve(&known, &streams)?;
        check_tls_proxy(&listen_tls, &inputs)?;
        let syslog_format = choice("syslog_format", self.syslog_format.as_deref())?;
        let syslog_framing = choice("syslog_framing", self.syslog_framing.as_deref())?;
        if syslog_framing == SyslogFraming::Octet
            && !matches!(output, Target::Syslog(crate::sink::SyslogAddr::Tcp(_)))
        {
            bail!(
                "key `syslog_framing`: `octet` frames messages on a `syslog+tcp://` output; \
                 the output is `{output}`"
            );
        }
        let syslog_facility = self.syslog_facility.unwrap_or_else(|| "user".into());
        if syslog_facility.parse::<syslog::Facility>().is_err() {
            bail!(
                "key `syslog_facility`: unknown facility `{syslog_facility}` \
                 (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0..local7)"
            );
        }
        if let Some(n) = self.max_connections.filter(|&n| n == 0) {
            bail!("key `max_connections`: must be at least 1 (found {n})");
        }
        let templated = match &mut output {
            Target::Files(files) => Some(files),
            _ => None,
        };
        let max_connections = match templated {
            None => {
                for (key, given) in [
                    ("date_tz", self.date_tz.is_some()),
                    ("max_open_files", self.max_open_files.is_some()),
                    ("file_idle_close", self.file_idle_close.is_some()),
                    ("fallback_output", self.fallback_output.is_some()),
                ] {
                    if given {
                        bail!(
                            "key `{key}`: applies to an output path with fields (such as \
                             `/var/log/remote/{{peer_ip}}.log`); the output is `{output}`"
                        );
                    }
                }
                self.max_connections
                    .unwrap_or_else(|| fd_limit.saturating_sub(FD_HEADROOM).max(1))
            }
            Some(files) => {
                if files.template.uses_message()
                    && inputs.default.parse != Parse::Syslog
                    && !inputs
                        .listeners
                        .values()
                        .any(|t| t.parse == Some(Parse::Syslog))
                {
                    bail!(
                        "key `output`: `{}` uses fields of the message ({{hostname}}, {{app}}, \
                         {{facility}}, {{severity}}), which need `parse = \"syslog\"`",
                        files.template
                    );
                }
                files.date_tz = match self.date_tz.as_deref() {
                    None | Some("utc") => crate::sink::DateTz::Utc,
                    Some("local") => crate::sink::DateTz::Local,
                    Some(other) => {
                        bail!("key `date_tz`: unknown zone `{other}` (utc or local)")
                    }
                };
                files.idle_close = match self.file_idle_close {
                    None => crate::sink::DEFAULT_IDLE_CLOSE,
                    Some(s) if (1..=MAX_IDLE_TIMEOUT).contains(&s) => Duration::from_secs(s),
                    Some(s) => bail!(
                        "key `file_idle_close`: {s} seconds is out of range: from 1 to \
                         {MAX_IDLE_TIMEOUT} (a year)"
                    ),
                };
                files.fallback = self.fallback_output.clone();
                // Connections and files share the open-file limit: their sum stays under it,
                // so neither an accept nor an open runs out of descriptors.
                let budget = fd_limit.saturating_sub(FD_HEADROOM).max(2);
                let (connections, max_open) = match (self.max_connections, self.max_open_files) {
                    (_, Some(0)) => bail!("key `max_open_files`: must be at least 1"),
                    (Some(c), Some(f)) if c.saturating_add(f) > budget => bail!(
                        "keys `max_connections` ({c}) and `max_open_files` ({f}): together \
                         above the {budget} descriptors the open-file limit ({fd_limit}) \
                         leaves; lower one or raise the limit"
                    ),
                    (Some(c), Some(f)) => (c, f),
                    (Some(c), None) if c >= budget => bail!(
                        "key `max_connections`: {c} leaves no descriptor for the output's \
                         files under the open-file limit ({fd_limit}); lower it, set \
                         `max_open_files`, or raise the limit"
                    ),
                    (Some(c), None) => (c, budget - c),
                    (None, Some(f)) if f >= budget => bail!(
                        "key `max_open_files`: {f} leaves no descriptor for connections under \
                         the open-file limit ({fd_limit})"
                    ),
                    (None, Some(f)) => (budget - f, f),
                    (None, None) => {
                        let f = (budget / 4).clamp(1, 4096);
                        (budget - f, f)
                    }
                };
                files.max_open = max_open;
                connections
            }
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
        let metrics_listen = match self.metrics_listen.as_deref() {
            None => None,
            Some(text) => {
                let addr = addresses("metrics_listen", &[text.to_string()])?[0];
                if addr.port() != 0 && listen.contains(&addr) {
                    bail!(
                        "key `metrics_listen`: `{addr}` is also in `listen`; the metrics need \
                         an address (or port) of their own"
                    );
                }
                Some(addr)
            }
        };
        if self.group.is_some() && self.user.is_none() {
            bail!("key `group`: needs `user` as well (logsinkd drops both or neither)");
        }
        let framing_printed =
            (inputs.framing_given || listen_tls.is_empty()).then_some(inputs.default.framing);
        let files = match &output {
            Target::Files(f) => Some(f),
            _ => None,
        };
        Ok(Config {
            listen,
            listen_udp,
            listen_tls,
            unix,
            date_tz: files.map(|f| {
                match f.date_tz {
                    crate::sink::DateTz::Utc => "utc",
                    crate::sink::DateTz::Local => "local",
                }
                .to_string()
            }),
            max_open_files: files.map(|f| f.max_open),
            file_idle_close: files.map(|f| f.idle_close.as_secs()),
            fallback_output: files.and_then(|f| f.fallback.clone()),
            output,
            format,
            framing: inputs.default.framing,
            framing_printed,
            parse: inputs.default.parse,
            allow: inputs.default.access.allow.as_ref().map(|l| l.entries()),
            proxy_protocol: inputs.default.access.proxy_from.is_some(),
            proxy_from: inputs.proxy_from.as_ref().map(|l| l.entries()),
            max_line,
            foreground: self.foreground.unwrap_or(false),
            pid_file: self.pid_file,
            user: self.user,
            group: self.group,
            syslog_facility,
            syslog_format,
            syslog_framing,
            max_connections,
            backlog,
            idle_timeout,
            metrics_listen,
            tls_cert: tls.as_ref().map(|t| t.cert.display().to_string()),
            tls_key: tls.as_ref().map(|t| t.key.display().to_string()),
            tls_client_ca: tls
                .as_ref()
                .and_then(|t| t.client_ca.as_ref())
                .map(|p| p.display().to_string()),
            tls_peers: tls
                .as_ref()
                .filter(|t| !t.peers.is_empty())
                .map(|t| t.peers.iter().map(ToString::to_string).collect()),
            tls,
            tls_handshake_timeout,
            tls_max_handshakes,
            inputs,
        })
    }
}

/// The TLS keys checked: `None` without TLS listeners (then no TLS key may be set: it would
/// apply to nothing). The files are read later (`TlsServer::load`), before the privilege drop.
fn tls_settings(
    listen_tls: &[SocketAddr],
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    peers: Option<&[String]>,
) -> Result<Option<TlsSettings>> {
    if listen_tls.is_empty() {
        let set = [
            ("tls_cert", cert.is_some()),
            ("tls_key", key.is_some()),
            ("tls_client_ca", client_ca.is_some()),
            ("tls_peers", peers.is_some()),
        ];
        if let Some((name, _)) = set.iter().find(|(_, set)| *set) {
            bail!("key `{name}`: no TLS listener (`listen_tls`) to apply it to");
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        bail!(
            "key `listen_tls`: a TLS listener needs `tls_cert` (the certificate chain) and \
             `tls_key` (its private key)"
        );
    };
    let peers = peers
        .unwrap_or_default()
        .iter()
        .map(|p| {
            p.parse::<PeerRule>()
                .map_err(|e| anyhow!("key `tls_peers`: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TlsSettings {
        cert,
        key,
        client_ca,
        peers,
    }))
}

/// A TLS listener reads no PROXY header: the TLS handshake starts the connection (a balancer
/// in front of it passes TLS through, and the peer is the balancer).
fn check_tls_proxy(listen_tls: &[SocketAddr], inputs: &Inputs) -> Result<()> {
    if listen_tls.is_empty() {
        return Ok(());
    }
    if inputs.default.access.proxy_from.is_some() {
        bail!(
            "key `proxy_protocol`: TLS listeners (`listen_tls`) read no PROXY header; set \
             `proxy_protocol = true` in the tables of the TCP listeners that need it instead"
        );
    }
    for addr in listen_tls {
        let table = inputs.listeners.get(&ListenAddr::Ip(*addr));
        if table.is_some_and(|t| t.proxy_protocol == Some(true)) {
            bail!(
                "table `listener.\"{addr}\"`: key `proxy_protocol`: a TLS listener reads no \
                 PROXY header (the TLS handshake starts its connections)"
            );
        }
    }
    Ok(())
}

fn duration_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A setting that takes one of a few names (`format`, `framing`, `parse`, `syslog_format`,
/// `syslog_framing`): each name written once, in `CHOICES`, which serves to read it, to print
/// it (`Display` is `name`) and to list the names in the error for an unknown one.
pub trait Choice: Copy + PartialEq + Default + 'static {
    /// What the value is called in the error for an unknown name (`unknown format `x``).
    const WHAT: &'static str;
    /// Every name and its value.
    const CHOICES: &'static [(&'static str, Self)];

    /// The value called `name`.
    fn named(name: &str) -> Option<Self> {
        Self::CHOICES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, value)| value)
    }

    /// This value's name.
    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, value)| *value == self)
            .map_or("", |&(n, _)| n)
    }
}

/// The value `key` names, or an error that lists the names it could be.
pub fn choose<T: Choice>(key: &str, name: &str) -> Result<T> {
    T::named(name).ok_or_else(|| {
        let names: Vec<&str> = T::CHOICES.iter().map(|&(n, _)| n).collect();
        let (last, rest) = names.split_last().expect("a choice has names");
        anyhow!(
            "key `{key}`: unknown {} `{name}`, expected {} or {last}",
            T::WHAT,
            rest.join(", ")
        )
    })
}

/// `key`'s value as written (`choose`), or its default where it is not given.
pub fn choice<T: Choice>(key: &str, given: Option<&str>) -> Result<T> {
    given.map_or(Ok(T::default()), |name| choose(key, name))
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

/// `max_line` in the file: an integer (bytes) or a string with a suffix (`"64K"`), kept as
/// text like the command line's `--max-line 64K`, for `parse_size` to check.
fn size_text<'de, D: Deserializer<'de>>(value: D) -> Result<Option<String>, D::Error> {
    value
        .deserialize_any(NumberOrText(
            "a number of bytes or a string such as \"64K\"",
        ))
        .map(Some)
}

/// `unix_owner`, `unix_group` in the file: a name, or a number (`0` and `"0"` alike).
fn name_text<'de, D: Deserializer<'de>>(value: D) -> Result<Option<String>, D::Error> {
    value
        .deserialize_any(NumberOrText("a name or a number"))
        .map(Some)
}

/// Takes an integer or a string as text; says what it expects.
struct NumberOrText(&'static str);

impl serde::de::Visitor<'_> for NumberOrText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E>(self, n: i64) -> Result<String, E> {
        Ok(n.to_string())
    }
    fn visit_u64<E>(self, n: u64) -> Result<String, E> {
        Ok(n.to_string())
    }
    fn visit_str<E>(self, text: &str) -> Result<String, E> {
        Ok(text.to_owned())
    }
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

/// A value as the text it reads back from (`Target` and `Format` parse what they display).
fn as_text<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn opt_as_text<T: fmt::Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.collect_str(value),
        None => s.serialize_none(),
    }
}

fn path_as_text<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => s.collect_str(&path.display()),
        None => s.serialize_none(),
    }
}

fn seconds<S: Serializer>(timeout: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(timeout.map_or(0, |d| d.as_secs()))
}

/// The effective configuration as a TOML file, for `--check-config`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cannot fail: every field is a string, a number, a bool or a list of strings, and
        // absent ones (`None`) are left out.
        let text = toml::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
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
        assert!(
            err("metrics_listen = \"localhost:9140\"")
                .contains("key `metrics_listen`: `localhost:9140` is not an address")
        );
        assert!(
            err("listen = [\"127.0.0.1:9\"]\nmetrics_listen = \"127.0.0.1:9\"")
                .contains("key `metrics_listen`: `127.0.0.1:9` is also in `listen`")
        );
        assert_eq!(
            load("metrics_listen = \"[::1]:9140\"")
                .unwrap()
                .metrics_listen,
            Some("[::1]:9140".parse().unwrap())
        );
        assert_eq!(load("").unwrap().metrics_listen, None, "off by default");
        assert_eq!(
            load("idle_timeout = 31536000").unwrap().idle_timeout,
            Some(Duration::from_secs(MAX_IDLE_TIMEOUT))
        );
    }

    /// The key list that names unknown keys (clap's ids) is the one serde accepts.
    #[test]
    fn keys_are_serde_fields() {
        let keys = Raw::keys();
        assert_eq!(keys.len(), 38, "{keys:?}");
        for key in &keys {
            // A table is the wrong type for every key but `listener`, whose tables hold tables.
            let wrong = if key == "listener" { "1" } else { "{}" };
            let err = format!("{:#}", load(&format!("{key} = {wrong}")).unwrap_err());
            assert!(
                err.starts_with(&format!("key `{key}`: invalid type")),
                "{err}"
            );
        }
    }

    /// Options given on the command line win over the file's keys; the file's other keys stay,
    /// `--foreground` included (a flag left out does not turn the file's `true` off).
    #[test]
    fn command_line_overrides_only_what_it_gives() {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "format = \"json\"\nforeground = true\nlisten = [\"127.0.0.1:1\"]\nmax_line = 100\n",
        )
        .unwrap();
        let load_with = |args: &[&str]| {
            let given = Cli::command()
                .try_get_matches_from(
                    ["logsinkd", "-c", file.to_str().unwrap()]
                        .iter()
                        .chain(args),
                )
                .unwrap();
            let cli = Cli::from_arg_matches(&given).unwrap();
            Config::load(&cli, &given, 1024).unwrap()
        };
        let c = load_with(&["--format", "raw", "-l", "[::1]:2", "-l", "[::1]:3"]);
        assert_eq!(c.format, Format::Raw);
        assert_eq!(c.listen.len(), 2);
        assert!(c.foreground);
        assert_eq!(c.max_line, 100);
        let c = load_with(&["-f", "--max-line", "2K"]);
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.listen, vec!["127.0.0.1:1".parse().unwrap()]);
        assert!(c.foreground);
        assert_eq!(c.max_line, 2048);
    }

    /// The printed configuration reads back to the same settings.
    #[test]
    fn display_round_trips() {
        let c = load("listen = [\"[::1]:7\"]\nlisten_udp = [\"[::1]:8\"]\nformat = \"raw\"\nidle_timeout = 9")
            .unwrap();
        let again = load(&c.to_string()).unwrap();
        assert_eq!(again.to_string(), c.to_string());
        let all = "listen = [\"[::1]:1\"]\nlisten_udp = []\nlisten_tls = []\nlisten_unix = [\"/run/in.sock\"]\n\
                   listen_unix_dgram = []\nunix_mode = \"0620\"\nunix_owner = \"root\"\n\
                   unix_group = \"0\"\noutput = \"syslog+tcp://127.0.0.1:514\"\n\
                   format = \"json\"\nframing = \"auto\"\nparse = \"syslog\"\n\
                   max_line = 1048576\nforeground = true\n\
                   pid_file = \"/run/x.pid\"\nuser = \"nobody\"\ngroup = \"nogroup\"\n\
                   syslog_facility = \"local3\"\nsyslog_format = \"rfc5424\"\n\
                   syslog_framing = \"octet\"\nmax_connections = 10\nbacklog = 5\n\
                   idle_timeout = 30\nmetrics_listen = \"127.0.0.1:9140\"\n\
                   allow = [\"10.0.0.0/8\", \"::1/128\"]\n\
                   proxy_protocol = true\nproxy_from = [\"192.0.2.0/24\"]\n\
                   tls_handshake_timeout = 10\ntls_max_handshakes = 1024\n\n\
                   [listener.\"[::1]:1\"]\nframing = \"octet\"\nallow = [\"::1/128\"]\n\
                   proxy_protocol = false\n\n\
                   [listener.\"/run/in.sock\"]\nparse = \"none\"\n";
        assert_eq!(load(all).unwrap().to_string(), all, "every key, in order");
    }

    /// The TLS keys: checked together, printed back, and framing `auto` on TLS listeners
    /// unless `framing` is given.
    #[test]
    fn tls_keys() {
        let err = |t: &str| format!("{:#}", load(t).unwrap_err());
        let tls =
            "listen_tls = [\"127.0.0.1:6514\"]\ntls_cert = \"/c.crt\"\ntls_key = \"/k.key\"\n";
        let c = load(tls).unwrap();
        assert_eq!(c.listen_tls, vec!["127.0.0.1:6514".parse().unwrap()]);
        assert_eq!(c.tls.as_ref().unwrap().key, PathBuf::from("/k.key"));
        assert_eq!(c.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.tls_max_handshakes, DEFAULT_TLS_MAX_HANDSHAKES);
        let at = ListenAddr::Ip("127.0.0.1:6514".parse().unwrap());
        assert_eq!(
            c.inputs.at_tls(&at).framing,
            Mode::Auto,
            "auto on TLS listeners"
        );
        assert_eq!(c.framing, Mode::Lines, "lines on the others");
        let again = load(&c.to_string()).unwrap();
        assert_eq!(again.to_string(), c.to_string());
        assert_eq!(again.inputs.at_tls(&at).framing, Mode::Auto, "{c}");
        let lines = load(&format!("{tls}framing = \"lines\"")).unwrap();
        assert_eq!(lines.inputs.at_tls(&at).framing, Mode::Lines);
        let table = load(&format!(
            "{tls}[listener.\"127.0.0.1:6514\"]\nframing = \"octet\"\n"
        ))
        .unwrap();
        assert_eq!(table.inputs.at_tls(&at).framing, Mode::Octet);
        let peers = load(&format!(
            "{tls}tls_client_ca = \"/ca.crt\"\ntls_peers = [\"web1.example.net\", \"192.0.2.7\"]\n"
        ))
        .unwrap();
        assert_eq!(peers.tls.as_ref().unwrap().peers.len(), 2);
        assert_eq!(
            load(&peers.to_string()).unwrap().to_string(),
            peers.to_string()
        );

        assert!(err("listen_tls = [\"127.0.0.1:6514\"]").contains("needs `tls_cert`"));
        assert!(
            err("tls_cert = \"/c.crt\"")
                .contains("key `tls_cert`: no TLS listener (`listen_tls`) to apply it to")
        );
        assert!(err(&format!("{tls}tls_peers = [\"*.example.net\"]")).contains("wildcards"));
        assert!(err(&format!("{tls}tls_handshake_timeout = 0")).contains("out of range"));
        assert!(err(&format!("{tls}tls_max_handshakes = 0")).contains("at least 1"));
        assert!(
            err(&format!("{tls}listen = [\"127.0.0.1:6514\"]"))
                .contains("key `listen_tls`: `127.0.0.1:6514` is also in `listen`")
        );
        assert!(
            err(&format!(
                "{tls}proxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\n"
            ))
            .contains("TLS listeners (`listen_tls`) read no PROXY header")
        );
        assert!(
            err(&format!(
                "{tls}proxy_from = [\"127.0.0.1\"]\n[listener.\"127.0.0.1:6514\"]\nproxy_protocol = true\n"
            ))
            .contains("a TLS listener reads no PROXY header")
        );
        // `allow` applies to TLS listeners as to TCP ones.
        let allow = load(&format!("{tls}allow = [\"10.0.0.0/8\"]")).unwrap();
        assert!(allow.inputs.at_tls(&at).access.allow.is_some());
    }

    /// Every name of every choice reads back to a value that prints as that name.
    #[test]
    fn choices_round_trip() {
        fn check<T: Choice + fmt::Display + fmt::Debug>() {
            for &(name, value) in T::CHOICES {
                assert_eq!(T::named(name), Some(value));
                assert_eq!(value.to_string(), name);
            }
            assert_eq!(T::named("no such name"), None);
        }
        check::<Format>();
        check::<Mode>();
        check::<Parse>();
        check::<SyslogProtocol>();
        check::<SyslogFraming>();
    }
}
