//! The global report: one [`Report`] built from merged results, printed as
//! ApacheBench-style text or as one JSON object.
//!
//! Every figure derives from merged counters and histograms: the average is
//! the merged latency sum over the merged response count, and percentiles come
//! from the merged histogram, never from averaging per-agent figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
pub use crate::latency::Latency;
use crate::outcome::{AgentState, Outcome};
use crate::series::{SecondRow, StageFigures};

/// The percentiles of ApacheBench's "served within a certain time" table, plus p99.9.
pub const PERCENTILES: [f64; 10] = [50.0, 66.0, 75.0, 80.0, 90.0, 95.0, 98.0, 99.0, 99.9, 100.0];

/// One agent's row.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    /// The agent's address.
    pub address: String,
    /// The host name it reported.
    pub hostname: String,
    /// done, cancelled, lost or idle.
    pub state: AgentState,
    /// Worker threads it used.
    pub threads: u32,
    /// Connections it held.
    pub connections: u32,
    /// Requests it completed.
    pub total_requests: u64,
    /// Its successes.
    pub successful_requests: u64,
    /// Its failures.
    pub failed_requests: u64,
    /// Its mean latency in ms.
    pub average_response_time_ms: Option<f64>,
    /// Its rate over its own run time.
    pub requests_per_second: f64,
    /// Why it was lost, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Open model: its share of the rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// How late its workers began after the common start instant, in ms
    /// (by its own clock; negative if early).
    pub start_skew_ms: Option<f64>,
    /// Lost agents: the most requests it may have sent after its last report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unaccounted_max: Option<u64>,
    /// Lost agents in count mode: requests of its share moved to survivors.
    #[serde(skip_serializing_if = "is_zero")]
    pub reassigned: u64,
    /// The I/O engine its workers used: `io_uring` or `epoll` (with the
    /// reason an io_uring agent ran the plan on epoll, if it did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How well the open model kept its schedule.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    /// Requests per second asked for.
    pub requested: f64,
    /// Requests per second sent, over the run time after the ramp-up's
    /// half-weight (a linear ramp sends half its full-rate share).
    pub achieved: f64,
    /// How far below the requested rate, in percent (negative: above).
    pub shortfall_percent: f64,
    /// The largest delay of a send behind its schedule, in ms.
    pub max_schedule_lag_ms: f64,
    /// Set when the shortfall exceeds 1 %: the generator could not keep up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A run's stages as given, and what each achieved.
#[derive(Debug, Clone, Serialize)]
pub struct StagesReport {
    /// What the targets count: `requests_per_second` (open model) or `connections`.
    pub unit: &'static str,
    /// The stages in order.
    pub stages: Vec<StageRow>,
}

/// One stage: the target reached linearly from the previous one's at its
/// end, and the figures of the seconds whose middle falls in it (seconds
/// after the last stage, when `-z` runs on, count in the last one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageRow {
    /// Its duration in seconds (0: a step).
    pub duration_s: f64,
    /// Its target, in the report's `unit`.
    pub target: f64,
    /// The target's mean over the stage (for a ramp, the middle of its ends).
    #[serde(default)]
    pub target_mean: f64,
    /// Its first second (as in `series`), and how many seconds it has (0: it
    /// was shorter than a second, or the run ended before it).
    #[serde(default)]
    pub first_second: u64,
    /// See `first_second`.
    #[serde(default)]
    pub seconds: u64,
    /// Requests completed in its seconds.
    #[serde(default)]
    pub requests: u64,
    /// Those that failed.
    #[serde(default)]
    pub failures: u64,
    /// Failures over requests (0 without requests).
    #[serde(default)]
    pub error_rate: f64,
    /// Requests per second over its seconds (the run's last second counts
    /// only as far as the run went).
    #[serde(default)]
    pub requests_per_second: f64,
    /// Its latencies, exact from the merged histogram of its seconds.
    #[serde(default)]
    pub latency_ms: Latency,
}

impl StageRow {
    /// The value of a `--fail-if` metric limited to this stage (latencies in
    /// ms, ratios as fractions); `None` when there is nothing to measure.
    pub fn measure(&self, metric: &str) -> Option<f64> {
        if let Some(l) = self.latency_ms.metric(metric) {
            return l;
        }
        if self.seconds == 0 {
            return None;
        }
        match metric {
            "error_rate" => Some(self.error_rate),
            "rps" => Some(self.requests_per_second),
            "requests" => Some(self.requests as f64),
            "failures" => Some(self.failures as f64),
            _ => None,
        }
    }
}

/// Scenario runs: one request name's row (Locust's statistics table).
#[derive(Debug, Clone, Serialize)]
pub struct NameRow {
    /// The request's name.
    pub name: String,
    /// Its method.
    pub method: String,
    /// Requests sent under this name.
    pub requests: u64,
    /// Those that failed (no response, a failed assertion or capture).
    pub failures: u64,
    /// Requests per second of run time.
    pub requests_per_second: f64,
    /// Latencies of its responses, merged across agents.
    pub latency_ms: Latency,
}

/// Scenario runs: how often one name failed with one message.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// The request's name.
    pub name: String,
    /// The failed assertion's message, or the error class.
    pub message: String,
    /// How often.
    pub count: u64,
}

