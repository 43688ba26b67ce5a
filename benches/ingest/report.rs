//! Medians, the Markdown tables and the check against the targets.
//!
//! Each logsinkd receiver in a throughput scenario has its targets (`targets_of`): a speed of
//! at least some multiple of another receiver's in the same scenario and the same run (the
//! reference, the reference writing as many bytes as `default` format does, or rsyslogd), and
//! for some a CPU budget per 100 MB received. Each is printed with its figure and PASS or MISS;
//! nothing asserts speed (the machine decides that, not the code).

use std::fmt;

use crate::Scenario;
use crate::receivers::{Kind, Receiver};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Seconds from the first byte sent until every line was in the file.
    pub wall: f64,
    /// Receiver CPU seconds (user + system), sampled just before stopping it.
    pub cpu: f64,
    pub rss_kib: u64,
    /// Send-to-in-file p50, p99 and max in ms (latency scenarios).
    pub latency: Option<[f64; 3]>,
    pub note: String,
}

pub enum Outcome {
    Done(Measure),
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(m) => {
                write!(
                    f,
                    "{:.3} s, CPU {:.3} s, peak RSS {:.1} MiB",
                    m.wall,
                    m.cpu,
                    m.rss_kib as f64 / 1024.0
                )?;
                if let Some([p50, p99, max]) = m.latency {
                    write!(
                        f,
                        ", latency p50 {p50:.3} ms p99 {p99:.3} ms max {max:.3} ms"
                    )?;
                }
                if !m.note.is_empty() {
                    write!(f, ", {}", m.note)?;
                }
                Ok(())
            }
            Outcome::Failed(why) => write!(f, "FAILED: {why}"),
        }
    }
}

/// All runs of one receiver in one scenario.
pub struct Row {
    pub scenario: String,
    pub receiver: Receiver,
    payload: u64,
    lines: u64,
    latency: bool,
    throughput_target: bool,
    /// One file per connection: no target, its figures are for comparison with the
    /// same load into one file.
    template: bool,
    pub runs: Vec<Outcome>,
}

/// The runs' notes, each different one once.
fn distinct_notes(done: &[&Measure]) -> String {
    let mut notes: Vec<&str> = Vec::new();
    for m in done {
        if !m.note.is_empty() && !notes.contains(&m.note.as_str()) {
            notes.push(&m.note);
        }
    }
    notes.join("; ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Row {
    pub fn new(s: &Scenario, r: &Receiver) -> Row {
        Row {
            scenario: s.name.clone(),
            receiver: r.clone(),
            payload: s.payload_bytes(),
            lines: (s.conns * s.per_conn) as u64,
            latency: s.rate.is_some(),
            throughput_target: s.throughput_target,
            template: s.template,
            runs: Vec::new(),
        }
    }

    pub fn failed(&self) -> bool {
        self.runs.iter().any(|r| matches!(r, Outcome::Failed(_)))
    }

    /// The median of each figure over the runs, or why a run failed.
    fn median(&self) -> Result<Measure, &str> {
        let mut done = Vec::new();
        for run in &self.runs {
            match run {
                Outcome::Done(m) => done.push(m),
                Outcome::Failed(why) => return Err(why),
            }
        }
        let of = |f: &dyn Fn(&Measure) -> f64| median(done.iter().map(|m| f(m)).collect());
        Ok(Measure {
            wall: of(&|m| m.wall),
            cpu: of(&|m| m.cpu),
            rss_kib: of(&|m| m.rss_kib as f64) as u64,
            latency: done[0]
                .latency
                .map(|_| [0, 1, 2].map(|i| of(&|m| m.latency.map_or(f64::NAN, |l| l[i])))),
            note: distinct_notes(&done),
        })
    }

    fn mb_per_s(m: &Measure, payload: u64) -> f64 {
        payload as f64 / 1e6 / m.wall
    }
}

fn find(rows: &[Row], scenario: &str, pick: impl Fn(&Receiver) -> bool) -> Option<Measure> {
    find_row(rows, scenario, pick).and_then(|r| r.median().ok())
}

/// The row of `scenario` whose receiver `pick` chooses.
fn find_row<'r>(
    rows: &'r [Row],
    scenario: &str,
    pick: impl Fn(&Receiver) -> bool,
) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && pick(&r.receiver))
}

fn is_reference(r: &Receiver) -> bool {
    r.is_reference()
}

/// rsyslogd as set up for the scenario's load (`%rawmsg%` for lines, fields for syslog).
fn is_rsyslogd(r: &Receiver) -> bool {
    r.is_rsyslogd()
}

