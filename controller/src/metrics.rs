//! Live metrics for Prometheus: `--metrics-listen ADDR` serves `/metrics`
//! with the merged, live figures of the run (or, under `controller serve`,
//! the runs) going on.
//!
//! Nothing here is on the agents' hot path, nor even per snapshot on the
//! controller: the merge loop adds every agent's snapshot delta into one
//! running total about once per agent-second, and the metrics read that very
//! total ([`Observer::running_total`]), under its lock, at each scrape; [`Tee`]
//! only notes agents' states and in-flight levels. A scrape encodes the
//! figures at that moment through the `prometheus-client` crate (a custom
//! [`Collector`]), so the counters are the merged exact totals, monotonic,
//! and at the end of a run they add up to the report's.
//!
//! Latency histograms are derived from the merged HdrHistograms at scrape
//! time, over the fixed bucket bounds of [`BUCKETS_SECONDS`]: one pass over
//! the merged histogram's counts per scrape, whatever the number of agents.
//! The `volley_agent_up` lines (one per agent) are encoded again only when
//! an agent's state changed ([`Exposition`]). A finished run's figures stay
//! until the next run starts, so the last scrape of a run is never lost.
//!
//! The families and labels are listed in the book's "Prometheus and Grafana"
//! page; their cardinality is bounded: status classes (not codes), error
//! classes, at most [`MAX_NAMES`] request names per scenario run, one
//! `agent` label value per agent.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use volley_stats::Totals;

use crate::config::RunConfig;
use crate::outcome::{AgentOutcome, AgentState, Observer, SharedTotals, lock_totals};

/// Upper bounds of the latency histogram buckets, in seconds (`+Inf`
/// follows). Chosen for latency work: about three per decade from 100 µs
/// to 1 s (1, 2.5, 5 steps with 7.5 where p99s tend to sit), coarser above,
/// up to a minute. `histogram_quantile` over them can be off by up to one
/// bucket's width; the report's percentiles are exact.
pub const BUCKETS_SECONDS: [f64; 24] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 120.0,
];

/// Most request names of a scenario run with series of their own; the
/// others share the name [`OTHER_NAMES`].
pub const MAX_NAMES: usize = 50;

/// The `name` label of request names past [`MAX_NAMES`].
pub const OTHER_NAMES: &str = "(other names)";

/// How a response's status decides its `outcome` label.
#[derive(Debug, Clone)]
enum Rule {
    /// Any 2xx is a success (the default).
    Any2xx,
    /// Exactly these statuses (`--success-status`).
    Statuses(Vec<u16>),
    /// Scenario runs: assertions decide, so a status says nothing; responses
    /// are labelled `status_class="any"`.
    Scenario,
}

impl Rule {
    fn accepts(&self, status: u16) -> bool {
        match self {
            Rule::Any2xx => (200..300).contains(&status),
            Rule::Statuses(list) => list.contains(&status),
            Rule::Scenario => false,
        }
    }
}

/// One agent of a run, as the metrics see it.
#[derive(Debug, Clone)]
struct Agent {
    address: String,
    connections: u32,
    rate: Option<f64>,
    running: bool,
    /// Lost or unreachable agents are down.
    up: bool,
    /// Requests in flight at its last snapshot.
    in_flight: u64,
}

/// The live figures of one run.
#[derive(Debug)]
struct RunFigures {
    key: u64,
    /// The `run_id` label: the API's id under `controller serve`, the
    /// coordinator's (as agents log it) under `controller run`.
    id: Option<String>,
    rule: Rule,
    open_model: bool,
    users: Option<(u64, Option<f64>)>,
    started: Option<Instant>,
    active: bool,
    agents: Vec<Agent>,
    /// The merge's running total (empty until the run starts).
    total: SharedTotals,
}