/// Scenario runs: what ran.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioInfo {
    /// Virtual users in total.
    pub users: u64,
    /// Users started per second (`null`: all at once).
    pub spawn_rate: Option<f64>,
    /// Users per user type.
    pub user_types: Vec<UserTypeRow>,
    /// Its feeders and the rows taken from each.
    pub feeders: Vec<FeederRow>,
}

/// One feeder of a scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct FeederRow {
    /// Its name.
    pub name: String,
    /// `unique`, `cycle` or `random`.
    pub mode: volley_scenario::feeder::Mode,
    /// `user` or `iteration`: when a row is taken.
    pub per: volley_scenario::feeder::Per,
    /// Rows in its file.
    pub rows: u64,
    /// Rows taken, summed over the agents (a unique feeder's are distinct rows).
    pub used: u64,
    /// Users that found a unique feeder out of rows (with `end_run`: agents' runs ended).
    pub exhausted: u64,
}

/// One user type's users.
#[derive(Debug, Clone, Serialize)]
pub struct UserTypeRow {
    /// Its name.
    pub name: String,
    /// Its virtual users.
    pub users: u64,
}

/// The version of the JSON report's layout: raised when a field changes its
/// meaning or goes away (new fields keep it). `report.schema.json` describes it.
pub const SCHEMA_VERSION: u32 = 1;

/// The settings a run was asked for, echoed so a report says what it measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Settings {
    /// Requests asked for (`null` for a timed run).
    pub requests: Option<u64>,
    /// Run time asked for, in seconds (`null` for a counted run).
    pub duration_s: Option<f64>,
    /// Connections (scenario runs: users) in total.
    pub connections: u32,
    /// Worker threads per agent (`null`: each agent's default).
    pub threads: Option<u32>,
    /// Open model: requests per second asked for (`null`: closed model).
    pub rate: Option<f64>,
    /// Per-request timeout in seconds.
    pub timeout_s: f64,
    /// Agents listed (empty: one embedded agent).
    pub agents: Vec<String>,
}

/// The global report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The version of the controller that made the report.
    pub volley_version: &'static str,
    /// The report's layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// When the run started (RFC 3339, UTC); `null` when not recorded.
    pub started_at: Option<String>,
    /// Whether the run passed: its work was done, some requests succeeded
    /// (or thresholds decided), every threshold held, and it was not cancelled.
    pub passed: bool,
    /// One line saying why the run failed when every request failed or an
    /// agent failed; `null` otherwise.
    pub headline: Option<String>,
    /// An agent's internal failure (a worker panicked), which fails the run
    /// whatever else happened; `null` otherwise.
    pub failure: Option<String>,
    /// What was asked for.
    pub settings: Option<Settings>,
    /// The target URL.
    pub url: String,
    /// The method (`null` in scenario runs: each request has its own).
    pub method: Option<String>,
    /// Requests completed, with or without a response.
    pub total_requests: u64,
    /// Requests that succeeded.
    pub successful_requests: u64,
    /// Requests that failed (bad status or no response).
    pub failed_requests: u64,
    /// Mean latency of the responses in ms (`null` if none).
    pub average_response_time_ms: Option<f64>,
    /// Completed requests per second of run time.
    pub requests_per_second: f64,
    /// failed / total (0 when nothing was sent).
    pub error_rate: f64,
    /// Run time: from the first request sent to the last one completed.
    pub duration_s: f64,
    /// Connections in total (ApacheBench's concurrency level; scenario runs: users).
    pub connections: u32,
    /// Mean time per request per connection, or per stream in HTTP/2 runs
    /// (ab's "Time per request (mean)").
    pub time_per_request_ms: f64,
    /// Run time over requests (ab's "across all concurrent requests").
    pub time_per_request_all_ms: f64,
    /// Response bytes received.
    pub bytes_received: u64,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Received bytes per second of run time, in KiB.
    pub transfer_rate_kib_s: f64,
    /// Connections opened (`null` in scenario runs: users share each
    /// agent thread's connection pool).
    pub connections_opened: Option<u64>,
    /// Latencies of the responses in ms; with a rate, from each request's
    /// intended send time (coordinated omission corrected).
    pub latency_ms: Latency,
    /// With a rate: latencies from the actual send (what a closed-loop tool
    /// would report); `null` without a rate.
    pub latency_uncorrected_ms: Option<Latency>,
    /// With a rate: requested vs achieved, and the schedule lag.
    pub rate: Option<RateReport>,
    /// The ramp-up time in seconds (0 for none); its requests are included.
    pub ramp_up_s: f64,
    /// The protocol spoken: `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// HTTP/2 runs: streams and the targets' stream limit; `null` otherwise.
    pub http2: Option<Http2Report>,
    /// `--stage`: the stages as given; `null` without.
    pub stages: Option<StagesReport>,
    /// Responses by status code.
    pub status_codes: BTreeMap<String, u64>,
    /// Requests without a response, by error class.
    pub errors: BTreeMap<String, u64>,
    /// One row per agent.
    pub agents: Vec<AgentRow>,
    /// Requests by target address (every address the target's host
    /// resolved to while the run went; `--connect-to`'s instead); empty in
    /// scenario runs.
    pub target_addresses: Vec<TargetAddressRow>,
    /// Whether the run was cancelled before its end.
    pub cancelled: bool,
    /// When agents were lost: the most requests they may have sent after
    /// their last report (not counted above); `null` when none was lost or
    /// when no bound is known.
    pub unaccounted_max: Option<u64>,
    /// When agents were lost and no bound of what they sent unseen is known:
    /// why; `null` otherwise.
    pub unaccounted_unknown: Option<String>,
    /// Count mode: requests no agent was left running to send.
    pub unassigned: u64,
    /// Open model with a duration: requests the schedule had due before the
    /// end that were never sent (connections could not keep up); not sent late.
    pub missed: u64,
    /// Duration mode: requests still without an answer when the grace after
    /// the end ran out; sent, but not counted in `total_requests`.
    pub cancelled_in_flight: u64,
    /// The merged per-second series.
    pub series: Vec<SecondRow>,
    /// The `--fail-if` verdicts.
    pub thresholds: Vec<crate::threshold::Verdict>,
    /// Scenario runs: users and user types (`null` otherwise).
    pub scenario: Option<ScenarioInfo>,
    /// Scenario runs: figures by request name, merged across agents.
    pub names: Vec<NameRow>,
    /// Scenario runs: failures by name and message, most frequent first.
    pub failures: Vec<FailureRow>,
    /// The merged latency histograms themselves, so a saved report is a
    /// complete record (`controller compare` reads them).
    pub histograms: Histograms,
}

