//! One run request, whichever way it arrives: `controller run`'s flags and
//! `controller serve`'s `POST /v1/runs` body both become a [`RunRequest`],
//! and one [`RunRequest::check`] turns it into a [`RunConfig`], refusing a
//! wrong value with a [`UsageError`] that names its [`Field`].
//!
//! Adding a value means: a field here (its flag from clap, its JSON name
//! from serde), a [`Field`] variant, its check below, and its line in
//! `openapi.yaml` (a test holds the three names together).
//!
//! What only the command line may do is skipped by serde, so JSON cannot set
//! it: reading files on this host (`--scenario FILE`, `-d @FILE`,
//! `--target-ca`), writing outputs, and the agents' TLS files.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Deserializer};

use volley_common::parse_nonzero_duration as parse_duration;
use volley_proto::limits;

use crate::config::{AgentLink, Limit, Output, RunConfig, ScenarioRun};
use crate::discovery::parse_agents;
use crate::error::{Field, UsageError};

/// Connections when a request names none.
const DEFAULT_CONNECTIONS: u32 = 10;
/// The largest `-d @FILE` body read.
pub const MAX_BODY_FILE: u64 = 256 << 20;
/// The largest certificate or key file read (`--target-ca`, `--tls-*`).
pub const MAX_PEM_FILE: u64 = 1 << 20;
/// How often agents resolve the target again when a request does not say.
pub const DEFAULT_RESOLVE_EACH: Duration = Duration::from_secs(30);
/// Per-request timeout when a request names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A run, as asked for: the flags of `controller run` (clap) and the body of
/// `POST /v1/runs` (serde), every value unchecked. Fields the JSON must not
/// set (files on this host, outputs) are skipped by serde, so a body naming
/// them is refused as an unknown field.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[command(group(clap::ArgGroup::new("limit").required(true).multiple(true).args(["requests", "duration", "stages"])))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Agents, comma-separated: HOST:PORT, dns:NAME:PORT (one agent per address of NAME, e.g. a
    /// Kubernetes headless Service), @FILE (one entry per line); without it, one agent runs embedded
    /// in this process.
    #[arg(long, value_name = "LIST")]
    #[serde(default, deserialize_with = "joined")]
    pub agents: Option<String>,
    /// Target URL (http://host:port/path), as ab, hey and oha take it; the same as --url.
    #[arg(id = "target", value_name = "URL", conflicts_with = "url")]
    #[serde(skip)]
    pub target: Option<String>,
    /// Target URL (http://host:port/path); with --scenario, the base URL replacing the file's.
    #[arg(long, required_unless_present_any = ["scenario", "target"])]
    pub url: Option<String>,
    /// Run a scenario file (TOML: user types, weighted requests, setup,
    /// captures, assertions, think times; see the README) instead of one URL.
    #[arg(id = "scenario", long = "scenario", value_name = "FILE")]
    #[serde(skip)]
    pub scenario_file: Option<PathBuf>,
    /// A scenario's TOML text instead of a file (the HTTP API's `scenario`);
    /// `body_file` is then refused.
    #[arg(skip)]
    pub scenario: Option<String>,
    /// Scenario runs: virtual users in total, split across agents (default: -c).
    #[arg(short = 'u', long, value_name = "N")]
    pub users: Option<u64>,
    /// Scenario runs: virtual users started per second in total (default: all at once).
    #[arg(short = 'r', long, value_name = "R")]
    pub spawn_rate: Option<f64>,
    /// Scenario runs: send only requests with any of these tags.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    #[serde(default, deserialize_with = "comma_list")]
    pub tags: Vec<String>,
    /// Scenario runs: never send requests with any of these tags.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    #[serde(default, deserialize_with = "comma_list")]
    pub exclude_tags: Vec<String>,
    /// HTTPS targets: trust these CA certificates (PEM) besides the web's roots;
    /// read here and sent to the agents.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub target_ca: Option<PathBuf>,
    /// HTTPS targets: accept any certificate (for test targets only).
    #[arg(short = 'k', long)]
    #[serde(default, deserialize_with = "or_default")]
    pub target_insecure: bool,
    /// Speak HTTP/2: TLS with ALPN h2 for https://, cleartext with prior
    /// knowledge (h2c) for http://.
    #[arg(long, visible_alias = "h2")]
    #[serde(default, deserialize_with = "or_default")]
    pub http2: bool,
    /// HTTP/2: concurrent streams per connection (h2load's -m; default 1);
    /// requests in flight are connections × streams.
    #[arg(long, value_name = "N")]
    pub streams: Option<u32>,
    /// Total requests, split across agents; exactly this many are sent.
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Run for this long instead of a request count (e.g. 10s, 1m30s).
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub duration: Option<Duration>,
    /// Open model: send R requests per second in total on a fixed schedule,
    /// whatever the latency; latency counts from each request's intended send
    /// time (coordinated omission corrected). Split across agents.
    #[arg(short = 'q', long, value_name = "R")]
    pub rate: Option<f64>,
    /// Grow the rate (or, without --rate, the active connections) linearly
    /// from zero over this time (e.g. 5s); the ramp is part of the run.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub ramp_up: Option<Duration>,
    /// A stage DURATION:TARGET (repeatable): the target moves linearly from the
    /// previous stage's (0 at first) to TARGET over DURATION (0 is a step).
    /// TARGET N/s is a rate (open model, as -q), a plain N connections. The
    /// run lasts the stages' total unless -z says otherwise.
    #[arg(id = "stages", long = "stage", value_name = "DURATION:TARGET")]
    #[serde(default, deserialize_with = "comma_list")]
    pub stages: Vec<String>,
    /// Concurrent connections in total, split across agents.
    #[arg(short = 'c', long, value_name = "N", default_value = "10")]
    #[serde(rename = "concurrency")]
    pub connections: Option<u32>,
    /// Go on when at least K of the listed agents answer at the start
    /// (default: all must answer).
    #[arg(long, value_name = "K")]
    pub min_agents: Option<usize>,
    /// Worker threads per agent (default: each agent's own default, its core count).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// The embedded agent's I/O engine (without --agents): auto (io_uring if
    /// this host allows it, else epoll), uring or epoll. Listed agents use
    /// their own `agent --io`.
    #[arg(long, value_enum, value_name = "ENGINE", env = "VOLLEY_IO")]
    #[serde(skip)]
    pub io: Option<agent::uring::IoChoice>,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: Option<String>,
    /// Request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    #[serde(default, deserialize_with = "headers")]
    pub headers: Vec<String>,
    /// Request body; @FILE reads it from a file.
    #[arg(short = 'd', long = "body", value_name = "BODY")]
    pub body: Option<String>,
    /// Per-request timeout.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// Statuses that count as success, e.g. 200,204 (default: any 2xx).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    #[serde(default, deserialize_with = "or_default")]
    pub success_status: Vec<u16>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    #[serde(skip)]
    pub output: Output,
    /// Fail (exit code 3) unless this holds, e.g. 'p99 < 200ms',
    /// 'error_rate < 1%', 'rps > 5000' (repeatable); with --stage, '... @ stage N'
    /// judges it on stage N alone.
    #[arg(long = "fail-if", value_name = "EXPR")]
    #[serde(default, deserialize_with = "expressions")]
    pub fail_if: Vec<String>,
    /// A saved JSON report (--output json) to compare with: --fail-if may then say
    /// 'p99 < baseline * 1.10' or 'rps > baseline * 0.95'.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub baseline: Option<PathBuf>,
    /// Also write the merged per-second latency histograms to FILE as an
    /// HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub hdr_log: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub html: Option<PathBuf>,
    /// No progress lines while the run goes.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
    /// Serve the run's live merged figures for Prometheus on ADDR, under /metrics.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// With --metrics-listen: keep serving /metrics this long after the report
    /// (e.g. 15s), so the last scrape of the finished run is not lost.
    #[arg(long, value_name = "DURATION", requires = "metrics_listen", value_parser = volley_common::parse_duration)]
    #[serde(skip)]
    pub metrics_linger: Option<Duration>,
    /// Local addresses the connections leave from, round-robin: addresses,
    /// ranges (127.0.0.2-127.0.0.9) or CIDRs, comma-separated; each agent must
    /// allow them (agent --allow-source). For runs wider than one address's
    /// ephemeral ports (~28k connections to one target).
    #[arg(long, value_name = "LIST")]
    #[serde(default, deserialize_with = "joined")]
    pub source_addr: Option<String>,
    /// Resolve the target's host again this often (default 30s; 0: once, at
    /// the start): new connections go round-robin over all its addresses,
    /// and connections to an address that left close after their request.
    #[arg(long, value_name = "DURATION", value_parser = volley_common::parse_duration)]
    #[serde(default, deserialize_with = "duration_or_zero")]
    pub resolve_each: Option<Duration>,
    /// Connect to ADDR:PORT instead of HOST:PORT (curl's --connect-to;
    /// repeatable; an empty HOST or PORT matches any). The Host header and
    /// TLS name stay the URL's.
    #[arg(long, value_name = "HOST:PORT:ADDR:PORT")]
    #[serde(default, deserialize_with = "comma_list")]
    pub connect_to: Vec<String>,
    /// How to reach the agents.
    #[command(flatten)]
    #[serde(skip)]
    pub link: AgentLink,
    /// Whether `-d @FILE` may read this host's files: on the command line,
    /// never over the API.
    #[arg(skip = true)]
    #[serde(skip)]
    pub read_files: bool,
}

