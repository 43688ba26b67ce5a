//! One file per sender: the output for a path template (`template.rs`), such as
//! `/var/log/remote/{peer_ip}/{date}.log`.
//!
//! Each file has its own batch (`Slot`); the backlog the event loop weighs against
//! `HIGH_WATER` is their sum, so one file that cannot be written (disk full) holds up reading
//! for all once it holds that much. A flush writes each batch to its file, opening it if
//! needed. At most `max_open` files are open at once: opening one more first closes the least
//! recently written file whose batch is empty (only clean files are closed), and files left
//! unwritten for `idle_close` are closed by `housekeep`. A cache smaller than the number of
//! active senders costs opens, never records.
//!
//! The fixed prefix is opened once, at start, as an `O_PATH` directory; every path below it is
//! walked one component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)` (missing directories
//! made with `mkdirat`, mode 0750) and the file opened with `openat(O_NOFOLLOW | O_APPEND |
//! O_CREAT)`, mode 0640: a symbolic link planted anywhere below the prefix is never followed.
//! A path that fails for good (a link, a file where a directory belongs, no permission) is
//! logged once and its records go to `fallback_output`, or, with none, stay held (and retried)
//! like a full disk's.
//!
//! Where the template has only connection-level fields (peer, listener, date, hour), all the
//! records of one read go to one file: `route` picks it once per read, and the raw format's
//! read-in-place path (`raw_batch`) reads straight into that file's batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use slab::Slab;

use super::file::{FileSink, Owner, TlsPeerField};
use super::template::{Template, Values};
use crate::diag::warning;
use crate::format::{Format, write_parsed, write_record, write_records};
use crate::syslog_parse::Message;

/// Default `file_idle_close`.
pub const DEFAULT_IDLE_CLOSE: Duration = Duration::from_secs(60);
/// A batch emptied by a flush keeps its space up to this much if records are still coming
/// into it (the current file), so a busy sender's reads do not allocate each time...
const KEEP_CURRENT: usize = 1 << 20;
/// ...and any other batch up to this much: thousands of open files cost little memory
/// between bursts.
const KEEP_OTHER: usize = 4096;
/// Paths whose lasting failure is remembered (and was logged) until SIGHUP; more are not
/// logged, and tried again on each write.
const MAX_BROKEN: usize = 1024;

/// Which zone `{date}` and `{hour}` are in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DateTz {
    #[default]
    Utc,
    Local,
}

/// A templated output as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesTarget {
    pub template: Template,
    pub date_tz: DateTz,
    /// Files open at once, at most.
    pub max_open: usize,
    pub idle_close: Duration,
    /// Where records go whose path fails for good.
    pub fallback: Option<PathBuf>,
}

impl FilesTarget {
    pub fn new(template: Template) -> FilesTarget {
        FilesTarget {
            template,
            date_tz: DateTz::Utc,
            max_open: 1024,
            idle_close: DEFAULT_IDLE_CLOSE,
            fallback: None,
        }
    }
}

/// One file's batch and, while open, its descriptor.
struct Slot {
    /// Below the prefix.
    path: Box<[u8]>,
    file: Option<File>,
    /// Its key in the LRU order while open.
    tick: u64,
    last_write: Instant,
    buf: Vec<u8>,
    /// On the dirty list (written by the next flush).
    dirty: bool,
}

/// The connection-level fields of the records being queued, and the file they picked.
#[derive(Default)]
struct Origin {
    peer: Vec<u8>,
    /// `peer_ip` and `peer_port` as ranges of `peer`.
    ip: (usize, usize),
    port: (usize, usize),
    listener: Option<Arc<str>>,
    minute: i64,
    date: [u8; 10],
    hour: [u8; 2],
    /// The slot these fields resolve to (connection-level templates), if known.
    slot: Option<usize>,
}

/// Counters for the stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileCounters {
    /// Files open now.
    pub open: u64,
    /// Opens since start.
    pub opens: u64,
    /// Files closed to make room for another.
    pub evictions: u64,
}

