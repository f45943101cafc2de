//! The merged per-second time series of a run, and live progress lines.
//!
//! Agents share one start instant and tag every snapshot with how far into
//! the run it reaches. A delta covers the time from its agent's previous
//! snapshot to its own, and is filed under the second holding the middle of
//! that span: periodic snapshots cover one whole second each, and a final or
//! early snapshot stamped a moment past a whole second still lands in the
//! second its requests mostly belong to. Every delta lands in exactly one
//! second, so the seconds add up to the run's totals exactly.
//!
//! Memory stays flat in the length of a run: a second keeps its merged
//! histograms only while an agent may still report into it. Once every
//! running agent has reported past it, it is reduced to its [`SecondRow`]
//! (computed from the whole merged histogram, so its percentiles are exact)
//! and its histogram goes to the `--hdr-log` writer, if any, then is dropped.
//! A merged histogram is about 190 KiB; a row is under 100 bytes.
//!
//! With `--stage`, each stage's figures are merged from the seconds whose
//! middle falls in it (seconds past the last stage, when `-z` runs on,
//! belong to the last one), with exact percentiles from the merged
//! histogram of those seconds. Seconds close in order, so only the stage
//! being filled holds a histogram; a finished stage is reduced to its
//! [`StageFigures`].

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use volley_stats::Totals;

use crate::coordinator::Delta;
use crate::latency::Latency;
use crate::outcome::{AgentOutcome, AgentState, Observer};
use crate::output::HdrLog;
use crate::progress::{Live, Tick};

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
    /// What the run asked of this second, next to what it got: requests
    /// (with a rate) or connections on average (closed-model stages or
    /// ramp-up), from the stages or the ramp; `null` for a flat closed run.
    pub target: Option<f64>,
}

impl SecondRow {
    /// The row of second `second`, whose merged figures are `t`.
    pub fn of(second: u64, t: &Totals) -> SecondRow {
        let q = |p: f64| t.latency_at(p).map(|d| d.as_secs_f64() * 1000.0);
        SecondRow {
            second,
            requests: t.requests,
            successes: t.successes,
            failures: t.failures,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: (t.responses() > 0).then(|| ms(t.histogram.max())),
            target: None,
        }
    }
}

/// One stage's merged figures: those of the seconds whose middle falls in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageFigures {
    /// The first of its seconds (as in [`SecondRow::second`]).
    pub first_second: u64,
    /// How many seconds it has (0: it was shorter than a second, or the run
    /// ended before it).
    pub seconds: u64,
    /// Requests completed in those seconds.
    pub requests: u64,
    /// Successes among them.
    pub successes: u64,
    /// Failures among them.
    pub failures: u64,
    /// Their latencies, exact from the merged histogram of those seconds.
    pub latency_ms: Latency,
}

impl StageFigures {
    fn of(first_second: u64, seconds: u64, t: &Totals) -> StageFigures {
        StageFigures {
            first_second,
            seconds,
            requests: t.requests,
            successes: t.successes,
            failures: t.failures,
            latency_ms: Latency::of(t),
        }
    }
}

/// The stage being filled: its index, first second, seconds so far, and merged figures.
#[derive(Debug)]
struct StageFill {
    stage: usize,
    first: u64,
    seconds: u64,
    totals: Totals,
}

