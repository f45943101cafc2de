//! Scenario runs: virtual users on the engine's worker threads.
//!
//! Each virtual user is a task on one worker thread's runtime (thousands per
//! thread are cheap): it runs its user type's setup once (retrying after its
//! think time if a step fails, as a person would log in again), then picks a
//! request by weight, sends it, checks it, and thinks, until the run stops.
//! Every request takes a permit from the engine exactly like a plain
//! request, so count mode sends exactly `n` (setup included) and duration
//! mode stops on time.
//!
//! Requests go through one `reqwest` client per worker thread (connection
//! pool, TLS, HTTP/2, redirects to the same host); cookies are kept per
//! virtual user by hand so users do not share a session. Results are recorded
//! in the thread's recorder overall and by request name, with each failure's
//! message (a failed assertion's, or the error class).
//!
//! Feeders: each worker thread keeps its own place in each feeder's rows
//! ([`Cursors`]), so taking a row needs no lock. A unique feeder's rows on
//! this agent (its disjoint slice) are dealt to the threads interleaved,
//! as users are: thread `t` of `T` takes rows `t, t + T, t + 2T, …`, so
//! every row goes at most once to one user of the cluster. A cycle feeder
//! runs one round-robin over the cluster the same way, starting at the
//! run-wide index of the agent's first user; a random one picks any row.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_scenario::feeder::{Mode, OnExhausted, Per, Table};
use volley_scenario::{Compiled, CompiledStep, CompiledUser, Escape, Vars};
use volley_stats::ErrorClass;

use crate::engine::{Permit, Worker};

/// A scenario plan: what the virtual users run.
#[derive(Debug)]
pub struct ScenarioPlan {
    /// The checked, compiled scenario.
    pub compiled: Compiled,
    /// Its feeders' rows on this agent, in the scenario's order.
    pub feeders: Vec<FeederRows>,
    /// Virtual users of each user type on this agent.
    pub users: Vec<u64>,
    /// Users started per second on this agent; `None`: all at once.
    pub spawn_rate: Option<f64>,
    /// CA certificates (PEM) to trust for HTTPS targets.
    pub ca_pem: Vec<u8>,
    /// Accept any target certificate.
    pub insecure: bool,
    /// `--http2`: speak HTTP/2 only (prior knowledge for http://, ALPN h2 for https://).
    pub http2: bool,
    /// Stages: user `i` of the agent's `U` is active while the level · U > i.
    pub staged: bool,
}

/// One feeder's rows on this agent.
#[derive(Debug)]
pub struct FeederRows {
    /// How rows are handed out.
    pub mode: Mode,
    /// Unique feeders: what happens when the rows run out.
    pub on_exhausted: OnExhausted,
    /// Columns per row.
    pub columns: usize,
    /// The rows (a unique feeder's slice; otherwise the whole table).
    pub table: Table,
    /// Rows in `table`.
    pub rows: u64,
    /// Cycle feeders: the run-wide index of this agent's first user.
    pub first_row: u64,
}

/// The feeders' rows of a plan, checked against the scenario's feeders.
pub fn feeders_of(
    scenario: &volley_scenario::Scenario,
    wire: &[volley_proto::FeederRows],
) -> Result<Vec<FeederRows>, String> {
    if wire.len() != scenario.feeders.len() {
        return Err(format!("{} tables for the scenario's {} feeders", wire.len(), scenario.feeders.len()));
    }
    scenario
        .feeders
        .iter()
        .zip(wire)
        .map(|(f, w)| {
            let mut end = 0u64;
            let mut ends = Vec::with_capacity(w.lengths.len());
            for &len in &w.lengths {
                end += u64::from(len);
                ends.push(u32::try_from(end).map_err(|_| format!("feeder {:?}: cells past 4 GiB", f.name))?);
            }
            let columns = f.columns.len();
            let table =
                Table::from_parts(w.text.clone(), ends, columns).map_err(|e| format!("feeder {:?}: {e}", f.name))?;
            let rows = (table.ends.len() / columns) as u64;
            let whole = f.mode != Mode::Unique;
            if (whole && rows != f.rows) || rows > f.rows {
                return Err(format!("feeder {:?}: {rows} rows where the scenario says {}", f.name, f.rows));
            }
            Ok(FeederRows { mode: f.mode, on_exhausted: f.on_exhausted, columns, table, rows, first_row: w.first_row })
        })
        .collect()
}

