//! The coordinator's accounting while a run goes: count-mode grants, and who
//! takes over a lost agent's work. Pure and deterministic: it decides what to
//! tell which agent and the merge loop sends it. Time comes in as `now`
//! arguments, never from a clock, so tests step it exactly.
//!
//! The grant protocol itself (who grants what when, what "no more grants"
//! means, what happens on loss) is described once, next to `RenewRequest` in
//! `proto/proto/volley.proto`; this is the controller's half of it.

use std::time::{Duration, Instant};

use super::delta::Delta;
use super::link::Link;
use crate::outcome::{AgentOutcome, AgentState};
use crate::split::split;

/// Count mode: the smallest grant ahead, per connection.
const MIN_GRANT_PER_CONNECTION: u64 = 100;

/// One agent while the run goes: its outcome so far and the accounting that
/// goes with it.
#[derive(Debug)]
pub struct AgentSlot {
    /// Its part as it will be reported.
    pub outcome: AgentOutcome,
    /// Its stream is still open.
    pub running: bool,
    /// When it was last heard from.
    pub last_event: Instant,
    /// Count mode: its share (grows when it takes over a lost agent's share;
    /// shrinks to what it reported when it is lost).
    pub quota: u64,
    /// Count mode: requests granted so far.
    pub granted: u64,
    /// Count mode: requests it has taken from its grants, as it last reported.
    pub taken: u64,
    /// Count mode: told that no more grants follow (and not reopened since).
    pub closed: bool,
    /// Its measured link, which its timeouts and grant sizes follow.
    pub link: Link,
}

/// What the ledger wants an agent told (by a `RenewRequest`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Renewal {
    /// Count mode: this many more requests may be sent.
    Grant(u64),
    /// Count mode: no more grants follow; finish when the grants are used.
    NoMoreGrants,
    /// Count mode: after all, more grants follow (another agent was lost
    /// after this one was told "no more grants"); wait for them.
    Reopen,
    /// Take over these connections, and this rate when the run has one
    /// (duration mode; count mode with a rate).
    Takeover { add_connections: u32, new_rate: Option<f64> },
}

/// Renewals to send, in order, by agent index.
pub type Renewals = Vec<(usize, Renewal)>;

/// Every agent's slot, in the order given.
#[derive(Debug)]
pub struct Ledger {
    slots: Vec<AgentSlot>,
    /// Count mode (`-n`): the quota is granted bit by bit.
    count_mode: bool,
}

impl Ledger {
    /// Slots for agents planned as `outcomes`, none running yet.
    pub fn new(outcomes: Vec<AgentOutcome>, count_mode: bool, now: Instant) -> Ledger {
        let slots = outcomes
            .into_iter()
            .map(|outcome| AgentSlot {
                running: false,
                last_event: now,
                quota: outcome.quota.unwrap_or(0),
                granted: 0,
                taken: 0,
                closed: false,
                link: Link::default(),
                outcome,
            })
            .collect();
        Ledger { slots, count_mode }
    }

    /// Agent `i`'s link as measured at connect (a zero link until set).
    pub fn set_link(&mut self, i: usize, link: Link) {
        self.slots[i].link = link;
    }

    /// Every agent's slot.
    pub fn slots(&self) -> &[AgentSlot] {
        &self.slots
    }

    /// Whether any agent's stream is still open.
    pub fn any_running(&self) -> bool {
        self.slots.iter().any(|s| s.running)
    }

    /// Count mode: the grant agent `i` starts with (the rest follows at its
    /// pace), or `None` when it has no share and must not start.
    pub fn first_grant(&mut self, i: usize) -> Option<u64> {
        let s = &mut self.slots[i];
        if s.quota == 0 {
            return None;
        }
        // The open model's pace is known before the first snapshot: its rate.
        let by_rate = s.outcome.rate.map_or(0, |r| (r * s.link.grant_ahead().as_secs_f64()).ceil() as u64);
        s.granted = s.quota.min((u64::from(s.outcome.connections) * MIN_GRANT_PER_CONNECTION).max(by_rate));
        Some(s.granted)
    }

