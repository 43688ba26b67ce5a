//! logsinkd(8): the page the package ships is the one `logsinkd --man` generates; mandoc's
//! lint, groff with every warning on and man(1) take it without a word; it documents every
//! option and config key `--help` knows, in the sections a daemon's page has.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// The man page the package installs, kept in the repository so that `cargo deb` takes it
/// from a fixed path without a build step of its own.
const PACKAGED_MAN_PAGE: &str = "packaging/logsinkd.8";

/// The page's sections, in their order.
const SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "CONFIGURATION",
    "SIGNALS",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
    "EXAMPLES",
    "SEE ALSO",
];

/// Options that are not settings, so not config keys.
const NOT_SETTINGS: &[&str] = &["config", "check-config", "help", "version"];

/// `logsinkd --man` prints the page generated from the command line definition.
fn generated_man_page() -> Vec<u8> {
    let out = Command::new(BIN).arg("--man").output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "--man: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The generated page as a file, for the tools that read one.
fn page_file(dir: &Path) -> PathBuf {
    let page = dir.join("logsinkd.8");
    std::fs::write(&page, generated_man_page()).unwrap();
    page
}

/// The long options `logsinkd --help` lists, without their dashes.
fn long_options() -> Vec<String> {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let options: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::trim_start)
        .filter_map(|line| {
            // `-c, --config <FILE>  ...` or `--listen-udp <ADDR>  ...`
            let line = match line.split_once(", ") {
                Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
                _ => line,
            };
            let option = line.strip_prefix("--")?.split_whitespace().next()?;
            Some(option.to_string())
        })
        .collect();
    assert!(options.len() > 10, "{options:?}");
    options
}

/// The output of a tool that must say nothing on stderr; its stdout as text.
fn quiet(out: Output, what: &str) -> String {
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The packaged man page is exactly the one generated from the command line definition: an
/// option's help changed without regenerating the page fails here.
#[test]
fn packaged_man_page_is_the_generated_one() {
    let page = generated_man_page();
    let packaged = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(PACKAGED_MAN_PAGE))
        .unwrap_or_default();
    assert!(
        packaged == page,
        "{PACKAGED_MAN_PAGE} is out of date; regenerate it with \
         `cargo run -q -- --man > {PACKAGED_MAN_PAGE}`"
    );
}

/// `mandoc -T lint` finds nothing to say about the page, not even a style remark.
#[test]
fn man_page_passes_mandoc_lint() {
    if !have("mandoc", "mandoc") {
        return;
    }
    let dir = temp_dir();
    let page = page_file(dir.path());
    let out = Command::new("mandoc")
        .args(["-T", "lint"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "mandoc -T lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// groff with every warning on formats the page without one, man(1) shows it without one,
/// and the formatted page has a daemon's sections, in order.
#[test]
fn man_page_renders_without_warnings() {
    if !have("groff", "groff-base") || !have("man", "man-db") {
        return;
    }
    let dir = temp_dir();
    let page = page_file(dir.path());
    let checked = Command::new("groff")
        .args(["-ww", "-z", "-man"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(quiet(checked, "groff -ww -z").is_empty());
    let groff = Command::new("groff")
        // -P-cbou: plain text, no bold or underline by overstriking, to look into.
        .args(["-ww", "-man", "-Tutf8", "-P-cbou"])
        .arg(&page)
        .output()
        .unwrap();
    let shown = quiet(groff, "groff -ww -Tutf8");
    let headings: Vec<&str> = shown
        .lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter(|line| SECTIONS.contains(line))
        .collect();
    assert_eq!(headings, SECTIONS, "{shown}");
    let man = Command::new("man")
        .arg("--warnings")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    quiet(man, "man --warnings -l");
}

/// Every long option `--help` lists is an entry of OPTIONS, and every one that is a setting is
/// listed as a config key under CONFIGURATION; the hidden options are not on the page.
#[test]
fn man_page_documents_every_option_and_key() {
    let page = String::from_utf8(generated_man_page()).unwrap();
    let section = |name: &str| {
        let start = page
            .find(&format!(".SH {name}\n"))
            .unwrap_or_else(|| panic!("no section {name}"));
        let rest = &page[start + 1..];
        &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
    };
    let options = section("OPTIONS");
    let configuration = section("CONFIGURATION");
    for option in long_options() {
        let roff = format!("\\fB\\-\\-{}\\fR", option.replace('-', "\\-"));
        assert!(options.contains(&roff), "OPTIONS lacks --{option}");
        if !NOT_SETTINGS.contains(&option.as_str()) {
            let key = option.replace('-', "_");
            assert!(
                configuration.contains(&format!("\\fB{key}\\fR = ")),
                "CONFIGURATION lacks the key {key}"
            );
        }
    }
    for hidden in ["\\-\\-man", "\\-\\-completions"] {
        assert!(!page.contains(hidden), "{hidden} is hidden");
    }
}
