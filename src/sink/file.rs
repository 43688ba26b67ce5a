//! File output: records are batched in one large buffer and appended with `O_APPEND`.
//!
//! The event loop flushes at the end of every iteration that produced records, so nothing
//! waits in memory while the daemon is idle, yet a busy daemon writes big blocks. A failed or
//! short write (disk full) keeps the unwritten bytes at the front of the buffer; they are
//! written first, in order, once the disk takes data again.
//!
//! The file is opened as root at start (before the privilege drop), often in a directory the
//! daemon's user can write (it must, to reopen after rotation). So the output is never reached
//! through a symbolic link (a link planted there would make root append client bytes to any
//! file), must be a regular file, and a file logsinkd creates is handed to the daemon's user.
//! If a reopen (SIGHUP) fails, the old file stays in use and every flush, at most once a
//! second, tries again: a rotation whose new file appears late is still followed.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::diag::info;
use crate::format::{Format, json_add_field, write_parsed, write_record, write_records};
use crate::syslog_parse::Message;

/// Initial buffer size: large enough that a busy daemon writes in big blocks.
const BUF_CAPACITY: usize = 1 << 20;
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
    file: File,
    format: Format,
    owner: Option<Owner>,
    /// Records not yet written, oldest first.
    buf: Vec<u8>,
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
            file,
            format,
            owner,
            buf: Vec::with_capacity(BUF_CAPACITY),
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

    /// Writes out what is queued, first retrying a failed reopen if one is due.
    pub fn flush(&mut self) -> Result<()> {
        self.retry_reopen();
        self.write_out()
    }

    fn write_out(&mut self) -> Result<()> {
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Ok(());
            }
            match self.file.write(&self.buf[written..]) {
                Ok(0) => break Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..written);
        if self.buf.is_empty() && self.buf.capacity() > 4 * BUF_CAPACITY {
            self.buf = Vec::with_capacity(BUF_CAPACITY);
        }
        result.with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn backlog(&self) -> usize {
        self.buf.len()
    }

    /// Opens the path anew and only then lets the old file go. Records already queued go to
    /// the old file if it takes them, else to the new one: nothing is lost either way. If the
    /// open fails the old file stays in use and flushes retry the open (the caller logs this
    /// error; the retries are quiet until one succeeds).
    pub fn reopen(&mut self) -> Result<()> {
        match open_append(&self.path, self.owner) {
            Ok((new, _)) => {
                let _ = self.write_out();
                self.file = new;
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
                self.file = new;
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
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}
