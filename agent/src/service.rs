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
use tonic::{Request, Response, Status, Streaming};
use volley_common::lock;
use volley_proto::agent_server::Agent;
use volley_proto::{
    AgentInfo, CancelReply, CancelRequest, DescribeRequest, PROTOCOL_VERSION, RenewReply, RenewRequest, RunEvent,
    RunPlan, Started, run_event,
};
use volley_stats::Totals;

use crate::engine::{self, Control, SNAPSHOT_INTERVAL, Stopper};
use crate::metrics::Counters;
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
    /// Two-phase start: where the start instant goes when a Renew brings it.
    start: Option<tokio::sync::oneshot::Sender<std::time::SystemTime>>,
}

/// How often the run lease is checked.
const LEASE_CHECK: Duration = Duration::from_millis(200);
/// The least time between two early snapshots sent because the workers ran
/// out of granted requests.
const DRY_SNAPSHOT_GAP: Duration = Duration::from_millis(2);

/// The gRPC service of one agent.
#[derive(Debug, Clone)]
pub struct AgentService {
    threads: usize,
    limits: Arc<crate::security::Limits>,
    active: Arc<Mutex<Option<Active>>>,
    /// Runs and refusals, for `--metrics-listen`.
    counters: Arc<Counters>,
    /// The I/O engine for plain HTTP/1.1 runs (`--io`), as resolved at start.
    io: Arc<crate::uring::Resolved>,
}

/// Clears the agent's busy state when a run's task ends, however it ends.
struct BusyGuard(Arc<Mutex<Option<Active>>>, Arc<Counters>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        // A run whose workers started has a stopper: it finished.
        if lock(&self.0).take().is_some_and(|a| a.stopper.is_some()) {
            Counters::bump(&self.1.runs_finished);
        }
    }
}

/// Counts a plan refused unless the plan is accepted ([`Refusal::accepted`]).
struct Refusal(Option<Arc<Counters>>);

impl Refusal {
    fn accepted(mut self) {
        self.0 = None;
    }
}

impl Drop for Refusal {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            Counters::bump(&c.plans_refused);
        }
    }
}

impl AgentService {
    /// A service whose runs use `threads` worker threads unless a plan says
    /// otherwise, and whose plans must keep within `limits`.
    pub fn new(threads: usize, limits: crate::security::Limits) -> AgentService {
        AgentService {
            threads: threads.max(1),
            limits: Arc::new(limits),
            active: Arc::new(Mutex::new(None)),
            counters: Arc::default(),
            io: Arc::default(),
        }
    }

    /// The same service, running plain HTTP/1.1 plans on `io`'s engine.
    pub fn with_io(mut self, io: crate::uring::Resolved) -> AgentService {
        self.io = Arc::new(io);
        self
    }

    /// What it counts for `--metrics-listen`.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Whether it has a run (accepted or going).
    pub fn busy(&self) -> bool {
        lock(&self.active).is_some()
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
            open_files: self.limits.open_files.unwrap_or(0),
            io_engine: self.io.describe(),
        }))
    }

    type RunStream = EventStream;

    async fn run(&self, request: Request<RunPlan>) -> Result<Response<Self::RunStream>, Status> {
        let plan = request.into_inner();
        let refusal = Refusal(Some(self.counters.clone()));
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
                start: None,
            });
        }
        let guard = BusyGuard(self.active.clone(), self.counters.clone());
        let await_start = plan.await_start;
        let mut plan = Plan::from_proto(plan, self.threads).await.map_err(plan_status)?;
        self.limits.check(&plan)?;
        // Only allowed source addresses are tried on this host.
        if let Some(s) = &plan.sources {
            crate::connect::check_sources(&s.addrs)
                .map_err(|e| plan_status(crate::plan::PlanError::Invalid { field: "source_addrs", reason: e }))?;
        }
        let (tx, rx) = mpsc::channel::<Result<RunEvent, Status>>(16);
        if !await_start {
            self.launch(plan, guard, tx)?;
            refusal.accepted();
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        // Two-phase start: accepted; the start instant comes with a Renew.
        let (start_tx, start_rx) = tokio::sync::oneshot::channel();
        if let Some(a) = lock(&self.active).as_mut() {
            a.start = Some(start_tx);
        }
        let service = self.clone();
        tokio::spawn(async move {
            let Some(at) = service.wait_for_start(start_rx, &tx, plan.lease).await else {
                tracing::info!(run_id, "run given up before its start");
                return; // dropping the guard frees the agent
            };
            plan.start_at = Some(at);
            if let Err(status) = service.launch(plan, guard, tx.clone()) {
                let _ = tx.send(Err(status)).await;
            }
        });
        refusal.accepted();
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
                // A run still waiting for its start starts at once and stops.
                if let Some(start) = a.start.take() {
                    let _ = start.send(std::time::SystemTime::now());
                }
                true
            }
            _ => false,
        };
        Ok(Response::new(CancelReply { cancelled }))
    }

    async fn renew(&self, request: Request<RenewRequest>) -> Result<Response<RenewReply>, Status> {
        let running = self.apply_renewal(request.into_inner())?;
        Ok(Response::new(RenewReply { running }))
    }

    async fn lease(&self, request: Request<Streaming<RenewRequest>>) -> Result<Response<RenewReply>, Status> {
        let mut renewals = request.into_inner();
        let mut running = false;
        while let Some(r) = renewals.message().await? {
            running = self.apply_renewal(r)?;
        }
        Ok(Response::new(RenewReply { running }))
    }
}

