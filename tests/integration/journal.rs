//! The journal output against a receiver of the test's own: a unix datagram socket bound in the
//! temp dir (`journal:/tmp/.../journal.sock`) that decodes every entry as journald does (the
//! native protocol: `NAME=value\n`, the binary-safe `NAME\n<u64 LE length><bytes>\n`, and
//! empty datagrams carrying a sealed memfd). The real journald is in systemd/journal.rs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IoSliceMut, Read, Seek, SeekFrom, Write};
use std::mem::MaybeUninit;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

use crate::util::*;

/// One journal entry as received.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The fields, in the order sent.
    pub fields: Vec<(String, Vec<u8>)>,
    /// The datagram as received (empty for a memfd).
    pub raw: Vec<u8>,
    /// It came in a memfd.
    pub memfd: bool,
}

impl Entry {
    /// The value of field `name` (which must be there once).
    pub fn get(&self, name: &str) -> &[u8] {
        let found: Vec<&Vec<u8>> = self
            .fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), 1, "field {name} in {self:?}");
        found[0]
    }

    pub fn text(&self, name: &str) -> String {
        String::from_utf8_lossy(self.get(name)).into_owned()
    }

    /// The fields as a map of text, for whole-entry comparisons.
    pub fn map(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

/// Decodes an entry in the native protocol; panics, showing it, if it is not well formed.
pub fn decode(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    let mut rest = data;
    let bad = |why: &str| -> ! { panic!("{why} in entry {:?}", String::from_utf8_lossy(data)) };
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| bad("a field without LF"));
        let line = &rest[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let name = String::from_utf8(line[..eq].to_vec()).unwrap();
            fields.push((name, line[eq + 1..].to_vec()));
            rest = &rest[end + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).unwrap();
            let after = &rest[end + 1..];
            let len = u64::from_le_bytes(
                after
                    .get(..8)
                    .unwrap_or_else(|| bad("a short length"))
                    .try_into()
                    .unwrap(),
            ) as usize;
            let value = after
                .get(8..8 + len)
                .unwrap_or_else(|| bad("a value past the end"));
            assert_eq!(after.get(8 + len), Some(&b'\n'), "LF after {name}'s value");
            fields.push((name, value.to_vec()));
            rest = &after[8 + len + 1..];
        }
        let name = &fields.last().unwrap().0;
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && !name.starts_with('_'),
            "field name {name:?}"
        );
    }
    fields
}

/// A journal of the test's own: a datagram socket at `path`, read (once `start`ed) by a
/// thread that decodes every entry.
pub struct Receiver {
    pub path: PathBuf,
    socket: Option<UnixDatagram>,
    entries: Arc<Mutex<Vec<Entry>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Binds `dir/journal.sock`; nothing is read until `start`.
    pub fn bind(dir: &Path) -> Receiver {
        let path = dir.join("journal.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Receiver {
            path,
            socket: Some(socket),
            entries: Arc::default(),
            stop: Arc::default(),
            thread: None,
        }
    }

    /// `journal:PATH`
    pub fn target(&self) -> String {
        format!("journal:{}", self.path.display())
    }

