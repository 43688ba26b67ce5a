//! Serving the counters to Prometheus (`metrics_listen`): `GET /metrics` on a TCP socket of
//! its own, in the same event loop as everything else (no thread), answered with the
//! exposition text (`exposition.rs`) over the little HTTP of `http.rs`.
//!
//! A metrics client can cost the log clients and the output nothing but a bounded sliver of
//! the loop. Each exchange is one request and one response, then the connection closes. At
//! most `MAX_EXCHANGES` are open (a cap of their own, not `max_connections`); a client over it
//! is accepted and closed at once (with RST, so no TIME_WAIT is left behind). The request head
//! is read into a fixed `REQUEST_MAX` buffer, nothing beyond; it must be complete within
//! `REQUEST_TIMEOUT` of the accept, and the response written (non-blocking, as far as the
//! client reads) within `RESPONSE_TIMEOUT`, or the connection is dropped. After the response
//! logsinkd shuts its side down and reads (and drops) what the client still sends, up to
//! `LINGER_MAX` bytes for at most `LINGER`, before it closes: closing a socket with unread
//! bytes sends a reset, which could destroy the response (a 431 to a client whose head was
//! too large) before the client has read it. Accepting takes at
//! most `ACCEPT_BUDGET` clients per loop iteration, so a flood of connects cannot starve the
//! rest of the loop either.

pub mod exposition;
pub mod http;

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::accept_gate::is_client_side;
use crate::diag::{error, info};
use http::Answer;

/// Metrics connections open at most; Prometheus scrapes over one at a time (two for an HA
/// pair), so this leaves room for people with curl.
pub const MAX_EXCHANGES: usize = 16;
/// The request buffer: Prometheus's request head is under 500 bytes.
pub const REQUEST_MAX: usize = 4096;
/// How long a client has to send its request head, from the accept.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to read the response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after its response a connection is kept for the client to close it first.
pub const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and dropped after the response at most (what the client sent beyond the head).
const LINGER_MAX: usize = 64 * 1024;
/// Clients accepted per loop iteration at most; the rest wait for the next one.
const ACCEPT_BUDGET: usize = 64;

/// One request and its response.
struct Exchange {
    stream: TcpStream,
    /// The request head so far.
    request: Box<[u8; REQUEST_MAX]>,
    len: usize,
    state: State,
    /// When the connection is dropped if the exchange is not over.
    deadline: Instant,
}

/// Where an exchange is.
enum State {
    /// Reading the request head.
    Reading,
    /// Writing the response: the bytes and how many are written.
    Writing(Vec<u8>, usize),
    /// The response is written and this side shut down: dropping what the client still
    /// sends (this many bytes so far) until it closes.
    Lingering(usize),
}

/// What an exchange's event left.
enum Step {
    /// Waiting for more of the request, or for room to write the response.
    Wait,
    /// Done (response written), or the client is gone: close.
    Close,
}

/// The metrics listener and its exchanges, under tokens from `first` on: the listener, then
/// `MAX_EXCHANGES` for the exchanges.
pub struct MetricsServer {
    listener: TcpListener,
    first: usize,
    exchanges: Slab<Exchange>,
    /// Clients may wait to be accepted (the accept budget ran out): accept on the next turn.
    pending: bool,
    /// An accept error episode is on (logged once).
    failing: bool,
}

impl MetricsServer {
    /// Registers `listener` under `Token(first)`; exchanges take the next `MAX_EXCHANGES`.
    pub fn new(
        mut listener: TcpListener,
        registry: &Registry,
        first: usize,
    ) -> io::Result<MetricsServer> {
        registry.register(&mut listener, Token(first), Interest::READABLE)?;
        Ok(MetricsServer {
            listener,
            first,
            exchanges: Slab::with_capacity(MAX_EXCHANGES),
            // Clients may have connected before registration (socket activation).
            pending: true,
            failing: false,
        })
    }

    /// Tokens this server uses: `first ..= first + MAX_EXCHANGES`.
    pub const TOKENS: usize = MAX_EXCHANGES + 1;