    /// Agent `i`'s stream is open; its workers begin at `start` (silence is
    /// counted from then).
    pub fn started(&mut self, i: usize, start: Instant) {
        self.slots[i].running = true;
        self.slots[i].last_event = start;
    }

    /// Agent `i` sent something at `now`; `false` when it was already given up on.
    pub fn heard_from(&mut self, i: usize, now: Instant) -> bool {
        let s = &mut self.slots[i];
        if s.running {
            s.last_event = s.last_event.max(now);
        }
        s.running
    }

    /// Agent `i`'s workers began: with `threads`, `skew_us` late.
    pub fn began(&mut self, i: usize, threads: u32, skew_us: i64, io: Option<String>) {
        let o = &mut self.slots[i].outcome;
        o.threads = threads;
        o.io = io;
        o.start_skew_us = Some(skew_us);
    }

    /// Agent `i` reported `totals` up to `elapsed`, having taken `taken`
    /// requests from its grants; tops up its grants unless `cancelled`.
    pub fn reported(&mut self, i: usize, totals: &Delta, elapsed: Duration, taken: u64, cancelled: bool) -> Renewals {
        self.add(i, totals, elapsed);
        let mut out = Vec::new();
        if self.count_mode {
            let s = &mut self.slots[i];
            s.taken = s.taken.max(taken);
            self.grant(i, cancelled, &mut out);
        }
        out
    }

    /// Agent `i` sent its final snapshot; returns how its part ended, and in
    /// count mode what to tell the others and the requests nobody can take
    /// when it finished short of its share (a takeover reached it after it
    /// had been told "no more grants" and had already finished).
    pub fn finished(
        &mut self,
        i: usize,
        totals: &Delta,
        elapsed: Duration,
        cancelled: bool,
    ) -> (AgentState, Renewals, u64) {
        self.add(i, totals, elapsed);
        let s = &mut self.slots[i];
        s.running = false;
        s.outcome.state = if cancelled { AgentState::Cancelled } else { AgentState::Done };
        let state = s.outcome.state;
        let reported = s.outcome.totals.requests;
        if !self.count_mode || cancelled || s.quota <= reported {
            return (state, Vec::new(), 0);
        }
        let short = s.quota - reported;
        s.quota = reported;
        // It finished: nothing of it can still be under way.
        s.outcome.unaccounted_max = Some(0);
        let (out, unassigned) = self.hand_over(short);
        self.slots[i].outcome.reassigned = short - unassigned;
        (state, out, unassigned)
    }

    fn add(&mut self, i: usize, totals: &Delta, elapsed: Duration) {
        let o = &mut self.slots[i].outcome;
        // Its counts; its latencies only as a count (see `AgentOutcome::totals`).
        o.totals.add(&totals.counts);
        o.responses += totals.latencies.count();
        o.elapsed = o.elapsed.max(elapsed);
    }

    /// Running agents that have sent nothing for longer than their link's
    /// [`Link::lost_after`], at `now`, with how long.
    pub fn silent(&self, now: Instant) -> Vec<(usize, Duration)> {
        (self.slots.iter().enumerate())
            .map(|(i, s)| (i, s, now.saturating_duration_since(s.last_event)))
            .filter(|(_, s, quiet)| s.running && *quiet > s.link.lost_after())
            .map(|(i, _, quiet)| (i, quiet))
            .collect()
    }

