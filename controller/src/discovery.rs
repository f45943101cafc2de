//! Finding the agents: turns the checked `--agents` entries into the addresses
//! the coordinator connects to.
//!
//! An entry is `HOST:PORT` (one agent, connected as given), `dns:NAME:PORT`
//! (every distinct address the name resolves to is one agent, which is how a
//! Kubernetes headless Service lists its pods), or `@FILE` (one entry per line,
//! expanded when the flags are checked). Names are resolved just before the
//! run, not when flags are checked, so a dry run does no network activity.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Error;

/// How long resolving one `dns:` name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One checked `--agents` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// `HOST:PORT` (IPv6 as `[addr]:port`): one agent.
    Address(String),
    /// `dns:NAME:PORT`: one agent per distinct address of `name`.
    Dns {
        /// The name to resolve (A and AAAA records).
        name: String,
        /// The agents' port.
        port: u16,
    },
}

impl fmt::Display for AgentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentSource::Address(a) => f.write_str(a),
            AgentSource::Dns { name, port } => write!(f, "dns:{name}:{port}"),
        }
    }
}

/// Resolves `sources` into agent addresses, in the order given; the addresses
/// of one name are sorted so reports list them the same way every run. An
/// address reached twice (say, listed and also behind a name) is one agent,
/// since an agent runs one plan at a time. Fails, naming the entry, when a name
/// does not resolve, or when there are fewer `connections` than agents.
pub async fn discover(sources: &[AgentSource], connections: u32) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for source in sources {
        match source {
            AgentSource::Address(a) => {
                if seen.insert(a.clone()) {
                    out.push(a.clone());
                }
            }
            AgentSource::Dns { name, port } => {
                for addr in resolve(name, *port).await? {
                    let a = addr.to_string();
                    if seen.insert(a.clone()) {
                        out.push(a);
                    }
                }
            }
        }
    }
    if (connections as usize) < out.len() {
        return Err(Error::usage(format!(
            "-c/--connections: {connections} is fewer than the {} agents found by --agents; each agent needs at \
             least one connection",
            out.len()
        )));
    }
    Ok(out)
}

/// Every distinct address of `name`, sorted.
async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let cannot = |why: String| Error::agent(format!("--agents: cannot resolve dns:{name}:{port}: {why}"));
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| cannot(format!("no answer within {RESOLVE_TIMEOUT:?}")))?
        .map_err(|e| cannot(e.to_string()))?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(cannot("the name has no addresses".into()));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_become_one_agent_per_address_and_duplicates_merge() {
        let sources = [
            AgentSource::Address("127.0.0.1:7001".into()),
            AgentSource::Dns { name: "localhost".into(), port: 7001 },
            AgentSource::Address("127.0.0.1:7001".into()),
        ];
        let got = discover(&sources, 10).await.unwrap();
        // localhost may also resolve to ::1; 127.0.0.1:7001 appears once.
        assert_eq!(got[0], "127.0.0.1:7001");
        assert_eq!(got.iter().filter(|a| *a == "127.0.0.1:7001").count(), 1);
        assert!(got.iter().all(|a| a.ends_with(":7001")), "{got:?}");
    }

    #[tokio::test]
    async fn too_few_connections_is_an_error() {
        // A name that does not resolve is checked in tests/multihost.rs, where
        // the resolver is pointed at loopback so no query leaves the machine.
        let two = [AgentSource::Address("a:1".into()), AgentSource::Address("b:1".into())];
        assert!(discover(&two, 1).await.unwrap_err().to_string().contains("fewer than the 2 agents"));
    }
}
