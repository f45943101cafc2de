//! A run plan as the engine needs it: checked, resolved and serialised once.
//!
//! The protobuf [`RunPlan`] comes from the network, so every field is checked
//! here before any load starts, and each rejection names the field and why.
//! The rules the controller shares (target URLs, limits) are the contract's,
//! in [`volley_proto`]; this module applies them and adds the agent's own.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use volley_proto::limits::{
    DEFAULT_TIMEOUT, MAX_CONNECTIONS, MAX_DURATION, MAX_HEADERS, MAX_RATE, MAX_SCENARIO, MAX_SLOTS, MAX_STREAMS,
    MAX_THREADS, MAX_TIMEOUT, MAX_URL, MIN_PLAN_RATE,
};
use volley_proto::target::{Target, parse_url};
use volley_proto::{PROTOCOL_VERSION, RunPlan, run_plan};

use volley_proto::connect_to::ConnectTo;

use crate::http1::RequestBytes;
use crate::resolve::Addresses;

/// How much work a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Exactly this many requests, across all threads and connections.
    Requests(u64),
    /// As many requests as fit in this time; in-flight ones are completed.
    Duration(Duration),
}

/// Which responses count as successes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Success {
    /// Any 2xx status.
    Any2xx,
    /// Exactly these statuses.
    Statuses(Vec<u16>),
}

impl Success {
    /// Whether `status` counts as a success.
    #[inline]
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Success::Any2xx => (200..300).contains(&status),
            Success::Statuses(list) => list.contains(&status),
        }
    }
}

/// A plan ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The controller's name for the run.
    pub run_id: String,
    /// The target as the URL names it.
    pub target: Target,
    /// Request body bytes (for the agent's size limit).
    pub body_len: usize,
    /// The target's first resolved address (of the family the source
    /// addresses must match).
    pub addr: SocketAddr,
    /// Every target address, kept current while the run goes (`--resolve-each`).
    pub targets: std::sync::Arc<crate::resolve::Addresses>,
    /// The run-wide index of this agent's first connection: connection `i`
    /// opens its `k`-th connection to address `first_conn + i + k`, round-robin.
    pub first_conn: u64,
    /// The request, serialised once.
    pub request: RequestBytes,
    /// How much work.
    pub limit: Limit,
    /// Connections to keep open.
    pub connections: usize,
    /// Worker threads (never more than connections).
    pub threads: usize,
    /// The I/O engine the workers use: the agent's (`--io`), set by the
    /// service, or epoll where the io_uring engine does not reach (see
    /// [`crate::uring::for_run`]).
    pub io: crate::uring::Engine,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Which statuses are successes.
    pub success: Success,
    /// When to start, if the controller gave a common instant.
    pub start_at: Option<SystemTime>,
    /// Open model: requests per second on a fixed schedule; `None` is the
    /// closed model.
    pub rate: Option<f64>,
    /// Time over which the rate (or the active connections) grows from zero.
    pub ramp_up: Duration,
    /// How the rate (or the active connections) moves over time, as
    /// fractions of `rate` (or `connections`): the stages, or the ramp-up;
    /// `None` when the run is flat from the start.
    pub profile: Option<volley_proto::profile::Profile>,
    /// The run lease: stop if the controller does not renew for this long.
    pub lease: Option<Duration>,
    /// Count mode: the request limit is a first grant; more may follow.
    pub open_quota: bool,
    /// `https://` targets: how to open TLS.
    pub tls: Option<crate::tls::TlsTarget>,
    /// Scenario runs: the scenario and this agent's users.
    pub scenario: Option<std::sync::Arc<crate::scenario::ScenarioPlan>>,
    /// HTTP/2 (`--http2`, not scenarios): the request, built once.
    pub http2: Option<crate::http2::H2Request>,
    /// HTTP/2: concurrent streams per connection (1 for HTTP/1.1).
    pub streams: usize,
    /// Wide runs: the source addresses connections bind to, round-robin.
    pub sources: Option<Sources>,
}

impl Plan {
    /// Request slots: connections × streams (the requests in flight at most).
    pub fn slots(&self) -> usize {
        self.connections * self.streams
    }
}

/// The source addresses of a run and where this agent's connections begin
/// in the run-wide round-robin over them.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The addresses.
    pub addrs: std::sync::Arc<volley_proto::source::SourceAddrs>,
    /// The run-wide index of this agent's first connection.
    pub offset: u64,
}

impl Sources {
    /// The address for this agent's connection `i`.
    pub fn for_connection(&self, i: u64) -> std::net::IpAddr {
        self.addrs.nth(self.offset.wrapping_add(i))
    }
}

