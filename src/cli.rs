//! The command line, defined once with clap's derive API. The logsinkd(8) man page
//! (`logsinkd --man`, see man.rs) and the shell completions (`logsinkd --completions SHELL`)
//! are generated from it, so that they and `--help` can never disagree.
//!
//! Every setting is both an option here and a key of the TOML config file: both come from the
//! fields of `config::Raw`, flattened in below. A value given here wins over the file. Only
//! the options that are not settings (`--config`, `--check-config`) are defined in this file.
//!
//! Short options are the ones administrators know from other daemons: `-c` config file (named,
//! nginx), `-f` foreground (named, dhcpd), `-p` pid file (syslog-ng), `-u` user (syslog-ng,
//! named), `-g` group (syslog-ng), `-t` test the configuration (sshd, nginx). Whoever types
//! rsyslogd's or sshd's `-f FILE` is stopped by the usage error for the stray path, never
//! misread. Options without such a precedent have none: `-d`, which logger(1) uses for UDP,
//! means "debug" to most daemons, so `--listen-udp` has only its long form.

use std::path::PathBuf;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use clap_complete::Shell;

use crate::config::Raw;

/// A fast, lossless network log receiver: every line clients send over TCP (or UDP) lands whole,
/// once and in order in a log file or in syslog.
#[derive(Parser, Debug, Default, Clone)]
#[command(name = "logsinkd", version, about, long_about = None)]
pub struct Cli {
    /// Read settings from this TOML file (options on the command line win)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Raw,

    /// Validate the configuration, print the effective settings and exit (0 valid, 1 invalid)
    #[arg(short = 't', long = "check-config")]
    pub check_config: bool,

    /// Print the logsinkd(8) man page (roff) and exit. Hidden: packaging keeps its output as
    /// `packaging/logsinkd.8`, and a test holds the two equal.
    #[arg(long = "man", hide = true)]
    pub man: bool,

    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) and exit.
    /// Hidden: packaging keeps those of bash, zsh and fish in `packaging/completions/`, and a
    /// test holds them equal to this output.
    #[arg(long = "completions", value_name = "SHELL", hide = true)]
    pub completions: Option<Shell>,
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's usage error (2) on a bad one.
    /// Also returns clap's matches, which tell an option given from one left out: the
    /// command line overrides the config file with exactly the options given.
    pub fn parse_with_matches() -> (Cli, ArgMatches) {
        let matches = Cli::command().get_matches();
        match Cli::from_arg_matches(&matches) {
            Ok(cli) => (cli, matches),
            Err(e) => e.format(&mut Cli::command()).exit(),
        }
    }
}

/// The completion script for `shell`, generated from the command line definition.
pub fn completions(shell: Shell) -> Vec<u8> {
    // clap_complete offers hidden options too: complete a copy of the command without them.
    let full = Cli::command();
    let mut visible = clap::Command::new("logsinkd")
        .version(env!("CARGO_PKG_VERSION"))
        .args(
            full.get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .cloned(),
        );
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible, "logsinkd", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Config;

    /// The short options, all of them: each means what it means to syslog-ng, named, sshd or
    /// nginx, so none surprises an administrator.
    #[test]
    fn short_options_follow_daemon_conventions() {
        let mut cmd = Cli::command();
        // Adds -h and -V.
        cmd.build();
        let mut shorts: Vec<(char, String)> = cmd
            .get_arguments()
            .filter_map(|arg| Some((arg.get_short()?, arg.get_long()?.to_string())))
            .collect();
        shorts.sort();
        let expected = [
            ('V', "version"),
            ('c', "config"),
            ('f', "foreground"),
            ('g', "group"),
            ('h', "help"),
            ('l', "listen"),
            ('o', "output"),
            ('p', "pid-file"),
            ('t', "check-config"),
            ('u', "user"),
        ];
        let expected: Vec<(char, String)> =
            expected.iter().map(|&(c, l)| (c, l.to_string())).collect();
        assert_eq!(shorts, expected);
    }

    /// `-u USER -g GROUP -t` reach the settings as `--user`, `--group` and `--check-config`.
    #[test]
    fn user_and_group_shorts() {
        let given = Cli::command()
            .try_get_matches_from(["logsinkd", "-u", "nobody", "-g", "nogroup", "-t"])
            .unwrap();
        let cli = Cli::from_arg_matches(&given).unwrap();
        assert!(cli.check_config);
        let config = Config::load(&cli, &given, 1024).unwrap();
        assert_eq!(config.user.as_deref(), Some("nobody"));
        assert_eq!(config.group.as_deref(), Some("nogroup"));
        assert!(config.listen_udp.is_empty());
    }
}