    /// Count mode: tops up agent `i`'s grants to [`Link::grant_ahead`] of its
    /// pace (its measured pace, or its rate if that is more) once less than
    /// three quarters of that is left, and once every running agent has been
    /// granted and has taken its whole share, tells them all that no more
    /// grants follow.
    fn grant(&mut self, i: usize, cancelled: bool, out: &mut Renewals) {
        let s = &mut self.slots[i];
        if !s.running || s.closed || cancelled {
            return;
        }
        let elapsed = s.outcome.elapsed.as_secs_f64().max(0.25);
        let pace = (s.taken as f64 / elapsed).max(s.outcome.rate.unwrap_or(0.0));
        let min_ahead = u64::from(s.outcome.connections) * MIN_GRANT_PER_CONNECTION;
        let ahead_wanted = min_ahead.max((pace * s.link.grant_ahead().as_secs_f64()) as u64);
        let ahead = s.granted.saturating_sub(s.taken);
        if ahead < ahead_wanted / 4 * 3 && s.granted < s.quota {
            let add = (s.quota - s.granted).min(ahead_wanted - ahead);
            s.granted += add;
            out.push((i, Renewal::Grant(add)));
        }
        // "No more grants" goes out only when nobody can need a re-lease any
        // more: every running agent has its whole share granted and taken.
        let running = || self.slots.iter().filter(|s| s.running);
        if running().all(|s| s.granted >= s.quota && s.taken >= s.granted) {
            for (j, s) in self.slots.iter_mut().enumerate().filter(|(_, s)| s.running && !s.closed) {
                s.closed = true;
                out.push((j, Renewal::NoMoreGrants));
            }
        }
    }

    /// Marks agent `i` lost for `why` at `now`: keeps what it reported, bounds what it
    /// may have sent unseen, and hands its unfinished work to the survivors
    /// (every running agent: one already told "no more grants" is reopened).
    /// Returns what to tell them and the requests (count mode) no survivor
    /// could take.
    pub fn lose(&mut self, i: usize, why: String, now: Instant) -> (Renewals, u64) {
        let lost = &mut self.slots[i];
        lost.running = false;
        let reported = lost.outcome.totals.requests;
        lost.outcome.state = AgentState::Lost;
        lost.outcome.error = Some(why);
        let (lost_conns, lost_rate) = (lost.outcome.connections, lost.outcome.rate);
        // A rate bounds what it can have sent since its last snapshot: at most
        // its rate over that time plus the lease it could still run on.
        let by_rate = lost_rate.map(|rate| {
            let unseen = now.saturating_duration_since(lost.last_event) + lost.link.lease();
            (rate * unseen.as_secs_f64()).ceil() as u64
        });
        let mut out = self.move_connections_and_rate(lost_conns, lost_rate);
        if !self.count_mode {
            self.slots[i].outcome.unaccounted_max = by_rate;
            return (out, 0);
        }
        let lost = &mut self.slots[i];
        lost.outcome.unaccounted_max = Some(lost.granted.saturating_sub(reported));
        let unfinished = lost.quota.saturating_sub(reported);
        lost.quota = reported;
        let (grants, unassigned) = self.hand_over(unfinished);
        self.slots[i].outcome.reassigned = unfinished - unassigned;
        out.extend(grants);
        (out, unassigned)
    }

    /// Every running agent, the survivors of a loss, with their connections
    /// as weights.
    fn survivors(&self) -> (Vec<usize>, Vec<u64>) {
        let survivors: Vec<usize> = (0..self.slots.len()).filter(|&j| self.slots[j].running).collect();
        let weights = survivors.iter().map(|&j| u64::from(self.slots[j].outcome.connections)).collect();
        (survivors, weights)
    }

    /// Count mode: moves `unfinished` requests of some agent's share to the
    /// survivors in proportion to their connections, reopening those told
    /// "no more grants". Returns what to tell them, and what nobody can take.
    fn hand_over(&mut self, unfinished: u64) -> (Renewals, u64) {
        let (survivors, weights) = self.survivors();
        let mut out = Vec::new();
        if survivors.is_empty() || unfinished == 0 {
            return (out, if survivors.is_empty() { unfinished } else { 0 });
        }
        for (&j, add) in survivors.iter().zip(split(unfinished, &weights, 0)) {
            let s = &mut self.slots[j];
            if add == 0 {
                continue;
            }
            s.quota += add;
            if let Some(q) = s.outcome.quota.as_mut() {
                *q += add;
            }
            if s.closed {
                s.closed = false;
                out.push((j, Renewal::Reopen));
            }
            // A takeover is granted even after a cancel, as it always was:
            // the agents are stopping anyway, so the grant is never used.
            self.grant(j, false, &mut out);
        }
        (out, 0)
    }