impl RunFigures {
    /// Users started by now: all of them, or as many as the spawn rate has
    /// started since the run began.
    fn users(&self) -> u64 {
        match (self.users, self.started) {
            (Some((n, Some(rate))), Some(t)) => ((t.elapsed().as_secs_f64() * rate) as u64).min(n),
            (Some((n, _)), _) => n,
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
struct Runs {
    next: u64,
    runs: Vec<RunFigures>,
    /// Bumped by every change `volley_agent_up` shows (runs, their ids,
    /// agents and their states), so a scrape re-encodes those lines (one per
    /// agent: most of a wide run's scrape) only when they changed.
    agents_version: u64,
}

/// The live figures every watched run leaves: shared by the runs' [`Tee`]s,
/// which update it, and the `/metrics` endpoint, which encodes it.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    runs: Arc<Mutex<Runs>>,
}

fn lock(m: &Mutex<Runs>) -> MutexGuard<'_, Runs> {
    // A panic while holding it leaves figures that are still worth serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// No runs yet.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Starts watching a run of `cfg`, labelled `run_id` (or, when `None`,
    /// by the id the coordinator gives it). Finished runs are forgotten: the
    /// figures of the last one stayed until now.
    pub fn watch(&self, cfg: &RunConfig, run_id: Option<String>) -> RunMetrics {
        let mut runs = lock(&self.runs);
        runs.agents_version += 1;
        runs.runs.retain(|r| r.active);
        runs.next += 1;
        let key = runs.next;
        let rule = match (&cfg.scenario, cfg.success_status.is_empty()) {
            (Some(_), _) => Rule::Scenario,
            (None, true) => Rule::Any2xx,
            (None, false) => Rule::Statuses(cfg.success_status.clone()),
        };
        runs.runs.push(RunFigures {
            key,
            id: run_id,
            rule,
            open_model: cfg.rate.is_some(),
            users: cfg.scenario.as_ref().map(|s| (s.users, s.spawn_rate)),
            started: None,
            active: true,
            agents: Vec::new(),
            total: SharedTotals::default(),
        });
        RunMetrics { metrics: self.clone(), key }
    }

    /// Changes run `key` with `f`; `agents` says whether that may change
    /// what `volley_agent_up` shows.
    fn with_run(&self, key: u64, agents: bool, f: impl FnOnce(&mut RunFigures)) {
        let mut runs = lock(&self.runs);
        if agents {
            runs.agents_version += 1;
        }
        if let Some(r) = runs.runs.iter_mut().find(|r| r.key == key) {
            f(r);
        }
    }
}

/// The `/metrics` page of some [`Metrics`]: the crate's encoding of two
/// registries, one re-encoded at every scrape (the run's figures), one
/// (`volley_agent_up`, a line per agent) only when an agent's state changed
/// since the last scrape, its text kept in between.
#[derive(Debug)]
pub struct Exposition {
    metrics: Metrics,
    figures: Registry,
    agents: Registry,
    cache: Mutex<Cache>,
}

/// What the last scrape left for the next.
#[derive(Debug, Default)]
struct Cache {
    /// `volley_agent_up`'s text, per format (OpenMetrics, classic), with
    /// the `agents_version` it shows.
    agents: [Option<(u64, String)>; 2],
    /// The last page's length: the next one is allocated that large at once.
    len: usize,
}

impl Exposition {
    /// Encodes `metrics` at each scrape.
    pub fn new(metrics: &Metrics) -> Exposition {
        let mut figures = Registry::default();
        figures.register_collector(Box::new(Figures(metrics.clone())));
        let mut agents = Registry::default();
        agents.register_collector(Box::new(AgentsUp(metrics.clone())));
        Exposition { metrics: metrics.clone(), figures, agents, cache: Mutex::default() }
    }

    /// The page in OpenMetrics text (ending in `# EOF`) or, when
    /// `openmetrics` is false, the classic Prometheus text format.
    pub fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::{prometheus_text, text};
        let encode = |out: &mut String, r: &Registry| {
            if openmetrics { text::encode_registry(out, r) } else { prometheus_text::encode(out, r) }
        };
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut body = String::with_capacity(cache.len + 1024);
        encode(&mut body, &self.figures)?;
        // Read before encoding: a change while encoding makes the next
        // scrape encode again.
        let version = lock(&self.metrics.runs).agents_version;
        let slot = &mut cache.agents[usize::from(!openmetrics)];
        match slot {
            Some((v, agents)) if *v == version => body.push_str(agents),
            _ => {
                let mut agents = String::new();
                encode(&mut agents, &self.agents)?;
                body.push_str(&agents);
                *slot = Some((version, agents));
            }
        }
        if openmetrics {
            text::encode_eof(&mut body)?;
        }
        cache.len = body.len();
        Ok(body)
    }
}

/// One run's handle on the [`Metrics`]; dropping it marks the run finished.
#[derive(Debug)]
pub struct RunMetrics {
    metrics: Metrics,
    key: u64,
}

impl Drop for RunMetrics {
    fn drop(&mut self) {
        self.metrics.with_run(self.key, false, |r| {
            r.active = false;
            for a in &mut r.agents {
                a.running = false;
            }
        });
    }
}

/// An [`Observer`] that passes everything on to `inner` and keeps the
/// run's [`Metrics`] up to date (when it has any).
pub struct Tee<'a> {
    inner: &'a mut dyn Observer,
    run: Option<RunMetrics>,
}

impl<'a> Tee<'a> {
    /// Passes on to `inner`, feeding `run` too if given.
    pub fn new(inner: &'a mut dyn Observer, run: Option<RunMetrics>) -> Tee<'a> {
        Tee { inner, run }
    }

    /// Ends the run's figures: `agents` (the outcome's) adds the agents
    /// found unreachable at the start as down.
    pub fn finish(self, agents: &[AgentOutcome]) {
        if let Some(run) = &self.run {
            unreachable(run, agents);
        }
    }

    /// Changes the run's figures; `agents`: as in [`Metrics::with_run`].
    fn update(&self, agents: bool, f: impl FnOnce(&mut RunFigures)) {
        if let Some(run) = &self.run {
            run.metrics.with_run(run.key, agents, f);
        }
    }
}

impl Observer for Tee<'_> {
    fn run_id(&mut self, id: &str) {
        self.update(true, |r| {
            r.id.get_or_insert_with(|| id.to_owned());
        });
        self.inner.run_id(id);
    }

