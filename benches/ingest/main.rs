//! `cargo bench --bench ingest`: how fast logsinkd takes 100-byte lines over loopback TCP into
//! a file, next to a reference server that only copies bytes (the ceiling) and rsyslogd.
//!
//! Each scenario opens C connections first, then sends N numbered lines on each as fast as the
//! receiver takes them; the clock runs from the first byte sent until the output file holds
//! every line. Then the receiver is stopped and its output verified line by line (see
//! `ingest/verify.rs`); a run that fails verification is reported as FAILED, not timed. Every
//! figure is the median of 3 runs. A latency scenario sends at a fixed rate instead and
//! measures each line from send to in-file. The `syslog` scenarios send octet-counted RFC 5424
//! messages of the same size instead of lines (`ingest/lines.rs`), to the receivers that take
//! them (`ingest/receivers.rs`).
//!
//! Without `--bench` (that is, under `cargo test`), or with `--smoke`, every scenario runs
//! once at a tiny scale: a smoke test of the harness and of logsinkd's output, which must
//! verify; speed is never asserted. Extra arguments filter: `cargo bench --bench ingest --
//! "16 x" raw` runs only the runs whose "scenario / receiver" holds each of them at the start
//! of a word (so `syslog` picks the syslog scenarios, not the `rsyslogd` rows of the others);
//! `--runs=N` changes the count. `--metrics` runs every logsinkd with its metrics served and
//! scraped during the run (`ingest/scrape.rs`), to compare with a run without.

mod lines;
mod load;
mod receivers;
mod reference;
mod report;
mod scrape;
mod tls;
mod verify;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use receivers::{REFERENCE_ARG, Receiver};
use report::{Measure, Outcome};
use verify::Sent;

/// One load pattern.
pub struct Scenario {
    pub name: String,
    /// What is sent: lines, or octet-counted syslog messages.
    pub kind: lines::Kind,
    pub conns: usize,
    pub per_conn: usize,
    /// Lines per second per connection (latency scenarios); `None`: as fast as possible.
    pub rate: Option<u32>,
    /// Counts toward the throughput targets (the 10,000-connection scenario is about memory).
    pub throughput_target: bool,
    /// Sent over TLS, to the receivers that serve TLS.
    pub tls: bool,
    /// One file per connection: logsinkd's output is `DIR/{peer_port}.log` with
    /// `max_open_files = TEMPLATE_OPEN_FILES` (fewer than the connections: evictions); only
    /// logsinkd takes part.
    pub template: bool,
}

/// `max_open_files` of the template scenarios.
pub const TEMPLATE_OPEN_FILES: usize = 64;

impl Scenario {
    fn flat(conns: usize, per_conn: usize, name: &str, throughput_target: bool) -> Scenario {
        Scenario {
            name: name.into(),
            kind: lines::Kind::Line,
            conns,
            per_conn,
            rate: None,
            throughput_target,
            tls: false,
            template: false,
        }
    }

    /// Octet-counted syslog messages as `syslog`, over TLS.
    fn tls(conns: usize, per_conn: usize, name: &str, throughput_target: bool) -> Scenario {
        Scenario {
            kind: lines::Kind::Syslog,
            tls: true,
            ..Scenario::flat(conns, per_conn, name, throughput_target)
        }
    }

    /// A throughput scenario as `flat` into one file per connection.
    fn templates(conns: usize, per_conn: usize, name: &str) -> Scenario {
        Scenario {
            template: true,
            ..Scenario::flat(conns, per_conn, name, false)
        }
    }

    /// A throughput scenario as `flat` that sends octet-counted syslog messages, not lines.
    fn syslog(conns: usize, per_conn: usize, name: &str) -> Scenario {
        Scenario {
            kind: lines::Kind::Syslog,
            ..Scenario::flat(conns, per_conn, name, true)
        }
    }

    fn paced(conns: usize, rate: u32, secs: usize) -> Scenario {
        Scenario {
            name: format!("latency {conns} x {rate}/s x {secs} s"),
            kind: lines::Kind::Line,
            conns,
            per_conn: rate as usize * secs,
            rate: Some(rate),
            throughput_target: false,
            tls: false,
            template: false,
        }
    }

