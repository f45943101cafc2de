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
//! - [`http2`]: HTTP/2 (`--http2`): stream slots sharing h2 connections.
//! - [`engine`]: worker threads, connections, per-thread recorders.
//! - [`uring`]: the io_uring engine (`--io`), plain HTTP/1.1 on monoio.
//! - [`resolve`]: the target's addresses, resolved again while a run goes.
//! - [`service`]: the gRPC service.
//! - [`security`]: the token check and the limits a controller cannot override.
//! - [`metrics`]: `--metrics-listen`, the agent's own health for Prometheus.
//! - [`listen`]: the listener: deadlines and a cap for connections without a
//!   call, backoff on accept errors, the open-file limit.
//! - [`serve`], [`Args`], [`run`]: serving on a listener (the Volley service
//!   and the standard `grpc.health.v1` service, for Kubernetes probes); the
//!   binary's flags and entry.

pub mod connect;
pub mod engine;
pub mod http1;
pub mod http2;
pub mod listen;
pub mod metrics;
pub mod plan;
pub mod resolve;
pub mod scenario;
pub mod security;
pub mod service;
pub mod tls;
pub mod uring;

use std::future::Future;
use std::net::SocketAddr;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use volley_proto::agent_server::AgentServer;

use security::{Auth, Limits, TargetPattern};
pub use service::AgentService;
use volley_common::parse_duration;
use volley_proto::auth::Token;

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
    /// Address to serve gRPC on; loopback by default, so other hosts need e.g.
    /// `--listen 0.0.0.0:7070 --token SECRET` (use port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Worker threads for runs whose plan does not say (default: available cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Check the flags, print what the agent would do, and exit without listening.
    #[arg(long)]
    pub dry_run: bool,
    /// Shared secret every controller call must carry (or set VOLLEY_TOKEN).
    #[arg(long, env = "VOLLEY_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Serve gRPC over TLS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require controllers to present a client certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Allow listening on a non-loopback address with neither a token nor mutual TLS.
    #[arg(long)]
    pub insecure: bool,
    /// Targets plans may name: host, *.suffix, IP or CIDR, each with an optional
    /// :PORT or :LOW-HIGH (repeatable, or comma-separated); default: any target.
    #[arg(long = "allow-target", value_name = "PATTERN", value_delimiter = ',')]
    pub allow_target: Vec<TargetPattern>,
    /// Source addresses plans may bind their connections to (controller
    /// --source-addr): addresses, ranges A-B or CIDRs, comma-separated, or
    /// `any`; default: loopback only (127.0.0.0/8, ::1).
    #[arg(long = "allow-source", value_name = "LIST", default_value = "127.0.0.0/8,::1")]
    pub allow_source: volley_proto::source::SourceAddrs,
    /// Most connections one run may hold.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Highest request rate one run may ask (plans without a rate are then refused).
    #[arg(long, value_name = "R")]
    pub max_rate: Option<f64>,
    /// Longest run (e.g. 10m); count-mode runs are stopped when it passes.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_duration: Option<Duration>,
    /// Largest request body a plan may carry, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = security::DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Time a new connection has to make its first call with the token
    /// before it is closed (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = volley_common::parse_nonzero_duration)]
    pub auth_timeout: Duration,
    /// Serve the agent's own health (CPU time, threads, runs, refusals, busy)
    /// for Prometheus on ADDR, under /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// The I/O engine for plain http:// HTTP/1.1 runs: auto (io_uring if this
    /// host allows it, else epoll), uring (or refuse to start), epoll.
    #[arg(long, value_enum, value_name = "ENGINE", default_value = "auto", env = "VOLLEY_IO")]
    pub io: uring::IoChoice,
}

/// How an agent serves: threads, who may call it, what it may be asked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Worker threads for plans that do not say.
    pub threads: usize,
    /// The shared secret calls must carry, if any.
    pub token: Option<Token>,
    /// TLS (and mutual TLS) for the gRPC server.
    pub tls: Option<ServerTlsConfig>,
    /// Limits plans are checked against.
    pub limits: Limits,
    /// Time a connection has for its first authenticated call.
    pub auth_timeout: Duration,
    /// The I/O engine for plain HTTP/1.1 runs, resolved (see [`uring::resolve`]).
    pub io: uring::Resolved,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            threads: default_threads(),
            token: None,
            tls: None,
            limits: Limits::default(),
            auth_timeout: listen::DEFAULT_AUTH_TIMEOUT,
            io: uring::Resolved::default(),
        }
    }
}

impl ServeConfig {
    /// A plain agent with `threads` worker threads: no token, no TLS, no limits.
    pub fn plain(threads: usize) -> ServeConfig {
        ServeConfig { threads, ..Default::default() }
    }
}

/// A flag combination the agent refuses: exit code 2, like other usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

impl Args {
    /// Checks the flags and builds the serving configuration; errors name the
    /// flag. Refuses a non-loopback listen address with neither a token nor
    /// mutual TLS unless `--insecure`.
    pub fn config(&self) -> Result<ServeConfig, UsageError> {
        self.checked_config().map_err(|e| UsageError(format!("{e:#}")))
    }