    fn started(&mut self, agents: &[AgentOutcome]) {
        self.update(true, |r| {
            r.started = Some(Instant::now());
            r.agents = agents
                .iter()
                .map(|a| {
                    // An agent with no share is sent no plan: it never runs.
                    let runs = a.quota != Some(0) && a.connections > 0;
                    Agent {
                        address: a.address.clone(),
                        connections: a.connections,
                        rate: a.rate,
                        running: runs && a.state != AgentState::Unreachable,
                        up: a.state != AgentState::Unreachable,
                        in_flight: 0,
                    }
                })
                .collect();
        });
        self.inner.started(agents);
    }

    fn running_total(&mut self, total: &SharedTotals) {
        self.update(false, |r| r.total = total.clone());
        self.inner.running_total(total);
    }

    fn delta(&mut self, agent: usize, delta: &crate::coordinator::Delta, elapsed: Duration) {
        // The figures read the merge's own total: nothing to add here.
        self.inner.delta(agent, delta, elapsed);
    }

    fn in_flight(&mut self, agent: usize, n: u64) {
        self.update(false, |r| {
            if let Some(a) = r.agents.get_mut(agent) {
                a.in_flight = n;
            }
        });
        self.inner.in_flight(agent, n);
    }

    fn ended(&mut self, agent: usize, state: AgentState, error: Option<&str>) {
        self.update(true, |r| {
            if let Some(a) = r.agents.get_mut(agent) {
                a.running = false;
                a.up = !matches!(state, AgentState::Lost | AgentState::Unreachable);
            }
        });
        self.inner.ended(agent, state, error);
    }
}

/// Adds unreachable agents (known only once the run is over) as down.
fn unreachable(run: &RunMetrics, agents: &[AgentOutcome]) {
    run.metrics.with_run(run.key, true, |r| {
        for a in agents.iter().filter(|a| a.state == AgentState::Unreachable) {
            if !r.agents.iter().any(|k| k.address == a.address) {
                r.agents.push(Agent {
                    address: a.address.clone(),
                    connections: 0,
                    rate: None,
                    running: false,
                    up: false,
                    in_flight: 0,
                });
            }
        }
    });
}

/// The collector: encodes the current figures at each scrape.
#[derive(Debug)]
struct Figures(Metrics);

/// A run's own labels (`run_id`), borrowed: a scrape writes them on every
/// line, and copying them per line was a good part of its cost.
type Labels<'a> = [(&'static str, &'a str); 1];

/// Bucket counts (not cumulative; `+Inf` last) of a histogram in
/// microseconds. A sample counts in the bucket holding the value the report
/// would print for it (its HdrHistogram bucket's highest equivalent value,
/// within 0.1 %).
///
/// A scrape does this for every histogram it exports, so it sums the counts
/// between bounds (one pass over the count array, a few instructions per
/// slot, from the smallest sample to the largest) instead of walking
/// `iter_recorded` (about a hundred per slot: most of a scrape's cost when
/// it did).
fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(BUCKETS_SECONDS.len() + 1);
    // The first value not yet counted in a bucket: the slots below the
    // smallest sample are all empty (latencies are at least 1 µs, so a
    // zero only comes from elsewhere; then start at 0).
    let mut next = if h.count_at(0) > 0 { 0 } else { h.min_nz() };
    let mut counted = 0u64;
    for &bound in &BUCKETS_SECONDS {
        let b = (bound * 1e6).round() as u64;
        // The largest value whose HdrHistogram bucket tops out at or below b.
        let last = if h.highest_equivalent(b) <= b { Some(b) } else { h.lowest_equivalent(b).checked_sub(1) };
        // Nothing lies above the largest sample; stopping there also keeps
        // `count_between` from clamping past its last slot (and counting
        // that slot twice).
        let n = match last.map(|l| l.min(h.max())) {
            Some(l) if l >= next && !h.is_empty() => {
                let n = h.count_between(next, l);
                next = l + 1;
                n
            }
            _ => 0,
        };
        counted += n;
        out.push((bound, n));
    }
    out.push((f64::INFINITY, h.len().saturating_sub(counted)));
    out
}

/// The sum of a histogram's samples in seconds, at the values the report
/// would print: for histograms whose exact sum is not kept (the open
/// model's uncorrected latencies).
fn approximate_sum(h: &Histogram<u64>) -> f64 {
    h.iter_recorded().map(|v| v.value_iterated_to() as f64 / 1e6 * v.count_at_value() as f64).sum()
}

