//! The agent's gRPC service: describe, run one plan at a time, cancel.
//!
//! A run's events go out on a bounded channel that backs the response stream.
//! Worker deltas are summed here and sent as one progress snapshot per
//! [`SNAPSHOT_INTERVAL`](crate::engine::SNAPSHOT_INTERVAL), then whatever
//! remains goes out as the final snapshot, so the controller's sum of every
//! snapshot is exactly what the workers recorded. If the controller goes away
//! (the stream is dropped) the run is stopped: an agent never generates load
//! for nobody.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use volley_common::lock;
use volley_proto::agent_server::Agent;
use volley_proto::{
    AgentInfo, CancelReply, CancelRequest, DescribeRequest, PROTOCOL_VERSION, RenewReply, RenewRequest, RunEvent,
    RunPlan, Started, run_event,
};
use volley_stats::Totals;

use crate::engine::{self, Control, SNAPSHOT_INTERVAL, Stopper};
use crate::plan::{Plan, PlanError};

/// The run an agent is busy with.
#[derive(Debug)]
struct Active {
    run_id: String,
    stopper: Option<Stopper>,
    // A Cancel that arrived before the workers started.
    cancelled: bool,
    control: Option<Control>,
    /// Connections the run holds (grows when it takes over a lost agent's).
    connections: u32,
    /// When the controller last renewed the run lease.
    renewed: Arc<Mutex<std::time::Instant>>,
}

/// How often the run lease is checked.
const LEASE_CHECK: Duration = Duration::from_millis(200);
/// The fewest microseconds between two early snapshots sent because the
/// workers ran out of granted requests.
const DRY_SNAPSHOT_GAP: Duration = Duration::from_millis(2);

/// The gRPC service of one agent.
#[derive(Debug, Clone)]
pub struct AgentService {
    threads: usize,
    limits: Arc<crate::security::Limits>,
    active: Arc<Mutex<Option<Active>>>,
}

/// Clears the agent's busy state when a run's task ends, however it ends.
struct BusyGuard(Arc<Mutex<Option<Active>>>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *lock(&self.0) = None;
    }
}

impl AgentService {
    /// A service whose runs use `threads` worker threads unless a plan says
    /// otherwise, and whose plans must keep within `limits`.
    pub fn new(threads: usize, limits: crate::security::Limits) -> AgentService {
        AgentService { threads: threads.max(1), limits: Arc::new(limits), active: Arc::new(Mutex::new(None)) }
    }
}

