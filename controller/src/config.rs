//! A checked run: what `controller run` and `POST /v1/runs` become once every
//! value has passed `request::RunRequest::check`,
//! and what the coordinator, the report and the outputs read.

use std::time::Duration;

use crate::discovery::AgentSource;
use crate::error::{Field, UsageError};

/// Output formats of the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable, ApacheBench-style.
    #[default]
    Text,
    /// One JSON object (schema in the README).
    Json,
    /// The per-second series as CSV (one row per second).
    Csv,
}

/// How much work a run does, globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Exactly this many requests.
    Requests(u64),
    /// For this long.
    Duration(Duration),
}

/// A run's checked `--stage`s.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// Each stage's duration and its target as a fraction of the peak.
    pub levels: Vec<(Duration, f64)>,
    /// Each stage's duration and its target as given (requests per second,
    /// or connections).
    pub targets: Vec<(Duration, f64)>,
    /// Whether the targets are rates (open model) rather than connections.
    pub rates: bool,
}

impl Stages {
    /// The stages as a profile of fractions of the peak.
    pub fn profile(&self) -> volley_proto::profile::Profile {
        volley_proto::profile::Profile::from_stages(self.levels.iter().map(|(d, l)| (d.as_secs_f64(), *l)))
    }

    /// The stages as a profile of their targets.
    pub fn targets(&self) -> volley_proto::profile::Profile {
        volley_proto::profile::Profile::from_stages(self.targets.iter().map(|(d, t)| (d.as_secs_f64(), *t)))
    }

    /// Where each stage ends, in seconds since the start.
    pub fn ends(&self) -> Vec<f64> {
        self.levels
            .iter()
            .scan(0.0, |at, (d, _)| {
                *at += d.as_secs_f64();
                Some(*at)
            })
            .collect()
    }

    /// The stages' total time.
    pub fn length(&self) -> Duration {
        self.levels.iter().map(|(d, _)| *d).sum()
    }
}

/// A checked `controller run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where the agents are (resolved just before the run); empty means one embedded agent.
    pub agents: Vec<AgentSource>,
    /// The target URL, checked.
    pub url: String,
    /// The method, checked.
    pub method: String,
    /// Headers as (name, value), checked.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
    /// How much work.
    pub limit: Limit,
    /// Connections in total.
    pub connections: u32,
    /// Worker threads per agent, if given.
    pub threads: Option<u32>,
    /// The embedded agent's I/O engine (`--io`).
    pub io: agent::uring::IoChoice,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Success statuses; empty means any 2xx.
    pub success_status: Vec<u16>,
    /// Report format.
    pub output: Output,
    /// Open model: requests per second in total.
    pub rate: Option<f64>,
    /// Ramp-up time (zero for none).
    pub ramp_up: Duration,
    /// `--stage`: the run's shape, as fractions of `rate` (open model) or
    /// `connections` (closed model), which are then the stages' peak.
    pub stages: Option<Stages>,
    /// Agents that must answer at the start (default: all).
    pub min_agents: Option<usize>,
    /// How to reach the agents: token and TLS.
    pub channel: ChannelConfig,
    /// Conditions the run must meet.
    pub thresholds: Vec<crate::threshold::Threshold>,
    /// `--baseline FILE`: the saved run relative thresholds compare with.
    pub baseline: Option<std::sync::Arc<crate::compare::Saved>>,
    /// Where to write the HdrHistogram interval log.
    pub hdr_log: Option<std::path::PathBuf>,
    /// Where to write the HTML report.
    pub html: Option<std::path::PathBuf>,
    /// No progress lines.
    pub quiet: bool,
    /// `--metrics-listen`: where to serve the live figures for Prometheus.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `--metrics-linger`: how long to keep serving them after the report.
    pub metrics_linger: Duration,
    /// Scenario runs: the scenario and its users.
    pub scenario: Option<ScenarioRun>,
    /// HTTPS targets: extra CA certificates (PEM).
    pub target_ca_pem: Vec<u8>,
    /// HTTPS targets: accept any certificate.
    pub target_insecure: bool,
    /// Speak HTTP/2 (`--http2`).
    pub http2: bool,
    /// HTTP/2: concurrent streams per connection (1 without `--streams`).
    pub streams: u32,
    /// Wide runs: source addresses the connections bind to, round-robin.
    pub source_addrs: Option<volley_proto::source::SourceAddrs>,
    /// How often agents resolve the target again (zero: once).
    pub resolve_each: Duration,
    /// `--connect-to` entries, checked, in their canonical form.
    pub connect_to: Vec<String>,
}