/// A run's labels and a line's own, encoded one after the other (nothing
/// copied).
fn with<'a>(base: &Labels<'a>, more: &'a [(&'static str, &'a str)]) -> (Labels<'a>, &'a [(&'static str, &'a str)]) {
    (*base, more)
}

fn counter(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, v: u64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &impl EncodeLabelSet, v: f64) -> Result<(), std::fmt::Error> {
    // Whole numbers (most gauges: connections, agents up, users) are
    // written as integers: the same exposition value, cheaper to format.
    if v.fract() == 0.0 && v.abs() < 9e15 {
        m.encode_family(labels)?.encode_gauge(&(v as i64))
    } else {
        m.encode_family(labels)?.encode_gauge(&v)
    }
}

fn histogram(
    m: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    buckets: &[(f64, u64)],
    sum: f64,
) -> Result<(), std::fmt::Error> {
    let count = buckets.iter().map(|(_, n)| n).sum();
    m.encode_family(labels)?.encode_histogram::<NoLabelSet>(sum, count, buckets, None)
}

/// The status class label of a status: `2xx`, ...
fn class(status: u16) -> String {
    format!("{}xx", status / 100)
}

/// Requests by (outcome, status_class, error_class): exact, and adding up
/// to the run's requests.
fn outcomes(r: &RunFigures, t: &Totals) -> BTreeMap<(&'static str, String, String), u64> {
    let mut out: BTreeMap<(&'static str, String, String), u64> = BTreeMap::new();
    let none = || "none".to_owned();
    let errors: u64 = t.errors.values().sum();
    for (c, n) in &t.errors {
        *out.entry(("failure", none(), c.name().to_owned())).or_default() += n;
    }
    let by_rule = |out: &mut BTreeMap<_, u64>| {
        for (code, n) in &t.status_codes {
            let outcome = if r.rule.accepts(*code) { "success" } else { "failure" };
            *out.entry((outcome, class(*code), none())).or_default() += n;
        }
    };
    let mut ruled = BTreeMap::new();
    by_rule(&mut ruled);
    let ruled_successes: u64 = ruled.iter().filter(|(k, _)| k.0 == "success").map(|(_, n)| *n).sum();
    if matches!(r.rule, Rule::Scenario) || ruled_successes != t.successes {
        // Assertions decide: only the split into successes and failures is known.
        out.insert(("success", "any".into(), none()), t.successes);
        out.insert(("failure", "any".into(), none()), t.failures.saturating_sub(errors));
    } else {
        out.extend(ruled);
    }
    out
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let runs = lock(&self.0.runs);
        // Runs whose id is not known yet have not started: nothing to show.
        let runs: Vec<(&RunFigures, Labels<'_>)> =
            runs.runs.iter().filter_map(|r| r.id.as_ref().map(|id| (r, [("run_id", id.as_str())]))).collect();
        // Held while encoding: the merge loop waits for one scrape at most.
        let totals: Vec<_> = runs.iter().map(|(r, _)| lock_totals(&r.total)).collect();

        let mut m = encoder.encode_descriptor(
            "volley_requests",
            "Requests completed (with or without a response), by outcome, status class and error class.",
            None,
            MetricType::Counter,
        )?;
        for ((r, l), t) in runs.iter().zip(&totals) {
            for ((outcome, status, error), n) in outcomes(r, t) {
                counter(
                    &mut m,
                    &with(l, &[("outcome", outcome), ("status_class", &status), ("error_class", &error)]),
                    n,
                )?;
            }
        }

        let unit = Unit::Seconds;
        let mut m = encoder.encode_descriptor(
            "volley_request_duration",
            "Latency of the responses: corrected (open model: from the intended send time; closed model: from the \
             send) and, in the open model only, uncorrected (from the actual send).",
            Some(&unit),
            MetricType::Histogram,
        )?;
        for ((r, l), t) in runs.iter().zip(&totals) {
            let exact = t.latency_sum_ns as f64 / 1e9;
            let corrected = buckets(&t.histogram);
            histogram(&mut m, &with(l, &[("latency", "corrected")]), &corrected, exact)?;
            // The closed model measures from the actual send: there is
            // nothing to correct, and repeating the same histogram would
            // double a scrape's largest part (and invite summing over
            // `latency`), so it has `corrected` only, as the report.
            if r.open_model {
                let u = &t.uncorrected;
                histogram(&mut m, &with(l, &[("latency", "uncorrected")]), &buckets(u), approximate_sum(u))?;
            }
        }

        for (name, help, get) in [
            ("volley_bytes_sent", "Request bytes written.", (|t: &Totals| t.bytes_sent) as fn(&Totals) -> u64),
            ("volley_bytes_received", "Response bytes read (head and body).", |t| t.bytes_received),
            ("volley_connects", "Connections established to the target.", |t| t.connects),
            ("volley_missed", "Open model: requests due before the end that were never sent.", |t| t.missed),
        ] {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((_, l), t) in runs.iter().zip(&totals) {
                counter(&mut m, l, get(t))?;
            }
        }

        fn running(r: &RunFigures) -> impl Iterator<Item = &Agent> {
            r.agents.iter().filter(|a| a.running)
        }
        for (name, help, get) in [
            (
                "volley_connections",
                "Connections the running agents hold (as planned).",
                (|r: &RunFigures| running(r).map(|a| f64::from(a.connections)).fold(0.0, |x, y| x + y))
                    as fn(&RunFigures) -> f64,
            ),
            ("volley_in_flight", "Requests sent and not yet completed, as the running agents last reported.", |r| {
                running(r).map(|a| a.in_flight as f64).fold(0.0, |x, y| x + y)
            }),
            ("volley_target_rate", "Open model: the requests per second the running agents are asked.", |r| {
                running(r).filter_map(|a| a.rate).fold(0.0, |x, y| x + y)
            }),
            ("volley_users", "Scenario runs: virtual users started and running.", |r| {
                if running(r).next().is_none() { 0.0 } else { r.users() as f64 }
            }),
            (
                "volley_run_active",
                "1 while the run goes, 0 once it is over (its figures stay until the next run).",
                |r| f64::from(u8::from(r.active)),
            ),
        ] {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (r, l) in &runs {
                gauge(&mut m, l, get(r))?;
            }
        }

        // Scenario runs: by request name, bounded.
        let named: Vec<(&Labels<'_>, Vec<NameRow<'_>>)> =
            (runs.iter().zip(&totals)).filter(|(_, t)| !t.names.is_empty()).map(|((_, l), t)| (l, names(t))).collect();
        if named.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            "volley_name_requests",
            "Scenario runs: requests by request name and outcome.",
            None,
            MetricType::Counter,
        )?;
        for (l, rows) in &named {
            for (name, method, requests, failures, _, _) in rows {
                let success = [("name", *name), ("method", *method), ("outcome", "success")];
                counter(&mut m, &with(l, &success), requests - failures)?;
                let failure = [("name", *name), ("method", *method), ("outcome", "failure")];
                counter(&mut m, &with(l, &failure), *failures)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "volley_name_request_duration",
            "Scenario runs: latency of the responses by request name.",
            Some(&unit),
            MetricType::Histogram,
        )?;
        for (l, rows) in &named {
            for (name, method, _, _, h, sum_ns) in rows {
                histogram(&mut m, &with(l, &[("name", name), ("method", method)]), &buckets(h), *sum_ns as f64 / 1e9)?;
            }
        }
        Ok(())
    }
}

/// The collector of `volley_agent_up`: a line per agent, changing only
/// when an agent's state does (see [`Exposition`]).
#[derive(Debug)]
struct AgentsUp(Metrics);

impl Collector for AgentsUp {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let runs = lock(&self.0.runs);
        let mut m = encoder.encode_descriptor(
            "volley_agent_up",
            "1 for an agent taking part in the run (running or done), 0 for one lost or unreachable.",
            None,
            MetricType::Gauge,
        )?;
        for r in &runs.runs {
            let Some(id) = &r.id else { continue };
            let l: Labels<'_> = [("run_id", id.as_str())];
            for a in &r.agents {
                gauge(&mut m, &with(&l, &[("agent", &a.address)]), f64::from(u8::from(a.up)))?;
            }
        }
        Ok(())
    }
}

