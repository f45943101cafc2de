//! Running one load test across agents and merging what they report.
//!
//! 1. Connect to every agent at once and ask it to describe itself; refuse the
//!    run, naming each agent, if any is unreachable, busy or of another
//!    protocol version (or go on without the unreachable ones when at least
//!    `--min-agents` answer).
//! 2. Split connections in proportion to the agents' worker threads and the
//!    request quota (or rate) in proportion to connections, so agents finish
//!    together.
//! 3. Send every agent its plan with one common start instant a little in the
//!    future, so they begin together.
//! 4. Merge snapshot deltas as they arrive, per agent and overall, until every
//!    stream has ended with its final snapshot. Cancelling stops the agents
//!    and still reports what they did.
//!
//! # Surviving lost agents
//!
//! Every agent's run holds a lease the controller renews about once a second
//! (the `Renew` RPC); an agent whose lease expires stops on its own, so a dead
//! or cut-off controller never leaves load running. The controller in turn
//! expects a snapshot from every agent about once a second: an agent whose
//! stream breaks, or that sends nothing for [`LOST_AFTER`], is marked lost,
//! and everything it reported is kept.
//!
//! In count mode the quota is not handed out whole: each agent gets grants a
//! couple of seconds ahead of its pace, so when it is lost, at most its
//! granted-but-unreported requests can have been sent unseen. Those are shown
//! as `unaccounted` (an upper bound), and its unfinished quota (its share minus
//! what it reported) moves to the surviving agents, so the report still
//! accounts for exactly `n` requests. To keep that possible, no agent is told
//! "no more grants" until every running agent has used its share. In duration
//! and rate modes the survivors take over the lost agent's connections and
//! rate for the rest of the run.

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use volley_proto::agent_client::AgentClient;
use volley_proto::{
    AgentInfo, CancelRequest, DescribeRequest, Header, PROTOCOL_VERSION, RenewRequest, RunPlan, run_event, run_plan,
};
use volley_stats::Totals;

use crate::cli::{ChannelConfig, Limit, RunConfig};
use crate::error::Error;
use crate::split::split;

/// How long connecting to and describing one agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds of how far ahead the common start instant is set: long enough for
/// every plan to reach its agent and be checked (a few round trips of the
/// slowest agent), short enough not to be noticed.
const MIN_START_LEAD: Duration = Duration::from_millis(5);
const MAX_START_LEAD: Duration = Duration::from_secs(1);
/// An agent that sends nothing for this long is lost. Agents send a snapshot
/// every second, so this detects a dead or cut-off agent within 3 s.
pub const LOST_AFTER: Duration = Duration::from_millis(2200);
/// The run lease agents are given; the controller renews every [`RENEW_EVERY`].
pub const LEASE: Duration = Duration::from_secs(3);
/// How often the controller renews every agent's lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// Count mode: how far ahead of an agent's pace grants run.
const GRANT_AHEAD: Duration = Duration::from_secs(2);
/// Count mode: the smallest grant ahead, per connection.
const MIN_GRANT_PER_CONNECTION: u64 = 100;

/// How an agent's part of the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// It ran its part to the end.
    Done,
    /// It was cancelled (Ctrl-C) and reported what it did.
    Cancelled,
    /// Its stream broke before the final snapshot; what it reported is kept.
    Lost,
    /// It had no share of the work (more agents than requests).
    Idle,
    /// It did not answer at the start; the run went on without it (`--min-agents`).
    Unreachable,
}

/// One agent's part of a run.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    /// The address as given (or the embedded agent's).
    pub address: String,
    /// The host name the agent reported.
    pub hostname: String,
    /// Worker threads it used.
    pub threads: u32,
    /// Connections it was given.
    pub connections: u32,
    /// Requests it was given (count mode).
    pub quota: Option<u64>,
    /// What it reported, summed.
    pub totals: Totals,
    /// Time from its start to its last snapshot.
    pub elapsed: Duration,
    /// How its part ended.
    pub state: AgentState,
    /// Why it was lost, if it was.
    pub error: Option<String>,
    /// Open model: its share of the rate, requests per second.
    pub rate: Option<f64>,
    /// How late (positive) its workers began relative to the common start
    /// instant, by its own clock, in microseconds.
    pub start_skew_us: Option<i64>,
    /// Lost agents: the most requests it may have sent after its last
    /// snapshot (count and rate modes; `None` when no bound is known).
    pub unaccounted_max: Option<u64>,
    /// Count mode: requests of its share moved to other agents after it was lost.
    pub reassigned: u64,
}