    /// Starts reading.
    pub fn start(mut self) -> Receiver {
        let socket = self.socket.take().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (entries, stop) = (Arc::clone(&self.entries), Arc::clone(&self.stop));
        self.thread = Some(std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                let Some(entry) = receive(&socket, &mut buf) else {
                    continue;
                };
                entries.lock().unwrap().push(entry);
            }
        }));
        self
    }

    /// Binds and starts reading.
    pub fn running(dir: &Path) -> Receiver {
        Receiver::bind(dir).start()
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// Waits for at least `n` entries; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Entry> {
        wait_until(&format!("{n} journal entries"), DEADLINE * 3, || {
            let entries = self.entries();
            (entries.len() >= n).then_some(entries)
        })
    }

    /// Stops reading and removes the socket (journald gone).
    pub fn gone(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        drop(self.socket.take());
        std::fs::remove_file(&self.path).unwrap();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Receives one datagram: an entry as its payload, or an empty one carrying a memfd that
/// holds it. `None` on the read timeout.
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> Option<Entry> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = match recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    ) {
        Ok(got) => got,
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return None,
        Err(e) => panic!("receiving an entry: {e}"),
    };
    assert!(
        !got.flags.contains(rustix::net::ReturnFlags::TRUNC),
        "datagram of {} bytes cut",
        got.bytes
    );
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = message {
            fds.extend(passed);
        }
    }
    if fds.is_empty() {
        assert!(got.bytes > 0, "an empty datagram without a memfd");
        let raw = buf[..got.bytes].to_vec();
        return Some(Entry {
            fields: decode(&raw),
            raw,
            memfd: false,
        });
    }
    assert_eq!(got.bytes, 0, "a datagram with both data and a descriptor");
    assert_eq!(fds.len(), 1, "one descriptor");
    let fd = fds.remove(0);
    let seals = rustix::fs::fcntl_get_seals(&fd).expect("a memfd");
    use rustix::fs::SealFlags;
    assert!(
        seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL),
        "sealed: {seals:?}"
    );
    let mut file = File::from(fd);
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    Some(Entry {
        fields: decode(&data),
        raw: Vec::new(),
        memfd: true,
    })
}

/// The daemon on a TCP and a UDP listener with `extra` options, sending to `receiver`;
/// returns it and its UDP address.
fn daemon(dir: &Path, receiver: &Receiver, extra: &[&str]) -> (Daemon, std::net::SocketAddr) {
    let target = receiver.target();
    let d = DaemonBuilder::new(dir)
        .args(["--listen", "127.0.0.1:0", "--listen-udp", "127.0.0.1:0"])
        .args(["--output", &target])
        .args(extra)
        .output(&target)
        .start();
    let udp = d.log.udp_addr();
    (d, udp)
}

