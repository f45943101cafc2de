//! The controller's flags, in one place with their docs: `--help` is the manual.
//!
//! Flag structs live in the library so tests (and the demo) can build them, and
//! [`RunArgs::check`] turns them into a [`RunConfig`] with every value checked,
//! each rejection naming the flag and why.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use volley_common::parse_nonzero_duration;
use volley_proto::auth::Token;
use volley_proto::limits;

use crate::discovery::AgentSource;
use crate::error::Error;

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
    Serve(crate::serve::ServeArgs),
}

/// Output formats of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable, ApacheBench-style.
    Text,
    /// One JSON object (schema in the README).
    Json,
    /// The per-second series as CSV (one row per second).
    Csv,
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
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
    pub duration: Option<Duration>,
    /// Open model: send R requests per second in total on a fixed schedule,
    /// whatever the latency; latency counts from each request's intended send
    /// time (coordinated omission corrected). Split across agents.
    #[arg(short = 'q', long, value_name = "R")]
    pub rate: Option<f64>,
    /// Grow the rate (or, without --rate, the active connections) linearly
    /// from zero over this time (e.g. 5s); the ramp is part of the run.
    #[arg(long, value_name = "DURATION", value_parser = parse_nonzero_duration)]
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
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_nonzero_duration)]
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

/// How much work a run does, globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Exactly this many requests.
    Requests(u64),
    /// For this long.
    Duration(Duration),
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
    /// Agents that must answer at the start (default: all).
    pub min_agents: Option<usize>,
    /// How to reach the agents: token and TLS.
    pub channel: ChannelConfig,
    /// Conditions the run must meet.
    pub thresholds: Vec<crate::threshold::Threshold>,
    /// Where to write the HdrHistogram interval log.
    pub hdr_log: Option<std::path::PathBuf>,
    /// Where to write the HTML report.
    pub html: Option<std::path::PathBuf>,
    /// No progress lines.
    pub quiet: bool,
    /// Scenario runs: the scenario and its users.
    pub scenario: Option<ScenarioRun>,
    /// HTTPS targets: extra CA certificates (PEM).
    pub target_ca_pem: Vec<u8>,
    /// HTTPS targets: accept any certificate.
    pub target_insecure: bool,
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

/// How the controller reaches its agents.
#[derive(Debug, Clone, Default)]
pub struct ChannelConfig {
    /// Sent on every call (its `Debug` is redacted).
    pub token: Option<Token>,
    /// TLS settings; `None` for plain gRPC.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Whether a client certificate is presented (for messages).
    pub mutual: bool,
}

