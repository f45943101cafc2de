//! The io_uring engine (`agent --io uring`): the plain `http://` HTTP/1.1
//! path on a [monoio] runtime per worker thread instead of tokio's epoll one.
//!
//! Only the I/O differs. A uring worker thread runs the same connection loop
//! as an epoll one ([`crate::engine::connection`]: grants, open-model
//! schedule, stages gate, take-overs, end grace), the same request bytes and
//! parser ([`crate::http1::Conn`], here over [`UringStream`]) and the same
//! recorder; it hands its deltas to the agent over the same channel. What it
//! saves is the kernel path: each write and read is a submission queue
//! entry, submitted in one `io_uring_enter` per loop turn for all of the
//! thread's connections, instead of one `write` and one or more `read`
//! system calls per request plus `epoll_wait`.
//!
//! The engine is chosen when the agent starts ([`resolve`]): `auto` probes
//! io_uring (the kernel may lack it or disable it with
//! `kernel.io_uring_disabled`; container runtimes' default seccomp profiles
//! block it) and falls back to epoll, `uring` insists (and fails with the
//! reason), `epoll` never tries. Runs io_uring does not cover here (TLS,
//! HTTP/2, scenarios, `--source-addr`) go to the epoll engine and say so
//! ([`for_run`]).
//!
//! Why monoio: of the maintained Rust io_uring runtimes it gives a safe,
//! owned-buffer API over a thread-per-core runtime (the agent's shape), with
//! no allocation per operation (operations live in a slab, their buffers in
//! the future), timers that re-arm in place, and wakers that other threads
//! may use (the grants and the stop arrive from the agent's tokio side).
//! compio is more actively developed and offers provided buffers and
//! multishot receive, but boxes every operation; tokio-uring moves slowly.
//! See the book's io_uring chapter for the comparison and the figures.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use tokio::sync::mpsc;
use volley_stats::{ErrorClass, Totals};

use crate::engine::{Aim, Exchange, Rt, Schedule, Shared, Worker};
use crate::http1::{Conn, Response, Wire};
use crate::plan::Plan;

/// Submission queue entries per worker thread's ring: enough for every
/// connection of a wide thread to have a read in flight without the queue
/// filling (monoio submits early when it does).
const RING_ENTRIES: u32 = 1024;

/// The `--io` choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    /// io_uring if this host allows it, else epoll.
    #[default]
    Auto,
    /// io_uring, or refuse to start.
    Uring,
    /// epoll (tokio), never io_uring.
    Epoll,
}

/// The engine a run's worker threads use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    /// tokio over epoll: every feature.
    #[default]
    Epoll,
    /// monoio over io_uring: plain `http://` HTTP/1.1.
    Uring,
}

impl Engine {
    /// The name shown in the ready line, `Describe` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Epoll => "epoll",
            Engine::Uring => "io_uring",
        }
    }
}

/// The agent's engine as resolved at start, and why `auto` fell back, if it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The engine plain HTTP/1.1 runs use.
    pub engine: Engine,
    /// `auto` fell back to epoll: why io_uring is not available.
    pub fallback: Option<String>,
}

impl Resolved {
    /// As the ready line and `Describe` say it: `io_uring`, or `epoll`
    /// with the reason `auto` did not pick io_uring.
    pub fn describe(&self) -> String {
        match &self.fallback {
            Some(why) => format!("{} ({why})", self.engine.name()),
            None => self.engine.name().to_owned(),
        }
    }
}

/// Resolves `--io`: `uring` fails with the reason when io_uring is not
/// available here; `auto` falls back to epoll and keeps the reason.
pub fn resolve(choice: IoChoice) -> Result<Resolved, String> {
    match choice {
        IoChoice::Epoll => Ok(Resolved { engine: Engine::Epoll, fallback: None }),
        IoChoice::Uring => {
            probe().map_err(|why| format!("--io uring: {why}; run with --io epoll (or --io auto to fall back)"))?;
            Ok(Resolved { engine: Engine::Uring, fallback: None })
        }
        IoChoice::Auto => Ok(match probe() {
            Ok(()) => Resolved { engine: Engine::Uring, fallback: None },
            Err(why) => Resolved { engine: Engine::Epoll, fallback: Some(format!("io_uring unavailable: {why}")) },
        }),
    }
}

