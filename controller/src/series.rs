//! The merged per-second time series of a run, and live progress lines.
//!
//! Agents share one start instant and tag every snapshot with how far into
//! the run it reaches. A delta covers the time from its agent's previous
//! snapshot to its own, and is filed under the second holding the middle of
//! that span: periodic snapshots cover one whole second each, and a final or
//! early snapshot stamped a moment past a whole second still lands in the
//! second its requests mostly belong to. Every delta lands in exactly one
//! second, so the seconds add up to the run's totals exactly; each second
//! keeps its merged histogram, so its percentiles are exact too.

use std::time::Duration;

use serde::Serialize;
use volley_stats::Totals;

use crate::outcome::{AgentOutcome, AgentState, Observer};
use crate::progress::{Live, Tick};

/// One second of the run, merged across agents.
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// What every agent did in that second.
    pub totals: Totals,
}

/// A row of the series as reports show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecondRow {
    /// Seconds since the start (0 is the first second).
    pub second: u64,
    /// Requests completed in it.
    pub requests: u64,
    /// Successes in it.
    pub successes: u64,
    /// Failures in it.
    pub failures: u64,
    /// Latency percentiles of its responses, in ms (`null` without responses).
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Slowest.
    pub max_ms: Option<f64>,
}

/// Collects the series and prints progress as the run goes.
#[derive(Debug)]
pub struct Series {
    seconds: Vec<Second>,
    live: Live,
    agents: usize,
    lost: usize,
    /// Per agent, where its last delta ended: where its next one begins.
    ends: Vec<Duration>,
    /// The last second a progress line was printed for.
    printed: Option<usize>,
}

pub use crate::progress::Progress;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Series {
    /// An empty series printing progress to `progress`.
    pub fn new(progress: Progress) -> Series {
        Series::with_live(Live::new(progress, None, None))
    }

    /// An empty series showing progress on `live`.
    pub fn with_live(live: Live) -> Series {
        Series { seconds: Vec::new(), live, agents: 0, lost: 0, ends: Vec::new(), printed: None }
    }

    /// The seconds so far.
    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    /// Agents in the run, and how many of them were lost.
    pub fn agents(&self) -> (usize, usize) {
        (self.agents, self.lost)
    }

    /// The series as report rows.
    pub fn rows(&self) -> Vec<SecondRow> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = &s.totals;
                let q = |p: f64| t.latency_at(p).map(|d| d.as_secs_f64() * 1000.0);
                SecondRow {
                    second: i as u64,
                    requests: t.requests,
                    successes: t.successes,
                    failures: t.failures,
                    p50_ms: q(0.5),
                    p90_ms: q(0.9),
                    p99_ms: q(0.99),
                    max_ms: (t.responses() > 0).then(|| ms(t.histogram.max())),
                }
            })
            .collect()
    }

    fn print(&mut self, upto: usize, elapsed: Duration) {
        let Some(s) = self.seconds.get(upto) else { return };
        let t = &s.totals;
        let lat = |p: f64| t.latency_at(p).map(|d| d.as_secs_f64() * 1e3);
        let tick = Tick {
            second: upto as u64 + 1,
            done: self.seconds[..=upto].iter().map(|s| s.totals.requests).sum(),
            rate: t.requests,
            failures: t.failures,
            p50_ms: lat(0.5),
            p99_ms: lat(0.99),
            agents: (self.agents - self.lost, self.lost),
        };
        self.live.show(&tick, elapsed);
        self.printed = Some(upto);
    }

    /// Ends the live display.
    pub fn finish(&mut self) {
        self.live.finish();
    }
}

impl Observer for Series {
    fn started(&mut self, agents: &[AgentOutcome]) {
        self.agents = agents.len();
    }

    fn delta(&mut self, agent: usize, delta: &Totals, elapsed: Duration) {
        if self.ends.len() <= agent {
            self.ends.resize(agent + 1, Duration::ZERO);
        }
        let begin = self.ends[agent].min(elapsed);
        self.ends[agent] = self.ends[agent].max(elapsed);
        let second = ((begin + elapsed) / 2).as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Second::default);
        }
        self.seconds[second].totals.add(delta);
        // A delta for a later second means the earlier ones are complete.
        if second > 0 && self.printed.is_none_or(|p| p < second - 1) {
            self.print(second - 1, elapsed);
        }
    }

    fn ended(&mut self, _agent: usize, state: AgentState, _error: Option<&str>) {
        if state == AgentState::Lost {
            self.lost += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_stats::Recorder;

    fn delta(n: u64, us: u64) -> Totals {
        let mut r = Recorder::new();
        for _ in 0..n {
            r.response(200, true, Duration::from_micros(us), 10, 10);
        }
        r.take()
    }

    #[test]
    fn deltas_land_in_the_second_of_their_middle_and_add_up() {
        let mut s = Series::new(Progress::Off);
        let at = Duration::from_millis;
        // Agent 0: two periodic snapshots, then a final one stamped a moment
        // after the last whole second, covering (2, 3.0003].
        s.delta(0, &delta(10, 100), at(1000));
        s.delta(0, &delta(6, 100), at(2000));
        s.delta(0, &delta(4, 300), Duration::from_micros(3_000_300));
        // Agent 1: an early snapshot, a periodic one, an early one just past
        // second 2, and a final one.
        s.delta(1, &delta(1, 200), at(50));
        s.delta(1, &delta(5, 200), at(1000));
        s.delta(1, &delta(2, 200), at(2050));
        s.delta(1, &delta(3, 300), at(2400));
        let rows = s.rows();
        assert_eq!(rows.iter().map(|r| r.requests).collect::<Vec<_>>(), [16, 8, 7]);
        assert_eq!(rows[2].p50_ms, Some(0.3));
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 31);
    }
}