impl RunArgs {
    /// Checks every flag and gathers them into a [`RunConfig`].
    pub fn check(&self) -> Result<RunConfig, Error> {
        let scenario = self.scenario_run()?;
        let url = match (&scenario, &self.url) {
            (Some(sc), _) => sc.scenario.base_url.clone().unwrap_or_default(),
            (None, Some(url)) => url.clone(),
            (None, None) => return Err(Error::usage("--url: required (or give --scenario)")),
        };
        let target = volley_proto::target::parse_url(&url).map_err(|e| Error::usage(format!("--url: {e}")))?;
        let target_ca_pem = match &self.target_ca {
            None => Vec::new(),
            Some(p) => {
                let pem = std::fs::read(p)
                    .map_err(|e| Error::usage(format!("--target-ca: cannot read {}: {e}", p.display())))?;
                // The same check the agents make, so a bad file stops the run here.
                volley_proto::tls::server_name(&target.host)
                    .and_then(|_| volley_proto::tls::ca_roots(&pem))
                    .map_err(|e| Error::usage(format!("--target-ca: {}: {e}", p.display())))?;
                pem
            }
        };
        let limit = match (self.requests, self.duration) {
            (Some(0), _) => return Err(Error::usage("-n/--requests: must be at least 1")),
            (Some(n), None) => Limit::Requests(n),
            (None, Some(d)) => Limit::Duration(d),
            // clap's group already enforces exactly one; kept for callers that
            // build RunArgs by hand.
            _ => return Err(Error::usage("give exactly one of -n/--requests and -z/--duration")),
        };
        if self.connections == 0 {
            return Err(Error::usage("-c/--connections: must be at least 1"));
        }
        // A scenario's virtual users take the place of connections.
        let connections = match &scenario {
            Some(sc) => u32::try_from(sc.users).unwrap_or(u32::MAX),
            None => self.connections,
        };
        if self.connections > limits::MAX_CONNECTIONS {
            return Err(Error::usage(format!(
                "-c/--connections: {} is more than {}",
                self.connections,
                limits::MAX_CONNECTIONS
            )));
        }
        if let Some(t) = self.threads.filter(|&t| t == 0 || t > limits::MAX_THREADS) {
            return Err(Error::usage(format!("--threads: {t} is not in 1..={}", limits::MAX_THREADS)));
        }
        if let Some(r) = self.rate.filter(|r| !(r.is_finite() && *r > 0.0 && *r <= limits::MAX_RATE * 100.0)) {
            return Err(Error::usage(format!("-q/--rate: {r} is not a rate above 0 requests per second")));
        }
        let ramp_up = self.ramp_up.unwrap_or_default();
        if let Limit::Duration(d) = limit
            && !ramp_up.is_zero()
            && ramp_up >= d
        {
            return Err(Error::usage(format!(
                "--ramp-up: {} is not shorter than the run's -z {}",
                humantime::format_duration(ramp_up),
                humantime::format_duration(d)
            )));
        }
        let method = self.method.to_ascii_uppercase();
        if http_method_invalid(&method) {
            return Err(Error::usage(format!("-m/--method: {:?} is not an HTTP method", self.method)));
        }
        let mut headers = Vec::new();
        for h in &self.headers {
            let (name, value) =
                h.split_once(':').ok_or_else(|| Error::usage(format!("-H/--header: {h:?} is not 'Name: value'")))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(Error::usage(format!("-H/--header: {name:?} is not a header name")));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(Error::usage(format!("-H/--header: the value of {name:?} contains a line break")));
            }
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
        let body = match &self.body {
            None => Vec::new(),
            Some(b) => match b.strip_prefix('@') {
                Some(path) => {
                    std::fs::read(path).map_err(|e| Error::usage(format!("-d/--body: cannot read {path:?}: {e}")))?
                }
                None => b.as_bytes().to_vec(),
            },
        };
        if let Some(bad) = self.success_status.iter().find(|s| !(100..1000).contains(*s)) {
            return Err(Error::usage(format!("--success-status: {bad} is not an HTTP status")));
        }
        let agents = match &self.agents {
            None => Vec::new(),
            Some(list) => parse_agents(list)?,
        };
        if let Some(k) = self.min_agents
            && (k == 0 || k > agents.len().max(1))
        {
            return Err(Error::usage(format!(
                "--min-agents: {k} is not between 1 and the {} agents listed",
                agents.len().max(1)
            )));
        }
        if self.min_agents.is_none() && !agents.is_empty() && (connections as usize) < agents.len() {
            let flag = if scenario.is_some() { "-u/--users" } else { "-c/--connections" };
            return Err(Error::usage(format!(
                "{flag}: {connections} is fewer than the {} agents; each agent needs at least one",
                agents.len()
            )));
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
            timeout: self.timeout,
            success_status: self.success_status.clone(),
            output: self.output,
            rate: self.rate,
            ramp_up,
            min_agents: self.min_agents,
            channel: self.link.channel()?,
            thresholds: self
                .fail_if
                .iter()
                .map(|e| e.parse().map_err(|why| Error::usage(format!("--fail-if: {why}"))))
                .collect::<Result<_, _>>()?,
            hdr_log: self.hdr_log.clone(),
            html: self.html.clone(),
            quiet: self.quiet,
            scenario,
            target_ca_pem,
            target_insecure: self.target_insecure,
        })
    }

    /// Loads and checks `--scenario` with its flags; flags that only scenario
    /// runs take are refused without it.
    fn scenario_run(&self) -> Result<Option<ScenarioRun>, Error> {
        let loaded = match (&self.scenario, &self.scenario_text) {
            (Some(path), _) => Some(volley_scenario::Scenario::load(path)),
            (None, Some(text)) => Some(volley_scenario::file::parse_untrusted(text, "scenario")),
            (None, None) => None,
        };
        let Some(loaded) = loaded else {
            let stray = [
                (self.users.is_some(), "-u/--users"),
                (self.spawn_rate.is_some(), "-r/--spawn-rate"),
                (!self.tags.is_empty(), "--tags"),
                (!self.exclude_tags.is_empty(), "--exclude-tags"),
            ];
            if let Some((_, flag)) = stray.iter().find(|(given, _)| *given) {
                return Err(Error::usage(format!("{flag}: only for --scenario runs")));
            }
            return Ok(None);
        };
        let mut scenario = loaded.map_err(|e| Error::usage(format!("--scenario: {e}")))?;
        if let Some(url) = &self.url {
            scenario = scenario.with_base_url(url);
        }
        let scenario = scenario
            .select_tags(&self.tags, &self.exclude_tags)
            .map_err(|e| Error::usage(format!("--scenario: {e}")))?;
        // Again with --url and the tags applied.
        scenario.compile().map_err(|e| Error::usage(format!("--scenario: {e}")))?;
        if self.rate.is_some() {
            return Err(Error::usage(
                "-q/--rate: scenarios pace themselves with think times (e.g. think = \"constant_throughput 2\")",
            ));
        }
        if !self.headers.is_empty() || self.body.is_some() || self.method != "GET" || !self.success_status.is_empty() {
            return Err(Error::usage(
                "--scenario: -m, -H, -d and --success-status are set per request in the scenario file",
            ));
        }
        let users = self.users.unwrap_or(u64::from(self.connections));
        if users == 0 || users > u64::from(limits::MAX_CONNECTIONS) {
            return Err(Error::usage(format!("-u/--users: {users} is not in 1..={}", limits::MAX_CONNECTIONS)));
        }
        let per_type = scenario.split_users(users).map_err(|e| Error::usage(format!("-u/--users: {e}")))?;
        if let Some(r) = self.spawn_rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(Error::usage(format!("-r/--spawn-rate: {r} is not a number of users per second above 0")));
        }
        Ok(Some(ScenarioRun { json: scenario.to_json(), scenario, users, per_type, spawn_rate: self.spawn_rate }))
    }
}

