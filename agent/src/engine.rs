//! The load engine: worker threads that drive connections and record results.
//!
//! Each worker is an OS thread with its own current-thread tokio runtime, so a
//! connection never moves between threads and per-thread state needs no lock.
//! A thread's connections share one [`Recorder`] (a `RefCell`: single-threaded)
//! and, in count mode, a small local pool of request tokens refilled in batches
//! from one shared atomic, so exactly the planned number of requests is sent
//! with one atomic operation per batch rather than per request.
//!
//! About once a second each thread hands its recorder's delta to the agent over
//! a channel, and once more when its last connection ends: the only cross-thread
//! traffic while a run goes.
//!
//! In the open model (a plan with a rate) each thread owns a fixed send
//! [`Schedule`]: the k-th request of the thread is due at a time computed from
//! k alone, never from timer wake-ups, so lateness cannot accumulate. Whichever
//! of the thread's connections is free claims the next slot. If the slot is
//! already overdue (every connection was busy: the target stalled or the
//! generator is short of connections), the request's latency is counted from
//! its due time, so the queueing delay every scheduled user would have suffered
//! shows up (coordinated omission corrected); the latency from the actual send
//! is recorded too. If the slot is in the future the connection sleeps until
//! it, and latency counts from the actual send: the timer's own lateness is the
//! generator's, not the target's.
//!
//! A duration (`-z`) ends on time in both models. No request starts after
//! the end: in the open model, slots that fell due before the end but were
//! never sent (every connection was busy) are counted as `missed`, not sent
//! late. Requests still in flight at the end get a short grace, [`END_GRACE`]
//! or the request timeout, whichever is smaller; those still without an
//! answer then are dropped and counted as `cancelled`.
//!
//! Each thread notes when its first request went out and its last one
//! completed, as offsets from the run's common start instant, and hands them
//! over with its deltas: the controller reports the run's duration as the
//! span between the earliest and the latest, not as the time until the agents
//! happened to report.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use volley_proto::profile::Profile;
use volley_stats::{ErrorClass, Recorder, Totals};

use crate::http1::Conn;
use crate::plan::{Limit, Plan};

/// How often worker threads hand over their deltas.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Duration mode: the longest requests in flight at the end may still take
/// (less when the request timeout is shorter); then they are cancelled.
pub const END_GRACE: Duration = Duration::from_secs(1);

/// State shared by all worker threads of one run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    stop: AtomicBool,
    /// When the workers begin.
    pub(crate) start: Instant,
    /// When duration mode stops starting requests.
    pub(crate) deadline: Option<Instant>,
    /// Duration mode: when requests still in flight are cancelled (the
    /// deadline plus the grace).
    cut_off: Option<Instant>,
    /// When the first worker really began, by the wall clock.
    first_wake: OnceLock<SystemTime>,
    /// Wakes whoever waits for the first worker to begin.
    woke: tokio::sync::Notify,
    /// Wakes whoever sleeps until a time (virtual users thinking) when the run stops.
    pub(crate) halt: tokio::sync::Notify,
    /// Count mode: the requests granted and taken.
    quota: Quota,
    /// Open model: the agent's rate as changed while the run goes.
    rate: RateControl,
    /// Requests in flight, as the threads last published them (about once a
    /// second each: not touched per request).
    in_flight: AtomicU64,
    /// The shape of the rate (open model) or of the active connections
    /// (closed model, when `gated`): the plan's stages or ramp-up, else flat.
    profile: Profile,
    /// Closed model with a profile: connections open and close with it.
    gated: bool,
    /// Connections this agent has been given (its plan's, plus those taken
    /// over from lost agents): the `C` of the closed model's `level · C > i`.
    conn_total: AtomicUsize,
    /// The first panic on any worker thread or connection task: the run has
    /// failed, whatever the counts say (a bug must never end as `done`).
    panic: OnceLock<String>,
}

impl Shared {
    /// Asks every worker to stop starting new requests.
    pub(crate) fn stop_run(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Connections waiting for a grant, and users thinking, must see the stop too.
        self.quota.more.notify_waiters();
        self.halt.notify_waiters();
    }

    /// Whether the run was asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Fails the run for `why` (a worker thread could not start) and stops it.
    pub(crate) fn fail(&self, why: &str) {
        tracing::error!("{why}");
        let _ = self.panic.set(why.to_owned());
        self.stop.store(true, Ordering::Relaxed);
        self.quota.more.notify_waiters();
        self.halt.notify_waiters();
    }

    /// Notes that a worker thread began (the first one's wall clock counts).
    pub(crate) fn began(&self) {
        if self.first_wake.set(SystemTime::now()).is_ok() {
            self.woke.notify_waiters();
        }
    }

    /// Records a panic (the first one is kept) and stops the run.
    fn panicked(&self, what: &str, payload: &(dyn std::any::Any + Send)) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        tracing::error!("{what} panicked: {message}");
        let _ = self.panic.set(format!("{what} panicked: {message}"));
        self.stop.store(true, Ordering::Relaxed);
        self.quota.more.notify_waiters();
        self.halt.notify_waiters();
    }
}

/// Far enough in the future to mean "never" for a run (whose length is at
/// most [`volley_proto::limits::MAX_DURATION`]), near enough that adding it to
/// any `Instant` of a running process cannot overflow.
pub(crate) const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `start` plus `secs` seconds, saturating at [`FAR`]: a schedule computed
/// from extreme numbers (a tiny rate, a huge slot number) lands far in the
/// future rather than panicking in `Duration` or `Instant` arithmetic.
pub(crate) fn after(start: Instant, secs: f64) -> Instant {
    let d = Duration::try_from_secs_f64(secs.max(0.0)).map_or(FAR, |d| d.min(FAR));
    // FAR after a process's own Instant fits on every supported platform;
    // the fallback keeps this total anyway.
    start.checked_add(d).unwrap_or(start)
}