fn usage(field: Field, reason: impl Into<String>) -> UsageError {
    UsageError::new(field, reason)
}

impl RunRequest {
    /// Checks every value and gathers them into a [`RunConfig`].
    ///
    /// Longer than most functions: one check per value, in the order a user
    /// reads `--help`, reads best as one list.
    pub fn check(&self) -> Result<RunConfig, UsageError> {
        let scenario = self.scenario_run()?;
        let url = match (&scenario, self.url.as_ref().or(self.target.as_ref())) {
            (Some(sc), _) => sc.scenario.base_url.clone().unwrap_or_default(),
            (None, Some(url)) => url.clone(),
            (None, None) => return Err(usage(Field::Url, "required (or give a scenario)")),
        };
        let target = volley_proto::target::parse_url(&url).map_err(|e| usage(Field::Url, url_hint(&url, e)))?;
        let target_ca_pem = match &self.target_ca {
            None => Vec::new(),
            Some(p) => {
                let pem = volley_common::file::read_file(p, MAX_PEM_FILE)
                    .map_err(|e| usage(Field::TargetCa, e.to_string()))?;
                // The same check the agents make, so a bad file stops the run here.
                volley_proto::tls::server_name(&target.host)
                    .and_then(|_| volley_proto::tls::ca_roots(&pem))
                    .map_err(|e| usage(Field::TargetCa, format!("{}: {e}", p.display())))?;
                pem
            }
        };
        let stages = self.stages(scenario.as_ref().map(|sc| &sc.scenario))?;
        let limit = match (&stages, self.duration) {
            (Some(st), None) => Limit::Duration(st.length()),
            _ => self.limit()?,
        };
        let streams = self.streams.unwrap_or(1);
        if streams == 0 || streams > limits::MAX_STREAMS {
            return Err(usage(Field::Streams, format!("{streams} is not in 1..={}", limits::MAX_STREAMS)));
        }
        if streams > 1 && !self.http2 {
            return Err(usage(Field::Streams, "more than one stream per connection needs --http2"));
        }
        if streams > 1 && scenario.is_some() {
            return Err(usage(
                Field::Streams,
                "scenario runs open their own HTTP/2 streams; --streams is not for them",
            ));
        }
        let asked = match &stages {
            // Plain targets are the connections; their peak is the run's.
            Some(st) if !st.rates => st.targets.iter().map(|(_, c)| *c as u32).max().unwrap_or(0),
            _ => self.connections.unwrap_or(DEFAULT_CONNECTIONS),
        };
        if asked == 0 {
            return Err(usage(Field::Connections, "must be at least 1"));
        }
        // A scenario's virtual users take the place of connections.
        let connections = match &scenario {
            Some(sc) => u32::try_from(sc.users).unwrap_or(u32::MAX),
            None => asked,
        };
        if asked > limits::MAX_CONNECTIONS {
            return Err(usage(Field::Connections, format!("{asked} is more than {}", limits::MAX_CONNECTIONS)));
        }
        if let Some(t) = self.threads.filter(|&t| t == 0 || t > limits::MAX_THREADS) {
            return Err(usage(Field::Threads, format!("{t} is not in 1..={}", limits::MAX_THREADS)));
        }
        if let Some(r) = self.rate.filter(|r| !(limits::MIN_RATE..=limits::MAX_RATE * 100.0).contains(r)) {
            return Err(usage(
                Field::Rate,
                format!(
                    "{} is not a rate between 1/86400 (one request a day) and {:e} requests per second",
                    number(r),
                    limits::MAX_RATE * 100.0
                ),
            ));
        }
        let too_long = |field, d: Duration, max: Duration| {
            (d > max).then(|| {
                usage(
                    field,
                    format!(
                        "{} is longer than the {} limit",
                        humantime::format_duration(d),
                        humantime::format_duration(max)
                    ),
                )
            })
        };
        let ramp_up = self.ramp_up.unwrap_or_default();
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let long = [
            (Field::Duration, if let Limit::Duration(d) = limit { d } else { Duration::ZERO }, limits::MAX_DURATION),
            (Field::RampUp, ramp_up, limits::MAX_DURATION),
            (Field::Timeout, timeout, limits::MAX_TIMEOUT),
        ];
        if let Some(e) = long.into_iter().find_map(|(field, d, max)| too_long(field, d, max)) {
            return Err(e);
        }
        if let Limit::Duration(d) = limit
            && !ramp_up.is_zero()
            && ramp_up >= d
        {
            return Err(usage(
                Field::RampUp,
                format!(
                    "{} is not shorter than the run's -z {}",
                    humantime::format_duration(ramp_up),
                    humantime::format_duration(d)
                ),
            ));
        }
        let given_method = self.method.as_deref().unwrap_or("GET");
        let method = given_method.to_ascii_uppercase();
        if http_method_invalid(&method) {
            return Err(usage(Field::Method, format!("{given_method:?} is not an HTTP method")));
        }
        let headers = self.header_pairs()?;
        let body = match &self.body {
            None => Vec::new(),
            Some(b) => match b.strip_prefix('@').filter(|_| self.read_files) {
                Some(path) => volley_common::file::read_file(std::path::Path::new(path), MAX_BODY_FILE)
                    .map_err(|e| usage(Field::Body, e.to_string()))?,
                // Over the API a body is taken as given, never read from this host's disk.
                None => b.as_bytes().to_vec(),
            },
        };
        if let Some(bad) = self.success_status.iter().find(|s| !(100..1000).contains(*s)) {
            return Err(usage(Field::SuccessStatus, format!("{bad} is not an HTTP status")));
        }
        let agents = match &self.agents {
            None => Vec::new(),
            Some(list) => parse_agents(list)?,
        };
        if let Some(k) = self.min_agents
            && (k == 0 || k > agents.len().max(1))
        {
            return Err(usage(
                Field::MinAgents,
                format!("{k} is not between 1 and the {} agents listed", agents.len().max(1)),
            ));
        }
        if self.min_agents.is_none() && !agents.is_empty() && (connections as usize) < agents.len() {
            let field = if scenario.is_some() { Field::Users } else { Field::Connections };
            return Err(usage(
                field,
                format!("{connections} is fewer than the {} agents; each agent needs at least one", agents.len()),
            ));
        }
        let thresholds: Vec<crate::threshold::Threshold> = self
            .fail_if
            .iter()
            .map(|e| e.parse().map_err(|why: crate::threshold::ThresholdError| usage(Field::FailIf, why.to_string())))
            .collect::<Result<_, _>>()?;
        if let Some((t, k)) = thresholds.iter().find_map(|t| t.stage().map(|k| (t, k))) {
            let count = self.stages.len();
            if k >= count {
                let has = match count {
                    0 => "the run has no --stage".to_owned(),
                    1 => "the run has 1 stage".to_owned(),
                    n => format!("the run has {n} stages"),
                };
                return Err(usage(Field::FailIf, format!("{:?}: {has}", t.to_string())));
            }
            if stages.as_ref().is_some_and(|st| st.levels[k].0.is_zero()) {
                return Err(usage(
                    Field::FailIf,
                    format!("{:?}: stage {} is a step (0 s long): it has no seconds to measure", t.to_string(), k + 1),
                ));
            }
        }
        let baseline = match &self.baseline {
            None => None,
            Some(path) => Some(std::sync::Arc::new(
                crate::compare::Saved::load(path).map_err(|e| usage(Field::Baseline, crate::error::chain(&e)))?,
            )),
        };
        if baseline.is_none()
            && let Some(t) = thresholds.iter().find(|t| t.is_relative())
        {
            return Err(usage(
                Field::FailIf,
                format!("{:?} compares with a baseline; give --baseline FILE", t.to_string()),
            ));
        }
        let source_addrs = match &self.source_addr {
            None => None,
            Some(_) if scenario.is_some() => {
                return Err(usage(Field::SourceAddr, "not for --scenario runs"));
            }
            Some(list) => {
                let addrs = volley_proto::source::SourceAddrs::parse(&[list])
                    .map_err(|e| usage(Field::SourceAddr, e.to_string()))?;
                if let Some(other) =
                    std::net::IpAddr::from_str(&target.host).ok().and_then(|ip| addrs.family_mismatch(ip))
                {
                    return Err(usage(
                        Field::SourceAddr,
                        format!("{other} is not of the target's address family ({})", target.host),
                    ));
                }
                Some(addrs)
            }
        };
        // `http2 = true` in the scenario file turns it on as the flag does.
        let http2 = self.http2 || scenario.as_ref().is_some_and(|sc| sc.scenario.http2);
        if scenario.is_some() && self.resolve_each.is_some() {
            return Err(usage(Field::ResolveEach, "not for --scenario runs (their HTTP client resolves for itself)"));
        }
        if scenario.is_some() && !self.connect_to.is_empty() {
            return Err(usage(Field::ConnectTo, "not for --scenario runs"));
        }
        let resolve_each = self.resolve_each.unwrap_or(DEFAULT_RESOLVE_EACH);
        if resolve_each > limits::MAX_DURATION {
            return Err(usage(
                Field::ResolveEach,
                format!("{resolve_each:?} is longer than the {} s limit", limits::MAX_DURATION.as_secs()),
            ));
        }
        let mut connect_to = Vec::with_capacity(self.connect_to.len());
        for c in &self.connect_to {
            let pin =
                c.parse::<volley_proto::connect_to::ConnectTo>().map_err(|e| usage(Field::ConnectTo, e.to_string()))?;
            connect_to.push(pin.to_string());
        }
        Ok(RunConfig {
            agents,
            url,
            method,
            headers,
            body,
            limit,
            connections,
            threads: self.threads,
            io: self.io.unwrap_or_default(),
            timeout,
            success_status: self.success_status.clone(),
            output: self.output,
            rate: match &stages {
                Some(st) if st.rates => Some(st.targets.iter().map(|(_, r)| *r).fold(0.0, f64::max)),
                _ => self.rate,
            },
            ramp_up,
            stages,
            min_agents: self.min_agents,
            channel: self.link.channel()?,
            thresholds,
            baseline,
            hdr_log: writable(Field::HdrLog, self.hdr_log.as_ref())?,
            html: writable(Field::Html, self.html.as_ref())?,
            quiet: self.quiet,
            metrics_listen: self.metrics_listen,
            metrics_linger: self.metrics_linger.unwrap_or_default(),
            scenario,
            target_ca_pem,
            target_insecure: self.target_insecure,
            http2,
            streams,
            source_addrs,
            resolve_each,
            connect_to,
        })
    }

