//! The controller's flags, in one place with their docs: `--help` is the manual.
//!
//! Only flags live here: `controller run`'s become a
//! `request::RunRequest` (the same request the HTTP API takes), which
//! `RunRequest::check` turns into a `config::RunConfig`. (Named, not linked:
//! this module depends on nothing but `config`.)

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Output, parse_duration};
// The checked types lived here once; the coordinator still names them by this path.
pub use crate::config::{ChannelConfig, Limit, RunConfig};

/// Volley: a distributed HTTP load tester.
#[derive(Debug, Parser)]
#[command(name = "controller", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Check every flag, print what would be done, and exit without network activity.
    #[arg(long, global = true)]
    pub dry_run: bool,
}

/// The controller's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test on agents (or on an embedded agent) and print the global report.
    Run(Box<RunArgs>),
    /// Start a target-server and two agents in-process, load /hello, print the report.
    Demo(DemoArgs),
    /// Serve an HTTP API and a web page that start runs and show them live.
    Serve(ServeArgs),
}

/// Flags of `controller run`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("limit").required(true).args(["requests", "duration"])))]
pub struct RunArgs {
    /// Agents, comma-separated: HOST:PORT, dns:NAME:PORT (one agent per address of NAME, e.g. a
    /// Kubernetes headless Service), @FILE (one entry per line); without it, one agent runs embedded
    /// in this process.
    #[arg(long, value_name = "LIST")]
    pub agents: Option<String>,
    /// Target URL (http://host:port/path); with --scenario, the base URL replacing the file's.
    #[arg(long, required_unless_present = "scenario")]
    pub url: Option<String>,
    /// Run a scenario file (TOML: user types, weighted requests, setup,
    /// captures, assertions, think times; see the README) instead of one URL.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<std::path::PathBuf>,
    /// A scenario's TOML text instead of a file (the HTTP API); `body_file` is then refused.
    #[arg(skip)]
    pub scenario_text: Option<String>,
    /// Scenario runs: virtual users in total, split across agents (default: -c).
    #[arg(short = 'u', long, value_name = "N")]
    pub users: Option<u64>,
    /// Scenario runs: virtual users started per second in total (default: all at once).
    #[arg(short = 'r', long, value_name = "R")]
    pub spawn_rate: Option<f64>,
    /// Scenario runs: send only requests with any of these tags.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Scenario runs: never send requests with any of these tags.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub exclude_tags: Vec<String>,
    /// HTTPS targets: trust these CA certificates (PEM) besides the web's roots;
    /// read here and sent to the agents.
    #[arg(long, value_name = "FILE")]
    pub target_ca: Option<std::path::PathBuf>,
    /// HTTPS targets: accept any certificate (for test targets only).
    #[arg(short = 'k', long)]
    pub target_insecure: bool,
    /// Total requests, split across agents; exactly this many are sent.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Run for this long instead of a request count (e.g. 10s, 1m30s).
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open model: send R requests per second in total on a fixed schedule,
    /// whatever the latency; latency counts from each request's intended send
    /// time (coordinated omission corrected). Split across agents.
    #[arg(short = 'q', long, value_name = "R")]
    pub rate: Option<f64>,
    /// Grow the rate (or, without --rate, the active connections) linearly
    /// from zero over this time (e.g. 5s); the ramp is part of the run.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ramp_up: Option<Duration>,
    /// Concurrent connections in total, split across agents.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 10)]
    pub connections: u32,
    /// Go on when at least K of the listed agents answer at the start
    /// (default: all must answer).
    #[arg(long, value_name = "K")]
    pub min_agents: Option<usize>,
    /// Worker threads per agent (default: each agent's own default, its core count).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// Request body; @FILE reads it from a file.
    #[arg(short = 'd', long = "body", value_name = "BODY")]
    pub body: Option<String>,
    /// Per-request timeout.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Statuses that count as success, e.g. 200,204 (default: any 2xx).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub success_status: Vec<u16>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Fail (exit code 3) unless this holds, e.g. 'p99 < 200ms',
    /// 'error_rate < 1%', 'rps > 5000' (repeatable).
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub fail_if: Vec<String>,
    /// Also write the merged per-second latency histograms to FILE as an
    /// HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<std::path::PathBuf>,
    /// Also write the report as one self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    /// No progress lines while the run goes.
    #[arg(long)]
    pub quiet: bool,
    /// How to reach the agents.
    #[command(flatten)]
    pub link: AgentLink,
}

/// How the controller reaches its agents: the shared token and TLS.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentLink {
    /// The agents' shared secret (or set VOLLEY_TOKEN).
    #[arg(long, env = "VOLLEY_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Talk to the agents over TLS, trusting this CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for agents that require mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The name the agents' certificates carry, when it is not the host in --agents.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_domain: Option<String>,
}

/// Flags of `controller demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Requests to send.
    #[arg(short = 'n', long, default_value_t = 20_000)]
    pub requests: u64,
    /// Connections in total.
    #[arg(short = 'c', long, default_value_t = 20)]
    pub connections: u32,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Flags of `controller serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to serve the API and the web page on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Agents for runs that name none (same forms as `run --agents`);
    /// default: an agent embedded in this process for each run.
    #[arg(long, value_name = "LIST")]
    pub agents: Option<String>,
    /// Callers must send 'Authorization: Bearer TOKEN' (or set VOLLEY_API_TOKEN).
    #[arg(long, env = "VOLLEY_API_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub api_token: Option<String>,
    /// Allow serving on a non-loopback address without --api-token.
    #[arg(long)]
    pub insecure: bool,
    /// Most runs going at once; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_runs: u32,
    /// Finished runs kept for GET; the oldest are forgotten first.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub keep: usize,
    /// How to reach the agents.
    #[command(flatten)]
    pub link: AgentLink,
}
