//! logsinkd: a network log receiver. `main` parses the command line and the config, acquires
//! every resource that can fail (the pid file's lock, listeners, the output), daemonizes or
//! not, drops privileges, and hands the ready-made resources to the event loop.
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration error.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use logsinkd::config::Config;
use logsinkd::daemon::{self, Readiness};
use logsinkd::diag::{self, Level};
use logsinkd::event_loop::{Server, Settings};
use logsinkd::sink::{Sink, SyslogOptions};
use logsinkd::tls::TlsServer;
use logsinkd::{cli, listen, man};

/// Exit code for a bad command line or configuration (as clap uses for usage errors).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let (cli, given) = cli::Cli::parse_with_matches();
    if cli.man {
        return print_man_page();
    }
    if let Some(shell) = cli.completions {
        return print(&cli::completions(shell), "the completion script");
    }
    let fd_limit = raise_fd_limit();
    let config = match Config::load(&cli, &given, fd_limit) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("logsinkd: error: {e:#}");
            return ExitCode::from(if cli.check_config { 1 } else { EXIT_USAGE });
        }
    };
    let identity = match &config.user {
        None => None,
        Some(user) => match daemon::resolve_identity(user, config.group.as_deref()) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("logsinkd: error: {e:#}");
                return ExitCode::from(if cli.check_config { 1 } else { EXIT_USAGE });
            }
        },
    };
    if cli.check_config {
        // The TLS files are read as the daemon will read them at start (before it drops
        // privileges): each problem names the key and the file.
        if let Some(settings) = &config.tls {
            match TlsServer::load(settings.clone()) {
                Ok((_, warnings)) => {
                    for w in warnings {
                        eprintln!("logsinkd: warning: {w}");
                    }
                }
                Err(e) => {
                    eprintln!("logsinkd: error: {e:#}");
                    return ExitCode::from(1);
                }
            }
        }
        print!("{config}");
        return ExitCode::SUCCESS;
    }
    diag::to_stderr();
    match run(config, identity) {
        Ok(code) => code,
        Err(e) => {
            diag::log(Level::Error, format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(mut config: Config, identity: Option<daemon::Identity>) -> Result<ExitCode> {
    // Everything that can fail at start-up happens before the fork, so the person who typed
    // the command sees the error. Relative paths are resolved first: the daemon moves to `/`.
    let cwd = std::env::current_dir().context("reading the current directory")?;
    config.output.absolutize(&cwd);
    let pid_path = config
        .pid_file
        .as_deref()
        .map(daemon::absolute)
        .transpose()?;
    // Locked first: a second daemon with the same pid file is told so, not "address in use".
    // Dropping it (any return from here on, in the daemon) removes it.
    let mut pid_file = pid_path
        .map(|path| daemon::PidFile::lock(&path, identity.as_ref()))
        .transpose()?;
    // The key is read here, as the starting user (root, often), before the privilege drop:
    // the daemon's user need not be able to read it (a SIGHUP that cannot keeps the old one).
    let tls = match &config.tls {
        Some(settings) => {
            let (server, warnings) = TlsServer::load(settings.clone())?;
            for w in warnings {
                diag::log(Level::Warning, format_args!("{w}"));
            }
            Some(server)
        }
        None => None,
    };
    let listen_tls = &config.listen_tls;
    let mut listeners =
        match listen::from_systemd(&config.inputs, config.metrics_listen, listen_tls)? {
            Some(adopted) => adopted,
            None => listen::bind_all(
                &config.listen,
                &config.listen_udp,
                &config.listen_tls,
                &config.unix,
                config.backlog,
                &config.inputs,
            )?,
        };
    // Bound here unless systemd passed a socket at its address (then that one serves).
    if let (Some(addr), None) = (config.metrics_listen, &listeners.metrics) {
        listeners.metrics = Some(listen::bind(addr, listen::METRICS_BACKLOG)?);
    }
    // Removed at exit (any return from here on), like the pid file.
    let socket_files = std::mem::take(&mut listeners.socket_files);
    let owner = identity.as_ref().map(|id| (id.uid, id.gid));
    let syslog = SyslogOptions {
        facility: config.syslog_facility.clone(),
        protocol: config.syslog_format,
        framing: config.syslog_framing,
    };
    let sink = Sink::open(&config.output, config.format, &syslog, owner)?;

    let mut readiness = if config.foreground {
        Readiness::foreground()
    } else {
        let readiness = daemon::daemonize()?;
        diag::to_syslog();
        readiness
    };
    let started = (|| {
        if let Some(pid_file) = &mut pid_file {
            pid_file.write_pid()?;
        }
        let mut warning = None;
        match &identity {
            Some(id) => {
                daemon::drop_privileges(id)
                    .with_context(|| format!("switching to user {}", id.user))?;
                warning = pid_file.as_ref().and_then(|p| p.removal_warning(&id.user));
            }
            // SAFETY: geteuid cannot fail.
            None if unsafe { libc::geteuid() } == 0 => diag::log(
                Level::Warning,
                format_args!(
                    "running as root; set `user` (--user) to drop privileges after start-up"
                ),
            ),
            None => {}
        }
        let settings = Settings {
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            tls,
            tls_handshake_timeout: config.tls_handshake_timeout,
            tls_max_handshakes: config.tls_max_handshakes,
            target: config.output.to_string(),
        };
        Server::new(listeners, sink, config.max_line, settings).map(|s| (s, warning))
    })();
    let mut server = match started {
        Ok((server, warning)) => {
            if let Some(warning) = warning {
                // Also to the starting command: in daemon mode diagnostics go to syslog.
                diag::log(Level::Warning, format_args!("{warning}"));
                readiness.say(&format!("warning: {warning}"));
            }
            server
        }
        Err(e) => {
            readiness.failed(&e);
            return Err(e);
        }
    };
    for line in server.listening() {
        diag::log(Level::Info, format_args!("{line}"));
        readiness.say(&line);
    }
    server.notify_ready();
    readiness.ready();

    let result = server.run();
    drop(socket_files);
    drop(pid_file);
    let summary = result?;
    if summary.unwritten > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--man`: the roff source of logsinkd(8) on stdout, for packaging.
fn print_man_page() -> ExitCode {
    match man::man_page() {
        Ok(page) => print(&page, "the man page"),
        Err(e) => {
            eprintln!("logsinkd: error: rendering the man page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a generated document (`--man`, `--completions`) to stdout.
fn print(document: &[u8], what: &str) -> ExitCode {
    match std::io::stdout().write_all(document) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logsinkd: error: writing {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one (as systemd advises daemons that do not
/// use select(2)) and returns it; it sizes the default connection cap.
fn raise_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .min(1 << 20)
}