    /// The `--stage`s, checked; `None` without any.
    /// A scenario's `[[stage]]`s count when no `--stage` is given; its
    /// targets are active users.
    fn stages(
        &self,
        scenario: Option<&volley_scenario::Scenario>,
    ) -> Result<Option<crate::config::Stages>, UsageError> {
        let from_file = scenario.map_or(&[][..], |sc| &sc.stages[..]);
        if self.stages.is_empty() && from_file.is_empty() {
            return Ok(None);
        }
        let refuse = |reason: &str| Err(usage(Field::Stages, reason));
        if scenario.is_some() && self.users.is_some() {
            return refuse("the stages set the active users (the run's users are their peak); drop -u");
        }
        if self.requests.is_some() {
            return refuse("stages shape a time; give -z (or nothing: the stages' total), not -n");
        }
        if self.rate.is_some() {
            return refuse("the stages set the rate (targets N/s); drop -q");
        }
        if self.ramp_up.is_some() {
            return refuse("the stages are the ramp (a first stage 10s:100/s ramps up); drop --ramp-up");
        }
        let count = if self.stages.is_empty() { from_file.len() } else { self.stages.len() };
        if count > limits::MAX_STAGES {
            return Err(usage(Field::Stages, format!("{count} stages are more than {}", limits::MAX_STAGES)));
        }
        let mut targets = Vec::with_capacity(count);
        let mut kinds = Vec::with_capacity(count);
        for given in &self.stages {
            let (duration, target) = parse_stage(given)?;
            targets.push((duration, target.0));
            kinds.push(target.1);
        }
        if self.stages.is_empty() {
            for st in from_file {
                if st.users > u64::from(limits::MAX_CONNECTIONS) {
                    let why = format!("a [[stage]] of {} users is more than {}", st.users, limits::MAX_CONNECTIONS);
                    return Err(usage(Field::Stages, why));
                }
                targets.push((Duration::from_millis(st.duration_ms), st.users as f64));
                kinds.push(false);
            }
        }
        let rates = kinds[0];
        if scenario.is_some() && kinds.iter().any(|&k| k) {
            return refuse(
                "a scenario's stages are numbers of active users (plain N); its users pace themselves with think times",
            );
        }
        if kinds.iter().any(|&k| k != rates) {
            return refuse(
                "mixes rates (N/s, open model) and connections (plain N, closed model); give every target one way",
            );
        }
        let total: Duration = targets.iter().map(|(d, _)| *d).sum();
        if total > limits::MAX_DURATION {
            return Err(usage(
                Field::Stages,
                format!(
                    "they last {}, longer than the {} limit",
                    humantime::format_duration(total),
                    humantime::format_duration(limits::MAX_DURATION)
                ),
            ));
        }
        if total.is_zero() && self.duration.is_none() {
            return refuse("they last 0 s in total; give a stage a duration (or -z)");
        }
        let peak = targets.iter().map(|(_, t)| *t).fold(0.0, f64::max);
        if peak <= 0.0 {
            return refuse("every target is 0: there is nothing to send");
        }
        let levels = targets.iter().map(|(d, t)| (*d, t / peak)).collect();
        Ok(Some(crate::config::Stages { levels, targets, rates }))
    }

