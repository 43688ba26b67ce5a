//! The counters as Prometheus text (exposition format 0.0.4): per family a `# HELP` and a
//! `# TYPE` line, then its samples; counters end in `_total`, sizes are `_bytes`, times
//! `_seconds`. Per-listener families carry a `listener` label naming the socket the way its
//! listen key does: `tcp://127.0.0.1:5140`, `udp://0.0.0.0:514`, `unix:/run/in.sock`,
//! `unix-dgram:/dev/log`.
//!
//! A per-listener counter is one field of `stats::ListenerStats` and one line of
//! `LISTENER_METRICS`; the rest of this file does not change for it.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::stats::{ListenerStats, Stats};

/// What kind of socket a listener is: which per-listener families apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    /// TCP with TLS (`listen_tls`).
    Tls,
    Unix,
    Udp,
    UnixDgram,
}

impl Kind {
    fn stream(self) -> bool {
        matches!(self, Kind::Tcp | Kind::Tls | Kind::Unix)
    }
}

/// A listener as the metrics name it.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// The `listener` label's value, escaped as the format wants it.
    pub label: String,
    pub kind: Kind,
}

impl ListenerInfo {
    /// `scheme` and the bound address or path as text (`tcp`, `127.0.0.1:5140`).
    pub fn new(kind: Kind, address: &str) -> ListenerInfo {
        let scheme = match kind {
            Kind::Tcp => "tcp://",
            Kind::Tls => "tls://",
            Kind::Udp => "udp://",
            Kind::Unix => "unix:",
            Kind::UnixDgram => "unix-dgram:",
        };
        ListenerInfo {
            label: escape_label(&format!("{scheme}{address}")),
            kind,
        }
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One per-listener family.
pub struct Family {
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    pub help: &'static str,
    /// Whether listeners of a kind have this series.
    pub applies: fn(Kind) -> bool,
    pub value: fn(&ListenerStats) -> u64,
}

const STREAM: fn(Kind) -> bool = Kind::stream;
const ALL: fn(Kind) -> bool = |_| true;
/// TCP and UDP: the listeners `allow` applies to.
const IP: fn(Kind) -> bool = |k| matches!(k, Kind::Tcp | Kind::Tls | Kind::Udp);
const TCP: fn(Kind) -> bool = |k| k == Kind::Tcp;
const TLS: fn(Kind) -> bool = |k| k == Kind::Tls;

/// The per-listener families from `ListenerStats`, in the order they are served.
pub const LISTENER_METRICS: &[Family] = &[
    Family {
        name: "logsinkd_connections_open",
        kind: "gauge",
        help: "Client connections open now.",
        applies: STREAM,
        value: |l| l.open,
    },
    Family {
        name: "logsinkd_connections_accepted_total",
        kind: "counter",
        help: "Client connections accepted.",
        applies: STREAM,
        value: |l| l.accepted,
    },
    Family {
        name: "logsinkd_lines_received_total",
        kind: "counter",
        help: "Records received: lines, octet-counted frames or syslog datagrams (a line \
               longer than max_line counts once per piece).",
        applies: ALL,
        value: |l| l.lines,
    },
    Family {
        name: "logsinkd_received_bytes_total",
        kind: "counter",
        help: "Bytes received from clients.",
        applies: ALL,
        value: |l| l.bytes,
    },
    Family {
        name: "logsinkd_truncated_frames_total",
        kind: "counter",
        help: "Octet-counted frames cut short by the end of their connection (recorded as far \
               as they came).",
        applies: STREAM,
        value: |l| l.truncated,
    },
    Family {
        name: "logsinkd_unparsed_messages_total",
        kind: "counter",
        help: "Messages of a listener with parse = syslog that did not parse as syslog \
               (recorded as they are).",
        applies: ALL,
        value: |l| l.unparsed,
    },
    Family {
        name: "logsinkd_denied_total",
        kind: "counter",
        help: "Senders outside allow: TCP connections reset at accept, UDP datagrams dropped.",
        applies: IP,
        value: |l| l.denied,
    },
    Family {
        name: "logsinkd_proxy_refused_total",
        kind: "counter",
        help: "Connections to a PROXY protocol listener reset: not from proxy_from, or no \
               valid header in time.",
        applies: TCP,
        value: |l| l.proxy_refused,
    },
    Family {
        name: "logsinkd_tls_handshake_failures_total",
        kind: "counter",
        help: "TLS clients closed before their handshake completed: not TLS, refused \
               certificate, not in tls_peers, no handshake within tls_handshake_timeout, or \
               gone mid-handshake.",
        applies: TLS,
        value: |l| l.tls_handshake_failures,
    },
];

/// What the kernel counted at a listening socket: `SO_MEMINFO`'s drops. At a TCP listener,
/// connections refused because its backlog was full (logsinkd at its connection cap, or not
/// accepting fast enough); at a UDP socket, datagrams dropped because its buffer was full.
const KERNEL_METRICS: &[(Kind, &str, &str)] = &[
    (
        Kind::Tcp,
        "logsinkd_connections_refused_total",
        "Connections the kernel refused because the listen backlog was full (logsinkd holds \
         new clients there at max_connections).",
    ),
    (
        Kind::Udp,
        "logsinkd_datagrams_dropped_total",
        "Datagrams the kernel dropped because the socket's receive buffer was full.",
    ),
];

/// Everything the text shows, as the event loop has it at the scrape.
pub struct View<'a> {
    pub stats: &'a Stats,
    /// Per listener, in the order of `stats.listeners`.
    pub listeners: &'a [ListenerInfo],
    /// Per listener: the kernel's drop count, where it can be read.
    pub kernel_drops: &'a [Option<u64>],
    /// Bytes queued for the output and not written yet.
    pub backlog: usize,
    /// Output files open now.
    pub open_files: u64,
}

/// Writes the exposition text of `view` to `out`.
pub fn render(out: &mut Vec<u8>, view: &View<'_>) {
    // Writing into a Vec cannot fail.
    let listeners = || view.listeners.iter().zip(&view.stats.listeners);
    for family in LISTENER_METRICS {
        let mut samples = listeners()
            .filter(|(info, _)| (family.applies)(info.kind))
            .peekable();
        if samples.peek().is_none() {
            continue;
        }
        header(out, family.name, family.kind, family.help);
        for (info, stats) in samples {
            let _ = writeln!(
                out,
                "{}{{listener=\"{}\"}} {}",
                family.name,
                info.label,
                (family.value)(stats)
            );
        }
    }
    for &(kind, name, help) in KERNEL_METRICS {
        let mut samples = view
            .listeners
            .iter()
            .zip(view.kernel_drops)
            .filter_map(|(info, drops)| Some((info, (*drops)?)))
            // A TLS listener is a TCP listener to the kernel.
            .filter(|(info, _)| info.kind == kind || (kind, info.kind) == (Kind::Tcp, Kind::Tls))
            .peekable();
        if samples.peek().is_none() {
            continue;
        }
        header(out, name, "counter", help);
        for (info, drops) in samples {
            let _ = writeln!(out, "{name}{{listener=\"{}\"}} {drops}", info.label);
        }
    }
    let output = &view.stats.output;
    let plain: [(&str, &str, &str, u64); 12] = [
        (
            "logsinkd_records_written_total",
            "counter",
            "Records the output took (counted each time everything queued was written).",
            output.records,
        ),
        (
            "logsinkd_written_bytes_total",
            "counter",
            "Bytes the output took.",
            output.bytes,
        ),
        (
            "logsinkd_output_backlog_bytes",
            "gauge",
            "Bytes received and queued for the output, not written yet (reading from clients \
             pauses at 8 MiB).",
            view.backlog as u64,
        ),
        (
            "logsinkd_output_errors_total",
            "counter",
            "Failed writes to the output.",
            output.errors,
        ),
        (
            "logsinkd_output_failures_total",
            "counter",
            "Output failure episodes: from a failed write (or a receiver busy for over a \
             second) to the write that took everything held.",
            output.failures,
        ),
        (
            "logsinkd_output_reopens_total",
            "counter",
            "Reopens of the output (SIGHUP) that succeeded.",
            output.reopens,
        ),
        (
            "logsinkd_output_reopen_failures_total",
            "counter",
            "Reopens of the output (SIGHUP) that failed; the old output stays in use.",
            output.reopen_failures,
        ),
        (
            "logsinkd_output_open_files",
            "gauge",
            "Output files open now.",
            view.open_files,
        ),
        (
            "logsinkd_output_file_opens_total",
            "counter",
            "Files a templated output (a path with fields) opened.",
            output.file_opens,
        ),
        (
            "logsinkd_output_file_evictions_total",
            "counter",
            "Files a templated output closed to stay within max_open_files.",
            output.file_evictions,
        ),
        (
            "logsinkd_errors_total",
            "counter",
            "Failed reads, accepts and output writes (the errors of the SIGUSR1 line).",
            view.stats.errors,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            epoch_seconds(view.stats.started),
        ),
    ];
    for (name, kind, help, value) in plain {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

fn header(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Whole seconds since the Unix epoch.
fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(view: &View<'_>) -> String {
        let mut out = Vec::new();
        render(&mut out, view);
        String::from_utf8(out).unwrap()
    }

    /// Every family has HELP and TYPE once, before its samples; each listener's series carry
    /// its label, escaped; stream-only families leave datagram sockets out; the kernel's
    /// counts appear where they were read; the output's counters and gauges are there.
    #[test]
    fn exposition_text() {
        let mut stats = Stats::new(3);
        stats.listeners[0] = ListenerStats {
            open: 2,
            accepted: 5,
            lines: 7,
            bytes: 70,
            truncated: 1,
            unparsed: 3,
            denied: 8,
            proxy_refused: 10,
            tls_handshake_failures: 0,
            name: "tcp 127.0.0.1:5140".into(),
        };
        stats.listeners[2].lines = 4;
        stats.listeners[2].denied = 12;
        stats.output.records = 11;
        stats.output.bytes = 1100;
        stats.output.reopens = 2;
        stats.output.file_opens = 13;
        stats.output.file_evictions = 3;
        stats.errors = 9;
        let listeners = [
            ListenerInfo::new(Kind::Tcp, "127.0.0.1:5140"),
            ListenerInfo::new(Kind::Unix, "/run/a \"b\"\\c"),
            ListenerInfo::new(Kind::Udp, "[::1]:514"),
        ];
        let text = rendered(&View {
            stats: &stats,
            listeners: &listeners,
            kernel_drops: &[Some(6), None, Some(0)],
            backlog: 42,
            open_files: 1,
        });
        let expect = [
            "# HELP logsinkd_connections_open Client connections open now.\n\
             # TYPE logsinkd_connections_open gauge\n\
             logsinkd_connections_open{listener=\"tcp://127.0.0.1:5140\"} 2\n\
             logsinkd_connections_open{listener=\"unix:/run/a \\\"b\\\"\\\\c\"} 0\n\
             # HELP logsinkd_connections_accepted_total",
            "logsinkd_lines_received_total{listener=\"tcp://127.0.0.1:5140\"} 7\n\
             logsinkd_lines_received_total{listener=\"unix:/run/a \\\"b\\\"\\\\c\"} 0\n\
             logsinkd_lines_received_total{listener=\"udp://[::1]:514\"} 4\n",
            "logsinkd_truncated_frames_total{listener=\"tcp://127.0.0.1:5140\"} 1\n",
            "logsinkd_unparsed_messages_total{listener=\"tcp://127.0.0.1:5140\"} 3\n",
            "logsinkd_denied_total{listener=\"tcp://127.0.0.1:5140\"} 8\n\
             logsinkd_denied_total{listener=\"udp://[::1]:514\"} 12\n",
            "logsinkd_proxy_refused_total{listener=\"tcp://127.0.0.1:5140\"} 10\n# HELP",
            "# TYPE logsinkd_connections_refused_total counter\n\
             logsinkd_connections_refused_total{listener=\"tcp://127.0.0.1:5140\"} 6\n",
            "logsinkd_datagrams_dropped_total{listener=\"udp://[::1]:514\"} 0\n",
            "logsinkd_records_written_total 11\n",
            "logsinkd_written_bytes_total 1100\n",
            "# TYPE logsinkd_output_backlog_bytes gauge\nlogsinkd_output_backlog_bytes 42\n",
            "logsinkd_output_reopens_total 2\n",
            "logsinkd_output_open_files 1\n",
            "logsinkd_output_file_opens_total 13\n",
            "logsinkd_output_file_evictions_total 3\n",
            "logsinkd_errors_total 9\n",
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ",
        ];
        for part in expect {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }
        assert!(!text.contains("connections_open{listener=\"udp"), "{text}");
        assert!(!text.contains("denied_total{listener=\"unix"), "{text}");
        assert!(
            !text.contains("truncated_frames_total{listener=\"udp"),
            "{text}"
        );
        let start = epoch_seconds(stats.started);
        assert!(text.ends_with(&format!("process_start_time_seconds {start}\n")));
        // Each family once: as many HELP as TYPE lines, names unique.
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(names.len(), helps);
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a family twice");
        // Counters end in _total, others do not.
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        }
    }

    /// A TLS listener has the stream families, `allow`'s, the kernel's refused connections and
    /// its failed handshakes; no PROXY family; other listeners have no TLS family.
    #[test]
    fn tls_listener_families() {
        let mut stats = Stats::new(2);
        stats.listeners[0].tls_handshake_failures = 3;
        let listeners = [
            ListenerInfo::new(Kind::Tls, "127.0.0.1:6514"),
            ListenerInfo::new(Kind::Tcp, "127.0.0.1:5140"),
        ];
        let text = rendered(&View {
            stats: &stats,
            listeners: &listeners,
            kernel_drops: &[Some(4), Some(0)],
            backlog: 0,
            open_files: 0,
        });
        for part in [
            "# TYPE logsinkd_tls_handshake_failures_total counter\n\
             logsinkd_tls_handshake_failures_total{listener=\"tls://127.0.0.1:6514\"} 3\n#",
            "logsinkd_connections_open{listener=\"tls://127.0.0.1:6514\"} 0\n",
            "logsinkd_denied_total{listener=\"tls://127.0.0.1:6514\"} 0\n",
            "logsinkd_connections_refused_total{listener=\"tls://127.0.0.1:6514\"} 4\n",
        ] {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }
        assert!(
            !text.contains("proxy_refused_total{listener=\"tls"),
            "{text}"
        );
    }

    /// A family no listener has (no TCP listener: no refused connections) is left out whole.
    #[test]
    fn families_without_series_are_left_out() {
        let stats = Stats::new(1);
        let listeners = [ListenerInfo::new(Kind::UnixDgram, "/dev/log")];
        let text = rendered(&View {
            stats: &stats,
            listeners: &listeners,
            kernel_drops: &[None],
            backlog: 0,
            open_files: 0,
        });
        assert!(!text.contains("connections_open"), "{text}");
        assert!(!text.contains("refused"), "{text}");
        assert!(
            text.contains("logsinkd_lines_received_total{listener=\"unix-dgram:/dev/log\"} 0\n")
        );
    }
}
