//! Running one load test across agents and merging what they report.
//!
//! 1. Connect to every agent at once and ask it to describe itself; refuse the
//!    run, naming each agent, if any is unreachable, busy or of another
//!    protocol version (or go on without the unreachable ones when at least
//!    `--min-agents` answer).
//! 2. Split connections in proportion to the agents' worker threads and the
//!    request quota (or rate) in proportion to connections, so agents finish
//!    together.
//! 3. Send every agent its plan; once every agent has accepted it, send them
//!    all one common start instant a little in the future, so they begin
//!    together (the two-phase start described in `volley.proto`). If any
//!    refuses, none starts.
//! 4. Merge snapshot deltas as they arrive, per agent and overall, until every
//!    stream has ended with its final snapshot. Cancelling stops the agents
//!    and still reports what they did.
//!
//! # Surviving lost agents
//!
//! Every agent's run holds a lease the controller renews about once a second
//! (messages on one `Lease` stream per agent); an agent whose lease expires stops on its own, so a dead
//! or cut-off controller never leaves load running. The controller in turn
//! expects a snapshot from every agent about once a second: an agent whose
//! stream breaks, or that sends nothing for a time that follows its measured
//! link ([`link`]), is marked lost, and everything it reported is kept.
//!
//! In count mode the quota is not handed out whole: each agent gets grants a
//! couple of seconds (and a few round trips) ahead of its pace, so when it is lost, at most its
//! granted-but-unreported requests can have been sent unseen. Those are shown
//! as `unaccounted` (an upper bound), and its unfinished quota (its share minus
//! what it reported) moves to the surviving agents, so the report still
//! accounts for exactly `n` requests. To keep that possible, no agent is told
//! "no more grants" until every running agent has used its share, and one
//! told so is reopened when it is needed. In duration and rate modes the
//! survivors take over the lost agent's connections and rate for the rest of
//! the run.

mod connect;
mod delta;
mod ledger;
pub mod link;
mod merge;
mod plan;

use futures::StreamExt as _;
use std::time::{Duration, Instant};

pub use connect::{Bearer, Client, ConnectError};
use connect::{CONNECT_TIMEOUT, Connected, connect, status_line};
pub use delta::Delta;
use ledger::Ledger;
use merge::Merge;
use volley_proto::run_plan;

use crate::config::{Limit, RunConfig};
use crate::error::Error;
use crate::outcome::{AgentOutcome, Observer, Outcome};

/// How often the controller renews every agent's lease when nothing else
/// went out on its Lease stream. Once a second: the shortest lease
/// ([`link::Link::lease`]: 3.2 s on loopback) still sees three beats, so
/// one slow beat never ends a run.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// Most agents connected to, or sent their plans, at once: a thousand
/// agents are reached in waves instead of a thousand handshakes and
/// round-trip probes fighting for this process's one core at once (which
/// would inflate the round trips measured, and with them every timeout).
const FAN_OUT: usize = 64;