    /// Exactly one of a request count and a run time.
    fn limit(&self) -> Result<Limit, UsageError> {
        match (self.requests, self.duration) {
            (Some(0), _) => Err(usage(Field::Requests, "must be at least 1")),
            (Some(n), None) => Ok(Limit::Requests(n)),
            (None, Some(d)) => Ok(Limit::Duration(d)),
            (Some(_), Some(_)) => Err(usage(Field::Duration, "give exactly one of requests and duration")),
            (None, None) => Err(usage(Field::Requests, "give exactly one of requests and duration")),
        }
    }

    /// The headers as (name, value), each checked.
    fn header_pairs(&self) -> Result<Vec<(String, Vec<u8>)>, UsageError> {
        let mut headers = Vec::new();
        for h in &self.headers {
            let (name, value) =
                h.split_once(':').ok_or_else(|| usage(Field::Headers, format!("{h:?} is not 'Name: value'")))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(usage(Field::Headers, format!("{name:?} is not a header name")));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(usage(Field::Headers, format!("the value of {name:?} contains a line break")));
            }
            // What HTTP allows in a value: visible bytes, spaces and tabs.
            if let Some(b) = value.bytes().find(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(usage(Field::Headers, format!("the value of {name:?} contains the control byte {b:#04x}")));
            }
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
        Ok(headers)
    }

