//! Reading what systemctl and systemd-analyze print: STATUS= counters, time spans, exposure.

use std::time::Duration;

/// The counters of a `STATUS=` text: open, total connections, lines, bytes, errors.
pub fn parse_status(text: &str) -> Option<[u64; 5]> {
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let words_ok = ["open", "total connections", "lines", "bytes", "errors"]
        .iter()
        .all(|w| text.contains(w));
    (words_ok && numbers.len() == 5).then(|| numbers.try_into().unwrap())
}

/// `systemctl show` time spans such as `10s`, `1min 30s`, `500ms`.
pub fn parse_timespan(text: &str) -> Duration {
    text.split_whitespace()
        .map(|part| {
            let digits = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            let (n, unit) = part.split_at(digits);
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("time span {text:?}"));
            match unit {
                "min" => Duration::from_secs(n * 60),
                "s" | "" => Duration::from_secs(n),
                "ms" => Duration::from_millis(n),
                _ => panic!("unit {unit:?} in time span {text:?}"),
            }
        })
        .sum()
}

/// The exposure `systemd-analyze security` reports in its last line, e.g. `... logsinkd.service: 1.1 OK`.
pub fn parse_exposure(output: &str) -> f64 {
    let last = output
        .lines()
        .rfind(|l| l.contains("Overall exposure level"))
        .expect("an exposure line");
    let after = last.rsplit_once(": ").unwrap().1;
    after
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("exposure in {last:?}"))
}

/// The parsers read what systemctl and systemd-analyze print.
#[test]
fn systemd_output_parsers() {
    assert_eq!(parse_timespan("10s"), Duration::from_secs(10));
    assert_eq!(parse_timespan("1min 30s"), Duration::from_secs(90));
    assert_eq!(
        parse_status("1 open, 2 total connections; 3 lines, 4 bytes; 0 errors"),
        Some([1, 2, 3, 4, 0])
    );
    assert_eq!(
        parse_exposure("x\n→ Overall exposure level for logsinkd.service: 1.1 OK 🙂\n"),
        1.1
    );
}
