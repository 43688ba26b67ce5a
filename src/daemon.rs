//! Becoming a classic daemon (the `daemonize` crate), the pid file, and dropping privileges.
//!
//! The command that starts the daemon must only succeed once the daemon really serves. So a
//! pipe is made before the fork: the daemon writes its `listening on` lines and then `ok` (or
//! the error that stopped it) into it, and the starting process prints those and exits 0 only
//! after `ok`. If the daemon dies first the pipe closes empty and the start fails.

use std::ffi::CString;
use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use daemonize::{Daemonize, Outcome};

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
pub fn daemonize(pid_file: Option<&Path>) -> Result<Readiness> {
    let (reader, writer) = std::io::pipe().context("creating the readiness pipe")?;
    let mut daemon = Daemonize::new().working_directory("/").umask(0o027);
    if let Some(path) = pid_file {
        // daemonize creates it, writes the pid and holds a lock on it: a second daemon with
        // the same pid file fails to start.
        daemon = daemon.pid_file(path);
    }
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

/// Writes the pid file in the foreground (daemonize writes it in daemon mode).
pub fn write_pid_file(path: &Path) -> Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing pid file {}", path.display()))
}

/// Removes the pid file at exit, if it still holds this process's pid.
pub fn remove_pid_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .map(|s| s.trim() == std::process::id().to_string())
        .unwrap_or(false);
    if ours {
        if let Err(e) = std::fs::remove_file(path) {
            crate::diag::warning!("removing pid file {}: {e}", path.display());
        }
    }
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
