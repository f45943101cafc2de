//! From a checked configuration and the agents that answered to each agent's
//! share of the run and the `RunPlan` that tells it: the controller's mirror
//! of the agent's `plan.rs`, which checks that plan on arrival.

use std::time::{Duration, SystemTime};

use volley_proto::{Header, PROTOCOL_VERSION, RunPlan, run_plan};

use super::connect::Connected;
use crate::config::{Limit, RunConfig};
use crate::outcome::{AgentOutcome, AgentState};
use crate::split::split;

/// One agent's share of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// Worker threads it is asked to use.
    pub threads: u32,
    pub connections: u64,
    /// Count mode: its requests.
    pub quota: Option<u64>,
    /// Open model: its requests per second.
    pub rate: Option<f64>,
    /// Scenario runs: its users per user type.
    pub users: Vec<u64>,
    /// Scenario runs: the run-wide index of its first user.
    pub first_user: u64,
}

/// Shares for agents with `worker_threads` each: connections in proportion
/// to the threads each will use, at least one each; requests and rate in
/// proportion to connections. Scenario runs: each agent's users are a
/// contiguous slice of one global start order in which user types are
/// interleaved, so each agent gets a fair mix and the totals per type are exact.
pub fn shares(cfg: &RunConfig, worker_threads: &[u32]) -> Vec<Share> {
    let threads: Vec<u32> = worker_threads.iter().map(|&w| cfg.threads.unwrap_or(w).max(1)).collect();
    let conns = split(u64::from(cfg.connections), &threads.iter().map(|&t| u64::from(t)).collect::<Vec<_>>(), 1);
    let quotas = match cfg.limit {
        Limit::Requests(n) => Some(split(n, &conns, 0)),
        Limit::Duration(_) => None,
    };
    let order = cfg.scenario.as_ref().map(|sc| volley_scenario::interleave(&sc.per_type)).unwrap_or_default();
    let types = cfg.scenario.as_ref().map_or(0, |sc| sc.per_type.len());
    let mut first_user = 0usize;
    (0..threads.len())
        .map(|i| {
            let mut users = vec![0u64; types];
            for &t in order.iter().skip(first_user).take(conns[i] as usize) {
                users[t] += 1;
            }
            let first = first_user as u64;
            first_user += conns[i] as usize;
            Share {
                threads: threads[i],
                connections: conns[i],
                quota: quotas.as_ref().map(|q| q[i]),
                rate: cfg.rate.map(|r| r * conns[i] as f64 / f64::from(cfg.connections)),
                users,
                first_user: first,
            }
        })
        .collect()
}

/// The common start instant, `lead` from now, in microseconds since the
/// Unix epoch.
pub fn start_at_us(lead: Duration) -> u64 {
    let start_at = SystemTime::now() + lead;
    start_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Agent `agent`'s part as planned, before it has reported anything.
pub fn planned(agent: &Connected, share: &Share) -> AgentOutcome {
    AgentOutcome {
        address: agent.address.clone(),
        hostname: agent.info.hostname.clone(),
        threads: share.threads.min(share.connections as u32),
        connections: share.connections as u32,
        quota: share.quota,
        // Its latencies are only counted (see `AgentOutcome::totals`).
        totals: volley_stats::Totals::counts_only(),
        responses: 0,
        elapsed: Duration::ZERO,
        state: AgentState::Idle,
        error: None,
        rate: share.rate,
        start_skew_us: None,
        unaccounted_max: None,
        reassigned: 0,
        io: None,
    }
}

/// The plan that tells an agent its `share`, limited by `limit` (its first
/// grant in count mode, the duration otherwise), with its run `lease`. It
/// waits for its start instant (the two-phase start described in volley.proto).
pub fn run_plan(cfg: &RunConfig, share: &Share, run_id: &str, lease: Duration, limit: run_plan::Limit) -> RunPlan {
    let of_connections = |total: f64| total * share.connections as f64 / f64::from(cfg.connections);
    RunPlan {
        protocol_version: PROTOCOL_VERSION,
        run_id: run_id.to_owned(),
        url: cfg.url.clone(),
        method: cfg.method.clone(),
        headers: cfg.headers.iter().map(|(n, v)| Header { name: n.clone(), value: v.clone() }).collect(),
        body: cfg.body.clone(),
        limit: Some(limit),
        connections: share.connections as u32,
        threads: share.threads,
        timeout_ms: cfg.timeout.as_millis() as u64,
        success_status: cfg.success_status.iter().map(|&s| u32::from(s)).collect(),
        start_at_unix_us: 0,
        rate: share.rate.unwrap_or(0.0),
        ramp_up_ms: cfg.ramp_up.as_millis() as u64,
        lease_ms: lease.as_millis() as u64,
        open_quota: share.quota.is_some(),
        target_ca_pem: cfg.target_ca_pem.clone(),
        target_insecure: cfg.target_insecure,
        scenario: cfg.scenario.as_ref().map(|sc| sc.json.clone()).unwrap_or_default(),
        users: share.users.clone(),
        spawn_rate: cfg.scenario.as_ref().and_then(|sc| sc.spawn_rate).map_or(0.0, of_connections),
        await_start: true,
        http2: cfg.http2,
        streams: cfg.streams,
        source_addrs: cfg.source_addrs.as_ref().map(|s| s.to_strings()).unwrap_or_default(),
        // Set per agent by the coordinator (its first connection's index).
        source_offset: 0,
        resolve_each_ms: cfg.resolve_each.as_millis() as u64,
        connect_to: cfg.connect_to.clone(),
        stages: cfg
            .stages
            .iter()
            .flat_map(|st| &st.levels)
            .map(|(d, level)| volley_proto::Stage { duration_ms: d.as_millis() as u64, level: *level })
            .collect(),
        feeders: cfg.scenario.as_ref().map_or_else(Vec::new, |sc| feeder_rows(sc, share)),
    }
}

/// An agent's rows of each feeder: a unique feeder's rows are split in
/// proportion to the users, in contiguous disjoint slices (the agent with
/// users `[a, a + c)` of `U` gets rows `[a·N/U, (a + c)·N/U)` of `N`); the
/// other modes get the whole table.
fn feeder_rows(sc: &crate::config::ScenarioRun, share: &Share) -> Vec<volley_proto::FeederRows> {
    let users = u128::from(sc.users.max(1));
    sc.scenario
        .feeders
        .iter()
        .map(|f| {
            let table = &f.table;
            let columns = f.columns.len();
            let (table, first_row) = match f.mode {
                volley_scenario::feeder::Mode::Unique => {
                    let n = u128::from(f.rows);
                    let at = |user: u64| (u128::from(user) * n / users) as usize;
                    let rows = at(share.first_user)..at(share.first_user + share.connections);
                    let first = rows.start as u64;
                    (std::borrow::Cow::Owned(table.slice(columns, rows)), first)
                }
                _ => (std::borrow::Cow::Borrowed(table), share.first_user),
            };
            let mut prev = 0;
            let lengths = table
                .ends
                .iter()
                .map(|&e| {
                    let len = e - prev;
                    prev = e;
                    len
                })
                .collect();
            volley_proto::FeederRows { text: table.text.clone(), lengths, first_row }
        })
        .collect()
}
