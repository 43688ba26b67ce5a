//! The event loop: one `mio::Poll` drives the listeners, every client connection (kept in a
//! `Slab`), the datagram sockets and the signals. Nothing here blocks except writing the output.
//!
//! Each iteration, top to bottom: wait for events (or the next timer); dispatch them by token
//! (signals noted, listeners accepted from, connections and datagram sockets marked readable);
//! run the timers (accept pauses, idle connections); read in turns (writing the output out
//! every `FLUSH_AT`); write out what the iteration recorded; act on the signals. Readiness is
//! edge-triggered, so a connection stays on the `ready` queue until a read returns
//! `WouldBlock`; a connection that still has data after its turn (`READ_BUDGET` reads) goes to
//! the back of the queue, so one fast client cannot starve the others. While the output is
//! `full` (its backlog at `HIGH_WATER`: disk full, syslog receiver gone) nothing is read: the
//! data waits in the kernel and TCP flow control slows the clients down, instead of logsinkd
//! dropping it.
//!
//! What has its own state lives in its own file: when to accept (`accept_gate.rs`), what a
//! listener accepts (`listener.rs`, `connection.rs`), who may send and the log of those turned
//! away (`access.rs`), PROXY headers (`proxy_header.rs`), datagram sockets (`datagram.rs`),
//! idle timers (`idle.rs`), the output and its failure episodes (`output.rs`), framing
//! (`recorder.rs`). The server owns the counters (`stats.rs`). The metrics endpoint
//! (`metrics/`), when configured, is served by this same loop under tokens of its own, with a
//! bounded share of each iteration.
//!
//! A TCP client outside its listener's `allow` (or, on a PROXY listener, from outside
//! `proxy_from`) is reset right after accept, before it is a connection: it takes no slot.
//! A datagram from outside `allow` is dropped unrecorded.
//!
//! SIGTERM (or SIGINT) starts the drain, which runs in this same loop, with the same turns,
//! writes and back-pressure: listeners close, each connection is read up to what its socket
//! held at that moment (then closed, its partial line recorded), each datagram socket until it
//! is empty (for at most `DATAGRAM_DRAIN`), all within `SHUTDOWN_READ`; then the output is
//! written out and synced.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::accept_gate::{AcceptGate, is_client_side};
use crate::access::{Admission, Turned, TurnedAwayLog};
use crate::connection::{Handshake, Status, Stream, TurnedAway, reset_on_close};
use crate::connections::{Connections, HEADER_TIMEOUT};
use crate::datagram::{DATAGRAM_BUDGET, Datagrams, Received};
use crate::diag::{error, info, warning};
use crate::input::Input;
use crate::listen::Listeners;
use crate::listener::StreamListeners;
use crate::metrics::MetricsServer;
use crate::metrics::exposition::{self, ListenerInfo, View};
use crate::notify::Notifier;
use crate::output::{FLUSH_AT, Output};
use crate::proxy_header::HeaderReader;
use crate::recorder::{Framing, Recorder};
use crate::sink::{Sink, Writer};
use crate::stats::Stats;
use crate::tls::{Refusals, TlsServer, Verdict};

/// Most listening sockets, stream and datagram together (each needs its own token below the
/// clients').
pub const MAX_LISTENERS: usize = 64;
const SIGNALS: Token = Token(0);
/// The output's socket (syslog), watched for writability while its receiver is busy.
const OUTPUT: Token = Token(1);
/// The file output's writer thread, done with a batch (`sink/writer.rs`): the flush at the
/// end of the iteration takes the outcome and hands over the next.
const WRITER: Token = Token(2);
/// Stream listeners' tokens come first, then the datagram sockets'.
const FIRST_LISTENER: usize = 3;
/// The metrics listener's token, followed by its exchanges' (`MetricsServer::TOKENS` in all).
const METRICS: usize = FIRST_LISTENER + MAX_LISTENERS;
/// Client tokens are slab keys offset by this; see `client_token` / `client_key`.
const FIRST_CLIENT: usize = METRICS + MetricsServer::TOKENS;

fn client_token(key: usize) -> Token {
    Token(key + FIRST_CLIENT)
}

fn client_key(token: Token) -> usize {
    token.0 - FIRST_CLIENT
}