/// One worker thread's place in each feeder.
pub(crate) struct Cursors {
    /// The next row of each feeder (unique: in this agent's slice; cycle:
    /// run-wide, taken modulo the rows).
    next: Vec<u64>,
    /// The agent's worker threads: each takes every `step`-th row.
    step: u64,
    rng: fastrand::Rng,
}

impl Cursors {
    fn new(plan: &ScenarioPlan, (index, threads): (usize, usize)) -> Cursors {
        let next = plan
            .feeders
            .iter()
            .map(|f| match f.mode {
                Mode::Cycle => f.first_row.wrapping_add(index as u64),
                _ => index as u64,
            })
            .collect();
        Cursors { next, step: threads.max(1) as u64, rng: fastrand::Rng::new() }
    }

    /// The next row of feeder `f` for this thread; `None`: a unique feeder
    /// ran out here.
    fn take(&mut self, f: &FeederRows, i: usize) -> Option<usize> {
        if f.rows == 0 {
            return None;
        }
        let at = self.next[i];
        match f.mode {
            Mode::Unique if at >= f.rows => None,
            Mode::Unique => {
                self.next[i] = at + self.step;
                Some(at as usize)
            }
            Mode::Cycle => {
                self.next[i] = at.wrapping_add(self.step);
                Some((at % f.rows) as usize)
            }
            Mode::Random => Some(self.rng.u64(..f.rows) as usize),
        }
    }
}

/// Fills `vars` with a row of each feeder `u` takes `per` (counting it);
/// false when a unique feeder had none (counted, and the run ended if the
/// feeder says so): the user stops.
fn feed(
    w: &Worker,
    plan: &ScenarioPlan,
    cursors: &RefCell<Cursors>,
    u: &CompiledUser,
    per: Per,
    vars: &mut Vars,
) -> bool {
    for feed in u.feeds.iter().filter(|f| f.per == per) {
        let f = &plan.feeders[feed.feeder];
        let Some(row) = cursors.borrow_mut().take(f, feed.feeder) else {
            w.recorder().borrow_mut().feeder_exhausted(feed.feeder);
            if f.on_exhausted == OnExhausted::EndRun {
                w.shared().stop_run();
            }
            return false;
        };
        for c in 0..feed.columns {
            vars.set(feed.first_slot + c, f.table.cell(row * f.columns + c).to_owned());
        }
        w.recorder().borrow_mut().feeder_row(feed.feeder);
    }
    true
}

impl ScenarioPlan {
    /// The user type of every virtual user of this agent, in start order:
    /// types interleaved in proportion, so the first users started are
    /// already a mix.
    pub fn order(&self) -> Vec<usize> {
        volley_scenario::interleave(&self.users)
    }

    /// One worker thread's HTTP client.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let host = url_host(&self.compiled.base_url);
        let mut b = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Redirects only within the target: the agent's --allow-target
            // checked this host, not wherever a response points.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 || attempt.url().host_str() != Some(host.as_str()) {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }))
            .danger_accept_invalid_certs(self.insecure);
        if self.http2 {
            b = b.http2_prior_knowledge();
        }
        if !self.ca_pem.is_empty() {
            for cert in reqwest::Certificate::from_pem_bundle(&self.ca_pem).map_err(|e| format!("target CA: {e}"))? {
                b = b.add_root_certificate(cert);
            }
        }
        b.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
    }
}

/// The host of a URL as redirect targets are compared (IPv6 in brackets).
fn url_host(url: &str) -> String {
    reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
}

/// A virtual user's cookies, as the target set them, and the `Cookie`
/// header they make: built when a response changes them, not per request.
#[derive(Default)]
struct Jar {
    cookies: Vec<(String, String)>,
    header: Option<http::HeaderValue>,
}

