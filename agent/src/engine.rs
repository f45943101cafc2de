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

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use volley_stats::{ErrorClass, Recorder, Totals};

use crate::http1::Conn;
use crate::plan::{Limit, Plan};

/// How often worker threads hand over their deltas.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// State shared by all worker threads of one run.
#[derive(Debug)]
struct Shared {
    plan: Plan,
    stop: AtomicBool,
    /// Requests not yet handed to any thread (count mode).
    remaining: AtomicU64,
    /// Tokens a thread takes from `remaining` at once.
    batch: u64,
    /// When the workers begin.
    start: Instant,
    /// When duration mode stops starting requests.
    deadline: Option<Instant>,
    /// When the first worker really began, by the wall clock.
    first_wake: OnceLock<SystemTime>,
    /// Wakes whoever waits for the first worker to begin.
    woke: tokio::sync::Notify,
}

/// A handle that stops a run early; in-flight requests still complete.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// Asks every worker to stop starting new requests.
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// A run in progress.
#[derive(Debug)]
pub struct Run {
    shared: Arc<Shared>,
    deltas: mpsc::UnboundedReceiver<Totals>,
    threads: usize,
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

    /// Time since the workers began (zero before the start instant).
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.shared.start)
    }

    /// When the workers begin.
    pub fn start_instant(&self) -> Instant {
        self.shared.start
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
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    /// Requests per second at full rate.
    rate: f64,
    /// Ramp-up time in seconds: the rate grows linearly from zero over it.
    ramp: f64,
    /// Offset in seconds, so threads interleave instead of firing together.
    phase: f64,
}

impl Schedule {
    /// When slot `k` (counting from zero) is due. With a linear ramp the number
    /// of slots due by time t is r·t²/(2d) until d, then r·d/2 + r·(t − d);
    /// this inverts it.
    fn due(&self, k: u64) -> Instant {
        let (k, r, d) = (k as f64, self.rate, self.ramp);
        let secs = if d > 0.0 && k < r * d / 2.0 { (2.0 * d * k / r).sqrt() } else { d / 2.0 + k / r };
        self.start + Duration::from_secs_f64(secs + self.phase)
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
        Limit::Requests(n) => (n / (plan.connections as u64 * 8)).clamp(1, 64),
        Limit::Duration(_) => u64::MAX,
    };
    let connections = plan.connections;
    let shared = Arc::new(Shared {
        plan,
        stop: AtomicBool::new(false),
        remaining: AtomicU64::new(remaining),
        batch,
        start,
        deadline,
        first_wake: OnceLock::new(),
        woke: tokio::sync::Notify::new(),
    });
    let (tx, deltas) = mpsc::unbounded_channel();
    let mut first_conn = 0;
    for i in 0..threads {
        // Connections split evenly; the first `connections % threads` threads
        // take one more.
        let conns = connections / threads + usize::from(i < connections % threads);
        // In the open model a thread's share of the rate follows its share of
        // the connections.
        let schedule = shared.plan.rate.map(|rate| {
            let rate = rate * conns as f64 / connections as f64;
            Schedule { start, rate, ramp: shared.plan.ramp_up.as_secs_f64(), phase: i as f64 / threads as f64 / rate }
        });
        let shared = shared.clone();
        let tx = tx.clone();
        let conn_range = first_conn..first_conn + conns;
        first_conn += conns;
        std::thread::Builder::new()
            .name(format!("volley-worker-{i}"))
            .spawn(move || worker(shared, conn_range, schedule, tx))?;
    }
    Ok(Run { shared, deltas, threads })
}

/// Per-thread state shared by that thread's connections.
struct Worker {
    shared: Arc<Shared>,
    recorder: RefCell<Recorder>,
    tokens: Cell<u64>,
    /// Open model: the thread's schedule and its next unclaimed slot.
    schedule: Option<Schedule>,
    slot: Cell<u64>,
}

impl Worker {
    /// Whether a connection may start another request at `now`.
    #[inline]
    fn may_send(&self, now: Instant) -> bool {
        let s = &self.shared;
        if s.stop.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(deadline) = s.deadline {
            return now < deadline;
        }
        let t = self.tokens.get();
        if t > 0 {
            self.tokens.set(t - 1);
            return true;
        }
        let got = s
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| (r > 0).then(|| r - r.min(s.batch)))
            .map_or(0, |before| before.min(s.batch));
        if got == 0 {
            return false;
        }
        self.tokens.set(got - 1);
        true
    }
}

