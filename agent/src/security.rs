//! Who may command this agent, and what it may be commanded to do.
//!
//! An agent is a traffic cannon: one that obeys any caller is an open relay
//! for denial of service. So every RPC but the health check carries the shared
//! token (`authorization: Bearer ...`, compared in constant time), and plans
//! are checked against limits the controller cannot override: which targets
//! (`--allow-target`), how many connections, what rate, how long, how large a
//! request.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tonic::{Request, Status};
use volley_proto::auth::Token;

use crate::listen::ConnAuth;
use crate::plan::{Limit, Plan};

/// Largest request body a plan may carry unless `--max-body` says otherwise.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// A tonic interceptor that lets through only calls carrying the token.
#[derive(Debug, Clone)]
pub struct Auth {
    token: Option<Token>,
}

impl Auth {
    /// Checks calls against `token`; `None` lets every call through.
    pub fn new(token: Option<Token>) -> Auth {
        Auth { token }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            if let Some(c) = connection_of(&request) {
                c.authenticated();
            }
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(volley_proto::auth::bearer)
            .ok_or_else(|| Status::unauthenticated("this agent needs a token; give the controller --token"))?;
        if !token.matches(presented) {
            return Err(Status::unauthenticated("wrong token"));
        }
        // The connection proved itself: the listener's deadline no longer applies.
        if let Some(c) = connection_of(&request) {
            c.authenticated();
        }
        Ok(request)
    }
}

/// The listener's handle on the connection a call came on (plain or TLS);
/// `None` for calls that did not come through [`crate::listen::incoming`].
fn connection_of(request: &Request<()>) -> Option<&ConnAuth> {
    let ext = request.extensions();
    ext.get::<ConnAuth>().or_else(|| {
        ext.get::<tonic::transport::server::TlsConnectInfo<ConnAuth>>()
            .map(tonic::transport::server::TlsConnectInfo::get_ref)
    })
}

/// Which hosts a pattern allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// A host name, exactly (case-insensitive).
    Name(String),
    /// `*.example.com`: any name under it.
    Suffix(String),
    /// An address or network (a bare IP is a /32 or /128).
    Net(IpNet),
}

/// One `--allow-target` pattern: a host (name, `*.suffix`, IP or CIDR) and an
/// optional port or port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPattern {
    host: HostPattern,
    ports: Option<(u16, u16)>,
}

impl std::str::FromStr for TargetPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<TargetPattern, String> {
        let bad = |why: &str| format!("{s:?} {why} (e.g. 10.0.0.0/8, [::1]:8080, *.example.com:80-90)");
        let s = s.trim();
        // The host and the port part: `[v6 or v6/len]:ports`, a bare address
        // or network, or `host:ports`.
        let (host, ports) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("has no closing ]"))?;
            (host, after.strip_prefix(':').map(Some).unwrap_or(if after.is_empty() { None } else { Some(after) }))
        } else if s.parse::<IpAddr>().is_ok() || s.parse::<IpNet>().is_ok() {
            (s, None)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let ports = match ports {
            None => None,
            Some(p) => {
                let (lo, hi) = p.split_once('-').unwrap_or((p, p));
                let lo: u16 = lo.parse().map_err(|_| bad("has an invalid port"))?;
                let hi: u16 = hi.parse().map_err(|_| bad("has an invalid port"))?;
                if lo == 0 || lo > hi {
                    return Err(bad("has an invalid port range"));
                }
                Some((lo, hi))
            }
        };
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Net(IpNet::from(ip))
        } else if let Ok(net) = host.parse::<IpNet>() {
            HostPattern::Net(net.trunc())
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_hostname(suffix) {
                return Err(bad("is not a host pattern"));
            }
            HostPattern::Suffix(suffix.to_ascii_lowercase())
        } else if is_hostname(host) {
            HostPattern::Name(host.to_ascii_lowercase())
        } else {
            return Err(bad("is not a host, IP address or network"));
        };
        Ok(TargetPattern { host, ports })
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl TargetPattern {
    /// Whether this pattern allows `host` (as the URL names it), resolved to
    /// `ip`, on `port`. A name pattern allows the name whatever it resolves
    /// to; a network pattern allows any name that resolves into it.
    pub fn allows(&self, host: &str, ip: IpAddr, port: u16) -> bool {
        if self.ports.is_some_and(|(lo, hi)| port < lo || port > hi) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostPattern::Name(n) => *n == host,
            HostPattern::Suffix(sfx) => host.strip_suffix(sfx.as_str()).is_some_and(|pre| pre.ends_with('.')),
            HostPattern::Net(net) => net.contains(&ip) || host.parse::<IpAddr>().is_ok_and(|h| net.contains(&h)),
        }
    }
}

/// Limits a controller cannot override.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Targets plans may name; empty allows any.
    pub allow: Vec<TargetPattern>,
    /// Most connections per run (including ones taken over from lost agents).
    pub max_connections: Option<u32>,
    /// Highest rate per run; closed-model plans are refused when set.
    pub max_rate: Option<f64>,
    /// Longest run; count-mode runs are stopped when it passes.
    pub max_duration: Option<Duration>,
    /// Largest request body.
    pub max_body: usize,
    /// The process's open-file limit (`RLIMIT_NOFILE`), if known: a run may
    /// hold no more connections than it leaves room for.
    pub open_files: Option<u64>,
    /// Source addresses plans may bind connections to (`--allow-source`).
    pub allow_source: volley_proto::source::SourceAddrs,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            allow: Vec::new(),
            max_connections: None,
            max_rate: None,
            max_duration: None,
            max_body: DEFAULT_MAX_BODY,
            open_files: None,
            allow_source: volley_proto::source::SourceAddrs::loopback(),
        }
    }
}