impl Jar {
    fn absorb(&mut self, headers: &http::HeaderMap) {
        let mut changed = false;
        for (k, val) in volley_scenario::check::set_cookies(headers) {
            match self.cookies.iter_mut().find(|(n, _)| n == k) {
                Some(c) if c.1 == val => continue,
                Some(c) => c.1 = val.to_owned(),
                None => self.cookies.push((k.to_owned(), val.to_owned())),
            }
            changed = true;
        }
        if changed {
            let joined: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            // Made of header bytes the target sent, so it is a valid value.
            self.header = http::HeaderValue::from_str(&joined.join("; ")).ok();
        }
    }

    /// The `Cookie` header to send (a cheap clone of shared bytes), if any.
    fn header(&self) -> Option<http::HeaderValue> {
        self.header.clone()
    }
}

/// One virtual user's state.
struct User {
    vars: Vars,
    jar: Jar,
    url: String,
}

/// What sending a step came to.
enum Sent {
    /// The run is over for this user.
    Stop,
    /// Sent; whether it passed.
    Done(bool),
}

/// One worker thread's virtual users: every `threads`-th of the agent's start
/// order, each starting at its place in the spawn rate, and any taken over
/// from a lost agent in the same mix.
pub(crate) struct Users {
    client: reqwest::Client,
    /// The user type of every user of this agent, in start order.
    order: Vec<usize>,
    spawn_rate: Option<f64>,
    /// This thread's index, and the number of worker threads.
    index: usize,
    threads: usize,
    /// Users started so far (seeds each one's random choices).
    spawned: u64,
    /// Users taken over from lost agents so far.
    taken_over: usize,
    /// This thread's place in each feeder.
    cursors: Rc<RefCell<Cursors>>,
}

impl Users {
    /// Thread `index` of `threads`'s users of `plan`, with requests timing out after `timeout`.
    pub(crate) fn new(
        plan: &ScenarioPlan,
        timeout: Duration,
        (index, threads): (usize, usize),
    ) -> Result<Users, String> {
        Ok(Users {
            client: plan.client(timeout)?,
            order: plan.order(),
            spawn_rate: plan.spawn_rate,
            index,
            threads,
            spawned: 0,
            taken_over: 0,
            cursors: Rc::new(RefCell::new(Cursors::new(plan, (index, threads)))),
        })
    }

    /// Starts the thread's users.
    pub(crate) fn start(&mut self, w: &Rc<Worker>, tasks: &mut tokio::task::JoinSet<()>) {
        for k in (self.index..self.order.len()).step_by(self.threads) {
            // Saturating: a tiny spawn rate delays a user past the run's end, never panics.
            let delay = self.spawn_rate.map_or(Duration::ZERO, |r| {
                Duration::try_from_secs_f64(k as f64 / r).map_or(crate::engine::FAR, |d| d.min(crate::engine::FAR))
            });
            self.spawn(w, tasks, k, k, delay);
        }
    }

    /// Starts users `ranks` of the agent (a lost agent's, now its own): the same mix.
    pub(crate) fn take_over(
        &mut self,
        w: &Rc<Worker>,
        tasks: &mut tokio::task::JoinSet<()>,
        ranks: std::ops::Range<usize>,
    ) {
        for rank in ranks {
            let k = self.index + self.taken_over * self.threads;
            self.taken_over += 1;
            let delay = w.shared().start.elapsed();
            self.spawn(w, tasks, k, rank, delay);
        }
    }

    /// Starts user `k` of the start order as the agent's user `rank` (its
    /// place under stages), `delay` after the run's start.
    fn spawn(&mut self, w: &Rc<Worker>, tasks: &mut tokio::task::JoinSet<()>, k: usize, rank: usize, delay: Duration) {
        if self.order.is_empty() {
            return;
        }
        let seed = (self.index as u64) << 40 ^ self.spawned ^ w.shared().start.elapsed().subsec_nanos() as u64;
        self.spawned += 1;
        let user = self.order[k % self.order.len()];
        let who = Who { user, rank, seed };
        tasks.spawn_local(virtual_user(w.clone(), self.client.clone(), self.cursors.clone(), who, delay));
    }
}

/// Which virtual user: its type, its rank among the agent's users (stages
/// gate by it), and the seed of its random choices.
struct Who {
    user: usize,
    rank: usize,
    seed: u64,
}