    /// `metrics on http://127.0.0.1:9140/metrics`.
    pub fn serving(&self) -> String {
        match self.listener.local_addr() {
            Ok(addr) => format!("metrics on http://{addr}/metrics"),
            Err(e) => format!("metrics on an unknown address: {e}"),
        }
    }

    /// True while clients may wait to be accepted: the loop should not sleep.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// An event for `token` (one of the `TOKENS` from `first`): the listener's (clients wait: the loop calls
    /// `accept` next), or an exchange's. `render` writes the exposition text, asked only for a
    /// request that gets it.
    pub fn event(&mut self, token: Token, now: Instant, render: impl FnOnce(&mut Vec<u8>)) {
        if token.0 == self.first {
            // Accepted after this iteration's events (`accept`), within its budget.
            self.pending = true;
            return;
        }
        let key = token.0 - self.first - 1;
        // Events can be stale: the exchange may be gone, its key reused (a spurious step
        // costs a WouldBlock).
        let Some(exchange) = self.exchanges.get_mut(key) else {
            return;
        };
        if let Step::Close = exchange.step(now, render) {
            drop(self.exchanges.remove(key));
        }
    }

    /// Accepts up to `ACCEPT_BUDGET` clients (`pending` stays set if more may wait). Over
    /// `MAX_EXCHANGES`, a client is closed at once.
    pub fn accept(&mut self, registry: &Registry, now: Instant) {
        if !self.pending {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((stream, _)) => self.add(stream, registry, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.pending = false;
                    if std::mem::take(&mut self.failing) {
                        info!("accepting metrics clients again");
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted || is_client_side(&e) => {}
                Err(e) => {
                    // EMFILE and the like: the next client's connect (a new event) tries
                    // again; metrics clients wait in the backlog meanwhile. No busy loop.
                    self.pending = false;
                    if !std::mem::replace(&mut self.failing, true) {
                        error!("accepting metrics clients: {e}; trying again at the next one");
                    }
                    return;
                }
            }
        }
    }

    fn add(&mut self, mut stream: TcpStream, registry: &Registry, now: Instant) {
        if self.exchanges.len() >= MAX_EXCHANGES {
            // Reset rather than a normal close: a flood leaves no TIME_WAIT sockets behind.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            return;
        }
        let entry = self.exchanges.vacant_entry();
        let token = Token(self.first + 1 + entry.key());
        // Readable for the request, writable for a response the client does not take at
        // once. Registering reports data that came before it.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if registry.register(&mut stream, token, interest).is_err() {
            return;
        }
        entry.insert(Exchange {
            stream,
            request: Box::new([0; REQUEST_MAX]),
            len: 0,
            state: State::Reading,
            deadline: now + REQUEST_TIMEOUT,
        });
    }

    /// When the earliest exchange runs out of time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.exchanges.iter().map(|(_, x)| x.deadline).min()
    }

    /// Drops the exchanges whose time is up: a client that sends its request too slowly or
    /// does not read the response.
    pub fn expire(&mut self, now: Instant) {
        self.exchanges.retain(|_, x| x.deadline > now);
    }
}

