//! Becoming a classic daemon (the `daemonize` crate), the pid file, and dropping privileges.
//!
//! The command that starts the daemon must only succeed once the daemon really serves. So a
//! pipe is made before the fork: the daemon writes its `listening on` lines and then `ok` (or
//! the error that stopped it) into it, and the starting process prints those and exits 0 only
//! after `ok`. If the daemon dies first the pipe closes empty and the start fails.
//!
//! The pid file is written by root, often in a directory others can write, so it is opened
//! like the output (no symbolic link, regular files only, see `sink::open_regular`), never
//! truncated before its lock is ours, and handed to `user`. Its lock is taken before the fork
//! and lives on in the daemon (a flock belongs to the open file, which the fork shares), so a
//! second daemon with the same pid file fails in the starting command, saying why.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use daemonize::{Daemonize, Outcome};

use crate::sink::{FileId, chown_to, file_id, open_regular, still_names};

/// The daemon's end of the readiness pipe; `None` in the foreground.
pub struct Readiness(Option<PipeWriter>);

impl Readiness {
    pub fn foreground() -> Readiness {
        Readiness(None)
    }

    /// Passes a line for the starting command to print on its stderr.
    pub fn say(&mut self, line: &str) {
        if let Some(pipe) = &mut self.0 {
            let _ = writeln!(pipe, "{line}");
        }
    }

    /// The daemon serves: the starting command exits 0.
    pub fn ready(mut self) {
        self.say("ok");
    }

    /// The daemon could not start: the starting command prints this and exits 1.
    pub fn failed(mut self, error: &anyhow::Error) {
        self.say(&format!("error: {error:#}"));
    }
}

/// Forks into the background. Returns in the daemon only; the starting process waits for
/// the daemon's word and exits with 0 (ready) or 1.
pub fn daemonize() -> Result<Readiness> {
    let (reader, writer) = std::io::pipe().context("creating the readiness pipe")?;
    // Not daemonize's own pid file: it follows symbolic links (see `PidFile`).
    let daemon = Daemonize::new().working_directory("/").umask(0o027);
    match daemon.execute() {
        Outcome::Parent(result) => {
            drop(writer);
            let code = match result {
                Err(e) => {
                    eprintln!("logsinkd: error: daemonizing: {e}");
                    1
                }
                Ok(_) => wait_for_daemon(reader),
            };
            std::process::exit(code);
        }
        Outcome::Child(result) => {
            drop(reader);
            match result {
                Ok(_) => Ok(Readiness(Some(writer))),
                Err(e) => {
                    let mut r = Readiness(Some(writer));
                    let err = anyhow!("daemonizing: {e}");
                    r.say(&format!("error: {err:#}"));
                    Err(err)
                }
            }
        }
    }
}

/// In the starting process: relays the daemon's lines, returns the exit code.
fn wait_for_daemon(reader: std::io::PipeReader) -> i32 {
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        if line == "ok" {
            return 0;
        }
        eprintln!("logsinkd: {line}");
        if line.starts_with("error:") {
            return 1;
        }
    }
    eprintln!("logsinkd: error: the daemon exited before it was ready");
    1
}

/// The pid file, locked from start-up to exit. Dropping it removes it (or, if the daemon's
/// user may not, empties it: readers take an empty pid file as stale).
pub struct PidFile {
    path: PathBuf,
    file: File,
    /// Device and inode of the file, so that the removal at exit never deletes another file
    /// put in its place.
    id: FileId,
}