/// One target address's row: what went to it, merged across agents.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TargetAddressRow {
    /// `IP:port` as connected to.
    pub address: String,
    /// Requests sent on connections to it (with or without a response).
    pub requests: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Connections opened to it.
    pub connections_opened: u64,
    /// An agent's `--allow-target` refused it: that agent sent nothing there.
    pub refused: bool,
}

/// The rows of `targets`, ordered by address (numerically: `10.0.0.9`
/// before `10.0.0.10`).
pub fn target_address_rows(targets: &BTreeMap<String, volley_stats::AddrTotals>) -> Vec<TargetAddressRow> {
    let mut rows: Vec<TargetAddressRow> = targets
        .iter()
        .map(|(a, t)| TargetAddressRow {
            address: a.clone(),
            requests: t.requests,
            failures: t.failures,
            connections_opened: t.connects,
            refused: t.refused,
        })
        .collect();
    rows.sort_by_key(|r| (r.address.parse::<std::net::SocketAddr>().ok(), r.address.clone()));
    rows
}

/// HTTP/2: what the streams were and what the target allowed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Http2Report {
    /// Streams per connection asked for (`--streams`).
    pub streams: u32,
    /// Requests in flight asked for: connections × streams.
    pub in_flight: u64,
    /// The lowest SETTINGS_MAX_CONCURRENT_STREAMS any target connection
    /// announced; `null` when none was announced (no limit).
    pub server_max_streams: Option<u64>,
    /// The target's limit was below `--streams`: streams beyond it waited
    /// for a free one (h2 queues them), so fewer were in flight.
    pub streams_limited: bool,
}

/// The merged latency histograms in microseconds, each in HdrHistogram's
/// standard compressed V2 encoding (V2 + DEFLATE), base64: what
/// HdrHistogram's `decodeFromCompressedByteBuffer` and the `hdrhistogram`
/// crate's `Deserializer` read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    /// Every response's latency (with a rate, from its intended send time).
    pub latency: String,
    /// With a rate: latencies from the actual send; `null` without a rate.
    pub latency_uncorrected: Option<String>,
    /// Scenario runs: one per request name, in the order of `names`.
    pub names: Vec<NamedHistogram>,
}

/// One request name's merged latency histogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NamedHistogram {
    /// The request's name.
    pub name: String,
    /// Its method.
    pub method: String,
    /// Its responses' latencies, encoded as [`Histograms::latency`].
    pub latency: String,
}

/// `h` in the standard compressed encoding, base64.
pub fn encode_histogram(h: &hdrhistogram::Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::Serializer as _;
    let mut bytes = Vec::new();
    // Serialising into memory fails only on a histogram too large to
    // describe, which a u64 histogram of latencies is not.
    hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("a histogram serialises into memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why [`decode_histogram`] refused a text.
#[derive(Debug, thiserror::Error)]
pub enum HistogramDecodeError {
    /// Not base64.
    #[error("not base64")]
    Base64(#[source] base64::DecodeError),
    /// Not a V2 (+ DEFLATE) histogram (the decoder's error has no `Display`,
    /// so its `Debug` text is kept).
    #[error("not an HdrHistogram V2 encoding: {0}")]
    Histogram(String),
}

/// A histogram from [`encode_histogram`]'s text.
pub fn decode_histogram(text: &str) -> Result<hdrhistogram::Histogram<u64>, HistogramDecodeError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(HistogramDecodeError::Base64)?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| HistogramDecodeError::Histogram(format!("{e:?}")))
}

/// Rounded to a millionth: 2, not 1.9999999999999996.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn per_second(n: u64, d: Duration) -> f64 {
    if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() }
}