    /// Moves a lost agent's rate (when the run has one) and, in duration
    /// mode or with a rate, its connections to the survivors, in proportion
    /// to their connections. A closed-model count run moves requests only.
    fn move_connections_and_rate(&mut self, lost_conns: u32, lost_rate: Option<f64>) -> Renewals {
        let mut out = Vec::new();
        if self.count_mode && lost_rate.is_none() {
            return out;
        }
        let (survivors, weights) = self.survivors();
        let conn_shares = split(u64::from(lost_conns), &weights, 0);
        let total_weight: u64 = weights.iter().sum::<u64>().max(1);
        for (k, &j) in survivors.iter().enumerate() {
            let o = &mut self.slots[j].outcome;
            let add_connections = conn_shares[k] as u32;
            let mut new_rate = None;
            if let (Some(extra), Some(mine)) = (lost_rate, o.rate) {
                let rate = mine + extra * weights[k] as f64 / total_weight as f64;
                o.rate = Some(rate);
                new_rate = Some(rate);
            }
            o.connections += add_connections;
            out.push((j, Renewal::Takeover { add_connections, new_rate }));
        }
        out
    }

    /// Every agent's outcome, in the order given.
    pub fn into_outcomes(self) -> Vec<AgentOutcome> {
        self.slots.into_iter().map(|s| s.outcome).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::link::LOST_AFTER_FLOOR;
    use super::*;

    fn outcome(connections: u32, quota: Option<u64>, rate: Option<f64>) -> AgentOutcome {
        let mut o = AgentOutcome::unreachable("a".into(), String::new());
        o.state = AgentState::Idle;
        o.error = None;
        o.connections = connections;
        o.quota = quota;
        o.rate = rate;
        o
    }

    /// The instant every test starts at.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn totals(requests: u64) -> Delta {
        volley_stats::Totals { requests, ..Default::default() }.into()
    }

    /// A count-mode ledger of agents with these (connections, quota), all started.
    fn count(agents: &[(u32, u64)]) -> Ledger {
        let mut l = Ledger::new(agents.iter().map(|&(c, q)| outcome(c, Some(q), None)).collect(), true, t0());
        for i in 0..agents.len() {
            l.first_grant(i);
            l.started(i, t0());
        }
        l
    }

    #[test]
    fn the_first_grant_is_a_hundred_per_connection_within_the_share() {
        let mut l = Ledger::new(vec![outcome(2, Some(1000), None), outcome(2, Some(150), None)], true, t0());
        assert_eq!(l.first_grant(0), Some(200));
        assert_eq!(l.first_grant(1), Some(150));
        let mut idle = Ledger::new(vec![outcome(1, Some(0), None)], true, t0());
        assert_eq!(idle.first_grant(0), None, "an agent with no share does not start");
    }

    #[test]
    fn grants_top_up_to_two_seconds_of_pace_once_a_quarter_is_used() {
        let mut l = count(&[(1, 10_000)]);
        // 60 of 100 taken: 40 ahead is less than three quarters of the 100 wanted.
        let r = l.reported(0, &totals(60), Duration::from_secs(1), 60, false);
        // Pace 60/s wants max(100, 120) = 120 ahead; 40 are, so 80 more.
        assert_eq!(r, vec![(0, Renewal::Grant(80))]);
        assert_eq!(l.slots()[0].granted, 180);
        // At 80/s, 160 are wanted ahead; 100 are, less than 120: 60 more.
        assert_eq!(l.reported(0, &totals(20), Duration::from_secs(1), 80, false), vec![(0, Renewal::Grant(60))]);
        // At 85/s, 170 are wanted; 155 are, more than 127: nothing.
        assert_eq!(l.reported(0, &totals(5), Duration::from_secs(1), 85, false), vec![]);
    }