/// Collects the series and prints progress as the run goes.
#[derive(Debug)]
pub struct Series {
    /// Seconds every running agent has reported past, from second 0,
    /// reduced to their rows.
    closed: Vec<SecondRow>,
    /// The seconds after them, which agents may still report into, with
    /// their merged figures and histograms.
    open: VecDeque<Totals>,
    /// Where closed seconds' histograms are written, if anywhere.
    hdr_log: Option<HdrLog>,
    /// Requests in every delta so far.
    requests: u64,
    live: Live,
    agents: usize,
    lost: usize,
    /// Per agent, where its last delta ended: where its next one begins.
    ends: Vec<Duration>,
    /// Per agent, whether it will report no more (ended, or had no share).
    quiet: Vec<bool>,
    /// The earliest second a running agent's next delta can land in (the
    /// least whole second of `ends` over agents not `quiet`), and how many
    /// such agents are at it: kept as deltas come, so that a delta costs a
    /// look at every agent only when it moves the last one off the frontier
    /// (once a second), not each time (a million looks a second at a
    /// thousand agents, issue #19).
    frontier: usize,
    at_frontier: usize,
    /// The last second a progress line was printed for.
    printed: Option<usize>,
    /// `--stage`: where each stage ends, in seconds since the start.
    stage_ends: Vec<f64>,
    /// Stages whose seconds are all closed, reduced to their figures.
    stages_done: Vec<Option<StageFigures>>,
    /// The stage the closed seconds are filling now.
    stage_fill: Option<StageFill>,
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
        Series {
            closed: Vec::new(),
            open: VecDeque::new(),
            hdr_log: None,
            requests: 0,
            live,
            agents: 0,
            lost: 0,
            ends: Vec::new(),
            quiet: Vec::new(),
            frontier: usize::MAX,
            at_frontier: 0,
            printed: None,
            stage_ends: Vec::new(),
            stages_done: Vec::new(),
            stage_fill: None,
        }
    }

    /// Also merges each stage's figures; `ends` are where the stages end,
    /// in seconds since the start (non-decreasing).
    pub fn with_stages(mut self, ends: Vec<f64>) -> Series {
        self.stages_done = vec![None; ends.len()];
        self.stage_ends = ends;
        self
    }

    /// Each stage's figures so far, in stage order (empty without stages).
    pub fn stages(&self) -> Vec<StageFigures> {
        let mut out = self.stages_done.clone();
        if let Some(f) = &self.stage_fill {
            out[f.stage] = Some(StageFigures::of(f.first, f.seconds, &f.totals));
        }
        out.into_iter().map(Option::unwrap_or_default).collect()
    }

    /// Files closed second `i` under the stage holding its middle.
    fn file_in_stage(&mut self, i: usize, t: &Totals) {
        let Some(last) = self.stage_ends.len().checked_sub(1) else { return };
        let middle = i as f64 + 0.5;
        let stage = self.stage_ends.iter().position(|&end| middle < end).unwrap_or(last);
        if self.stage_fill.as_ref().is_some_and(|f| f.stage != stage)
            && let Some(f) = self.stage_fill.take()
        {
            self.stages_done[f.stage] = Some(StageFigures::of(f.first, f.seconds, &f.totals));
        }
        let fill = self.stage_fill.get_or_insert_with(|| StageFill {
            stage,
            first: i as u64,
            seconds: 0,
            totals: Totals::default(),
        });
        fill.seconds += 1;
        fill.totals.add(t);
    }

    /// Also writes every second's merged histogram to `log` as the run goes.
    pub fn with_hdr_log(mut self, log: HdrLog) -> Series {
        self.hdr_log = Some(log);
        self
    }

    /// Seconds in the series so far.
    pub fn len(&self) -> usize {
        self.closed.len() + self.open.len()
    }

    /// Whether no agent has reported anything yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seconds still held with their histograms (the rest are reduced to rows).
    pub fn open_seconds(&self) -> usize {
        self.open.len()
    }

    /// Agents in the run, and how many of them were lost.
    pub fn agents(&self) -> (usize, usize) {
        (self.agents, self.lost)
    }

    /// The series as report rows.
    pub fn rows(&self) -> Vec<SecondRow> {
        let first_open = self.closed.len();
        let open = self.open.iter().enumerate().map(|(i, t)| SecondRow::of((first_open + i) as u64, t));
        self.closed.iter().cloned().chain(open).collect()
    }

    /// The row of second `i`, if the series reaches it.
    fn row(&self, i: usize) -> Option<SecondRow> {
        match i.checked_sub(self.closed.len()) {
            None => self.closed.get(i).cloned(),
            Some(j) => self.open.get(j).map(|t| SecondRow::of(i as u64, t)),
        }
    }

    /// Requests in seconds `0..=upto`: every request so far but those of the
    /// seconds after it (counted from the end, which is near `upto`).
    fn requests_through(&self, upto: usize) -> u64 {
        let open_after =
            self.open.iter().enumerate().filter(|(j, _)| self.closed.len() + j > upto).map(|(_, t)| t.requests);
        let closed_after = self.closed.iter().skip(upto + 1).map(|r| r.requests);
        self.requests - open_after.sum::<u64>() - closed_after.sum::<u64>()
    }

    fn print(&mut self, upto: usize, elapsed: Duration) {
        let Some(r) = self.row(upto) else { return };
        let tick = Tick {
            second: upto as u64 + 1,
            done: self.requests_through(upto),
            rate: r.requests,
            failures: r.failures,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            agents: (self.agents - self.lost, self.lost),
        };
        self.live.show(&tick, elapsed);
        self.printed = Some(upto);
    }

    /// Reduces the open seconds no agent can report into any more: those
    /// before the earliest second a running agent's next delta can land in.
    /// An agent's next delta begins where its last one ended (its clock
    /// only goes forward), so its middle is no earlier than that.
    fn close_complete(&mut self) {
        // Before `started`, the agents are not known, so no second is known complete.
        if self.agents == 0 {
            return;
        }
        if self.at_frontier == 0 {
            self.find_frontier();
        }
        while self.closed.len() < self.frontier {
            let Some(t) = self.open.pop_front() else { break };
            self.close(t);
        }
    }

    /// Computes [`Series::frontier`] and [`Series::at_frontier`] afresh.
    fn find_frontier(&mut self) {
        let running = || self.ends.iter().zip(&self.quiet).filter(|(_, quiet)| !**quiet).map(|(end, _)| end.as_secs());
        self.frontier = running().min().map_or(usize::MAX, |s| s as usize);
        self.at_frontier = running().filter(|&s| s as usize == self.frontier).count();
    }

    /// Agent `agent`, whose end was at `was` seconds, left the frontier
    /// (moved past it, or went quiet).
    fn left(&mut self, agent: usize, was: u64) {
        if !self.quiet[agent] && was as usize == self.frontier {
            self.at_frontier -= 1;
        }
    }

    fn close(&mut self, t: Totals) {
        let i = self.closed.len();
        self.closed.push(SecondRow::of(i as u64, &t));
        self.file_in_stage(i, &t);
        if let Some(log) = &self.hdr_log {
            log.second(i, t.histogram);
        }
    }

    /// Ends the live line on a terminal, reduces every second and finishes
    /// the `--hdr-log` file, if any; the series' rows stay as they were.
    pub fn finish(&mut self) -> Result<(), crate::output::HdrLogError> {
        self.live.finish();
        while let Some(t) = self.open.pop_front() {
            self.close(t);
        }
        self.hdr_log.take().map_or(Ok(()), HdrLog::finish)
    }
}