impl Report {
    /// The whole report of the run `cfg` asked for: the merged figures of
    /// `outcome`, the scenario's users, the per-second `series` (empty when
    /// nothing watched the run), and the verdict on each of `cfg`'s thresholds.
    pub fn build(cfg: &RunConfig, outcome: &Outcome, series: Vec<SecondRow>, stages: Vec<StageFigures>) -> Report {
        let shape = match &cfg.stages {
            Some(st) => st.profile(),
            None => volley_proto::profile::Profile::ramp(cfg.ramp_up.as_secs_f64()),
        };
        // Stages hold their last level only as long as -z runs on: the
        // shortfall counts the stages' time, not the last responses' tail.
        let planned = match cfg.limit {
            crate::config::Limit::Duration(d) if cfg.stages.is_some() => d.as_secs_f64(),
            _ => f64::INFINITY,
        };
        let of_run = (&shape, planned);
        let mut report = Report::of_outcome(&cfg.url, &cfg.method, cfg.connections, cfg.rate, of_run, outcome);
        report.ramp_up_s = cfg.ramp_up.as_secs_f64();
        let run_s = outcome.duration.as_secs_f64();
        report.stages = cfg.stages.as_ref().map(|st| {
            let targets = st.targets();
            let mut begin = 0.0;
            let rows = st
                .targets
                .iter()
                .zip(stages.iter().map(Some).chain(std::iter::repeat(None)))
                .map(|(&(d, target), figures)| {
                    let d = d.as_secs_f64();
                    let target_mean =
                        if d > 0.0 { (targets.integral(begin + d) - targets.integral(begin)) / d } else { target };
                    begin += d;
                    let mut row =
                        StageRow { duration_s: d, target, target_mean: round6(target_mean), ..StageRow::default() };
                    if let Some(f) = figures {
                        let first = f.first_second as f64;
                        let span = ((first + f.seconds as f64).min(run_s.max(first + 1.0)) - first).max(0.0);
                        row.first_second = f.first_second;
                        row.seconds = f.seconds;
                        row.requests = f.requests;
                        row.failures = f.failures;
                        row.error_rate = if f.requests > 0 { f.failures as f64 / f.requests as f64 } else { 0.0 };
                        row.requests_per_second = if span > 0.0 { f.requests as f64 / span } else { 0.0 };
                        row.latency_ms = f.latency_ms.clone();
                    }
                    row
                })
                .collect();
            let unit = match (st.rates, cfg.scenario.is_some()) {
                (true, _) => "requests_per_second",
                (false, true) => "users",
                (false, false) => "connections",
            };
            StagesReport { unit, stages: rows }
        });
        report.scenario = cfg.scenario.as_ref().map(|sc| ScenarioInfo {
            users: sc.users,
            spawn_rate: sc.spawn_rate,
            user_types: sc
                .scenario
                .users
                .iter()
                .zip(&sc.per_type)
                .map(|(u, &n)| UserTypeRow { name: u.name.clone(), users: n })
                .collect(),
            feeders: sc
                .scenario
                .feeders
                .iter()
                .enumerate()
                .map(|(i, f)| FeederRow {
                    name: f.name.clone(),
                    mode: f.mode,
                    per: f.per,
                    rows: f.rows,
                    used: outcome.total.feeder_rows.get(i).copied().unwrap_or(0),
                    exhausted: outcome.total.feeder_exhausted.get(i).copied().unwrap_or(0),
                })
                .collect(),
        });
        if cfg.scenario.is_some() {
            report.method = None;
            report.connections_opened = None;
        }
        if cfg.http2 {
            report.protocol = "HTTP/2";
            let server_max_streams = outcome.total.h2_max_streams;
            report.http2 = cfg.scenario.is_none().then(|| Http2Report {
                streams: cfg.streams,
                in_flight: u64::from(cfg.connections) * u64::from(cfg.streams),
                server_max_streams,
                streams_limited: server_max_streams.is_some_and(|m| m < u64::from(cfg.streams)),
            });
            // ab's "Time per request (mean)" is the span one request slot
            // waits per request: with streams, the slots are connections × streams.
            if let Some(h) = &report.http2 {
                report.time_per_request_ms = report.time_per_request_all_ms * h.in_flight as f64;
            }
        }
        report.settings = Some(Settings {
            requests: match cfg.limit {
                crate::config::Limit::Requests(n) => Some(n),
                crate::config::Limit::Duration(_) => None,
            },
            duration_s: match cfg.limit {
                crate::config::Limit::Requests(_) => None,
                crate::config::Limit::Duration(d) => Some(d.as_secs_f64()),
            },
            connections: cfg.connections,
            threads: cfg.threads,
            rate: cfg.rate,
            timeout_s: cfg.timeout.as_secs_f64(),
            agents: cfg.agents.iter().map(|a| a.to_string()).collect(),
        });
        report.series = series;
        // Each second's target: the profile's mean over it, times the peak.
        let peak = cfg.rate.or((cfg.stages.is_some() || !cfg.ramp_up.is_zero()).then_some(f64::from(cfg.connections)));
        // Scenario runs have one only with stages (their users are the target).
        if let Some(peak) = peak.filter(|_| cfg.scenario.is_none() || cfg.stages.is_some()) {
            for row in &mut report.series {
                let s = row.second as f64;
                let target = peak * (shape.integral(s + 1.0) - shape.integral(s));
                row.target = Some(round6(target));
            }
        }
        let baseline = |m: &str| cfg.baseline.as_ref().and_then(|b| b.measure(m));
        report.thresholds = cfg
            .thresholds
            .iter()
            .map(|t| match t.stage() {
                None => t.verdict_against(report.measure(t.metric()), baseline(t.metric())),
                Some(k) => {
                    let actual =
                        report.stages.as_ref().and_then(|st| st.stages.get(k)).and_then(|r| r.measure(t.metric()));
                    let baseline = cfg.baseline.as_ref().and_then(|b| b.measure_stage(k, t.metric()));
                    t.verdict_against(actual, baseline)
                }
            })
            .collect();
        report.failure = outcome.failed.clone();
        report.headline = match &report.failure {
            Some(f) => Some(format!("the run failed: {f}")),
            None => report.all_failed().then(|| report.why_all_failed()),
        };
        report.passed = report.exit_code() == 0 && !report.cancelled;
        report
    }

