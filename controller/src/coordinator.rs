//! Running one load test across agents and merging what they report.
//!
//! 1. Connect to every agent at once and ask it to describe itself; refuse the
//!    run, naming each agent, if any is unreachable, busy or of another
//!    protocol version.
//! 2. Split connections in proportion to the agents' worker threads and the
//!    request quota in proportion to connections, so agents finish together.
//! 3. Send every agent its plan with one common start instant a little in the
//!    future, so they begin together.
//! 4. Merge snapshot deltas as they arrive, per agent and overall, until every
//!    stream has ended. Ctrl-C cancels the agents and still reports what they
//!    did.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use volley_proto::agent_client::AgentClient;
use volley_proto::{AgentInfo, CancelRequest, DescribeRequest, Header, PROTOCOL_VERSION, RunPlan, run_event, run_plan};
use volley_stats::Totals;

use crate::cli::{Limit, RunConfig};
use crate::error::Error;
use crate::split::split;

/// How long connecting to and describing one agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds of how far ahead the common start instant is set: long enough for
/// every plan to reach its agent and be checked (a few round trips of the
/// slowest agent), short enough not to be noticed.
const MIN_START_LEAD: Duration = Duration::from_millis(5);
const MAX_START_LEAD: Duration = Duration::from_secs(1);

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
}

/// A connected, described agent.
struct Connected {
    address: String,
    client: AgentClient<Channel>,
    info: AgentInfo,
    /// How long Describe took: a round trip plus the agent's reply time.
    rtt: Duration,
}

async fn connect(address: String) -> Result<Connected, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("invalid address: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let attempt = async {
        let channel = endpoint.connect().await.map_err(|e| format!("unreachable: {}", error_chain(&e)))?;
        let mut client = AgentClient::new(channel);
        let asked = std::time::Instant::now();
        let info = client
            .describe(DescribeRequest {})
            .await
            .map_err(|s| format!("does not answer as a Volley agent: {}", s.message()))?
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

/// An event from one agent's stream, tagged with the agent's index.
enum Event {
    Started { threads: u32, skew_us: i64 },
    Delta(Totals, Duration),
    Finished(Totals, Duration),
    Broken(String),
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
    let results = futures::future::join_all(addresses.iter().cloned().map(connect)).await;
    let mut agents = Vec::with_capacity(results.len());
    let mut problems = Vec::new();
    for (addr, r) in addresses.iter().zip(results) {
        match r {
            Ok(c) => agents.push(c),
            Err(why) => problems.push(format!("agent {addr} {why}")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::agent(problems.join("; ")));
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
        })
        .collect();

    // Send every plan; a refusal by any agent aborts the run before it starts.
    let mut streams = Vec::new();
    let mut refusals = Vec::new();
    let mut sends = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        if quotas.as_ref().is_some_and(|q| q[i] == 0) {
            continue; // nothing for this agent to do
        }
        let limit = match cfg.limit {
            Limit::Requests(_) => run_plan::Limit::Requests(quotas.as_ref().map_or(0, |q| q[i])),
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
        };
        let mut client = a.client.clone();
        sends.push(async move { (i, client.run(plan).await) });
    }
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
    let running = streams.len();
    for (i, mut stream) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let event = match stream.next().await {
                    None => Event::Broken("stream ended before the final snapshot".into()),
                    Some(Err(status)) => Event::Broken(format!("stream failed: {}", status.message())),
                    Some(Ok(ev)) => match ev.event {
                        Some(run_event::Event::Started(s)) => {
                            Event::Started { threads: s.threads, skew_us: s.start_skew_us }
                        }
                        Some(run_event::Event::Progress(snap)) => match Totals::from_snapshot(&snap) {
                            Ok(t) => Event::Delta(t, Duration::from_micros(snap.elapsed_us)),
                            Err(e) => Event::Broken(e.to_string()),
                        },
                        Some(run_event::Event::Finished(snap)) => match Totals::from_snapshot(&snap) {
                            Ok(t) => Event::Finished(t, Duration::from_micros(snap.elapsed_us)),
                            Err(e) => Event::Broken(e.to_string()),
                        },
                        None => continue,
                    },
                };
                let last = matches!(event, Event::Finished(..) | Event::Broken(_));
                if tx.send((i, event)).is_err() || last {
                    return;
                }
            }
        });
    }
    drop(tx);

    observer.started(&outcomes);
    let mut total = Totals::default();
    let mut open = running;
    let mut cancelled = false;
    tokio::pin!(cancel);
    while open > 0 {
        tokio::select! {
            ev = rx.recv() => {
                let Some((i, ev)) = ev else { break };
                let o = &mut outcomes[i];
                match ev {
                    Event::Started { threads, skew_us } => {
                        o.threads = threads;
                        o.start_skew_us = Some(skew_us);
                    }
                    Event::Delta(t, elapsed) => {
                        o.totals.add(&t);
                        total.add(&t);
                        o.elapsed = o.elapsed.max(elapsed);
                        observer.delta(i, &t, elapsed);
                    }
                    Event::Finished(t, elapsed) => {
                        o.totals.add(&t);
                        total.add(&t);
                        o.elapsed = o.elapsed.max(elapsed);
                        o.state = if cancelled { AgentState::Cancelled } else { AgentState::Done };
                        open -= 1;
                        observer.delta(i, &t, elapsed);
                        observer.ended(i, o.state, None);
                    }
                    Event::Broken(why) => {
                        tracing::warn!(agent = %o.address, "agent lost: {why}");
                        o.state = AgentState::Lost;
                        open -= 1;
                        observer.ended(i, o.state, Some(&why));
                        o.error = Some(why);
                    }
                }
            }
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                for a in &agents {
                    let mut client = a.client.clone();
                    let run_id = run_id.clone();
                    tokio::spawn(async move { client.cancel(CancelRequest { run_id }).await });
                }
            }
        }
    }
    let duration = outcomes.iter().map(|o| o.elapsed).max().unwrap_or_default();
    Ok(Outcome { agents: outcomes, total, duration, cancelled })
}