impl Limits {
    /// Checks a plan; the error names the limit.
    pub fn check(&self, plan: &Plan) -> Result<(), Status> {
        // Every address the target resolves to is checked, now and at each
        // re-resolution; refused ones are skipped (and reported), and a
        // target with none allowed is refused. With --connect-to, what is
        // checked is the host and port really connected to.
        if let Err(addrs) = plan.targets.restrict(self.allow.clone()) {
            return Err(Status::permission_denied(format!(
                "target {} ({addrs}) is not allowed on this agent (--allow-target)",
                plan.target.authority,
            )));
        }
        if let Some(max) = self.max_connections
            && plan.connections > max as usize
        {
            return Err(Status::permission_denied(format!(
                "{} connections asked; this agent allows at most {max} (--max-connections)",
                plan.connections
            )));
        }
        if let Some(max) = self.max_rate {
            match plan.rate {
                None => {
                    return Err(Status::permission_denied(format!(
                        "a plan without a rate is unbounded; this agent allows only rates up to {max}/s (--max-rate)"
                    )));
                }
                Some(r) if r > max => {
                    return Err(Status::permission_denied(format!(
                        "rate {r}/s asked; this agent allows at most {max}/s (--max-rate)"
                    )));
                }
                Some(_) => {}
            }
        }
        if let (Some(max), Limit::Duration(d)) = (self.max_duration, plan.limit)
            && d > max
        {
            return Err(Status::permission_denied(format!(
                "a run of {:?} asked; this agent allows at most {max:?} (--max-duration)",
                d
            )));
        }
        if let Some(files) = self.open_files
            && plan.connections as u64 + crate::listen::SPARE_FILES > files
        {
            return Err(Status::resource_exhausted(format!(
                "{} connections need about {} open files; this agent's open-file limit (RLIMIT_NOFILE) is {files}: \
                 raise its hard limit (ulimit -Hn, LimitNOFILE=) or ask for fewer connections",
                plan.connections,
                plan.connections as u64 + crate::listen::SPARE_FILES
            )));
        }
        if let Some(sources) = &plan.sources
            && let Some(outside) = self.allow_source.first_outside(&sources.addrs)
        {
            return Err(Status::permission_denied(format!(
                "source address {outside} is not allowed on this agent (--allow-source {})",
                self.allow_source
            )));
        }
        if plan.body_len > self.max_body {
            return Err(Status::invalid_argument(format!(
                "request body of {} bytes; this agent allows at most {} (--max-body)",
                plan.body_len, self.max_body
            )));
        }
        Ok(())
    }

    /// How many of `asked` more connections a run holding `holding` may open.
    pub fn more_connections(&self, holding: u32, asked: u32) -> u32 {
        let by_files = self.open_files.map_or(u32::MAX, |f| {
            u32::try_from(f.saturating_sub(crate::listen::SPARE_FILES)).unwrap_or(u32::MAX).saturating_sub(holding)
        });
        let by_flag = self.max_connections.map_or(u32::MAX, |max| max.saturating_sub(holding));
        asked.min(by_files).min(by_flag)
    }

    /// The rate a run may be raised to.
    pub fn cap_rate(&self, asked: f64) -> f64 {
        self.max_rate.map_or(asked, |max| asked.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn patterns() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p("127.0.0.0/8").allows("localhost", ip("127.0.0.1"), 80));
        assert!(p("127.0.0.1").allows("127.0.0.1", ip("127.0.0.1"), 9));
        assert!(!p("127.0.0.1").allows("127.0.0.2", ip("127.0.0.2"), 9));
        assert!(p("10.0.0.0/8:8080").allows("t", ip("10.1.2.3"), 8080));
        assert!(!p("10.0.0.0/8:8080").allows("t", ip("10.1.2.3"), 8081));
        assert!(p("[::1]:80-90").allows("::1", ip("::1"), 85));
        assert!(p("::1").allows("::1", ip("::1"), 1));
        assert!(p("*.example.com").allows("api.example.com", ip("192.0.2.1"), 443));
        assert!(!p("*.example.com").allows("badexample.com", ip("192.0.2.1"), 443));
        assert!(p("Target.Local:80").allows("target.local", ip("192.0.2.1"), 80));
        // A name that resolves into an allowed network is allowed; a name
        // pattern does not allow other names that resolve to the same place.
        assert!(p("10.0.0.0/8").allows("anything", ip("10.0.0.9"), 80));
        assert!(!p("target.local").allows("other.local", ip("10.0.0.9"), 80));
        for bad in ["", "a b", "10.0.0.0/8:0", "h:90-80", "[::1", "h:x", "*."] {
            assert!(bad.parse::<TargetPattern>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        use tonic::service::Interceptor;
        let token = Token::new("s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
        let mut auth = Auth::new(Some(token));
        let mut req = Request::new(());
        assert_eq!(auth.call(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        req.metadata_mut().insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(auth.call(req).unwrap_err().message(), "wrong token");
        let mut req = Request::new(());
        req.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.call(req).is_ok());
        let mut req = Request::new(());
        req.metadata_mut().insert("authorization", "bearer s3cret".parse().unwrap());
        assert!(auth.call(req).is_ok(), "the scheme is case-insensitive");
        assert!(Token::new("").is_none());
    }
}