/// One request name's figures: (name, method, requests, failures,
/// histogram, latency sum in ns). Borrowed from the run's total: a
/// histogram is 16 KiB and more (it grows with the largest latency), and a
/// scrape of a scenario with many names would copy one per name.
type NameRow<'a> = (&'a str, &'a str, u64, u64, Cow<'a, Histogram<u64>>, u64);

/// The figures by request name: the first [`MAX_NAMES`] in name order, then the rest
/// merged under [`OTHER_NAMES`].
fn names(t: &Totals) -> Vec<NameRow<'_>> {
    let mut sorted: Vec<_> = t.names.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
    let mut out: Vec<NameRow<'_>> = sorted
        .iter()
        .take(MAX_NAMES)
        .map(|n| {
            let h = Cow::Borrowed(&n.histogram);
            (n.name.as_str(), n.method.as_str(), n.requests, n.failures, h, n.latency_sum_ns)
        })
        .collect();
    if sorted.len() > MAX_NAMES {
        let mut other = (OTHER_NAMES, "", 0, 0, volley_stats::new_histogram(), 0);
        for n in &sorted[MAX_NAMES..] {
            other.2 += n.requests;
            other.3 += n.failures;
            // Equal bounds: adding cannot fail.
            let _ = other.4.add(&n.histogram);
            other.5 += n.latency_sum_ns;
        }
        out.push((other.0, other.1, other.2, other.3, Cow::Owned(other.4), other.5));
    }
    out
}

