//! The controller's flags, in one place with their docs: `--help` is the manual.
//!
//! `controller run`'s flags are a [`RunRequest`], the same request the HTTP
//! API takes, so they are defined (with their docs) in `request`; the other
//! subcommands' flags are here.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::config::{AgentLink, Output};
use crate::request::RunRequest;

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
    Run(Box<RunRequest>),
    /// Start a target-server and two agents in-process, load /hello, print the report.
    Demo(DemoArgs),
    /// Serve an HTTP API and a web page that start runs and show them live.
    Serve(Box<ServeArgs>),
    /// Compare two saved JSON reports: is the candidate slower than the baseline?
    Compare(CompareArgs),
}

/// What `controller compare` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareOutput {
    /// The side-by-side table and the verdict.
    Text,
    /// One JSON object (described in the book's "Comparing runs").
    Json,
}

/// Flags of `controller compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The baseline run: a JSON report (--output json, or GET /v1/runs/{id}).
    #[arg(value_name = "BASELINE")]
    pub baseline: std::path::PathBuf,
    /// The candidate run, compared with the baseline.
    #[arg(value_name = "CANDIDATE")]
    pub candidate: std::path::PathBuf,
    /// Comparison format.
    #[arg(long, value_enum, default_value_t = CompareOutput::Text)]
    pub output: CompareOutput,
    /// Also write the comparison as one self-contained HTML page with the two
    /// latency distributions overlaid.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    /// Fail (exit code 3) unless this holds for the candidate, e.g.
    /// 'p99 < baseline * 1.10', 'rps > baseline * 0.95', 'p99 < 200ms' (repeatable).
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub fail_if: Vec<String>,
    /// Confidence of the latency verdict, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 95.0)]
    pub confidence: f64,
    /// Latency changes smaller than this, in percent, count as no difference.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub min_change: f64,
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
    /// Host names the API and page may be reached under besides IP addresses
    /// and localhost (repeatable, or comma-separated); other Host headers are
    /// refused, against DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Most runs going at once; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_runs: u32,
    /// Finished runs kept for GET; the oldest are forgotten first.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub keep: usize,
    /// Most bytes the kept finished runs may hold, counted as the size of
    /// their JSON (GET /v1/runs/{id}); the oldest are forgotten first.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    pub keep_bytes: usize,
    /// Also serve the live merged figures of the runs for Prometheus on ADDR,
    /// under /metrics (its own listener; a finished run's stay until the next starts).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// How to reach the agents.
    #[command(flatten)]
    pub link: AgentLink,
}