    /// Loads and checks the scenario with its values; values that only
    /// scenario runs take are refused without it.
    fn scenario_run(&self) -> Result<Option<ScenarioRun>, UsageError> {
        let loaded = match (&self.scenario_file, &self.scenario) {
            (Some(path), _) => Some(volley_scenario::Scenario::load(path)),
            (None, Some(text)) => Some(volley_scenario::file::parse_untrusted(text, "scenario")),
            (None, None) => None,
        };
        let Some(loaded) = loaded else {
            let stray = [
                (self.users.is_some(), Field::Users),
                (self.spawn_rate.is_some(), Field::SpawnRate),
                (!self.tags.is_empty(), Field::Tags),
                (!self.exclude_tags.is_empty(), Field::ExcludeTags),
            ];
            if let Some((_, field)) = stray.iter().find(|(given, _)| *given) {
                return Err(usage(*field, "only for --scenario runs"));
            }
            return Ok(None);
        };
        let bad_scenario = |e: volley_scenario::ScenarioError| usage(Field::Scenario, e.to_string());
        let mut scenario = loaded.map_err(bad_scenario)?;
        if let Some(url) = self.url.as_ref().or(self.target.as_ref()) {
            scenario = scenario.with_base_url(url);
        }
        let scenario = scenario.select_tags(&self.tags, &self.exclude_tags).map_err(bad_scenario)?;
        // Again with the URL and the tags applied.
        scenario.compile().map_err(bad_scenario)?;
        if self.rate.is_some() {
            return Err(usage(
                Field::Rate,
                "scenarios pace themselves with think times (e.g. think = \"constant_throughput 2\")",
            ));
        }
        if !self.headers.is_empty()
            || self.body.is_some()
            || self.method.as_deref().is_some_and(|m| m != "GET")
            || !self.success_status.is_empty()
        {
            return Err(usage(
                Field::Scenario,
                "-m, -H, -d and --success-status are set per request in the scenario file",
            ));
        }
        // With stages, the run's users are their peak (each agent's users are
        // then active while the stages' level is above their rank).
        let users = match self.stages(Some(&scenario))? {
            Some(st) => st.targets.iter().map(|(_, t)| *t as u64).max().unwrap_or(0),
            None => self.users.unwrap_or(u64::from(self.connections.unwrap_or(DEFAULT_CONNECTIONS))),
        };
        if users == 0 || users > u64::from(limits::MAX_CONNECTIONS) {
            return Err(usage(Field::Users, format!("{users} is not in 1..={}", limits::MAX_CONNECTIONS)));
        }
        let per_type = scenario.split_users(users).map_err(|e| usage(Field::Users, e.to_string()))?;
        if let Some(r) = self.spawn_rate.filter(|r| !(r.is_finite() && *r >= limits::MIN_SPAWN_RATE)) {
            return Err(usage(
                Field::SpawnRate,
                format!("{} is not a number of users per second of at least 1/86400 (one a day)", number(r)),
            ));
        }
        let json = scenario.to_json();
        if json.len() > limits::MAX_SCENARIO {
            return Err(usage(
                Field::Scenario,
                format!("{} bytes as sent to the agents; at most {} are allowed", json.len(), limits::MAX_SCENARIO),
            ));
        }
        Ok(Some(ScenarioRun { json, scenario, users, per_type, spawn_rate: self.spawn_rate }))
    }
}

