//! Where a test runs: its own temp dir, whether it may do what needs root, how it says it
//! cannot run here, and a private mount namespace for what it mounts.

/// A fresh directory of the test's own, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("logsinkd-test")
        .tempdir()
        .unwrap()
}

/// True when the tests run as root (CI does): tests needing it say so and return otherwise.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For a test that needs root: false (after saying why the test is skipped) when not root.
pub fn root_for(what: &str) -> bool {
    if !is_root() {
        skip(&format!("needs root to {what}"));
    }
    is_root()
}

/// Says why a test cannot run here. Outside CI the test then passes without its check; in CI
/// (`CI` set), where `.ci/run` installs every peer and runs as root, a skip is a failure.
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "in CI nothing may be skipped: {why}"
    );
    eprintln!("skipped: {why}");
}

/// True if `program` is installed; otherwise says the test cannot run without it (see `skip`)
/// and which Debian package brings it.
pub fn have(program: &str, package: &str) -> bool {
    tool(program, package).is_some()
}

/// Where the program `bin` is installed (the system's bin directories, sbin first, as
/// rsyslogd lives there and root's PATH may not name it).
pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join(bin))
    .find(|p| p.exists())
}

/// The program a test talks to, or None after saying (`skip`) that `package` would install it.
pub fn tool(bin: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = which(bin);
    if found.is_none() {
        skip(&format!(
            "{bin} is not installed (apt-get install {package})"
        ));
    }
    found
}

/// This host's name (gethostname), as logger, rsyslogd and logsinkd take it.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(buf[..end].to_vec()).unwrap()
}

/// A wrapper for `DaemonBuilder::wrapped` (or any command) that runs it in a private mount
/// namespace after `script` (sh, with `arg` as `$0`) has set that namespace up; the script ends
/// in `exec "$@"`. What the script mounts is seen by the daemon alone.
pub fn in_private_mounts<'a>(script: &'a str, arg: &'a str) -> [&'a str; 8] {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        arg,
    ]
}
