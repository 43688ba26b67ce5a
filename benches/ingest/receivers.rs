//! The receivers under test, each a separate process so that its CPU time and peak RSS can be
//! read from /proc: logsinkd, the reference server (this same executable re-run with a hidden
//! argument, see `reference.rs`) and rsyslogd when installed.
//!
//! Each serves one kind of load (`lines::Kind`), the reference both:
//!
//! - lines: `logsinkd default`, `logsinkd raw`, `reference`, `reference +44% bytes` (the
//!   equal-bytes ceiling for `default`), `rsyslogd` (the message as received, `%rawmsg%`);
//! - octet-counted RFC 5424 messages: `logsinkd octet raw` (`--framing octet --format raw`),
//!   `logsinkd octet json+parse` (`--framing octet --parse syslog --format json`),
//!   `reference`, `reference +263% bytes` (the equal-bytes ceiling for `json`: what writing
//!   that many bytes costs a server that does nothing else), `rsyslogd fields` (its default
//!   parsers, a template of host, tag and message).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::lines;
use crate::verify::Shape;

/// The argument that makes this executable the reference server.
pub const REFERENCE_ARG: &str = "--reference-server";

/// How many more bytes logsinkd writes in `default` format than it receives, per 100 bytes of
/// the bench's lines: `2026-11-26T03:33:04.123456Z 127.0.0.1:54321 ` in front of each
/// 100-byte line (27 + 1 + 15 + 1; ephemeral ports have five digits).
pub const DEFAULT_EXTRA_PERCENT: usize = 44;

/// How many more bytes logsinkd writes in `json` format with `parse = "syslog"` than it
/// receives, per 100 bytes of the bench's octet-counted messages: each 100-byte frame (a 97-byte
/// message) becomes a 363-byte record, `time`, `peer` and `line` (the message, 97) and the
/// parsed fields (`facility` ... `msg`, 43 bytes of values and their keys: see `lines.rs` for the
/// message and `verify.rs` for the record).
pub const JSON_EXTRA_PERCENT: usize = 263;

/// What a receiver is and how it is set up.
#[derive(Debug, Clone)]
pub enum Kind {
    /// logsinkd with these `--format`, `--framing` and `--parse` values; with `metrics`, it
    /// serves its metrics too (`--metrics-listen`, see scrape.rs).
    Logsinkd {
        format: &'static str,
        framing: &'static str,
        parse: &'static str,
        metrics: bool,
        /// Its one listener serves TLS (`listen_tls`), with the bench's certificate.
        tls: bool,
    },
    /// `extra_percent`: more bytes written than received, in a second file (see reference.rs).
    Reference { extra_percent: usize },
    /// `fields`: parsed syslog messages written as host, tag and message (the syslog load);
    /// else each message as received (`%rawmsg%`, the lines load).
    /// `tls`: imtcp with the gtls stream driver (rsyslog-gnutls), anonymous clients.
    Rsyslogd {
        bin: PathBuf,
        fields: bool,
        tls: bool,
    },
}

/// One receiver under test, as named in the report and in filters.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: &'static str,
    pub kind: Kind,
}

