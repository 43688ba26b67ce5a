//! Shell completions: the scripts the package ships are the ones `logsinkd --completions SHELL`
//! generates from the command line definition, and real bash, with the bash-completion
//! package, completes logsinkd's options with them.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// Each shell the package ships completions for, and the script's path in the repository.
const PACKAGED: &[(&str, &str)] = &[
    ("bash", "packaging/completions/logsinkd.bash"),
    ("zsh", "packaging/completions/_logsinkd"),
    ("fish", "packaging/completions/logsinkd.fish"),
];

/// What bash-completion's users source (from /etc/bash.bashrc or their profile).
const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

/// `logsinkd --completions SHELL`.
fn generated(shell: &str) -> Vec<u8> {
    let out = Command::new(BIN)
        .args(["--completions", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "--completions {shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The completions bash offers for `line` (the word under the cursor is its last), through
/// bash-completion and the packaged script: the way an interactive shell asks the function
/// `complete -p logsinkd` names.
fn bash_completes(line: &str) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(PACKAGED[0].1);
    let ask = r#"
        source "$1"
        source "$2"
        spec=$(complete -p logsinkd) || exit 1
        function=${spec#* -F }
        function=${function%% *}
        read -r -a COMP_WORDS <<< "$3"
        [[ $3 == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        COMP_LINE=$3
        COMP_POINT=${#COMP_LINE}
        previous=${COMP_WORDS[COMP_CWORD-1]}
        "$function" logsinkd "${COMP_WORDS[COMP_CWORD]}" "$previous"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", ask, "bash", BASH_COMPLETION])
        .arg(&script)
        .arg(line)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The packaged completion scripts are exactly the generated ones: an option added or changed
/// without regenerating them fails here.
#[test]
fn packaged_completions_are_the_generated_ones() {
    for (shell, path) in PACKAGED {
        let packaged =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_default();
        assert!(
            packaged == generated(shell),
            "{path} is out of date; regenerate it with \
             `cargo run -q -- --completions {shell} > {path}`"
        );
    }
}

/// Real bash with bash-completion completes `logsinkd --li` to the five `--listen` options,
/// and offers every option but the hidden ones after `--`.
#[test]
fn bash_completes_options() {
    if !Path::new(BASH_COMPLETION).exists() {
        skip(&format!(
            "{BASH_COMPLETION} is missing (apt-get install bash-completion)"
        ));
        return;
    }
    assert_eq!(
        bash_completes("logsinkd --li"),
        [
            "--listen",
            "--listen-udp",
            "--listen-tls",
            "--listen-unix",
            "--listen-unix-dgram"
        ]
    );
    let all = bash_completes("logsinkd -f --");
    for option in ["--config", "--user", "--group", "--check-config", "--help"] {
        assert!(all.iter().any(|o| o == option), "{option} not in {all:?}");
    }
    for hidden in ["--man", "--completions"] {
        assert!(!all.iter().any(|o| o == hidden), "{hidden} is offered");
    }
}
