//! Agents: the real `agent` binary on a free port, or an agent served in
//! this process through [`agent::serve`] on a 127.0.0.1:0 listener (for
//! tests of the gRPC interface rather than of the binary).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::process::{Address, Proc, spawn_ready};

/// The `agent` binary of this workspace.
pub fn agent_bin() -> PathBuf {
    crate::bins::workspace_bin("agent")
}

/// Starts a real agent process on a free loopback port and reads its
/// address from the line it prints when ready.
pub fn spawn_agent(extra: &[&str]) -> Proc {
    spawn_agent_on("127.0.0.1:0", extra)
}

/// Starts a real agent process listening on `listen` (a token from the
/// environment never leaks in: each test says what it wants).
pub fn spawn_agent_on(listen: &str, extra: &[&str]) -> Proc {
    spawn_agent_bin(agent_bin(), listen, extra)
}

/// [`spawn_agent_on`] with the binary given: a test of the agent crate
/// passes its own `env!("CARGO_BIN_EXE_agent")`.
pub fn spawn_agent_bin(bin: impl Into<PathBuf>, listen: &str, extra: &[&str]) -> Proc {
    spawn_ready(
        Command::new(bin.into())
            .args(["--listen", listen])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("VOLLEY_TOKEN")
            .stderr(Stdio::inherit()),
    )
}

/// Starts a real agent on a free loopback port under `prlimit` (util-linux)
/// with its open-file limit, soft and hard, set to `files`: an agent short
/// of descriptors, as on a host with a low `ulimit -n`.
pub fn spawn_agent_with_open_files(files: u64, extra: &[&str]) -> Proc {
    let limit = format!("--nofile={files}:{files}");
    spawn_ready(
        Command::new("prlimit")
            .arg(limit)
            .arg(agent_bin())
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("VOLLEY_TOKEN")
            .stderr(Stdio::inherit()),
    )
}

/// An agent serving gRPC in this process, on its own thread and runtime so
/// that it serves the same from a plain `#[test]` and a `#[tokio::test]`.
/// Stopped (and its thread joined) when dropped.
pub struct InProcessAgent {
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An agent with `threads` worker threads and no token or TLS, in this process.
pub fn in_process_agent(threads: usize) -> InProcessAgent {
    let mut config = agent::ServeConfig::plain(threads);
    config.io = io_from_env();
    InProcessAgent::start(config)
}

/// The I/O engine `VOLLEY_IO` names (`auto`, the default, `uring`, `epoll`),
/// resolved as the agent binary resolves its `--io` (which reads the same
/// variable): so `VOLLEY_IO=epoll cargo test` and `VOLLEY_IO=uring cargo
/// test` run the engine tests on either engine.
pub fn io_from_env() -> agent::uring::Resolved {
    use agent::uring::IoChoice;
    let choice = match std::env::var("VOLLEY_IO").as_deref() {
        Ok("uring") => IoChoice::Uring,
        Ok("epoll") => IoChoice::Epoll,
        Ok("auto") | Err(_) => IoChoice::Auto,
        Ok(other) => panic!("VOLLEY_IO={other}: expected auto, uring or epoll"),
    };
    agent::uring::resolve(choice).unwrap_or_else(|e| panic!("VOLLEY_IO: {e}"))
}

impl InProcessAgent {
    /// Serves `config` on a free loopback port.
    pub fn start(config: agent::ServeConfig) -> InProcessAgent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the agent");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                // Dropping the server, rather than a graceful shutdown, so a
                // test that leaves a stream open cannot hang its own end.
                tokio::select! {
                    served = agent::serve(listener, config, std::future::pending()) => {
                        served.expect("the in-process agent serves");
                    }
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        });
        InProcessAgent { addr, stop: Some(stop), thread: Some(thread) }
    }
}

impl Address for InProcessAgent {
    fn address(&self) -> String {
        self.addr.clone()
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the agent's thread is reported by the test that
            // drops it, unless that test is already panicking.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the in-process agent panicked");
            }
        }
    }
}