    /// Whether requests were sent and none succeeded.
    pub fn all_failed(&self) -> bool {
        self.total_requests > 0 && self.successful_requests == 0
    }

    /// One line: every request failed, and the most frequent reason.
    fn why_all_failed(&self) -> String {
        let n = self.total_requests;
        let common = self.errors.iter().max_by_key(|(_, n)| **n).map(|(class, _)| class.as_str());
        let reason = match common {
            Some(class) => describe_error(class).to_owned(),
            None => match self.status_codes.keys().next() {
                Some(code) => {
                    format!("the target answered with status {code}, which is not a success here (--success-status)")
                }
                None => "no response".to_owned(),
            },
        };
        format!("all {n} requests failed: {reason}")
    }

    /// The measured value of a `--fail-if` metric: latencies in ms, ratios as
    /// fractions; `None` when there was nothing to measure.
    fn measure(&self, metric: &str) -> Option<f64> {
        if let Some(l) = self.latency_ms.metric(metric) {
            return l;
        }
        match metric {
            "error_rate" => Some(self.error_rate),
            "missed" => Some(self.missed as f64),
            "missed_share" => {
                let scheduled = self.total_requests + self.cancelled_in_flight + self.missed;
                Some(if scheduled > 0 { self.missed as f64 / scheduled as f64 } else { 0.0 })
            }
            "rps" => Some(self.requests_per_second),
            "requests" => Some(self.total_requests as f64),
            _ => Some(self.failed_requests as f64),
        }
    }

    /// The merged figures of `outcome`, without the parts [`Report::build`] adds.
    fn of_outcome(
        url: &str,
        method: &str,
        concurrency: u32,
        rate: Option<f64>,
        (shape, planned): (&volley_proto::profile::Profile, f64),
        outcome: &Outcome,
    ) -> Report {
        let t = &outcome.total;
        let d = outcome.duration;
        let secs = d.as_secs_f64();
        let rate = rate.map(|requested| {
            // The run's time at the full rate: a linear ramp counts half,
            // stages by their level.
            let full_rate_secs = shape.integral(secs.min(planned)).max(f64::MIN_POSITIVE);
            let achieved = t.requests as f64 / full_rate_secs;
            // Above the requested rate is no shortfall.
            let shortfall_percent = ((1.0 - achieved / requested) * 100.0).max(0.0);
            let max_schedule_lag_ms = t.max_lag_us as f64 / 1000.0;
            let warning = (shortfall_percent > 1.0 && !outcome.cancelled).then(|| {
                format!(
                    "the generator fell behind its schedule: {achieved:.1} of {requested:.1} requests per second \
                     ({shortfall_percent:.1} % short, lag up to {max_schedule_lag_ms:.1} ms); \
                     add connections (-c), threads or agents"
                )
            });
            RateReport { requested, achieved, shortfall_percent, max_schedule_lag_ms, warning }
        });
        let uncorrected_histogram = rate.as_ref().map(|_| encode_histogram(&t.uncorrected));
        let per_req_all = if t.requests > 0 { secs * 1000.0 / t.requests as f64 } else { 0.0 };
        Report {
            volley_version: env!("CARGO_PKG_VERSION"),
            schema_version: SCHEMA_VERSION,
            started_at: None,
            passed: false,
            headline: None,
            failure: None,
            settings: None,
            url: url.to_owned(),
            method: Some(method.to_owned()),
            total_requests: t.requests,
            successful_requests: t.successes,
            failed_requests: t.failures,
            average_response_time_ms: t.mean_latency().map(|m| m.as_secs_f64() * 1000.0),
            requests_per_second: per_second(t.requests, d),
            error_rate: if t.requests > 0 { t.failures as f64 / t.requests as f64 } else { 0.0 },
            duration_s: secs,
            connections: concurrency,
            time_per_request_ms: per_req_all * f64::from(concurrency),
            time_per_request_all_ms: per_req_all,
            bytes_received: t.bytes_received,
            bytes_sent: t.bytes_sent,
            transfer_rate_kib_s: per_second(t.bytes_received, d) / 1024.0,
            connections_opened: Some(t.connects),
            latency_ms: Latency::of(t),
            latency_uncorrected_ms: rate.as_ref().map(|_| Latency::of_histogram(&t.uncorrected, None)),
            rate,
            ramp_up_s: 0.0,
            protocol: "HTTP/1.1",
            http2: None,
            stages: None,
            target_addresses: target_address_rows(&outcome.total.targets),
            status_codes: t.status_codes.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            errors: t.errors.iter().map(|(c, n)| (c.name().to_owned(), *n)).collect(),
            agents: outcome
                .agents
                .iter()
                .map(|a| AgentRow {
                    address: a.address.clone(),
                    hostname: a.hostname.clone(),
                    state: a.state,
                    threads: a.threads,
                    connections: a.connections,
                    total_requests: a.totals.requests,
                    successful_requests: a.totals.successes,
                    failed_requests: a.totals.failures,
                    average_response_time_ms: a.mean_latency().map(|m| m.as_secs_f64() * 1000.0),
                    requests_per_second: per_second(a.totals.requests, a.totals.span().unwrap_or(a.elapsed)),
                    error: a.error.clone(),
                    rate: a.rate,
                    start_skew_ms: a.start_skew_us.map(|us| us as f64 / 1000.0),
                    unaccounted_max: a.unaccounted_max,
                    reassigned: a.reassigned,
                    io: a.io.clone(),
                })
                .collect(),
            cancelled: outcome.cancelled,
            unaccounted_max: outcome.unaccounted_max,
            unaccounted_unknown: outcome.unaccounted_unknown.clone(),
            unassigned: outcome.unassigned,
            missed: t.missed,
            cancelled_in_flight: t.cancelled,
            series: Vec::new(),
            thresholds: Vec::new(),
            scenario: None,
            histograms: Histograms {
                latency: encode_histogram(&t.histogram),
                latency_uncorrected: uncorrected_histogram,
                names: t
                    .names
                    .iter()
                    .map(|n| NamedHistogram {
                        name: n.name.clone(),
                        method: n.method.clone(),
                        latency: encode_histogram(&n.histogram),
                    })
                    .collect(),
            },
            names: t
                .names
                .iter()
                .map(|n| NameRow {
                    name: n.name.clone(),
                    method: n.method.clone(),
                    requests: n.requests,
                    failures: n.failures,
                    requests_per_second: per_second(n.requests, d),
                    latency_ms: Latency::of_histogram(&n.histogram, n.mean_latency().map(|m| m.as_secs_f64() * 1000.0)),
                })
                .collect(),
            failures: {
                let mut rows: Vec<FailureRow> = t
                    .failure_messages
                    .iter()
                    .map(|((name, message), n)| FailureRow { name: name.clone(), message: message.clone(), count: *n })
                    .collect();
                rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
                rows
            },
        }
    }

