//! The limits of one plan, the same on both sides: an agent refuses a plan
//! beyond them, and the controller refuses the flags that would make one, so
//! the user hears about it before any agent is asked.
//!
//! An agent's operator may set lower limits of their own (`--max-connections`
//! and the like); those live with the agent.

use std::time::Duration;

/// Most connections one plan may ask of one agent.
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Most worker threads one plan may ask for.
pub const MAX_THREADS: u32 = 1024;
/// Longest run one plan may ask for (a day).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Highest request rate one plan may ask of one agent.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Per-request timeout when the plan gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest target URL a plan may carry.
pub const MAX_URL: usize = 8 * 1024;
/// Most request headers a plan may carry.
pub const MAX_HEADERS: usize = 100;
/// The largest scenario (JSON bytes) a plan may carry.
pub const MAX_SCENARIO: usize = 1 << 20;
