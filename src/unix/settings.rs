//! The settings of unix-domain sockets: `listen_unix` (`--listen-unix`), `listen_unix_dgram`
//! (`--listen-unix-dgram`), `unix_mode` (`--unix-mode`), `unix_owner` (`--unix-owner`) and
//! `unix_group` (`--unix-group`). The keys are declared with the others in `config.rs`; their
//! checks, and how `--check-config` prints them, live here.
//!
//! The mode is written as octal digits in a string (`"0660"`): TOML has octal integers
//! (`0o660`) but does not keep the base, so a plain `660` would silently mean 0o1224.

use std::ffi::CString;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use serde::ser::{Serialize, SerializeMap, Serializer};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// The unix keys as written (`config::Raw`'s fields), before defaults and validation.
#[derive(Debug, Default, Clone)]
pub struct RawUnix {
    pub listen: Option<Vec<PathBuf>>,
    pub listen_dgram: Option<Vec<PathBuf>>,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl RawUnix {
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

/// The unix keys as `--check-config` prints them (flattened into the config's TOML): the
/// mode as an octal string, owner and group as written, and only when set.
impl Serialize for UnixSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = |paths: &[PathBuf]| -> Vec<String> {
            paths.iter().map(|p| p.display().to_string()).collect()
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("listen_unix", &text(&self.listen))?;
        map.serialize_entry("listen_unix_dgram", &text(&self.listen_dgram))?;
        map.serialize_entry("unix_mode", &format!("{:04o}", self.access.mode))?;
        if let Some(owner) = &self.access.owner {
            map.serialize_entry("unix_owner", &owner.name)?;
        }
        if let Some(group) = &self.access.group {
            map.serialize_entry("unix_group", &group.name)?;
        }
        map.end()
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

    /// The unix settings of a config file's text.
    fn raw(text: &str) -> Result<UnixSettings> {
        crate::config::Config::from_toml(text, 1024).map(|c| c.unix)
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
    }

    /// The printed keys read back to the same settings.
    #[test]
    fn display_round_trips() {
        let text = "listen_unix = [\"/a b\"]\nunix_mode = \"600\"\nunix_group = \"root\"";
        let printed = crate::config::Config::from_toml(text, 1024)
            .unwrap()
            .to_string();
        let again = crate::config::Config::from_toml(&printed, 1024).unwrap();
        assert_eq!(again.to_string(), printed);
        assert_eq!(again.unix, raw(text).unwrap());
        assert!(printed.contains("unix_mode = \"0600\""), "{printed}");
    }
}