/// Runs one virtual user, starting `delay` after the run's start.
async fn virtual_user(
    w: Rc<Worker>,
    client: reqwest::Client,
    cursors: Rc<RefCell<Cursors>>,
    who: Who,
    delay: Duration,
) {
    let Who { user, rank, seed } = who;
    let s = w.shared().clone();
    let Some(plan) = s.plan.scenario.clone() else { return };
    if !delay.is_zero() {
        let until = s.start + delay;
        if !sleep_unless_over(&w, until).await {
            return;
        }
    }
    // With stages, a user starts when they first make it active.
    if !crate::engine::gate_user(&s, rank).await {
        return;
    }
    let u = &plan.compiled.users[user];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut me = User { vars: u.initial.clone(), jar: Jar::default(), url: String::new() };
    // Its rows are taken when it really starts: a user the run's end
    // overtook takes none.
    if !feed(&w, &plan, &cursors, u, Per::User, &mut me.vars) {
        return;
    }
    // Setup, until it passes (a failed login is tried again after thinking).
    loop {
        let t0 = Instant::now();
        let mut passed = true;
        for step in &u.setup {
            match send(&w, &plan, &client, step, &mut me).await {
                Sent::Stop => return,
                Sent::Done(true) => {}
                Sent::Done(false) => {
                    passed = false;
                    break;
                }
            }
        }
        if passed {
            break;
        }
        let pause = u.think.pause(t0.elapsed(), rng.u64(..)).max(Duration::from_millis(10));
        if !sleep_unless_over(&w, Instant::now() + pause).await {
            return;
        }
    }
    loop {
        // With stages, an inactive user pauses here (keeping its session)
        // until they make it active again.
        if !crate::engine::gate_user(&s, rank).await {
            return;
        }
        if !feed(&w, &plan, &cursors, u, Per::Iteration, &mut me.vars) {
            return;
        }
        let t0 = Instant::now();
        let step = &u.requests[u.pick(rng.u64(..))];
        if let Sent::Stop = send(&w, &plan, &client, step, &mut me).await {
            return;
        }
        let pause = u.think.pause(t0.elapsed(), rng.u64(..));
        if pause.is_zero() {
            // Let the thread's other users and its ticker run.
            tokio::task::yield_now().await;
        } else if !sleep_unless_over(&w, Instant::now() + pause).await {
            return;
        }
    }
}

/// Sleeps until `until` or the run's end, whichever is first; false when the
/// run is over. One timer per sleep, and a stop wakes it at once: thousands
/// of thinking users cost nothing while they wait.
async fn sleep_unless_over(w: &Worker, until: Instant) -> bool {
    let s = w.shared();
    let end = s.deadline.map_or(until, |d| d.min(until));
    let halted = s.halt.notified();
    tokio::pin!(halted);
    // Registered before the check, so a stop in between is not missed.
    halted.as_mut().enable();
    if s.stopped() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(end.into()) => {}
        () = halted => return false,
    }
    !s.stopped() && s.deadline.is_none_or(|d| Instant::now() < d)
}

