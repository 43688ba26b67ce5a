//! logsinkd as a library: everything but start-up (`main.rs`) lives here, so the fuzz targets,
//! property tests and benchmarks exercise the very code the daemon runs.
//! README's "Where things live" maps each concept to its file.

pub mod cli;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod diag;
pub mod event_loop;
pub mod idle;
pub mod line_buffer;
pub mod listen;
pub mod notify;
pub mod output_health;
pub mod record;
pub mod recorder;
pub mod sink;
pub mod stats;
pub mod unix;
