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

use crate::error::{Error, Field, ResolveError, UsageError};

/// The largest `--agents @FILE` read (a line per agent: far more than any list).
pub const MAX_AGENTS_FILE: u64 = 1 << 20;

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
        return Err(UsageError::new(
            Field::Connections,
            format!(
                "{connections} is fewer than the {} agents found by --agents; each agent needs at least one \
                 connection",
                out.len()
            ),
        )
        .into());
    }
    Ok(out)
}

/// Every distinct address of `name`, sorted.
async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let cannot = |source: ResolveError| Error::Resolve { name: name.to_owned(), port, source };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| cannot(ResolveError::Timeout(RESOLVE_TIMEOUT)))?
        .map_err(|e| cannot(ResolveError::Lookup(e)))?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(cannot(ResolveError::NoAddresses));
    }
    Ok(addrs)
}

/// Parses `--agents`: comma-separated `host:port` (IPv6 as `[addr]:port`),
/// `dns:name:port`, and `@file` (read here, one entry per line, blank lines
/// and `#` comments skipped). Names are resolved later, by
/// [`discover`].
pub fn parse_agents(list: &str) -> Result<Vec<AgentSource>, UsageError> {
    let mut out = Vec::new();
    for entry in list.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(UsageError::new(Field::Agents, format!("empty entry in {list:?}")));
        }
        let Some(path) = entry.strip_prefix('@') else {
            push_agent(&mut out, parse_agent(entry)?)?;
            continue;
        };
        let text = volley_common::file::read_text(std::path::Path::new(path), MAX_AGENTS_FILE)
            .map_err(|e| UsageError::new(Field::Agents, e.to_string()))?;
        let before = out.len();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if line.starts_with('@') {
                return Err(UsageError::new(Field::Agents, format!("{path:?} names another file ({line:?})")));
            }
            let source =
                parse_agent(line).map_err(|e| UsageError::new(Field::Agents, format!("{} (in {path:?})", e.reason)))?;
            push_agent(&mut out, source)?;
        }
        if out.len() == before {
            return Err(UsageError::new(Field::Agents, format!("{path:?} lists no agents")));
        }
    }
    Ok(out)
}

fn push_agent(out: &mut Vec<AgentSource>, source: AgentSource) -> Result<(), UsageError> {
    if out.contains(&source) {
        return Err(UsageError::new(Field::Agents, format!("{:?} is listed twice", source.to_string())));
    }
    out.push(source);
    Ok(())
}

/// One `host:port` or `dns:name:port` entry.
fn parse_agent(entry: &str) -> Result<AgentSource, UsageError> {
    let bad = |why: &str| UsageError::new(Field::Agents, format!("{entry:?} {why}"));
    let (dns, spec) = match entry.strip_prefix("dns:") {
        Some(rest) => (true, rest),
        None => (false, entry),
    };
    let (host, port) = spec.rsplit_once(':').ok_or_else(|| bad("has no port; use HOST:PORT or dns:NAME:PORT"))?;
    let port: u16 = port.parse().map_err(|_| bad("has an invalid port"))?;
    if port == 0 {
        return Err(bad("has port 0"));
    }
    let is_name =
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if dns {
        if !is_name {
            return Err(bad("has an invalid name; use dns:NAME:PORT"));
        }
        return Ok(AgentSource::Dns { name: host.to_owned(), port });
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => is_name,
    };
    if !host_ok {
        return Err(bad("has an invalid host"));
    }
    Ok(AgentSource::Address(entry.to_owned()))
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

    fn shown(list: &str) -> Vec<String> {
        parse_agents(list).unwrap().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn agent_lists() {
        assert_eq!(shown("a:1,127.0.0.1:7070, [::1]:9"), ["a:1", "127.0.0.1:7070", "[::1]:9"]);
        assert_eq!(
            parse_agents("dns:agents.volley.svc.cluster.local:7070").unwrap(),
            [AgentSource::Dns { name: "agents.volley.svc.cluster.local".into(), port: 7070 }]
        );
        for bad in [
            "",
            "a",
            "a:",
            "a:x",
            "a:0",
            "a:70000",
            ":80",
            "a:1,,b:2",
            "a b:1",
            "a:1,a:1",
            "[zz]:1",
            "dns:a",
            "dns::1",
            "dns:[::1]:1",
            "dns:a:1,dns:a:1",
            "@",
        ] {
            assert!(parse_agents(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn agent_files() {
        let dir = std::env::temp_dir().join(format!("volley-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agents");
        std::fs::write(&file, "# load hosts\n10.0.0.1:7070\n\n  dns:more.example:7070  \n").unwrap();
        let list = format!("x:1,@{}", file.display());
        assert_eq!(shown(&list), ["x:1", "10.0.0.1:7070", "dns:more.example:7070"]);
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(parse_agents(&list).unwrap_err().to_string().contains("lists no agents"));
        std::fs::write(&file, "ok:1\nnot an address\n").unwrap();
        let e = parse_agents(&list).unwrap_err().to_string();
        assert!(e.contains("not an address") && e.contains("agents\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = parse_agents("@/nonexistent/agents").unwrap_err().to_string();
        assert!(e.contains("cannot read /nonexistent/agents"), "{e}");
        let e = parse_agents("@/dev/zero").unwrap_err().to_string();
        assert!(e.contains("/dev/zero is not a regular file (a device)"), "{e}");
    }
}