/// An output file, checked before any load is sent: a run must not end with
/// a report it cannot write. The file is opened for writing without
/// truncating it; one that did not exist is created and removed again.
fn writable(field: Field, path: Option<&PathBuf>) -> Result<Option<PathBuf>, UsageError> {
    let Some(path) = path else { return Ok(None) };
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| usage(field, format!("cannot write {}: {e}", path.display())))?;
    if !existed {
        // Only the empty file this check made is removed.
        let _ = std::fs::remove_file(path);
    }
    Ok(Some(path.clone()))
}

/// Why `url` was refused, with the same hint for every URL that lacks its
/// scheme: `localhost:8080/x` parses as scheme `localhost`, `127.0.0.1:8080/x`
/// as no URL at all, and both mean `http://` was left out.
fn url_hint(url: &str, e: volley_proto::target::UrlError) -> String {
    if !url.contains("://") && !url.is_empty() {
        format!("{url:?} has no scheme; use http://{url} (or https://)")
    } else {
        e.to_string()
    }
}

/// One `--stage DURATION:TARGET`: its duration and its target, with whether
/// the target is a rate (`N/s`) rather than connections (`N`).
fn parse_stage(given: &str) -> Result<(Duration, (f64, bool)), UsageError> {
    let bad = |why: String| usage(Field::Stages, format!("{given:?}: {why}"));
    let Some((duration, target)) = given.split_once(':') else {
        return Err(bad("is not DURATION:TARGET (e.g. 30s:100/s for a rate, 1m:50 for connections)".into()));
    };
    let duration = volley_common::parse_duration(duration).map_err(|e| bad(e.to_string()))?;
    let target = target.trim();
    if let Some(rate) = target.strip_suffix("/s") {
        let r: f64 =
            rate.trim().parse().map_err(|_| bad(format!("{rate:?} is not a number of requests per second")))?;
        if !(r == 0.0 || (limits::MIN_RATE..=limits::MAX_RATE * 100.0).contains(&r)) {
            return Err(bad(format!(
                "{} is not 0 or a rate between 1/86400 and {:e} requests per second",
                number(r),
                limits::MAX_RATE * 100.0
            )));
        }
        return Ok((duration, (r, true)));
    }
    let c: u32 = target
        .parse()
        .map_err(|_| bad(format!("{target:?} is neither a rate (N/s) nor a whole number of connections")))?;
    if c > limits::MAX_CONNECTIONS {
        return Err(bad(format!("{c} connections are more than {}", limits::MAX_CONNECTIONS)));
    }
    Ok((duration, (f64::from(c), false)))
}