impl Observer for Series {
    fn started(&mut self, agents: &[AgentOutcome]) {
        self.agents = agents.len();
        self.ends = vec![Duration::ZERO; agents.len()];
        // An agent with no share of the work is sent no plan and never reports.
        self.quiet = agents.iter().map(|a| a.quota == Some(0) || a.connections == 0).collect();
        self.find_frontier();
    }

    fn delta(&mut self, agent: usize, delta: &Delta, elapsed: Duration) {
        if self.ends.len() <= agent {
            self.ends.resize(agent + 1, Duration::ZERO);
            self.quiet.resize(agent + 1, false);
            self.find_frontier();
        }
        let begin = self.ends[agent].min(elapsed);
        let was = self.ends[agent].as_secs();
        self.ends[agent] = self.ends[agent].max(elapsed);
        if self.ends[agent].as_secs() > was {
            self.left(agent, was);
        }
        // A delta can only land in a closed second if its agent's clock went
        // back; it then joins the first open second, so the counts still add up.
        let second = (((begin + elapsed) / 2).as_secs() as usize).max(self.closed.len());
        let j = second - self.closed.len();
        if self.open.len() <= j {
            self.open.resize_with(j + 1, Totals::default);
        }
        delta.add_to(&mut self.open[j]);
        self.requests += delta.requests();
        // A delta for a later second means the earlier ones are complete.
        if second > 0 && self.printed.is_none_or(|p| p < second - 1) {
            self.print(second - 1, elapsed);
        }
        self.close_complete();
    }

