//! A private HAProxy in front of logsinkd, on loopback: its config in the test's temp dir, run
//! in the foreground (`haproxy -db`), killed when dropped. It forwards one TCP port to one
//! backend, with a PROXY protocol header (`send-proxy` for version 1, `send-proxy-v2`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{DEADLINE, free_port, tcp_listening, tool, wait_until};

/// The HAProxy configuration the tests use (and REFERENCE.md shows): a TCP frontend on
/// `listen` forwarding to logsinkd at `backend`, with `send` (`send-proxy` or
/// `send-proxy-v2`).
pub fn haproxy_config(listen: SocketAddr, backend: SocketAddr, send: &str) -> String {
    format!(
        "global\n    maxconn 1000\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n\
         frontend logs\n    bind {listen}\n    default_backend logsinkd\n\n\
         backend logsinkd\n    server logsinkd1 {backend} {send}\n"
    )
}

/// A running haproxy, killed when dropped.
pub struct Haproxy {
    child: Child,
    /// Where its frontend listens.
    pub addr: SocketAddr,
}

impl Haproxy {
    /// Starts haproxy with `haproxy_config` in `dir` and waits until its frontend listens
    /// (polled with a deadline, in /proc/net/tcp: a probing connect would itself be proxied
    /// to logsinkd, and reach it as a header then a disconnect, or as a connection cut before
    /// its header). None, after saying why (see `skip`), when haproxy is not installed.
    pub fn start(dir: &Path, backend: SocketAddr, send: &str) -> Option<Haproxy> {
        let bin = tool("haproxy", "haproxy")?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(addr, backend, send)).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawning haproxy");
        let mut proxy = Haproxy { child, addr };
        wait_until("haproxy to listen", DEADLINE, || {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("haproxy exited at start: {status}");
            }
            tcp_listening(addr.port()).then_some(())
        });
        Some(proxy)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
