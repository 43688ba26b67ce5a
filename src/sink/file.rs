//! File output: records are batched in one large buffer and appended with `O_APPEND`.
//!
//! The event loop flushes at the end of every iteration that produced records, so nothing
//! waits in memory while the daemon is idle, yet a busy daemon writes big blocks. A failed or
//! short write (disk full) keeps the unwritten bytes at the front of the buffer; they are
//! written first, in order, once the disk takes data again.
//!
//! A busy daemon's output hands its batches to a writer thread (`writer.rs`), so the next
//! batch is filled while the last one is written: a flush hands a big batch over if none is in
//! flight and otherwise leaves it growing, waiting only once it reaches `BUF_CAPACITY`; a small
//! one it writes itself. Without a writer thread (a templated output's fallback, the unit
//! tests) every flush writes on the caller's thread.
//!
//! The file is opened as root at start (before the privilege drop), often in a directory the
//! daemon's user can write (it must, to reopen after rotation). So the output is never reached
//! through a symbolic link (a link planted there would make root append client bytes to any
//! file), must be a regular file, and a file logsinkd creates is handed to the daemon's user.
//! If a reopen (SIGHUP) fails, the old file stays in use and every flush, at most once a
//! second, tries again: a rotation whose new file appears late is still followed.

use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Flush;
use super::writer::{Failed, Writer, append};
use crate::diag::info;
use crate::format::{Format, json_add_field, write_parsed, write_record, write_records};
use crate::syslog_parse::Message;

/// Initial buffer size: large enough that a busy daemon writes in big blocks.
const BUF_CAPACITY: usize = 1 << 20;
/// Smaller batches are written on the loop's own thread even with a writer thread: handing
/// one over costs two thread wake-ups, worth it only for a big one (a busy daemon's batches
/// are `BUF_CAPACITY`; a daemon taking a line now and then writes each at once, as before).
const HAND_OVER: usize = 256 << 10;
/// How often a failed reopen is tried again while records arrive: often enough that little
/// lands in the rotated file, rarely enough that a path that stays broken costs nothing.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// A file as device and inode: what a path named when logsinkd created the file there.
pub type FileId = (u64, u64);

pub fn file_id(meta: &Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// True if `path` (not followed if it is a link) still names the file `id`: a file logsinkd
/// created is removed at exit only then, never one someone put in its place.
pub fn still_names(path: &Path, id: FileId) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| file_id(&m) == id)
}

/// The user and group that own the files logsinkd creates (`user`/`group`), so the daemon
/// can still open them once it runs as that user.
pub type Owner = (libc::uid_t, libc::gid_t);

/// The verified TLS client that the records queued now come from: in `json` each record gets
/// `"tls_peer":"…"` (the TLS listeners', see tls/); nothing in other formats.
#[derive(Debug, Default)]
pub(crate) struct TlsPeerField {
    text: String,
    set: bool,
}

impl TlsPeerField {
    #[inline]
    pub fn set(&mut self, format: Format, peer: Option<&str>) {
        self.set = false;
        if let (Format::Json, Some(peer)) = (format, peer) {
            self.text.clear();
            self.text.push_str(peer);
            self.set = true;
        }
    }

    #[inline]
    pub fn is_set(&self) -> bool {
        self.set
    }

    /// Adds `tls_peer` to the record just queued in `buf`, if it came from a TLS client.
    #[inline]
    pub fn add_to(&self, buf: &mut Vec<u8>) {
        if self.set {
            json_add_field(buf, "tls_peer", self.text.as_bytes());
        }
    }
}

pub struct FileSink {
    path: PathBuf,
    file: Arc<File>,
    format: Format,
    owner: Option<Owner>,
    /// Records not yet handed over or written, oldest first.
    buf: Vec<u8>,
    /// The writer thread, once the event loop gave one.
    writer: Option<Writer>,
    /// A reopen failed: when to try again, and how many tries failed so far.
    reopen_pending: Option<(Instant, u64)>,
    /// The verified TLS client the records queued now come from.
    tls_peer: TlsPeerField,
}