/// The merged result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every agent's part, in the order given.
    pub agents: Vec<AgentOutcome>,
    /// The sum of every agent's totals.
    pub total: Totals,
    /// The longest agent's time from the common start to its end.
    pub duration: Duration,
    /// Whether the run was cancelled by the user.
    pub cancelled: bool,
    /// The most requests lost agents may have sent unseen, in total.
    pub unaccounted_max: Option<u64>,
    /// Count mode: requests no agent was left to send (every agent lost).
    pub unassigned: u64,
}

/// Adds the shared token to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A client of one agent, with the token on every call.
pub type Client = AgentClient<InterceptedService<Channel, Bearer>>;

/// A connected, described agent.
struct Connected {
    address: String,
    client: Client,
    info: AgentInfo,
    /// How long Describe took: a round trip plus the agent's reply time.
    rtt: Duration,
}

async fn connect(address: String, channel: ChannelConfig) -> Result<Connected, String> {
    let scheme = if channel.tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("invalid address: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // HTTP/2 pings notice a silent peer even when no RPC is in flight.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true);
    if let Some(tls) = channel.tls.clone() {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS settings: {}", error_chain(&e)))?;
    }
    let bearer = match &channel.token {
        // A token that cannot travel in a header is refused before any call.
        Some(t) => {
            Some(format!("Bearer {}", t.expose()).parse().map_err(|_| "--token: not a valid header value".to_owned())?)
        }
        None => None,
    };
    let attempt = async {
        let transport = endpoint.connect().await.map_err(|e| format!("unreachable: {}", error_chain(&e)))?;
        let mut client = AgentClient::with_interceptor(transport, Bearer(bearer));
        let asked = std::time::Instant::now();
        let info = client
            .describe(DescribeRequest {})
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => format!("refused the controller's token: {}", s.message()),
                _ => format!("does not answer as a Volley agent: {}", s.message()),
            })?
            .into_inner();
        Ok::<_, String>((client, info, asked.elapsed()))
    };
    let (client, info, rtt) = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("did not answer within {CONNECT_TIMEOUT:?}"))??;
    if info.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "speaks protocol version {} but this controller speaks {PROTOCOL_VERSION} (agent version {})",
            info.protocol_version, info.version
        ));
    }
    if info.busy {
        return Err("is busy with another run".into());
    }
    Ok(Connected { address, client, info, rtt })
}

/// The whole chain of an error's sources on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Sees a run as it goes: for live progress, time series and the HTTP API.
///
/// Called from the merge loop, so implementations must be quick (no I/O that
/// can block). Every method has a default that does nothing.
pub trait Observer: Send {
    /// The run is about to start; `agents` are the parts as planned.
    fn started(&mut self, _agents: &[AgentOutcome]) {}
    /// Agent `agent` reported `delta`, covering its run up to `elapsed` after
    /// the common start.
    fn delta(&mut self, _agent: usize, _delta: &Totals, _elapsed: Duration) {}
    /// Agent `agent`'s part ended.
    fn ended(&mut self, _agent: usize, _state: AgentState, _error: Option<&str>) {}
}

/// An observer that observes nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// An event from one agent's stream.
enum Event {
    Started { threads: u32, skew_us: i64 },
    Delta { totals: Totals, elapsed: Duration, taken: u64 },
    Finished { totals: Totals, elapsed: Duration },
    Broken(String),
}