pub struct FilesSink {
    target: FilesTarget,
    format: Format,
    owner: Option<Owner>,
    prefix: OwnedFd,
    slots: Slab<Slot>,
    by_path: HashMap<Box<[u8]>, usize>,
    /// Open files by last write, oldest first.
    lru: BTreeMap<u64, usize>,
    tick: u64,
    /// The slot records are queued in now.
    current: Option<usize>,
    /// Bytes queued in slots other than `current`.
    held: usize,
    dirty: Vec<usize>,
    origin: Origin,
    /// The verified TLS client the records queued now come from (`json`: `tls_peer`).
    tls_peer: TlsPeerField,
    path_buf: Vec<u8>,
    fallback: Option<FileSink>,
    /// Paths that failed for good, until SIGHUP (logged once each; at most `MAX_BROKEN`
    /// remembered, later ones are tried again each time).
    broken: HashSet<Box<[u8]>>,
    counters: FileCounters,
}

impl FilesSink {
    /// Creates the prefix if missing (mode 0750, given to `owner`) and opens it; opens the
    /// fallback file. The files themselves are opened on first write.
    pub fn open(target: &FilesTarget, format: Format, owner: Option<Owner>) -> Result<FilesSink> {
        let prefix = open_prefix(target.template.prefix(), owner)?;
        let fallback = target
            .fallback
            .as_deref()
            .map(|path| FileSink::open(path, format, owner))
            .transpose()?;
        Ok(FilesSink {
            target: target.clone(),
            format,
            owner,
            prefix,
            slots: Slab::new(),
            by_path: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            current: None,
            held: 0,
            dirty: Vec::new(),
            origin: Origin {
                minute: i64::MIN,
                ..Origin::default()
            },
            tls_peer: TlsPeerField::default(),
            path_buf: Vec::new(),
            fallback,
            broken: HashSet::new(),
            counters: FileCounters::default(),
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// True if each record is parsed and placed on its own (message fields in the path).
    pub fn per_record(&self) -> bool {
        self.target.template.uses_message()
    }

    pub fn counters(&self) -> FileCounters {
        FileCounters {
            open: self.lru.len() as u64 + u64::from(self.fallback.is_some()),
            ..self.counters
        }
    }

    /// The records queued from now on came in on `listener`.
    pub fn set_listener(&mut self, listener: &Arc<str>) {
        if !self
            .origin
            .listener
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, listener))
        {
            self.origin.listener = Some(listener.clone());
            self.origin.slot = None;
        }
    }

    /// The records queued from now on were received at `second` (Unix time) from `peer`:
    /// picks their file, unless that is still the one picked last.
    pub fn route(&mut self, second: i64, peer: &[u8]) {
        let minute = second.div_euclid(60);
        if minute != self.origin.minute {
            self.origin.minute = minute;
            let (date, hour) = date_hour(second, self.target.date_tz);
            if (date, hour) != (self.origin.date, self.origin.hour) {
                (self.origin.date, self.origin.hour) = (date, hour);
                self.origin.slot = None;
            }
        }
        if peer != self.origin.peer.as_slice() {
            self.origin.peer.clear();
            self.origin.peer.extend_from_slice(peer);
            (self.origin.ip, self.origin.port) = split_peer(peer);
            self.origin.slot = None;
        }
        if self.origin.slot.is_none() && !self.per_record() {
            let slot = self.resolve(None);
            self.origin.slot = Some(slot);
        }
        if let Some(slot) = self.origin.slot {
            self.select(slot);
        }
    }

    /// The slot for a record with `msg`'s fields (message-level templates) or the routed one.
    fn slot_for(&mut self, msg: Option<&Message<'_>>) -> usize {
        let slot = match self.origin.slot {
            Some(slot) if !self.per_record() => slot,
            _ => {
                let slot = self.resolve(msg);
                if !self.per_record() {
                    self.origin.slot = Some(slot);
                }
                slot
            }
        };
        self.select(slot);
        slot
    }

    /// The slot of the path the template gives for the current origin and `msg`.
    fn resolve(&mut self, msg: Option<&Message<'_>>) -> usize {
        let o = &self.origin;
        let facility = msg
            .and_then(|m| m.pri)
            .map(|p| p.facility_name().as_bytes());
        let severity = msg
            .and_then(|m| m.pri)
            .map(|p| p.severity_name().as_bytes());
        let values = Values {
            peer_ip: &o.peer[o.ip.0..o.ip.1],
            peer_port: &o.peer[o.port.0..o.port.1],
            listener: o.listener.as_deref().unwrap_or("-").as_bytes(),
            date: &o.date,
            hour: &o.hour,
            hostname: msg.and_then(|m| m.hostname),
            app: msg.and_then(|m| m.app),
            facility,
            severity,
        };
        self.target.template.render(&values, &mut self.path_buf);
        if let Some(&slot) = self.by_path.get(self.path_buf.as_slice()) {
            return slot;
        }
        let path: Box<[u8]> = self.path_buf.as_slice().into();
        let slot = self.slots.insert(Slot {
            path: path.clone(),
            file: None,
            tick: 0,
            last_write: Instant::now(),
            buf: Vec::new(),
            dirty: false,
        });
        self.by_path.insert(path, slot);
        slot
    }

    /// Makes `slot` the one records are queued in.
    #[inline]
    fn select(&mut self, slot: usize) {
        if self.current == Some(slot) {
            return;
        }
        if let Some(old) = self.current {
            self.held += self.slots[old].buf.len();
        }
        let new = &mut self.slots[slot];
        self.held -= new.buf.len();
        if !new.dirty {
            new.dirty = true;
            self.dirty.push(slot);
        }
        self.current = Some(slot);
    }

    pub fn record(&mut self, time: &[u8], peer: &[u8], line: &[u8]) {
        let slot = self.slot_for(None);
        let buf = &mut self.slots[slot].buf;
        write_record(self.format, buf, time, peer, line);
        self.tls_peer.add_to(buf);
    }

    /// See `FileSink::set_tls_peer`.
    pub fn set_tls_peer(&mut self, peer: Option<&str>) {
        self.tls_peer.set(self.format, peer);
    }

    pub fn record_parsed(&mut self, time: &[u8], peer: &[u8], line: &[u8], msg: &Message<'_>) {
        let slot = self.slot_for(Some(msg));
        let buf = &mut self.slots[slot].buf;
        write_parsed(self.format, buf, time, peer, line, msg);
        self.tls_peer.add_to(buf);
    }

    pub fn record_lines(&mut self, time: &[u8], peer: &[u8], lines: &[u8]) {
        if self.tls_peer.is_set() {
            for line in crate::framing::run_lines(lines) {
                self.record(time, peer, line);
            }
            return;
        }
        let slot = self.slot_for(None);
        let buf = &mut self.slots[slot].buf;
        if self.format == Format::Raw {
            buf.extend_from_slice(lines);
        } else {
            write_records(self.format, buf, time, peer, lines);
        }
    }

    /// The routed file's batch, in raw format with a connection-level template.
    pub fn raw_batch(&mut self) -> Option<&mut Vec<u8>> {
        if self.format != Format::Raw || self.per_record() {
            return None;
        }
        let slot = self.origin.slot?;
        self.select(slot);
        Some(&mut self.slots[slot].buf)
    }

    pub fn backlog(&self) -> usize {
        self.held
            + self.current.map_or(0, |c| self.slots[c].buf.len())
            + self.fallback.as_ref().map_or(0, FileSink::backlog)
    }

    /// Writes each file's batch; a file that fails keeps its records (the others are still
    /// written). Reports the first failure.
    pub fn flush(&mut self) -> Result<()> {
        let mut first: Option<anyhow::Error> = None;
        let mut dirty = std::mem::take(&mut self.dirty);
        // Files already open first: once written they are clean, so they can be closed to
        // open the others.
        dirty.sort_by_key(|&s| self.slots[s].file.is_none());
        let mut left = Vec::new();
        for slot in dirty {
            self.slots[slot].dirty = false;
            if !self.slots[slot].buf.is_empty() {
                if let Err(e) = self.write_slot(slot) {
                    first.get_or_insert(e);
                }
            }
            if self.slots[slot].buf.is_empty() {
                self.forget_if_unused(slot);
            } else {
                self.slots[slot].dirty = true;
                left.push(slot);
            }
        }
        // Slots queued while flushing (none today) stay after the ones left. The current
        // slot stays listed: records keep coming into it without another `select`.
        left.append(&mut self.dirty);
        self.dirty = left;
        if let Some(current) = self.current {
            let s = &mut self.slots[current];
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(current);
            }
        }
        if let Some(fallback) = &mut self.fallback {
            if let Err(e) = fallback.flush() {
                first.get_or_insert(e);
            }
        }
        self.held = self
            .dirty
            .iter()
            .filter(|&&s| Some(s) != self.current)
            .map(|&s| self.slots[s].buf.len())
            .sum();
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drops a slot that has no records, no file and is not the current one.
    fn forget_if_unused(&mut self, slot: usize) {
        let s = &self.slots[slot];
        if s.file.is_none() && s.buf.is_empty() && !s.dirty && self.current != Some(slot) {
            let s = self.slots.remove(slot);
            self.by_path.remove(&s.path);
            if self.origin.slot == Some(slot) {
                self.origin.slot = None;
            }
        }
    }

    fn write_slot(&mut self, slot: usize) -> Result<()> {
        if !self.broken.is_empty() && self.broken.contains(&self.slots[slot].path) {
            return self.move_to_fallback(slot);
        }
        if self.slots[slot].file.is_none() {
            if self.lru.len() >= self.target.max_open && !self.evict_one() {
                return Err(anyhow!(
                    "all {} open files hold unwritten records; {} waits",
                    self.lru.len(),
                    self.display(&self.slots[slot].path)
                ));
            }
            match open_below(self.prefix.as_fd(), &self.slots[slot].path) {
                Ok(file) => {
                    self.counters.opens += 1;
                    self.tick += 1;
                    let s = &mut self.slots[slot];
                    s.file = Some(file);
                    s.tick = self.tick;
                    self.lru.insert(self.tick, slot);
                }
                Err(e) if lasting(e) => {
                    self.report(slot, e);
                    return self.move_to_fallback(slot);
                }
                Err(e) => {
                    return Err(anyhow::Error::new(std::io::Error::from(e))
                        .context(format!("opening {}", self.display(&self.slots[slot].path))));
                }
            }
        }
        let s = &mut self.slots[slot];
        let file = s.file.as_mut().expect("opened above");
        let result = write_all(file, &mut s.buf);
        s.last_write = Instant::now();
        self.tick += 1;
        self.lru.remove(&s.tick);
        s.tick = self.tick;
        self.lru.insert(self.tick, slot);
        let keep = if self.current == Some(slot) {
            KEEP_CURRENT
        } else {
            KEEP_OTHER
        };
        if s.buf.is_empty() && s.buf.capacity() > keep {
            s.buf = Vec::new();
        }
        result.map_err(|e| {
            anyhow::Error::new(e)
                .context(format!("writing {}", self.display(&self.slots[slot].path)))
        })
    }

    /// Moves a broken path's records to the fallback file (or keeps them, with none).
    fn move_to_fallback(&mut self, slot: usize) -> Result<()> {
        let path = self.display(&self.slots[slot].path);
        let Some(fallback) = &mut self.fallback else {
            return Err(anyhow!(
                "{path} cannot be written and no fallback_output is set"
            ));
        };
        let buf = std::mem::take(&mut self.slots[slot].buf);
        fallback.append(&buf);
        Ok(())
    }

    /// Remembers a path's lasting failure and logs it, once per path until SIGHUP.
    fn report(&mut self, slot: usize, e: Errno) {
        let path = self.slots[slot].path.clone();
        if self.broken.len() > MAX_BROKEN || self.broken.contains(&path) {
            return;
        }
        let whither = match &self.target.fallback {
            Some(f) => format!("its records go to {}", f.display()),
            None => "its records are held (set fallback_output to write them elsewhere)".into(),
        };
        if self.broken.len() == MAX_BROKEN {
            warning!("{MAX_BROKEN} paths failed; further ones are not logged until SIGHUP");
        } else {
            warning!(
                "{}: {} (logsinkd follows no link below {} and never retries this path before \
                 SIGHUP); {whither}",
                self.display(&path),
                std::io::Error::from(e),
                self.target.template.prefix().display()
            );
        }
        self.broken.insert(path);
    }

    /// Closes the least recently written clean file; false if every open file holds records.
    fn evict_one(&mut self) -> bool {
        let Some((&tick, &slot)) = self
            .lru
            .iter()
            .find(|&(_, &s)| self.slots[s].buf.is_empty())
        else {
            return false;
        };
        self.lru.remove(&tick);
        self.slots[slot].file = None;
        self.counters.evictions += 1;
        self.forget_if_unused(slot);
        true
    }

    /// Closes the files written last `idle_close` ago or longer (if clean).
    pub fn housekeep(&mut self, now: Instant) {
        let idle = self.target.idle_close;
        let mut closing = Vec::new();
        for (&tick, &slot) in &self.lru {
            let s = &self.slots[slot];
            if s.last_write + idle > now {
                break;
            }
            if s.buf.is_empty() {
                closing.push((tick, slot));
            }
        }
        for (tick, slot) in closing {
            self.lru.remove(&tick);
            self.slots[slot].file = None;
            self.forget_if_unused(slot);
        }
    }

    /// When `housekeep` next has a file to close: the least recently written clean one's
    /// time. Files holding records are left out: they are not closed, and a deadline of theirs
    /// already past would make the event loop spin (a full disk keeps them so a long while).
    pub fn housekeep_at(&self) -> Option<Instant> {
        self.lru
            .values()
            .map(|&slot| &self.slots[slot])
            .find(|s| s.buf.is_empty())
            .map(|s| s.last_write + self.target.idle_close)
    }

    /// SIGHUP: writes out what it can, then closes every file (each is opened anew on its
    /// next write), forgets the paths that failed, and opens the prefix and the fallback anew.
    pub fn reopen(&mut self) -> Result<()> {
        // The prefix first: if it cannot be opened anew (replaced by a file, no permission),
        // nothing changes and the open files stay in use, as a plain file output keeps its
        // old file when a reopen fails.
        let prefix = open_prefix(self.target.template.prefix(), self.owner)?;
        let _ = self.flush();
        for (_, slot) in std::mem::take(&mut self.lru) {
            self.slots[slot].file = None;
        }
        self.broken.clear();
        let ids: Vec<usize> = self.slots.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.forget_if_unused(id);
        }
        self.prefix = prefix;
        if let Some(fallback) = &mut self.fallback {
            fallback.reopen()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        for (_, s) in &self.slots {
            if let Some(file) = &s.file {
                file.sync_all()
                    .with_context(|| format!("syncing {}", self.display(&s.path)))?;
            }
        }
        if let Some(fallback) = &mut self.fallback {
            fallback.sync()?;
        }
        Ok(())
    }

    fn display(&self, path: &[u8]) -> String {
        format!(
            "{}/{}",
            self.target.template.prefix().display(),
            String::from_utf8_lossy(path)
        )
    }
}

/// Writes all of `buf` (an `O_APPEND` file); what could not be written stays in it.
fn write_all(file: &mut File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == buf.len() {
            break Ok(());
        }
        match file.write(&buf[written..]) {
            Ok(0) => break Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.drain(..written);
    result
}

/// Creates the prefix if missing (0750, given to `owner`) and opens it as an `O_PATH`
/// directory. The prefix itself is the admin's choice: links on the way to it are followed.
fn open_prefix(prefix: &Path, owner: Option<Owner>) -> Result<OwnedFd> {
    // Each missing directory is made (0750) and given to `owner` in turn, from the top, so
    // the daemon's user can reach and write the prefix.
    let missing: Vec<&Path> = prefix.ancestors().take_while(|p| !p.exists()).collect();
    for dir in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o750).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("creating {}", dir.display())));
            }
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to uid {uid} gid {gid}", dir.display()))?;
        }
    }
    let fd = rustix::fs::open(
        prefix,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("opening the directory {}", prefix.display()))?;
    if let (Some((uid, _)), Ok(meta)) = (owner, std::fs::metadata(prefix)) {
        if meta.uid() != uid && meta.uid() != 0 {
            warning!(
                "{} belongs to uid {}, not to the daemon's user (uid {uid}): it may not be able \
                 to create files there",
                prefix.display(),
                meta.uid()
            );
        }
    }
    Ok(fd)
}