/// Count mode: the pool of requests the workers may still start, filled by
/// the controller's grants. The agent's half of the grant protocol described
/// next to `RenewRequest` in `proto/proto/volley.proto`.
#[derive(Debug)]
struct Quota {
    /// Requests granted but not yet handed to any thread.
    remaining: AtomicU64,
    /// Tokens a thread takes from `remaining` at once.
    batch: u64,
    /// More grants may still come (an open quota not yet told "last").
    open: AtomicBool,
    /// Requests granted so far.
    granted: AtomicU64,
    /// Wakes connections waiting for a grant (or for the run to stop).
    more: tokio::sync::Notify,
    /// Wakes the agent when a connection ran out of granted requests.
    dry: tokio::sync::Notify,
}

impl Quota {
    /// A pool of `first` requests (`u64::MAX` in duration mode, where it is
    /// never read), taken `batch` at a time.
    fn new(first: u64, batch: u64, open: bool) -> Quota {
        Quota {
            remaining: AtomicU64::new(first),
            batch,
            open: AtomicBool::new(open),
            granted: AtomicU64::new(first),
            more: tokio::sync::Notify::new(),
            dry: tokio::sync::Notify::new(),
        }
    }

    /// Adds `add` requests; with `last`, no more grants follow.
    fn grant(&self, add: u64, last: bool) {
        self.granted.fetch_add(add, Ordering::Relaxed);
        self.remaining.fetch_add(add, Ordering::Relaxed);
        if last {
            self.open.store(false, Ordering::Relaxed);
        }
        self.more.notify_waiters();
    }

    /// More grants follow after all (the controller lost another agent after
    /// it said "no more grants"): connections wait for them again.
    fn reopen(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// Requests taken from the grants so far.
    fn taken(&self) -> u64 {
        self.granted.load(Ordering::Relaxed).saturating_sub(self.remaining.load(Ordering::Relaxed))
    }

    /// Takes up to one batch of tokens; zero when the pool is empty.
    #[inline]
    fn take_batch(&self) -> u64 {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| (r > 0).then(|| r - r.min(self.batch)))
            .map_or(0, |before| before.min(self.batch))
    }

    /// Whether more grants may still come.
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether a connection waiting for a grant has something to do: take a
    /// request, or finish because no grant will come.
    fn settled(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) > 0 || !self.is_open()
    }
}

/// Open model: the agent's rate after a change (another agent was lost);
/// each thread re-bases its schedule when the generation moves on.
#[derive(Debug, Default)]
struct RateControl {
    /// Bumped when the rate changes.
    generation: AtomicU64,
    /// The new rate's bits.
    bits: AtomicU64,
}

impl RateControl {
    fn set(&self, rate: f64) {
        self.bits.store(rate.to_bits(), Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn rate(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

/// A handle that stops a run early; in-flight requests still complete.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Asks every worker to stop starting new requests.
    pub fn stop(&self) {
        self.0.stop_run();
    }
}

/// A handle to change a running run: grants, connections, rate.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
    spawners: Vec<mpsc::UnboundedSender<std::ops::Range<usize>>>,
}

impl Control {
    /// Requests in flight, as the worker threads last published them.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Count mode: lets the workers send `add` more requests; with `last`, no
    /// more grants follow and the run finishes once these are used.
    pub fn grant(&self, add: u64, last: bool) {
        self.shared.quota.grant(add, last);
    }

    /// Count mode: more grants follow after all; connections that have not
    /// finished yet wait for them instead of finishing.
    pub fn reopen(&self) {
        self.shared.quota.reopen();
    }

    /// Count mode: requests the workers have taken from the grants so far.
    pub fn taken(&self) -> u64 {
        self.shared.quota.taken()
    }

    /// Opens `n` more connections, spread over the worker threads.
    pub fn add_connections(&self, n: usize) {
        let threads = self.spawners.len().max(1);
        // The new connections are numbered after the agent's others, so that
        // a profile opens them last.
        let mut first = self.shared.conn_total.fetch_add(n, Ordering::Relaxed);
        for (i, tx) in self.spawners.iter().enumerate() {
            let share = n / threads + usize::from(i < n % threads);
            if share > 0 {
                // A thread that already finished has nothing left to do.
                let _ = tx.send(first..first + share);
                first += share;
            }
        }
    }

    /// Target addresses `--allow-target` refused since the last call, as
    /// report rows.
    pub fn take_refused_targets(&self) -> Vec<(std::net::SocketAddr, volley_stats::AddrTotals)> {
        self.shared.plan.targets.take_refused()
    }

    /// Open model: changes the agent's total rate from now on.
    pub fn set_rate(&self, rate: f64) {
        self.shared.rate.set(rate);
    }

    /// Completes when a connection has run out of granted requests.
    pub async fn dry(&self) {
        self.shared.quota.dry.notified().await;
    }
}

/// A run in progress.
#[derive(Debug)]
pub struct Run {
    shared: Arc<Shared>,
    deltas: mpsc::UnboundedReceiver<Totals>,
    threads: usize,
    control: Control,
}

impl Run {
    /// The next delta from any worker; `None` once every worker has finished.
    pub async fn next_delta(&mut self) -> Option<Totals> {
        self.deltas.recv().await
    }

    /// A handle to stop the run.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    /// A handle to grant requests, add connections or change the rate.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Time since the workers began (zero before the start instant).
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.shared.start)
    }

    /// When the workers begin.
    pub fn start_instant(&self) -> Instant {
        self.shared.start
    }

    /// Why the run failed, if any worker thread or connection task panicked.
    pub fn panic(&self) -> Option<&str> {
        self.shared.panic.get().map(String::as_str)
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Waits until the first worker has begun; returns how late it began
    /// relative to the plan's start instant, in microseconds (negative if
    /// early; zero if the plan gave no start instant).
    pub async fn started(&self) -> i64 {
        loop {
            let notified = self.shared.woke.notified();
            if let Some(at) = self.shared.first_wake.get() {
                let Some(planned) = self.shared.plan.start_at else { return 0 };
                return match at.duration_since(planned) {
                    Ok(late) => late.as_micros() as i64,
                    Err(early) => -(early.duration().as_micros() as i64),
                };
            }
            notified.await;
        }
    }
}

/// A thread's fixed send schedule in the open model.
///
/// The rate at time x (seconds since `start`, less the phase) is
/// `rate · level(x)` of the run's [`Profile`] (flat, a ramp or stages), so
/// the slots due by x number `rate · ∫level`, and slot k is due where that
/// integral reaches k: [`Profile::inverse`]. After a rate change the schedule
/// is re-based: slot `first_slot` is due at `from` (profile time), and later
/// slots follow the new rate along the same profile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start: Instant,
    /// Requests per second at the profile's level 1.
    rate: f64,
    /// Offset in seconds, so threads interleave instead of firing together.
    phase: f64,
    /// The slot `from` refers to (non-zero after a rate change).
    first_slot: u64,
    /// Profile time (seconds) of the re-basing, and the profile's integral there.
    from: f64,
    base: f64,
}