impl AgentService {
    /// Applies one renewal (a Renew call, or one message of a Lease stream):
    /// renews the lease of the run it names and passes on its start instant,
    /// grants and takeovers; `false` when that run is not in progress here.
    fn apply_renewal(&self, r: RenewRequest) -> Result<bool, Status> {
        if !r.new_rate.is_finite() || r.new_rate < 0.0 || r.new_rate > volley_proto::limits::MAX_RATE {
            return Err(Status::invalid_argument(format!("invalid new_rate {}", r.new_rate)));
        }
        if r.add_connections > volley_proto::limits::MAX_CONNECTIONS {
            return Err(Status::invalid_argument(format!("invalid add_connections {}", r.add_connections)));
        }
        let mut active = lock(&self.active);
        let Some(a) = active.as_mut().filter(|a| a.run_id == r.run_id) else {
            return Ok(false);
        };
        *a.renewed.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        if r.start_at_unix_us > 0
            && let Some(start) = a.start.take()
        {
            let _ = start.send(std::time::SystemTime::UNIX_EPOCH + Duration::from_micros(r.start_at_unix_us));
        }
        if let Some(c) = &a.control {
            // Count mode: the agent's half of the grant protocol described
            // next to `RenewRequest` in proto/proto/volley.proto.
            if r.reopen {
                c.reopen();
            }
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
        Ok(true)
    }

    /// Two-phase start: waits for the start instant a Renew brings; `None`
    /// when the run is given up first (the controller dropped the stream or
    /// let the lease run out).
    async fn wait_for_start(
        &self,
        mut start: tokio::sync::oneshot::Receiver<std::time::SystemTime>,
        tx: &mpsc::Sender<Result<RunEvent, Status>>,
        lease: Option<Duration>,
    ) -> Option<std::time::SystemTime> {
        let renewed = lock(&self.active).as_ref().map(|a| a.renewed.clone())?;
        let mut check = tokio::time::interval(LEASE_CHECK);
        loop {
            tokio::select! {
                at = &mut start => return at.ok(),
                _ = tx.closed() => return None,
                _ = check.tick() => {
                    let since = renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                    if lease.is_some_and(|l| since > l) {
                        return None;
                    }
                }
            }
        }
    }

    /// Starts the workers of an accepted `plan` and the task that streams
    /// their events to `tx`; `guard` frees the agent when that task ends.
    fn launch(&self, plan: Plan, guard: BusyGuard, tx: mpsc::Sender<Result<RunEvent, Status>>) -> Result<(), Status> {
        let run_id = lock(&self.active).as_ref().map(|a| a.run_id.clone()).unwrap_or_default();
        // Count mode has no end time of its own: the agent's --max-duration
        // bounds it all the same.
        let cap = match plan.limit {
            crate::plan::Limit::Requests(_) => self.limits.max_duration,
            crate::plan::Limit::Duration(_) => None,
        };
        let (threads, connections, lease) = (plan.threads, plan.connections, plan.lease);
        let mut plan = plan;
        let (io, io_fallback) = crate::uring::for_run(&plan, self.io.engine);
        plan.io = io;
        let run = engine::start(plan).map_err(|e| Status::internal(format!("cannot start worker threads: {e}")))?;
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
        Counters::bump(&self.counters.runs_started);
        tracing::info!(engine = io.name(), fallback = io_fallback.unwrap_or(""), "run's I/O engine");
        let mut task = RunTask::new(run, run_id, tx, lease, renewed, cap);
        task.io = (io.name(), io_fallback.unwrap_or(""));
        tokio::spawn(async move {
            let _guard = guard;
            task.run(threads as u32, connections as u32).await;
        });
        Ok(())
    }
}

/// One run's task on the agent: forwards the workers' deltas to the
/// controller as snapshots and stops the run when its lease expires, its
/// `--max-duration` is reached or the controller goes away.
struct RunTask {
    run: engine::Run,
    run_id: String,
    stopper: Stopper,
    control: Control,
    tx: mpsc::Sender<Result<RunEvent, Status>>,
    /// The controller still reads the stream.
    connected: bool,
    /// What the workers handed over since the last snapshot.
    acc: Totals,
    /// The run lease, if any, and when the controller last renewed it.
    lease: Option<Duration>,
    renewed: Arc<Mutex<std::time::Instant>>,
    lease_expired: bool,
    /// Count mode: this agent's `--max-duration`, if any.
    cap: Option<Duration>,
    cap_hit: bool,
    /// When the last early (grants ran dry) snapshot went out.
    last_early: std::time::Instant,
    /// The run's I/O engine, and why it is epoll on a uring agent (if it is).
    io: (&'static str, &'static str),
}

impl RunTask {
    fn new(
        run: engine::Run,
        run_id: String,
        tx: mpsc::Sender<Result<RunEvent, Status>>,
        lease: Option<Duration>,
        renewed: Arc<Mutex<std::time::Instant>>,
        cap: Option<Duration>,
    ) -> RunTask {
        RunTask {
            stopper: run.stopper(),
            control: run.control(),
            run,
            run_id,
            tx,
            connected: true,
            acc: Totals::default(),
            lease,
            renewed,
            lease_expired: false,
            cap,
            cap_hit: false,
            last_early: std::time::Instant::now() - DRY_SNAPSHOT_GAP,
            io: ("epoll", ""),
        }
    }