/// Every field, for a parsed RFC 5424 message (TCP), a parsed RFC 3164 one (UDP, so from
/// another listener), a line from a unix stream client (its credentials and socket), a plain
/// line with terminal escapes and a BEL, and an octet-framed
/// message with LFs in it: the sender's priority, facility, tag, host and time when parsed,
/// else info, `syslog_facility` and `logsinkd`; peer and listener always. Values with control
/// bytes go in the binary-safe form, byte for byte.
#[test]
fn entries_carry_every_field() {
    let dir = temp_dir();
    let receiver = Receiver::running(dir.path());
    let unix = dir.path().join("in.sock");
    let unix_arg = unix.to_str().unwrap();
    let options = [
        "--parse",
        "syslog",
        "--framing",
        "auto",
        "--syslog-facility",
        "local3",
        "--listen-unix",
        unix_arg,
    ];
    let (mut d, udp) = daemon(dir.path(), &receiver, &options);

    let mut tcp = TcpStream::connect(d.addr).unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    tcp.write_all(b"<165>1 2026-12-01T17:20:01.5+01:00 web-3 app 42 ID7 [a@1 k=\"v\"] hi there\n")
        .unwrap();
    tcp.write_all(b"plain \x1b[31mred\x1b[0m \x07 end\n")
        .unwrap();
    drop(tcp);
    let entries = receiver.wait_for(2);

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"<13>Dec  1 16:19:59 db-1 cron[7]: via udp", udp)
        .unwrap();
    let udp_peer = client.local_addr().unwrap().to_string();
    let mut octet = TcpStream::connect(d.addr).unwrap();
    let octet_peer = octet.local_addr().unwrap().to_string();
    let msg = b"<11>Dec  1 16:20:00 web-3 trace: line one\nline two\n\tline three";
    write!(octet, "{} ", msg.len()).unwrap();
    octet.write_all(msg).unwrap();
    drop(octet);
    let mut local = std::os::unix::net::UnixStream::connect(&unix).unwrap();
    local.write_all(b"over a unix socket\n").unwrap();
    drop(local);
    let entries: Vec<Entry> = [entries, receiver.wait_for(5)[2..].to_vec()].concat();

    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let tcp_listener = d.addr.to_string();
    assert_eq!(
        entries[0].map(),
        expect(&[
            ("MESSAGE", "hi there"),
            ("PRIORITY", "5"),
            ("SYSLOG_FACILITY", "20"),
            ("SYSLOG_IDENTIFIER", "app"),
            ("SYSLOG_HOSTNAME", "web-3"),
            ("SYSLOG_TIMESTAMP", "2026-12-01T17:20:01.5+01:00"),
            ("LOGSINKD_PEER", &peer),
            ("LOGSINKD_LISTENER", &tcp_listener),
        ])
    );
    assert_eq!(entries[0].fields.len(), 8, "each field once");

    let plain = &entries[1];
    assert_eq!(plain.get("MESSAGE"), b"plain \x1b[31mred\x1b[0m \x07 end");
    assert!(
        plain
            .raw
            .windows(b"MESSAGE\n".len())
            .any(|w| w == b"MESSAGE\n"),
        "control bytes in the binary-safe form: {:?}",
        String::from_utf8_lossy(&plain.raw)
    );
    let mut fields = plain.map();
    fields.remove("MESSAGE");
    assert_eq!(
        fields,
        expect(&[
            ("PRIORITY", "6"),
            ("SYSLOG_FACILITY", "19"),
            ("SYSLOG_IDENTIFIER", "logsinkd"),
            ("LOGSINKD_PEER", &peer),
            ("LOGSINKD_LISTENER", &tcp_listener),
        ])
    );

    let by_udp = entries
        .iter()
        .find(|e| e.text("LOGSINKD_PEER") == udp_peer)
        .expect("the UDP message");
    assert_eq!(
        by_udp.map(),
        expect(&[
            ("MESSAGE", "via udp"),
            ("PRIORITY", "5"),
            ("SYSLOG_FACILITY", "1"),
            ("SYSLOG_IDENTIFIER", "cron"),
            ("SYSLOG_HOSTNAME", "db-1"),
            ("SYSLOG_TIMESTAMP", "Dec  1 16:19:59"),
            ("LOGSINKD_PEER", &udp_peer),
            ("LOGSINKD_LISTENER", &format!("udp {udp}")),
        ])
    );
    let multi = entries
        .iter()
        .find(|e| e.text("LOGSINKD_PEER") == octet_peer)
        .expect("the octet-framed message");
    assert_eq!(multi.get("MESSAGE"), b"line one\nline two\n\tline three");
    assert_eq!(multi.text("SYSLOG_IDENTIFIER"), "trace");
    assert_eq!(multi.text("PRIORITY"), "3");
    let by_unix = entries
        .iter()
        .find(|e| e.text("MESSAGE") == "over a unix socket")
        .expect("the unix client's line");
    assert_eq!(
        by_unix.text("LOGSINKD_LISTENER"),
        format!("unix {unix_arg}")
    );
    let unix_peer = by_unix.text("LOGSINKD_PEER");
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    assert!(
        unix_peer.starts_with("unix:pid=") && unix_peer.ends_with(&format!(",uid={uid}")),
        "{by_unix:?}"
    );
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(receiver.entries().len(), 5, "nothing else sent");
}

