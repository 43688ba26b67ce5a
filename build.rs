//! Renders the logsinkd(8) man page from the command line definition in `src/cli.rs`, so the page
//! and `--help` can never disagree: there is one definition and nothing is hand-maintained.
//!
//! The page is written to `$OUT_DIR/logsinkd.8`, where build outputs belong, and to `man/` in
//! the profile's directory (`target/release/man/`) as `logsinkd.8` and, gzipped as Debian policy
//! wants (`gzip -9n`), `logsinkd.8.gz`. Those paths do not depend on the build script's hash, so
//! `cargo deb` can package the page and the tests can find it next to the binary. cargo-deb gzips
//! man pages itself, but not files under `target/`, hence the `.gz` made here.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use flate2::{Compression, GzBuilder};

/// The CLI module itself, compiled a second time for the build script. `#[path]` rather than
/// `include!`, so that its `//!` docs stay legal. Its fields are only read by the daemon.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

/// The man page section: logsinkd is a system daemon.
const SECTION: &str = "8";

fn main() -> io::Result<()> {
    println!("cargo::rerun-if-changed=src/cli.rs");
    println!("cargo::rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let page = render()?;
    let in_out_dir = out_dir.join("logsinkd.8");
    fs::write(&in_out_dir, &page)?;

    // OUT_DIR is <target>/<profile>/build/logsinkd-<hash>/out.
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let man_dir = profile_dir.join("man");
        fs::create_dir_all(&man_dir)?;
        write_if_changed(&man_dir.join("logsinkd.8"), &page)?;
        write_if_changed(&man_dir.join("logsinkd.8.gz"), &gzip(&page)?)?;
    }
    Ok(())
}

/// The roff source of logsinkd(8), with the FILES and SEE ALSO sections that the command line
/// definition cannot express.
fn render() -> io::Result<Vec<u8>> {
    let command = cli::Cli::command();
    // No date, so that the page is reproducible; it must still be a non-empty argument to .TH,
    // since an empty one is dropped and the source and manual names would move into its place.
    let man = clap_mangen::Man::new(command)
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
/// signals. Everything about options comes from `src/cli.rs`.
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

/// `gzip -9n`: no file name and no time stamp in the header, so the same page gives the same bytes.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// Rewrites `path` only when its content differs, so that its modification time stays put and
/// nothing that depends on it is redone.
fn write_if_changed(path: &Path, content: &[u8]) -> io::Result<()> {
    match fs::read(path) {
        Ok(old) if old == content => Ok(()),
        _ => fs::write(path, content),
    }
}
