//! The metrics endpoint (`--metrics-listen`): its text passes `promtool check metrics`, a real
//! Prometheus server scrapes it and answers queries with the daemon's counts, and hostile
//! metrics clients (a 1 GiB request, thousands of connections, a stalled request, wrong paths,
//! methods and garbage) get their error or are closed while log clients go on being recorded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logsinkd::metrics::{MAX_EXCHANGES, REQUEST_MAX, REQUEST_TIMEOUT};

use crate::util::*;

/// A daemon with the metrics on a free port, and that port.
fn start(dir: &Path, extra: &[&str]) -> (Daemon, SocketAddr) {
    let d = DaemonBuilder::new(dir)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(extra)
        .start();
    let line = d.log.wait_for("metrics on http://");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap();
    (d, addr)
}

/// A response: status code, head, body.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` on a new connection and reads the response until the daemon closes it.
fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the response");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), length, "{head}");
    Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET /metrics` as Prometheus sends it; the body, after checking status and content type.
fn scrape(addr: SocketAddr) -> String {
    let r = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: logsinkd\r\nUser-Agent: Prometheus/2.42.0\r\n\
          Accept: text/plain;version=0.0.4;q=0.2,*/*;q=0.1\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.head
            .contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{}",
        r.head
    );
    r.body
}

/// The value of the sample `series` (name and labels as written) in `text`.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// `series` of `daemon`'s TCP listener: `name{listener="tcp://127.0.0.1:PORT"}`.
fn of_tcp(name: &str, d: &Daemon) -> String {
    format!("{name}{{listener=\"tcp://{}\"}}", d.addr)
}

/// Scrapes until the series has `want`; the text then.
fn wait_for_sample(addr: SocketAddr, series: &str, want: u64) -> String {
    wait_until(&format!("{series} = {want}"), DEADLINE, || {
        let text = scrape(addr);
        (sample(&text, series) == Some(want)).then_some(text)
    })
}

/// Sends `n` lines on one log connection (closed after) and waits until the output has
/// `total` lines.
fn log_lines(d: &Daemon, n: usize, total: usize) {
    let mut c = d.connect();
    for i in 0..n {
        writeln!(c, "log line {i}").unwrap();
    }
    drop(c);
    d.wait_for_lines(total);
}

/// The counters of the metrics text are the daemon's: lines and bytes per listener (TCP and
/// UDP), connections, records and bytes written, a reopen, the process start time; and
/// `promtool check metrics` (the Prometheus project's own linter) takes the text without a
/// single warning.
#[test]
fn metrics_pass_promtool_and_count() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &["--listen-udp", "127.0.0.1:0"]);
    let udp_addr: SocketAddr = d.log.udp_addr();
    log_lines(&d, 3, 3);
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"one\ntwo\n", udp_addr).unwrap();
    d.wait_for_lines(5);
    d.signal(libc::SIGHUP);
    d.log.wait_for("reopened");

    let text = wait_for_sample(metrics, "logsinkd_output_reopens_total", 1);
    let udp = |name: &str| format!("{name}{{listener=\"udp://{udp_addr}\"}}");
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_lines_received_total", &d)),
        Some(3)
    );
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_received_bytes_total", &d)),
        Some(3 * 11)
    );
    assert_eq!(
        sample(&text, &udp("logsinkd_lines_received_total")),
        Some(2)
    );
    assert_eq!(
        sample(&text, &udp("logsinkd_received_bytes_total")),
        Some(8)
    );
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_connections_accepted_total", &d)),
        Some(1)
    );
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_connections_open", &d)),
        Some(0)
    );
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_connections_refused_total", &d)),
        Some(0)
    );
    assert_eq!(
        sample(&text, &udp("logsinkd_datagrams_dropped_total")),
        Some(0)
    );
    assert_eq!(sample(&text, "logsinkd_records_written_total"), Some(5));
    let written = std::fs::metadata(&d.out).unwrap().len();
    assert_eq!(sample(&text, "logsinkd_written_bytes_total"), Some(written));
    assert_eq!(sample(&text, "logsinkd_output_backlog_bytes"), Some(0));
    assert_eq!(sample(&text, "logsinkd_output_open_files"), Some(1));
    assert_eq!(sample(&text, "logsinkd_output_errors_total"), Some(0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = sample(&text, "process_start_time_seconds").unwrap();
    assert!(started <= now && started + 600 > now, "{started} vs {now}");

    promtool_accepts(&promtool, dir.path(), &text);
}

/// `promtool check metrics` takes `text` without a word.
fn promtool_accepts(promtool: &Path, dir: &Path, text: &str) {
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert_eq!(said.trim(), "", "promtool warns:\n{text}");
}

/// Senders turned away are served per listener: a PROXY header naming a client outside
/// `allow` and a datagram from outside it count in `logsinkd_denied_total` of their listener,
/// a connection with garbage instead of a PROXY header in `logsinkd_proxy_refused_total`; the
/// text still passes promtool.
#[test]
fn turned_away_senders_are_served() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let dir = temp_dir();
    let (d, metrics) = start(
        dir.path(),
        &[
            "--listen-udp",
            "127.0.0.1:0",
            "--allow",
            "127.0.0.1",
            "--proxy-protocol",
            "--proxy-from",
            "127.0.0.1",
        ],
    );
    let udp_addr = d.log.udp_addr();
    // From the balancer (127.0.0.1), naming a client outside `allow`: denied.
    let mut denied = d.connect();
    denied
        .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 5140\r\nnot recorded\n")
        .unwrap();
    // From the balancer, with no header: refused.
    let mut garbage = d.connect();
    garbage.write_all(b"hello, no header here\r\n").unwrap();
    // A datagram from outside `allow`: denied on the UDP socket.
    let outsider = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    outsider.send_to(b"dropped\n", udp_addr).unwrap();

    let udp = |name: &str| format!("{name}{{listener=\"udp://{udp_addr}\"}}");
    wait_for_sample(metrics, &udp("logsinkd_denied_total"), 1);
    wait_for_sample(metrics, &of_tcp("logsinkd_proxy_refused_total", &d), 1);
    let text = wait_for_sample(metrics, &of_tcp("logsinkd_denied_total", &d), 1);
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_connections_open", &d)),
        Some(0),
        "turned-away clients hold no slot"
    );
    assert!(
        !text.contains("logsinkd_proxy_refused_total{listener=\"udp"),
        "PROXY is TCP's only: {text}"
    );
    promtool_accepts(&promtool, dir.path(), &text);
    assert_eq!(d.output(), "", "nothing recorded");
}

/// A Prometheus server, started on a free loopback port with its own storage in `dir`, and
/// killed when dropped.
struct Prometheus {
    child: Child,
    api: SocketAddr,
}

impl Prometheus {
    /// Scrapes `target` every second.
    fn start(bin: &Path, dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: logsinkd\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        Prometheus { child, api }
    }

    /// The values of an instant query's series, or `None` while the server does not answer.
    fn query(&self, query: &str) -> Option<Vec<u64>> {
        let mut s = TcpStream::connect(self.api).ok()?;
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(s, "GET /api/v1/query?query={query} HTTP/1.0\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (_, body) = raw.split_once("\r\n\r\n")?;
        let json: serde_json::Value = serde_json::from_str(body).ok()?;
        let series = json["data"]["result"].as_array()?;
        series
            .iter()
            .map(|s| s["value"][1].as_str()?.parse().ok())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus server scrapes logsinkd, and its query API gives the number of lines
/// the test sent as `logsinkd_lines_received_total`.
#[test]
fn prometheus_scrapes_the_lines_received() {
    let Some(bin) = tool("prometheus", "prometheus") else {
        return;
    };
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &[]);
    let prometheus = Prometheus::start(&bin, dir.path(), metrics);
    log_lines(&d, 250, 250);
    let log = dir.path().join("prometheus.log");
    wait_until(
        "Prometheus to report 250 lines received",
        DEADLINE * 3,
        || {
            let got = prometheus.query("logsinkd_lines_received_total");
            assert!(
                prometheus_alive(&prometheus),
                "prometheus exited: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            (got == Some(vec![250])).then_some(())
        },
    );
    assert_eq!(
        prometheus.query("up"),
        Some(vec![1]),
        "the scrape is healthy"
    );
}

fn prometheus_alive(p: &Prometheus) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that our child exists.
    unsafe { libc::kill(p.child.id() as i32, 0) == 0 }
}

/// A client that streams a request of up to 1 GiB is cut off after the request buffer (431
/// or a reset), the daemon's memory does not grow with it, and log clients are recorded
/// meanwhile.
#[test]
fn huge_request_is_cut_off() {
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &[]);
    log_lines(&d, 1, 1);
    let before = peak_rss_kib(d.pid());
    let flood = std::thread::spawn(move || {
        let mut s = TcpStream::connect(metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nX-Filler: ").unwrap();
        let chunk = vec![b'a'; 1 << 16];
        let mut sent = 0u64;
        while sent < 1 << 30 {
            match s.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(e) => {
                    assert!(
                        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                        "{e}"
                    );
                    return sent;
                }
            }
        }
        sent
    });
    log_lines(&d, 100, 101);
    let sent = flood.join().unwrap();
    assert!(
        sent < 64 << 20,
        "the daemon took {sent} bytes of one request without closing"
    );
    let grown = peak_rss_kib(d.pid()).saturating_sub(before);
    eprintln!("huge request: cut off after {sent} bytes, peak RSS grew {grown} KiB");
    assert!(grown < 8 * 1024, "peak RSS grew by {grown} KiB");
    // An oversize head that is not streamed on gets its 431.
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    head.resize(REQUEST_MAX + 100, b'a');
    let r = exchange(metrics, &head);
    assert_eq!(r.status, 431, "{}", r.head);
    log_lines(&d, 1, 102);
    let text = scrape(metrics);
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_lines_received_total", &d)),
        Some(102)
    );
}

/// Metrics connections beyond the cap are closed at once (reset), thousands of them, while
/// the ones within it stay open until their request times out; log clients are served all
/// along, and once the held connections are gone a scrape works again.
#[test]
fn metrics_connections_over_the_cap_are_closed() {
    const EXTRA: usize = 2000;
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &[]);
    let start = Instant::now();
    // Accepted in the order they connect: these fill the cap.
    let held: Vec<TcpStream> = (0..MAX_EXCHANGES)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    let mut log = d.connect();
    for i in 0..EXTRA {
        expect_reset_connecting("127.0.0.1", metrics);
        if i % 100 == 0 {
            writeln!(log, "during the flood {i}").unwrap();
        }
    }
    assert!(
        start.elapsed() < REQUEST_TIMEOUT,
        "the flood took longer than the held connections may stay: the test proves nothing"
    );
    drop(log);
    d.wait_for_lines(EXTRA / 100);
    // The held ones end at their request timeout, closed normally.
    for mut h in held {
        expect_closed(&mut h);
    }
    assert!(start.elapsed() >= REQUEST_TIMEOUT - Duration::from_millis(500));
    let text = scrape(metrics);
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_lines_received_total", &d)),
        Some((EXTRA / 100) as u64)
    );
}

/// A request that stops halfway is closed at the request timeout, not before; logging goes
/// on meanwhile.
#[test]
fn stalled_half_request_is_closed_at_the_timeout() {
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &[]);
    let mut s = TcpStream::connect(metrics).unwrap();
    let start = Instant::now();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    log_lines(&d, 10, 10);
    expect_closed(&mut s);
    let took = start.elapsed();
    assert!(
        took >= REQUEST_TIMEOUT - Duration::from_millis(500),
        "closed after {took:?}"
    );
    log_lines(&d, 1, 11);
}

/// Another path is 404, another method 405 naming GET, and bytes that are no HTTP request 400;
/// each connection closes after its answer, and the daemon serves on.
#[test]
fn wrong_requests_get_their_errors() {
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &[]);
    let r = exchange(metrics, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.head);
    assert!(r.body.contains("/metrics"), "{}", r.body);
    for method in ["POST", "HEAD", "DELETE"] {
        let r = exchange(
            metrics,
            format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 405, "{method}: {}", r.head);
        assert!(r.head.contains("\r\nAllow: GET"), "{}", r.head);
    }
    for garbage in [
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..],
        b"hello\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let r = exchange(metrics, garbage);
        assert_eq!(r.status, 400, "{garbage:?}: {}", r.head);
    }
    log_lines(&d, 2, 2);
    assert!(scrape(metrics).contains("logsinkd_lines_received_total"));
}

/// A client that asks and never reads its answer holds nothing up: logging goes on, and
/// another client's scrape is answered meanwhile.
#[test]
fn unread_response_holds_nothing_up() {
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &[]);
    let mut idle = TcpStream::connect(metrics).unwrap();
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    log_lines(&d, 5, 5);
    let text = scrape(metrics);
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_lines_received_total", &d)),
        Some(5)
    );
    drop(idle);
}

/// Without `--metrics-listen` no metrics are served and no line says so.
#[test]
fn metrics_are_off_by_default() {
    let dir = temp_dir();
    let d = Daemon::start(dir.path(), &[]);
    log_lines(&d, 1, 1);
    assert!(d.log.matching("metrics").is_empty(), "{:#?}", d.log.all());
}

/// At the connection cap new clients wait in the listen backlog; once that is full the
/// kernel refuses more, and `logsinkd_connections_refused_total` counts them.
#[test]
fn refused_connections_are_counted() {
    let dir = temp_dir();
    let (d, metrics) = start(dir.path(), &["--max-connections", "1", "--backlog", "1"]);
    let _held = d.connect();
    wait_for_sample(metrics, &of_tcp("logsinkd_connections_open", &d), 1);
    let refused = of_tcp("logsinkd_connections_refused_total", &d);
    let mut waiting = Vec::new();
    let text = wait_until("a refused connection counted", DEADLINE, || {
        // Each try fills the backlog further; those beyond it time out.
        if let Ok(s) = TcpStream::connect_timeout(&d.addr, Duration::from_millis(100)) {
            waiting.push(s);
        }
        let text = scrape(metrics);
        (sample(&text, &refused)? > 0).then_some(text)
    });
    assert_eq!(
        sample(&text, &of_tcp("logsinkd_connections_accepted_total", &d)),
        Some(1)
    );
}

/// A syslog receiver that goes away makes one failure episode: the failed writes are counted
/// as errors, the records held show as backlog; once a receiver is back everything held is
/// written, the backlog is 0, the episode count stays 1 and every record is counted written.
#[test]
fn output_failure_episode_is_counted() {
    let dir = temp_dir();
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = receiver.local_addr().unwrap();
    let target = format!("syslog+tcp://{at}");
    let (d, metrics) = start(dir.path(), &["--output", &target]);
    let (mut first, _) = receiver.accept().unwrap();
    let mut client = d.connect();
    writeln!(client, "before").unwrap();
    let mut byte = [0; 1];
    first.read_exact(&mut byte).unwrap();
    drop(first);
    drop(receiver);
    let mut sent = 1;
    let text = wait_until("a failure episode", DEADLINE, || {
        writeln!(client, "while gone {sent}").unwrap();
        sent += 1;
        let text = scrape(metrics);
        (sample(&text, "logsinkd_output_failures_total")? == 1).then_some(text)
    });
    assert!(
        sample(&text, "logsinkd_output_errors_total").unwrap() >= 1,
        "{text}"
    );
    assert!(
        sample(&text, "logsinkd_output_backlog_bytes").unwrap() > 0,
        "{text}"
    );
    // The receiver is back on the same port: the retry reconnects and writes what was held.
    let receiver = std::net::TcpListener::bind(at).unwrap();
    let collector = std::thread::spawn(move || {
        let (mut s, _) = receiver.accept().unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let text = wait_for_sample(metrics, "logsinkd_output_backlog_bytes", 0);
    assert_eq!(
        sample(&text, "logsinkd_output_failures_total"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "logsinkd_records_written_total"),
        Some(sent),
        "{text}"
    );
    drop(client);
    let mut d = d;
    d.stop();
    let got = String::from_utf8_lossy(&collector.join().unwrap()).into_owned();
    assert!(got.contains(&format!("while gone {}", sent - 1)), "{got}");
}

/// A TLS listener's failed handshakes are served per listener as
/// `logsinkd_tls_handshake_failures_total`, its connections as the stream families; a plain
/// TCP listener has no TLS series.
#[test]
fn tls_handshake_failures_are_served() {
    let dir = temp_dir();
    let files = TlsFiles::new(dir.path());
    let args: Vec<String> = files.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (d, metrics) = start(dir.path(), &args);
    let tls = d.log.listening_on("tls ");
    send(tls, b"<13>plaintext on the TLS port\n");
    let series = format!("logsinkd_tls_handshake_failures_total{{listener=\"tls://{tls}\"}}");
    let text = wait_until("a failed handshake served", DEADLINE, || {
        let text = scrape(metrics);
        (sample(&text, &series) == Some(1)).then_some(text)
    });
    let accepted = format!("logsinkd_connections_accepted_total{{listener=\"tls://{tls}\"}}");
    assert_eq!(sample(&text, &accepted), Some(1), "{text}");
    let plain = format!(
        "logsinkd_tls_handshake_failures_total{{listener=\"tcp://{}\"}}",
        d.addr
    );
    assert_eq!(sample(&text, &plain), None, "{text}");
}
