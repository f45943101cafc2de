//! The merge loop: reads every agent's event stream, merges snapshot deltas
//! per agent and overall, renews leases, notices lost agents and passes on
//! a cancel, until every stream has ended.

use std::time::{Duration, Instant};

use super::RENEW_EVERY;
use super::connect::Client;
use super::connect::status_line;
use super::delta::Delta;
use super::ledger::{Ledger, Renewal, Renewals};
use crate::outcome::{AgentOutcome, AgentState, Observer, Outcome, SharedTotals, lock_totals};
use futures::StreamExt;
use tokio::sync::mpsc;
use volley_proto::{CancelRequest, RenewRequest, run_event};

/// Why the bound of what lost agents sent unseen is unknown.
const UNKNOWN_BOUND: &str = "a lost agent of a closed-model duration run may have gone on sending at the target's pace \
                             until its lease ran out";

/// How often the loop looks for agents that have gone silent.
const WATCHDOG_EVERY: Duration = Duration::from_millis(100);

/// An event from one agent's stream.
enum Event {
    Started {
        threads: u32,
        skew_us: i64,
        io: Option<String>,
    },
    Delta {
        delta: Delta,
        elapsed: Duration,
        taken: u64,
        in_flight: u64,
    },
    Finished {
        delta: Delta,
        elapsed: Duration,
    },
    Broken(String),
    /// The agent ended its stream with an internal error (a worker panicked):
    /// the run fails, whatever the survivors do.
    Failed(String),
}

/// The merge loop's link to one agent.
struct Link {
    client: Client,
    /// Feeds its renewer while its stream is open; dropping it stops the renewals.
    renew: Option<mpsc::UnboundedSender<RenewRequest>>,
}

/// The merge loop's state.
pub struct Merge<'a> {
    run_id: String,
    ledger: Ledger,
    links: Vec<Link>,
    observer: &'a mut dyn Observer,
    /// Events with the agent's index and the instant they arrived.
    events: mpsc::UnboundedReceiver<(usize, Instant, Event)>,
    /// The run's merged total, shared with observers that read it live.
    total: SharedTotals,
    cancelled: bool,
    /// Count mode: requests no agent was left to send.
    unassigned: u64,
    /// The first agent failure (a worker panicked), which fails the run.
    failed: Option<String>,
}