/// Whether this process may use io_uring: it sets up a small ring the way
/// the workers will. The error says why not, in words an operator can act on.
pub fn probe() -> Result<(), String> {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    let disabled = disabled.as_deref().map(str::trim).filter(|v| *v != "0");
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(8).build() {
        Ok(_) => Ok(()),
        Err(e) => Err(match (e.raw_os_error(), disabled) {
            (_, Some(v)) => format!("the kernel disables it (kernel.io_uring_disabled = {v}): {e}"),
            // EPERM: a seccomp filter (Docker's and containerd's default
            // profiles) or a kernel policy refuses io_uring_setup.
            (Some(1), None) => format!("io_uring_setup is not permitted (a seccomp profile blocks it?): {e}"),
            // ENOSYS: no io_uring in this kernel, or a filter answering so.
            (Some(38), None) => {
                format!("the kernel has no io_uring (Linux 5.6 or later needed) or a seccomp profile blocks it: {e}")
            }
            _ => format!("io_uring_setup failed: {e}"),
        }),
    }
}

/// The engine `plan` runs on, given the agent's resolved one, and why a
/// uring agent runs it on epoll, if it does.
pub fn for_run(plan: &Plan, agent: Engine) -> (Engine, Option<&'static str>) {
    if agent == Engine::Epoll {
        return (Engine::Epoll, None);
    }
    let why = if plan.scenario.is_some() {
        "scenarios run on epoll"
    } else if plan.tls.is_some() {
        "TLS runs on epoll"
    } else if plan.http2.is_some() {
        "HTTP/2 runs on epoll"
    } else if plan.sources.is_some() {
        "--source-addr runs on epoll"
    } else {
        return (Engine::Uring, None);
    };
    (Engine::Epoll, Some(why))
}

/// The uring engine's runtime, for the shared connection loop.
struct Monoio;

impl Rt for Monoio {
    type Timer = monoio::time::Sleep;

    fn sleep_until(at: Instant) -> Self::Timer {
        monoio::time::sleep_until(monoio::time::Instant::from_std(at))
    }

    fn reset(timer: std::pin::Pin<&mut Self::Timer>, at: Instant) {
        timer.reset(monoio::time::Instant::from_std(at));
    }

    fn yield_now() -> impl std::future::Future<Output = ()> {
        YieldNow(false)
    }
}

/// Pending once (after asking to be polled again), then ready.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A TCP stream on io_uring. Reads use owned buffers (the kernel writes
/// into them after the call returns), so a connection keeps its read buffer
/// for its life rather than borrowing one from the thread's pool.
#[derive(Debug)]
pub struct UringStream(monoio::net::TcpStream);

impl Wire for UringStream {
    #[inline]
    async fn send(&mut self, bytes: &Bytes) -> std::io::Result<()> {
        // A clone of `Bytes` is a reference count, not a copy.
        let (r, _) = self.0.write_all(bytes.clone()).await;
        r.map(drop)
    }

    #[inline]
    async fn recv(&mut self, buf: &mut Vec<u8>, end: usize) -> std::io::Result<usize> {
        if buf.is_empty() {
            *buf = crate::http1::new_buffer();
        }
        // A boxed slice's length is its capacity, and a read into it leaves
        // its length alone (a Vec's would be cut to what was read); the
        // conversions reuse the allocation.
        let owned = std::mem::take(buf).into_boxed_slice();
        let (r, owned) = self.0.read(owned.slice_mut(end..)).await;
        *buf = owned.into_inner().into_vec();
        r
    }

    fn pooled(&self) -> bool {
        false
    }
}

/// Connects within `timeout`, with TCP_NODELAY; errors classed as connect errors.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<UringStream, ErrorClass> {
    let stream = match monoio::time::timeout(timeout, monoio::net::TcpStream::connect_addr(addr)).await {
        Err(_) => return Err(ErrorClass::ConnectTimeout),
        Ok(Err(e)) => return Err(crate::connect::connect_error(&e)),
        Ok(Ok(s)) => s,
    };
    stream.set_nodelay(true).map_err(|e| ErrorClass::of_io(&e))?;
    Ok(UringStream(stream))
}

/// A uring connection task's client: its connection (none while closed),
/// and where it connects.
struct Client {
    conn: Option<Conn<UringStream>>,
    aim: Aim,
}

impl Exchange for Client {
    fn forget(&mut self) {
        self.conn = None;
    }

    #[inline]
    fn count(&mut self, w: &Worker, ok: bool) {
        if self.aim.count(w, ok, self.conn.is_some()) {
            self.conn = None;
        }
    }

