//! Integration tests: each starts the real `logsinkd` binary and talks to it over real TCP (and
//! UDP) on 127.0.0.1, with real signals and real files (see util.rs for the harness).

mod access;
mod completions;
mod config;
mod daemon_mode;
mod faults;
mod journal;
mod limits;
mod load;
mod man;
mod metrics;
mod privileges;
mod proxy;
mod records;
mod shutdown;
mod signals;
mod soak_run;
mod socket_activation;
mod syslog;
mod syslog_faults;
mod syslog_input;
mod syslog_relay;
mod systemd;
mod systemd_notify;
mod templates;
mod tls;
mod udp;
mod unix;
mod util;