impl<'a> Merge<'a> {
    /// Starts reading `streams` (agent index, stream) of agents that accepted
    /// their plans, sends them the start instant `start` (Unix microseconds,
    /// and the same on this host's monotonic clock) and renews their leases;
    /// `clients` are every agent's, in the ledger's order.
    pub fn start(
        run_id: String,
        mut ledger: Ledger,
        clients: Vec<Client>,
        streams: Vec<(usize, tonic::Streaming<volley_proto::RunEvent>)>,
        start: (u64, Instant),
        observer: &'a mut dyn Observer,
    ) -> Merge<'a> {
        let mut links: Vec<Link> = clients.into_iter().map(|client| Link { client, renew: None }).collect();
        let (tx, events) = mpsc::unbounded_channel();
        for (i, stream) in streams {
            ledger.started(i, start.1);
            let (renew_tx, renew_rx) = mpsc::unbounded_channel();
            // The start goes first: the renewer sends queued requests in order.
            let go = RenewRequest { run_id: run_id.clone(), start_at_unix_us: start.0, ..Default::default() };
            let _ = renew_tx.send(go);
            links[i].renew = Some(renew_tx);
            tokio::spawn(renewer(links[i].client.clone(), run_id.clone(), renew_rx));
            tokio::spawn(forward(i, stream, tx.clone()));
        }
        let total = SharedTotals::default();
        observer.run_id(&run_id);
        observer.running_total(&total);
        observer.started(&ledger.slots().iter().map(|s| s.outcome.clone()).collect::<Vec<_>>());
        Merge { run_id, ledger, links, observer, events, total, cancelled: false, unassigned: 0, failed: None }
    }

    /// Merges until every stream has ended; when `cancel` completes first,
    /// cancels the agents and goes on merging what they still report.
    pub async fn run(&mut self, cancel: impl std::future::Future<Output = ()>) {
        let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
        tokio::pin!(cancel);
        while self.ledger.any_running() {
            tokio::select! {
                ev = self.events.recv() => {
                    let Some((i, at, ev)) = ev else { break };
                    self.on_event(i, at, ev);
                }
                _ = watchdog.tick() => self.on_watchdog(),
                _ = &mut cancel, if !self.cancelled => self.on_cancel(),
            }
        }
    }

    fn on_event(&mut self, i: usize, at: Instant, ev: Event) {
        // When it arrived, not when this loop got to it: with many agents a
        // backlog here is this process's delay, not the agent's silence.
        if !self.ledger.heard_from(i, at) {
            return; // already given up on
        }
        match ev {
            Event::Started { threads, skew_us, io } => self.ledger.began(i, threads, skew_us, io),
            Event::Delta { delta, elapsed, taken, in_flight } => {
                delta.add_to(&mut lock_totals(&self.total));
                self.observer.in_flight(i, in_flight);
                let renewals = self.ledger.reported(i, &delta, elapsed, taken, self.cancelled);
                self.observer.delta(i, &delta, elapsed);
                self.send(renewals);
            }
            Event::Finished { delta, elapsed } => {
                delta.add_to(&mut lock_totals(&self.total));
                let (state, renewals, unassigned) = self.ledger.finished(i, &delta, elapsed, self.cancelled);
                self.links[i].renew = None;
                self.observer.delta(i, &delta, elapsed);
                self.observer.ended(i, state, None);
                self.unassigned += unassigned;
                self.send(renewals);
            }
            Event::Broken(why) => self.lose(i, why),
            Event::Failed(why) => {
                if self.failed.is_none() {
                    self.failed = Some(format!("agent {} failed: {why}", self.ledger.slots()[i].outcome.address));
                }
                self.lose(i, why);
            }
        }
    }

    /// Gives up on agents that have sent nothing for their link's loss time
    /// ([`Link::lost_after`](super::link::Link::lost_after)).
    fn on_watchdog(&mut self) {
        // What has arrived counts first, so a backlog is never taken for silence.
        // Only what is queued now: a steady stream cannot hold the watchdog up.
        for _ in 0..self.events.len() {
            let Ok((i, at, ev)) = self.events.try_recv() else { break };
            self.on_event(i, at, ev);
        }
        for (i, silent) in self.ledger.silent(Instant::now()) {
            // An earlier loss in this round may have ended it already.
            if self.ledger.slots()[i].running {
                self.lose(i, format!("sent nothing for {:.1} s", silent.as_secs_f64()));
            }
        }
    }

    /// Asks every running agent to stop; they still send their final snapshot.
    fn on_cancel(&mut self) {
        self.cancelled = true;
        for (slot, link) in self.ledger.slots().iter().zip(&self.links) {
            if !slot.running {
                continue;
            }
            let mut client = link.client.clone();
            let run_id = self.run_id.clone();
            tokio::spawn(async move { client.cancel(CancelRequest { run_id }).await });
        }
    }

    /// Marks agent `i` lost, stops it if it can still hear, and hands its
    /// unfinished work to the survivors.
    fn lose(&mut self, i: usize, why: String) {
        let address = &self.ledger.slots()[i].outcome.address;
        tracing::debug!(agent = %address, "agent lost: {why}");
        eprintln!("controller: agent {address} lost: {why}");
        // Dropping the renewer stops the lease renewals: a cut-off agent then
        // stops on its own when its lease runs out. Cancel it too, in case it can hear.
        self.links[i].renew = None;
        let mut client = self.links[i].client.clone();
        let run_id = self.run_id.clone();
        let timeout = self.ledger.slots()[i].link.renew_timeout();
        tokio::spawn(async move {
            let mut req = tonic::Request::new(CancelRequest { run_id });
            req.set_timeout(timeout);
            client.cancel(req).await
        });
        self.observer.ended(i, AgentState::Lost, Some(&why));
        let (renewals, unassigned) = self.ledger.lose(i, why, Instant::now());
        self.unassigned += unassigned;
        self.send(renewals);
    }

    /// Sends what the ledger decided to the agents' renewers.
    fn send(&self, renewals: Renewals) {
        for (j, renewal) in renewals {
            let mut req = RenewRequest { run_id: self.run_id.clone(), ..Default::default() };
            match renewal {
                Renewal::Grant(n) => req.add_requests = n,
                Renewal::NoMoreGrants => req.last = true,
                Renewal::Reopen => req.reopen = true,
                Renewal::Takeover { add_connections, new_rate } => {
                    req.add_connections = add_connections;
                    req.new_rate = new_rate.unwrap_or(0.0);
                }
            }
            if let Some(tx) = &self.links[j].renew {
                // The renewer ends only when the agent is done; then nothing is owed.
                let _ = tx.send(req);
            }
        }
    }

    /// The merged outcome, with `unreachable` agents listed after the others.
    pub fn finish(self, unreachable: Vec<AgentOutcome>) -> Outcome {
        let mut agents = self.ledger.into_outcomes();
        // Observers may still hold the total (the metrics show a finished
        // run's figures until the next): then the outcome gets a copy.
        let total = std::sync::Arc::try_unwrap(self.total)
            .map(|m| m.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
            .unwrap_or_else(|shared| lock_totals(&shared).clone());
        // The real span, from the first request sent to the last completed;
        // the agents' last report only when no request completed.
        let duration = total.span().unwrap_or_else(|| agents.iter().map(|o| o.elapsed).max().unwrap_or_default());
        let lost = || agents.iter().filter(|o| o.state == AgentState::Lost);
        // One lost agent without a bound makes the whole bound unknown.
        let unknown = lost().any(|o| o.unaccounted_max.is_none());
        let unaccounted_max =
            (lost().next().is_some() && !unknown).then(|| lost().filter_map(|o| o.unaccounted_max).sum());
        let unaccounted_unknown = unknown.then(|| UNKNOWN_BOUND.to_owned());
        agents.extend(unreachable);
        Outcome {
            agents,
            total,
            duration,
            cancelled: self.cancelled,
            unaccounted_max,
            unaccounted_unknown,
            unassigned: self.unassigned,
            failed: self.failed,
        }
    }
}

