//! File output: records are batched in one large buffer and appended with `O_APPEND`.
//!
//! The event loop flushes at the end of every iteration that produced records, so nothing
//! waits in memory while the daemon is idle, yet a busy daemon writes big blocks. A failed or
//! short write (disk full) keeps the unwritten bytes at the front of the buffer; they are
//! written first, in order, once the disk takes data again.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::record::{Format, write_record, write_records};

/// Initial buffer size: large enough that a busy daemon writes in big blocks.
const BUF_CAPACITY: usize = 1 << 20;

pub struct FileSink {
    path: PathBuf,
    file: File,
    format: Format,
    /// Records not yet written, oldest first.
    buf: Vec<u8>,
}

fn open_append(path: &Path) -> Result<File> {
    // O_APPEND: every write lands at the current end even if another process (or logrotate's
    // copytruncate) changed the file, so records are never written over.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

impl FileSink {
    pub fn open(path: &Path, format: Format) -> Result<FileSink> {
        Ok(FileSink {
            path: path.to_path_buf(),
            file: open_append(path)?,
            format,
            buf: Vec::with_capacity(BUF_CAPACITY),
        })
    }

    #[inline]
    pub fn record(&mut self, time: &[u8], peer: &[u8], line: &[u8]) {
        write_record(self.format, &mut self.buf, time, peer, line);
    }

    /// Records whole lines that need no change (`Piece::Lines`: each ends in LF, none holds a
    /// CR). In raw format their records are the bytes as received, so they are queued in one
    /// copy.
    pub fn record_lines(&mut self, time: &[u8], peer: &[u8], lines: &[u8]) {
        if self.format == Format::Raw {
            self.buf.extend_from_slice(lines);
        } else {
            write_records(self.format, &mut self.buf, time, peer, lines);
        }
    }

    /// See `Sink::raw_batch`.
    pub fn raw_batch(&mut self) -> Option<&mut Vec<u8>> {
        (self.format == Format::Raw).then_some(&mut self.buf)
    }

    pub fn flush(&mut self) -> Result<()> {
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
    /// the old file if it takes them, else to the new one: nothing is lost either way.
    pub fn reopen(&mut self) -> Result<()> {
        let new = open_append(&self.path)?;
        let _ = self.flush();
        self.file = new;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}