/// Reads one agent's event stream into the merge loop's channel.
async fn forward(
    i: usize,
    mut stream: tonic::Streaming<volley_proto::RunEvent>,
    tx: mpsc::UnboundedSender<(usize, Event)>,
) {
    loop {
        let event = match stream.next().await {
            None => Event::Broken("its stream ended before the final snapshot".into()),
            Some(Err(status)) => Event::Broken(format!("its stream failed: {}", status.message())),
            Some(Ok(ev)) => match ev.event {
                Some(run_event::Event::Started(s)) => Event::Started { threads: s.threads, skew_us: s.start_skew_us },
                Some(run_event::Event::Progress(snap)) => match Totals::from_snapshot(&snap) {
                    Ok(totals) => Event::Delta {
                        totals,
                        elapsed: Duration::from_micros(snap.elapsed_us),
                        taken: snap.taken_total,
                    },
                    Err(e) => Event::Broken(e.to_string()),
                },
                Some(run_event::Event::Finished(snap)) => match Totals::from_snapshot(&snap) {
                    Ok(totals) => Event::Finished { totals, elapsed: Duration::from_micros(snap.elapsed_us) },
                    Err(e) => Event::Broken(e.to_string()),
                },
                None => continue,
            },
        };
        let last = matches!(event, Event::Finished { .. } | Event::Broken(_));
        if tx.send((i, event)).is_err() || last {
            return;
        }
    }
}

/// Renews one agent's run lease every [`RENEW_EVERY`] and forwards grants,
/// until its channel closes (the agent finished or was lost).
async fn renewer(mut client: Client, run_id: String, mut rx: mpsc::UnboundedReceiver<RenewRequest>) {
    let mut beat = tokio::time::interval(RENEW_EVERY);
    loop {
        let req = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
            _ = beat.tick() => RenewRequest { run_id: run_id.clone(), ..Default::default() },
        };
        let mut req = tonic::Request::new(req);
        // A cut-off agent must not hold the renewals of this one forever.
        req.set_timeout(RENEW_EVERY);
        if let Err(status) = client.renew(req).await {
            tracing::debug!("renew failed: {}", status.message());
        }
    }
}

/// The merge loop's view of one agent while the run goes.
struct Live {
    /// Its stream is still open.
    running: bool,
    last_event: Instant,
    /// Count mode: its share (grows when it takes over a lost agent's share).
    quota: u64,
    granted: u64,
    taken: u64,
    /// Count mode: told that no more grants follow.
    closed: bool,
    renew: Option<mpsc::UnboundedSender<RenewRequest>>,
}