/// Why a plan was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The controller speaks another protocol version.
    #[error("protocol version {got} is not this agent's version {PROTOCOL_VERSION}")]
    Version {
        /// The version the plan carried.
        got: u32,
    },
    /// A field has a value the agent cannot run.
    #[error("invalid plan field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The target host name does not resolve.
    #[error("cannot resolve target host {host}: {reason}")]
    Resolve {
        /// host:port as given.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid { field, reason: reason.into() }
}

/// The plan's profile: its stages (checked), else its ramp-up, else none.
fn profile(p: &RunPlan, ramp_up: Duration) -> Result<Option<volley_proto::profile::Profile>, PlanError> {
    if p.stages.is_empty() {
        return Ok((!ramp_up.is_zero()).then(|| volley_proto::profile::Profile::ramp(ramp_up.as_secs_f64())));
    }
    if p.stages.len() > volley_proto::limits::MAX_STAGES {
        return Err(invalid(
            "stages",
            format!("{} stages are more than {}", p.stages.len(), volley_proto::limits::MAX_STAGES),
        ));
    }
    if p.ramp_up_ms > 0 {
        return Err(invalid("stages", "not with a ramp-up"));
    }
    let mut total = Duration::ZERO;
    for s in &p.stages {
        if !(0.0..=1.0).contains(&s.level) {
            return Err(invalid("stages", format!("level {} is not a fraction in [0, 1]", s.level)));
        }
        total = total.saturating_add(Duration::from_millis(s.duration_ms));
    }
    if total > MAX_DURATION {
        return Err(invalid("stages", format!("they last longer than the {} s limit", MAX_DURATION.as_secs())));
    }
    let stages = p.stages.iter().map(|s| (s.duration_ms as f64 / 1000.0, s.level));
    Ok(Some(volley_proto::profile::Profile::from_stages(stages)))
}

/// Checks a scenario plan's own fields.
fn scenario_plan(p: &RunPlan) -> Result<Option<std::sync::Arc<crate::scenario::ScenarioPlan>>, PlanError> {
    if p.scenario.is_empty() {
        return Ok(None);
    }
    if p.scenario.len() > MAX_SCENARIO {
        return Err(invalid("scenario", format!("{} bytes is more than {MAX_SCENARIO}", p.scenario.len())));
    }
    let scenario = volley_scenario::Scenario::from_json(&p.scenario).map_err(|e| invalid("scenario", e.to_string()))?;
    let compiled = scenario.compile().map_err(|e| invalid("scenario", e.to_string()))?;
    if compiled.base_url.trim_end_matches('/') != p.url.trim_end_matches('/') {
        return Err(invalid("url", format!("{:?} is not the scenario's base URL {:?}", p.url, compiled.base_url)));
    }
    if p.users.len() != compiled.users.len() || p.users.iter().sum::<u64>() != u64::from(p.connections) {
        return Err(invalid(
            "users",
            format!("{:?} is not one count per user type adding up to the {} connections", p.users, p.connections),
        ));
    }
    if p.rate != 0.0 {
        return Err(invalid("rate", "scenarios pace themselves with think times; a rate is not for them"));
    }
    let spawn_rate = match p.spawn_rate {
        0.0 => None,
        r if r.is_finite() && r >= MIN_PLAN_RATE => Some(r),
        r => {
            return Err(invalid(
                "spawn_rate",
                format!("{r} is not a number of users per second of at least {MIN_PLAN_RATE:e}"),
            ));
        }
    };
    let feeders = crate::scenario::feeders_of(&scenario, &p.feeders).map_err(|e| invalid("feeders", e))?;
    let plan = crate::scenario::ScenarioPlan {
        compiled,
        feeders,
        users: p.users.clone(),
        spawn_rate,
        ca_pem: p.target_ca_pem.clone(),
        insecure: p.target_insecure,
        http2: p.http2,
        staged: !p.stages.is_empty(),
    };
    // Refused here, not on a worker thread: a CA that does not parse.
    plan.client(DEFAULT_TIMEOUT).map_err(|e| invalid("target_ca_pem", e))?;
    Ok(Some(std::sync::Arc::new(plan)))
}

