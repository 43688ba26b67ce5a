//! The command line, defined once with clap's derive API.
//!
//! Every option is also a key of the TOML config file (see `config.rs`); a value given
//! here wins over the file. This file depends on nothing but clap and std so that
//! `build.rs` can include it to generate the logsinkd(8) man page from the same definition.

use std::path::PathBuf;

use clap::Parser;

/// A fast, lossless network log receiver: every line clients send over TCP (or UDP) lands whole,
/// once and in order in a log file or in syslog.
#[derive(Parser, Debug, Default, Clone)]
#[command(name = "logsinkd", version, about, long_about = None)]
pub struct Cli {
    /// Read settings from this TOML file (options on the command line win)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// TCP address to listen on, e.g. 0.0.0.0:5140 or [::1]:5140; repeatable [default: 127.0.0.1:5140]
    #[arg(short = 'l', long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,

    /// UDP address to take datagrams on (each holds one or more lines), e.g. 0.0.0.0:514;
    /// repeatable [default: none]
    #[arg(short = 'u', long = "listen-udp", value_name = "ADDR")]
    pub listen_udp: Vec<String>,

    /// Unix stream socket to listen on (lines, as over TCP), e.g. /run/logsinkd/in.sock;
    /// repeatable [default: none]
    #[arg(long = "listen-unix", value_name = "PATH")]
    pub listen_unix: Vec<PathBuf>,

    /// Unix datagram socket to take messages on (each datagram one message, as over UDP; what
    /// `logger -u PATH` sends); repeatable [default: none]
    #[arg(long = "listen-unix-dgram", value_name = "PATH")]
    pub listen_unix_dgram: Vec<PathBuf>,

    /// Mode of the unix sockets logsinkd creates, in octal; connecting needs write permission
    /// [default: 0660]
    #[arg(long = "unix-mode", value_name = "MODE")]
    pub unix_mode: Option<String>,

    /// Owner (name or uid) of the unix sockets logsinkd creates [default: the starting user]
    #[arg(long = "unix-owner", value_name = "USER")]
    pub unix_owner: Option<String>,

    /// Group (name or gid) of the unix sockets logsinkd creates [default: the starting group]
    #[arg(long = "unix-group", value_name = "GROUP")]
    pub unix_group: Option<String>,

    /// Where records go: a file path, `syslog`, `syslog:/path/to/socket`,
    /// `syslog+udp://host:port` or `syslog+tcp://host:port` [default: ./logsinkd.log]
    #[arg(short = 'o', long = "output", value_name = "TARGET")]
    pub output: Option<String>,

    /// Record format: `default` (time, peer, escaped line), `raw` (bytes as received) or `json`
    #[arg(long = "format", value_name = "FORMAT")]
    pub format: Option<String>,

    /// Longest line recorded as one record; longer lines are recorded in pieces of this size.
    /// Accepts a K, M suffix (KiB, MiB) [default: 64K]
    #[arg(long = "max-line", value_name = "BYTES")]
    pub max_line: Option<String>,

    /// Stay in the foreground and log diagnostics to stderr (use this under systemd)
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,

    /// Write the daemon's pid to this file once it is ready; removed at exit
    #[arg(short = 'p', long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Switch to this user after binding the listeners and opening the output
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Switch to this group after binding the listeners and opening the output
    /// [default: the user's primary group]
    #[arg(long = "group", value_name = "GROUP")]
    pub group: Option<String>,

    /// Syslog facility of recorded lines when the output is syslog [default: user]
    #[arg(long = "syslog-facility", value_name = "NAME")]
    pub syslog_facility: Option<String>,

    /// Most client connections open at once; at the cap new clients wait in the kernel's
    /// backlog [default: derived from the open-file limit]
    #[arg(long = "max-connections", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Listen backlog: connections the kernel queues before logsinkd accepts them [default: 1024]
    #[arg(long = "backlog", value_name = "N")]
    pub backlog: Option<u32>,

    /// Close a connection that sent nothing for this many seconds (its partial line is recorded);
    /// 0 turns it off; at most 31536000 (a year) [default: 0]
    #[arg(long = "idle-timeout", value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Validate the configuration, print the effective settings and exit (0 valid, 1 invalid)
    #[arg(long = "check-config")]
    pub check_config: bool,
}
