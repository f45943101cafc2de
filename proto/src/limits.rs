//! The limits of one plan, the same on both sides: an agent refuses a plan
//! beyond them, and the controller refuses the flags that would make one, so
//! the user hears about it before any agent is asked.
//!
//! An agent's operator may set lower limits of their own (`--max-connections`
//! and the like); those live with the agent.

use std::time::Duration;

/// Most connections one plan may ask of one agent.
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Most HTTP/2 streams per connection one plan may ask for (`--streams`).
pub const MAX_STREAMS: u32 = 1000;
/// Most request slots (connections × HTTP/2 streams) one plan may ask of one agent.
pub const MAX_SLOTS: u64 = 1_000_000;
/// Most worker threads one plan may ask for.
pub const MAX_THREADS: u32 = 1024;
/// Longest run one plan may ask for (a day).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Highest request rate one plan may ask of one agent.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Lowest request rate a run may ask in total: one request a day. Below it a
/// schedule's gaps outgrow any clock (1e-300 requests per second is one
/// request in 1e292 years), so it is refused rather than rounded.
pub const MIN_RATE: f64 = 1.0 / 86_400.0;
/// Lowest virtual-user spawn rate, for the same reason as [`MIN_RATE`].
pub const MIN_SPAWN_RATE: f64 = MIN_RATE;
/// Lowest rate (or spawn rate) one agent's plan may carry: the smallest
/// share of a [`MIN_RATE`] run, split by connections (at most
/// [`MAX_CONNECTIONS`], each agent holding at least one).
pub const MIN_PLAN_RATE: f64 = MIN_RATE / MAX_CONNECTIONS as f64;
/// Longest per-request timeout a plan may carry (a run can be no longer).
pub const MAX_TIMEOUT: Duration = MAX_DURATION;
/// Per-request timeout when the plan gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest target URL a plan may carry.
pub const MAX_URL: usize = 8 * 1024;
/// Most request headers a plan may carry.
pub const MAX_HEADERS: usize = 100;
/// The largest scenario (JSON bytes) a plan may carry.
pub const MAX_SCENARIO: usize = 1 << 20;

/// The most bytes a scenario's feeder files may hold together; the plan
/// carries at most about twice that (the cells' text, and a length of at
/// most one byte more than its cell for each cell).
pub const MAX_FEEDER_BYTES: usize = 64 << 20;

/// Room in a plan message for everything but its body and scenario: the URL,
/// headers, a CA bundle and the small fields.
pub const PLAN_OVERHEAD: usize = 4 << 20;

/// The largest gRPC message an agent whose bodies may be `max_body` bytes
/// must accept: a plan carrying such a body, a full scenario and its feeders. gRPC's
/// default (4 MiB) would refuse larger bodies before `--max-body` is asked.
pub fn max_plan_message(max_body: usize) -> usize {
    max_body.saturating_add(MAX_SCENARIO).saturating_add(2 * MAX_FEEDER_BYTES).saturating_add(PLAN_OVERHEAD)
}
/// Most stages in one run (`--stage`).
pub const MAX_STAGES: usize = 1000;