impl Plan {
    /// Checks a plan from the wire and resolves its target.
    pub async fn from_proto(p: RunPlan, default_threads: usize) -> Result<Plan, PlanError> {
        if p.protocol_version != PROTOCOL_VERSION {
            return Err(PlanError::Version { got: p.protocol_version });
        }
        if p.url.len() > MAX_URL {
            return Err(invalid("url", format!("{} bytes is longer than {MAX_URL}", p.url.len())));
        }
        if p.headers.len() > MAX_HEADERS {
            return Err(invalid("headers", format!("{} headers are more than {MAX_HEADERS}", p.headers.len())));
        }
        let target = parse_url(&p.url).map_err(|e| invalid("url", e.to_string()))?;
        let scenario = scenario_plan(&p)?;
        let tls = match (target.tls, &scenario) {
            (true, None) => Some(
                crate::tls::TlsTarget::with_alpn(&target.host, &p.target_ca_pem, p.target_insecure, p.http2)
                    .map_err(|e| invalid("target_ca_pem", e))?,
            ),
            _ => None,
        };
        let method = if p.method.is_empty() { "GET".to_owned() } else { p.method.clone() };
        http::Method::from_bytes(method.as_bytes())
            .map_err(|_| invalid("method", format!("{method:?} is not an HTTP method")))?;
        let mut headers = Vec::with_capacity(p.headers.len());
        for h in &p.headers {
            http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| invalid("headers", format!("{:?} is not a header name", h.name)))?;
            http::HeaderValue::from_bytes(&h.value).map_err(|_| {
                invalid("headers", format!("the value of header {:?} is not a valid header value", h.name))
            })?;
            headers.push((h.name.clone(), h.value.clone()));
        }
        let limit = match p.limit {
            Some(run_plan::Limit::Requests(0)) => return Err(invalid("requests", "must be at least 1")),
            Some(run_plan::Limit::Requests(n)) => Limit::Requests(n),
            Some(run_plan::Limit::DurationMs(0)) => return Err(invalid("duration_ms", "must be at least 1 ms")),
            Some(run_plan::Limit::DurationMs(ms)) => {
                let d = Duration::from_millis(ms);
                if d > MAX_DURATION {
                    return Err(invalid(
                        "duration_ms",
                        format!("{ms} ms is longer than the {} s limit", MAX_DURATION.as_secs()),
                    ));
                }
                Limit::Duration(d)
            }
            None => return Err(invalid("limit", "give either a request count or a duration")),
        };
        if p.connections == 0 || p.connections > MAX_CONNECTIONS {
            return Err(invalid("connections", format!("{} is not in 1..={MAX_CONNECTIONS}", p.connections)));
        }
        if p.threads > MAX_THREADS {
            return Err(invalid("threads", format!("{} is more than {MAX_THREADS}", p.threads)));
        }
        let connections = p.connections as usize;
        let threads = if p.threads == 0 { default_threads } else { p.threads as usize };
        let threads = threads.clamp(1, connections);
        let timeout = if p.timeout_ms == 0 { DEFAULT_TIMEOUT } else { Duration::from_millis(p.timeout_ms) };
        if timeout > MAX_TIMEOUT {
            return Err(invalid(
                "timeout_ms",
                format!("{} ms is longer than the {} s limit", p.timeout_ms, MAX_TIMEOUT.as_secs()),
            ));
        }
        let success = if p.success_status.is_empty() {
            Success::Any2xx
        } else {
            let mut list = Vec::with_capacity(p.success_status.len());
            for &s in &p.success_status {
                if !(100..1000).contains(&s) {
                    return Err(invalid("success_status", format!("{s} is not an HTTP status")));
                }
                list.push(s as u16);
            }
            Success::Statuses(list)
        };
        let rate = match p.rate {
            0.0 => None,
            r if (MIN_PLAN_RATE..=MAX_RATE).contains(&r) => Some(r),
            r => {
                return Err(invalid(
                    "rate",
                    format!("{r} is not a rate in [{MIN_PLAN_RATE:e}, {MAX_RATE}] requests per second"),
                ));
            }
        };
        let ramp_up = Duration::from_millis(p.ramp_up_ms);
        if ramp_up > MAX_DURATION {
            return Err(invalid(
                "ramp_up_ms",
                format!("{} ms is longer than the {} s limit", p.ramp_up_ms, MAX_DURATION.as_secs()),
            ));
        }
        let profile = profile(&p, ramp_up)?;
        let lease = (p.lease_ms > 0).then(|| Duration::from_millis(p.lease_ms.max(100)));
        let open_quota = p.open_quota && matches!(limit, Limit::Requests(_));
        let start_at =
            (p.start_at_unix_us > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_micros(p.start_at_unix_us));
        let targets = targets(&p, &target, scenario.is_some()).await?;
        let current = targets.current();
        // With source addresses: the first target address of their family.
        let of_sources = volley_proto::source::SourceAddrs::parse(&p.source_addrs).ok().and_then(|s| {
            let family = s.ends().next()?;
            current.iter().find(|a| a.is_ipv4() == family.is_ipv4()).copied()
        });
        let addr = of_sources.unwrap_or(current[0]);
        let sources = sources(&p, addr)?;
        if sources.is_some() {
            // Connections bound to the sources reach only their family.
            targets.keep_family(addr.is_ipv4());
        }
        let request = RequestBytes::new(&method, &target.path_and_query, &target.host_header, &headers, &p.body);
        let body_len = p.body.len();
        if p.streams > MAX_STREAMS {
            return Err(invalid("streams", format!("{} is more than {MAX_STREAMS}", p.streams)));
        }
        if p.streams > 1 && !p.http2 {
            return Err(invalid("streams", "more than one stream per connection needs http2"));
        }
        let streams = p.streams.max(1) as usize;
        if (connections * streams) as u64 > MAX_SLOTS {
            return Err(invalid(
                "streams",
                format!("{connections} connections × {streams} streams is more than {MAX_SLOTS} requests in flight"),
            ));
        }
        let http2 = match (p.http2, &scenario) {
            (true, None) => {
                let scheme = if target.tls { "https" } else { "http" };
                Some(
                    crate::http2::H2Request::new(
                        &method,
                        scheme,
                        &target.host_header,
                        &target.path_and_query,
                        &headers,
                        &p.body,
                    )
                    .map_err(|e| invalid("http2", e))?,
                )
            }
            _ => None,
        };
        Ok(Plan {
            run_id: p.run_id,
            target: target.clone(),
            body_len,
            addr,
            targets,
            first_conn: p.source_offset,
            request,
            limit,
            connections,
            threads,
            io: crate::uring::Engine::Epoll,
            timeout,
            success,
            start_at,
            rate,
            ramp_up,
            profile,
            lease,
            open_quota,
            tls,
            scenario,
            http2,
            streams,
            sources,
        })
    }
}