    /// The exit code of the run this report covers: 1 when the work could not
    /// be done, 3 when a `--fail-if` threshold failed, 0 otherwise. A run that
    /// lost agents but still accounted for its work has done its job (the
    /// report names the lost agents).
    pub fn exit_code(&self) -> i32 {
        let finished = self.agents.iter().any(|a| a.state == AgentState::Done);
        if self.unassigned > 0 || self.failure.is_some() || !finished && !self.cancelled {
            1
        } else if self.all_failed() && self.thresholds.is_empty() {
            // Thresholds, when given, decide; without them a run where
            // nothing succeeded has failed (as ab and hey users expect).
            1
        } else if self.thresholds.iter().all(|v| v.passed) {
            0
        } else {
            3
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
        // Writing to a String cannot fail; the results are ignored on purpose.
        match &self.scenario {
            Some(sc) => {
                let types: Vec<String> = sc.user_types.iter().map(|u| format!("{} {}", u.users, u.name)).collect();
                let spawn = sc.spawn_rate.map_or_else(|| "all at once".to_owned(), |r| format!("{r} per second"));
                let _ = writeln!(
                    s,
                    "Volley scenario: {} ({} users: {}; started {spawn})",
                    self.url,
                    sc.users,
                    types.join(", ")
                );
                for f in &sc.feeders {
                    let mode = serde_json::to_value(f.mode).ok().and_then(|v| v.as_str().map(str::to_owned));
                    let per = serde_json::to_value(f.per).ok().and_then(|v| v.as_str().map(str::to_owned));
                    let _ = write!(
                        s,
                        "Feeder {} ({}, a row per {}, {} rows): {} taken",
                        f.name,
                        mode.unwrap_or_default(),
                        per.unwrap_or_default(),
                        f.rows,
                        f.used
                    );
                    let _ = match f.exhausted {
                        0 => writeln!(s),
                        n => writeln!(s, "; ran out for {n} users"),
                    };
                }
            }
            None => {
                let _ = writeln!(s, "Volley load test: {} {}", self.method.as_deref().unwrap_or("GET"), self.url);
            }
        }
        if let Some(h) = &self.headline {
            let _ = writeln!(s, "FAILED: {h}");
        }
        if self.cancelled {
            let _ = writeln!(s, "(cancelled before the end: figures cover what was done)");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Total requests:         {}", self.total_requests);
        let _ = writeln!(s, "Successful requests:    {}", self.successful_requests);
        let _ = writeln!(s, "Failed requests:        {}", self.failed_requests);
        if let Some(n) = self.unaccounted_max {
            let _ = writeln!(
                s,
                "Unaccounted requests:   up to {n} (sent by lost agents after their last report; not counted above)"
            );
        }
        if let Some(why) = &self.unaccounted_unknown {
            let _ = writeln!(s, "Unaccounted requests:   unknown ({why}; not counted above)");
        }
        if self.unassigned > 0 {
            let _ = writeln!(s, "Unassigned requests:    {} (no agent was left running to send them)", self.unassigned);
        }
        if self.rate.is_some() || self.missed > 0 {
            let _ = writeln!(s, "Missed requests:        {} (due before the end, never sent)", self.missed);
        }
        if self.cancelled_in_flight > 0 {
            let _ = writeln!(
                s,
                "Cancelled in flight:    {} (no answer within the grace after the end; not counted above)",
                self.cancelled_in_flight
            );
        }
        let _ = writeln!(
            s,
            "Average response time:  {}",
            self.average_response_time_ms.map_or_else(|| "n/a (no responses)".to_owned(), |v| format!("{v:.3} ms"))
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "Requests per second:    {:.2} [#/sec] (mean)", self.requests_per_second);
        let _ = writeln!(s, "Error rate:             {:.2} %", self.error_rate * 100.0);
        let _ = writeln!(s, "Time taken for tests:   {:.3} seconds", self.duration_s);
        let _ = writeln!(s, "Protocol:               {}", self.protocol);
        let _ = writeln!(s, "Connections:            {}", self.connections);
        if let Some(h) = &self.http2 {
            let _ = writeln!(s, "Streams per connection: {} ({} requests in flight at most)", h.streams, h.in_flight);
            if let Some(m) = h.server_max_streams {
                let _ = writeln!(
                    s,
                    "Server max streams:     {m}{}",
                    if h.streams_limited {
                        " (SETTINGS_MAX_CONCURRENT_STREAMS below --streams: the extra streams waited their turn)"
                    } else {
                        ""
                    }
                );
            }
        }
        let _ = writeln!(s, "Time per request:       {:.3} [ms] (mean)", self.time_per_request_ms);
        let _ = writeln!(
            s,
            "Time per request:       {:.3} [ms] (mean, across all concurrent requests)",
            self.time_per_request_all_ms
        );
        let _ = writeln!(s, "Transfer rate:          {:.2} [Kbytes/sec] received", self.transfer_rate_kib_s);
        let _ = writeln!(s, "Bytes sent / received:  {} / {}", self.bytes_sent, self.bytes_received);
        match self.connections_opened {
            None => {
                let _ = writeln!(
                    s,
                    "Connections opened:     n/a (scenario users share each agent thread's connection pool)"
                );
            }
            Some(n) => {
                let _ = writeln!(s, "Connections opened:     {n}");
            }
        }
        if self.ramp_up_s > 0.0 {
            let _ =
                writeln!(s, "Ramp-up:                {:.3} seconds (its requests are included above)", self.ramp_up_s);
        }
        if let Some(r) = &self.rate {
            let _ = writeln!(s, "Requested rate:         {:.2} [#/sec]", r.requested);
            let _ =
                writeln!(s, "Achieved rate:          {:.2} [#/sec] ({:.2} % short)", r.achieved, r.shortfall_percent);
            let _ = writeln!(s, "Max schedule lag:       {:.3} ms", r.max_schedule_lag_ms);
            if let Some(w) = &r.warning {
                let _ = writeln!(s, "WARNING: {w}");
            }
        }
        if let Some(st) = &self.stages {
            self.stages_text(&mut s, st);
        }
        let _ = writeln!(s);
        let l = &self.latency_ms;
        if self.rate.is_some() {
            let _ =
                writeln!(s, "Latency counts from each request's intended send time (coordinated omission corrected).");
        }
        let _ = writeln!(s, "Response times (ms)      min       mean[+/-sd]       median        max");
        let _ = writeln!(
            s,
            "Total:            {:>10} {:>10} {:>8} {:>10} {:>10}",
            opt(l.min),
            opt(l.mean),
            opt(l.stdev),
            opt(l.p50),
            opt(l.max)
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "Percentage of the requests served within a certain time (ms)");
        if let Some(u) = &self.latency_uncorrected_ms {
            let _ = writeln!(s, "            corrected  uncorrected (from the actual send)");
            for p in PERCENTILES {
                let label = if p == 99.9 { "99.9%".to_owned() } else { format!("{p:.0}%") };
                let _ = writeln!(s, "  {label:>6}  {:>10}  {:>10}", opt(l.at(p)), opt(u.at(p)));
            }
        } else {
            for p in PERCENTILES {
                let label = if p == 99.9 { "99.9%".to_owned() } else { format!("{p:.0}%") };
                let tail = if p == 100.0 { " (longest request)" } else { "" };
                let _ = writeln!(s, "  {label:>6}  {:>10}{tail}", opt(l.at(p)));
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Status codes:");
        if self.status_codes.is_empty() {
            let _ = writeln!(s, "  (no responses)");
        }
        for (code, n) in &self.status_codes {
            let _ = writeln!(s, "  {code}: {n}");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "Errors (requests without a response):");
            for (class, n) in &self.errors {
                let _ = writeln!(s, "  {class}: {n}");
            }
        }
        if !self.names.is_empty() {
            self.names_text(&mut s);
        }
        if !self.target_addresses.is_empty() {
            self.addresses_text(&mut s);
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(s, "Thresholds (--fail-if):");
            for v in &self.thresholds {
                let actual = v.actual.map_or_else(|| "n/a".to_owned(), |a| format!("{a:.3}"));
                let base = v.baseline.map_or_else(String::new, |b| format!(", baseline {b:.3}"));
                let _ =
                    writeln!(s, "  {:<4}  {}  (measured {actual}{base})", if v.passed { "ok" } else { "FAIL" }, v.expr);
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<24} {:<9} {:>7} {:>6} {:>10} {:>10} {:>8} {:>9} {:>10}  io",
            "Agent", "state", "threads", "conns", "requests", "success", "failed", "avg ms", "req/s"
        );
        for a in &self.agents {
            let _ = writeln!(
                s,
                "{:<24} {:<9} {:>7} {:>6} {:>10} {:>10} {:>8} {:>9} {:>10.1}  {}",
                a.name(),
                format!("{:?}", a.state).to_lowercase(),
                a.threads,
                a.connections,
                a.total_requests,
                a.successful_requests,
                a.failed_requests,
                opt(a.average_response_time_ms),
                a.requests_per_second,
                a.io.as_deref().unwrap_or("-")
            );
            if let Some(e) = &a.error {
                let _ = writeln!(s, "    {}: {e}", a.address);
            }
            if a.reassigned > 0 || a.unaccounted_max.is_some() {
                let _ = writeln!(
                    s,
                    "    {}: {} requests of its share moved to other agents; up to {} sent unseen",
                    a.address,
                    a.reassigned,
                    a.unaccounted_max.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string())
                );
            }
        }
        s
    }
}

impl Report {
    /// The requests-per-target-address table.
    fn addresses_text(&self, s: &mut String) {
        let _ = writeln!(s);
        let _ = writeln!(s, "{:<40} {:>10} {:>8} {:>8}", "Target address", "requests", "failed", "conns");
        for t in &self.target_addresses {
            let _ = write!(s, "{:<40} {:>10} {:>8} {:>8}", t.address, t.requests, t.failures, t.connections_opened);
            let _ = writeln!(s, "{}", if t.refused { "  (refused by an agent's --allow-target)" } else { "" });
        }
    }

    /// The per-name table and the top failure messages.
    /// The stages' table: each stage's target next to what it achieved.
    fn stages_text(&self, s: &mut String, st: &StagesReport) {
        let unit = if st.unit == "requests_per_second" { "req/s" } else { st.unit };
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(s);
        let _ = writeln!(s, "Stages (targets in {unit}; figures of the seconds whose middle falls in each stage):");
        let _ = writeln!(
            s,
            "  {:>5} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>8}",
            "stage", "duration", "target", "mean tgt", "requests", "req/s", "p50 ms", "p99 ms", "failed"
        );
        for (i, r) in st.stages.iter().enumerate() {
            let measured = r.seconds > 0;
            let _ = writeln!(
                s,
                "  {:>5} {:>8}s {:>10.2} {:>10.2} {:>10} {:>10} {:>9} {:>9} {:>8}",
                i + 1,
                format!("{:.1}", r.duration_s),
                r.target,
                r.target_mean,
                r.requests,
                if measured { format!("{:.2}", r.requests_per_second) } else { "n/a".to_owned() },
                opt(r.latency_ms.p50),
                opt(r.latency_ms.p99),
                r.failures
            );
        }
    }

    fn names_text(&self, s: &mut String) {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<7} {:<28} {:>8} {:>14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "p95", "p99", "req/s"
        );
        for n in &self.names {
            let pct = if n.requests > 0 { n.failures as f64 * 100.0 / n.requests as f64 } else { 0.0 };
            let l = &n.latency_ms;
            let _ = writeln!(
                s,
                "{:<7} {:<28} {:>8} {:>14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8.1}",
                n.method,
                n.name,
                n.requests,
                format!("{} ({pct:.1}%)", n.failures),
                opt(l.mean),
                opt(l.min),
                opt(l.max),
                opt(l.p50),
                opt(l.p95),
                opt(l.p99),
                n.requests_per_second
            );
        }
        let _ = writeln!(s, "(latencies in ms)");
        if !self.failures.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "Failures (most frequent first):");
            for f in self.failures.iter().take(TOP_FAILURES) {
                let _ = writeln!(s, "  {:>8}  {:<28} {}", f.count, f.name, f.message);
            }
            if self.failures.len() > TOP_FAILURES {
                let _ = writeln!(
                    s,
                    "  ... and {} more messages (all in --output json)",
                    self.failures.len() - TOP_FAILURES
                );
            }
        }
        let _ = writeln!(s);
    }
}

