//! Medians, the Markdown tables and the check against the targets.

use std::fmt;

use crate::Scenario;
use crate::receivers::Receiver;

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
    rows.iter()
        .find(|r| r.scenario == scenario && pick(&r.receiver))
        .and_then(|r| r.median().ok())
}

fn is_reference(r: &Receiver) -> bool {
    r.is_reference()
}

/// rsyslogd as set up for the scenario's load (`%rawmsg%` for lines, fields for syslog).
fn is_rsyslogd(r: &Receiver) -> bool {
    r.is_rsyslogd()
}

pub fn print(rows: &[Row], full: bool) {
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
    if full {
        print_targets(rows);
    }
}

/// The targets, each with the figure it is judged on.
fn print_targets(rows: &[Row]) {
    println!("\n## Targets\n");
    let check = |what: String, value: Option<f64>, ok: &dyn Fn(f64) -> bool, unit: &str| {
        let verdict = match value {
            Some(v) if ok(v) => format!("{v:.3}{unit}: met"),
            Some(v) => format!("{v:.3}{unit}: NOT met"),
            None => "not measured".to_string(),
        };
        println!("- {what}: {verdict}");
    };
    for row in rows
        .iter()
        .filter(|r| r.throughput_target && r.receiver.is_logsinkd())
    {
        let Ok(m) = row.median() else {
            println!("- {} / {}: FAILED", row.scenario, row.receiver.name);
            continue;
        };
        let mbs = Row::mb_per_s(&m, row.payload);
        let vs = |pick: fn(&Receiver) -> bool| {
            find(rows, &row.scenario, pick).map(|o| mbs / Row::mb_per_s(&o, row.payload))
        };
        let floor = if row.receiver.name.ends_with("raw") {
            0.9
        } else {
            0.8
        };
        let name = format!("{} / {}", row.scenario, row.receiver.name);
        check(
            format!("{name} >= {floor} x reference"),
            vs(is_reference),
            &|v| v >= floor,
            "x",
        );
        check(
            format!("{name} >= 4 x rsyslogd"),
            vs(is_rsyslogd),
            &|v| v >= 4.0,
            "x",
        );
        if row.receiver.name.ends_with("default") {
            // Not a target: how close `default` comes to a receiver that only copies as many
            // bytes as it writes.
            if let (Some(c), Some(r)) = (vs(Receiver::ceiling_only), vs(is_reference)) {
                println!(
                    "- {name}: the reference writing as many bytes reaches {:.3}x of the reference; logsinkd default {c:.3}x of it",
                    r / c
                );
            }
            let per_100mb = m.cpu / (row.payload as f64 / 1e8);
            check(
                format!("{name} CPU <= 0.15 s per 100 MB"),
                Some(per_100mb),
                &|v| v <= 0.15,
                " s",
            );
        }
    }
    for row in rows
        .iter()
        .filter(|r| !r.latency && !r.throughput_target && r.receiver.is_logsinkd())
    {
        let name = format!("{} / {}", row.scenario, row.receiver.name);
        let Ok(m) = row.median() else {
            println!("- {name}: FAILED");
            continue;
        };
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
