//! What a run produced: every agent's part and the merged whole, and the
//! [`Observer`] that sees them as they come.
//!
//! These types sit apart from the coordinator that fills them so the report,
//! the time series and the HTTP API read them without depending on how a run
//! is driven.

use std::time::Duration;

use volley_stats::Totals;

/// How an agent's part of the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// It ran its part to the end.
    Done,
    /// It was cancelled (Ctrl-C) and reported what it did.
    Cancelled,
    /// Its stream broke before the final snapshot; what it reported is kept.
    Lost,
    /// It had no share of the work (more agents than requests).
    Idle,
    /// It did not answer at the start; the run went on without it (`--min-agents`).
    Unreachable,
}

/// One agent's part of a run.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    /// The address as given (or the embedded agent's).
    pub address: String,
    /// The host name the agent reported.
    pub hostname: String,
    /// Worker threads it used.
    pub threads: u32,
    /// Connections it was given.
    pub connections: u32,
    /// Requests it was given (count mode).
    pub quota: Option<u64>,
    /// What it reported, summed: every count, but its latency histograms
    /// stay empty (a merged histogram per agent was most of the controller's
    /// memory at a thousand agents; the run's latencies are in the total).
    pub totals: Totals,
    /// Responses it reported (what its latency histogram would count), for
    /// its mean latency.
    pub responses: u64,
    /// Time from its start to its last snapshot.
    pub elapsed: Duration,
    /// How its part ended.
    pub state: AgentState,
    /// Why it was lost, if it was.
    pub error: Option<String>,
    /// Open model: its share of the rate, requests per second.
    pub rate: Option<f64>,
    /// How late (positive) its workers began relative to the common start
    /// instant, by its own clock, in microseconds.
    pub start_skew_us: Option<i64>,
    /// Lost agents: the most requests it may have sent after its last
    /// snapshot (count and rate modes; `None` when no bound is known).
    pub unaccounted_max: Option<u64>,
    /// Count mode: requests of its share moved to other agents after it was lost.
    pub reassigned: u64,
    /// The I/O engine its workers used (`io_uring`, `epoll`, with the reason
    /// an io_uring agent ran this plan on epoll); `None` from older agents.
    pub io: Option<String>,
}

/// The I/O engine a `Started` event names, with the reason for a fallback:
/// `io_uring`, `epoll`, or e.g. `epoll (TLS runs on epoll)`.
pub fn io_engine(s: &volley_proto::Started) -> Option<String> {
    match (s.io_engine.as_str(), s.io_fallback.as_str()) {
        ("", _) => None,
        (engine, "") => Some(engine.to_owned()),
        (engine, why) => Some(format!("{engine} ({why})")),
    }
}

impl AgentOutcome {
    /// An agent that did not answer at the start; the run went on without it.
    pub fn unreachable(address: String, why: String) -> AgentOutcome {
        AgentOutcome {
            address,
            hostname: String::new(),
            threads: 0,
            connections: 0,
            quota: None,
            totals: Totals::counts_only(),
            responses: 0,
            elapsed: Duration::ZERO,
            state: AgentState::Unreachable,
            error: Some(why),
            rate: None,
            start_skew_us: None,
            unaccounted_max: None,
            reassigned: 0,
            io: None,
        }
    }

    /// Its mean latency, if it reported responses.
    pub fn mean_latency(&self) -> Option<Duration> {
        (self.responses > 0).then(|| Duration::from_nanos(self.totals.latency_sum_ns / self.responses))
    }
}

/// The merged result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every agent's part, in the order given.
    pub agents: Vec<AgentOutcome>,
    /// The sum of every agent's totals.
    pub total: Totals,
    /// The run's real span: from the first request any agent sent to the
    /// last one any agent saw complete (or, when none completed, the longest
    /// agent's time from the common start to its last report).
    pub duration: Duration,
    /// Whether the run was cancelled by the user.
    pub cancelled: bool,
    /// The most requests lost agents may have sent unseen, in total (`None`
    /// when no agent was lost, or when the bound is unknown: see below).
    pub unaccounted_max: Option<u64>,
    /// Why what lost agents may have sent unseen has no known bound, if so.
    pub unaccounted_unknown: Option<String>,
    /// Count mode: requests no agent was left to send (every agent lost).
    pub unassigned: u64,
    /// Why the run failed although agents may have finished it: an agent
    /// reported an internal failure (a worker panicked).
    pub failed: Option<String>,
}

/// A running total shared between the merge loop, which adds into it, and
/// readers such as the `/metrics` endpoint.
pub type SharedTotals = std::sync::Arc<std::sync::Mutex<Totals>>;

/// Locks a [`SharedTotals`]; a panic while it was held leaves figures that
/// are still worth reading.
pub fn lock_totals(t: &SharedTotals) -> std::sync::MutexGuard<'_, Totals> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sees a run as it goes: for live progress, time series and the HTTP API.
///
/// Called from the merge loop, so implementations must be quick (no I/O that
/// can block). Every method has a default that does nothing.
pub trait Observer: Send {
    /// The coordinator named the run `id` (as the agents log it); called
    /// before [`Observer::started`].
    fn run_id(&mut self, _id: &str) {}
    /// The run is about to start; `agents` are the parts as planned.
    fn started(&mut self, _agents: &[AgentOutcome]) {}
    /// The merge's running total of the whole run, which it updates (under
    /// the lock) as deltas arrive: an observer that needs the merged total
    /// reads it there instead of adding every delta up a second time.
    fn running_total(&mut self, _total: &SharedTotals) {}
    /// Agent `agent` reported `delta`, covering its run up to `elapsed` after
    /// the common start.
    fn delta(&mut self, _agent: usize, _delta: &crate::coordinator::Delta, _elapsed: Duration) {}
    /// Agent `agent` has `n` requests in flight (a level, with each delta).
    fn in_flight(&mut self, _agent: usize, _n: u64) {}
    /// Agent `agent`'s part ended.
    fn ended(&mut self, _agent: usize, _state: AgentState, _error: Option<&str>) {}
}

/// An observer that observes nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