impl Exchange {
    /// Reads what came of the request; once it is complete, answers it; writes what the
    /// socket takes of the answer; then lingers.
    fn step(&mut self, now: Instant, render: impl FnOnce(&mut Vec<u8>)) -> Step {
        if let State::Reading = self.state {
            match self.read_request() {
                Ok(Some(answer)) => {
                    let body = match answer {
                        Answer::Metrics => {
                            let mut body = Vec::with_capacity(8192);
                            render(&mut body);
                            body
                        }
                        Answer::Error(status) => http::error_body(status),
                    };
                    self.state = State::Writing(http::response(answer, &body), 0);
                    self.deadline = now + RESPONSE_TIMEOUT;
                }
                Ok(None) => return Step::Wait,
                Err(_) => return Step::Close,
            }
        }
        if let State::Writing(response, sent) = &mut self.state {
            while *sent < response.len() {
                match self.stream.write(&response[*sent..]) {
                    Ok(0) => return Step::Close,
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close,
                }
            }
            // All written: FIN after it; the client closes its side once it has read it.
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return Step::Close;
            }
            self.state = State::Lingering(0);
            self.deadline = self.deadline.min(now + LINGER);
        }
        let State::Lingering(dropped) = &mut self.state else {
            return Step::Wait;
        };
        loop {
            match self.stream.read(&mut self.request[..]) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    *dropped += n;
                    if *dropped > LINGER_MAX {
                        return Step::Close;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    /// Reads until `WouldBlock` or the buffer is full; the answer once the head is complete
    /// (or cannot be), `None` while more is to come. An error when the client is gone.
    fn read_request(&mut self) -> io::Result<Option<Answer>> {
        loop {
            let full = self.len == REQUEST_MAX;
            if full {
                return Ok(http::answer(&self.request[..], true));
            }
            match self.stream.read(&mut self.request[self.len..]) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.len += n;
                    let full = self.len == REQUEST_MAX;
                    if let Some(answer) = http::answer(&self.request[..self.len], full) {
                        return Ok(Some(answer));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What the kernel dropped at a socket (`SO_MEMINFO`'s `SK_MEMINFO_DROPS`): at a TCP listener,
/// connections refused because its backlog was full; at a UDP socket, datagrams dropped
/// because its receive buffer was full. One system call, made per scrape, never per record.
/// `None` if the kernel does not say.
pub fn kernel_drops(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    // Not in the libc crate: asm-generic/socket.h (and x86's, ARM's, MIPS's); SPARC's own.
    #[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
    const SO_MEMINFO: libc::c_int = 55;
    #[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
    const SO_MEMINFO: libc::c_int = 0x39;
    use std::os::fd::AsRawFd;
    // Newer kernels may add fields after the drops: room for them.
    const DROPS: usize = libc::SK_MEMINFO_DROPS as usize;
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which has them, and sets
    // `len` to what it wrote.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let words = len as usize / std::mem::size_of::<u32>();
    (rc == 0 && words > DROPS).then(|| u64::from(info[DROPS]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    /// A client that asks and does not read a response too large for the sockets' buffers
    /// gets what fitted and no more: the exchange waits without blocking, and is dropped at
    /// `RESPONSE_TIMEOUT`.
    #[test]
    fn unread_response_is_dropped_at_the_timeout() {
        const BODY: usize = 64 << 20;
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = MetricsServer::new(listener, poll.registry(), 10).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let start = Instant::now();
        server.accept(poll.registry(), start);
        assert_eq!(server.exchanges.len(), 1);
        let mut rendered = false;
        while !rendered {
            assert!(start.elapsed() < Duration::from_secs(10), "no request came");
            server.event(Token(11), start, |out| {
                out.resize(BODY, b'#');
                rendered = true;
            });
        }
        let exchange = &server.exchanges[0];
        assert!(
            matches!(exchange.state, State::Writing(ref r, sent) if sent < r.len()),
            "the response fitted in the buffers: the test proves nothing"
        );
        assert_eq!(server.next_deadline(), Some(start + RESPONSE_TIMEOUT));
        server.expire(start + RESPONSE_TIMEOUT - Duration::from_millis(1));
        assert_eq!(server.exchanges.len(), 1);
        server.expire(start + RESPONSE_TIMEOUT);
        assert!(server.exchanges.is_empty());
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got);
        assert!(got.len() < BODY, "{} bytes", got.len());
    }

    /// A client over the cap is reset at once; the exchanges within it stay.
    #[test]
    fn over_the_cap_is_reset() {
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = MetricsServer::new(listener, poll.registry(), 10).unwrap();
        let clients: Vec<_> = (0..=MAX_EXCHANGES)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        server.accept(poll.registry(), Instant::now());
        assert_eq!(server.exchanges.len(), MAX_EXCHANGES);
        assert!(!server.pending(), "the backlog was drained");
        let mut last = &clients[MAX_EXCHANGES];
        let err = last.read(&mut [0; 1]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    }
}