/// What an error class (`volley_stats::ErrorClass::name`) means, in words.
pub fn describe_error(class: &str) -> &'static str {
    match class {
        "connect_refused" => "connection refused (is the target running, on that port?)",
        "connect_timeout" => "connecting timed out (is the host reachable?)",
        "connect" => "could not connect (network unreachable or no route to the host)",
        "timeout" => "no complete response within --timeout",
        "reset" => "the target reset the connection",
        "closed" => "the target closed the connection before answering",
        "protocol" => "the responses were not valid HTTP/1.1",
        "h2_goaway" => "the target's HTTP/2 GOAWAY cut the request off (counted failed; the connection is reopened)",
        c if c.starts_with("h2_rst_") => "the target reset the HTTP/2 stream (RST_STREAM) with this error code",
        "tls" => {
            "the TLS handshake failed (certificate signed by an unknown authority, or a target that does not \
             speak TLS; see --target-ca, -k)"
        }
        _ => "an I/O error",
    }
}

/// When the run started, as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(t: std::time::SystemTime) -> Option<String> {
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// Failure messages the text report lists.
const TOP_FAILURES: usize = 10;

impl AgentRow {
    /// The address, and the host (or pod) name when the agent reported one:
    /// behind a `dns:` name, the address alone does not say which pod it was.
    pub fn name(&self) -> String {
        if self.hostname.is_empty() { self.address.clone() } else { format!("{} ({})", self.address, self.hostname) }
    }
}