impl Schedule {
    /// A schedule from the start.
    fn new(start: Instant, rate: f64, phase: f64) -> Schedule {
        Schedule { start, rate, phase, first_slot: 0, from: 0.0, base: 0.0 }
    }

    /// When slot `k` (counting from zero) is due under `profile`.
    fn due(&self, k: u64, profile: &Profile) -> Instant {
        let k = (k - self.first_slot.min(k)) as f64;
        let x = profile.inverse(self.base + k / self.rate).max(self.from);
        after(self.start, x + self.phase)
    }

    /// How many slots, counting from zero (and across re-basings), fall due
    /// strictly before `t`: what the schedule asked of the thread by then.
    fn slots_before(&self, t: Instant, profile: &Profile) -> u64 {
        let r = self.rate;
        if !(r.is_finite() && r > 0.0) {
            return self.first_slot;
        }
        let x = t.saturating_duration_since(self.start).as_secs_f64() - self.phase;
        let estimate = if x <= self.from { 0.0 } else { r * (profile.integral(x) - self.base) };
        let mut n = self.first_slot + estimate.max(0.0).min(u64::MAX as f64 / 2.0).ceil() as u64;
        // Rounding can put the estimate one off; settle it on `due` itself.
        while n > self.first_slot && self.due(n - 1, profile) >= t {
            n -= 1;
        }
        while self.due(n, profile) < t {
            n += 1;
        }
        n
    }
}

/// Starts the worker threads of `plan` and returns at once.
pub fn start(plan: Plan) -> std::io::Result<Run> {
    let now = Instant::now();
    // Map the controller's wall-clock start instant onto this host's monotonic
    // clock once; everything after is measured monotonically.
    let delay = plan.start_at.and_then(|at| at.duration_since(SystemTime::now()).ok()).unwrap_or_default();
    let start = now + delay;
    let (remaining, deadline) = match plan.limit {
        Limit::Requests(n) => (n, None),
        Limit::Duration(d) => (u64::MAX, Some(start + d)),
    };
    let threads = plan.threads.max(1);
    // Small enough that threads finish together, large enough that the shared
    // atomic is touched rarely.
    let batch = match plan.limit {
        Limit::Requests(n) => (n / (plan.slots() as u64 * 8)).clamp(1, 64),
        Limit::Duration(_) => u64::MAX,
    };
    let connections = plan.connections;
    let uring = plan.io == crate::uring::Engine::Uring;
    let cut_off = deadline.map(|d| d + END_GRACE.min(plan.timeout));
    let quota = Quota::new(remaining, batch, plan.open_quota);
    // Scenario users are gated by stages only (their ramp is the spawn rate).
    let gated = plan.profile.is_some() && plan.rate.is_none() && plan.scenario.as_ref().is_none_or(|sc| sc.staged);
    let profile = plan.profile.clone().unwrap_or_else(Profile::flat);
    let shared = Arc::new(Shared {
        plan,
        stop: AtomicBool::new(false),
        start,
        deadline,
        cut_off,
        first_wake: OnceLock::new(),
        woke: tokio::sync::Notify::new(),
        halt: tokio::sync::Notify::new(),
        quota,
        rate: RateControl::default(),
        in_flight: AtomicU64::new(0),
        gated,
        profile,
        conn_total: AtomicUsize::new(connections),
        panic: OnceLock::new(),
    });
    let (tx, deltas) = mpsc::unbounded_channel();
    let mut spawners = Vec::with_capacity(threads);
    let mut first_conn = 0;
    for i in 0..threads {
        // Connections split evenly; the first `connections % threads` threads
        // take one more.
        let conns = connections / threads + usize::from(i < connections % threads);
        // In the open model a thread's share of the rate follows its share of
        // the connections.
        let schedule = shared.plan.rate.map(|rate| {
            let rate = rate * conns as f64 / connections as f64;
            Schedule::new(start, rate, i as f64 / threads as f64 / rate)
        });
        let shared = shared.clone();
        let tx = tx.clone();
        let conn_range = first_conn..first_conn + conns;
        first_conn += conns;
        let (spawn_tx, spawn_rx) = mpsc::unbounded_channel();
        spawners.push(spawn_tx);
        let share = conns as f64 / connections as f64;
        std::thread::Builder::new().name(format!("volley-worker-{i}")).spawn(move || {
            let watch = shared.clone();
            let body = std::panic::AssertUnwindSafe(|| {
                if uring {
                    crate::uring::worker(shared, conn_range, schedule, share, spawn_rx, tx);
                } else {
                    worker(shared, (i, threads), conn_range, schedule, share, spawn_rx, tx);
                }
            });
            // A panic outside the connection tasks (which the JoinSet catches)
            // would end the thread silently, its share never reported.
            if let Err(payload) = std::panic::catch_unwind(body) {
                watch.panicked("a worker thread", payload.as_ref());
            }
        })?;
    }
    // Re-resolution runs on the agent's runtime (the caller's) until the run is gone.
    if shared.plan.targets.every().is_some()
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        rt.spawn(crate::resolve::refresh(Arc::downgrade(&shared.plan.targets)));
    }
    let control = Control { shared: shared.clone(), spawners };
    Ok(Run { shared, deltas, threads, control })
}