/// Runs `cfg` on the agents at `addresses` and merges their results, telling
/// `observer` as it goes. When `cancel` completes, the agents are cancelled
/// and the outcome covers what they did until then.
pub async fn execute(
    cfg: &RunConfig,
    addresses: &[String],
    observer: &mut dyn Observer,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Outcome, Error> {
    let results = futures::future::join_all(addresses.iter().cloned().map(|a| connect(a, cfg.channel.clone()))).await;
    let mut agents = Vec::with_capacity(results.len());
    let mut problems = Vec::new();
    for (addr, r) in addresses.iter().zip(results) {
        match r {
            Ok(c) => agents.push(c),
            Err(why) => problems.push((addr.clone(), format!("agent {addr} {why}"))),
        }
    }
    let min_agents = cfg.min_agents.unwrap_or(addresses.len()).max(1);
    if !problems.is_empty() {
        let text = problems.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join("; ");
        if agents.len() < min_agents {
            let need = if cfg.min_agents.is_some() {
                format!(" (only {} of {} answered; --min-agents is {min_agents})", agents.len(), addresses.len())
            } else {
                String::new()
            };
            return Err(Error::agent(format!("{text}{need}")));
        }
        eprintln!("controller: going on with {} of {} agents: {text}", agents.len(), addresses.len());
    }
    if (cfg.connections as usize) < agents.len() {
        return Err(Error::usage(format!(
            "-c/--connections: {} is fewer than the {} agents; each agent needs at least one connection",
            cfg.connections,
            agents.len()
        )));
    }

    // Connections in proportion to the threads each agent will use, at least
    // one each; requests in proportion to connections.
    let threads: Vec<u32> = agents.iter().map(|a| cfg.threads.unwrap_or(a.info.worker_threads).max(1)).collect();
    let conns = split(u64::from(cfg.connections), &threads.iter().map(|&t| u64::from(t)).collect::<Vec<_>>(), 1);
    let quotas = match cfg.limit {
        Limit::Requests(n) => Some(split(n, &conns, 0)),
        Limit::Duration(_) => None,
    };
    let slowest = agents.iter().map(|a| a.rtt).max().unwrap_or_default();
    let start_at = SystemTime::now() + (MIN_START_LEAD + slowest * 4).min(MAX_START_LEAD);
    let start_us = start_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let run_id = format!("run-{start_us:x}");

    let mut outcomes: Vec<AgentOutcome> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| AgentOutcome {
            address: a.address.clone(),
            hostname: a.info.hostname.clone(),
            threads: threads[i].min(conns[i] as u32),
            connections: conns[i] as u32,
            quota: quotas.as_ref().map(|q| q[i]),
            totals: Totals::default(),
            elapsed: Duration::ZERO,
            state: AgentState::Idle,
            error: None,
            rate: cfg.rate.map(|r| r * conns[i] as f64 / f64::from(cfg.connections)),
            start_skew_us: None,
            unaccounted_max: None,
            reassigned: 0,
        })
        .collect();
    let mut live: Vec<Live> = (0..agents.len())
        .map(|i| Live {
            running: false,
            last_event: Instant::now(),
            quota: quotas.as_ref().map_or(0, |q| q[i]),
            granted: 0,
            taken: 0,
            closed: false,
            renew: None,
        })
        .collect();

    // Scenario runs: each agent's users are a contiguous slice of one global
    // start order in which user types are interleaved, so each agent gets a
    // fair mix and the totals per type are exact.
    let order = cfg.scenario.as_ref().map(|sc| volley_scenario::interleave(&sc.per_type)).unwrap_or_default();
    let mut first_user = 0usize;
    let users_of = |from: usize, n: u64| -> Vec<u64> {
        let mut per_type = vec![0u64; cfg.scenario.as_ref().map_or(0, |sc| sc.per_type.len())];
        for &t in order.iter().skip(from).take(n as usize) {
            per_type[t] += 1;
        }
        per_type
    };

    // Send every plan; a refusal by any agent aborts the run before it starts.
    let mut sends = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let users = users_of(first_user, conns[i]);
        first_user += conns[i] as usize;
        let limit = match cfg.limit {
            Limit::Requests(_) => {
                if live[i].quota == 0 {
                    continue; // nothing for this agent to do
                }
                // A first grant; the rest follows at the agent's pace.
                let first = live[i].quota.min(conns[i] * MIN_GRANT_PER_CONNECTION);
                live[i].granted = first;
                run_plan::Limit::Requests(first)
            }
            Limit::Duration(d) => run_plan::Limit::DurationMs(d.as_millis().max(1) as u64),
        };
        let plan = RunPlan {
            protocol_version: PROTOCOL_VERSION,
            run_id: run_id.clone(),
            url: cfg.url.clone(),
            method: cfg.method.clone(),
            headers: cfg.headers.iter().map(|(n, v)| Header { name: n.clone(), value: v.clone() }).collect(),
            body: cfg.body.clone(),
            limit: Some(limit),
            connections: conns[i] as u32,
            threads: threads[i],
            timeout_ms: cfg.timeout.as_millis() as u64,
            success_status: cfg.success_status.iter().map(|&s| u32::from(s)).collect(),
            start_at_unix_us: start_us,
            rate: outcomes[i].rate.unwrap_or(0.0),
            ramp_up_ms: cfg.ramp_up.as_millis() as u64,
            lease_ms: LEASE.as_millis() as u64,
            open_quota: quotas.is_some(),
            target_ca_pem: cfg.target_ca_pem.clone(),
            target_insecure: cfg.target_insecure,
            scenario: cfg.scenario.as_ref().map(|sc| sc.json.clone()).unwrap_or_default(),
            users,
            spawn_rate: cfg
                .scenario
                .as_ref()
                .and_then(|sc| sc.spawn_rate)
                .map_or(0.0, |r| r * conns[i] as f64 / f64::from(cfg.connections)),
        };
        let mut client = a.client.clone();
        sends.push(async move { (i, client.run(plan).await) });
    }
    let mut streams = Vec::new();
    let mut refusals = Vec::new();
    for (i, r) in futures::future::join_all(sends).await {
        match r {
            Ok(s) => streams.push((i, s.into_inner())),
            Err(status) => refusals.push(format!("agent {} refused the plan: {}", agents[i].address, status.message())),
        }
    }
    if !refusals.is_empty() {
        // Dropping the accepted streams stops those agents before they start.
        drop(streams);
        return Err(Error::agent(refusals.join("; ")));
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
    for (i, stream) in streams {
        live[i].running = true;
        live[i].last_event = Instant::now();
        let (renew_tx, renew_rx) = mpsc::unbounded_channel();
        live[i].renew = Some(renew_tx);
        tokio::spawn(renewer(agents[i].client.clone(), run_id.clone(), renew_rx));
        tokio::spawn(forward(i, stream, tx.clone()));
    }
    drop(tx);

    observer.started(&outcomes);
    let mut total = Totals::default();
    let mut cancelled = false;
    let mut unassigned = 0u64;
    let mut watchdog = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(cancel);
    while live.iter().any(|l| l.running) {
        tokio::select! {
            ev = rx.recv() => {
                let Some((i, ev)) = ev else { break };
                if !live[i].running {
                    continue; // already given up on
                }
                live[i].last_event = Instant::now();
                let o = &mut outcomes[i];
                match ev {
                    Event::Started { threads, skew_us } => {
                        o.threads = threads;
                        o.start_skew_us = Some(skew_us);
                    }
                    Event::Delta { totals, elapsed, taken } => {
                        o.totals.add(&totals);
                        total.add(&totals);
                        o.elapsed = o.elapsed.max(elapsed);
                        observer.delta(i, &totals, elapsed);
                        if quotas.is_some() {
                            live[i].taken = live[i].taken.max(taken);
                            grant(&mut live, &outcomes, &run_id, i, cancelled);
                        }
                    }
                    Event::Finished { totals, elapsed } => {
                        o.totals.add(&totals);
                        total.add(&totals);
                        o.elapsed = o.elapsed.max(elapsed);
                        o.state = if cancelled { AgentState::Cancelled } else { AgentState::Done };
                        live[i].running = false;
                        live[i].renew = None;
                        observer.delta(i, &totals, elapsed);
                        observer.ended(i, o.state, None);
                    }
                    Event::Broken(why) => {
                        unassigned += lose(&mut live, &mut outcomes, &agents, &run_id, cfg, i, why, observer);
                    }
                }
            }
            _ = watchdog.tick() => {
                for i in 0..live.len() {
                    if live[i].running && live[i].last_event.elapsed() > LOST_AFTER {
                        let why = format!("sent nothing for {:.1} s", live[i].last_event.elapsed().as_secs_f64());
                        unassigned += lose(&mut live, &mut outcomes, &agents, &run_id, cfg, i, why, observer);
                    }
                }
            }
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                for (i, a) in agents.iter().enumerate() {
                    if !live[i].running {
                        continue;
                    }
                    let mut client = a.client.clone();
                    let run_id = run_id.clone();
                    tokio::spawn(async move { client.cancel(CancelRequest { run_id }).await });
                }
            }
        }
    }
    let duration = outcomes.iter().map(|o| o.elapsed).max().unwrap_or_default();
    let bounds: Vec<u64> = outcomes.iter().filter_map(|o| o.unaccounted_max).collect();
    let any_lost = outcomes.iter().any(|o| o.state == AgentState::Lost);
    let unaccounted_max = any_lost.then(|| bounds.iter().sum());
    for (addr, why) in problems {
        outcomes.push(AgentOutcome {
            address: addr,
            hostname: String::new(),
            threads: 0,
            connections: 0,
            quota: None,
            totals: Totals::default(),
            elapsed: Duration::ZERO,
            state: AgentState::Unreachable,
            error: Some(why),
            rate: None,
            start_skew_us: None,
            unaccounted_max: None,
            reassigned: 0,
        });
    }
    Ok(Outcome { agents: outcomes, total, duration, cancelled, unaccounted_max, unassigned })
}