    /// The scenarios at full scale, or tiny (`smoke`).
    fn all(smoke: bool) -> Vec<Scenario> {
        if !smoke {
            vec![
                Scenario::flat(1, 1_000_000, "1 x 1,000,000", true),
                Scenario::flat(16, 100_000, "16 x 100,000", true),
                Scenario::flat(256, 4_000, "256 x 4,000", true),
                Scenario::flat(10_000, 10, "10,000 conns x 10", false),
                Scenario::syslog(1, 1_000_000, "syslog 1 x 1,000,000"),
                Scenario::syslog(16, 100_000, "syslog 16 x 100,000"),
                Scenario::tls(1, 1_000_000, "tls 1 x 1,000,000", true),
                Scenario::tls(16, 100_000, "tls 16 x 100,000", true),
                Scenario::tls(10_000, 10, "tls 10,000 conns x 10", false),
                Scenario::paced(100, 100, 10),
                Scenario::templates(256, 4_000, "templates 256 x 4,000"),
            ]
        } else {
            vec![
                Scenario::flat(2, 1_000, "smoke 2 x 1,000", true),
                Scenario::flat(4, 500, "smoke 4 x 500", true),
                Scenario::flat(16, 100, "smoke 16 x 100", true),
                Scenario::flat(200, 10, "smoke 200 conns x 10", false),
                Scenario::syslog(2, 1_000, "smoke syslog 2 x 1,000"),
                Scenario::syslog(16, 100, "smoke syslog 16 x 100"),
                Scenario::tls(2, 1_000, "smoke tls 2 x 1,000", true),
                Scenario::tls(200, 10, "smoke tls 200 conns x 10", false),
                Scenario::paced(10, 100, 1),
                Scenario::templates(100, 100, "smoke templates 100 x 100"),
            ]
        }
    }

    pub fn payload_bytes(&self) -> u64 {
        (self.conns * self.per_conn * lines::LINE) as u64
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(REFERENCE_ARG) {
        reference::run(
            Path::new(args.get(1).expect("output path after --reference-server")),
            args.get(2)
                .map_or(0, |p| p.parse().expect("extra percentage")),
        );
    }
    let full = args.iter().any(|a| a == "--bench");
    let metrics = args.iter().any(|a| a == "--metrics");
    let smoke = !full || args.iter().any(|a| a == "--smoke");
    let runs = args
        .iter()
        .find_map(|a| a.strip_prefix("--runs="))
        .map(|n| n.parse().expect("--runs=N"))
        .unwrap_or(if full { 3 } else { 1 });
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    raise_fd_limit();
    load::origin();
    if smoke {
        lines::self_check();
        verify::self_check();
        self_check_filters();
    }
    let receivers = Receiver::available(metrics);
    let scenarios = Scenario::all(smoke);
    let selected = |s: &Scenario, r: &Receiver| {
        let name = format!("{} / {}", s.name, r.name);
        filters.iter().all(|f| matches_word_start(&name, f))
    };
    let mut results: Vec<report::Row> = Vec::new();
    for scenario in &scenarios {
        let chosen: Vec<&Receiver> = receivers
            .iter()
            .filter(|r| {
                r.serves(scenario.kind)
                    && r.tls() == scenario.tls
                    && (!scenario.template || r.is_logsinkd())
                    && selected(scenario, r)
                    && (scenario.throughput_target || !r.ceiling_only())
            })
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let data: Vec<Vec<u8>> = match scenario.rate {
            None => (0..scenario.conns)
                .map(|c| lines::generate(scenario.kind, c, scenario.per_conn))
                .collect(),
            Some(_) => Vec::new(),
        };
        let mut rows: Vec<report::Row> = chosen
            .iter()
            .map(|r| report::Row::new(scenario, r))
            .collect();
        // Receivers take turns run by run, so a noisy moment hits them all alike.
        for run in 1..=runs {
            for row in rows.iter_mut() {
                let outcome = match run_once(scenario, &row.receiver, &data) {
                    Ok(m) => Outcome::Done(m),
                    Err(e) => Outcome::Failed(e),
                };
                eprintln!(
                    "ingest: {} / {} run {run}: {}",
                    scenario.name, row.receiver.name, outcome
                );
                row.runs.push(outcome);
            }
        }
        results.extend(rows);
    }
    if results.is_empty() {
        println!("ingest: no scenario matches {filters:?}");
        return ExitCode::SUCCESS;
    }
    if metrics {
        println!(
            "\ningest: every logsinkd served its metrics (--metrics-listen), scraped every {} ms \
             during each run",
            scrape::SCRAPE_EVERY.as_millis()
        );
    }
    report::print(&results, smoke);
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.receiver.is_logsinkd() && r.failed())
        .map(|r| format!("{} / {}", r.scenario, r.receiver.name))
        .collect();
    let logsinkd_runs = results.iter().filter(|r| r.receiver.is_logsinkd()).count();
    println!(
        "\ningest: {} passed, {} failed",
        logsinkd_runs - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "ingest: FAILED: logsinkd's output did not verify in: {}",
            failed.join("; ")
        );
        ExitCode::FAILURE
    }
}