/// One worker thread's state, shared by its connections (or virtual users).
pub(crate) struct Worker {
    shared: Arc<Shared>,
    recorder: RefCell<Recorder>,
    tokens: Cell<u64>,
    /// Open model: the thread's schedule and its next unclaimed slot.
    schedule: Cell<Option<Schedule>>,
    slot: Cell<u64>,
    /// Open model: this thread's share of the agent's rate, and the rate
    /// generation its schedule follows.
    rate_share: f64,
    rate_generation: Cell<u64>,
    /// When the thread's first request went out and its latest one completed.
    first_send: Cell<Option<Instant>>,
    last_done: Cell<Option<Instant>>,
    /// Requests sent and not completed, and what of it was last published
    /// to [`Shared`]'s total.
    in_flight: Cell<u64>,
    published: Cell<u64>,
    /// The target addresses as this thread sees them, with its counts by address.
    targets: crate::resolve::ThreadTargets,
}

/// Whether a request may be sent now.
pub(crate) enum Permit {
    Yes,
    /// The run is over for this connection.
    No,
    /// Count mode with an open quota: wait for a grant.
    Wait,
}

impl Worker {
    /// A thread's state for plain connections (no scenario).
    pub(crate) fn plain(shared: Arc<Shared>, schedule: Option<Schedule>, rate_share: f64) -> Rc<Worker> {
        Worker::with(shared, schedule, rate_share, Recorder::new())
    }

    fn with(shared: Arc<Shared>, schedule: Option<Schedule>, rate_share: f64, recorder: Recorder) -> Rc<Worker> {
        Rc::new(Worker {
            shared,
            recorder: RefCell::new(recorder),
            tokens: Cell::new(0),
            schedule: Cell::new(schedule),
            slot: Cell::new(0),
            rate_share,
            rate_generation: Cell::new(0),
            first_send: Cell::new(None),
            last_done: Cell::new(None),
            in_flight: Cell::new(0),
            published: Cell::new(0),
            targets: Default::default(),
        })
    }

    /// Hands the delta since the last one to the agent; stops the run if the
    /// agent is gone.
    pub(crate) fn hand_over(&self, tx: &mpsc::UnboundedSender<Totals>) {
        if tx.send(self.take_delta()).is_err() {
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Once every connection of the thread has ended: counts missed slots
    /// and hands over the last delta.
    pub(crate) fn finish(&self, tx: &mpsc::UnboundedSender<Totals>) {
        self.count_missed();
        let last = self.take_delta();
        // Nothing of this thread is in flight any more (requests cut at the
        // end were counted as cancelled).
        self.publish_in_flight(0);
        // The receiver is gone only if the agent dropped the run; nothing to do.
        let _ = tx.send(last);
    }

    /// The run's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The thread's recorder.
    pub(crate) fn recorder(&self) -> &RefCell<Recorder> {
        &self.recorder
    }

    /// The address for a connection's connect numbered `n` (see
    /// [`crate::resolve::ThreadTargets::pick`]).
    pub(crate) fn pick_target(&self, n: u64) -> Rc<crate::resolve::Target> {
        self.targets.pick(&self.shared.plan.targets, n)
    }

    /// The generation of the target addresses this thread follows.
    #[inline]
    pub(crate) fn target_generation(&self) -> u64 {
        self.targets.generation()
    }

    /// Whether a connection to `t` opened as connect `n` should move after
    /// the addresses changed (see [`crate::resolve::ThreadTargets::should_move`]).
    pub(crate) fn should_move(&self, t: &crate::resolve::Target, n: u64) -> bool {
        self.targets.should_move(t, n)
    }

    /// How many target addresses this thread knows as current.
    pub(crate) fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// Notes that a request goes out at `t` (only the first one counts).
    #[inline]
    pub(crate) fn sent_at(&self, t: Instant) {
        if self.first_send.get().is_none() {
            self.first_send.set(Some(t));
        }
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// Notes that a request completed (with or without a response) at `t`.
    #[inline]
    pub(crate) fn done_at(&self, t: Instant) {
        self.last_done.set(Some(t));
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
    }

    /// Publishes the thread's requests in flight (`level`) to the run's total.
    fn publish_in_flight(&self, level: u64) {
        let total = &self.shared.in_flight;
        total.fetch_add(level, Ordering::Relaxed);
        total.fetch_sub(self.published.replace(level), Ordering::Relaxed);
    }

    /// Everything recorded since the last call, with the thread's first-send
    /// and last-completion instants as offsets from the run's start.
    fn take_delta(&self) -> Totals {
        let mut delta = self.recorder.borrow_mut().take();
        let us = |t: Instant| t.saturating_duration_since(self.shared.start).as_micros() as u64;
        delta.first_send_us = self.first_send.get().map(us);
        delta.last_done_us = self.last_done.get().map(us);
        // Once a second: follow a re-resolution (connections to dropped
        // addresses see it after their next request) and hand over the
        // counts by address.
        self.targets.refresh(&self.shared.plan.targets);
        delta.targets = self.targets.take().into_iter().map(|(a, t)| (a.to_string(), t)).collect();
        self.publish_in_flight(self.in_flight.get());
        delta
    }

    /// Open model with a duration, once the thread is done: counts the slots
    /// that fell due before the end but were never sent. Not after a stop
    /// (a cancel or a lost controller cut the schedule short on purpose).
    fn count_missed(&self) {
        let (Some(schedule), Some(deadline)) = (self.schedule.get(), self.shared.deadline) else { return };
        if self.shared.stopped() {
            return;
        }
        let missed = schedule.slots_before(deadline, &self.shared.profile).saturating_sub(self.slot.get());
        if missed > 0 {
            self.recorder.borrow_mut().missed(missed);
        }
    }

    /// Whether a connection (or virtual user) may start another request at `now`.
    #[inline]
    pub(crate) fn may_send(&self, now: Instant) -> Permit {
        let s = &self.shared;
        if s.stop.load(Ordering::Relaxed) {
            return Permit::No;
        }
        if let Some(deadline) = s.deadline {
            return if now < deadline { Permit::Yes } else { Permit::No };
        }
        let t = self.tokens.get();
        if t > 0 {
            self.tokens.set(t - 1);
            return Permit::Yes;
        }
        let got = s.quota.take_batch();
        if got == 0 {
            return if s.quota.is_open() { Permit::Wait } else { Permit::No };
        }
        self.tokens.set(got - 1);
        Permit::Yes
    }

    /// Waits until a grant arrives, the quota closes or the run stops.
    pub(crate) async fn wait_for_grant(&self) {
        let s = &self.shared;
        let notified = s.quota.more.notified();
        tokio::pin!(notified);
        // Registered before the re-check, so a grant in between is not missed.
        notified.as_mut().enable();
        if s.quota.settled() || s.stopped() {
            return;
        }
        s.quota.dry.notify_one();
        notified.await;
    }

    /// Open model: the schedule to follow, re-based at slot `k` if the
    /// agent's rate changed since the last request.
    #[inline]
    fn schedule_at(&self, k: u64, now: Instant) -> Option<Schedule> {
        let current = self.schedule.get()?;
        let generation = self.shared.rate.generation();
        if generation == self.rate_generation.get() {
            return Some(current);
        }
        self.rate_generation.set(generation);
        let rate = self.shared.rate.rate() * self.rate_share;
        // The new rate applies from now (or from the next due slot, if the
        // schedule is behind), counting slots from k.
        let from = current.due(k, &self.shared.profile).max(now);
        let x = from.saturating_duration_since(current.start).as_secs_f64() - current.phase;
        let rebased = Schedule { rate, first_slot: k, from: x, base: self.shared.profile.integral(x), ..current };
        self.schedule.set(Some(rebased));
        Some(rebased)
    }
}

/// One worker thread: its runtime, its connections or virtual users, and its
/// snapshot ticker, until every connection has ended.
fn worker(
    shared: Arc<Shared>,
    (index, threads): (usize, usize),
    conns: std::ops::Range<usize>,
    schedule: Option<Schedule>,
    rate_share: f64,
    mut spawn: mpsc::UnboundedReceiver<std::ops::Range<usize>>,
    tx: mpsc::UnboundedSender<Totals>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            // Without a runtime this thread can do nothing; say so once and let
            // the others carry the run (their deltas still arrive).
            tracing::error!("worker thread cannot start a runtime: {e}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        tokio::time::sleep_until(shared.start.into()).await;
        shared.began();
        let mut load = match &shared.plan.scenario {
            Some(sc) => match crate::scenario::Users::new(sc, shared.plan.timeout, (index, threads)) {
                Ok(users) => Load::Users(users),
                Err(e) => {
                    // Checked when the plan was accepted; cannot happen on one thread only.
                    tracing::error!("worker thread: {e}");
                    let _ = tx.send(Totals::default());
                    return;
                }
            },
            None => Load::Connections(Connections { range: conns }),
        };
        let recorder = match &shared.plan.scenario {
            Some(sc) => Recorder::with_names(sc.compiled.names.iter().map(|(n, m)| (n.as_str(), m.as_str()))),
            None => Recorder::new(),
        };
        let w = Worker::with(shared, schedule, rate_share, recorder);
        let mut tasks = tokio::task::JoinSet::new();
        load.start(&w, &mut tasks);
        let ticker = tokio::task::spawn_local(ticker(w.clone(), tx.clone()));
        // Until every connection has ended; meanwhile the agent may ask this
        // thread to take over connections of a lost agent.
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    // A connection task only ends by returning; a panic is a
                    // bug that fails the run (the agent reports it), never hidden.
                    Some(Err(e)) => match e.try_into_panic() {
                        Ok(payload) => w.shared.panicked("a connection task", payload.as_ref()),
                        Err(e) => tracing::error!("connection task failed: {e}"),
                    },
                    Some(Ok(())) => {}
                    None => break,
                },
                Some(n) = spawn.recv() => load.take_over(&w, &mut tasks, n),
            }
        }
        ticker.abort();
        w.finish(&tx);
    });
}

