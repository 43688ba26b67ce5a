//! logsinkd as a library: everything but start-up (`main.rs`) lives here, so the fuzz targets,
//! property tests and benchmarks exercise the very code the daemon runs.
//! README's "Where things live" maps each concept to its file.

pub mod accept_gate;
pub mod cli;
pub mod config;
pub mod connection;
pub mod connections;
pub mod daemon;
pub mod datagram;
pub mod diag;
pub mod event_loop;
pub mod idle;
pub mod line_buffer;
pub mod listen;
pub mod listener;
pub mod notify;
pub mod output;
pub mod record;
pub mod recorder;
pub mod sink;
pub mod stats;
pub mod unix;