    fn ended(&mut self, agent: usize, state: AgentState, _error: Option<&str>) {
        if state == AgentState::Lost {
            self.lost += 1;
        }
        if agent < self.quiet.len() && !self.quiet[agent] {
            self.left(agent, self.ends[agent].as_secs());
            self.quiet[agent] = true;
        }
        self.close_complete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_stats::Recorder;

    fn delta(n: u64, us: u64) -> Delta {
        let mut r = Recorder::new();
        for _ in 0..n {
            r.response(200, true, Duration::from_micros(us), 10, 10);
        }
        r.take().into()
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

    /// A delta of `n` responses with latencies spread from `from` µs by `step`.
    fn spread(n: u64, from: u64, step: u64) -> Totals {
        let mut r = Recorder::new();
        for i in 0..n {
            r.response(200, i % 7 != 0, Duration::from_micros(from + i * step), 10, 10);
        }
        r.take()
    }

    #[test]
    fn reduced_seconds_give_the_rows_of_their_full_histograms() {
        let mut s = Series::new(Progress::Off);
        let agents = || (0..2).map(|_| crate::outcome::AgentOutcome::unreachable("a".into(), String::new()));
        let planned: Vec<_> = agents()
            .map(|mut a| {
                a.connections = 1;
                a
            })
            .collect();
        s.started(&planned);
        // What every second would hold with its whole merged histogram kept.
        let mut full: Vec<Totals> = Vec::new();
        let mut file = |second: usize, t: &Totals| {
            if full.len() <= second {
                full.resize_with(second + 1, Totals::default);
            }
            full[second].add(t);
        };
        for k in 1..=300u64 {
            // Agent 0 reports on the second, agent 1 a little later.
            let a = spread(50 + k % 13, 100 + k, 3 + k % 5);
            s.delta(0, &a.clone().into(), Duration::from_secs(k));
            file(k as usize - 1, &a);
            let b = spread(20 + k % 17, 1000 + 7 * k, 11);
            s.delta(1, &b.clone().into(), Duration::from_millis(k * 1000 + 40));
            file(k as usize - 1, &b);
            assert!(s.open_seconds() <= 2, "second {k}: {} seconds still hold histograms", s.open_seconds());
        }
        let expected: Vec<SecondRow> = full.iter().enumerate().map(|(i, t)| SecondRow::of(i as u64, t)).collect();
        assert_eq!(s.rows(), expected, "rows while running");
        s.ended(0, AgentState::Done, None);
        s.ended(1, AgentState::Done, None);
        assert_eq!(s.open_seconds(), 0, "every second reduced once every agent has ended");
        s.finish().unwrap();
        assert_eq!(s.rows(), expected, "rows after the run");
        assert!(expected.iter().all(|r| r.p99_ms > r.p50_ms), "the test's seconds have spread latencies");
    }

    #[test]
    fn a_second_closes_once_every_running_agent_is_past_it() {
        let mut s = Series::new(Progress::Off);
        let mut planned = crate::outcome::AgentOutcome::unreachable("a".into(), String::new());
        planned.connections = 1;
        let idle = crate::outcome::AgentOutcome::unreachable("idle".into(), String::new());
        // Three agents that report, one with no share (quiet from the start).
        s.started(&[planned.clone(), planned.clone(), idle, planned]);
        let at = Duration::from_millis;
        for second in 1..=3u64 {
            for agent in [0, 1, 3] {
                // Nothing closes before the last of them reports for this second.
                assert_eq!(s.len() - s.open_seconds(), second as usize - 1, "second {second}, agent {agent}");
                s.delta(agent, &delta(1, 100), at(1000 * second));
            }
            assert_eq!(s.open_seconds(), 0, "second {second} closed");
        }
        // Agent 1 lags by two seconds: seconds 3 and 4 wait for it, and close
        // when it ends, even without another delta.
        s.delta(0, &delta(1, 100), at(5000));
        s.delta(3, &delta(1, 100), at(5000));
        assert_eq!(s.open_seconds(), 2);
        s.ended(1, AgentState::Done, None);
        assert_eq!(s.open_seconds(), 0);
        assert_eq!(s.rows().iter().map(|r| r.requests).collect::<Vec<_>>(), [3, 3, 3, 0, 2]);
    }

    #[test]
    fn a_delta_behind_the_closed_seconds_still_counts() {
        let mut s = Series::new(Progress::Off);
        let mut planned = crate::outcome::AgentOutcome::unreachable("a".into(), String::new());
        planned.connections = 1;
        s.started(&[planned]);
        s.delta(0, &delta(5, 100), Duration::from_secs(1));
        s.delta(0, &delta(5, 100), Duration::from_secs(3));
        // Its next delta begins at 3 s: seconds 0 to 2 are complete.
        assert_eq!(s.open_seconds(), 0);
        // A clock that went back: the delta joins the first open second.
        s.delta(0, &delta(4, 100), Duration::from_millis(500));
        assert_eq!(s.rows().iter().map(|r| r.requests).collect::<Vec<_>>(), [5, 0, 5, 4]);
    }

    #[test]
    fn stages_merge_the_seconds_whose_middle_falls_in_them() {
        // Stages ending at 1.5 s (second 0: its middle 0.5 is before 1.5,
        // second 1's middle is not), at 1.5 s too (a step: no seconds) and
        // at 3 s; seconds 3 and 4 are past the stages and count in the last.
        let mut s = Series::new(Progress::Off).with_stages(vec![1.5, 1.5, 3.0]);
        let mut planned = crate::outcome::AgentOutcome::unreachable("a".into(), String::new());
        planned.connections = 1;
        s.started(&[planned]);
        for (k, (n, us)) in [(10, 100), (20, 200), (30, 300), (40, 400), (50, 500)].into_iter().enumerate() {
            s.delta(0, &delta(n, us), Duration::from_secs(k as u64 + 1));
            if k == 3 {
                // While running, the stage being filled shows its closed seconds so far.
                assert_eq!(s.stages()[2].requests, 20 + 30 + 40);
            }
        }
        s.ended(0, AgentState::Done, None);
        s.finish().unwrap();
        let st = s.stages();
        let got: Vec<_> = st.iter().map(|f| (f.first_second, f.seconds, f.requests)).collect();
        assert_eq!(got, [(0, 1, 10), (0, 0, 0), (1, 4, 20 + 30 + 40 + 50)]);
        assert_eq!(st[0].latency_ms.p50, Some(0.1));
        assert_eq!(st[2].latency_ms.min, Some(0.2));
        assert_eq!(st[2].latency_ms.max, Some(0.5));
        assert_eq!(st[1].latency_ms.p50, None, "a step has no seconds");
    }
}