impl AgentLink {
    /// The token and TLS settings, with unreadable files named.
    pub fn channel(&self) -> Result<ChannelConfig, Error> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |flag: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| Error::usage(format!("{flag}: cannot read {}: {e}", p.display())))
        };
        let tls = match &self.tls_ca {
            None => None,
            Some(ca) => {
                let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
                if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                    tls = tls.identity(Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?));
                }
                if let Some(d) = &self.tls_domain {
                    tls = tls.domain_name(d.clone());
                }
                Some(tls)
            }
        };
        Ok(ChannelConfig { token: self.token.as_deref().and_then(Token::new), tls, mutual: self.tls_cert.is_some() })
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn http_method_invalid(m: &str) -> bool {
    m.is_empty() || !m.bytes().all(is_tchar)
}

/// Parses `--agents`: comma-separated `host:port` (IPv6 as `[addr]:port`),
/// `dns:name:port`, and `@file` (read here, one entry per line, blank lines
/// and `#` comments skipped). Names are resolved later, by
/// [`discovery::discover`](crate::discovery::discover).
pub fn parse_agents(list: &str) -> Result<Vec<AgentSource>, Error> {
    let mut out = Vec::new();
    for entry in list.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(Error::usage(format!("--agents: empty entry in {list:?}")));
        }
        let Some(path) = entry.strip_prefix('@') else {
            push_agent(&mut out, parse_agent(entry)?)?;
            continue;
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::usage(format!("--agents: cannot read {path:?}: {e}")))?;
        let before = out.len();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if line.starts_with('@') {
                return Err(Error::usage(format!("--agents: {path:?} names another file ({line:?})")));
            }
            let source = parse_agent(line).map_err(|e| Error::usage(format!("{e} (in {path:?})")))?;
            push_agent(&mut out, source)?;
        }
        if out.len() == before {
            return Err(Error::usage(format!("--agents: {path:?} lists no agents")));
        }
    }
    Ok(out)
}

