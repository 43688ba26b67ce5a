//! The command line, defined once with clap's derive API, and the logsinkd(8) man page
//! rendered from it (`logsinkd --man`), so that the page and `--help` can never disagree.
//!
//! Every setting is both an option here and a key of the TOML config file: both come from the
//! fields of `config::Raw`, flattened in below. A value given here wins over the file. Only
//! the options that are not settings (`--config`, `--check-config`) are defined in this file.

use std::io;
use std::path::PathBuf;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

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
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Print the logsinkd(8) man page (roff) and exit. Hidden: packaging keeps its output as
    /// `packaging/logsinkd.8`, and a test holds the two equal.
    #[arg(long = "man", hide = true)]
    pub man: bool,
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

/// The man page section: logsinkd is a system daemon.
const SECTION: &str = "8";

/// The roff source of logsinkd(8): the options from the command line definition, with the
/// sections it cannot express written by hand.
pub fn man_page() -> io::Result<Vec<u8>> {
    // No date, so that the page is reproducible; it must still be a non-empty argument to .TH,
    // since an empty one is dropped and the source and manual names would move into its place.
    let man = clap_mangen::Man::new(Cli::command())
        .section(SECTION)
        .date(" ")
        .manual("System Administration");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Sections written by hand in roff: what the packaged files are and how the daemon reacts to
/// signals. Everything about options comes from the definitions above and in `config::Raw`.
const EXTRA_SECTIONS: &str = r#".SH SIGNALS
.TP
\fBSIGHUP\fR
Reopen the output (after log rotation). Under systemd, \fBsystemctl reload logsinkd\fR sends it.
.TP
\fBSIGTERM\fR
Stop accepting, record every connected client's partial line, flush the output and exit 0.
.SH SYSTEMD
With \fB\-\-foreground\fR under systemd the daemon reports readiness, reloads, shutdown and
counters with sd_notify(3) (\fBType=notify\fR), answers the watchdog, and logs to the journal
with priorities. When started by a socket unit it serves the sockets passed in
\fBLISTEN_FDS\fR instead of binding the \fBlisten\fR addresses.
.SH FILES
.TP
\fI/etc/logsinkd/logsinkd.toml\fR
The configuration read by the packaged service; every key is an option above, with
underscores for dashes.
.TP
\fI/var/log/logsinkd/\fR
The default output directory (\fBLogsDirectory=\fR of the service).
.TP
\fI/usr/lib/systemd/system/logsinkd.service\fR, \fI/usr/lib/systemd/system/logsinkd.socket\fR
The service, started alone or by the socket.
.TP
\fI/usr/share/logsinkd/socket\-activation.conf\fR
A drop\-in for logsinkd.service that takes all network access of its own away from a
socket\-activated service.
.TP
\fI/etc/logrotate.d/logsinkd\fR
Daily and size\-based rotation; reopens the output with \fBsystemctl reload\fR.
.SH "SEE ALSO"
systemctl(1), systemd.exec(5), logrotate(8), syslog(3)
"#;
