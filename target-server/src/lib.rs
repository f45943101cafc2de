//! The demo target for Volley: a small, fast hyper HTTP/1.1 server that counts
//! what it serves, so tests can compare a load report with the truth.
//!
//! Each of `--threads` OS threads runs its own current-thread tokio runtime
//! and accept loop on a clone of one listening socket, like nginx's workers:
//! a connection lives on one thread, and the hot `/hello` path touches only a
//! counter of its own thread (a relaxed atomic nobody else writes).
//!
//! # Layout
//! - [`start`] / [`ServerHandle`]: serve an already-bound listener (tests bind `127.0.0.1:0`).
//! - [`routes`]: the routes and their answers.
//! - [`stats`]: the served-response counters and their JSON form.
//! - [`Args`] / [`run`]: the binary's flags and entry.

pub mod routes;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use stats::Counters;
pub use stats::Stats;

/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Flags of the `target-server` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "target-server", version, about = "Volley's test target: GET /hello answers \"Hello World!\".")]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Worker threads, each with its own accept loop (default: available cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server has served so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// [`SHUTDOWN_GRACE`]) and joins the worker threads.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // A handle dropped without shutdown() still stops its threads.
        let _ = self.shutdown.send(true);
    }
}

/// Starts serving `listener` with `threads` worker threads; returns at once.
pub fn start(listener: std::net::TcpListener, threads: usize) -> std::io::Result<ServerHandle> {
    let threads = threads.max(1);
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let counters = Arc::new(Counters::new(threads));
    let (shutdown, rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = listener.try_clone()?;
        let counters = counters.clone();
        let rx = rx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("target-server-{i}"))
                .spawn(move || worker(i, listener, counters, rx))?,
        );
    }
    Ok(ServerHandle { addr, counters, shutdown, threads: handles })
}

fn worker(index: usize, listener: std::net::TcpListener, counters: Arc<Counters>, mut shutdown: watch::Receiver<bool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker {index} cannot start a runtime: {e}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("worker {index} cannot use the listener: {e}");
                return;
            }
        };
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // briefly instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let counters = counters.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let counters = counters.clone();
                        async move { Ok::<_, std::convert::Infallible>(routes::answer(req, &counters, index).await) }
                    });
                    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::task::spawn_local(async move {
                        // Clients that vanish mid-request are normal under load.
                        let _ = conn.await;
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
            tracing::warn!("worker {index}: in-flight requests dropped after {SHUTDOWN_GRACE:?}");
        }
    });
}

/// Runs the `target-server` binary: serve until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let threads =
        args.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |t| t as usize);
    let listener =
        std::net::TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let server = start(listener, threads).context("cannot start the server")?;
    // Printed on stdout so scripts and tests can learn a port-0 address.
    println!("target-server listening on http://{} with {threads} threads", server.local_addr());
    tracing::info!(addr = %server.local_addr(), threads, "target-server ready");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start a runtime")?;
    rt.block_on(shutdown_signal());
    tracing::info!("shutting down");
    server.shutdown();
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