    /// Runs until every worker has finished, then sends the final snapshot.
    async fn run(mut self, threads: u32, connections: u32) {
        self.started(threads, connections).await;
        // Tick a little after the workers hand over their deltas, so each
        // progress snapshot carries one whole interval from every thread.
        let first = self.run.start_instant() + SNAPSHOT_INTERVAL + SNAPSHOT_INTERVAL / 10;
        let mut tick = tokio::time::interval_at(first.into(), SNAPSHOT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease_check = tokio::time::interval(LEASE_CHECK);
        let cap_at = self.cap.map(|d| self.run.start_instant() + d);
        let capped = async move {
            match cap_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(capped);
        loop {
            tokio::select! {
                delta = self.run.next_delta() => match delta {
                    Some(d) => self.acc.add(&d),
                    None => break,
                },
                _ = tick.tick(), if self.connected => self.on_tick().await,
                // The workers used up their grants: tell the controller at
                // once (it grants on every snapshot) rather than at the
                // next tick.
                // Always listened to: a branch disabled during the gap would
                // leave a dry signal unheard until some other event woke the
                // loop (the lease check, 200 ms later).
                _ = self.control.dry(), if self.connected => {
                    self.on_dry().await;
                }
                _ = &mut capped, if !self.cap_hit => self.on_cap(),
                _ = lease_check.tick(), if self.lease.is_some() && !self.lease_expired => self.on_lease_check(),
                _ = self.tx.closed(), if self.connected => self.on_controller_gone(),
            }
        }
        let last = snapshot(&mut self.acc, self.run.elapsed(), &self.control);
        if let Some(why) = self.run.panic() {
            // A panic is a bug: the run fails loudly instead of finishing
            // with whatever the other workers counted.
            tracing::error!(run_id = self.run_id, "run failed: {why}");
            if self.connected {
                let _ = self.tx.send(Err(Status::internal(format!("the agent failed: {why}")))).await;
            }
        } else if self.connected {
            let _ = self.send(run_event::Event::Finished(last)).await;
        }
        tracing::info!(run_id = self.run_id, "run finished");
    }

    /// Sends Started once the workers have begun, carrying how far from the
    /// common start instant they began (bounded wait: a worker that failed
    /// to start must not hold the stream).
    async fn started(&mut self, threads: u32, connections: u32) {
        let give_up = tokio::time::sleep_until((self.run.start_instant() + Duration::from_secs(1)).into());
        let start_skew_us = tokio::select! {
            skew = self.run.started() => skew,
            _ = give_up => 0,
        };
        let started = Started {
            threads,
            connections,
            start_skew_us,
            io_engine: self.io.0.to_owned(),
            io_fallback: self.io.1.to_owned(),
        };
        self.connected = self.send(run_event::Event::Started(started)).await;
    }

    /// Sends `event`; `false` when the controller is gone.
    async fn send(&self, event: run_event::Event) -> bool {
        self.tx.send(Ok(RunEvent { event: Some(event) })).await.is_ok()
    }

    /// The once-a-second progress snapshot.
    async fn on_tick(&mut self) {
        // Stamped with the whole second the workers' deltas were cut at (they
        // hand over on the second; this tick runs a little later), so the
        // controller files them under the second they belong to.
        let interval = SNAPSHOT_INTERVAL.as_micros();
        let cut = self.run.elapsed().as_micros() / interval * interval;
        let snap = snapshot(&mut self.acc, Duration::from_micros(cut as u64), &self.control);
        self.connected = self.send(run_event::Event::Progress(snap)).await;
        if !self.connected {
            tracing::warn!(run_id = self.run_id, "controller went away; stopping the run");
            self.stopper.stop();
        }
    }

    /// An early snapshot: the workers ran out of granted requests.
    async fn on_dry(&mut self) {
        // At most one early snapshot per gap: sleep out the rest of it.
        let since = self.last_early.elapsed();
        if since < DRY_SNAPSHOT_GAP {
            tokio::time::sleep(DRY_SNAPSHOT_GAP - since).await;
        }
        self.last_early = std::time::Instant::now();
        let snap = snapshot(&mut self.acc, self.run.elapsed(), &self.control);
        self.connected = self.send(run_event::Event::Progress(snap)).await;
    }

    /// The run reached this agent's `--max-duration`.
    fn on_cap(&mut self) {
        tracing::warn!(run_id = self.run_id, "the run reached this agent's --max-duration; stopping it");
        self.cap_hit = true;
        self.stopper.stop();
    }

    /// Stops the run if the controller has not renewed its lease in time.
    fn on_lease_check(&mut self) {
        let since = self.renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if self.lease.is_some_and(|l| since > l) {
            tracing::warn!(
                run_id = self.run_id,
                "run lease expired: no renewal from the controller for {since:?}; stopping the run"
            );
            self.lease_expired = true;
            self.stopper.stop();
        }
    }

    /// The controller dropped the stream.
    fn on_controller_gone(&mut self) {
        tracing::warn!(run_id = self.run_id, "controller went away; stopping the run");
        self.connected = false;
        self.stopper.stop();
    }
}

/// Takes what `acc` gathered as a snapshot stamped `at`, with the run's grant
/// use (a running total, not a delta).
fn snapshot(acc: &mut Totals, at: Duration, control: &Control) -> volley_proto::Snapshot {
    for (addr, row) in control.take_refused_targets() {
        acc.targets.entry(addr.to_string()).or_default().add(&row);
    }
    let mut snap = std::mem::take(acc).to_snapshot(at);
    snap.taken_total = control.taken();
    snap.in_flight = control.in_flight();
    snap
}

/// This host's name, for reports; empty if it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}