/// Hands the thread's recorder delta to the agent every [`SNAPSHOT_INTERVAL`];
/// stops the run if the agent is gone.
async fn ticker(w: Rc<Worker>, tx: mpsc::UnboundedSender<Totals>) {
    let mut tick = tokio::time::interval_at((w.shared.start + SNAPSHOT_INTERVAL).into(), SNAPSHOT_INTERVAL);
    loop {
        tick.tick().await;
        w.hand_over(&tx);
    }
}

/// What a worker thread drives: plain connections, or a scenario's virtual users.
enum Load {
    Connections(Connections),
    Users(crate::scenario::Users),
}

impl Load {
    /// Starts the thread's share.
    fn start(&mut self, w: &Rc<Worker>, tasks: &mut tokio::task::JoinSet<()>) {
        match self {
            Load::Connections(c) => c.start(w, tasks),
            Load::Users(u) => u.start(w, tasks),
        }
    }

    /// Takes over more connections (or users) of a lost agent, numbered `ranks`.
    fn take_over(&mut self, w: &Rc<Worker>, tasks: &mut tokio::task::JoinSet<()>, ranks: std::ops::Range<usize>) {
        match self {
            Load::Connections(_) => {
                for rank in ranks {
                    spawn_connection(w, tasks, rank);
                }
            }
            Load::Users(u) => u.take_over(w, tasks, ranks),
        }
    }
}

/// A thread's plain connections: its range of the agent's connections.
struct Connections {
    range: std::ops::Range<usize>,
}

impl Connections {
    fn start(&self, w: &Rc<Worker>, tasks: &mut tokio::task::JoinSet<()>) {
        for rank in self.range.clone() {
            spawn_connection(w, tasks, rank);
        }
    }
}

/// Starts the agent's `rank`-th connection's tasks: one for HTTP/1.1; with
/// HTTP/2, one per stream slot, sharing one connection. It leaves from its
/// source address, if the plan names any.
fn spawn_connection(w: &Rc<Worker>, tasks: &mut tokio::task::JoinSet<()>, rank: usize) {
    let source = source_of(w, rank);
    // The connection's run-wide number: where its round-robin over the
    // target addresses starts.
    let number = w.shared.plan.first_conn.wrapping_add(rank as u64);
    if w.shared.plan.http2.is_some() {
        let group = crate::http2::Group::new(source, number);
        for _ in 0..w.shared.plan.streams {
            let slot = Client::H2(crate::http2::Slot::new(group.clone()));
            tasks.spawn_local(connection::<Tokio, _>(w.clone(), rank, slot, source));
        }
    } else {
        let client = Client::H1 { conn: None, aim: Aim::new(number) };
        tasks.spawn_local(connection::<Tokio, _>(w.clone(), rank, client, source));
    }
}

