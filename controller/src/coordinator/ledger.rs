//! The coordinator's accounting while a run goes: count-mode grants, and who
//! takes over a lost agent's work. Pure and deterministic: it decides what to
//! tell which agent and the merge loop sends it. Time comes in as `now`
//! arguments, never from a clock, so tests step it exactly.
//!
//! The grant protocol itself (who grants what when, what "no more grants"
//! means, what happens on loss) is described once, next to `RenewRequest` in
//! `proto/proto/volley.proto`; this is the controller's half of it.

use std::time::{Duration, Instant};

use volley_stats::Totals;

use super::{LEASE, LOST_AFTER};
use crate::outcome::{AgentOutcome, AgentState};
use crate::split::split;

/// Count mode: how far ahead of an agent's pace grants run.
const GRANT_AHEAD: Duration = Duration::from_secs(2);
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
    /// Count mode: told that no more grants follow.
    pub closed: bool,
}

/// What the ledger wants an agent told (by a `RenewRequest`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Renewal {
    /// Count mode: this many more requests may be sent.
    Grant(u64),
    /// Count mode: no more grants follow; finish when the grants are used.
    NoMoreGrants,
    /// Duration mode: take over these connections, and this rate when the
    /// run has one.
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
                outcome,
            })
            .collect();
        Ledger { slots, count_mode }
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
        s.granted = s.quota.min(u64::from(s.outcome.connections) * MIN_GRANT_PER_CONNECTION);
        Some(s.granted)
    }

    /// Agent `i`'s stream is open at `now`.
    pub fn started(&mut self, i: usize, now: Instant) {
        self.slots[i].running = true;
        self.slots[i].last_event = now;
    }

    /// Agent `i` sent something at `now`; `false` when it was already given up on.
    pub fn heard_from(&mut self, i: usize, now: Instant) -> bool {
        let s = &mut self.slots[i];
        if s.running {
            s.last_event = now;
        }
        s.running
    }

    /// Agent `i`'s workers began: with `threads`, `skew_us` late.
    pub fn began(&mut self, i: usize, threads: u32, skew_us: i64) {
        let o = &mut self.slots[i].outcome;
        o.threads = threads;
        o.start_skew_us = Some(skew_us);
    }

    /// Agent `i` reported `totals` up to `elapsed`, having taken `taken`
    /// requests from its grants; tops up its grants unless `cancelled`.
    pub fn reported(&mut self, i: usize, totals: &Totals, elapsed: Duration, taken: u64, cancelled: bool) -> Renewals {
        self.add(i, totals, elapsed);
        let mut out = Vec::new();
        if self.count_mode {
            let s = &mut self.slots[i];
            s.taken = s.taken.max(taken);
            self.grant(i, cancelled, &mut out);
        }
        out
    }

    /// Agent `i` sent its final snapshot; returns how its part ended.
    pub fn finished(&mut self, i: usize, totals: &Totals, elapsed: Duration, cancelled: bool) -> AgentState {
        self.add(i, totals, elapsed);
        let s = &mut self.slots[i];
        s.running = false;
        s.outcome.state = if cancelled { AgentState::Cancelled } else { AgentState::Done };
        s.outcome.state
    }

    fn add(&mut self, i: usize, totals: &Totals, elapsed: Duration) {
        let o = &mut self.slots[i].outcome;
        o.totals.add(totals);
        o.elapsed = o.elapsed.max(elapsed);
    }

    /// Running agents that have sent nothing for longer than [`LOST_AFTER`],
    /// at `now`, with how long.
    pub fn silent(&self, now: Instant) -> Vec<(usize, Duration)> {
        (self.slots.iter().enumerate())
            .filter(|(_, s)| s.running && now - s.last_event > LOST_AFTER)
            .map(|(i, s)| (i, now - s.last_event))
            .collect()
    }

    /// Count mode: tops up agent `i`'s grants to [`GRANT_AHEAD`] of its pace,
    /// and once every running agent has been granted and has taken its whole
    /// share, tells them all that no more grants follow.
    fn grant(&mut self, i: usize, cancelled: bool, out: &mut Renewals) {
        let s = &mut self.slots[i];
        if !s.running || s.closed || cancelled {
            return;
        }
        let elapsed = s.outcome.elapsed.as_secs_f64().max(0.25);
        let pace = s.taken as f64 / elapsed;
        let min_ahead = u64::from(s.outcome.connections) * MIN_GRANT_PER_CONNECTION;
        let ahead_wanted = min_ahead.max((pace * GRANT_AHEAD.as_secs_f64()) as u64);
        let ahead = s.granted.saturating_sub(s.taken);
        if ahead < ahead_wanted / 2 && s.granted < s.quota {
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
    /// (the running agents not yet told "no more grants"). Returns what to
    /// tell them and the requests (count mode) no survivor could take.
    pub fn lose(&mut self, i: usize, why: String, now: Instant) -> (Renewals, u64) {
        self.slots[i].running = false;
        let survivors: Vec<usize> =
            (0..self.slots.len()).filter(|&j| self.slots[j].running && !self.slots[j].closed).collect();
        let weights: Vec<u64> = survivors.iter().map(|&j| u64::from(self.slots[j].outcome.connections)).collect();
        let lost = &mut self.slots[i];
        let reported = lost.outcome.totals.requests;
        lost.outcome.state = AgentState::Lost;
        lost.outcome.error = Some(why);
        let mut out = Vec::new();
        if self.count_mode {
            lost.outcome.unaccounted_max = Some(lost.granted.saturating_sub(reported));
            let unfinished = lost.quota.saturating_sub(reported);
            lost.quota = reported;
            lost.outcome.reassigned = unfinished;
            if survivors.is_empty() {
                return (out, unfinished);
            }
            for (&j, add) in survivors.iter().zip(split(unfinished, &weights, 0)) {
                let s = &mut self.slots[j];
                s.quota += add;
                if let Some(q) = s.outcome.quota.as_mut() {
                    *q += add;
                }
                // A takeover is granted even after a cancel, as it always was:
                // the agents are stopping anyway, so the grant is never used.
                self.grant(j, false, &mut out);
            }
        } else {
            // A rate bounds what it can have sent since its last snapshot: at
            // most its rate over that time plus the lease it could still run on.
            if let Some(rate) = lost.outcome.rate {
                let unseen = now - lost.last_event + LEASE;
                lost.outcome.unaccounted_max = Some((rate * unseen.as_secs_f64()).ceil() as u64);
            }
            let (lost_conns, lost_rate) = (lost.outcome.connections, lost.outcome.rate);
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
        }
        (out, 0)
    }

    /// Every agent's outcome, in the order given.
    pub fn into_outcomes(self) -> Vec<AgentOutcome> {
        self.slots.into_iter().map(|s| s.outcome).collect()
    }
}

#[cfg(test)]
mod tests {
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

    fn totals(requests: u64) -> Totals {
        Totals { requests, ..Totals::default() }
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
    fn grants_top_up_to_two_seconds_of_pace_once_half_is_used() {
        let mut l = count(&[(1, 10_000)]);
        // 60 of 100 taken: 40 ahead is less than half the 100 wanted.
        let r = l.reported(0, &totals(60), Duration::from_secs(1), 60, false);
        // Pace 60/s wants max(100, 120) = 120 ahead; 40 are, so 80 more.
        assert_eq!(r, vec![(0, Renewal::Grant(80))]);
        assert_eq!(l.slots()[0].granted, 180);
        // At 80/s, 160 are wanted ahead; 100 are, more than half: nothing.
        assert_eq!(l.reported(0, &totals(20), Duration::from_secs(1), 80, false), vec![]);
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
        // 50 of its first 100 taken: half ahead is enough, no top-up.
        assert_eq!(l.reported(0, &totals(40), Duration::from_secs(1), 50, false), vec![]);
        let (renewals, unassigned) = l.lose(0, "gone".into(), t0());
        assert_eq!(unassigned, 0);
        let o = &l.slots()[0].outcome;
        assert_eq!(o.state, AgentState::Lost);
        assert_eq!(o.error.as_deref(), Some("gone"));
        // Granted 100, reported 40: up to 60 may have gone out unseen.
        assert_eq!(o.unaccounted_max, Some(60));
        assert_eq!(o.reassigned, 960);
        assert_eq!(l.slots()[0].quota, 40);
        // 960 split 1:3 over the survivors.
        assert_eq!((l.slots()[1].quota, l.slots()[2].quota), (1240, 3720));
        assert_eq!((l.slots()[1].outcome.quota, l.slots()[2].outcome.quota), (Some(1240), Some(3720)));
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
    }

    #[test]
    fn agents_told_no_more_grants_take_over_nothing() {
        let mut l = count(&[(1, 100), (1, 100)]);
        l.reported(0, &totals(100), Duration::from_secs(1), 100, false);
        l.reported(1, &totals(50), Duration::from_secs(1), 100, false);
        assert!(l.slots().iter().all(|s| s.closed));
        let (_, unassigned) = l.lose(1, "gone".into(), t0());
        assert_eq!(unassigned, 50, "agent 0 was told to finish: it cannot take more");
    }

    #[test]
    fn a_silent_agent_is_found_after_lost_after() {
        let mut l = count(&[(1, 100), (1, 100)]);
        let at = t0() + LOST_AFTER;
        assert_eq!(l.silent(at), vec![], "exactly LOST_AFTER is not yet lost");
        assert!(l.heard_from(1, at));
        let later = at + Duration::from_millis(1);
        assert_eq!(l.silent(later), vec![(0, LOST_AFTER + Duration::from_millis(1))]);
        l.lose(0, "silent".into(), later);
        assert!(!l.heard_from(0, later), "a lost agent is not heard from again");
        assert_eq!(l.silent(later), vec![]);
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
        // Silent for 1 s plus the 3 s lease it could still run on, at 400/s.
        assert_eq!(l.slots()[0].outcome.unaccounted_max, Some(1600));
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
        assert_eq!(l.finished(0, &totals(100), Duration::from_secs(1), false), AgentState::Done);
        assert_eq!(l.finished(1, &totals(30), Duration::from_secs(2), true), AgentState::Cancelled);
        assert_eq!(l.slots()[1].outcome.totals.requests, 30);
        assert_eq!(l.slots()[1].outcome.elapsed, Duration::from_secs(2));
        assert!(!l.any_running());
    }
}
