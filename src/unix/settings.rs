//! The config keys and options of unix-domain sockets, kept apart from `config.rs` so that it
//! only delegates to them: `listen_unix` (`--listen-unix`), `listen_unix_dgram`
//! (`--listen-unix-dgram`), `unix_mode` (`--unix-mode`), `unix_owner` (`--unix-owner`) and
//! `unix_group` (`--unix-group`).
//!
//! The mode is written as octal digits in a string (`"0660"`): TOML has octal integers
//! (`0o660`) but does not keep the base, so a plain `660` would silently mean 0o1224.

use std::ffi::CString;
use std::fmt;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};

use crate::cli::Cli;

/// The keys this file reads.
pub const KEYS: &[&str] = &[
    "listen_unix",
    "listen_unix_dgram",
    "unix_mode",
    "unix_owner",
    "unix_group",
];

/// Default mode of a socket logsinkd creates: its owner and group may connect (connecting
/// needs write permission), nobody else.
pub const DEFAULT_MODE: u32 = 0o660;

/// A user or group: as written, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub id: u32,
}

/// Who may connect to the sockets logsinkd creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Permission bits, at most 0o777.
    pub mode: u32,
    /// Owner of the socket files (default: the user logsinkd starts as).
    pub owner: Option<Named>,
    /// Group of the socket files (default: the group logsinkd starts as).
    pub group: Option<Named>,
}

impl Default for Access {
    fn default() -> Access {
        Access {
            mode: DEFAULT_MODE,
            owner: None,
            group: None,
        }
    }
}

/// The unix-domain part of the effective configuration.
#[derive(Debug, Clone, Default)]
pub struct UnixSettings {
    /// Paths of unix stream sockets to listen on (lines, as over TCP).
    pub listen: Vec<PathBuf>,
    /// Paths of unix datagram sockets (each datagram a message, as over UDP).
    pub listen_dgram: Vec<PathBuf>,
    pub access: Access,
}

impl UnixSettings {
    /// Sockets these settings bind.
    pub fn sockets(&self) -> usize {
        self.listen.len() + self.listen_dgram.len()
    }
}

/// The unix keys as written, before defaults and validation.
#[derive(Debug, Default, Clone)]
pub struct RawUnix {
    listen: Option<Vec<PathBuf>>,
    listen_dgram: Option<Vec<PathBuf>>,
    mode: Option<String>,
    owner: Option<String>,
    group: Option<String>,
}

impl RawUnix {
    /// Takes one key of the config file; `Ok(false)` if it is not one of `KEYS`.
    pub fn take(&mut self, key: &str, value: toml::Value) -> Result<bool> {
        match key {
            "listen_unix" => self.listen = Some(value_as(key, value)?),
            "listen_unix_dgram" => self.listen_dgram = Some(value_as(key, value)?),
            "unix_mode" => self.mode = Some(value_as(key, value)?),
            "unix_owner" => self.owner = Some(name_value(key, value)?),
            "unix_group" => self.group = Some(name_value(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Options on the command line win over the file.
    pub fn apply_cli(&mut self, cli: &Cli) {
        if !cli.listen_unix.is_empty() {
            self.listen = Some(cli.listen_unix.clone());
        }
        if !cli.listen_unix_dgram.is_empty() {
            self.listen_dgram = Some(cli.listen_unix_dgram.clone());
        }
        for (slot, given) in [
            (&mut self.mode, &cli.unix_mode),
            (&mut self.owner, &cli.unix_owner),
            (&mut self.group, &cli.unix_group),
        ] {
            if given.is_some() {
                slot.clone_from(given);
            }
        }
    }

    pub fn resolve(self) -> Result<UnixSettings> {
        let listen = self.listen.unwrap_or_default();
        let listen_dgram = self.listen_dgram.unwrap_or_default();
        for (key, paths) in [
            ("listen_unix", &listen),
            ("listen_unix_dgram", &listen_dgram),
        ] {
            if let Some(empty) = paths.iter().find(|p| p.as_os_str().is_empty()) {
                bail!("key `{key}`: an empty path ({empty:?})");
            }
        }
        let mode = match self.mode.as_deref() {
            None => DEFAULT_MODE,
            Some(text) => parse_mode(text).ok_or_else(|| {
                anyhow!(
                    "key `unix_mode`: `{text}` is not a mode: octal digits from 0 to 0777, \
                     as a string (\"0660\")"
                )
            })?,
        };
        let owner = self
            .owner
            .map(|name| resolve_id("unix_owner", name, user_id))
            .transpose()?;
        let group = self
            .group
            .map(|name| resolve_id("unix_group", name, group_id))
            .transpose()?;
        Ok(UnixSettings {
            listen,
            listen_dgram,
            access: Access { mode, owner, group },
        })
    }
}

/// Writes the unix keys as TOML, for `--check-config`.
impl fmt::Display for UnixSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let list = |paths: &[PathBuf]| {
            let quoted: Vec<String> = paths.iter().map(|p| q(&p.display().to_string())).collect();
            quoted.join(", ")
        };
        writeln!(f, "listen_unix = [{}]", list(&self.listen))?;
        writeln!(f, "listen_unix_dgram = [{}]", list(&self.listen_dgram))?;
        writeln!(f, "unix_mode = {}", q(&format!("{:04o}", self.access.mode)))?;
        if let Some(owner) = &self.access.owner {
            writeln!(f, "unix_owner = {}", q(&owner.name))?;
        }
        if let Some(group) = &self.access.group {
            writeln!(f, "unix_group = {}", q(&group.name))?;
        }
        Ok(())
    }
}

/// `0660`, `660`, `0o660` → 0o660; at most 0o777 (set-id and sticky bits mean nothing on a
/// socket).
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|&m| m <= 0o777)
}