/// Sends one step for one user and records it.
async fn send(
    w: &Worker,
    plan: &Arc<ScenarioPlan>,
    client: &reqwest::Client,
    step: &CompiledStep,
    me: &mut User,
) -> Sent {
    loop {
        match w.may_send(Instant::now()) {
            Permit::Yes => break,
            Permit::No => return Sent::Stop,
            Permit::Wait => w.wait_for_grant().await,
        }
    }
    let timeout = w.shared().plan.timeout;
    me.url.clear();
    me.url.push_str(&plan.compiled.base_url);
    step.path.render(&me.vars, Escape::Path, &mut me.url);
    for (i, (k, v)) in step.query.iter().enumerate() {
        me.url.push(if i == 0 && !me.url.contains('?') { '?' } else { '&' });
        me.url.push_str(k);
        me.url.push('=');
        v.render(&me.vars, Escape::Form, &mut me.url);
    }
    let mut req = client.request(step.method.clone(), me.url.as_str()).timeout(timeout);
    let mut has_type = false;
    let mut has_cookie = false;
    for (name, t) in &step.headers {
        has_type |= *name == http::header::CONTENT_TYPE;
        has_cookie |= *name == http::header::COOKIE;
        req = req.header(name.clone(), t.to_string_with(&me.vars, Escape::None));
    }
    if !has_cookie && let Some(c) = me.jar.header() {
        req = req.header(http::header::COOKIE, c);
    }
    let mut sent = me.url.len() as u64;
    if let Some(body) = &step.body {
        let mut text = String::new();
        let implied = body.render(&me.vars, &mut text);
        if let (false, Some(ct)) = (has_type, implied) {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        sent += text.len() as u64;
        req = req.body(text);
    }
    let t0 = Instant::now();
    w.sent_at(t0);
    let outcome = match req.send().await {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            // Moved out, not cloned: the body read below consumes the response.
            let headers = std::mem::take(resp.headers_mut());
            me.jar.absorb(&headers);
            match read_body(resp, step).await {
                Ok((body, len)) => Ok((status, headers, body, len)),
                Err(e) => Err(classify(&e)),
            }
        }
        Err(e) => Err(classify(&e)),
    };
    let latency = t0.elapsed();
    w.done_at(t0 + latency);
    let (status, headers, body, body_len) = match outcome {
        Ok(response) => response,
        Err(class) => {
            {
                let mut rec = w.recorder().borrow_mut();
                rec.error(class, sent);
                rec.named(step.name_slot, false, None);
                rec.failure_message(step.name_slot, class.name());
            }
            // A refused target fails at once; let others run between attempts.
            tokio::task::yield_now().await;
            return Sent::Done(false);
        }
    };
    let mut verdict = step.assert.check(status, &body, latency);
    if verdict.is_ok() {
        for (slot, capture) in &step.captures {
            match capture.extract(&headers, &body) {
                Some(v) => me.vars.set(*slot, v),
                None => {
                    verdict = Err(format!("capture: {} not in the response", capture.describe()));
                    break;
                }
            }
        }
    }
    let ok = verdict.is_ok();
    let mut rec = w.recorder().borrow_mut();
    let head: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    rec.response(status, ok, latency, sent, body_len + head as u64);
    rec.named(step.name_slot, ok, Some(latency));
    if let Err(message) = verdict {
        rec.failure_message(step.name_slot, &message);
    }
    Sent::Done(ok)
}

/// Reads a response body to its end (so the connection can be reused): kept
/// whole only when an assertion or a capture looks at it, otherwise counted
/// chunk by chunk and dropped. Returns the kept body and the body's length.
async fn read_body(mut resp: reqwest::Response, step: &CompiledStep) -> Result<(bytes::Bytes, u64), reqwest::Error> {
    if step.assert.needs_body() || step.captures.iter().any(|(_, c)| c.needs_body()) {
        let body = resp.bytes().await?;
        let len = body.len() as u64;
        return Ok((body, len));
    }
    let mut len = 0;
    while let Some(chunk) = resp.chunk().await? {
        len += chunk.len() as u64;
    }
    Ok((bytes::Bytes::new(), len))
}