impl Receiver {
    /// Everything this machine can run: rsyslogd only when it is installed. With `metrics`,
    /// every logsinkd serves its metrics.
    pub fn available(metrics: bool) -> Vec<Receiver> {
        let logsinkd_with = |name, format, framing, parse, tls| Receiver {
            name,
            kind: Kind::Logsinkd {
                format,
                framing,
                parse,
                metrics,
                tls,
            },
        };
        let logsinkd =
            |name, format, framing, parse| logsinkd_with(name, format, framing, parse, false);
        let mut all = vec![
            logsinkd("logsinkd default", "default", "lines", "none"),
            logsinkd("logsinkd raw", "raw", "lines", "none"),
            logsinkd("logsinkd octet raw", "raw", "octet", "none"),
            logsinkd("logsinkd octet json+parse", "json", "octet", "syslog"),
            logsinkd_with("logsinkd tls octet raw", "raw", "octet", "none", true),
            Receiver {
                name: "reference",
                kind: Kind::Reference { extra_percent: 0 },
            },
            Receiver {
                name: "reference +44% bytes",
                kind: Kind::Reference {
                    extra_percent: DEFAULT_EXTRA_PERCENT,
                },
            },
            Receiver {
                name: "reference +263% bytes",
                kind: Kind::Reference {
                    extra_percent: JSON_EXTRA_PERCENT,
                },
            },
        ];
        let rsyslogd = ["/usr/sbin/rsyslogd", "/usr/bin/rsyslogd", "/sbin/rsyslogd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        match rsyslogd {
            Some(bin) => {
                all.extend([
                    Receiver {
                        name: "rsyslogd",
                        kind: Kind::Rsyslogd {
                            bin: bin.clone(),
                            fields: false,
                            tls: false,
                        },
                    },
                    Receiver {
                        name: "rsyslogd fields",
                        kind: Kind::Rsyslogd {
                            bin: bin.clone(),
                            fields: true,
                            tls: false,
                        },
                    },
                ]);
                if gtls_installed() {
                    all.push(Receiver {
                        name: "rsyslogd tls fields",
                        kind: Kind::Rsyslogd {
                            bin,
                            fields: true,
                            tls: true,
                        },
                    });
                } else {
                    eprintln!(
                        "ingest: rsyslogd's gtls driver is not installed (apt-get install \
                         rsyslog-gnutls); the TLS scenarios run without rsyslogd"
                    );
                }
            }
            None => eprintln!(
                "ingest: rsyslogd is not installed (apt-get install rsyslog); comparing without it"
            ),
        }
        all
    }

    /// The reference writing as many bytes as `default` format does (lines) or `json` does
    /// (syslog messages): a ceiling for that format in the throughput scenarios, not run in
    /// the others.
    pub fn ceiling_only(&self) -> bool {
        matches!(self.kind, Kind::Reference { extra_percent } if extra_percent > 0)
    }

    /// True if this receiver takes the load `kind`: line framing for lines, octet counting and
    /// the fields template for syslog; the plain reference copies either.
    pub fn serves(&self, kind: lines::Kind) -> bool {
        let syslog = kind == lines::Kind::Syslog;
        match self.kind {
            Kind::Logsinkd { framing, .. } => (framing == "octet") == syslog,
            Kind::Reference { extra_percent } => match extra_percent {
                0 => true,
                DEFAULT_EXTRA_PERCENT => !syslog,
                JSON_EXTRA_PERCENT => syslog,
                _ => false,
            },
            Kind::Rsyslogd { fields, .. } => fields == syslog,
        }
    }

    /// Serves TLS (the TLS scenarios) rather than plain TCP (all others).
    pub fn tls(&self) -> bool {
        matches!(
            self.kind,
            Kind::Logsinkd { tls: true, .. } | Kind::Rsyslogd { tls: true, .. }
        )
    }

    pub fn is_logsinkd(&self) -> bool {
        matches!(self.kind, Kind::Logsinkd { .. })
    }

    /// The plain reference: the ceiling of any receiver.
    pub fn is_reference(&self) -> bool {
        matches!(self.kind, Kind::Reference { extra_percent: 0 })
    }

    pub fn is_rsyslogd(&self) -> bool {
        matches!(self.kind, Kind::Rsyslogd { .. })
    }

    pub fn shape(&self) -> Shape {
        match self.kind {
            Kind::Logsinkd {
                format: "default", ..
            } => Shape::Stamped,
            Kind::Logsinkd { format: "json", .. } => Shape::Json,
            Kind::Reference { .. } => Shape::Stream,
            Kind::Rsyslogd { fields: true, .. } => Shape::Fields,
            _ => Shape::Bare,
        }
    }