    async fn round_trip(&mut self, w: &Rc<Worker>, _: Option<std::net::IpAddr>) -> Result<Response, ErrorClass> {
        let plan = &w.shared().plan;
        let c = match &mut self.conn {
            Some(c) => c,
            None => {
                // Boxed, as on epoll: the connect state would otherwise size
                // every connection's task for its whole life.
                let stream = self.aim.connect(w, |addr| Box::pin(connect(addr, plan.timeout))).await?;
                self.conn.insert(Conn::over(stream))
            }
        };
        c.round_trip(&plan.request).await
    }
}

/// A worker thread's runtime, its ring set up for one thread that waits
/// for its completions (see [`ring_setups`]); the plainest ring when the
/// kernel knows none of the setups.
fn runtime() -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut tried = Err(std::io::Error::other("no ring setup tried"));
    for setup in ring_setups() {
        tried = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(setup)
            .enable_timer()
            .build();
        match &tried {
            // EINVAL: a flag this kernel does not know; try the next setup.
            Err(e) if e.raw_os_error() == Some(22) => continue,
            _ => break,
        }
    }
    tried
}

/// The ring setups a worker tries, in order of preference.
///
/// By default the kernel finishes an operation whose data arrived (the
/// receive of a response the target sent from another CPU) as task work that
/// notifies the thread at once, wherever it is, the way a signal would. A
/// worker's ring is used by its own thread only, and the thread collects
/// completions only when it waits for them, so:
///
/// - `DEFER_TASKRUN` (Linux 6.1, with `SINGLE_ISSUER`): the kernel posts
///   completions only when the thread waits for them, all at once;
/// - `COOP_TASKRUN` (Linux 5.19): no interrupt, completions posted at the
///   thread's next system call;
/// - neither, on older kernels.
///
/// In a profile at full speed the task work moved from those notifications
/// (8 % of the thread's CPU in `tctx_task_work`) into the wait; the CPU per
/// request did not move measurably (see the book's io_uring chapter).
fn ring_setups() -> [io_uring::Builder; 3] {
    let mut deferred = io_uring::IoUring::builder();
    deferred.setup_single_issuer().setup_defer_taskrun();
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    [deferred, coop, io_uring::IoUring::builder()]
}

/// One uring worker thread: its monoio runtime, its connections and its
/// snapshot ticker, until every connection has ended. The counterpart of the
/// epoll engine's worker, with the same hand-overs to the agent.
pub(crate) fn worker(
    shared: Arc<Shared>,
    conns: std::ops::Range<usize>,
    schedule: Option<Schedule>,
    rate_share: f64,
    mut spawn: mpsc::UnboundedReceiver<std::ops::Range<usize>>,
    tx: mpsc::UnboundedSender<Totals>,
) {
    let mut runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            // The agent probed io_uring at start; if a ring fails now (out of
            // locked memory?) the run must not pass as done without this share.
            shared.fail(&format!("a worker thread cannot set up io_uring: {e}"));
            let _ = tx.send(Totals::default());
            return;
        }
    };
    runtime.block_on(async move {
        monoio::time::sleep_until(monoio::time::Instant::from_std(shared.start)).await;
        shared.began();
        let w = Worker::plain(shared, schedule, rate_share);
        // Connections still running, and a wake-up when one ends (a permit
        // is kept if nobody waits yet, so no end is missed).
        let live = Rc::new(Cell::new(0usize));
        let ended = Rc::new(tokio::sync::Notify::new());
        let open = |rank: usize| {
            let source = None;
            let (w, live, ended) = (w.clone(), live.clone(), ended.clone());
            live.set(live.get() + 1);
            // The connection's run-wide number: where its round-robin over
            // the target addresses starts (as on epoll).
            let aim = Aim::new(w.shared().plan.first_conn.wrapping_add(rank as u64));
            monoio::spawn(async move {
                crate::engine::connection::<Monoio, _>(w, rank, Client { conn: None, aim }, source).await;
                live.set(live.get() - 1);
                ended.notify_one();
            });
        };
        for rank in conns {
            open(rank);
        }
        // The snapshot ticker is a branch of this loop, not a task: the
        // runtime does not drop tasks left when `block_on` returns, and a
        // ticker task would keep the delta channel open after the last delta.
        let first = monoio::time::Instant::from_std(w.shared().start + crate::engine::SNAPSHOT_INTERVAL);
        let mut tick = monoio::time::interval_at(first, crate::engine::SNAPSHOT_INTERVAL);
        // Until every connection has ended; meanwhile the agent may ask this
        // thread to take over connections of a lost agent.
        while live.get() > 0 {
            tokio::select! {
                _ = ended.notified() => {}
                Some(ranks) = spawn.recv() => ranks.for_each(&open),
                _ = tick.tick() => w.hand_over(&tx),
            }
        }
        w.finish(&tx);
    });
}