/// A checked scenario run.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    /// The scenario, with `--url` and the tags applied.
    pub scenario: volley_scenario::Scenario,
    /// It as JSON, for the plans.
    pub json: String,
    /// Virtual users in total.
    pub users: u64,
    /// Users of each user type, in total.
    pub per_type: Vec<u64>,
    /// Users started per second in total.
    pub spawn_rate: Option<f64>,
}

// The scenario reader and the plan's limits agree on how much feeder data a run carries.
const _: () = assert!(volley_scenario::feeder::MAX_FEEDER_BYTES as usize == volley_proto::limits::MAX_FEEDER_BYTES);

impl ScenarioRun {
    /// Warnings before any load: unique feeders too small for the run (a
    /// row per user: fewer rows than users; a row per iteration: fewer rows
    /// than the requests of `-n`).
    pub fn warnings(&self, limit: Limit) -> Vec<String> {
        use volley_scenario::feeder::{Mode, OnExhausted, Per};
        let mut out = Vec::new();
        let compiled = self.scenario.compile().ok();
        for (i, f) in self.scenario.feeders.iter().enumerate().filter(|(_, f)| f.mode == Mode::Unique) {
            // Users of the types that take rows from it.
            let takers: u64 = compiled.as_ref().map_or(self.users, |c| {
                c.users
                    .iter()
                    .zip(&self.per_type)
                    .filter(|(u, _)| u.feeds.iter().any(|x| x.feeder == i))
                    .map(|(_, n)| n)
                    .sum()
            });
            let then = match f.on_exhausted {
                OnExhausted::StopUser => "users that find none stop",
                OnExhausted::EndRun => "an agent whose rows run out ends its part of the run",
            };
            match (f.per, limit) {
                (Per::User, _) if f.rows < takers => out.push(format!(
                    "unique feeder {:?} has {} rows for {takers} users that take one each; {then}",
                    f.name, f.rows
                )),
                (Per::Iteration, Limit::Requests(n)) if f.rows < n => out.push(format!(
                    "unique feeder {:?} has {} rows, fewer than the {n} requests of -n (a row per iteration); {then}",
                    f.name, f.rows
                )),
                _ => {}
            }
        }
        out
    }
}

/// How the controller reaches its agents.
#[derive(Debug, Clone, Default)]
pub struct ChannelConfig {
    /// Sent on every call (its `Debug` is redacted).
    pub token: Option<volley_proto::auth::Token>,
    /// TLS settings; `None` for plain gRPC.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Whether a client certificate is presented (for messages).
    pub mutual: bool,
}

/// How the controller reaches its agents: the shared token and TLS.
#[derive(Debug, Clone, Default, clap::Args)]
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

impl AgentLink {
    /// The token and TLS settings, with unreadable files named.
    pub fn channel(&self) -> Result<ChannelConfig, UsageError> {
        let link = self;
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |field: Field, p: &std::path::Path| {
            volley_common::file::read_file(p, crate::request::MAX_PEM_FILE)
                .map_err(|e| UsageError::new(field, e.to_string()))
        };
        let tls = match &link.tls_ca {
            None => None,
            Some(ca) => {
                let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(Field::TlsCa, ca)?));
                if let (Some(cert), Some(key)) = (&link.tls_cert, &link.tls_key) {
                    tls = tls.identity(Identity::from_pem(read(Field::TlsCert, cert)?, read(Field::TlsKey, key)?));
                }
                if let Some(d) = &link.tls_domain {
                    tls = tls.domain_name(d.clone());
                }
                Some(tls)
            }
        };
        Ok(ChannelConfig {
            token: link.token.as_deref().and_then(volley_proto::auth::Token::new),
            tls,
            mutual: link.tls_cert.is_some(),
        })
    }
}