/// A client cannot forge fields or another record: LFs, `NAME=value` text and a binary-form
/// field in a message (an octet frame may hold LFs), `=` in a plain value, all stay inside their
/// own fields, byte for byte; each message is one entry with each field once.
#[test]
fn forged_fields_stay_inside_their_field() {
    let dir = temp_dir();
    let receiver = Receiver::running(dir.path());
    let options = ["--parse", "syslog", "--framing", "octet"];
    let (mut d, _) = daemon(dir.path(), &receiver, &options);
    let forged = b"x\nPRIORITY=0\nSYSLOG_IDENTIFIER=sshd\nMESSAGE\n\x05\0\0\0\0\0\0\0owned";
    let messages: [&[u8]; 4] = [
        forged,
        b"<13>Dec  1 16:19:59 web-3 app: hi\nPRIORITY=0",
        b"<13>Dec  1 16:19:59 host tag: \nLOGSINKD_PEER=10.0.0.1:1\n",
        b"SYSLOG_IDENTIFIER=a=b",
    ];
    let mut client = TcpStream::connect(d.addr).unwrap();
    for m in messages {
        write!(client, "{} ", m.len()).unwrap();
        client.write_all(m).unwrap();
    }
    let peer = client.local_addr().unwrap().to_string();
    drop(client);
    let entries = receiver.wait_for(4);
    assert_eq!(entries[0].get("MESSAGE"), forged.as_slice());
    assert_eq!(entries[0].text("PRIORITY"), "6");
    assert_eq!(entries[0].text("SYSLOG_IDENTIFIER"), "logsinkd");
    assert_eq!(entries[1].get("MESSAGE"), b"hi\nPRIORITY=0");
    assert_eq!(entries[1].get("SYSLOG_IDENTIFIER"), b"app");
    assert_eq!(entries[1].text("PRIORITY"), "5");
    // The LF ending a frame is dropped by the framer, as rsyslog's forwarding adds one.
    assert_eq!(entries[2].get("MESSAGE"), b"\nLOGSINKD_PEER=10.0.0.1:1");
    assert!(
        entries[3]
            .raw
            .starts_with(b"MESSAGE=SYSLOG_IDENTIFIER=a=b\n")
    );
    assert_eq!(entries[3].text("SYSLOG_IDENTIFIER"), "logsinkd");
    for e in &entries {
        assert_eq!(e.text("LOGSINKD_PEER"), peer, "{e:?}");
        let names: Vec<&str> = e.fields.iter().map(|(n, _)| n.as_str()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "each field once: {names:?}");
    }
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(receiver.entries().len(), 4);
}

/// A record bigger than a datagram may be (the send buffer caps it: 416 KiB by default, never
/// more than 16 MiB, the largest `max_line`) goes in a sealed memfd, whole; the records around
/// it go as datagrams, all in order.
#[test]
fn record_over_the_datagram_size_goes_by_memfd() {
    let dir = temp_dir();
    let receiver = Receiver::running(dir.path());
    let (mut d, _) = daemon(dir.path(), &receiver, &["--max-line", "16M"]);
    let mut big = vec![b'x'; 16 << 20];
    big[1000] = 0;
    big[5 << 20] = b'\r';
    let mut data = b"before\n".to_vec();
    data.extend_from_slice(&big);
    data.extend_from_slice(b"\nafter\n");
    send(d.addr, &data);
    let entries = receiver.wait_for(3);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].text("MESSAGE"), "before");
    assert!(!entries[0].memfd);
    assert!(entries[1].memfd, "the big one by memfd");
    assert!(
        entries[1].get("MESSAGE") == big.as_slice(),
        "whole, byte for byte"
    );
    assert_eq!(entries[1].text("PRIORITY"), "6");
    assert_eq!(entries[2].text("MESSAGE"), "after");
    assert!(!entries[2].memfd);
    assert_eq!(d.stop().code(), Some(0));
}

/// journald goes away and comes back (its socket removed, then bound anew): the daemon keeps
/// running, holds the records (up to its high-water mark, then TCP makes the client wait),
/// logs the failure once, reconnects with back-off and delivers every record, in order, once.
#[test]
fn journal_gone_and_back_loses_nothing() {
    let dir = temp_dir();
    let receiver = Receiver::running(dir.path());
    let target = receiver.target();
    let (mut d, _) = daemon(dir.path(), &receiver, &[]);
    send(d.addr, numbered_lines(0..10).as_bytes());
    receiver.wait_for(10);
    let before: Vec<String> = receiver
        .entries()
        .iter()
        .map(|e| e.text("MESSAGE"))
        .collect();
    receiver.gone();

    // 120,000 lines of 100 bytes: more than the 8 MiB the daemon may hold.
    let count = 120_000;
    let (client, writer) = stream_numbered(d.addr, count);
    wait_until("the daemon to stop reading", DEADLINE * 3, || {
        daemon_stopped_reading(d.addr, client).then_some(())
    });
    d.log.wait_for(&format!("sending to {target}"));
    let receiver = Receiver::running(dir.path());
    writer.join().unwrap();
    d.log.wait_for("takes data again");
    let entries = receiver.wait_for(count as usize);
    assert_eq!(d.stop_within(Duration::from_secs(10)).code(), Some(0));
    let lines: Vec<String> = entries.iter().map(|e| e.text("MESSAGE")).collect();
    assert_numbered(&before, 0..10, Layout::Raw);
    assert_numbered(&lines, 0..count, Layout::Raw);
    assert_eq!(
        d.log.matching(&format!("sending to {target}")).len(),
        1,
        "the failure logged once per episode: {:#?}",
        d.log.all()
    );
    assert!(
        d.log.matching("connecting to").is_empty(),
        "{:#?}",
        d.log.all()
    );
}