/// What a connection task sends on: its own HTTP/1.1 connection (none while
/// closed), or a stream slot of a shared HTTP/2 connection.
enum Client {
    H1 {
        conn: Option<Conn>,
        /// Where it connects, and the address it is counted on.
        aim: Aim,
    },
    H2(crate::http2::Slot),
}

impl Client {
    /// Forgets an HTTP/1.1 connection after a failure or a `close`; an HTTP/2
    /// slot decides for itself (a reset stream leaves the connection usable).
    fn drop_h1(&mut self) {
        if let Client::H1 { conn, .. } = self {
            *conn = None;
        }
    }
}

/// Closed model with a profile: whether connection `rank` may send now,
/// else (its connection closed) waits until the profile opens it again.
/// `false` when it never will before the end, or the run stopped.
async fn gate<R: Rt, C: Exchange>(s: &Shared, rank: usize, mut conn: Option<&mut C>) -> bool {
    loop {
        let now = Instant::now();
        let x = now.saturating_duration_since(s.start).as_secs_f64();
        // Connection i of C is open while level · C > i (a hair above, so
        // that a level of exactly 2/6 opens 1 of 3 connections, not 2).
        let theta = (rank as f64 + 1e-6) / s.conn_total.load(Ordering::Relaxed).max(1) as f64;
        if s.profile.level(x) > theta {
            return true;
        }
        // Closed while the profile keeps it closed: the target sees the
        // connections fall as well as rise (HTTP/2: the stream slot idles;
        // its connection stays for the group's other slots).
        if let Some(conn) = conn.as_deref_mut() {
            conn.forget();
        }
        let Some(next) = s.profile.next_above(x, theta) else { return false };
        // At least a millisecond, so that a level that only touches the
        // threshold cannot spin.
        let mut until = after(s.start, next).max(now + Duration::from_millis(1));
        if let Some(deadline) = s.deadline {
            if now >= deadline {
                return false;
            }
            until = until.min(deadline);
        }
        let halted = s.halt.notified();
        tokio::select! {
            _ = R::sleep_until(until) => {}
            _ = halted => {}
        }
        if s.stopped() {
            return false;
        }
    }
}

/// Scenario runs with stages: whether virtual user `rank` of the agent may
/// go on now, else waits until the stages make it active again; `true`
/// at once without stages, `false` when it never will before the end.
pub(crate) async fn gate_user(s: &Shared, rank: usize) -> bool {
    !s.gated || gate::<Tokio, Client>(s, rank, None).await
}

/// The source address of the agent's connection `i`, if the plan names any.
fn source_of(w: &Worker, i: usize) -> Option<std::net::IpAddr> {
    w.shared.plan.sources.as_ref().map(|s| s.for_connection(i as u64))
}

/// Drives one connection, the agent's `rank`-th (or one HTTP/2 stream slot
/// of it): request after request until the plan says stop.
pub(crate) async fn connection<R: Rt, C: Exchange>(
    w: Rc<Worker>,
    rank: usize,
    mut conn: C,
    source: Option<std::net::IpAddr>,
) {
    let s = w.shared.clone();
    let plan = &s.plan;
    let sent = plan.http2.as_ref().map_or(plan.request.len() as u64, |r| r.sent());
    // Consecutive failed connects: the pause before the next attempt doubles.
    let mut refused: u32 = 0;
    // One timer per connection, re-armed per request: no timer allocation per request.
    let timer = R::sleep_until(Instant::now() + plan.timeout);
    tokio::pin!(timer);
    // When the last request completed, if nothing has waited since: the next
    // request starts in the same turn, so that reading serves as its start
    // too (one clock read per request, not two).
    let mut just_done: Option<Instant> = None;
    loop {
        let mut t0 = just_done.take().unwrap_or_else(Instant::now);
        // Where the latency counts from, and (open model) how late the send was.
        let mut counted_from = t0;
        let mut lag = None;
        // Open model: the next slot's due time; closed model: now.
        if s.gated {
            if !gate::<R, C>(&s, rank, Some(&mut conn)).await {
                break;
            }
            t0 = Instant::now();
            counted_from = t0;
        }
        let k = w.slot.get();
        let due = w.schedule_at(k, t0).map(|schedule| schedule.due(k, &s.profile));
        match w.may_send(due.unwrap_or(t0)) {
            Permit::Yes => {}
            Permit::No => break,
            Permit::Wait => {
                w.wait_for_grant().await;
                continue;
            }
        }
        if let Some(due) = due {
            // The end has passed: a slot due before it is missed, not sent late.
            if s.deadline.is_some_and(|end| t0 >= end) {
                break;
            }
            w.slot.set(k + 1);
            if due > t0 {
                // Never past the end (a profile ending at 0 has no more slots
                // due), and a stop wakes the wait.
                let until = s.deadline.map_or(due, |end| due.min(end));
                let halted = s.halt.notified();
                tokio::select! {
                    _ = R::sleep_until(until) => {}
                    _ = halted => {}
                }
                if s.stop.load(Ordering::Relaxed) || s.deadline.is_some_and(|end| due >= end) {
                    // The slot was not due before the end: not missed either.
                    w.slot.set(k);
                    break;
                }
                t0 = Instant::now();
                counted_from = t0;
                lag = Some(Duration::ZERO);
            } else {
                counted_from = due;
                lag = Some(t0 - due);
            }
        }
        // Duration mode: past the end, a request gets only the grace.
        let timeout_at = t0 + plan.timeout;
        let (until, cut) = match s.cut_off {
            Some(cut) if cut < timeout_at => (cut, true),
            _ => (timeout_at, false),
        };
        R::reset(timer.as_mut(), until);
        w.sent_at(t0);
        let result = tokio::select! {
            biased;
            r = conn.round_trip(&w, source) => r,
            _ = &mut timer => {
                if cut {
                    // Sent, but no answer within the grace: cancelled, not failed.
                    w.recorder.borrow_mut().cancelled();
                    break;
                }
                Err(ErrorClass::Timeout)
            }
        };
        let end = Instant::now();
        w.done_at(end);
        conn.count(&w, result.as_ref().is_ok_and(|r| plan.success.accepts(r.status)));
        let failed = match result {
            Ok(resp) => {
                let mut rec = w.recorder.borrow_mut();
                rec.response(resp.status, plan.success.accepts(resp.status), end - counted_from, sent, resp.received);
                if let Some(lag) = lag {
                    rec.scheduled(end - t0, lag);
                }
                if resp.close {
                    conn.forget();
                }
                false
            }
            Err(class) => {
                // A failed connect or TLS handshake wrote none of the request.
                let connect_failed = matches!(
                    class,
                    ErrorClass::ConnectRefused | ErrorClass::ConnectTimeout | ErrorClass::Connect | ErrorClass::Tls
                );
                w.recorder.borrow_mut().error(class, if connect_failed { 0 } else { sent });
                conn.forget();
                if connect_failed {
                    refused = refused.saturating_add(1);
                    // A dead target is not hammered with connects: each
                    // attempt still counts as an error, but the next waits
                    // longer, never past the run's end.
                    let mut until = Instant::now() + connect_backoff(refused);
                    if let Some(deadline) = s.deadline {
                        until = until.min(deadline);
                    }
                    R::sleep_until(until).await;
                    continue;
                }
                true
            }
        };
        if failed {
            // A refused target fails at once; let the thread's other tasks
            // (and its snapshot ticker) run between attempts.
            R::yield_now().await;
        } else {
            refused = 0;
            just_done = Some(end);
        }
    }
}