/// What the file at a path is, for messages (`... is a FIFO, not a regular file`).
pub fn file_kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Opens a file that logsinkd writes, possibly as root, with `options` (plus `O_NOFOLLOW`):
/// the last component must not be a symbolic link (directories on the way may be, such as
/// systemd's /var/log/logsinkd -> private/logsinkd) and the file must be a regular one.
/// Errors name the path and say what it is instead. The raw `io::Error` of the open, if that
/// is what failed, stays the root cause (callers look for `AlreadyExists`).
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> Result<(File, Metadata)> {
    // O_NONBLOCK: opening a FIFO for writing would otherwise block until a reader comes
    // (ENXIO instead, reported as "a FIFO" below). It is cleared once the file is known to be
    // regular, where it means nothing anyway. (These replace any custom flags in `options`;
    // callers set none.)
    let opened = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            // ELOOP (a link), ENXIO (a FIFO), EISDIR...: say what the path is.
            if e.kind() != ErrorKind::AlreadyExists {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_file() {
                        bail!(
                            "{} is {}, not a regular file{}",
                            path.display(),
                            file_kind(&meta),
                            link_note(&meta)
                        );
                    }
                }
            }
            return Err(anyhow::Error::new(e).context(format!("opening {}", path.display())));
        }
    };
    let meta = file
        .metadata()
        .with_context(|| format!("examining {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!(
            "{} is {}, not a regular file",
            path.display(),
            file_kind(&meta)
        );
    }
    // SAFETY: fcntl on an fd we own; F_SETFL with the flags it reported minus O_NONBLOCK.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok((file, meta))
}

fn link_note(meta: &Metadata) -> &'static str {
    if meta.file_type().is_symlink() {
        " (logsinkd never follows a link to a file it writes: name the file itself)"
    } else {
        ""
    }
}

/// Gives a file logsinkd just created to the daemon's user.
pub fn chown_to(file: &File, meta: &Metadata, owner: Option<Owner>, path: &Path) -> Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    // SAFETY: fchown on an fd we own.
    if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("giving {} to uid {uid} gid {gid}", path.display()));
    }
    Ok(())
}

/// Whether an error from `open_regular` is the open's own `EEXIST`.
fn already_exists(e: &anyhow::Error) -> bool {
    e.root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::AlreadyExists)
}

fn not_found(e: &anyhow::Error) -> bool {
    e.root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::NotFound)
}

/// Opens the output for appending, creating it (mode 0640, owned by `owner`) if missing.
/// Returns the file and, if it was there already, its metadata.
fn open_append(path: &Path, owner: Option<Owner>) -> Result<(File, Option<Metadata>)> {
    // O_APPEND: every write lands at the current end even if another process (or logrotate's
    // copytruncate) changed the file, so records are never written over. Creating with
    // O_EXCL first tells a file logsinkd made (handed to `owner`) from one that was there.
    // Between the two opens logrotate may move the file away: then try again.
    let mut tries = 0;
    loop {
        tries += 1;
        let mut create = OpenOptions::new();
        create.append(true).create_new(true).mode(0o640);
        match open_regular(path, &mut create) {
            Ok((file, meta)) => {
                chown_to(&file, &meta, owner, path)?;
                return Ok((file, None));
            }
            Err(e) if already_exists(&e) => {}
            Err(e) => return Err(e),
        }
        match open_regular(path, OpenOptions::new().append(true)) {
            Ok((file, meta)) => return Ok((file, Some(meta))),
            Err(e) if not_found(&e) && tries < 3 => {}
            Err(e) => return Err(e),
        }
    }
}