/// A user's number as a message shows it: `1e-300`, not 300 digits.
fn number(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-3..1e9).contains(&x.abs()) { format!("{x:e}") } else { x.to_string() }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn http_method_invalid(m: &str) -> bool {
    m.is_empty() || !m.bytes().all(is_tchar)
}

/// A JSON value that is either one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `null` as the default, anything else as `T`.
fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Agents: `"a:1,b:2"` or `["a:1", "b:2"]`, kept as the command line's list.
fn joined<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(s) => s,
        OneOrMany::Many(list) => list.join(","),
    }))
}

/// Tags: `"a, b"` or `["a", "b"]`.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => s.split(',').map(|t| t.trim().to_owned()).collect(),
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Expressions, which may hold commas: one string is one expression.
fn expressions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Headers: `{"Name": "value"}` or `["Name: value"]`.
fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Map(std::collections::BTreeMap<String, String>),
        List(Vec<String>),
    }
    Ok(match Option::<Headers>::deserialize(d)? {
        None => Vec::new(),
        Some(Headers::Map(map)) => map.into_iter().map(|(k, v)| format!("{k}: {v}")).collect(),
        Some(Headers::List(list)) => list,
    })
}

/// A duration that may be zero: text (`"30s"`, `"0"`) or seconds.
fn duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    given_duration(d, true)
}

