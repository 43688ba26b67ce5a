//! The full-size soak run (issue: robustness): `cargo bench --bench soak`.
//! 256 clients, 1,000,000 numbered lines in total with random disconnects and reconnects,
//! 50 mv+HUP rotations 20 ms apart, then SIGTERM; every line checked across all files.
//! Under `cargo test` (no `--bench` argument) it does nothing: the CI-sized run is the
//! integration test `load::soak_scaled_down`, which shares this code.

#[path = "../tests/integration/soak_run.rs"]
mod soak_run;
#[path = "../tests/integration/util.rs"]
mod util;

use std::time::Duration;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let size = soak_run::Size {
        clients: 256,
        lines: 1_000_000,
        rotations: 50,
        rotation_gap: Duration::from_millis(20),
    };
    let report = soak_run::run(&size);
    println!(
        "soak: {} lines from {} clients over {} connections, {} files, {:.2?}: none lost, \
         duplicated, corrupted or reordered",
        report.lines, size.clients, report.connections, report.files, report.elapsed
    );
}