/// Most `--connect-to` entries a plan may carry.
const MAX_CONNECT_TO: usize = 64;

/// Resolves the plan's target (or its `--connect-to` replacement): every
/// address, to be resolved again every `resolve_each_ms` (not for scenarios,
/// whose HTTP client resolves for itself).
async fn targets(p: &RunPlan, target: &Target, scenario: bool) -> Result<std::sync::Arc<Addresses>, PlanError> {
    if p.connect_to.len() > MAX_CONNECT_TO {
        return Err(invalid("connect_to", format!("{} entries are more than {MAX_CONNECT_TO}", p.connect_to.len())));
    }
    let mut pins = Vec::with_capacity(p.connect_to.len());
    for c in &p.connect_to {
        pins.push(c.parse::<ConnectTo>().map_err(|e| invalid("connect_to", e.to_string()))?);
    }
    if scenario && !pins.is_empty() {
        return Err(invalid("connect_to", "not for scenario runs"));
    }
    let every = Duration::from_millis(p.resolve_each_ms);
    if every > MAX_DURATION {
        return Err(invalid(
            "resolve_each_ms",
            format!("{} ms is longer than the {} s limit", p.resolve_each_ms, MAX_DURATION.as_secs()),
        ));
    }
    let every = (!every.is_zero() && !scenario).then_some(every);
    let (host, port, shown) = match ConnectTo::route(&pins, &target.host, target.port) {
        Some((host, port)) => {
            let shown = format!("{} (--connect-to {host}:{port})", target.authority);
            (host, port, shown)
        }
        None => (target.host.clone(), target.port, target.authority.clone()),
    };
    let first =
        crate::resolve::lookup(&host, port).await.map_err(|reason| PlanError::Resolve { host: shown, reason })?;
    Ok(std::sync::Arc::new(Addresses::new(host, port, every, first)))
}