/// The one read buffer all connections share: idle connections hold no read buffer.
const READ_BUF: usize = 64 * 1024;
/// Reads one connection gets per turn (up to 4 MiB) before the next ready connection is
/// served. Turns much shorter than that cost throughput with several busy clients: each switch
/// leaves the other sockets' receive windows closed longer, and on loopback the window updates
/// then make this process do the senders' transmit work (16 clients: 0.8x of the reference
/// server with 16 reads per turn, 0.9-1.0x with 64).
const READ_BUDGET: usize = 64;
/// Clients one listener may turn away per loop iteration (`allow`, `proxy_from`). They take
/// no slot, so the connection cap does not bound them: without this, a flood of denied
/// clients would keep the loop accepting and resetting them, and away from everything else.
/// The rest wait in the backlog for the next iteration.
const TURN_AWAY_BUDGET: usize = 1024;
/// Events taken per poll.
const EVENTS: usize = 1024;
/// How long the drain at shutdown may read at most. What the sockets held at the stop signal
/// normally takes milliseconds (256 streaming clients: well under a second in a debug build);
/// this bound only keeps the exit well inside systemd's TimeoutStopSec (10 s in the shipped
/// unit, with the 5 s a failing output then gets) when the output cannot keep up.
const SHUTDOWN_READ: Duration = Duration::from_secs(2);

/// What a TLS connection may read at shutdown beyond what its socket held at the stop signal:
/// rustls holds at most a record (16 KiB and its overhead) and 16 KiB of decrypted plaintext.
const TLS_DRAIN_SLACK: usize = 34 * 1024;

/// Settings the loop needs beyond its resources.
pub struct Settings {
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    /// The TLS listeners' certificate, key and client checks, loaded (before the privilege
    /// drop); `None` without TLS listeners.
    pub tls: Option<TlsServer>,
    /// How long a TLS client may take to complete its handshake.
    pub tls_handshake_timeout: Duration,
    /// Most TLS handshakes in progress at once: at the cap, TLS listeners stop accepting
    /// (clients wait in the backlog) until one completes or fails.
    pub tls_max_handshakes: usize,
    /// The output as named in messages.
    pub target: String,
}

/// A `Recorder` over the server's framing, output and the counters of listener `$listener`
/// (by index), each borrowed on its own so the connections stay free to borrow too.
macro_rules! recorder {
    ($server:expr, $listener:expr) => {
        Recorder::new(
            &mut $server.framing,
            $server.output.sink(),
            &mut $server.stats.listeners[$listener],
        )
    };
}

pub struct Server {
    poll: Poll,
    signals: Signals,
    /// Stream listeners; closed when the drain starts.
    listeners: StreamListeners,
    /// The connection cap and accept-error episodes.
    gate: AcceptGate,
    /// Datagram sockets; their tokens follow the stream listeners'.
    datagrams: Datagrams,
    /// Open connections, their ready queue and idle timers.
    conns: Connections,
    output: Output,
    framing: Framing,
    stats: Stats,
    /// The metrics endpoint, if `metrics_listen` is set; gone once the drain starts.
    metrics: Option<MetricsServer>,
    /// Each listener as the metrics name it, by index (as `stats.listeners`).
    listener_info: Vec<ListenerInfo>,
    /// Stream listeners at start: datagram socket `i`'s counters are at `streams + i` (the
    /// stream listeners close at the drain, the datagram sockets are read on).
    streams: usize,
    read_buf: Box<[u8]>,
    /// The sender of the datagram in `read_buf`, as written in records.
    sender: Vec<u8>,
    /// When the stop signal was taken: the drain is on.
    draining_since: Option<Instant>,
    notifier: Notifier,
    /// Clients turned away by `allow`: each address logged once, then summarized.
    denied: TurnedAwayLog,
    /// Connections refused on PROXY listeners: the same.
    refused: TurnedAwayLog,
    /// Listeners that used up their `TURN_AWAY_BUDGET` before their backlog ran empty:
    /// accepted from again next iteration (readiness is edge-triggered, no event will come).
    accept_again: Vec<usize>,
    /// The TLS configuration new connections get (reloaded by SIGHUP).
    tls: Option<TlsServer>,
    /// Refused TLS clients: each address logged at most once a minute.
    tls_refusals: Refusals,
    /// `tls_max_handshakes`.
    max_handshakes: usize,
    /// The TLS listeners stopped accepting at `max_handshakes` (logged once per episode):
    /// they accept again when a handshake ends.
    handshakes_capped: bool,
}

