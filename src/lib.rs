//! logsinkd as a library: everything but start-up (`main.rs`) lives here, so the fuzz targets,
//! property tests and benchmarks exercise the very code the daemon runs.
//!
//! # Layout
//!
//! The modules in the order a received line passes through them:
//!
//! - `listen`: the listening sockets, bound or adopted from systemd socket activation.
//! - `unix`: unix-domain sockets: settings, binding at a path, peer credentials.
//! - `event_loop`: one poll, dispatch by token, turns, flush, signals; the shutdown drain.
//! - `accept_gate`: when to accept: the connection cap and accept-error pauses.
//! - `access`: who may send: `allow` and `proxy_from` lists, and the log of clients turned away.
//! - `listener`: stream listeners, accepting into a `Stream` with its peer text.
//! - `connections`: the open connections: slab, ready queue, idle timers.
//! - `idle`: the idle timers, one per open connection.
//! - `proxy_header`: the PROXY protocol header a load balancer sends first, read as it comes.
//! - `connection`: one client: its `Stream`, its peer as written in records, its framer.
//! - `tls`: syslog over TLS: the certificate files, client checks, a non-blocking `TlsStream`
//!   (a `Stream::Tls` of TLS listeners' connections), refused clients' log.
//! - `datagram`: datagram sockets (UDP): turns, readable flags, the drain's time limit.
//! - `recorder`: reads a socket (or takes a datagram), frames, stamps, queues records in the sink.
//! - `input`: each listener's framing and parsing (top-level keys, `[listener."ADDR"]` tables).
//! - `framing`: the byte stream into records: lines (`LineBuffer`) or octet-counted frames
//!   (`OctetBuffer`), chosen per connection (`Framer`); long ones into `max_line` pieces.
//! - `syslog_parse`: a message's RFC 5424 / RFC 3164 fields (`parse = "syslog"`).
//! - `clock`: the receipt time every record starts with.
//! - `format`: a line into a record (`default`, `raw`, `json`, `syslog`), and the escaping.
//! - `simd`: the vector scans and copies under `framing` and `format`; all CPU-specific code.
//! - `sink`: where records go: a file, syslog, or the journal; or one file per sender, by a
//!   path template (`sink/template.rs`, `sink/files.rs`).
//! - `output`: the sink with its failure episodes: writing batches out, retry and back-off,
//!   busy wake-ups, the flush at exit.
//!
//! Around that path:
//!
//! - `cli`: the command line (also the source of the man page and the shell completions).
//! - `man`: the man page logsinkd(8), generated from `cli` and `config`.
//! - `config`: defaults, the TOML file and the command line merged and checked.
//! - `daemon`: classic daemon mode, the pid file, dropping privileges.
//! - `notify`: telling systemd (sd_notify): ready, status, reload, watchdog.
//! - `diag`: the daemon's own messages, to stderr, the journal or syslog.
//! - `stats`: the counters, per listener and for the output.
//! - `metrics`: the counters served to Prometheus (`GET /metrics`) by the event loop itself.
//!
//! ARCHITECTURE.md maps each concept to its file.

pub mod accept_gate;
pub mod access;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod connections;
pub mod daemon;
pub mod datagram;
pub mod diag;
pub mod event_loop;
pub mod format;
pub mod framing;
pub mod idle;
pub mod input;
pub mod listen;
pub mod listener;
pub mod man;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod proxy_header;
pub mod recorder;
mod simd;
pub mod sink;
pub mod stats;
pub mod syslog_parse;
pub mod tls;
pub mod unix;