/// Longest pause between connect attempts of one connection to a target
/// that refuses them.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// The pause after the `n`th failed connect in a row: 1 ms, doubling, up to
/// [`MAX_CONNECT_BACKOFF`].
fn connect_backoff(n: u32) -> Duration {
    Duration::from_millis(1u64 << n.saturating_sub(1).min(16)).min(MAX_CONNECT_BACKOFF)
}

impl Exchange for Client {
    fn forget(&mut self) {
        self.drop_h1();
    }

    #[inline]
    fn count(&mut self, w: &Worker, ok: bool) {
        match self {
            Client::H1 { conn, aim } => {
                if aim.count(w, ok, conn.is_some()) {
                    *conn = None;
                }
            }
            Client::H2(slot) => slot.count(w, ok),
        }
    }

    async fn round_trip(
        &mut self,
        w: &Rc<Worker>,
        source: Option<std::net::IpAddr>,
    ) -> Result<crate::http1::Response, ErrorClass> {
        let plan = &w.shared.plan;
        let (conn, aim) = match self {
            Client::H1 { conn, aim } => (conn, aim),
            Client::H2(slot) => {
                // Set whenever the slots are HTTP/2 (see `spawn_connection`).
                let Some(request) = &plan.http2 else { return Err(ErrorClass::Protocol) };
                return slot.round_trip(request, w).await;
            }
        };
        let c = match conn {
            Some(c) => c,
            None => {
                // Boxed: the connect and TLS handshake states are large, and
                // inline they would size every connection's task for its whole
                // life; one allocation per connect, none per request.
                let c = aim
                    .connect(w, |addr| Box::pin(Conn::connect(addr, source, plan.timeout, plan.tls.as_ref())))
                    .await?;
                conn.insert(c)
            }
        };
        c.round_trip(&plan.request).await
    }
}

/// Where a connection goes (both engines, HTTP/1.1 and HTTP/2): its place
/// in the round-robin over the target's addresses (`--resolve-each`), and
/// the address it is counted on. Cells, so that an HTTP/2 group's slots
/// can share one; no borrow is held across an await.
#[derive(Debug, Default)]
pub(crate) struct Aim {
    /// The address of the connection (or of the last connect tried).
    target: RefCell<Option<Rc<crate::resolve::Target>>>,
    /// The number of the next connect, for the round-robin over addresses.
    next: Cell<u64>,
    /// The generation of the addresses when it connected, or when a
    /// re-resolution was last looked at.
    generation: Cell<u64>,
}

impl Aim {
    /// The aim of the run's connection `number` (its first address).
    pub(crate) fn new(number: u64) -> Aim {
        Aim { next: Cell::new(number), ..Aim::default() }
    }

    /// The address of the connection (or of the last connect tried).
    pub(crate) fn target(&self) -> Option<Rc<crate::resolve::Target>> {
        self.target.borrow().clone()
    }

    /// Connects with `open` to the next address in the round-robin, counting
    /// the connect. An address that refuses is passed over for the next one
    /// at once (as curl and browsers do): the connect fails only when every
    /// address refused.
    pub(crate) async fn connect<T, F, Fut>(&self, w: &Worker, mut open: F) -> Result<T, ErrorClass>
    where
        F: FnMut(std::net::SocketAddr) -> Fut,
        Fut: std::future::Future<Output = Result<T, ErrorClass>>,
    {
        let mut tries = 1;
        let (c, t) = loop {
            let t = w.pick_target(self.next.get());
            self.next.set(self.next.get().wrapping_add(1));
            *self.target.borrow_mut() = Some(t.clone());
            match open(t.addr).await {
                Ok(c) => break (c, t),
                Err(ErrorClass::ConnectRefused) if tries < w.target_count() => tries += 1,
                Err(e) => return Err(e),
            }
        };
        w.recorder.borrow_mut().connect();
        self.generation.set(w.target_generation());
        t.connected();
        Ok(c)
    }

    /// Whether the connection opened last should close (after its current
    /// request) and reconnect: a re-resolution changed the addresses since
    /// it was last looked at, and its place in the round-robin moved (or
    /// its address left). The next connect then takes its place.
    #[inline]
    pub(crate) fn moved(&self, w: &Worker) -> bool {
        let now = w.target_generation();
        if self.generation.get() == now {
            return false;
        }
        self.generation.set(now);
        let n = self.next.get().wrapping_sub(1);
        let moved = self.target.borrow().as_ref().is_some_and(|t| w.should_move(t, n));
        if moved {
            self.next.set(n);
        }
        moved
    }

    /// Counts a request on the connection's address; `true` when the
    /// connection (`open`) should close now and reconnect ([`Aim::moved`]).
    #[inline]
    pub(crate) fn count(&self, w: &Worker, ok: bool, open: bool) -> bool {
        match &*self.target.borrow() {
            Some(t) => t.request(!ok),
            None => return false,
        }
        open && self.moved(w)
    }
}