/// Why the loop ended.
pub struct Summary {
    /// Bytes accepted from clients that could not be written before exit.
    pub unwritten: usize,
}

impl Server {
    /// Registers everything with a new `Poll`. `listeners` carry the name used in messages;
    /// their metrics listener, if any, is served too.
    pub fn new(
        mut listeners: Listeners,
        mut sink: Sink,
        max_line: usize,
        settings: Settings,
    ) -> Result<Server> {
        let poll = Poll::new().context("creating the poll instance")?;
        let registry = poll.registry();
        if sink.wants_writer() {
            let waker = Waker::new(registry, WRITER).context("creating the writer's waker")?;
            match Writer::start(Arc::new(waker)) {
                Ok(writer) => sink.use_writer(writer),
                // Seen only where threads are forbidden; writing on this thread works too.
                Err(e) => {
                    warning!("cannot start the writer thread, writing on the main thread: {e}")
                }
            }
        }
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])
            .context("installing signal handlers")?;
        registry.register(&mut signals, SIGNALS, Interest::READABLE)?;
        // Each kind of socket becomes a `Listener` or a `DatagramSocket`; the loop serves
        // them all alike.
        let metrics = listeners
            .metrics
            .take()
            .map(|l| MetricsServer::new(mio::net::TcpListener::from_std(l), registry, METRICS))
            .transpose()
            .context("registering the metrics listener")?;
        let (streams, sockets) = listeners.into_parts();
        let streams = StreamListeners::new(streams, registry, FIRST_LISTENER)?;
        let datagrams = Datagrams::new(sockets, registry, FIRST_LISTENER + streams.len())?;
        let stream_count = streams.len();
        let listener_info: Vec<ListenerInfo> = streams
            .metric_info()
            .chain(datagrams.metric_info())
            .collect();
        let mut stats = Stats::new(listener_info.len());
        for (counters, name) in stats
            .listeners
            .iter_mut()
            .zip(streams.names().chain(datagrams.names()))
        {
            counters.name = name;
        }
        Ok(Server {
            accept_again: Vec::new(),
            denied: TurnedAwayLog::new(Turned::Denied),
            refused: TurnedAwayLog::new(Turned::Refused),
            listeners: streams,
            gate: AcceptGate::new(settings.max_connections),
            datagrams,
            signals,
            conns: Connections::new(settings.idle_timeout, settings.tls_handshake_timeout),
            tls: settings.tls,
            tls_refusals: Refusals::new(),
            max_handshakes: settings.tls_max_handshakes,
            handshakes_capped: false,
            output: Output::new(sink, settings.target, OUTPUT),
            framing: Framing::new(max_line),
            stats,
            metrics,
            listener_info,
            streams: stream_count,
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            sender: Vec::new(),
            draining_since: None,
            notifier: Notifier::from_env(),
            poll,
        })
    }

    /// One line per socket, naming the address actually bound (port 0 resolved):
    /// `listening on 127.0.0.1:5140`, `listening on udp 127.0.0.1:5140`.
    pub fn listening(&self) -> Vec<String> {
        let streams = self.listeners.listening();
        let metrics = self.metrics.as_ref().map(MetricsServer::serving);
        streams
            .chain(self.datagrams.listening())
            .chain(metrics)
            .collect()
    }

    /// Tells systemd the daemon is ready.
    pub fn notify_ready(&mut self) {
        self.notifier.ready(&self.stats.status());
    }

    /// Runs until SIGTERM or SIGINT, then drains and shuts down cleanly.
    pub fn run(mut self) -> Result<Summary> {
        let mut events = Events::with_capacity(EVENTS);
        let mut notify_at = self.notifier.tick(Instant::now(), &self.stats);
        loop {
            let timeout = self.poll_timeout(Instant::now(), notify_at);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted epoll_wait; the Signals source reports it as an event.
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("waiting for events");
            }
            let now = Instant::now();
            let (mut reopen, mut stop) = (false, false);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.take_signals(&mut reopen, &mut stop),
                    OUTPUT => self.output.wake(),
                    WRITER => {}
                    Token(t) if t < METRICS => self.listener_ready(t - FIRST_LISTENER, now),
                    Token(t) if t < FIRST_CLIENT => self.metrics_event(Token(t), now),
                    token => self.conns.mark_readable(client_key(token)),
                }
            }
            if let Some(metrics) = &mut self.metrics {
                // Clients left waiting by the accept budget of an earlier iteration.
                metrics.accept(self.poll.registry(), now);
            }
            // Listeners that turned away their budget of clients in an earlier iteration.
            for index in std::mem::take(&mut self.accept_again) {
                self.listener_ready(index, now);
            }
            self.run_timers(now);
            self.read_datagrams(now);
            self.read_ready(now);
            self.flush_output(now);
            self.output.housekeep(now);
            if reopen {
                self.reopen();
            }
            if stop && self.draining_since.is_none() {
                self.start_drain(now);
            }
            if self.drain_over(now) {
                return Ok(self.shutdown());
            }
            notify_at = self.notifier.tick(now, &self.stats);
        }
    }

    /// How long `poll` may wait: not at all while sockets have unread data (unless the
    /// output is full), else until the earliest timer.
    fn poll_timeout(&self, now: Instant, notify_at: Option<Instant>) -> Option<Duration> {
        let unread =
            self.conns.any_ready() || self.datagrams.unread() || !self.accept_again.is_empty();
        let metrics = self.metrics.as_ref();
        if (unread && !self.output.full()) || metrics.is_some_and(MetricsServer::pending) {
            return Some(Duration::ZERO);
        }
        [
            metrics.and_then(MetricsServer::next_deadline),
            self.gate.paused_until(),
            self.output.retry_at(),
            self.output.housekeep_at(),
            self.conns.next_idle(),
            self.conns.next_header_deadline(),
            self.conns.next_handshake_deadline(),
            self.denied.summary_at(),
            self.refused.summary_at(),
            self.datagrams.drain_deadline(),
            self.draining_since.map(|since| since + SHUTDOWN_READ),
            notify_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    /// Signals are only noted here and acted on after this iteration's reads, in the loop.
    /// `pending()` coalesces repeats, so two quick HUPs may be one reopen: reopen is idempotent.
    fn take_signals(&mut self, reopen: &mut bool, stop: &mut bool) {
        for signal in self.signals.pending() {
            match signal {
                SIGHUP => *reopen = true,
                SIGTERM | SIGINT => *stop = true,
                SIGUSR1 => {
                    info!("stats: {}", self.stats);
                    // Per listener, only those that turned someone away.
                    for l in &self.stats.listeners {
                        if l.denied + l.proxy_refused + l.tls_handshake_failures > 0 {
                            let tls = if l.name.starts_with("tls ") {
                                format!(" tls_handshake_failures={}", l.tls_handshake_failures)
                            } else {
                                String::new()
                            };
                            info!(
                                "stats of {}: denied={} proxy_refused={}{tls}",
                                l.name, l.denied, l.proxy_refused
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A listening socket is readable: accept on a stream listener, note a datagram socket's
    /// datagrams. Not while draining: the listeners are closed, and a datagram socket that ran
    /// empty is done.
    fn listener_ready(&mut self, index: usize, now: Instant) {
        if self.draining_since.is_some() {
            return;
        }
        match index.checked_sub(self.listeners.len()) {
            None => self.accept_all(index, now),
            Some(socket) => self.datagrams.mark_readable(socket),
        }
    }

    /// An event for the metrics endpoint: its listener or one of its exchanges. The text is
    /// rendered only for a request that gets it, from the counters as they are.
    fn metrics_event(&mut self, token: Token, now: Instant) {
        let Some(metrics) = &mut self.metrics else {
            return; // stale: the endpoint closed at the drain
        };
        let (stats, info, output) = (&self.stats, &self.listener_info, &self.output);
        let (listeners, datagrams, streams) = (&self.listeners, &self.datagrams, self.streams);
        metrics.event(token, now, |out| {
            let kernel_drops: Vec<Option<u64>> = (0..info.len())
                .map(|i| match i.checked_sub(streams) {
                    None => listeners.kernel_drops(i),
                    Some(socket) => datagrams.kernel_drops(socket),
                })
                .collect();
            let view = View {
                stats,
                listeners: info,
                kernel_drops: &kernel_drops,
                backlog: output.backlog(),
                open_files: output.open_files(),
            };
            exposition::render(out, &view);
        });
    }

    /// Accepts until `WouldBlock`, the connection cap, or an error that calls for a pause.
    /// A client outside `allow`, or outside `proxy_from` on a PROXY listener, is reset at
    /// once: it never takes a slot; after `TURN_AWAY_BUDGET` of them the listener waits for
    /// the next iteration.
    fn accept_all(&mut self, index: usize, now: Instant) {
        let mut turned_away = 0;
        while self.gate.may_accept(self.conns.len()) {
            if turned_away == TURN_AWAY_BUDGET {
                if !self.accept_again.contains(&index) {
                    self.accept_again.push(index);
                }
                return;
            }
            let (listener, name, input) = self.listeners.get(index);
            let tls = listener.is_tls();
            if tls && self.conns.handshaking() >= self.max_handshakes {
                if !self.handshakes_capped {
                    warning!(
                        "{name}: {} TLS handshakes in progress, the cap (tls_max_handshakes); new \
                         TLS clients wait until one completes",
                        self.conns.handshaking()
                    );
                    self.handshakes_capped = true;
                }
                return;
            }
            match listener.accept() {
                Ok((stream, peer, addr)) => {
                    let admission = addr.map_or(Admission::Serve, |a| input.access.admit(a.ip()));
                    let handshake = match (admission, addr) {
                        (Admission::TurnAway(kind, why), Some(from)) => {
                            reset_on_close(&stream);
                            drop(stream);
                            let why = why.into();
                            let turned = TurnedAway {
                                kind,
                                listener: index,
                                from,
                                why,
                            };
                            self.turn_away(turned, now);
                            turned_away += 1;
                            continue;
                        }
                        (Admission::ReadHeader, Some(balancer)) => Some(Box::new(Handshake {
                            reader: HeaderReader::default(),
                            balancer,
                            allow: input.access.allow.clone(),
                            listener: index,
                        })),
                        _ => None,
                    };
                    let input = input.clone();
                    let stream = match (stream, &self.tls) {
                        (Stream::Tcp(tcp), Some(server)) if tls => match server.accept(tcp) {
                            Ok(stream) => Stream::Tls(Box::new(stream)),
                            Err(e) => {
                                // rustls fails a new connection only on a bad configuration,
                                // which loading refused already.
                                self.stats.errors += 1;
                                error!("{name}: starting a TLS connection: {e}");
                                continue;
                            }
                        },
                        (stream, _) => stream,
                    };
                    self.add_connection(stream, peer, input, index, handshake, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.gate.on_drained();
                    if tls && std::mem::take(&mut self.handshakes_capped) {
                        info!("{name}: below the cap on TLS handshakes again; no client waits");
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The client gave up (or its network failed) before we accepted: not ours.
                Err(e) if is_client_side(&e) => {}
                Err(e) => {
                    // Retrying at once would spin: the gate pauses; waiting clients stay
                    // queued in the kernel meanwhile.
                    self.stats.errors += 1;
                    self.gate.on_error(now, name, &e);
                    return;
                }
            }
        }
    }

    fn accept_everywhere(&mut self, now: Instant) {
        for index in 0..self.listeners.len() {
            self.accept_all(index, now);
        }
    }

    /// Adds a client accepted on listener `index`.
    fn add_connection(
        &mut self,
        stream: Stream,
        peer: Box<[u8]>,
        input: Input,
        index: usize,
        handshake: Option<Box<Handshake>>,
        now: Instant,
    ) {
        let registry = self.poll.registry();
        if let Err(e) = self.conns.add(
            stream,
            peer,
            (index, input),
            handshake,
            registry,
            client_token,
            now,
        ) {
            self.stats.errors += 1;
            error!("{e}");
            return;
        }
        let counters = &mut self.stats.listeners[index];
        counters.accepted += 1;
        counters.open += 1;
    }

    /// Counts a client turned away (in total and for its listener) and logs it the first
    /// time for its address.
    fn turn_away(&mut self, turned: TurnedAway, now: Instant) {
        let TurnedAway {
            kind,
            listener,
            from,
            why,
        } = turned;
        let counters = &mut self.stats.listeners[listener];
        let name = &counters.name;
        let (log, verb) = match kind {
            Turned::Denied => {
                counters.denied += 1;
                (&mut self.denied, "denied")
            }
            Turned::Refused => {
                counters.proxy_refused += 1;
                (&mut self.refused, "refused")
            }
        };
        let stream = listener < self.streams;
        log.note(now, from.ip(), || {
            let what = if stream {
                "connection reset"
            } else {
                "datagram dropped"
            };
            format!("{name}: {verb} {from}: {why}; {what}")
        });
    }

    fn run_timers(&mut self, now: Instant) {
        if self.gate.resume_due(now) {
            self.accept_everywhere(now);
        }
        self.close_idle(now);
        if let Some(metrics) = &mut self.metrics {
            metrics.expire(now);
        }
        self.close_headerless(now);
        self.close_handshakeless(now);
        self.denied.summarize(now);
        self.refused.summarize(now);
    }

    /// Resets the connections on PROXY listeners still without a complete header at their
    /// deadline.
    fn close_headerless(&mut self, now: Instant) {
        for key in self.conns.headers_overdue(now) {
            let conn = self.conns.get_mut(key);
            let hs = conn
                .handshake
                .as_ref()
                .expect("overdue means waiting for a header");
            let turned = TurnedAway {
                kind: Turned::Refused,
                listener: hs.listener,
                from: hs.balancer,
                why: format!(
                    "no complete PROXY header within {} s",
                    HEADER_TIMEOUT.as_secs()
                )
                .into(),
            };
            conn.reset_on_close();
            self.turn_away(turned, now);
            self.close(key, now);
        }
    }

    /// Closes the TLS connections still handshaking at their deadline (`tls_handshake_timeout`):
    /// refused, counted and logged like a failed handshake.
    fn close_handshakeless(&mut self, now: Instant) {
        for key in self.conns.handshakes_overdue(now) {
            let why = format!(
                "no complete TLS handshake within {} s (tls_handshake_timeout)",
                self.conns.handshake_timeout().as_secs()
            );
            self.refuse_tls(key, &why, true, now);
            // A stalled client learns at once; no TIME_WAIT left behind.
            self.conns.get_mut(key).reset_on_close();
            self.close(key, now);
        }
    }

    /// Counts and logs (each address at most once a minute) a TLS client that failed, before
    /// it is closed: `during_handshake` counts it in `tls_handshake_failures`, else in errors.
    fn refuse_tls(&mut self, key: usize, why: &str, during_handshake: bool, now: Instant) {
        let conn = self.conns.get_mut(key);
        let counters = &mut self.stats.listeners[conn.listener];
        // Closed with a FIN, not a reset: the alert rustls queued (`bad certificate`, ...)
        // must reach the client first.
        if during_handshake {
            counters.tls_handshake_failures += 1;
        } else {
            self.stats.errors += 1;
        }
        let Some(addr) = conn.peer_addr() else {
            return;
        };
        let name = &counters.name;
        let what = if during_handshake {
            "refused TLS client"
        } else {
            "closed TLS client"
        };
        if let Verdict::Log { same, others } = self.tls_refusals.note(addr.ip(), now) {
            let mut line = format!("{name}: {what} {addr}: {why}");
            if same > 0 {
                line += &format!(
                    " ({same} more refusals of {} in the last minute not logged)",
                    addr.ip().to_canonical()
                );
            }
            if others > 0 {
                line += &format!(" ({others} refusals of other addresses not logged)");
            }
            warning!("{line}");
        }
    }

    /// Before reading more: writes the batch out once it reaches `FLUSH_AT`, and says whether
    /// the output can take what is read (false while it is `full`).
    fn room_to_read(&mut self, now: Instant) -> bool {
        if self.output.queued() >= FLUSH_AT {
            self.flush_output(now);
        }
        !self.output.full()
    }

    /// Gives each datagram socket with unread datagrams one turn of up to `DATAGRAM_BUDGET`,
    /// unless the output is full (then the kernel queues them, and drops what overflows its
    /// buffer: UDP has no flow control).
    fn read_datagrams(&mut self, now: Instant) {
        for index in 0..self.datagrams.len() {
            if !self.datagrams.is_readable(index) {
                continue;
            }
            for _ in 0..DATAGRAM_BUDGET {
                if !self.room_to_read(now) {
                    return;
                }
                match self
                    .datagrams
                    .recv(index, &mut self.read_buf, &mut self.sender)
                {
                    Received::Datagram(n, from) => {
                        let input = self.datagrams.input(index);
                        let parse = input.parse;
                        if let Some(from) = from.filter(|f| !input.access.allows(f.ip())) {
                            self.drop_datagram(index, from, now);
                            continue;
                        }
                        let listener = self.streams + index;
                        recorder!(self, listener).record_datagram(
                            &self.sender,
                            &self.read_buf[..n],
                            parse,
                        );
                    }
                    Received::Empty => break,
                    Received::Failed => {
                        self.stats.errors += 1;
                        break;
                    }
                }
            }
        }
    }

    /// A datagram from `from`, outside socket `index`'s `allow`, is dropped: counted, and
    /// logged the first time for its address.
    fn drop_datagram(&mut self, index: usize, from: SocketAddr, now: Instant) {
        let turned = TurnedAway {
            kind: Turned::Denied,
            listener: self.streams + index,
            from,
            why: "not in allow".into(),
        };
        self.turn_away(turned, now);
    }

    /// Gives each connection on the ready queue one turn.
    fn read_ready(&mut self, now: Instant) {
        for _ in 0..self.conns.ready_len() {
            if !self.room_to_read(now) {
                return;
            }
            match self.conns.pop_ready() {
                Some(Some(key)) => self.turn(key, now),
                Some(None) => {} // closed since it was queued
                None => return,
            }
        }
    }

    /// One connection's turn: up to READ_BUDGET reads. The batch is written out whenever it
    /// reaches its limit (`Output::batch_limit`) and the same connection goes on, as long as
    /// the output takes data.
    fn turn(&mut self, key: usize, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            let limit = self.output.batch_limit();
            let conn = self.conns.get_mut(key);
            let mut recorder = recorder!(self, conn.listener);
            match conn.read_available(&mut self.read_buf, &mut budget, limit, &mut recorder, now) {
                Status::Drained => return self.after_turn(key, now),
                Status::Full if budget > 0 && self.room_to_read(now) => {}
                Status::Full | Status::More => {
                    self.conns.requeue(key);
                    return self.after_turn(key, now);
                }
                Status::Closed(err) => {
                    if err.is_some() {
                        // Resets are routine (a client crashed); counted, not logged each.
                        self.stats.errors += 1;
                    }
                    return self.close(key, now);
                }
                Status::TurnedAway(turned) => {
                    self.conns.get_mut(key).reset_on_close();
                    self.turn_away(turned, now);
                    return self.close(key, now);
                }
                Status::TlsFailed {
                    why,
                    during_handshake,
                } => {
                    self.refuse_tls(key, &why, during_handshake, now);
                    return self.close(key, now);
                }
            }
        }
    }

    /// After connection `key`'s turn: if its TLS handshake just completed, a TLS listener
    /// held at `tls_max_handshakes` may accept again.
    fn after_turn(&mut self, key: usize, now: Instant) {
        if self.conns.note_handshake(key) {
            self.resume_tls_accepts(now);
        }
    }

    /// Accepts on the TLS listeners again if they stopped at `tls_max_handshakes` and a
    /// handshake ended since.
    fn resume_tls_accepts(&mut self, now: Instant) {
        if self.handshakes_capped
            && self.conns.handshaking() < self.max_handshakes
            && self.draining_since.is_none()
        {
            for index in 0..self.listeners.len() {
                if self.listeners.get(index).0.is_tls() {
                    self.accept_all(index, now);
                }
            }
        }
    }

    /// Closes connection `key` (its partial line already recorded).
    fn close(&mut self, key: usize, now: Instant) {
        let conn = self.conns.remove(key);
        self.stats.listeners[conn.listener].open -= 1;
        let handshaking = conn.tls_handshaking;
        drop(conn);
        if self.gate.on_close() {
            self.accept_everywhere(now);
        } else if handshaking {
            self.resume_tls_accepts(now);
        }
    }

    /// Closes the connections that sent nothing for `idle_timeout`, recording their partial
    /// lines. Data waiting in a socket is never dropped this way: while the output is full
    /// logsinkd reads nothing, and a client whose data waits unread is not idle.
    fn close_idle(&mut self, now: Instant) {
        for key in self.conns.idle_at(now) {
            self.finish(key);
            self.close(key, now);
        }
    }

    /// Records the partial line of connection `key`, which ends.
    fn finish(&mut self, key: usize) {
        let conn = self.conns.get_mut(key);
        conn.finish(&mut recorder!(self, conn.listener));
    }

    /// Writes out what is queued (see output.rs); a failed write is an error to count. Once
    /// the backlog is empty every record received so far has been written.
    fn flush_output(&mut self, now: Instant) {
        let flushed = self.output.flush(now, self.poll.registry());
        let counters = &mut self.stats.output;
        counters.bytes += flushed.written as u64;
        if flushed.failed {
            self.stats.errors += 1;
            counters.errors += 1;
        }
        if flushed.episode {
            counters.failures += 1;
        }
        let files = self.output.file_counters();
        (
            counters.open_files,
            counters.file_opens,
            counters.file_evictions,
        ) = (self.output.open_files(), files.opens, files.evictions);
        if flushed.written > 0 && self.output.backlog() == 0 {
            counters.records = self.stats.listeners.iter().map(|l| l.lines).sum();
        }
    }

    /// SIGHUP: open the output anew (after logrotate moved it away), and read the TLS
    /// certificate, key and CA again for new connections (open ones keep theirs); if they do
    /// not load, the old ones stay and the log says why.
    fn reopen(&mut self) {
        self.notifier.reloading();
        if self.output.reopen() {
            self.stats.output.reopens += 1;
        } else {
            self.stats.output.reopen_failures += 1;
        }
        if let Some(tls) = &mut self.tls {
            match tls.reload() {
                Ok(warnings) => {
                    for w in warnings {
                        warning!("{w}");
                    }
                    info!("TLS: certificate, key and CA read again; new connections get them");
                }
                Err(e) => {
                    self.stats.errors += 1;
                    error!(
                        "TLS: reloading failed, new connections keep getting the old \
                         certificate, key and CA: {e:#}"
                    );
                }
            }
        }
        self.notifier.reloaded();
    }

    /// SIGTERM/SIGINT: stop accepting and start the drain. Each connection gets a quota: what
    /// its socket holds now (the kernel's receive queue, `SIOCINQ`), so a client that keeps
    /// sending cannot hold the daemon up; one with nothing waiting is done at once. Each
    /// datagram socket is read until it is empty (a datagram's size is all `SIOCINQ` tells
    /// there).
    fn start_drain(&mut self, now: Instant) {
        self.notifier.stopping();
        // The metrics clients get no more answers: the counters are about to stop.
        self.metrics = None;
        self.listeners.close(self.poll.registry());
        self.draining_since = Some(now);
        self.datagrams.start_drain(now);
        for key in self.conns.keys() {
            let conn = self.conns.get_mut(key);
            let quota = conn.unread_bytes().unwrap_or_else(|e| {
                // Cannot happen on a connected socket; read until empty instead.
                error!(
                    "asking for the unread bytes of {}: {e}",
                    String::from_utf8_lossy(&conn.peer)
                );
                usize::MAX
            });
            // A TLS connection's socket holds ciphertext, and rustls may hold decrypted bytes
            // already: read on up to a record and a decrypted record's worth more.
            let quota = match conn.stream {
                Stream::Tls(_) => quota.saturating_add(TLS_DRAIN_SLACK),
                _ => quota,
            };
            if quota == 0 {
                self.finish(key);
                self.close(key, now);
            } else {
                conn.stop_quota = Some(quota);
                self.conns.mark_readable(key);
            }
        }
    }

    /// True once the drain is over: every connection has been read up to its quota (and
    /// closed) and every datagram socket ran empty or had its `DATAGRAM_DRAIN`, or
    /// `SHUTDOWN_READ` has passed.
    fn drain_over(&mut self, now: Instant) -> bool {
        let Some(since) = self.draining_since else {
            return false;
        };
        let datagrams_done = self.datagrams.drain_done(now);
        (self.conns.is_empty() && datagrams_done) || now >= since + SHUTDOWN_READ
    }

    /// The end of the drain (done, or `SHUTDOWN_READ` passed): records the partial lines of
    /// connections still open, writes it all out and syncs.
    fn shutdown(mut self) -> Summary {
        let mut unread = 0usize;
        for conn in self.conns.iter_mut() {
            unread = unread.saturating_add(conn.stop_quota.unwrap_or(0));
            conn.finish(&mut recorder!(self, conn.listener));
            self.stats.listeners[conn.listener].open -= 1;
        }
        if unread > 0 {
            warning!(
                "stopped reading {} s after the stop signal: {unread} bytes clients had sent \
                 before it are not recorded",
                SHUTDOWN_READ.as_secs()
            );
        }
        self.conns.clear();
        let unwritten = self.output.flush_before_exit();
        info!("stopped: {}", self.stats);
        Summary { unwritten }
    }
}