/// Opens `path` (relative, `/`-separated, no `.` or `..` components) below `dir` for
/// appending, making missing directories (0750); follows no symbolic link on the way.
pub fn open_below(dir: BorrowedFd<'_>, path: &[u8]) -> Result<File, Errno> {
    let mut components = path.split(|&b| b == b'/').peekable();
    let mut held: Option<OwnedFd> = None;
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    while let Some(name) = components.next() {
        let at = held.as_ref().map_or(dir, |d| d.as_fd());
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        if components.peek().is_none() {
            let fd = rustix::fs::openat(
                at,
                name,
                OFlags::WRONLY
                    | OFlags::APPEND
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY,
                Mode::from_raw_mode(0o640),
            )?;
            // O_NONBLOCK: a FIFO planted there fails (ENXIO) instead of blocking; anything but
            // a regular file is refused.
            let stat = rustix::fs::fstat(&fd)?;
            if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                != rustix::fs::FileType::RegularFile
            {
                return Err(Errno::NXIO);
            }
            let flags = rustix::fs::fcntl_getfl(&fd)?;
            rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
            return Ok(File::from(fd));
        }
        let next = match rustix::fs::openat(at, name, dir_flags, Mode::empty()) {
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o750)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rustix::fs::openat(at, name, dir_flags, Mode::empty())?
            }
            other => other?,
        };
        held = Some(next);
    }
    Err(Errno::INVAL)
}