/// The error class of a failed request.
fn classify(e: &reqwest::Error) -> ErrorClass {
    use std::error::Error as _;
    if e.is_timeout() {
        return ErrorClass::Timeout;
    }
    // The outermost I/O error on the chain; the rules below look through it
    // to the innermost one, which says the most.
    let mut io = None;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(i) = s.downcast_ref::<std::io::Error>() {
            io = Some(i);
            break;
        }
        source = s.source();
    }
    match (e.is_connect(), io) {
        // Connecting covers the TLS handshake: the lean client's rule.
        (true, Some(i)) => match crate::tls::handshake_error_class(i) {
            class @ (ErrorClass::Tls | ErrorClass::ConnectRefused) => class,
            _ => ErrorClass::Connect,
        },
        (true, None) => ErrorClass::Connect,
        (false, Some(i)) => ErrorClass::of_io(crate::tls::innermost_io(i)),
        (false, None) if e.is_body() || e.is_decode() => ErrorClass::Closed,
        _ => ErrorClass::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_handshakes_are_tls_and_refusals_connect_refused() {
        let client = reqwest::Client::builder().build().unwrap();
        let class = |url: String| {
            let client = client.clone();
            async move { classify(&client.get(url).send().await.unwrap_err()) }
        };
        // A plain HTTP server hangs up on a TLS hello; hyper hands that on
        // as an I/O error inside an I/O error.
        let plain = target_server::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), 1).unwrap();
        assert_eq!(class(format!("https://{}/hello", plain.local_addr())).await, ErrorClass::Tls);
        // A certificate no root vouches for.
        let pki = crate::tls::test_pki::pki(&["localhost"]);
        let tls = pki.server();
        assert_eq!(class(format!("https://{}/hello", tls.local_addr())).await, ErrorClass::Tls);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(class(format!("https://{closed}/hello")).await, ErrorClass::ConnectRefused);
    }

    #[test]
    fn feeder_rows_from_the_wire_are_checked_and_dealt_per_thread() {
        let text = "base_url = \"http://h\"\n[[feeder]]\nname = \"f\"\nfile = \"f.csv\"\nmode = \"unique\"\n\
                    [[user]]\nname = \"u\"\n[[user.request]]\npath = \"/${f.a}\"\n";
        let dir = std::env::temp_dir().join(format!("volley-agent-feeder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.csv"), "a,b\n1,x\n2,y\n3,z\n").unwrap();
        let s = volley_scenario::Scenario::parse(text, "s.toml", &dir).unwrap();
        let wire =
            |text: &str, lengths: Vec<u32>| volley_proto::FeederRows { text: text.into(), lengths, first_row: 0 };
        // A unique feeder's slice: 2 of its 3 rows.
        let rows = feeders_of(&s, &[wire("1x2y", vec![1, 1, 1, 1])]).unwrap();
        assert_eq!((rows[0].rows, rows[0].table.cell(2)), (2, "2"));
        // Two threads: thread 0 takes row 0, thread 1 row 1, then both are out.
        let plan = ScenarioPlan {
            compiled: s.compile().unwrap(),
            feeders: rows,
            users: vec![2],
            spawn_rate: None,
            ca_pem: Vec::new(),
            insecure: false,
            http2: false,
            staged: false,
        };
        let (mut t0, mut t1) = (Cursors::new(&plan, (0, 2)), Cursors::new(&plan, (1, 2)));
        let f = &plan.feeders[0];
        assert_eq!((t0.take(f, 0), t1.take(f, 0), t0.take(f, 0), t1.take(f, 0)), (Some(0), Some(1), None, None));
        // Refused: a table per feeder, whole rows, lengths within the text, no more rows than the file.
        assert!(feeders_of(&s, &[]).unwrap_err().contains("0 tables for the scenario's 1 feeders"));
        assert!(feeders_of(&s, &[wire("1x2", vec![1, 1, 1])]).unwrap_err().contains("not whole rows"));
        assert!(feeders_of(&s, &[wire("1x", vec![1, 5])]).is_err());
        let four = wire("1x2y3z4w", vec![1; 8]);
        assert!(feeders_of(&s, &[four]).unwrap_err().contains("4 rows where the scenario says 3"));
    }

    #[test]
    fn hosts_of_base_urls() {
        assert_eq!(url_host("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(url_host("https://shop.example/api"), "shop.example");
        assert_eq!(url_host("http://[::1]:9/x"), "[::1]");
        assert_eq!(url_host("http://[::1]"), "[::1]");
    }

    #[test]
    fn cookies_are_kept_per_user() {
        let mut jar = Jar::default();
        let mut h = http::HeaderMap::new();
        h.append(http::header::SET_COOKIE, "session=a; Path=/".parse().unwrap());
        h.append(http::header::SET_COOKIE, "theme=dark".parse().unwrap());
        jar.absorb(&h);
        let mut h = http::HeaderMap::new();
        h.append(http::header::SET_COOKIE, "session=b; HttpOnly".parse().unwrap());
        jar.absorb(&h);
        assert_eq!(jar.header().unwrap(), "session=b; theme=dark");
        // The same cookie again changes nothing.
        jar.absorb(&h);
        assert_eq!(jar.header().unwrap(), "session=b; theme=dark");
    }
}