    #[test]
    fn grants_run_ahead_by_the_links_round_trips_and_the_rate() {
        // 1,000 req/s over a 300 ms round trip: 2 s + 4 × 300 ms of it ahead.
        let mut l = Ledger::new(vec![outcome(5, Some(10_000), Some(1000.0))], true, t0());
        l.set_link(0, Link { rtt: Duration::from_millis(300), jitter: Duration::ZERO });
        assert_eq!(l.first_grant(0), Some(3200), "the first grant already covers the rate");
        l.started(0, t0());
        // Slower than its rate so far (the target is slow): the rate still
        // sizes the grant, so the schedule never waits for one.
        let r = l.reported(0, &totals(900), Duration::from_secs(1), 1000, false);
        assert_eq!(r, vec![(0, Renewal::Grant(1000))]);
        // A closed-model agent's grant follows its measured pace and link.
        let mut l = Ledger::new(vec![outcome(1, Some(100_000), None)], true, t0());
        l.set_link(0, Link { rtt: Duration::from_millis(500), jitter: Duration::ZERO });
        l.first_grant(0);
        l.started(0, t0());
        // 100 taken in 0.1 s (counted as 0.25 s): 400/s × 4 s = 1,600 ahead.
        let r = l.reported(0, &totals(100), Duration::from_millis(100), 100, false);
        assert_eq!(r, vec![(0, Renewal::Grant(1600))]);
    }

    #[test]
    fn no_grant_after_a_cancel_or_beyond_the_share() {
        let mut l = count(&[(1, 10_000)]);
        assert_eq!(l.reported(0, &totals(100), Duration::from_secs(1), 100, true), vec![]);
        let mut l = count(&[(1, 130)]);
        assert_eq!(l.reported(0, &totals(100), Duration::from_secs(1), 100, false), vec![(0, Renewal::Grant(30))]);
        assert_eq!(l.slots()[0].granted, 130, "never more than the share");
    }

    #[test]
    fn no_more_grants_only_when_every_running_agent_has_taken_its_share() {
        let mut l = count(&[(1, 100), (1, 300)]);
        // Agent 0 has taken its whole share, agent 1 has not: nobody is told.
        assert_eq!(l.reported(0, &totals(100), Duration::from_secs(1), 100, false), vec![]);
        let r = l.reported(1, &totals(100), Duration::from_secs(1), 100, false);
        assert_eq!(r, vec![(1, Renewal::Grant(200))]);
        // Now agent 1 has taken all of its share: both are told, once.
        let r = l.reported(1, &totals(200), Duration::from_secs(2), 300, false);
        assert_eq!(r, vec![(0, Renewal::NoMoreGrants), (1, Renewal::NoMoreGrants)]);
        assert_eq!(l.reported(0, &totals(0), Duration::from_secs(2), 100, false), vec![]);
    }

    #[test]
    fn a_lost_agents_unfinished_share_moves_to_survivors_by_connections() {
        let mut l = count(&[(1, 1000), (1, 1000), (3, 3000)]);
        // 20 of its first 100 taken: 80 ahead is enough, no top-up.
        assert_eq!(l.reported(0, &totals(20), Duration::from_secs(1), 20, false), vec![]);
        let (renewals, unassigned) = l.lose(0, "gone".into(), t0());
        assert_eq!(unassigned, 0);
        let o = &l.slots()[0].outcome;
        assert_eq!(o.state, AgentState::Lost);
        assert_eq!(o.error.as_deref(), Some("gone"));
        // Granted 100, reported 20: up to 80 may have gone out unseen.
        assert_eq!(o.unaccounted_max, Some(80));
        assert_eq!(o.reassigned, 980);
        assert_eq!(l.slots()[0].quota, 20);
        // 980 split 1:3 over the survivors.
        assert_eq!((l.slots()[1].quota, l.slots()[2].quota), (1245, 3735));
        assert_eq!((l.slots()[1].outcome.quota, l.slots()[2].outcome.quota), (Some(1245), Some(3735)));
        // Every request is still someone's.
        assert_eq!(l.slots().iter().map(|s| s.quota).sum::<u64>(), 5000);
        // Neither survivor has reported yet, so neither is topped up.
        assert_eq!(renewals, vec![]);
    }

