//! The Debian package: `cargo deb` builds it, `dpkg -c` lists what it should, and `dpkg -i` on
//! a booted machine runs its maintainer scripts for real: logsinkd.service enabled and started,
//! logsinkd.socket shipped but left alone; `dpkg --purge` stops the service and removes it all.
//! The man page and shell completions it ships are the ones `logsinkd --man` and `logsinkd
//! --completions` generate, and the units' `Documentation=` finds the page.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::machine::{self, Machine, describe};
use super::{ADDR, LOG, MANIFEST_DIR};
use crate::util::split_record;

/// What `dpkg -c` must list (besides directories and the README).
const PACKAGED: &[&str] = &[
    "./usr/bin/logsinkd",
    "./usr/share/man/man8/logsinkd.8.gz",
    "./usr/share/bash-completion/completions/logsinkd",
    "./usr/share/zsh/vendor-completions/_logsinkd",
    "./usr/share/fish/vendor_completions.d/logsinkd.fish",
    "./usr/lib/systemd/system/logsinkd.service",
    "./usr/lib/systemd/system/logsinkd.socket",
    "./usr/share/logsinkd/socket-activation.conf",
    "./etc/logsinkd/logsinkd.toml",
    "./etc/logrotate.d/logsinkd",
];

/// Where the package puts each shell's completions: the directories each shell (with
/// bash-completion for bash) loads them from by the command's name.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/logsinkd"),
    ("zsh", "usr/share/zsh/vendor-completions/_logsinkd"),
    ("fish", "usr/share/fish/vendor_completions.d/logsinkd.fish"),
];

/// The files dpkg keeps an administrator's changes of.
const CONFFILES: &[&str] = &["/etc/logrotate.d/logsinkd", "/etc/logsinkd/logsinkd.toml"];

/// Builds the .deb into `dir` with `cargo deb`, in a target directory of its own so that the
/// release build never waits for the lock of the build running these tests.
fn build_deb(dir: &Path) -> PathBuf {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_logsinkd"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("deb-test");
    let deb = dir.join("logsinkd.deb");
    let out = Command::new(env!("CARGO"))
        .args(["deb", "--fast", "--output"])
        .arg(&deb)
        .current_dir(MANIFEST_DIR)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("running cargo deb");
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        describe(&out)
    );
    deb
}

/// The .deb's logsinkd.8.gz unpacks to what `logsinkd --man` prints, and its completion scripts
/// are what `logsinkd --completions SHELL` prints: packaging took what this very command line
/// definition generates.
fn assert_generated_files_packaged(deb: &Path, dir: &Path) {
    let unpacked = dir.join("unpacked");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let page = Command::new("gzip")
        .arg("-dc")
        .arg(unpacked.join("usr/share/man/man8/logsinkd.8.gz"))
        .output()
        .unwrap();
    assert!(page.status.success(), "{}", describe(&page));
    let generated = Command::new(crate::util::BIN)
        .arg("--man")
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", describe(&generated));
    assert!(
        page.stdout == generated.stdout,
        "the packaged man page is not the generated one"
    );
    for (shell, path) in COMPLETIONS {
        let packaged = std::fs::read(unpacked.join(path)).unwrap();
        let generated = Command::new(crate::util::BIN)
            .args(["--completions", shell])
            .output()
            .unwrap();
        assert!(generated.status.success(), "{}", describe(&generated));
        assert!(
            packaged == generated.stdout,
            "the packaged {shell} completions are not the generated ones"
        );
    }
}

fn cargo_deb_missing() -> bool {
    let out = Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output();
    !out.is_ok_and(|o| o.status.success())
}

/// The .deb lists its files; dpkg -i enables and starts the service; purge removes it all.
#[test]
fn deb_lists_its_files_and_installs_as_a_running_service() {
    if cargo_deb_missing() {
        crate::util::skip("cargo-deb is not installed (cargo install cargo-deb --locked)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());

    let listing = Command::new("dpkg").arg("-c").arg(&deb).output().unwrap();
    assert!(listing.status.success(), "{}", describe(&listing));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for expected in PACKAGED {
        assert!(
            paths.contains(expected),
            "dpkg -c lacks {expected}:\n{listing}"
        );
    }
    let binary = listing
        .lines()
        .find(|l| l.ends_with(" ./usr/bin/logsinkd"))
        .unwrap();
    assert!(
        binary.starts_with("-rwxr-xr-x root/root") || binary.starts_with("-rwxr-xr-x 0/0"),
        "{binary}"
    );
    let conffiles = Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles")
        .output()
        .unwrap();
    let conffiles = String::from_utf8_lossy(&conffiles.stdout).into_owned();
    let mut listed: Vec<&str> = conffiles.lines().map(str::trim).collect();
    listed.sort_unstable();
    assert_eq!(listed, CONFFILES);
    assert_generated_files_packaged(&deb, dir.path());

    if let Some(why) = machine::unavailable() {
        crate::util::skip(&format!("the installation part: {why}"));
        return;
    }
    let machine = Machine::boot(&[]);
    // Debian's container images forbid starting services from maintainer scripts with a
    // policy-rc.d; a real host has none. Removing it in the machine's /usr overlay leaves the
    // host's in place.
    machine.ok("rm", &["-f", "/usr/sbin/policy-rc.d"]);
    std::fs::copy(&deb, machine.path("/var/tmp/logsinkd.deb")).unwrap();
    machine.ok("dpkg", &["-i", "/var/tmp/logsinkd.deb"]);

    assert_eq!(machine.show("logsinkd.service", "UnitFileState"), "enabled");
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "active");
    assert_eq!(machine.show("logsinkd.socket", "UnitFileState"), "disabled");
    assert_eq!(machine.show("logsinkd.socket", "ActiveState"), "inactive");
    machine
        .connect(ADDR)
        .write_all(b"from the installed package\n")
        .unwrap();
    let records = super::wait_for_records(&machine, LOG, 1);
    assert_eq!(split_record(&records[0]).2, "from the installed package");
    assert!(
        machine
            .ok("man", &["-w", "logsinkd"])
            .trim()
            .ends_with("/man8/logsinkd.8.gz")
    );
    // Documentation=man:logsinkd(8) is checked against the installed pages.
    let verify = machine.run(
        "systemd-analyze",
        &["verify", "logsinkd.service", "logsinkd.socket"],
    );
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "systemd-analyze verify of the installed package:\n{}",
        describe(&verify)
    );

    machine.ok("dpkg", &["--purge", "logsinkd"]);
    assert_eq!(machine.show("logsinkd.service", "ActiveState"), "inactive");
    for gone in [
        "/usr/bin/logsinkd",
        "/usr/lib/systemd/system/logsinkd.service",
        "/etc/logsinkd",
        "/var/log/logsinkd",
        "/var/log/private/logsinkd",
    ] {
        assert!(
            !machine.path(gone).exists(),
            "{gone} is still there after purge"
        );
    }
}