fn plan_status(e: PlanError) -> Status {
    match e {
        PlanError::Version { .. } => Status::failed_precondition(e.to_string()),
        PlanError::Invalid { .. } | PlanError::Resolve { .. } => Status::invalid_argument(e.to_string()),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<AgentInfo>, Status> {
        Ok(Response::new(AgentInfo {
            protocol_version: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            worker_threads: self.threads as u32,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as u32,
            hostname: hostname(),
            busy: lock(&self.active).is_some(),
        }))
    }

    type RunStream = EventStream;

    async fn run(&self, request: Request<RunPlan>) -> Result<Response<Self::RunStream>, Status> {
        let plan = request.into_inner();
        let run_id = plan.run_id.clone();
        // Claim the agent before the (possibly slow) checks, so two controllers
        // racing cannot both pass.
        {
            let mut active = lock(&self.active);
            if let Some(a) = active.as_ref() {
                return Err(Status::failed_precondition(format!("agent is busy with run {:?}", a.run_id)));
            }
            *active = Some(Active {
                run_id: run_id.clone(),
                stopper: None,
                cancelled: false,
                control: None,
                connections: 0,
                renewed: Arc::new(Mutex::new(std::time::Instant::now())),
            });
        }
        let guard = BusyGuard(self.active.clone());
        let plan = Plan::from_proto(plan, self.threads).await.map_err(plan_status)?;
        self.limits.check(&plan)?;
        // Count mode has no end time of its own: the agent's --max-duration
        // bounds it all the same.
        let cap = match plan.limit {
            crate::plan::Limit::Requests(_) => self.limits.max_duration,
            crate::plan::Limit::Duration(_) => None,
        };
        let (threads, connections, lease) = (plan.threads, plan.connections, plan.lease);
        let mut run = engine::start(plan).map_err(|e| Status::internal(format!("cannot start worker threads: {e}")))?;
        let mut renewed = Arc::new(Mutex::new(std::time::Instant::now()));
        if let Some(a) = lock(&self.active).as_mut() {
            if a.cancelled {
                run.stopper().stop();
            }
            a.stopper = Some(run.stopper());
            a.control = Some(run.control());
            a.connections = connections as u32;
            renewed = a.renewed.clone();
            // The lease runs from the start, not from the first request.
            *renewed.lock().unwrap_or_else(|p| p.into_inner()) = run.start_instant();
        }
        tracing::info!(run_id, threads, connections, "run started");
        let (tx, rx) = mpsc::channel::<Result<RunEvent, Status>>(16);
        tokio::spawn(async move {
            let _guard = guard;
            let stopper = run.stopper();
            let control = run.control();
            let event = |e| Ok(RunEvent { event: Some(e) });
            // Started goes out once the workers have begun, carrying how far
            // from the common start instant they began (bounded wait: a worker
            // that failed to start must not hold the stream).
            let give_up = tokio::time::sleep_until((run.start_instant() + Duration::from_secs(1)).into());
            let start_skew_us = tokio::select! {
                skew = run.started() => skew,
                _ = give_up => 0,
            };
            let started = Started { threads: threads as u32, connections: connections as u32, start_skew_us };
            let mut connected = tx.send(event(run_event::Event::Started(started))).await.is_ok();
            let mut acc = Totals::default();
            // Tick a little after the workers hand over their deltas, so each
            // progress snapshot carries one whole interval from every thread.
            let first = run.start_instant() + SNAPSHOT_INTERVAL + SNAPSHOT_INTERVAL / 10;
            let mut tick = tokio::time::interval_at(first.into(), SNAPSHOT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lease_check = tokio::time::interval(LEASE_CHECK);
            let mut last_early = std::time::Instant::now() - DRY_SNAPSHOT_GAP;
            let mut lease_expired = false;
            let cap_at = cap.map(|d| run.start_instant() + d);
            let capped = async move {
                match cap_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(capped);
            let mut cap_hit = false;
            loop {
                tokio::select! {
                    delta = run.next_delta() => match delta {
                        Some(d) => acc.add(&d),
                        None => break,
                    },
                    _ = tick.tick(), if connected => {
                        // Stamped with the whole second the workers' deltas were
                        // cut at (they hand over on the second; this tick runs a
                        // little later), so the controller files them under the
                        // second they belong to.
                        let interval = SNAPSHOT_INTERVAL.as_micros();
                        let cut = run.elapsed().as_micros() / interval * interval;
                        let snap = snapshot(&mut acc, Duration::from_micros(cut as u64), &control);
                        connected = tx.send(event(run_event::Event::Progress(snap))).await.is_ok();
                        if !connected {
                            tracing::warn!(run_id, "controller went away; stopping the run");
                            stopper.stop();
                        }
                    }
                    // The workers used up their grants: tell the controller at
                    // once (it grants on every snapshot) rather than at the
                    // next tick.
                    _ = control.dry(), if connected && last_early.elapsed() >= DRY_SNAPSHOT_GAP => {
                        last_early = std::time::Instant::now();
                        let snap = snapshot(&mut acc, run.elapsed(), &control);
                        connected = tx.send(event(run_event::Event::Progress(snap))).await.is_ok();
                    }
                    _ = &mut capped, if !cap_hit => {
                        tracing::warn!(run_id, "the run reached this agent's --max-duration; stopping it");
                        cap_hit = true;
                        stopper.stop();
                    }
                    _ = lease_check.tick(), if lease.is_some() && !lease_expired => {
                        let since = renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                        if lease.is_some_and(|l| since > l) {
                            tracing::warn!(run_id, "run lease expired: no renewal from the controller for {since:?}; stopping the run");
                            lease_expired = true;
                            stopper.stop();
                        }
                    }
                    _ = tx.closed(), if connected => {
                        tracing::warn!(run_id, "controller went away; stopping the run");
                        connected = false;
                        stopper.stop();
                    }
                }
            }
            let last = snapshot(&mut acc, run.elapsed(), &control);
            if connected {
                let _ = tx.send(event(run_event::Event::Finished(last))).await;
            }
            tracing::info!(run_id, "run finished");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel(&self, request: Request<CancelRequest>) -> Result<Response<CancelReply>, Status> {
        let id = request.into_inner().run_id;
        let mut active = lock(&self.active);
        let cancelled = match active.as_mut() {
            Some(a) if a.run_id == id => {
                a.cancelled = true;
                if let Some(s) = &a.stopper {
                    s.stop();
                }
                true
            }
            _ => false,
        };
        Ok(Response::new(CancelReply { cancelled }))
    }

    async fn renew(&self, request: Request<RenewRequest>) -> Result<Response<RenewReply>, Status> {
        let r = request.into_inner();
        if !r.new_rate.is_finite() || r.new_rate < 0.0 || r.new_rate > volley_proto::limits::MAX_RATE {
            return Err(Status::invalid_argument(format!("invalid new_rate {}", r.new_rate)));
        }
        if r.add_connections > volley_proto::limits::MAX_CONNECTIONS {
            return Err(Status::invalid_argument(format!("invalid add_connections {}", r.add_connections)));
        }
        let mut active = lock(&self.active);
        let Some(a) = active.as_mut().filter(|a| a.run_id == r.run_id) else {
            return Ok(Response::new(RenewReply { running: false }));
        };
        *a.renewed.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        if let Some(c) = &a.control {
            if r.add_requests > 0 || r.last {
                c.grant(r.add_requests, r.last);
            }
            // Taking over a lost agent's share stays within this agent's limits.
            let more = self.limits.more_connections(a.connections, r.add_connections);
            if more > 0 {
                a.connections += more;
                c.add_connections(more as usize);
            }
            if r.new_rate > 0.0 {
                c.set_rate(self.limits.cap_rate(r.new_rate));
            }
        }
        Ok(Response::new(RenewReply { running: true }))
    }
}

/// Takes what `acc` gathered as a snapshot stamped `at`, with the run's grant
/// use (a running total, not a delta).
fn snapshot(acc: &mut Totals, at: Duration, control: &Control) -> volley_proto::Snapshot {
    let mut snap = std::mem::take(acc).to_snapshot(at);
    snap.taken_total = control.taken();
    snap
}

/// This host's name, for reports; empty if it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}