impl PidFile {
    /// Opens and locks the pid file, before the fork. With `owner`, a missing directory is
    /// created for that user (as systemd's `RuntimeDirectory=` would), so the daemon can
    /// remove the file at exit, and the file is given to the user.
    pub fn lock(path: &Path, owner: Option<&Identity>) -> Result<PidFile> {
        if let (Some(id), Some(dir)) = (owner, path.parent()) {
            let missing =
                std::fs::symlink_metadata(dir).is_err_and(|e| e.kind() == ErrorKind::NotFound);
            if missing && !dir.as_os_str().is_empty() {
                create_dir_for(dir, id)?;
            }
        }
        // Neither O_TRUNC nor a write before the lock: a running daemon's pid stays intact.
        let (mut file, meta) = open_regular(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o644),
        )
        .context("pid file")?;
        if meta.nlink() > 1 {
            // Truncating a hard link would truncate the file it links to.
            bail!(
                "pid file {} has {} hard links; refusing to write it",
                path.display(),
                meta.nlink()
            );
        }
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::WouldBlock {
                return Err(e).with_context(|| format!("locking pid file {}", path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            bail!(
                "pid file {} is locked by a running process{holder}: is logsinkd already running?",
                path.display()
            );
        }
        chown_to(&file, &meta, owner.map(|id| (id.uid, id.gid)), path)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
            id: file_id(&meta),
        })
    }

    /// Writes this process's pid (in the daemon, after the fork).
    pub fn write_pid(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| {
                self.file
                    .write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)
            })
            .with_context(|| format!("writing pid file {}", self.path.display()))
    }

    /// After the switch to `user`: a warning if that user cannot remove the file at exit.
    pub fn removal_warning(&self, user: &str) -> Option<String> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let c_dir = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: access(2) with a valid C string. It checks the real uid, which is the
        // user's by now: exactly whether unlinking will be allowed (the file is the user's,
        // so a sticky directory such as /tmp does not stand in the way).
        let writable = unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
        (!writable).then(|| {
            format!(
                "pid file {}: user {user} cannot write its directory {}, so at exit the pid \
                 file is emptied rather than removed; give the directory to {user}, or name a \
                 pid file in a directory that does not exist yet (logsinkd then creates it \
                 for {user}, e.g. /run/logsinkd/logsinkd.pid)",
                self.path.display(),
                dir.display()
            )
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if !still_names(&self.path, self.id) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::PermissionDenied {
                crate::diag::warning!(
                    "removing pid file {}: {e}; emptying it",
                    self.path.display()
                );
            }
            // Through the fd opened before the privilege drop, so this works as the user.
            let _ = self.file.set_len(0);
        }
    }
}

/// Creates the pid file's missing directory (its parent must exist) owned by the user.
fn create_dir_for(dir: &Path, id: &Identity) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating directory {} for the pid file", dir.display()))?;
    // lchown: should the directory be swapped for a link meanwhile, the link is what changes.
    std::os::unix::fs::lchown(dir, Some(id.uid), Some(id.gid))
        .with_context(|| format!("giving directory {} to user {}", dir.display(), id.user))
}

/// Resolved `--user` / `--group`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Looks up the user (and group, else the user's primary group) before anything is started.
pub fn resolve_identity(user: &str, group: Option<&str>) -> Result<Identity> {
    let c_user = CString::new(user).map_err(|_| anyhow!("user `{user}`: invalid name"))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read before any other call.
    let pw = unsafe { libc::getpwnam(c_user.as_ptr()) };
    if pw.is_null() {
        bail!("key `user`: no such user `{user}`");
    }
    // SAFETY: pw is non-null and points to a valid passwd.
    let (uid, primary_gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    let gid = match group {
        None => primary_gid,
        Some(group) => {
            let c_group =
                CString::new(group).map_err(|_| anyhow!("group `{group}`: invalid name"))?;
            // SAFETY: as for getpwnam.
            let gr = unsafe { libc::getgrnam(c_group.as_ptr()) };
            if gr.is_null() {
                bail!("key `group`: no such group `{group}`");
            }
            // SAFETY: gr is non-null.
            unsafe { (*gr).gr_gid }
        }
    };
    Ok(Identity {
        user: user.to_string(),
        uid,
        gid,
    })
}

/// Switches to the identity for good: supplementary groups, then gid, then uid.
pub fn drop_privileges(id: &Identity) -> Result<()> {
    // SAFETY: plain system calls on integers; checked below.
    unsafe {
        if libc::setgroups(1, &id.gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgroups");
        }
        if libc::setgid(id.gid) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setgid {}", id.gid));
        }
        if libc::setuid(id.uid) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setuid {}", id.uid));
        }
        // Regaining root must be impossible now.
        if id.uid != 0 && libc::setuid(0) == 0 {
            bail!("could still regain root after dropping privileges");
        }
    }
    Ok(())
}

/// Makes a path absolute against the current directory (the daemon changes to `/`).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
