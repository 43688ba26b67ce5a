//! Syslog receivers that misbehave in ways that would block a naive sender: a unix stream
//! listener that stops accepting, a DNS server that never answers, a local syslog socket
//! whose queue is full. Whatever they do, the event loop must go on reading clients and
//! answering signals. The receivers are made here, on real sockets in the test's temp dir
//! and on loopback; name lookups and /dev/log are redirected only inside the daemon's own
//! mount namespace (`unshare --mount`), so nothing outside the temp dir is touched.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// How soon a daemon whose loop runs answers SIGUSR1. Generous for a loaded 2-core machine;
/// a loop stuck in a blocking call misses it by far (the blocking calls tested here wait
/// for 30 s or forever).
const PROMPTLY: Duration = Duration::from_secs(3);

/// Sends SIGUSR1 and checks that a new `stats:` line comes within `PROMPTLY`: the loop runs.
/// Returns the line and how long it took.
fn stats_promptly(d: &Daemon) -> (String, Duration) {
    let count = || d.log.matching("stats:").len();
    let before = count();
    let start = Instant::now();
    d.signal(libc::SIGUSR1);
    wait_until("a prompt answer to SIGUSR1", PROMPTLY, || {
        (count() > before).then_some(())
    });
    (d.log.wait_for_nth("stats:", before + 1), start.elapsed())
}

/// Waits at most `PROMPTLY` for the `nth` log line containing `pattern`, which a loop that
/// runs logs at once.
fn log_promptly(d: &Daemon, pattern: &str, nth: usize) {
    wait_until(
        &format!("log line {pattern:?} #{nth} promptly"),
        PROMPTLY,
        || (d.log.matching(pattern).len() >= nth).then_some(()),
    );
}

/// Accepts one connection on a non-blocking listener, waiting at most `DEADLINE`.
fn accept(listener: &UnixListener) -> UnixStream {
    let stream = wait_until(
        "a connection to the unix receiver",
        DEADLINE,
        || match listener.accept() {
            Ok((stream, _)) => Some(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) => panic!("accept: {e}"),
        },
    );
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Connects to `path` without blocking until the listener's backlog is full (`EAGAIN`);
/// returns the connections, which wait unaccepted.
fn fill_backlog(path: &Path) -> Vec<socket2::Socket> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let addr = SockAddr::unix(path).unwrap();
    let mut filled = Vec::new();
    loop {
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).unwrap();
        if let Err(e) = socket.connect(&addr) {
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "filling the backlog: {e}");
            assert!(!filled.is_empty(), "the backlog was full already");
            return filled;
        }
        filled.push(socket);
        assert!(filled.len() < 100, "the backlog never fills");
    }
}

/// Reads `n` NUL-terminated syslog messages from a unix stream; returns each one's line (the
/// text after `logsinkd[PID]: <peer> `).
fn read_messages(stream: &mut UnixStream, n: usize) -> Vec<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    while data.iter().filter(|&&b| b == 0).count() < n {
        let got = stream
            .read(&mut buf)
            .expect("reading the daemon's messages");
        assert!(got > 0, "the daemon closed its connection early");
        data.extend_from_slice(&buf[..got]);
    }
    data.split(|&b| b == 0)
        .take(n)
        .map(|m| {
            let m = String::from_utf8_lossy(m);
            let text = m.split_once("]: ").expect("syslog header").1;
            text.split_once(' ').expect("peer first").1.to_string()
        })
        .collect()
}