/// Runs `cfg` on the agents at `addresses` and merges their results, telling
/// `observer` as it goes. When `cancel` completes, the agents are cancelled
/// and the outcome covers what they did until then.
pub async fn execute(
    cfg: &RunConfig,
    addresses: &[String],
    observer: &mut dyn Observer,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Outcome, Error> {
    let (agents, unreachable) = connect_all(cfg, addresses).await?;
    let shares = plan::shares(cfg, &agents.iter().map(|a| a.info.worker_threads).collect::<Vec<_>>());
    let links: Vec<link::Link> = agents.iter().map(|a| a.link).collect();
    let run_id = format!("run-{:x}", plan::start_at_us(Duration::ZERO));
    let outcomes = agents.iter().zip(&shares).map(|(a, s)| plan::planned(a, s)).collect();
    let mut ledger = Ledger::new(outcomes, matches!(cfg.limit, Limit::Requests(_)), Instant::now());
    for (i, l) in links.iter().enumerate() {
        ledger.set_link(i, *l);
    }

    // Phase one: send every plan; a refusal by any agent, or no answer in
    // time, aborts the run before any agent starts.
    let mut sends = Vec::new();
    // Each agent's first connection in the run, for the round-robin over
    // source addresses.
    let mut offset = 0u64;
    for (i, (a, share)) in agents.iter().zip(&shares).enumerate() {
        let source_offset = offset;
        offset += share.connections;
        let limit = match cfg.limit {
            Limit::Requests(_) => match ledger.first_grant(i) {
                Some(first) => run_plan::Limit::Requests(first),
                None => continue, // nothing for this agent to do
            },
            Limit::Duration(d) => run_plan::Limit::DurationMs(d.as_millis().max(1) as u64),
        };
        let mut plan = plan::run_plan(cfg, share, &run_id, a.link.lease(), limit);
        plan.source_offset = source_offset;
        let mut client = a.client.clone();
        // The agent checks the plan (and resolves the target) before it answers.
        let wait = CONNECT_TIMEOUT + a.link.renew_timeout();
        sends.push(async move { (i, tokio::time::timeout(wait, client.run(plan)).await.map_err(|_| wait)) });
    }
    let mut streams = Vec::new();
    let mut refusals = Vec::new();
    let planning = Instant::now();
    let answers: Vec<_> = futures::stream::iter(sends).buffer_unordered(FAN_OUT).collect().await;
    let planned_in = planning.elapsed();
    for (i, r) in answers {
        let address = &agents[i].address;
        match r {
            Ok(Ok(s)) => streams.push((i, s.into_inner())),
            Ok(Err(status)) => refusals.push(refusal(cfg, address, &status_line(&status))),
            Err(wait) => {
                refusals.push(format!("agent {address} did not accept its plan within {} ms", wait.as_millis()))
            }
        }
    }
    refusals.dedup();
    if !refusals.is_empty() {
        // Dropping the accepted streams makes those agents give the run up:
        // none has started, so the target sees nothing.
        drop(streams);
        return Err(Error::agent(refusals.join("; ")));
    }

    // Phase two: every agent accepted; fix the start instant and send it.
    // The start instant goes out to every agent the way the plans did, one
    // call each: with many agents that takes about as long as sending the
    // plans took, which the links' round trips alone do not show.
    let lead = link::start_lead(&links).max(planned_in.min(link::START_LEAD_CEILING));
    let start = (plan::start_at_us(lead), Instant::now() + lead);
    let clients = agents.into_iter().map(|a| a.client).collect();
    let mut merge = Merge::start(run_id, ledger, clients, streams, start, observer);
    merge.run(cancel).await;
    Ok(merge.finish(unreachable))
}

/// Why a plan was refused, as the user can act on it: a target that does not
/// resolve is the target's problem, and an agent embedded in this process is
/// not named (the user never started it).
fn refusal(cfg: &RunConfig, agent: &str, message: &str) -> String {
    if message.starts_with("cannot resolve target host") {
        format!("target {}: {message}", cfg.url)
    } else if cfg.agents.is_empty() {
        format!("cannot run: {message}")
    } else {
        format!("agent {agent} refused the plan: {message}")
    }
}

/// Connects to every agent at once. Refuses the run, naming each agent, if
/// any cannot be used, unless at least `--min-agents` can: then returns the
/// others as unreachable outcomes and goes on.
async fn connect_all(cfg: &RunConfig, addresses: &[String]) -> Result<(Vec<Connected>, Vec<AgentOutcome>), Error> {
    let results: Vec<_> = futures::stream::iter(addresses.iter().cloned().map(|a| connect(a, cfg.channel.clone())))
        .buffered(FAN_OUT)
        .collect()
        .await;
    let mut agents = Vec::with_capacity(results.len());
    let mut problems = Vec::new();
    for (addr, r) in addresses.iter().zip(results) {
        match r {
            Ok(c) => agents.push(c),
            Err(e) => problems.push((addr.clone(), format!("agent {addr} {}", e.one_line()))),
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
    let unreachable = problems.into_iter().map(|(addr, why)| AgentOutcome::unreachable(addr, why)).collect();
    Ok((agents, unreachable))
}