/// Binds `--metrics-listen`; the error names the flag and the address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, crate::error::Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::error::Error::usage(format!("--metrics-listen {addr}: cannot listen: {e}")))
}

/// Serves `/metrics` (the figures of `metrics`) on `listener` in the
/// background, until the runtime ends; says where on stderr.
pub fn spawn(listener: tokio::net::TcpListener, metrics: &Metrics) {
    let page = Arc::new(Exposition::new(metrics));
    if let Ok(addr) = listener.local_addr() {
        // Tests and scripts learn a port-0 address from this line.
        eprintln!("controller: serving metrics on http://{addr}/metrics");
    }
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let page = page.clone();
            async move {
                let openmetrics = agent::metrics::wants_openmetrics(&headers);
                agent::metrics::response(page.encode(openmetrics), openmetrics)
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("controller: the metrics listener failed: {e}");
        }
    });
}

/// The OpenMetrics text of `metrics`, as a scrape would get it.
pub fn text(metrics: &Metrics) -> String {
    // Writing to a String cannot fail; the collectors only fail on that.
    Exposition::new(metrics).encode(true).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_stats::Recorder;

    fn cfg() -> RunConfig {
        crate::request::RunRequest {
            url: Some("http://127.0.0.1:1/".into()),
            requests: Some(100),
            ..Default::default()
        }
        .check()
        .unwrap()
    }

    fn agent(address: &str) -> AgentOutcome {
        let mut a = AgentOutcome::unreachable(address.into(), String::new());
        a.state = AgentState::Done;
        a.connections = 2;
        a.error = None;
        a
    }

    /// What the merge loop does with agent 0's `delta`: adds it into the
    /// running total and tells the observer.
    fn merged(tee: &mut Tee<'_>, total: &SharedTotals, delta: Totals) {
        let delta = crate::coordinator::Delta::from(delta);
        delta.add_to(&mut lock_totals(total));
        tee.delta(0, &delta, Duration::from_secs(1));
    }

    /// A run of `cfg` labelled `r`, watched by `metrics`, started on one
    /// agent `a:1`: its observer and the running total its deltas go to.
    fn running_r<'a>(
        metrics: &Metrics,
        cfg: &RunConfig,
        inner: &'a mut crate::outcome::NoObserver,
    ) -> (Tee<'a>, SharedTotals) {
        let mut tee = Tee::new(inner, Some(metrics.watch(cfg, Some("r".into()))));
        let total = SharedTotals::default();
        tee.running_total(&total);
        tee.started(&[agent("a:1")]);
        (tee, total)
    }

    /// The value of the sample `line` starts with.
    fn value(text: &str, line: &str) -> f64 {
        let l = text.lines().find(|l| l.starts_with(line)).unwrap_or_else(|| panic!("no {line} in\n{text}"));
        l.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn counters_are_the_merged_totals_and_buckets_hold_every_response() {
        let metrics = Metrics::new();
        let mut inner = crate::outcome::NoObserver;
        let run = metrics.watch(&cfg(), None);
        let mut tee = Tee::new(&mut inner, Some(run));
        tee.run_id("run-1");
        let total = SharedTotals::default();
        tee.running_total(&total);
        tee.started(&[agent("a:1"), agent("b:2")]);
        let mut rec = Recorder::new();
        for i in 0..90u64 {
            rec.response(if i < 80 { 200 } else { 503 }, i < 80, Duration::from_micros(200 + i * 100), 10, 20);
        }
        for _ in 0..10 {
            rec.error(volley_stats::ErrorClass::Timeout, 10);
        }
        tee.in_flight(0, 3);
        tee.in_flight(1, 4);
        merged(&mut tee, &total, rec.take());
        let text = text(&metrics);
        let l = r#"run_id="run-1""#;
        assert_eq!(value(&text, &format!(r#"volley_in_flight{{{l}}}"#)), 7.0);
        assert_eq!(
            value(
                &text,
                &format!(r#"volley_requests_total{{{l},outcome="success",status_class="2xx",error_class="none"}}"#)
            ),
            80.0
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"volley_requests_total{{{l},outcome="failure",status_class="5xx",error_class="none"}}"#)
            ),
            10.0
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"volley_requests_total{{{l},outcome="failure",status_class="none",error_class="timeout"}}"#)
            ),
            10.0
        );
        let inf = format!(r#"volley_request_duration_seconds_bucket{{le="+Inf",{l},latency="corrected"}}"#);
        assert_eq!(value(&text, &inf), 90.0);
        let ms1 = format!(r#"volley_request_duration_seconds_bucket{{le="0.001",{l},latency="corrected"}}"#);
        assert_eq!(value(&text, &ms1), 9.0, "200..=1000 µs");
        assert_eq!(value(&text, &format!(r#"volley_bytes_sent_total{{{l}}}"#)), 1000.0);
        assert_eq!(value(&text, &format!(r#"volley_connections{{{l}}}"#)), 4.0);
        assert_eq!(value(&text, &format!(r#"volley_agent_up{{{l},agent="b:2"}}"#)), 1.0);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains(r#"latency="uncorrected""#), "the closed model has nothing to correct:\n{text}");

        tee.ended(1, AgentState::Lost, Some("gone"));
        tee.ended(0, AgentState::Done, None);
        drop(tee);
        let text = super::text(&metrics);
        assert_eq!(value(&text, &format!(r#"volley_agent_up{{{l},agent="b:2"}}"#)), 0.0);
        assert_eq!(value(&text, &format!(r#"volley_connections{{{l}}}"#)), 0.0);
        assert_eq!(value(&text, &format!(r#"volley_run_active{{{l}}}"#)), 0.0);
        assert_eq!(value(&text, &inf), 90.0, "a finished run stays");
        // The next run replaces it.
        let _next = metrics.watch(&cfg(), Some("next".into()));
        assert!(!super::text(&metrics).contains("run-1"));
    }

    #[test]
    fn the_open_model_has_corrected_and_uncorrected_latency() {
        let cfg = crate::request::RunRequest {
            url: Some("http://127.0.0.1:1/".into()),
            duration: Some(Duration::from_secs(10)),
            rate: Some(100.0),
            ..Default::default()
        }
        .check()
        .unwrap();
        let metrics = Metrics::new();
        let mut inner = crate::outcome::NoObserver;
        let (mut tee, total) = running_r(&metrics, &cfg, &mut inner);
        let mut rec = Recorder::new();
        // Sent 5 ms late: corrected 6 ms, uncorrected 1 ms.
        rec.response(200, true, Duration::from_millis(6), 10, 20);
        rec.scheduled(Duration::from_millis(1), Duration::from_millis(5));
        merged(&mut tee, &total, rec.take());
        let text = text(&metrics);
        let b = |latency: &str, le: &str| {
            value(
                &text,
                &format!(r#"volley_request_duration_seconds_bucket{{le="{le}",run_id="r",latency="{latency}"}}"#),
            )
        };
        assert_eq!((b("corrected", "0.0025"), b("corrected", "0.0075")), (0.0, 1.0));
        assert_eq!((b("uncorrected", "0.0025"), b("uncorrected", "0.0075")), (1.0, 1.0));
    }

    #[test]
    fn repeated_scrapes_show_every_agent_change_in_both_formats() {
        let metrics = Metrics::new();
        let page = Exposition::new(&metrics);
        let mut inner = crate::outcome::NoObserver;
        let mut tee = Tee::new(&mut inner, Some(metrics.watch(&cfg(), None)));
        let up = |text: &str, run: &str, agent: &str| {
            value(text, &format!(r#"volley_agent_up{{run_id="{run}",agent="{agent}"}}"#))
        };
        for openmetrics in [true, false] {
            assert!(!page.encode(openmetrics).unwrap().contains("volley_agent_up{"), "no run id yet");
        }
        tee.run_id("run-1");
        tee.started(&[agent("a:1"), agent("b:2")]);
        for openmetrics in [true, false] {
            let text = page.encode(openmetrics).unwrap();
            assert_eq!((up(&text, "run-1", "a:1"), up(&text, "run-1", "b:2")), (1.0, 1.0));
            assert_eq!(text.ends_with("# EOF\n"), openmetrics, "{text}");
            // Unchanged, the kept lines are the ones encoding them anew gives.
            assert_eq!(page.encode(openmetrics).unwrap(), Exposition::new(&metrics).encode(openmetrics).unwrap());
        }
        // A figure that is not an agent's state changes without touching them.
        tee.in_flight(0, 5);
        let text = page.encode(true).unwrap();
        assert_eq!(value(&text, r#"volley_in_flight{run_id="run-1"}"#), 5.0);
        assert_eq!(text, Exposition::new(&metrics).encode(true).unwrap());
        tee.ended(1, AgentState::Lost, Some("gone"));
        for openmetrics in [true, false] {
            let text = page.encode(openmetrics).unwrap();
            assert_eq!((up(&text, "run-1", "a:1"), up(&text, "run-1", "b:2")), (1.0, 0.0), "{text}");
        }
        tee.finish(&[agent("a:1"), AgentOutcome::unreachable("c:3".into(), "refused".into())]);
        assert_eq!(up(&page.encode(true).unwrap(), "run-1", "c:3"), 0.0, "unreachable at the start: down");
        let _next = metrics.watch(&cfg(), Some("run-2".into()));
        for openmetrics in [true, false] {
            assert!(!page.encode(openmetrics).unwrap().contains("run-1"), "the next run replaces it");
        }
    }

    #[test]
    fn every_family_in_the_book_is_exported() {
        let metrics = Metrics::new();
        let mut inner = crate::outcome::NoObserver;
        let (mut tee, total) = running_r(&metrics, &cfg(), &mut inner);
        let mut rec = Recorder::with_names([("home", "GET")]);
        rec.response(200, true, Duration::from_micros(300), 10, 20);
        rec.named(0, true, Some(Duration::from_micros(300)));
        merged(&mut tee, &total, rec.take());
        let text = text(&metrics);
        let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/src/prometheus.md")).unwrap();
        let documented: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with("| `volley_"))
            .flat_map(|l| l.split('|').nth(1).unwrap_or("").split(", ").map(|n| n.trim().trim_matches('`')))
            .collect();
        assert!(documented.len() >= 12, "{documented:?}");
        for family in &documented {
            let sample =
                |l: &&str| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family}_bucket{{"));
            assert!(text.lines().any(|l| sample(&l)), "{family} is documented but not exported:\n{text}");
        }
        // And nothing is exported that the book does not name.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            let exported = |f: &&str| *f == name || f.strip_suffix("_total") == Some(name);
            assert!(documented.iter().any(exported), "{name} is exported but not in the book");
        }
    }

    #[test]
    fn names_past_the_cap_share_one_series_and_nothing_is_lost() {
        let metrics = Metrics::new();
        let mut inner = crate::outcome::NoObserver;
        let (mut tee, total) = running_r(&metrics, &cfg(), &mut inner);
        let names: Vec<String> = (0..MAX_NAMES + 10).map(|i| format!("n{i:03}")).collect();
        let mut rec = Recorder::with_names(names.iter().map(|n| (n.as_str(), "GET")));
        for (slot, _) in names.iter().enumerate() {
            for k in 0..=slot % 3 {
                rec.named(slot, k != 1, Some(Duration::from_micros(300)));
            }
        }
        merged(&mut tee, &total, rec.take());
        let text = text(&metrics);
        let count = |name: &str| {
            value(
                &text,
                &format!(r#"volley_name_request_duration_seconds_count{{run_id="r",name="{name}",method="GET"}}"#),
            )
        };
        // Names sort as n000 .. n059: the first MAX_NAMES have their own series.
        assert_eq!(count("n000"), 1.0);
        assert_eq!(count("n002"), 3.0);
        assert!(!text.contains(&format!(r#"name="n{MAX_NAMES:03}""#)), "past the cap");
        let past: f64 = (MAX_NAMES..MAX_NAMES + 10).map(|i| (i % 3 + 1) as f64).sum();
        let other =
            format!(r#"volley_name_request_duration_seconds_count{{run_id="r",name="{OTHER_NAMES}",method=""}}"#);
        assert_eq!(value(&text, &other), past);
        let all: f64 = text
            .lines()
            .filter(|l| l.starts_with("volley_name_requests_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(all, (0..MAX_NAMES + 10).map(|i| (i % 3 + 1) as f64).sum::<f64>());
    }

    #[test]
    fn buckets_follow_the_report_values() {
        let mut h = volley_stats::new_histogram();
        h.record(100).unwrap();
        h.record(101).unwrap();
        h.record(5000).unwrap();
        h.record(200_000_000).unwrap();
        let b = buckets(&h);
        assert_eq!(b[0], (0.0001, 1));
        assert_eq!(b[1], (0.00025, 1));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 4);
    }

    /// The bucket of a sample, by definition: the first bound at or above
    /// the value the report prints for it (the walk scrapes used to do).
    fn buckets_by_walking(h: &Histogram<u64>) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = BUCKETS_SECONDS.iter().map(|b| (*b, 0)).collect();
        out.push((f64::INFINITY, 0));
        for v in h.iter_recorded() {
            let s = v.value_iterated_to() as f64 / 1e6;
            let i = BUCKETS_SECONDS.iter().position(|b| s <= *b).unwrap_or(BUCKETS_SECONDS.len());
            out[i].1 += v.count_at_value();
        }
        out
    }

    #[test]
    fn summed_buckets_equal_the_walk_for_any_histogram() {
        // Deterministic spreads of values over 1 µs .. 200 s, on the bounds,
        // just around them, and histograms grown to different ranges.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut h = volley_stats::new_histogram();
            let top = [1_000u64, 100_000, 10_000_000, 200_000_000][round % 4];
            for _ in 0..(next() % 500) {
                let v = 1 + next() % top;
                h.record_n(v, 1 + next() % 3).unwrap();
            }
            for b in BUCKETS_SECONDS.iter().take(round % BUCKETS_SECONDS.len()) {
                let b = (b * 1e6) as u64;
                for v in [b - 1, b, b + 1, h.highest_equivalent(b), h.lowest_equivalent(b)] {
                    h.record(v).unwrap();
                }
            }
            if round % 7 == 0 {
                h.record(0).unwrap();
            }
            assert_eq!(buckets(&h), buckets_by_walking(&h), "round {round}");
            assert_eq!(buckets(&h).iter().map(|(_, n)| n).sum::<u64>(), h.len());
        }
        let empty = volley_stats::new_histogram();
        assert_eq!(buckets(&empty), buckets_by_walking(&empty));
    }
}