/// journald stalled (its socket's queue full, nothing read): the loop does not block on it:
/// SIGUSR1 is answered, another client's line is taken; SIGTERM then waits for journald
/// rather than dropping anything, and once it reads again everything arrives, in order, and
/// the daemon exits 0.
#[test]
fn stalled_journal_never_blocks_the_loop() {
    let dir = temp_dir();
    let receiver = Receiver::bind(dir.path());
    let (mut d, _) = daemon(dir.path(), &receiver, &[]);
    let count = 3000;
    let (_, writer) = stream_numbered(d.addr, count);
    writer.join().unwrap();
    d.wait_for_stats(&format!("lines={count}"));
    d.log.wait_for("journald takes no more for now");
    let before = d.log.matching("stats:").len();
    d.signal(libc::SIGUSR1);
    wait_until("a prompt answer to SIGUSR1", Duration::from_secs(3), || {
        (d.log.matching("stats:").len() > before).then_some(())
    });
    let other = send(d.addr, b"another client\n").to_string();
    d.wait_for_stats(&format!("lines={}", count + 1));

    d.signal(libc::SIGTERM);
    // The drain starts by closing the listeners.
    wait_until("the drain to start", DEADLINE, || {
        TcpStream::connect(d.addr).is_err().then_some(())
    });
    let receiver = receiver.start();
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let entries = receiver.wait_for(count as usize + 1);
    assert_eq!(entries.len(), count as usize + 1);
    let (mine, others): (Vec<&Entry>, Vec<&Entry>) = entries
        .iter()
        .partition(|e| e.text("LOGSINKD_PEER") != other);
    let lines: Vec<String> = mine.iter().map(|e| e.text("MESSAGE")).collect();
    assert_numbered(&lines, 0..count, Layout::Raw);
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].text("MESSAGE"), "another client");
}

/// Nothing at the path, or a stream socket there: the start fails, naming the target.
#[test]
fn journal_target_must_be_a_datagram_socket() {
    let dir = temp_dir();
    let missing = dir.path().join("nothing.sock");
    let stream = dir.path().join("stream.sock");
    let _listener = UnixListener::bind(&stream).unwrap();
    for (path, needle) in [
        (&missing, "No such file or directory"),
        (&stream, "is a stream socket"),
    ] {
        let target = format!("journal:{}", path.display());
        let out = Command::new(BIN)
            .args([
                "--foreground",
                "--listen",
                "127.0.0.1:0",
                "--output",
                &target,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!("connecting to {target}")) && stderr.contains(needle),
            "{stderr}"
        );
    }
}

/// `--check-config` shows a journal output as written; `journal:` without a path is refused.
#[test]
fn check_config_shows_journal() {
    for target in ["journal", "journal:/run/other/socket"] {
        let out = Command::new(BIN)
            .args(["--check-config", "--output", target])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(
            stdout.contains(&format!("output = \"{target}\"")),
            "{stdout}"
        );
    }
    let out = Command::new(BIN)
        .args(["--check-config", "--output", "journal:"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("expected a socket path after `journal:`"),
        "{stderr}"
    );
}
