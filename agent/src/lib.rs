//! The Volley agent: a gRPC service that runs load plans and streams results.
//!
//! A controller connects, asks what the agent is, hands it a plan; the agent's
//! worker threads send the requests and record results, and the service streams
//! deltas back about once a second. The same code runs as the `agent` binary on
//! each load host and embedded in the controller on a single machine.
//!
//! # Layout
//! - [`plan`]: a plan from the wire, checked and resolved.
//! - [`http1`]: the lean HTTP/1.1 client connection (the hot path).
//! - [`engine`]: worker threads, connections, per-thread recorders.
//! - [`service`]: the gRPC service.
//! - [`serve`], [`Args`], [`run`]: serving on a listener (the Volley service
//!   and the standard `grpc.health.v1` service, for Kubernetes probes); the
//!   binary's flags and entry.

pub mod engine;
pub mod http1;
pub mod plan;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use tokio_stream::wrappers::TcpListenerStream;
use volley_proto::agent_server::AgentServer;

pub use service::AgentService;

/// The port agents listen on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7070;

/// Worker threads by default: one per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Flags of the `agent` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "agent", version, about = "Volley agent: runs load plans from a Volley controller over gRPC.")]
pub struct Args {
    /// Address to serve gRPC on (port 7070 by default; use port 0 for any free port).
    #[arg(long, default_value = "0.0.0.0:7070", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Worker threads for runs whose plan does not say (default: available cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Check the flags, print what the agent would do, and exit without listening.
    #[arg(long)]
    pub dry_run: bool,
}

/// Serves the agent on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    threads: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // The overall status ("") starts as SERVING and stays so while the process
    // serves: a busy agent is still healthy, and marking it not ready would
    // drop it from a headless Service's DNS in the middle of a run.
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(AgentServer::new(AgentService::new(threads)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Runs the `agent` binary: serve on `--listen` until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let threads = args.threads.map_or_else(default_threads, |t| t as usize);
    if args.dry_run {
        // Lets deployment files be checked against the real flags without
        // binding a port (see controller/tests/manifests.rs).
        println!("agent dry run: would listen on {} with {threads} worker threads", args.listen);
        return Ok(());
    }
    // The gRPC side is light; the load runs on the engine's own threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        // Printed on stdout so scripts and tests can learn a port-0 address.
        println!("agent listening on {addr} with {threads} worker threads");
        tracing::info!(%addr, threads, "agent ready");
        serve(listener, threads, shutdown_signal()).await.context("gRPC server failed")?;
        tracing::info!("agent stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