    #[test]
    fn when_every_agent_is_lost_the_unfinished_share_is_unassigned() {
        let mut l = count(&[(1, 500), (1, 500)]);
        l.reported(1, &totals(100), Duration::from_secs(1), 100, false);
        assert_eq!(l.lose(0, "a".into(), t0()).1, 0);
        let (_, unassigned) = l.lose(1, "b".into(), t0());
        assert_eq!(unassigned, 1000 - 100);
        assert!(!l.any_running());
        assert_eq!(l.slots()[1].outcome.reassigned, 0, "nothing was moved to anyone");
    }

    #[test]
    fn agents_told_no_more_grants_are_reopened_to_take_over() {
        let mut l = count(&[(1, 100), (1, 100)]);
        l.reported(0, &totals(100), Duration::from_secs(1), 100, false);
        l.reported(1, &totals(50), Duration::from_secs(1), 100, false);
        assert!(l.slots().iter().all(|s| s.closed));
        let (renewals, unassigned) = l.lose(1, "gone".into(), t0());
        assert_eq!(unassigned, 0, "agent 0 still runs: it takes the 50 over");
        assert_eq!(renewals, vec![(0, Renewal::Reopen), (0, Renewal::Grant(50))]);
        assert_eq!(l.slots()[1].outcome.reassigned, 50);
        // Once it has taken them, it is told again that no more follow.
        let r = l.reported(0, &totals(0), Duration::from_secs(2), 150, false);
        assert_eq!(r, vec![(0, Renewal::NoMoreGrants)]);
    }

    #[test]
    fn an_agent_that_finished_before_its_takeover_passes_it_on() {
        let mut l = count(&[(1, 100), (1, 100), (1, 100)]);
        for i in 0..3 {
            l.reported(i, &totals(50), Duration::from_secs(1), 100, false);
        }
        assert!(l.slots().iter().all(|s| s.closed));
        // Agent 2 is lost; agents 0 and 1 are reopened with 25 more each…
        let (_, unassigned) = l.lose(2, "gone".into(), t0());
        assert_eq!(unassigned, 0);
        // …but agent 0 had finished its 100 already: its 25 go to agent 1.
        let (state, renewals, unassigned) = l.finished(0, &totals(50), Duration::from_secs(2), false);
        assert_eq!((state, unassigned), (AgentState::Done, 0));
        assert_eq!(l.slots()[0].outcome.reassigned, 25);
        assert_eq!(l.slots()[1].quota, 150);
        assert!(renewals.iter().all(|(j, _)| *j == 1), "{renewals:?}");
        assert_eq!(l.slots().iter().map(|s| s.quota).sum::<u64>(), 300 - 50 + 50);
        // The last one finishing short leaves the rest unassigned.
        let (_, _, unassigned) = l.finished(1, &totals(60), Duration::from_secs(3), false);
        assert_eq!(unassigned, 150 - 110);
    }