fn worker(
    shared: Arc<Shared>,
    conns: std::ops::Range<usize>,
    schedule: Option<Schedule>,
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
        if shared.first_wake.set(SystemTime::now()).is_ok() {
            shared.woke.notify_waiters();
        }
        let total_conns = shared.plan.connections;
        // Closed model with a ramp: connection i of the agent's C begins at
        // ramp·i/C, so the active connections grow linearly.
        let ramp = if schedule.is_none() { shared.plan.ramp_up } else { Duration::ZERO };
        let w = Rc::new(Worker {
            shared,
            recorder: RefCell::new(Recorder::new()),
            tokens: Cell::new(0),
            schedule,
            slot: Cell::new(0),
        });
        let mut handles = Vec::with_capacity(conns.len());
        for i in conns {
            let delay = ramp.mul_f64(i as f64 / total_conns as f64);
            handles.push(tokio::task::spawn_local(connection(w.clone(), delay)));
        }
        let ticker = {
            let (w, tx) = (w.clone(), tx.clone());
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval_at((w.shared.start + SNAPSHOT_INTERVAL).into(), SNAPSHOT_INTERVAL);
                loop {
                    tick.tick().await;
                    let delta = w.recorder.borrow_mut().take();
                    if tx.send(delta).is_err() {
                        w.shared.stop.store(true, Ordering::Relaxed);
                    }
                }
            })
        };
        for h in handles {
            // A connection task only ends by returning; a panic would be a bug
            // we want to see, not hide.
            if let Err(e) = h.await {
                tracing::error!("connection task failed: {e}");
            }
        }
        ticker.abort();
        let last = w.recorder.borrow_mut().take();
        // The receiver is gone only if the agent dropped the run; nothing to do.
        let _ = tx.send(last);
    });
}

/// Drives one connection: request after request until the plan says stop.
async fn connection(w: Rc<Worker>, delay: Duration) {
    let s = w.shared.clone();
    let plan = &s.plan;
    let sent = plan.request.len() as u64;
    if !delay.is_zero() {
        tokio::time::sleep_until((s.start + delay).into()).await;
    }
    let mut conn: Option<Conn> = None;
    // One timer per connection, re-armed per request: no timer allocation per request.
    let timer = tokio::time::sleep(plan.timeout);
    tokio::pin!(timer);
    loop {
        let mut t0 = tokio::time::Instant::now();
        // Where the latency counts from, and (open model) how late the send was.
        let mut counted_from = t0;
        let mut lag = None;
        if let Some(schedule) = &w.schedule {
            let k = w.slot.get();
            let due = schedule.due(k);
            if !w.may_send(due) {
                break;
            }
            w.slot.set(k + 1);
            if due > t0.into_std() {
                tokio::time::sleep_until(due.into()).await;
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                t0 = tokio::time::Instant::now();
                counted_from = t0;
                lag = Some(Duration::ZERO);
            } else {
                counted_from = due.into();
                lag = Some(t0.into_std() - due);
            }
        } else if !w.may_send(t0.into_std()) {
            break;
        }
        timer.as_mut().reset(t0 + plan.timeout);
        let result = tokio::select! {
            biased;
            r = round_trip(&mut conn, &w) => r,
            _ = &mut timer => Err(ErrorClass::Timeout),
        };
        let failed = match result {
            Ok(resp) => {
                let end = tokio::time::Instant::now();
                let mut rec = w.recorder.borrow_mut();
                rec.response(resp.status, plan.success.accepts(resp.status), end - counted_from, sent, resp.received);
                if let Some(lag) = lag {
                    rec.scheduled(end - t0, lag);
                }
                if resp.close {
                    conn = None;
                }
                false
            }
            Err(class) => {
                let connect_failed =
                    matches!(class, ErrorClass::ConnectRefused | ErrorClass::ConnectTimeout | ErrorClass::Connect);
                w.recorder.borrow_mut().error(class, if connect_failed { 0 } else { sent });
                conn = None;
                true
            }
        };
        if failed {
            // A refused target fails at once; let the thread's other tasks
            // (and its snapshot ticker) run between attempts.
            tokio::task::yield_now().await;
        }
    }
}

async fn round_trip(conn: &mut Option<Conn>, w: &Worker) -> Result<crate::http1::Response, ErrorClass> {
    let plan = &w.shared.plan;
    let c = match conn {
        Some(c) => c,
        None => {
            let c = Conn::connect(plan.addr, plan.timeout).await?;
            w.recorder.borrow_mut().connect();
            conn.insert(c)
        }
    };
    c.round_trip(&plan.request).await
}
