//! Target-servers: in-process on a free loopback port (their counts read
//! directly), or the real binary (its counts read from `/stats`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use target_server::{ServerHandle, Stats};

use crate::ca::Leaf;
use crate::http::Client;
use crate::process::{Proc, spawn_ready};

/// A real target-server on a free loopback port, in this process.
pub fn target(threads: usize) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    target_server::start(listener, threads).expect("start target-server")
}

/// A target-server serving HTTPS with `leaf`'s certificate, in this process.
pub fn target_tls(threads: usize, leaf: &Leaf) -> ServerHandle {
    let tls = target_server::tls_config(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes()).expect("a TLS config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    target_server::start_tls(listener, threads, tls).expect("start target-server over TLS")
}

/// The `target-server` binary of this workspace.
pub fn target_server_bin() -> PathBuf {
    crate::bins::workspace_bin("target-server")
}

/// Starts the `target-server` binary `bin` on a free loopback port (plus
/// `extra` flags) and waits for the line saying where it listens.
pub fn spawn_target(bin: impl Into<PathBuf>, extra: &[&str]) -> Proc {
    spawn_ready(Command::new(bin.into()).args(["--listen", "127.0.0.1:0"]).args(extra).stderr(Stdio::null()))
}

impl Proc {
    /// A plain-HTTP target-server process's counts, from its `/stats`.
    pub fn target_stats(&self) -> Stats {
        let response = Client::connect(self.socket_addr()).get("/stats");
        assert_eq!(response.status, 200, "GET /stats: {}", response.text());
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("/stats is not Stats ({e}): {}", response.text()))
    }
}

/// Waits (at most 20 s) until the target has served at least `n` responses to `path`.
pub fn served_at_least(server: &ServerHandle, path: &str, n: u64) {
    let t = crate::wait::within(Duration::from_secs(20), || server.stats().path_total(path) >= n);
    assert!(t.is_some(), "the target never served {n} requests to {path}");
}