    #[test]
    fn count_mode_survivors_take_over_the_rate_too() {
        let mut l = Ledger::new(
            vec![outcome(5, Some(10_000), Some(1000.0)), outcome(5, Some(10_000), Some(1000.0))],
            true,
            t0(),
        );
        for i in 0..2 {
            l.first_grant(i);
            l.started(i, t0());
        }
        let (renewals, unassigned) = l.lose(0, "gone".into(), t0());
        assert_eq!(unassigned, 0);
        assert_eq!(renewals[0], (1, Renewal::Takeover { add_connections: 5, new_rate: Some(2000.0) }));
        assert_eq!(l.slots()[1].outcome.rate, Some(2000.0));
        assert_eq!(l.slots()[1].quota, 20_000);
    }

    #[test]
    fn a_silent_agent_is_found_after_lost_after() {
        let mut l = count(&[(1, 100), (1, 100)]);
        let at = t0() + LOST_AFTER_FLOOR;
        assert_eq!(l.silent(at), vec![], "exactly LOST_AFTER_FLOOR is not yet lost");
        assert!(l.heard_from(1, at));
        let later = at + Duration::from_millis(1);
        assert_eq!(l.silent(later), vec![(0, LOST_AFTER_FLOOR + Duration::from_millis(1))]);
        l.lose(0, "silent".into(), later);
        assert!(!l.heard_from(0, later), "a lost agent is not heard from again");
        assert_eq!(l.silent(later), vec![]);
    }

    #[test]
    fn silence_is_judged_by_each_agents_own_link() {
        let mut l = count(&[(1, 100), (1, 100)]);
        // Agent 1 is 600 ms away (±100 ms): lost only after 1 s + 6 × 800 ms.
        l.set_link(1, Link { rtt: Duration::from_millis(600), jitter: Duration::from_millis(100) });
        let at = t0() + Duration::from_millis(5000);
        assert_eq!(l.silent(at), vec![(0, Duration::from_millis(5000))]);
        assert_eq!(
            l.silent(t0() + Duration::from_millis(5801)),
            vec![(0, Duration::from_millis(5801)), (1, Duration::from_millis(5801))]
        );
        // Silence counts from the start instant, never before it.
        l.started(0, t0() + Duration::from_secs(10));
        assert!(l.silent(t0() + Duration::from_secs(11)).iter().all(|(i, _)| *i != 0));
    }

    #[test]
    fn duration_mode_survivors_take_over_connections_and_rate() {
        let mut l = Ledger::new(
            vec![outcome(4, None, Some(400.0)), outcome(1, None, Some(100.0)), outcome(3, None, Some(300.0))],
            false,
            t0(),
        );
        (0..3).for_each(|i| l.started(i, t0()));
        let (renewals, unassigned) = l.lose(0, "gone".into(), t0() + Duration::from_secs(1));
        assert_eq!(unassigned, 0);
        // Silent for 1 s plus the 3.2 s lease it could still run on, at 400/s.
        assert_eq!(l.slots()[0].outcome.unaccounted_max, Some(1680));
        assert_eq!(
            renewals,
            vec![
                (1, Renewal::Takeover { add_connections: 1, new_rate: Some(200.0) }),
                (2, Renewal::Takeover { add_connections: 3, new_rate: Some(600.0) }),
            ]
        );
        assert_eq!((l.slots()[1].outcome.connections, l.slots()[2].outcome.connections), (2, 6));
        let outcomes = l.into_outcomes();
        assert_eq!(outcomes.iter().map(|o| o.rate).collect::<Vec<_>>(), vec![Some(400.0), Some(200.0), Some(600.0)]);
    }

    #[test]
    fn a_finished_agent_is_done_or_cancelled() {
        let mut l = count(&[(1, 100), (1, 100)]);
        assert_eq!(l.finished(0, &totals(100), Duration::from_secs(1), false).0, AgentState::Done);
        assert_eq!(l.finished(1, &totals(30), Duration::from_secs(2), true), (AgentState::Cancelled, vec![], 0));
        assert_eq!(l.slots()[1].outcome.totals.requests, 30);
        assert_eq!(l.slots()[1].outcome.elapsed, Duration::from_secs(2));
        assert!(!l.any_running());
    }
}