    /// Starts the receiver writing to `dir/out.log` (with `template`, logsinkd writes one
    /// file per connection, `dir/out/PORT.log`) and waits until it accepts connections.
    pub fn start(&self, dir: &Path, template: bool) -> Result<Running, String> {
        let out = if template {
            dir.join("out")
        } else {
            dir.join("out.log")
        };
        if !template {
            // Created up front so the latency tailer can watch it before the first record.
            std::fs::write(&out, b"").map_err(|e| format!("creating {}: {e}", out.display()))?;
        }
        let (mut cmd, announces) = match &self.kind {
            Kind::Logsinkd {
                format,
                framing,
                parse,
                metrics,
                tls,
            } => {
                let mut cmd = Command::new(logsinkd_binary());
                if *tls {
                    // Its only listener (`listen = []` is said in a file, and the file is
                    // checked on its own first: the TLS keys go there too).
                    let (_, cert, key) = crate::tls::write_files(dir)?;
                    let conf = dir.join("logsinkd.toml");
                    let text = format!(
                        "listen = []\nlisten_tls = [\"127.0.0.1:0\"]\ntls_cert = {:?}\n\
                         tls_key = {:?}\n",
                        cert.display().to_string(),
                        key.display().to_string()
                    );
                    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
                    cmd.arg("--config").arg(&conf);
                } else {
                    cmd.args(["--listen", "127.0.0.1:0"]);
                }
                cmd.args([
                    "--foreground",
                    "--format",
                    format,
                    "--framing",
                    framing,
                    "--parse",
                    parse,
                    "--output",
                ])
                .env_remove("NOTIFY_SOCKET");
                if template {
                    cmd.arg(format!("{}/{{peer_port}}.log", out.display()))
                        .args(["--max-open-files", &crate::TEMPLATE_OPEN_FILES.to_string()]);
                } else {
                    cmd.arg(&out);
                }
                if *metrics {
                    cmd.args(["--metrics-listen", "127.0.0.1:0"]);
                }
                (cmd, true)
            }
            Kind::Reference { extra_percent } => {
                let exe =
                    std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
                let mut cmd = Command::new(exe);
                cmd.arg(REFERENCE_ARG)
                    .arg(&out)
                    .arg(extra_percent.to_string());
                (cmd, true)
            }
            Kind::Rsyslogd { bin, fields, tls } => {
                (rsyslogd_command(bin, dir, &out, *fields, *tls)?, false)
            }
        };
        let mut child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.name))?;
        // Drain stderr for the whole run so the receiver never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            addr: None,
            metrics: None,
            out,
            log: rx,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        if announces {
            running.addr = Some(running.wait_for_address(deadline)?);
            if let Kind::Logsinkd { metrics: true, .. } = self.kind {
                running.metrics = Some(running.wait_for_metrics(deadline)?);
            }
        } else {
            let port = self.rsyslogd_port(dir);
            running.addr = Some(wait_for_port(port, deadline, &mut running.child)?);
        }
        Ok(running)
    }

    fn rsyslogd_port(&self, dir: &Path) -> u16 {
        std::fs::read_to_string(dir.join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Whether rsyslog's gtls stream driver (rsyslog-gnutls) is installed.
fn gtls_installed() -> bool {
    ["x86_64", "aarch64", "i386", "arm"]
        .iter()
        .any(|arch| Path::new(&format!("/usr/lib/{arch}-linux-gnu/rsyslog/lmnsd_gtls.so")).exists())
        || Path::new("/usr/lib/rsyslog/lmnsd_gtls.so").exists()
}

/// The logsinkd under test: this build's, or `INGEST_LOGSINKD` to compare another build.
fn logsinkd_binary() -> PathBuf {
    std::env::var_os("INGEST_LOGSINKD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_logsinkd")))
}