/// What the connection loop needs of the runtime it runs on: timers and a
/// yield. The epoll engine's is [`Tokio`]; the io_uring engine's is in
/// [`crate::uring`]. Everything else (grants, schedule, gate, recorder) is
/// the same code on both.
pub(crate) trait Rt {
    /// A timer that can be re-armed without allocating (one per connection).
    type Timer: std::future::Future<Output = ()>;
    /// A timer firing at `at`.
    fn sleep_until(at: Instant) -> Self::Timer;
    /// Re-arms `timer` for `at`.
    fn reset(timer: std::pin::Pin<&mut Self::Timer>, at: Instant);
    /// Lets the thread's other tasks run.
    fn yield_now() -> impl std::future::Future<Output = ()>;
}

/// How a connection task sends one request and reads its answer.
pub(crate) trait Exchange {
    /// One round trip, connecting first if the connection is closed.
    fn round_trip(
        &mut self,
        w: &Rc<Worker>,
        source: Option<std::net::IpAddr>,
    ) -> impl std::future::Future<Output = Result<crate::http1::Response, ErrorClass>>;
    /// Forgets an HTTP/1.1 connection after a failure or a `close` (the next
    /// round trip connects again).
    fn forget(&mut self);
    /// Counts a finished request on the connection's target address (and
    /// moves the connection if a re-resolution says so).
    fn count(&mut self, w: &Worker, ok: bool);
}

/// The epoll engine's runtime: the worker thread's current-thread tokio.
pub(crate) struct Tokio;

impl Rt for Tokio {
    type Timer = tokio::time::Sleep;

    fn sleep_until(at: Instant) -> Self::Timer {
        tokio::time::sleep_until(at.into())
    }

    fn reset(timer: std::pin::Pin<&mut Self::Timer>, at: Instant) {
        timer.reset(at.into());
    }

    fn yield_now() -> impl std::future::Future<Output = ()> {
        tokio::task::yield_now()
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn connect_backoff_doubles_up_to_its_cap() {
        let pauses: Vec<u64> = (1..=8).map(|n| connect_backoff(n).as_millis() as u64).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 50, 50]);
        assert_eq!(connect_backoff(u32::MAX), MAX_CONNECT_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_arithmetic_saturates() {
        let now = Instant::now();
        for secs in [1e300, f64::INFINITY, f64::MAX, 1e19] {
            assert_eq!(after(now, secs), now + FAR, "{secs}");
        }
        for secs in [f64::NAN, -1.0, f64::NEG_INFINITY, 0.0] {
            assert_eq!(after(now, secs), now, "{secs}");
        }
        assert_eq!(after(now, 1.5), now + Duration::from_millis(1500));
        // The rates of the issue: 1e-300 and 1e-19 per second, any slot.
        for rate in [1e-300, 1e-19, f64::MIN_POSITIVE] {
            for profile in [Profile::flat(), Profile::ramp(1e9)] {
                let s = Schedule::new(now, rate, 1.0 / rate);
                for k in [0, 1, u64::MAX] {
                    assert!(s.due(k, &profile) >= now, "rate {rate}, slot {k}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_panic_fails_the_run_and_stops_it() {
        let plan = volley_proto::RunPlan {
            protocol_version: volley_proto::PROTOCOL_VERSION,
            url: "http://127.0.0.1:9/".into(),
            connections: 2,
            limit: Some(volley_proto::run_plan::Limit::DurationMs(60_000)),
            ..Default::default()
        };
        let plan = Plan::from_proto(plan, 2).await.unwrap();
        let mut run = start(plan).unwrap();
        assert!(run.panic().is_none());
        run.shared.panicked("a connection task", &"boom");
        run.shared.panicked("a worker thread", &String::from("second"));
        assert_eq!(run.panic(), Some("a connection task panicked: boom"), "the first panic is kept");
        // The run stops: every worker ends well before its minute.
        let ended = tokio::time::timeout(Duration::from_secs(20), async { while run.next_delta().await.is_some() {} });
        assert!(ended.await.is_ok(), "the workers did not stop");
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    /// `slots_before` agrees with `due` exactly, with and without a ramp,
    /// with stages and after a re-basing.
    #[test]
    fn slots_before_counts_the_slots_due_by_then() {
        let start = Instant::now();
        let stages = Profile::from_stages([(0.5, 0.5), (1.0, 0.5), (0.0, 1.0), (1.0, 0.2), (0.5, 0.0)]);
        let rebased =
            Schedule { first_slot: 4321, from: 1.2, base: stages.integral(1.2), ..Schedule::new(start, 50.0, 0.0) };
        let schedules = [
            (Schedule::new(start, 1000.0, 0.0003), Profile::flat()),
            (Schedule::new(start, 333.3, 0.001), Profile::ramp(1.5)),
            (Schedule { first_slot: 4321, ..Schedule::new(start, 50.0, 0.0) }, Profile::flat()),
            (Schedule::new(start, 400.0, 0.001), stages.clone()),
            (rebased, stages),
        ];
        for (s, p) in &schedules {
            for ms in [0, 1, 7, 250, 999, 1000, 1200, 1499, 1500, 2000, 2700, 3333] {
                let t = start + Duration::from_millis(ms);
                let brute = (s.first_slot..).find(|&k| s.due(k, p) >= t).unwrap();
                assert_eq!(s.slots_before(t, p), brute, "{s:?} at {ms} ms");
            }
        }
        // Stages: the slots due follow the profile's integral, 400/s at level 1.
        let (s, p) = &schedules[3];
        let at = |secs: f64| s.slots_before(start + Duration::from_secs_f64(secs), p) as f64;
        assert!((at(1.5) - at(0.5) - 200.0).abs() <= 1.0, "a plateau at 200/s");
        assert!((at(10.0) - 400.0 * p.integral(3.0)).abs() <= 1.0, "nothing after the profile ends at 0");
        let idle = Schedule { first_slot: 7, ..Schedule::new(start, 0.0, 0.0) };
        assert_eq!(idle.slots_before(start + Duration::from_secs(5), &Profile::flat()), 7);
    }
}