fn value_as<T: serde::de::DeserializeOwned>(key: &str, value: toml::Value) -> Result<T> {
    let shown = value.to_string();
    value.try_into().map_err(|e: toml::de::Error| {
        anyhow!("key `{key}`: {} (found {shown})", e.message().trim_end())
    })
}

/// A user or group as a name or a number (`unix_owner = 0` and `unix_owner = "0"` alike).
fn name_value(key: &str, value: toml::Value) -> Result<String> {
    match value {
        toml::Value::Integer(n) => Ok(n.to_string()),
        v => value_as(key, v),
    }
}

/// A name, or a number taken as the id itself.
fn resolve_id(key: &str, name: String, lookup: fn(&str) -> Option<u32>) -> Result<Named> {
    let id = match name.parse::<u32>() {
        Ok(id) => Some(id),
        Err(_) => lookup(&name),
    };
    match id {
        Some(id) => Ok(Named { name, id }),
        None => bail!(
            "key `{key}`: no such {} `{name}`",
            if key == "unix_owner" { "user" } else { "group" }
        ),
    }
}

fn user_id(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: getpwnam returns null or a pointer to static storage, read at once (start-up is
    // single-threaded).
    let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
    // SAFETY: non-null: a valid passwd entry.
    (!pw.is_null()).then(|| unsafe { (*pw).pw_uid })
}

fn group_id(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(c_name.as_ptr()) };
    // SAFETY: non-null: a valid group entry.
    (!gr.is_null()).then(|| unsafe { (*gr).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Result<UnixSettings> {
        let table: toml::Table = text.parse().unwrap();
        let mut raw = RawUnix::default();
        for (key, value) in table {
            assert!(raw.take(&key, value)?, "{key} is a unix key");
        }
        raw.resolve()
    }

    /// Every key is read; names and numbers both name users and groups.
    #[test]
    fn keys_are_read() {
        let s = raw(
            "listen_unix = [\"/run/a.sock\"]\nlisten_unix_dgram = [\"/run/log\", \"b\"]\n\
             unix_mode = \"0620\"\nunix_owner = \"root\"\nunix_group = 0\n",
        )
        .unwrap();
        assert_eq!(s.listen, vec![PathBuf::from("/run/a.sock")]);
        assert_eq!(s.sockets(), 3);
        assert_eq!(s.access.mode, 0o620);
        assert_eq!(s.access.owner.as_ref().map(|o| o.id), Some(0));
        assert_eq!(
            s.access.group.as_ref().map(|g| (g.name.as_str(), g.id)),
            Some(("0", 0))
        );
        let defaults = raw("").unwrap();
        assert_eq!(defaults.access, Access::default());
        assert_eq!(defaults.sockets(), 0);
    }

    /// Modes are octal strings up to 0777.
    #[test]
    fn modes() {
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("666"), Some(0o666));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("0"), Some(0));
        for bad in ["", "0o", "0678", "1777", "4755", "rw-rw----", "-1", "00660"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    /// Errors name the key and the problem.
    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| format!("{:#}", raw(t).unwrap_err());
        assert!(err("unix_mode = 660").contains("key `unix_mode`"));
        assert!(err("unix_mode = \"0999\"").contains("key `unix_mode`: `0999` is not a mode"));
        assert!(
            err("unix_owner = \"no-such-user-here\"").contains("no such user `no-such-user-here`")
        );
        assert!(err("unix_group = \"no-such-group-here\"").contains("no such group"));
        assert!(err("listen_unix = \"/one/path\"").contains("key `listen_unix`"));
        assert!(
            err("listen_unix_dgram = [\"\"]").contains("key `listen_unix_dgram`: an empty path")
        );
        let mut r = RawUnix::default();
        assert!(!r.take("listen", toml::Value::Boolean(true)).unwrap());
    }

    /// The printed keys read back to the same settings.
    #[test]
    fn display_round_trips() {
        let s =
            raw("listen_unix = [\"/a b\"]\nunix_mode = \"600\"\nunix_group = \"root\"").unwrap();
        let again = raw(&s.to_string()).unwrap();
        assert_eq!(again.to_string(), s.to_string());
        assert!(s.to_string().contains("unix_mode = \"0600\""));
    }
}