/// Reads one agent's event stream into the merge loop's channel.
async fn forward(
    i: usize,
    mut stream: tonic::Streaming<volley_proto::RunEvent>,
    tx: mpsc::UnboundedSender<(usize, Instant, Event)>,
) {
    loop {
        let event = match stream.next().await {
            None => Event::Broken("its stream ended before the final snapshot".into()),
            Some(Err(status)) if status.code() == tonic::Code::Internal => Event::Failed(status_line(&status)),
            Some(Err(status)) => Event::Broken(format!("its stream failed: {}", status_line(&status))),
            Some(Ok(ev)) => match ev.event {
                Some(run_event::Event::Started(s)) => {
                    Event::Started { threads: s.threads, skew_us: s.start_skew_us, io: crate::outcome::io_engine(&s) }
                }
                Some(run_event::Event::Progress(snap)) => {
                    let (elapsed, taken, in_flight) =
                        (Duration::from_micros(snap.elapsed_us), snap.taken_total, snap.in_flight);
                    match Delta::decode(snap) {
                        Ok(delta) => Event::Delta { delta, elapsed, taken, in_flight },
                        Err(e) => Event::Broken(e.to_string()),
                    }
                }
                Some(run_event::Event::Finished(snap)) => {
                    let elapsed = Duration::from_micros(snap.elapsed_us);
                    match Delta::decode(snap) {
                        Ok(delta) => Event::Finished { delta, elapsed },
                        Err(e) => Event::Broken(e.to_string()),
                    }
                }
                None => continue,
            },
        };
        let last = matches!(event, Event::Finished { .. } | Event::Broken(_) | Event::Failed(_));
        if tx.send((i, Instant::now(), event)).is_err() || last {
            return;
        }
    }
}

/// Renews one agent's run lease on one Lease stream: forwards what the merge
/// loop queues (the start instant, grants, takeovers), in order, and a
/// heartbeat whenever nothing has gone out for [`RENEW_EVERY`], until its
/// channel closes (the agent finished or was lost). The stream then ends, and
/// a lease no longer renewed runs out. One stream per agent, not one call
/// per heartbeat: at a thousand agents the calls were most of what
/// coordinating cost.
async fn renewer(mut client: Client, run_id: String, rx: mpsc::UnboundedReceiver<RenewRequest>) {
    let mut beat = tokio::time::interval(RENEW_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let renewals = futures::stream::unfold((rx, beat, run_id), |(mut rx, mut beat, run_id)| async move {
        let req = tokio::select! {
            biased;
            r = rx.recv() => {
                // A grant renews the lease too: the next beat waits a whole period.
                let r = r?;
                beat.reset();
                r
            }
            _ = beat.tick() => RenewRequest { run_id: run_id.clone(), ..Default::default() },
        };
        Some((req, (rx, beat, run_id)))
    });
    if let Err(status) = client.lease(renewals).await {
        tracing::debug!("lease stream failed: {}", status_line(&status));
    }
}
