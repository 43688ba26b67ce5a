//! With `--metrics`: logsinkd serves its metrics (`--metrics-listen`), and a scraper thread
//! asks for them every `SCRAPE_EVERY` while each run sends, as Prometheus would (only far more
//! often), so that runs with and without `--metrics` compare logsinkd counting and serving
//! against not serving. Every answer must be a 200 with the lines counter in it, and after
//! the run the counter must equal the lines sent; a run where either fails is FAILED.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the scraper asks during a run (Prometheus's default is once a minute).
pub const SCRAPE_EVERY: Duration = Duration::from_millis(100);

/// The scraper thread of one run.
pub struct Scraper {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<usize, String>>,
}

impl Scraper {
    /// Scrapes `addr` at once, then every `SCRAPE_EVERY` until `finish`.
    pub fn start(addr: SocketAddr) -> Scraper {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            loop {
                lines_received(addr)?;
                scrapes += 1;
                match stopped.recv_timeout(SCRAPE_EVERY) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return Ok(scrapes),
                }
            }
        });
        Scraper { stop, thread }
    }

    /// Stops the scraper; how many scrapes it made, or the first that failed.
    pub fn finish(self) -> Result<usize, String> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| "the scraper panicked".to_string())?
    }
}

/// `logsinkd_lines_received_total` summed over the listeners, from one `GET /metrics`.
pub fn lines_received(addr: SocketAddr) -> Result<u64, String> {
    let fail = |e: std::io::Error| format!("scraping {addr}: {e}");
    let mut s = TcpStream::connect(addr).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: ingest\r\n\r\n")
        .map_err(fail)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(fail)?;
    if !text.starts_with("HTTP/1.1 200 ") {
        let head = text.lines().next().unwrap_or("nothing");
        return Err(format!("scraping {addr}: {head}"));
    }
    let samples: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("logsinkd_lines_received_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    if samples.is_empty() {
        return Err(format!("scraping {addr}: no logsinkd_lines_received_total"));
    }
    Ok(samples.iter().sum())
}