/// The tables, then the targets (at smoke scale too, marked so, to exercise the code).
pub fn print(rows: &[Row], smoke: bool) {
    let runs = rows.iter().map(|r| r.runs.len()).max().unwrap_or(0);
    println!(
        "\n## Throughput (median of {runs} run{})\n",
        if runs == 1 { "" } else { "s" }
    );
    println!(
        "| scenario | receiver | MB/s | lines/s | wall s | CPU s | CPU s / 100 MB | peak RSS MiB | vs reference | vs rsyslogd | notes |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in rows.iter().filter(|r| !r.latency) {
        let m = match row.median() {
            Ok(m) => m,
            Err(why) => {
                println!(
                    "| {} | {} | FAILED | | | | | | | | {} |",
                    row.scenario, row.receiver.name, why
                );
                continue;
            }
        };
        let mbs = Row::mb_per_s(&m, row.payload);
        let ratio = |other: Option<Measure>| match other {
            Some(o) if row.receiver.is_logsinkd() => {
                format!("{:.2}x", mbs / Row::mb_per_s(&o, row.payload))
            }
            _ => String::new(),
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
            row.scenario,
            row.receiver.name,
            mbs,
            row.lines as f64 / m.wall,
            m.wall,
            m.cpu,
            m.cpu / (row.payload as f64 / 1e8),
            m.rss_kib as f64 / 1024.0,
            ratio(find(rows, &row.scenario, is_reference)),
            ratio(find(rows, &row.scenario, is_rsyslogd)),
            m.note,
        );
    }
    if rows.iter().any(|r| r.latency) {
        println!(
            "\n## Latency, send to in-file (median of {runs} run{})\n",
            if runs == 1 { "" } else { "s" }
        );
        println!(
            "| scenario | receiver | p50 ms | p99 ms | max ms | CPU s | peak RSS MiB | notes |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---|");
        for row in rows.iter().filter(|r| r.latency) {
            match row.median() {
                Ok(m) => {
                    let [p50, p99, max] = m.latency.unwrap_or([f64::NAN; 3]);
                    println!(
                        "| {} | {} | {p50:.3} | {p99:.3} | {max:.3} | {:.3} | {:.1} | {} |",
                        row.scenario,
                        row.receiver.name,
                        m.cpu,
                        m.rss_kib as f64 / 1024.0,
                        m.note
                    );
                }
                Err(why) => println!(
                    "| {} | {} | FAILED | | | | | {} |",
                    row.scenario, row.receiver.name, why
                ),
            }
        }
    }
    print_targets(rows, smoke);
}

/// What a target compares a logsinkd receiver's MB/s with.
#[derive(Debug, Clone, Copy)]
enum Baseline {
    /// The reference server: copies bytes, the ceiling of any receiver.
    Reference,
    /// The reference writing 44% more bytes: the ceiling for a receiver that writes as much as
    /// `default` format does.
    EqualBytes,
    /// rsyslogd doing the same job.
    Rsyslogd,
}

impl Baseline {
    fn label(self) -> &'static str {
        match self {
            Baseline::Reference => "reference",
            Baseline::EqualBytes => "the equal-bytes ceiling (reference +44% bytes)",
            Baseline::Rsyslogd => "rsyslogd",
        }
    }

    fn pick(self) -> fn(&Receiver) -> bool {
        match self {
            Baseline::Reference => is_reference,
            Baseline::EqualBytes => Receiver::ceiling_only,
            Baseline::Rsyslogd => is_rsyslogd,
        }
    }
}

/// The targets of one logsinkd receiver in a throughput scenario.
struct Targets {
    /// MB/s at least this multiple of the baseline's.
    speed: &'static [(Baseline, f64)],
    /// CPU seconds per 100 MB received at most this.
    cpu_per_100mb: Option<f64>,
}

/// The targets for each logsinkd receiver (over TLS: 4x rsyslogd over TLS, CPU per
/// byte at most 2x the same messages in plaintext, and 10,000 TLS connections in less memory
/// than rsyslogd's): lines in `default` format at least 0.9x the
/// equal-bytes ceiling (the decision on the open question; it was 0.8x the reference) and 4x
/// rsyslogd in at most 0.15 CPU-s per 100 MB; lines in `raw` 0.9x the reference and 4x
/// rsyslogd; syslog messages in `raw` 0.9x the reference, parsed into `json` 4x rsyslogd
/// parsing them, in at most 0.15 CPU-s per 100 MB.
fn targets_of(r: &Receiver) -> Targets {
    const NONE: Targets = Targets {
        speed: &[],
        cpu_per_100mb: None,
    };
    let Kind::Logsinkd {
        format,
        framing,
        tls,
        ..
    } = r.kind
    else {
        return NONE;
    };
    if tls {
        // And CPU per byte at most twice its own plaintext figure (`print_targets`).
        return Targets {
            speed: &[(Baseline::Rsyslogd, 4.0)],
            cpu_per_100mb: None,
        };
    }
    match (format, framing) {
        ("default", "lines") => Targets {
            speed: &[(Baseline::EqualBytes, 0.9), (Baseline::Rsyslogd, 4.0)],
            cpu_per_100mb: Some(0.15),
        },
        ("raw", "lines") => Targets {
            speed: &[(Baseline::Reference, 0.9), (Baseline::Rsyslogd, 4.0)],
            cpu_per_100mb: None,
        },
        ("raw", "octet") => Targets {
            speed: &[(Baseline::Reference, 0.9)],
            cpu_per_100mb: None,
        },
        ("json", "octet") => Targets {
            speed: &[(Baseline::Rsyslogd, 4.0)],
            cpu_per_100mb: Some(0.15),
        },
        _ => NONE,
    }
}