/// rsyslogd as a TCP log receiver would be set up: imptcp into omfile, the message written as
/// received (`%rawmsg%`), or with `fields` as parsed by its default parsers (RFC 5424, then
/// 3164): `%hostname% %syslogtag% %msg%`, with imptcp's octet-counted framing (on by default)
/// asked for by name. Its own work directory; no /dev/log (imuxsock is not loaded).
fn rsyslogd_command(
    bin: &Path,
    dir: &Path,
    out: &Path,
    fields: bool,
    tls: bool,
) -> Result<Command, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    std::fs::write(dir.join("port"), port.to_string()).map_err(|e| e.to_string())?;
    let conf = dir.join("rsyslog.conf");
    let (framing, template) = if fields {
        (
            r#" supportOctetCountedFraming="on""#,
            "%hostname% %syslogtag% %msg%",
        )
    } else {
        ("", "%rawmsg%")
    };
    // With TLS: imtcp and its gtls driver (imptcp has no TLS), anonymous clients; imtcp
    // takes octet-counted frames by default.
    let input = if tls {
        let (ca, cert, key) = crate::tls::write_files(dir)?;
        format!(
            r#"global(DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon" MaxSessions="20000")
input(type="imtcp" address="127.0.0.1" port="{port}")"#,
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
        )
    } else {
        format!(
            r#"module(load="imptcp")
input(type="imptcp" address="127.0.0.1" port="{port}" socketBacklog="1024"{framing})"#
        )
    };
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}" maxMessageSize="8k")
main_queue(queue.workerThreads="1")
{input}
template(name="bare" type="string" string="{template}\n")
*.* action(type="omfile" file="{out}" template="bare")
"#,
            dir = dir.display(),
            out = out.display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"));
    Ok(cmd)
}

fn wait_for_port(port: u16, deadline: Instant, child: &mut Child) -> Result<SocketAddr, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if listening(port) {
            return Ok(addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("rsyslogd exited at start: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("rsyslogd did not listen on {addr} in time"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True if a socket listens on 127.0.0.1:`port` (a `0A` state line of /proc/net/tcp). Read
/// there, not probed with a connection: rsyslogd's TLS listener takes a connection that never
/// starts a handshake for a failed one, and rsyslogd 8.2302 was seen to crash after that.
fn listening(port: u16) -> bool {
    const LISTEN: &str = "0A";
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == LISTEN
        })
    })
}

/// A started receiver.
pub struct Running {
    child: Child,
    pub addr: Option<SocketAddr>,
    /// Where logsinkd serves its metrics, with `--metrics`.
    pub metrics: Option<SocketAddr>,
    pub out: PathBuf,
    log: mpsc::Receiver<String>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("receiver address")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_address(&mut self, deadline: Instant) -> Result<SocketAddr, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        return addr
                            .trim()
                            .trim_start_matches("tls ")
                            .parse()
                            .map_err(|e| format!("address in {line:?}: {e}"));
                    }
                }
                Err(_) => return Err("the receiver did not say where it listens".into()),
            }
        }
    }

    /// The address of logsinkd's `metrics on http://ADDR/metrics` line (after the
    /// `listening on` one).
    fn wait_for_metrics(&mut self, deadline: Instant) -> Result<SocketAddr, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let addr = line.split("metrics on http://").nth(1);
                    if let Some(addr) = addr.and_then(|a| a.trim().strip_suffix("/metrics")) {
                        return addr
                            .parse()
                            .map_err(|e| format!("address in {line:?}: {e}"));
                    }
                }
                Err(_) => return Err("logsinkd did not say where it serves metrics".into()),
            }
        }
    }

    /// CPU seconds of the whole process so far: the scheduler's run time of each of its threads
    /// in nanoseconds (/proc/PID/task/*/schedstat, read while the receiver is idle, so no
    /// time slice is still open). /proc/PID/stat counts clock ticks of 10 ms, a quarter of a
    /// 40 ms run; it is the fallback where schedstat is missing.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.pid();
        let ns: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        if ns > 0 {
            return ns as f64 / 1e9;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }

    /// Peak resident set size in KiB (VmHWM from /proc/PID/status).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then waits for a clean exit (logsinkd drains, flushes and syncs first).
    pub fn stop(mut self) -> Result<(), String> {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    let log: Vec<String> = self.log.try_iter().collect();
                    return Err(format!("exited with {status}: {}", log.join(" | ")));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("did not stop within 30 s of SIGTERM".into());
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only reached on an error path: never leave a receiver behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