/// Checks a plan's source addresses: they parse and are of the target's
/// family (whether this agent allows them is [`crate::security::Limits`]'
/// call; whether they are this host's, [`crate::connect::check_sources`]').
fn sources(p: &RunPlan, target: SocketAddr) -> Result<Option<Sources>, PlanError> {
    if p.source_addrs.is_empty() {
        return Ok(None);
    }
    if !p.scenario.is_empty() {
        return Err(invalid("source_addrs", "not for scenario runs"));
    }
    let addrs = volley_proto::source::SourceAddrs::parse(&p.source_addrs)
        .map_err(|e| invalid("source_addrs", e.to_string()))?;
    if let Some(other) = addrs.family_mismatch(target.ip()) {
        return Err(invalid(
            "source_addrs",
            format!("{other} is not of the target's address family ({})", target.ip()),
        ));
    }
    Ok(Some(Sources { addrs: std::sync::Arc::new(addrs), offset: p.source_offset }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RunPlan {
        RunPlan {
            protocol_version: PROTOCOL_VERSION,
            url: "http://127.0.0.1:9/".into(),
            connections: 4,
            limit: Some(run_plan::Limit::Requests(10)),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn checks_every_field() {
        assert!(Plan::from_proto(plan(), 2).await.is_ok());
        type Mutation = fn(&mut RunPlan);
        let cases: Vec<(Mutation, &str)> = vec![
            (|p| p.protocol_version = 99, "protocol version 99"),
            (|p| p.connections = 0, "`connections`"),
            (|p| p.limit = Some(run_plan::Limit::Requests(0)), "`requests`"),
            (|p| p.limit = None, "`limit`"),
            (|p| p.limit = Some(run_plan::Limit::DurationMs(u64::MAX)), "`duration_ms`"),
            (|p| p.method = "G ET".into(), "`method`"),
            (|p| p.threads = 5000, "`threads`"),
            (|p| p.success_status = vec![42], "`success_status`"),
            (|p| p.url = "gopher://x/".into(), "gopher"),
            (|p| (p.url, p.target_ca_pem) = ("https://x/".into(), b"junk".to_vec()), "`target_ca_pem`"),
            (|p| p.rate = -1.0, "`rate`"),
            (|p| p.rate = f64::NAN, "`rate`"),
            (|p| p.rate = 1e-300, "`rate`"),
            (|p| p.rate = f64::MIN_POSITIVE, "`rate`"),
            (|p| p.rate = f64::INFINITY, "`rate`"),
            (|p| p.timeout_ms = u64::MAX, "`timeout_ms`"),
            (|p| p.ramp_up_ms = u64::MAX, "`ramp_up_ms`"),
            (|p| p.streams = 10, "needs http2"),
            (|p| (p.http2, p.streams) = (true, 1001), "`streams`"),
            (|p| (p.http2, p.streams, p.connections) = (true, 1000, 100_000), "requests in flight"),
            (|p| p.source_addrs = vec!["127.0.0.2-x".into()], "`source_addrs`"),
            (|p| p.connect_to = vec!["a:1:b".into()], "`connect_to`"),
            (|p| p.resolve_each_ms = u64::MAX, "`resolve_each_ms`"),
            (|p| p.source_addrs = vec!["::1".into()], "not of the target's address family"),
            (|p| p.stages = vec![volley_proto::Stage { duration_ms: 1, level: 1.5 }], "`stages`"),
            (|p| p.stages = vec![volley_proto::Stage { duration_ms: 1, level: f64::NAN }], "`stages`"),
            (|p| p.stages = vec![volley_proto::Stage { duration_ms: u64::MAX, level: 1.0 }; 2], "`stages`"),
            (|p| p.stages = vec![volley_proto::Stage::default(); 1001], "`stages`"),
            (
                |p| {
                    p.stages = vec![volley_proto::Stage { duration_ms: 1, level: 1.0 }];
                    p.ramp_up_ms = 5;
                },
                "`stages`",
            ),
        ];
        for (mutate, needle) in cases {
            let mut p = plan();
            mutate(&mut p);
            let err = Plan::from_proto(p, 2).await.unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        assert!(Plan::from_proto(plan(), 2).await.unwrap().tls.is_none());
        // https: TLS to the URL's host, on 443 unless the URL says otherwise.
        let https = Plan::from_proto(RunPlan { url: "https://127.0.0.1/".into(), ..plan() }, 2).await.unwrap();
        assert_eq!(https.addr.port(), 443);
        assert_eq!(https.tls.unwrap().name, rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap());
        // --connect-to: the URL's host and port are pinned to another address.
        let pinned = RunPlan { connect_to: vec!["127.0.0.1:9:127.0.0.3:99".into()], ..plan() };
        let pinned = Plan::from_proto(pinned, 2).await.unwrap();
        assert_eq!(&pinned.targets.current()[..], ["127.0.0.3:99".parse().unwrap()]);
        assert_eq!(pinned.target.host_header, "127.0.0.1:9", "the request still names the URL's host");
        let p = Plan::from_proto(RunPlan { threads: 0, connections: 1, ..plan() }, 8).await.unwrap();
        assert_eq!(p.threads, 1, "never more threads than connections");
    }
}
