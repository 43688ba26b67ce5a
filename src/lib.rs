//! logsinkd as a library: everything but start-up (`main.rs`) lives here, so the fuzz targets,
//! property tests and benchmarks exercise the very code the daemon runs.
//! README's "Where things live" maps each concept to its file.

pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod diag;
pub mod event_loop;
pub mod format;
pub mod framing;
pub mod idle;
pub mod listen;
pub mod notify;
pub mod output_health;
pub mod recorder;
mod simd;
pub mod sink;
pub mod stats;