/// True for failures that retrying will not mend (until someone changes the directory).
fn lasting(e: Errno) -> bool {
    matches!(
        e,
        Errno::ACCESS
            | Errno::PERM
            | Errno::LOOP
            | Errno::NOTDIR
            | Errno::ISDIR
            | Errno::NAMETOOLONG
            | Errno::NXIO
            | Errno::ROFS
            | Errno::INVAL
    )
}

/// `peer_ip` and `peer_port` as ranges of the peer text (`192.0.2.7:514`, `[2001:db8::7]:514`);
/// anything else (a unix peer) is all `peer_ip`, with `peer_port` empty.
fn split_peer(peer: &[u8]) -> ((usize, usize), (usize, usize)) {
    if let Some(colon) = memchr::memrchr(b':', peer) {
        let port = &peer[colon + 1..];
        if !port.is_empty() && port.iter().all(u8::is_ascii_digit) {
            let host = &peer[..colon];
            if host.first() == Some(&b'[') && host.last() == Some(&b']') {
                return ((1, colon - 1), (colon + 1, peer.len()));
            }
            if !host.contains(&b':') && !host.is_empty() {
                return ((0, colon), (colon + 1, peer.len()));
            }
        }
    }
    ((0, peer.len()), (peer.len(), peer.len()))
}