impl FileSink {
    /// Opens the output; `owner` is the user the daemon will run as, if it switches.
    pub fn open(path: &Path, format: Format, owner: Option<Owner>) -> Result<FileSink> {
        let (file, existing) = open_append(path, owner)?;
        if let (Some(meta), Some((uid, _))) = (existing, owner) {
            if meta.uid() != uid {
                crate::diag::warning!(
                    "{} belongs to uid {}, not to the daemon's user (uid {uid}): after a \
                     rotation that gives the new file the old one's owner, the daemon cannot \
                     open it; chown the file to the daemon's user",
                    path.display(),
                    meta.uid()
                );
            }
        }
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Arc::new(file),
            format,
            owner,
            buf: Vec::with_capacity(BUF_CAPACITY),
            writer: None,
            reopen_pending: None,
            tls_peer: TlsPeerField::default(),
        })
    }

    /// The records queued from now on come from the verified TLS client `peer` (or from no
    /// TLS client): in `json` format each gets `"tls_peer":"…"`.
    #[inline]
    pub fn set_tls_peer(&mut self, peer: Option<&str>) {
        self.tls_peer.set(self.format, peer);
    }

    /// Queues one record whose syslog fields are `msg`.
    pub fn record_parsed(&mut self, time: &[u8], peer: &[u8], line: &[u8], msg: &Message<'_>) {
        write_parsed(self.format, &mut self.buf, time, peer, line, msg);
        self.tls_peer.add_to(&mut self.buf);
    }

    /// The record format.
    pub fn format(&self) -> Format {
        self.format
    }

    #[inline]
    pub fn record(&mut self, time: &[u8], peer: &[u8], line: &[u8]) {
        write_record(self.format, &mut self.buf, time, peer, line);
        self.tls_peer.add_to(&mut self.buf);
    }

    /// Records whole lines that need no change (`Piece::Lines`: each ends in LF, none holds a
    /// CR). In raw format their records are the bytes as received, so they are queued in one
    /// copy.
    pub fn record_lines(&mut self, time: &[u8], peer: &[u8], lines: &[u8]) {
        if self.format == Format::Raw {
            self.buf.extend_from_slice(lines);
        } else if self.tls_peer.is_set() {
            for line in crate::framing::run_lines(lines) {
                self.record(time, peer, line);
            }
        } else {
            write_records(self.format, &mut self.buf, time, peer, lines);
        }
    }

    /// Queues records already formatted (a templated output's fallback).
    pub fn append(&mut self, records: &[u8]) {
        self.buf.extend_from_slice(records);
    }

    /// See `Sink::raw_batch`.
    pub fn raw_batch(&mut self) -> Option<&mut Vec<u8>> {
        (self.format == Format::Raw).then_some(&mut self.buf)
    }

    /// From now on batches are written on `writer`'s thread.
    pub fn use_writer(&mut self, writer: Writer) {
        self.writer = Some(writer);
    }

    /// Writes out what is queued, first retrying a failed reopen if one is due. With a writer
    /// thread: takes the outcome of the batch in flight (waiting for it only if the queue
    /// reached `BUF_CAPACITY`), then hands the queue over (or writes it here if it is small).
    /// `Done` once a write succeeded (or nothing was queued), `Writing` while the outcome is
    /// not known yet.
    pub fn flush(&mut self) -> Result<Flush> {
        let Some(writer) = &mut self.writer else {
            self.retry_reopen();
            return self.write_out().map(|()| Flush::Done);
        };
        // A batch in flight: its outcome, waited for only once the next one is as large.
        let succeeded = match writer.take(self.buf.len() >= BUF_CAPACITY) {
            None if writer.busy() => return Ok(Flush::Writing),
            None => false,
            Some(outcome) => {
                self.took_back(outcome)?;
                true
            }
        };
        self.retry_reopen();
        if self.buf.len() < HAND_OVER {
            return self.write_out().map(|()| Flush::Done);
        }
        if let Some(writer) = &mut self.writer {
            writer.hand_over(&self.file, &mut self.buf, BUF_CAPACITY);
        }
        Ok(if succeeded {
            Flush::Done
        } else {
            Flush::Writing
        })
    }

    /// Takes the outcome of a batch the writer thread is done with: on a failure, what it
    /// did not write goes before what was queued since, and the error is returned.
    fn took_back(&mut self, outcome: Result<(), Failed>) -> Result<()> {
        let Err(Failed { error, mut rest }) = outcome else {
            return Ok(());
        };
        rest.extend_from_slice(&self.buf);
        self.buf = rest;
        Err(error).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Waits for the batch in flight, if any; the next flush takes its outcome.
    pub fn settle(&mut self) {
        if let Some(writer) = &mut self.writer {
            writer.settle();
        }
    }

    /// Waits for the batch in flight, if any (before a reopen or a sync), and puts back what
    /// it could not write (the next flush tries again and reports the error).
    fn take_in_flight(&mut self) {
        if let Some(outcome) = self.writer.as_mut().and_then(|w| w.take(true)) {
            let _ = self.took_back(outcome);
        }
    }

    /// Writes the queue on this thread.
    fn write_out(&mut self) -> Result<()> {
        let (written, result) = append(&self.file, &self.buf);
        self.buf.drain(..written);
        if self.buf.is_empty() && self.buf.capacity() > 4 * BUF_CAPACITY {
            self.buf = Vec::with_capacity(BUF_CAPACITY);
        }
        result.with_context(|| format!("writing {}", self.path.display()))
    }

    /// Bytes queued or in flight, not yet known to be written.
    pub fn backlog(&self) -> usize {
        self.buf.len() + self.writer.as_ref().map_or(0, Writer::in_flight)
    }

    /// Bytes queued and not handed over yet: what the next batch holds.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Opens the path anew and only then lets the old file go. Records already queued go to
    /// the old file if it takes them, else to the new one: nothing is lost either way. If the
    /// open fails the old file stays in use and flushes retry the open (the caller logs this
    /// error; the retries are quiet until one succeeds).
    pub fn reopen(&mut self) -> Result<()> {
        match open_append(&self.path, self.owner) {
            Ok((new, _)) => {
                self.take_in_flight();
                let _ = self.write_out();
                self.file = Arc::new(new);
                self.reopen_pending = None;
                Ok(())
            }
            Err(e) => {
                let failures = self.reopen_pending.map_or(0, |(_, n)| n) + 1;
                self.reopen_pending = Some((Instant::now() + REOPEN_RETRY, failures));
                Err(e)
            }
        }
    }

    /// After a failed reopen: tries again once REOPEN_RETRY has passed; says so when it works.
    fn retry_reopen(&mut self) {
        let Some((due, failures)) = self.reopen_pending else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        match open_append(&self.path, self.owner) {
            // What is queued now goes to the new file (the caller writes it next): each
            // record lands in exactly one of the two.
            Ok((new, _)) => {
                self.file = Arc::new(new);
                self.reopen_pending = None;
                info!(
                    "reopened {} (after {failures} failed attempts; records meanwhile went to the old file)",
                    self.path.display()
                );
            }
            Err(_) => self.reopen_pending = Some((now + REOPEN_RETRY, failures + 1)),
        }
    }

    pub fn sync(&mut self) -> Result<()> {
        self.take_in_flight();
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file sink with a writer thread (its waker on a poll of its own), in `raw` format.
    fn with_writer(path: &Path) -> (FileSink, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let mut sink = FileSink::open(path, Format::Raw, None).unwrap();
        sink.use_writer(Writer::start(Arc::new(waker)).unwrap());
        (sink, poll)
    }

    /// Queues numbered lines `from..to` (each 100 bytes with its LF).
    fn queue(sink: &mut FileSink, lines: std::ops::Range<u32>) {
        for n in lines {
            sink.record(b"", b"", format!("{n:099}").as_bytes());
        }
    }

    /// The numbered lines in `texts`, in order.
    fn numbers(texts: &[&Path]) -> Vec<u32> {
        texts
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| l.parse().unwrap())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    /// A big batch goes to the writer thread (its outcome known at the next flush), a small
    /// one is written at once; batches queued while one is in flight follow it in order.
    #[test]
    fn batches_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let (mut sink, _poll) = with_writer(&path);
        queue(&mut sink, 0..5000);
        assert_eq!(
            sink.flush().unwrap(),
            Flush::Writing,
            "500 KB is handed over"
        );
        assert_eq!(sink.backlog(), 500_000);
        assert_eq!(sink.queued(), 0);
        queue(&mut sink, 5000..20_000);
        // Over BUF_CAPACITY queued: this flush waits for the batch in flight, then hands over.
        assert_eq!(sink.flush().unwrap(), Flush::Done);
        assert_eq!(sink.backlog(), 1_500_000);
        sink.settle();
        assert_eq!(sink.flush().unwrap(), Flush::Done);
        assert_eq!(sink.backlog(), 0);
        queue(&mut sink, 20_000..20_010);
        assert_eq!(
            sink.flush().unwrap(),
            Flush::Done,
            "a small batch is written here"
        );
        assert_eq!(numbers(&[&path]), (0..20_010).collect::<Vec<_>>());
    }

    /// A write that fails on the writer thread hands its bytes back: they go before what was
    /// queued meanwhile, the error is reported, and once the file takes data all arrive once,
    /// in order.
    #[test]
    fn failed_batch_comes_back_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let (mut sink, _poll) = with_writer(&path);
        let writable = Arc::clone(&sink.file);
        // A descriptor open for reading only: every write fails (EBADF), as on a full disk.
        sink.file = Arc::new(File::open(&path).unwrap());
        queue(&mut sink, 0..5000);
        assert_eq!(sink.flush().unwrap(), Flush::Writing);
        queue(&mut sink, 5000..5100);
        sink.settle();
        let e = sink.flush().unwrap_err();
        assert!(format!("{e:#}").contains("out.log"), "{e:#}");
        assert_eq!(sink.backlog(), 510_000, "nothing dropped");
        assert_eq!(sink.queued(), 510_000, "all back in the queue");
        sink.file = writable;
        assert_eq!(sink.flush().unwrap(), Flush::Writing);
        sink.settle();
        assert_eq!(sink.flush().unwrap(), Flush::Done);
        assert_eq!(numbers(&[&path]), (0..5100).collect::<Vec<_>>());
    }

    /// A reopen while a batch is in flight: that batch ends in the old file, what is queued
    /// after it in the new one; nothing lost or doubled.
    #[test]
    fn reopen_with_a_batch_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let rotated = dir.path().join("out.log.1");
        let (mut sink, _poll) = with_writer(&path);
        queue(&mut sink, 0..5000);
        assert_eq!(sink.flush().unwrap(), Flush::Writing);
        queue(&mut sink, 5000..5010);
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen().unwrap();
        queue(&mut sink, 5010..8000);
        assert_eq!(sink.flush().unwrap(), Flush::Writing);
        sink.settle();
        assert_eq!(sink.flush().unwrap(), Flush::Done);
        assert_eq!(numbers(&[&rotated]), (0..5010).collect::<Vec<_>>());
        assert_eq!(numbers(&[&path]), (5010..8000).collect::<Vec<_>>());
    }
}