/// One run: a fresh receiver, its own connections and output file.
fn run_once(scenario: &Scenario, receiver: &Receiver, data: &[Vec<u8>]) -> Result<Measure, String> {
    let dir = tempfile::Builder::new()
        .prefix("ingest-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let running = receiver.start(dir.path(), scenario.template)?;
    // Over TLS: each connection's handshake done right after its connect, and its messages
    // encrypted, before the clock starts.
    let mut encrypted = Vec::new();
    let mut clients = if scenario.tls {
        let tls = tls::Client::new();
        load::connect_each(running.addr(), scenario.conns, |i, sock| {
            encrypted.push(tls.handshake_and_encrypt(i, sock, &data[i])?);
            Ok(())
        })?
    } else {
        load::connect(running.addr(), scenario.conns)?
    };
    let data = if scenario.tls { &encrypted[..] } else { data };
    let scraper = running.metrics.map(scrape::Scraper::start);
    let shape = receiver.shape();
    let (wall, sent_ns, latency) = match scenario.rate {
        None => {
            let start = load::send_all(&mut clients, data)?;
            let sent = Sent {
                kind: scenario.kind,
                lines_per_conn: scenario.per_conn,
                peers: &clients.peers,
                sent_ns: None,
            };
            let end = load::wait_for_size(&running.out, sent.expected_bytes(shape), load::STALL)?;
            (end - start, None, None)
        }
        Some(rate) => {
            let lat = load::send_paced(&mut clients, scenario.per_conn, rate, &running.out)?;
            let wall = Duration::from_secs((scenario.per_conn / rate as usize) as u64);
            let pct = |p: f64| {
                let i = ((lat.sorted_ns.len() as f64 * p).ceil() as usize)
                    .clamp(1, lat.sorted_ns.len().max(1))
                    - 1;
                lat.sorted_ns.get(i).map_or(f64::NAN, |&ns| ns as f64 / 1e6)
            };
            let latency = [pct(0.50), pct(0.99), pct(1.0)];
            (wall, Some(lat.sent_ns), Some(latency))
        }
    };
    if let (Some(scraper), Some(addr)) = (scraper, running.metrics) {
        scraper.finish()?;
        let counted = scrape::lines_received(addr)?;
        let sent = (scenario.conns * scenario.per_conn) as u64;
        if counted != sent {
            return Err(format!("metrics: {counted} lines received, {sent} sent"));
        }
    }
    // Sampled while the receiver still runs (it is idle now: everything is in the file).
    let (cpu, rss_kib) = (running.cpu_seconds(), running.peak_rss_kib());
    let out_path = running.out.clone();
    let peers = std::mem::take(&mut clients.peers);
    drop(clients);
    running
        .stop()
        .map_err(|e| format!("{}: {e}", receiver.name))?;
    let sent = Sent {
        kind: scenario.kind,
        lines_per_conn: scenario.per_conn,
        peers: &peers,
        sent_ns: sent_ns.as_deref(),
    };
    let out = if scenario.template {
        // Each connection's file, in connection order: each must hold that connection's
        // records only; together they are checked like one output.
        let mut all = Vec::new();
        for (conn, peer) in peers.iter().enumerate() {
            let port = String::from_utf8_lossy(peer);
            let port = port.rsplit(':').next().unwrap_or_default();
            let path = out_path.join(format!("{port}.log"));
            let file =
                std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            if let Some(other) = verify::conns(&file, shape, &sent).find(|&c| c != Some(conn)) {
                return Err(format!(
                    "verification: {} holds a record of connection {other:?}, not {conn}",
                    path.display()
                ));
            }
            all.extend_from_slice(&file);
        }
        all
    } else {
        std::fs::read(&out_path).map_err(|e| format!("reading {}: {e}", out_path.display()))?
    };
    let verdict = verify::verify(&out, shape, &sent);
    if let Some(failure) = verdict.failure {
        return Err(format!("verification: {failure}"));
    }
    Ok(Measure {
        wall: wall.as_secs_f64(),
        cpu,
        rss_kib,
        latency,
        note: verdict.note,
    })
}

/// True if `filter` occurs in `name` where a word starts (at the start, or after a character
/// that is not a letter or digit): `syslog` is in `syslog 1 x 1,000,000 / reference` but not in
/// `1 x 1,000,000 / rsyslogd`.
fn matches_word_start(name: &str, filter: &str) -> bool {
    name.match_indices(filter).any(|(at, _)| {
        !name[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
    })
}

/// The filters pick what BENCHMARKS.md says they pick; run by the smoke mode at start.
fn self_check_filters() {
    let picks = |name: &str, filter: &str| matches_word_start(name, filter);
    assert!(picks("syslog 16 x 100,000 / rsyslogd fields", "syslog"));
    assert!(picks("smoke syslog 16 x 100 / reference", "syslog"));
    assert!(!picks("16 x 100,000 / rsyslogd", "syslog"));
    assert!(picks("16 x 100,000 / rsyslogd", "16 x"));
    assert!(picks("256 x 4,000 / reference +44% bytes", "+44%"));
    assert!(!picks("256 x 4,000 / reference", "6 x"));
}

/// Soft open-file limit up to the hard one: 10,000 client sockets live in this process.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