/// Count mode: tops up agent `i`'s grants to [`GRANT_AHEAD`] of its pace, and
/// once every running agent has been granted its whole share, tells them all
/// that no more grants follow.
fn grant(live: &mut [Live], outcomes: &[AgentOutcome], run_id: &str, i: usize, cancelled: bool) {
    let l = &mut live[i];
    if !l.running || l.closed || cancelled {
        return;
    }
    let elapsed = outcomes[i].elapsed.as_secs_f64().max(0.25);
    let pace = l.taken as f64 / elapsed;
    let min_ahead = u64::from(outcomes[i].connections) * MIN_GRANT_PER_CONNECTION;
    let ahead_wanted = min_ahead.max((pace * GRANT_AHEAD.as_secs_f64()) as u64);
    let ahead = l.granted.saturating_sub(l.taken);
    if ahead < ahead_wanted / 2 && l.granted < l.quota {
        let add = (l.quota - l.granted).min(ahead_wanted - ahead);
        l.granted += add;
        send_renew(l, RenewRequest { run_id: run_id.to_owned(), add_requests: add, ..Default::default() });
    }
    // "No more grants" goes out only when nobody can need a re-lease any more:
    // every running agent has its whole share granted and taken.
    if live.iter().filter(|l| l.running).all(|l| l.granted >= l.quota && l.taken >= l.granted) {
        for l in live.iter_mut().filter(|l| l.running && !l.closed) {
            l.closed = true;
            send_renew(l, RenewRequest { run_id: run_id.to_owned(), last: true, ..Default::default() });
        }
    }
}

