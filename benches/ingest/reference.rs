//! The reference server: the ceiling of what any receiver can do here. It only reads and
//! appends big blocks, with no framing, no formatting and no per-line work.
//!
//! It has the same shape as logsinkd so the comparison is about per-byte work only: one
//! thread, one `mio::Poll`, edge-triggered reads until `WouldBlock`, whatever was read appended
//! to one buffer, and the buffer written (O_APPEND) when it is full and at the end of every
//! loop iteration. SIGTERM writes out what is held and exits 0.
//!
//! With an extra percentage it also writes that many more bytes (filler, into a second file
//! next to the output, at the same moments): the ceiling for a receiver whose records are
//! longer than the lines it receives, as logsinkd's `default` format's are.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::SIGTERM;
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_CLIENT: usize = 2;
/// Size of the block written at once (logsinkd's output buffer is as large).
const BLOCK: usize = 1 << 20;
/// Largest single read (logsinkd's read buffer is as large).
const READ: usize = 64 * 1024;

pub fn run(out: &Path, extra_percent: usize) -> ! {
    match serve(out, extra_percent) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("reference: {e}");
            std::process::exit(1)
        }
    }
}

/// The output, and the filler file that takes `extra_percent` more bytes with every write.
struct Output {
    file: File,
    extra: Option<(File, usize)>,
    filler: Vec<u8>,
}

impl Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some((file, percent)) = &mut self.extra {
            file.write_all(&self.filler[..bytes.len() * *percent / 100])?;
        }
        self.file.write_all(bytes)
    }
}

fn serve(out: &Path, extra_percent: usize) -> std::io::Result<()> {
    let append = |path: &Path| OpenOptions::new().append(true).create(true).open(path);
    let mut output = Output {
        file: append(out)?,
        extra: match extra_percent {
            0 => None,
            percent => Some((append(&out.with_extension("extra"))?, percent)),
        },
        filler: vec![b'x'; BLOCK * extra_percent / 100],
    };
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
    let mut signals = Signals::new([SIGTERM])?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    eprintln!("reference: listening on {}", listener.local_addr()?);
    let mut conns: Slab<TcpStream> = Slab::new();
    let mut ready: VecDeque<usize> = VecDeque::new();
    let mut block = vec![0u8; BLOCK];
    let mut filled = 0;
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut stop = false;
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key() + FIRST_CLIENT),
                                Interest::READABLE,
                            )?;
                            ready.push_back(entry.key());
                            entry.insert(stream);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                },
                SIGNALS => stop |= signals.pending().any(|s| s == SIGTERM),
                token => ready.push_back(token.0 - FIRST_CLIENT),
            }
        }
        while let Some(key) = ready.pop_front() {
            let Some(stream) = conns.get_mut(key) else {
                continue;
            };
            loop {
                if BLOCK - filled < READ {
                    output.write(&block[..filled])?;
                    filled = 0;
                }
                match stream.read(&mut block[filled..filled + READ]) {
                    Ok(0) => {
                        conns.remove(key);
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        conns.remove(key);
                        break;
                    }
                }
            }
        }
        output.write(&block[..filled])?;
        filled = 0;
        if stop {
            return output.file.sync_all();
        }
    }
}