/// A unix stream syslog receiver stops accepting with its backlog full. A reopen (SIGHUP)
/// and then a reconnect (the receiver closed the connection in use) must not wait for it:
/// the daemon keeps answering signals and taking clients' lines, and once the receiver
/// accepts again every line arrives, in order.
#[test]
fn stalled_unix_stream_receiver_never_blocks_the_loop() {
    let dir = temp_dir();
    let path = dir.path().join("stream.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // The smallest backlog, so a few connections fill it. Linux lets listen(2) change the
    // backlog of a listening socket.
    // SAFETY: listen(2) on our own socket.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
    listener.set_nonblocking(true).unwrap();
    let target = format!("syslog:{}", path.display());
    let mut d = DaemonBuilder::new(dir.path())
        .args(["--output", &target])
        .output(&target)
        .start();

    let mut first_conn = accept(&listener);
    send(d.addr, numbered_lines(0..100).as_bytes());
    assert_numbered(&read_messages(&mut first_conn, 100), 0..100, Layout::Raw);

    // The receiver stops accepting: its backlog fills up.
    let fillers = fill_backlog(&path);
    d.signal(libc::SIGHUP);
    log_promptly(&d, "reopening failed, still writing to the old output", 1);
    let (_, hup_answer) = stats_promptly(&d);
    d.log.wait_for("takes no connection for now");

    // The receiver drops the connection in use: the daemon must reconnect, and cannot.
    drop(first_conn);
    send(d.addr, numbered_lines(100..200).as_bytes());
    d.wait_for_stats("lines=200");
    let (_, reconnect_answer) = stats_promptly(&d);
    // The reconnect has been refused for a while (logged once it lasts a second).
    d.log.wait_for_nth("takes no connection for now", 2);

    // The receiver accepts again: first the connections that filled its backlog, then the
    // daemon's, which brings every line held meanwhile.
    for _ in &fillers {
        drop(accept(&listener));
    }
    drop(fillers);
    let mut second_conn = accept(&listener);
    assert_numbered(&read_messages(&mut second_conn, 100), 100..200, Layout::Raw);
    d.log.wait_for("takes data again");
    eprintln!(
        "SIGUSR1 answered in {hup_answer:?} after SIGHUP, {reconnect_answer:?} while reconnecting"
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// A TCP receiver of the test's own, collecting the LF-terminated lines of every connection
/// (the text after `logsinkd[PID]: <peer> `).
struct TcpReceiver {
    lines: Arc<Mutex<Vec<String>>>,
}

impl TcpReceiver {
    fn start(listener: TcpListener) -> TcpReceiver {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let all = lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let all = all.clone();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        let text = line.split_once("]: ").map_or("", |(_, t)| t);
                        let text = text.split_once(' ').map_or("", |(_, t)| t);
                        all.lock().unwrap().push(text.to_string());
                    }
                });
            }
        });
        TcpReceiver { lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Host names of `syslog+tcp://` are looked up anew at each SIGHUP, but never by the event
/// loop: a new address is used once the lookup answers; while the DNS server does not
/// answer at all, the daemon answers signals at once and keeps sending to the old address.
#[test]
fn slow_name_lookup_on_reload_never_blocks_the_loop() {
    if !root_for("mount over /etc/hosts in a private mount namespace and bind port 53") {
        return;
    }
    let dir = temp_dir();
    let name = "receiver.logsinkd-test";
    // Two receivers on the same port: the name points at one, then at the other.
    let (old, new, port) = (0..20)
        .find_map(|_| {
            let old = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = old.local_addr().unwrap().port();
            let new = TcpListener::bind(("127.0.0.2", port)).ok()?;
            Some((old, new, port))
        })
        .expect("a port free on both 127.0.0.1 and 127.0.0.2");
    let (old, new) = (TcpReceiver::start(old), TcpReceiver::start(new));
    // A DNS server that never answers: the resolver waits its full timeout (30 s).
    let dns = UdpSocket::bind("127.53.0.1:53").expect("binding 127.53.0.1:53");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 {name}\n")).unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        "nameserver 127.53.0.1\noptions timeout:30 attempts:1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("nsswitch.conf"), "hosts: files dns\n").unwrap();
    let script = "for f in hosts resolv.conf nsswitch.conf; do \
                  mount --bind \"$0/$f\" \"/etc/$f\" || exit 1; done; exec \"$@\"";
    let wrapper = in_private_mounts(script, dir.path().to_str().unwrap());
    let target = format!("syslog+tcp://{name}:{port}");
    let mut d = DaemonBuilder::wrapped(dir.path(), &wrapper)
        .args(["--output", &target])
        .output(&target)
        .start();
    send(d.addr, numbered_lines(0..1).as_bytes());
    wait_until("the first line at 127.0.0.1", DEADLINE, || {
        (old.lines().len() == 1).then_some(())
    });

    // The name moves: after SIGHUP, lines go to the new address once the lookup answers.
    // (`hosts` is rewritten in place: the bind mount holds its inode.)
    std::fs::write(&hosts, format!("127.0.0.2 {name}\n")).unwrap();
    d.signal(libc::SIGHUP);
    // The number of the next line to send.
    let mut next = 1;
    wait_until("lines at the new address", DEADLINE, || {
        send(d.addr, numbered_lines(next..next + 1).as_bytes());
        next += 1;
        (!new.lines().is_empty()).then_some(())
    });

    // The name is gone from the hosts file and DNS does not answer: the lookup hangs on its
    // thread while the loop goes on, sending to the address it has.
    std::fs::write(&hosts, "").unwrap();
    d.signal(libc::SIGHUP);
    log_promptly(&d, &format!("reopened {target}"), 2);
    let (_, answer) = stats_promptly(&d);
    send(d.addr, numbered_lines(next..next + 50).as_bytes());
    next += 50;
    let last = numbered_line(next - 1);
    wait_until("the lines sent while the lookup hangs", DEADLINE, || {
        (new.lines().last() == Some(&last)).then_some(())
    });
    let (_, answer2) = stats_promptly(&d);
    eprintln!("SIGUSR1 answered in {answer:?} and {answer2:?} while the lookup hangs");

    // Every line arrived once: at the old address until the new one was known, then there.
    let mut got = old.lines();
    got.extend(new.lines());
    assert_numbered(&got, 0..next, Layout::Raw);
    assert!(d.log.matching("error:").is_empty(), "{:#?}", d.log.all());
    // The lookup did ask the DNS server, which is still not answering.
    dns.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut query = [0u8; 512];
    let n = dns.recv(&mut query).expect("a DNS query from the lookup");
    assert!(n > 12, "a DNS query");
    d.log
        .wait_for(&format!("{target} is now at 127.0.0.2:{port}"));
    assert_eq!(d.stop().code(), Some(0));
}

