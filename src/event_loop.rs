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
//! listener accepts (`listener.rs`, `connection.rs`), datagram sockets (`datagram.rs`), idle
//! timers (`idle.rs`), the output and its failure episodes (`output.rs`), framing
//! (`recorder.rs`). The server owns the counters (`stats.rs`).
//!
//! SIGTERM (or SIGINT) starts the drain, which runs in this same loop, with the same turns,
//! writes and back-pressure: listeners close, each connection is read up to what its socket
//! held at that moment (then closed, its partial line recorded), each datagram socket until it
//! is empty (for at most `DATAGRAM_DRAIN`), all within `SHUTDOWN_READ`; then the output is
//! written out and synced.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::accept_gate::{AcceptGate, is_client_side};
use crate::connection::{Status, Stream};
use crate::connections::Connections;
use crate::datagram::{DATAGRAM_BUDGET, Datagrams, Received};
use crate::diag::{error, info, warning};
use crate::input::Input;
use crate::listen::Listeners;
use crate::listener::StreamListeners;
use crate::notify::Notifier;
use crate::output::{FLUSH_AT, Output};
use crate::recorder::{Framing, Recorder};
use crate::sink::Sink;
use crate::stats::Stats;

/// Most listening sockets, stream and datagram together (each needs its own token below the
/// clients').
pub const MAX_LISTENERS: usize = 64;
const SIGNALS: Token = Token(0);
/// The output's socket (syslog), watched for writability while its receiver is busy.
const OUTPUT: Token = Token(1);
/// Stream listeners' tokens come first, then the datagram sockets'.
const FIRST_LISTENER: usize = 2;
/// Client tokens are slab keys offset by this; see `client_token` / `client_key`.
const FIRST_CLIENT: usize = FIRST_LISTENER + MAX_LISTENERS;

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
/// Events taken per poll.
const EVENTS: usize = 1024;
/// How long the drain at shutdown may read at most. What the sockets held at the stop signal
/// normally takes milliseconds (256 streaming clients: well under a second in a debug build);
/// this bound only keeps the exit well inside systemd's TimeoutStopSec (10 s in the shipped
/// unit, with the 5 s a failing output then gets) when the output cannot keep up.
const SHUTDOWN_READ: Duration = Duration::from_secs(2);

/// Settings the loop needs beyond its resources.
pub struct Settings {
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    /// The output as named in messages.
    pub target: String,
}

