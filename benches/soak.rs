//! `cargo bench --bench soak`: the soak run at full size. 256 clients send 1,000,000 numbered
//! lines in total with random disconnects and reconnects, through 50 mv+HUP rotations 20 ms
//! apart, then SIGTERM; every line is checked across all files.
//!
//! The soak run is integration-test code (`tests/integration/soak_run.rs`, on the test
//! harness): CI runs it scaled down as `load::soak_scaled_down`, and the full size is the
//! ignored test `load::soak_full_size`. This bench only runs that test through cargo,
//! optimized, so the code lives in one place and nothing here includes test files. Under
//! `cargo test` (no `--bench` argument) it does nothing.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", "--release", "--test", "integration", "--"])
        .args([
            "--ignored",
            "--exact",
            "load::soak_full_size",
            "--nocapture",
        ])
        .status()
        .expect("running cargo test for the full-size soak");
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