/// In daemon mode diagnostics go to /dev/log. A local syslog daemon that takes nothing (its
/// socket's queue full) must not stall the loop: messages that cannot be sent at once are
/// dropped and counted, and the next one that gets through says how many.
#[test]
fn stalled_dev_log_never_blocks_the_loop() {
    if !root_for("mount a private /dev with a /dev/log of the test's own") {
        return;
    }
    let dir = temp_dir();
    // The test's /dev/log: a datagram socket nobody reads until the end.
    let devlog = UnixDatagram::bind(dir.path().join("devlog.sock")).unwrap();
    let script = "mount -t tmpfs logsinkd-test /dev && mknod -m 666 /dev/null c 1 3 && \
                  ln -s \"$0/devlog.sock\" /dev/log && exec \"$@\"";
    let wrapper = in_private_mounts(script, dir.path().to_str().unwrap());
    let d = ClassicDaemon::start(dir.path(), &wrapper, &["--output", "out.log"]);
    let (addr, pid) = (d.addr, d.pid);

    // Far more messages than the socket's queue holds (net.unix.max_dgram_qlen, 10 by
    // default). The pause lets each signal be its own message rather than coalesce.
    for _ in 0..40 {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(5));
    }
    send(addr, b"after the flood\n");
    let log = dir.path().join("out.log");
    wait_until("the line sent after the flood", DEADLINE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("after the flood"))
    });

    // The receiver reads again: what it got, then a note of what was dropped.
    devlog.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8192];
    let mut queued = 0;
    while devlog.recv(&mut buf).is_ok() {
        queued += 1;
    }
    devlog.set_nonblocking(false).unwrap();
    devlog.set_read_timeout(Some(DEADLINE)).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let mut next = || {
        let n = devlog.recv(&mut buf).expect("a message at /dev/log");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let note = next();
    let dropped: u64 = note
        .split_once("]: ")
        .and_then(|(_, t)| {
            t.strip_suffix(" diagnostic messages were dropped: syslog took no more at the time")
        })
        .unwrap_or_else(|| panic!("a note of the dropped messages: {note}"))
        .parse()
        .unwrap();
    assert!(note.starts_with("<28>"), "daemon.warning: {note}");
    let stats = next();
    assert!(stats.contains("stats: "), "{stats}");
    assert!(stats.starts_with("<30>"), "daemon.info: {stats}");
    eprintln!("/dev/log held {queued} messages; {dropped} were dropped");
    assert!(
        dropped > 0 && queued <= 12,
        "{queued} held, {dropped} dropped"
    );

    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("the daemon to exit", DEADLINE, || {
        // SAFETY: signal 0 only checks for existence.
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
}