/// A `Recorder` over the server's framing, output and stats, each borrowed on its own so the
/// connections stay free to borrow too, for records that came in on `listener`.
macro_rules! recorder {
    ($server:expr, $listener:expr) => {
        Recorder::new(
            &mut $server.framing,
            $server.output.sink(),
            &mut $server.stats,
            $listener,
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
    read_buf: Box<[u8]>,
    /// The sender of the datagram in `read_buf`, as written in records.
    sender: Vec<u8>,
    /// When the stop signal was taken: the drain is on.
    draining_since: Option<Instant>,
    notifier: Notifier,
}

/// Why the loop ended.
pub struct Summary {
    /// Bytes accepted from clients that could not be written before exit.
    pub unwritten: usize,
}

impl Server {
    /// Registers everything with a new `Poll`. `listeners` carry the name used in messages.
    pub fn new(
        listeners: Listeners,
        sink: Sink,
        max_line: usize,
        settings: Settings,
    ) -> Result<Server> {
        let poll = Poll::new().context("creating the poll instance")?;
        let registry = poll.registry();
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])
            .context("installing signal handlers")?;
        registry.register(&mut signals, SIGNALS, Interest::READABLE)?;
        // Each kind of socket becomes a `Listener` or a `DatagramSocket`; the loop serves
        // them all alike.
        let (streams, sockets) = listeners.into_parts();
        let streams = StreamListeners::new(streams, registry, FIRST_LISTENER)?;
        let datagrams = Datagrams::new(sockets, registry, FIRST_LISTENER + streams.len())?;
        Ok(Server {
            listeners: streams,
            gate: AcceptGate::new(settings.max_connections),
            datagrams,
            signals,
            conns: Connections::new(settings.idle_timeout),
            output: Output::new(sink, settings.target, OUTPUT),
            framing: Framing::new(max_line),
            stats: Stats::default(),
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
        streams.chain(self.datagrams.listening()).collect()
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
                    Token(t) if t < FIRST_CLIENT => self.listener_ready(t - FIRST_LISTENER, now),
                    token => self.conns.mark_readable(client_key(token)),
                }
            }
            self.run_timers(now);
            self.read_datagrams(now);
            self.read_ready(now);
            self.flush_output(now);
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
        let unread = self.conns.any_ready() || self.datagrams.unread();
        if unread && !self.output.full() {
            return Some(Duration::ZERO);
        }
        [
            self.gate.paused_until(),
            self.output.retry_at(),
            self.conns.next_idle(),
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
                SIGUSR1 => info!("stats: {}", self.stats),
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

    /// Accepts until `WouldBlock`, the connection cap, or an error that calls for a pause.
    fn accept_all(&mut self, index: usize, now: Instant) {
        while self.gate.may_accept(self.conns.len()) {
            let (listener, name, input) = self.listeners.get(index);
            match listener.accept() {
                Ok((stream, peer)) => {
                    let name = Arc::clone(name);
                    self.add_connection(stream, peer, name, input, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.gate.on_drained();
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

    fn add_connection(
        &mut self,
        stream: Stream,
        peer: Box<[u8]>,
        listener: Arc<str>,
        input: Input,
        now: Instant,
    ) {
        let registry = self.poll.registry();
        if let Err(e) = self
            .conns
            .add((stream, peer), listener, input, registry, client_token, now)
        {
            self.stats.errors += 1;
            error!("{e}");
            return;
        }
        self.stats.connections += 1;
        self.stats.open = self.conns.len();
    }

    fn run_timers(&mut self, now: Instant) {
        if self.gate.resume_due(now) {
            self.accept_everywhere(now);
        }
        self.close_idle(now);
    }

    /// Before reading more: writes the batch out once it reaches `FLUSH_AT`, and says whether
    /// the output can take what is read (false while it is `full`).
    fn room_to_read(&mut self, now: Instant) -> bool {
        if self.output.backlog() >= FLUSH_AT {
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
                    Received::Datagram(n) => {
                        let parse = self.datagrams.input(index).parse;
                        recorder!(self, self.datagrams.name(index)).record_datagram(
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
            let mut recorder = recorder!(self, &conn.listener);
            match conn.read_available(&mut self.read_buf, &mut budget, limit, &mut recorder, now) {
                Status::Drained => return,
                Status::Full if budget > 0 && self.room_to_read(now) => {}
                Status::Full | Status::More => return self.conns.requeue(key),
                Status::Closed(err) => {
                    if err.is_some() {
                        // Resets are routine (a client crashed); counted, not logged each.
                        self.stats.errors += 1;
                    }
                    return self.close(key, now);
                }
            }
        }
    }

    /// Closes connection `key` (its partial line already recorded).
    fn close(&mut self, key: usize, now: Instant) {
        drop(self.conns.remove(key));
        self.stats.open = self.conns.len();
        if self.gate.on_close() {
            self.accept_everywhere(now);
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
        recorder!(self, &conn.listener).finish(&conn.peer, &mut conn.framer, conn.parse);
    }

    /// Writes out what is queued (see output.rs); a failed write is an error to count.
    fn flush_output(&mut self, now: Instant) {
        if self.output.flush(now, self.poll.registry()) {
            self.stats.errors += 1;
        }
    }

    /// SIGHUP: open the output anew (after logrotate moved it away).
    fn reopen(&mut self) {
        self.notifier.reloading();
        self.output.reopen();
        self.notifier.reloaded();
    }

    /// SIGTERM/SIGINT: stop accepting and start the drain. Each connection gets a quota: what
    /// its socket holds now (the kernel's receive queue, `SIOCINQ`), so a client that keeps
    /// sending cannot hold the daemon up; one with nothing waiting is done at once. Each
    /// datagram socket is read until it is empty (a datagram's size is all `SIOCINQ` tells
    /// there).
    fn start_drain(&mut self, now: Instant) {
        self.notifier.stopping();
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
            recorder!(self, &conn.listener).finish(&conn.peer, &mut conn.framer, conn.parse);
        }
        if unread > 0 {
            warning!(
                "stopped reading {} s after the stop signal: {unread} bytes clients had sent \
                 before it are not recorded",
                SHUTDOWN_READ.as_secs()
            );
        }
        self.conns.clear();
        self.stats.open = 0;
        let unwritten = self.output.flush_before_exit();
        info!("stopped: {}", self.stats);
        Summary { unwritten }
    }
}