fn send_renew(l: &Live, req: RenewRequest) {
    if let Some(tx) = &l.renew {
        // The renewer ends only when the agent is done; then nothing is owed.
        let _ = tx.send(req);
    }
}

/// Marks agent `i` lost: keeps what it reported, bounds what it may have sent
/// unseen, and hands its unfinished work to the survivors. Returns the
/// requests (count mode) no survivor could take.
#[allow(clippy::too_many_arguments)]
fn lose(
    live: &mut [Live],
    outcomes: &mut [AgentOutcome],
    agents: &[Connected],
    run_id: &str,
    cfg: &RunConfig,
    i: usize,
    why: String,
    observer: &mut dyn Observer,
) -> u64 {
    tracing::debug!(agent = %outcomes[i].address, "agent lost: {why}");
    eprintln!("controller: agent {} lost: {why}", outcomes[i].address);
    live[i].running = false;
    // Dropping the renewer stops the lease renewals: a cut-off agent then
    // stops on its own when its lease runs out. Cancel it too, in case it can hear.
    live[i].renew = None;
    let mut client = agents[i].client.clone();
    let id = run_id.to_owned();
    tokio::spawn(async move {
        let mut req = tonic::Request::new(CancelRequest { run_id: id });
        req.set_timeout(RENEW_EVERY);
        client.cancel(req).await
    });
    let reported = outcomes[i].totals.requests;
    let survivors: Vec<usize> = (0..live.len()).filter(|&j| live[j].running && !live[j].closed).collect();
    let weights: Vec<u64> = survivors.iter().map(|&j| u64::from(outcomes[j].connections)).collect();
    let o = &mut outcomes[i];
    o.state = AgentState::Lost;
    observer.ended(i, AgentState::Lost, Some(&why));
    o.error = Some(why);
    match cfg.limit {
        Limit::Requests(_) => {
            o.unaccounted_max = Some(live[i].granted.saturating_sub(reported));
            let unfinished = live[i].quota.saturating_sub(reported);
            live[i].quota = reported;
            o.reassigned = unfinished;
            if survivors.is_empty() {
                return unfinished;
            }
            for (&j, add) in survivors.iter().zip(split(unfinished, &weights, 0)) {
                live[j].quota += add;
                if let Some(q) = outcomes[j].quota.as_mut() {
                    *q += add;
                }
                grant(live, outcomes, run_id, j, false);
            }
            0
        }
        Limit::Duration(_) => {
            // A rate bounds what it can have sent since its last snapshot: at
            // most its rate over that time plus the lease it could still run on.
            if let Some(rate) = o.rate {
                let unseen = live[i].last_event.elapsed() + LEASE;
                o.unaccounted_max = Some((rate * unseen.as_secs_f64()).ceil() as u64);
            }
            let (lost_conns, lost_rate) = (o.connections, o.rate);
            let conn_shares = split(u64::from(lost_conns), &weights, 0);
            let total_weight: u64 = weights.iter().sum::<u64>().max(1);
            for (k, &j) in survivors.iter().enumerate() {
                let mut req = RenewRequest { run_id: run_id.to_owned(), ..Default::default() };
                req.add_connections = conn_shares[k] as u32;
                if let (Some(extra), Some(mine)) = (lost_rate, outcomes[j].rate) {
                    let new_rate = mine + extra * weights[k] as f64 / total_weight as f64;
                    outcomes[j].rate = Some(new_rate);
                    req.new_rate = new_rate;
                }
                outcomes[j].connections += req.add_connections;
                send_renew(&live[j], req);
            }
            0
        }
    }
}