/// The targets, each with the figure it is judged on and PASS or MISS.
fn print_targets(rows: &[Row], smoke: bool) {
    if smoke {
        println!("\n## Targets (smoke scale: these figures measure nothing)\n");
    } else {
        println!("\n## Targets\n");
    }
    let check = |what: String, value: Option<f64>, ok: &dyn Fn(f64) -> bool, unit: &str| {
        let verdict = match value {
            Some(v) if ok(v) => format!("{v:.3}{unit} PASS"),
            Some(v) => format!("{v:.3}{unit} MISS"),
            None => "not measured".to_string(),
        };
        println!("- {what}: {verdict}");
    };
    for row in rows
        .iter()
        .filter(|r| r.throughput_target && r.receiver.is_logsinkd())
    {
        let name = format!("{} / {}", row.scenario, row.receiver.name);
        let Ok(m) = row.median() else {
            println!("- {name}: FAILED");
            continue;
        };
        let mbs = Row::mb_per_s(&m, row.payload);
        let vs = |pick: fn(&Receiver) -> bool| {
            find(rows, &row.scenario, pick).map(|o| mbs / Row::mb_per_s(&o, row.payload))
        };
        let targets = targets_of(&row.receiver);
        for &(baseline, floor) in targets.speed {
            check(
                format!("{name} >= {floor} x {}", baseline.label()),
                vs(baseline.pick()),
                &|v| v >= floor,
                "x",
            );
            if let Baseline::EqualBytes = baseline {
                // Not a target: where that ceiling and `default` stand against the reference.
                if let (Some(c), Some(r)) = (vs(Receiver::ceiling_only), vs(is_reference)) {
                    println!(
                        "- {name}: the equal-bytes ceiling reaches {:.3}x of the reference, logsinkd default {r:.3}x of the reference (not a target)",
                        r / c
                    );
                }
            }
        }
        if row.receiver.tls() {
            // The same messages in plaintext: the `syslog` scenario of the same shape.
            let plain = row.scenario.replacen("tls ", "syslog ", 1);
            let plaintext = find(rows, &plain, |r| {
                matches!(
                    r.kind,
                    Kind::Logsinkd {
                        format: "raw",
                        framing: "octet",
                        tls: false,
                        ..
                    }
                )
            });
            check(
                format!("{name} CPU per byte <= 2 x plaintext ({plain} / logsinkd octet raw)"),
                plaintext.map(|p| m.cpu / p.cpu),
                &|v| v <= 2.0,
                "x",
            );
        }
        if let Some(budget) = targets.cpu_per_100mb {
            let per_100mb = |cpu: f64| cpu / (row.payload as f64 / 1e8);
            check(
                format!("{name} CPU <= {budget} s per 100 MB"),
                Some(per_100mb(m.cpu)),
                &|v| v <= budget,
                " s",
            );
            // Not a target: what writing as many bytes costs a server that does nothing else.
            let ceiling = find_row(rows, &row.scenario, Receiver::ceiling_only);
            if let Some((ceiling, Ok(c))) = ceiling.map(|c| (c, c.median())) {
                println!(
                    "- {name}: {} spends {:.3} s per 100 MB writing as many bytes (not a target)",
                    ceiling.receiver.name,
                    per_100mb(c.cpu)
                );
            }
        }
    }
    for row in rows
        .iter()
        .filter(|r| !r.latency && !r.throughput_target && !r.template && r.receiver.is_logsinkd())
    {
        let name = format!("{} / {}", row.scenario, row.receiver.name);
        let Ok(m) = row.median() else {
            println!("- {name}: FAILED");
            continue;
        };
        if row.receiver.tls() {
            let rsyslogd = find(rows, &row.scenario, is_rsyslogd);
            check(
                format!("{name} peak RSS below rsyslogd's (TLS, same connections)"),
                rsyslogd.map(|r| m.rss_kib as f64 / r.rss_kib as f64),
                &|v| v < 1.0,
                "x",
            );
            continue;
        }
        check(
            format!("{name} peak RSS <= 16 MiB"),
            Some(m.rss_kib as f64 / 1024.0),
            &|v| v <= 16.0,
            " MiB",
        );
        let wall = find(rows, &row.scenario, is_reference).map(|r| m.wall / r.wall);
        check(
            format!("{name} wall <= 1.2 x reference"),
            wall,
            &|v| v <= 1.2,
            "x",
        );
    }
    for row in rows
        .iter()
        .filter(|r| r.latency && r.receiver.is_logsinkd())
    {
        let name = format!("{} / {}", row.scenario, row.receiver.name);
        let p99 = row.median().ok().and_then(|m| m.latency).map(|l| l[1]);
        check(format!("{name} p99 <= 2 ms"), p99, &|v| v <= 2.0, " ms");
    }
}