/// `YYYY-MM-DD` and `HH` of `second` in `tz`.
fn date_hour(second: i64, tz: DateTz) -> ([u8; 10], [u8; 2]) {
    let (y, mo, d, h) = match tz {
        DateTz::Utc => {
            let t = time::OffsetDateTime::from_unix_timestamp(second)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            (
                t.year(),
                u8::from(t.month()) as i32,
                t.day() as i32,
                t.hour() as i32,
            )
        }
        DateTz::Local => {
            let t = second as libc::time_t;
            // SAFETY: localtime_r fills the zeroed tm we own from a valid time_t pointer.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            // SAFETY: as above; on failure tm stays zero (rendered as year 1900).
            unsafe { libc::localtime_r(&t, &mut tm) };
            (tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour)
        }
    };
    let text = format!("{:04}-{:02}-{:02}{:02}", y.clamp(0, 9999), mo, d, h);
    let b = text.as_bytes();
    let mut date = [b'0'; 10];
    let mut hour = [b'0'; 2];
    if b.len() == 12 {
        date.copy_from_slice(&b[..10]);
        hour.copy_from_slice(&b[10..]);
    }
    (date, hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(template: &str, max_open: usize) -> FilesSink {
        let super::super::template::Parsed::Template(t) =
            super::super::template::parse(template).unwrap()
        else {
            panic!("{template} has no fields");
        };
        let mut target = FilesTarget::new(t);
        target.max_open = max_open;
        FilesSink::open(&target, Format::Raw, None).unwrap()
    }

    /// Records of five senders land each in its file, in order, through flushes, a cache of
    /// two open files (evictions) and SIGHUP; the backlog is the sum of the batches, whether
    /// queued through `raw_batch` or `record_lines`, and zero after each flush.
    #[test]
    fn batches_evictions_and_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(&format!("{}/{{peer_port}}.log", dir.path().display()), 2);
        s.set_listener(&Arc::from("l"));
        let mut expected: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        for round in 0..6 {
            let mut total = 0;
            for port in 1..=5u16 {
                let peer = format!("10.0.0.1:{port}");
                s.route(1_000_000, peer.as_bytes());
                let line = format!("r{round} p{port}\n");
                if port % 2 == 0 {
                    s.raw_batch().unwrap().extend_from_slice(line.as_bytes());
                } else {
                    s.record_lines(b"t", peer.as_bytes(), line.as_bytes());
                }
                expected
                    .entry(port)
                    .or_default()
                    .extend_from_slice(line.as_bytes());
                total += line.len();
                assert_eq!(s.backlog(), total);
            }
            s.flush().unwrap();
            assert_eq!(s.backlog(), 0);
            assert!(s.counters().open <= 2);
            if round == 2 {
                s.reopen().unwrap();
                assert_eq!(s.counters().open, 0);
            }
        }
        for (port, text) in expected {
            let got = std::fs::read(dir.path().join(format!("{port}.log"))).unwrap();
            assert_eq!(got, text, "port {port}");
        }
        let c = s.counters();
        // Every open was closed by an eviction, by SIGHUP (2 open then) or is open still.
        assert!(c.evictions >= 10, "{c:?}");
        assert_eq!(c.opens, c.evictions + 2 + c.open, "{c:?}");
        // Files idle long enough are closed; slots without records or file are let go.
        s.housekeep(Instant::now() + DEFAULT_IDLE_CLOSE);
        assert_eq!(s.counters().open, 0);
        assert!(s.slots.len() <= 1 && s.by_path.len() == s.slots.len());
    }

    /// A file holding records is never closed for idleness, and sets no deadline (one in the
    /// past would make the event loop spin while a full disk keeps the records there).
    #[test]
    fn dirty_files_set_no_idle_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(&format!("{}/{{peer_port}}.log", dir.path().display()), 4);
        s.route(0, b"10.0.0.1:1");
        s.record_lines(b"t", b"p", b"a\n");
        s.flush().unwrap();
        assert!(s.housekeep_at().is_some());
        s.record_lines(b"t", b"p", b"b\n");
        assert_eq!(s.housekeep_at(), None, "the only open file holds a record");
        s.housekeep(Instant::now() + DEFAULT_IDLE_CLOSE * 2);
        assert_eq!(s.counters().open, 1, "not closed while it holds records");
        s.flush().unwrap();
        s.housekeep(Instant::now() + DEFAULT_IDLE_CLOSE * 2);
        assert_eq!(s.counters().open, 0);
        assert_eq!(std::fs::read(dir.path().join("1.log")).unwrap(), b"a\nb\n");
    }

    /// With message fields each record goes to the file its own fields name; one that does
    /// not parse goes to `-`.
    #[test]
    fn message_fields_place_each_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(
            &format!("{}/{{hostname}}/{{app}}.log", dir.path().display()),
            8,
        );
        assert!(s.per_record());
        s.route(0, b"127.0.0.1:9");
        assert!(
            s.raw_batch().is_none(),
            "no read in place: each record is placed"
        );
        let lines: [&[u8]; 4] = [
            b"<13>1 - web1 nginx - - - a",
            b"<13>1 - db1 postgres - - - b",
            b"<13>1 - web1 nginx - - - c",
            b"not syslog",
        ];
        for line in lines {
            match crate::syslog_parse::parse(line) {
                Some(msg) => s.record_parsed(b"t", b"p", line, &msg),
                None => s.record(b"t", b"p", line),
            }
        }
        s.flush().unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(
            read("web1/nginx.log"),
            "<13>1 - web1 nginx - - - a\n<13>1 - web1 nginx - - - c\n"
        );
        assert_eq!(read("db1/postgres.log"), "<13>1 - db1 postgres - - - b\n");
        assert_eq!(read("-/-.log"), "not syslog\n");
    }

    /// Peer texts split into the address and the port; unix peers are all address.
    #[test]
    fn peers_split() {
        for (peer, ip, port) in [
            ("192.0.2.7:514", "192.0.2.7", "514"),
            ("[2001:db8::7]:51234", "2001:db8::7", "51234"),
            ("unix:pid=12,uid=0", "unix:pid=12,uid=0", ""),
            ("weird", "weird", ""),
        ] {
            let p = peer.as_bytes();
            let (i, o) = split_peer(p);
            assert_eq!(
                (&p[i.0..i.1], &p[o.0..o.1]),
                (ip.as_bytes(), port.as_bytes())
            );
        }
    }

    /// Dates and hours in UTC.
    #[test]
    fn utc_dates() {
        assert_eq!(
            date_hour(1_795_467_901, DateTz::Utc),
            (*b"2026-11-23", *b"21")
        );
        assert_eq!(date_hour(0, DateTz::Utc), (*b"1970-01-01", *b"00"));
    }

    /// Below the prefix no link is followed, at a directory or at the file; directories are
    /// made as needed; a FIFO is refused without blocking.
    #[test]
    fn open_below_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let prefix = open_prefix(dir.path(), None).unwrap();
        let mut f = open_below(prefix.as_fd(), b"a/b/c.log").unwrap();
        f.write_all(b"x\n").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b/c.log")).unwrap(), b"x\n");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        assert_eq!(
            open_below(prefix.as_fd(), b"link/c.log").unwrap_err(),
            Errno::NOTDIR
        );
        std::os::unix::fs::symlink(outside.path().join("t"), dir.path().join("a/t.log")).unwrap();
        assert_eq!(
            open_below(prefix.as_fd(), b"a/t.log").unwrap_err(),
            Errno::LOOP
        );
        assert!(!outside.path().join("t").exists());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let fifo = std::ffi::CString::new(
            dir.path()
                .join("fifo")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(
            open_below(prefix.as_fd(), b"fifo").unwrap_err(),
            Errno::NXIO
        );
    }
}