    fn checked_config(&self) -> anyhow::Result<ServeConfig> {
        let threads = self.threads.map_or_else(default_threads, |t| t as usize);
        let token = self.token.as_deref().and_then(Token::new);
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let read = |flag: &str, p: &PathBuf| {
                    std::fs::read(p).with_context(|| format!("{flag}: cannot read {}", p.display()))
                };
                let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
                let mut tls = ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &self.tls_client_ca {
                    tls = tls.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
                }
                Some(tls)
            }
            _ => None,
        };
        let mutual = tls.is_some() && self.tls_client_ca.is_some();
        if !self.listen.ip().is_loopback() && token.is_none() && !mutual && !self.insecure {
            anyhow::bail!(
                "--listen {}: refusing to take orders from anyone on a non-loopback address; set --token (or \
                 VOLLEY_TOKEN) or mutual TLS (--tls-cert, --tls-key, --tls-client-ca), or pass --insecure",
                self.listen
            );
        }
        if let Some(r) = self.max_rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
            anyhow::bail!("--max-rate: {r} is not a rate above 0");
        }
        let limits = Limits {
            allow: self.allow_target.clone(),
            max_connections: self.max_connections,
            max_rate: self.max_rate,
            max_duration: self.max_duration,
            max_body: self.max_body,
            open_files: None,
            allow_source: self.allow_source.clone(),
        };
        let io = uring::resolve(self.io).map_err(anyhow::Error::msg)?;
        Ok(ServeConfig { threads, token, tls, limits, auth_timeout: self.auth_timeout, io })
    }
}

/// Serves the agent on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with_metrics(listener, None, config, shutdown).await
}

/// [`serve`], and `/metrics` of the agent's health on `metrics` if given
/// (in the background, for as long as the runtime runs).
pub async fn serve_with_metrics(
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // The overall status ("") starts as SERVING and stays so while the process
    // serves: a busy agent is still healthy, and marking it not ready would
    // drop it from a headless Service's DNS in the middle of a run.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
    if let Some(tls) = config.tls {
        builder = builder.tls_config(tls)?;
    }
    // Plans carry the request body: accept messages as large as the largest
    // body this agent allows (its --max-body), so that limit is the one asked.
    let max_message = volley_proto::limits::max_plan_message(config.limits.max_body);
    let guard = listen::Guard::new(config.auth_timeout, listen::waiting_cap(config.limits.open_files));
    let agent = AgentService::new(config.threads, config.limits).with_io(config.io);
    if let Some(listener) = metrics {
        let a = agent.clone();
        let registry = metrics::registry(agent.counters(), move || a.busy());
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, registry, std::future::pending()).await {
                tracing::warn!("the metrics listener failed: {e}");
            }
        });
    }
    let service = AgentServer::new(agent).max_decoding_message_size(max_message);
    // The health service carries no token: probes cannot send one, and it
    // tells nothing but "serving".
    builder
        .add_service(health)
        .add_service(tonic::service::interceptor::InterceptedService::new(service, Auth::new(config.token)))
        .serve_with_incoming_shutdown(listen::incoming(listener, guard), shutdown)
        .await
}

/// Runs the `agent` binary: serve on `--listen` until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = args.config()?;
    let threads = config.threads;
    if args.dry_run {
        // Lets deployment files be checked against the real flags without
        // binding a port (see controller/tests/manifests.rs).
        println!(
            "agent dry run: would listen on {} with {threads} worker threads, io engine {}{}{}",
            args.listen,
            config.io.describe(),
            if config.token.is_some() { ", token required" } else { "" },
            if config.tls.is_some() { ", TLS" } else { "" }
        );
        return Ok(());
    }
    // Load connections need descriptors: take all the hard limit allows, and
    // refuse plans that would need more (see security::Limits).
    config.limits.open_files = listen::raise_open_files();
    // The gRPC side is light; the load runs on the engine's own threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        // Installed before the ready line goes out, so a SIGTERM sent as soon
        // as it is read stops the agent gracefully.
        let shutdown = volley_common::shutdown_signal().context("cannot install the signal handlers")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        // Printed on stdout so scripts and tests can learn a port-0 address.
        let files = config.limits.open_files.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        let io = config.io.describe();
        println!("agent listening on {addr} with {threads} worker threads, open-file limit {files}, io engine {io}");
        tracing::info!(open_files = %files, "open-file limit (RLIMIT_NOFILE, raised to the hard limit)");
        tracing::info!(%addr, threads, "agent ready");
        let metrics = match args.metrics_listen {
            Some(at) => {
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| UsageError(format!("--metrics-listen {at}: cannot listen: {e}")))?;
                let bound = l.local_addr().context("cannot read the bound address")?;
                tracing::info!(%bound, "serving metrics on /metrics");
                eprintln!("agent: serving metrics on http://{bound}/metrics");
                Some(l)
            }
            None => None,
        };
        serve_with_metrics(listener, metrics, config, shutdown).await.context("gRPC server failed")?;
        tracing::info!("agent stopped");
        Ok(())
    })
}