/// A duration above zero: text (`"10s"`) or seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    given_duration(d, false)
}

/// A duration given as text or as a number of seconds; zero only if `zero`.
fn given_duration<'de, D: Deserializer<'de>>(d: D, zero: bool) -> Result<Option<Duration>, D::Error> {
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        Seconds(f64),
    }
    let parse = if zero { volley_common::parse_duration } else { parse_duration };
    match Option::<Given>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Text(s)) => parse(&s).map(Some).map_err(|e| D::Error::custom(format!("{s:?}: {e}"))),
        Some(Given::Seconds(s)) if s < 1e9 && (s > 0.0 || (zero && s == 0.0)) => Ok(Some(Duration::from_secs_f64(s))),
        Some(Given::Seconds(s)) => {
            let floor = if zero { "of 0 or more" } else { "above 0" };
            Err(D::Error::custom(format!("{s} is not a number of seconds {floor}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the API names deserializes alone, and nothing else does:
    /// [`Field::json`] and the serde-derived fields agree.
    #[test]
    fn fields_and_json_names_agree() {
        for f in Field::ALL {
            if let Some(name) = f.json() {
                let one = serde_json::json!({ name: null });
                RunRequest::deserialize(&one).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        assert!(RunRequest::deserialize(&serde_json::json!({ "connections": 3 })).is_err());
        for cli_only in [
            "target",
            "scenario_file",
            "target_ca",
            "output",
            "hdr_log",
            "html",
            "quiet",
            "link",
            "read_files",
            "baseline",
            "metrics_listen",
            "metrics_linger",
        ] {
            assert!(RunRequest::deserialize(&serde_json::json!({ cli_only: null })).is_err(), "{cli_only}");
        }
    }

    #[test]
    fn one_check_two_spellings() {
        let req = RunRequest {
            url: Some("http://127.0.0.1:1/".into()),
            requests: Some(1),
            connections: Some(0),
            ..RunRequest::default()
        };
        let e = req.check().unwrap_err();
        assert_eq!(e.to_string(), "-c/--connections: must be at least 1");
        assert_eq!(e.for_api(), "concurrency: must be at least 1");
    }
}