fn push_agent(out: &mut Vec<AgentSource>, source: AgentSource) -> Result<(), Error> {
    if out.contains(&source) {
        return Err(Error::usage(format!("--agents: {:?} is listed twice", source.to_string())));
    }
    out.push(source);
    Ok(())
}

/// One `host:port` or `dns:name:port` entry.
fn parse_agent(entry: &str) -> Result<AgentSource, Error> {
    let bad = |why: &str| Error::usage(format!("--agents: {entry:?} {why}"));
    let (dns, spec) = match entry.strip_prefix("dns:") {
        Some(rest) => (true, rest),
        None => (false, entry),
    };
    let (host, port) = spec.rsplit_once(':').ok_or_else(|| bad("has no port; use HOST:PORT or dns:NAME:PORT"))?;
    let port: u16 = port.parse().map_err(|_| bad("has an invalid port"))?;
    if port == 0 {
        return Err(bad("has port 0"));
    }
    let is_name =
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if dns {
        if !is_name {
            return Err(bad("has an invalid name; use dns:NAME:PORT"));
        }
        return Ok(AgentSource::Dns { name: host.to_owned(), port });
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => is_name,
    };
    if !host_ok {
        return Err(bad("has an invalid host"));
    }
    Ok(AgentSource::Address(entry.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(list: &str) -> Vec<String> {
        parse_agents(list).unwrap().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn agent_lists() {
        assert_eq!(shown("a:1,127.0.0.1:7070, [::1]:9"), ["a:1", "127.0.0.1:7070", "[::1]:9"]);
        assert_eq!(
            parse_agents("dns:agents.volley.svc.cluster.local:7070").unwrap(),
            [AgentSource::Dns { name: "agents.volley.svc.cluster.local".into(), port: 7070 }]
        );
        for bad in [
            "",
            "a",
            "a:",
            "a:x",
            "a:0",
            "a:70000",
            ":80",
            "a:1,,b:2",
            "a b:1",
            "a:1,a:1",
            "[zz]:1",
            "dns:a",
            "dns::1",
            "dns:[::1]:1",
            "dns:a:1,dns:a:1",
            "@",
        ] {
            assert!(parse_agents(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn agent_files() {
        let dir = std::env::temp_dir().join(format!("volley-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agents");
        std::fs::write(&file, "# load hosts\n10.0.0.1:7070\n\n  dns:more.example:7070  \n").unwrap();
        let list = format!("x:1,@{}", file.display());
        assert_eq!(shown(&list), ["x:1", "10.0.0.1:7070", "dns:more.example:7070"]);
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(parse_agents(&list).unwrap_err().to_string().contains("lists no agents"));
        std::fs::write(&file, "ok:1\nnot an address\n").unwrap();
        let e = parse_agents(&list).unwrap_err().to_string();
        assert!(e.contains("not an address") && e.contains("agents\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = parse_agents("@/nonexistent/agents").unwrap_err().to_string();
        assert!(e.contains("cannot read \"/nonexistent/agents\""), "{e}");
    }
}
