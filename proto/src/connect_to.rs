//! `--connect-to HOST:PORT:ADDR:PORT` (curl's convention): connections meant
//! for HOST:PORT go to ADDR:PORT instead, while the request (its Host header,
//! the TLS name) still names HOST. Both sides apply the same parse: the
//! controller refuses a bad entry as a usage error, the agent a bad plan.

use std::fmt;

/// One `--connect-to` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    /// The host it applies to (lowercase, IPv6 without brackets); `None`: any.
    pub host: Option<String>,
    /// The port it applies to; `None`: any.
    pub port: Option<u16>,
    /// Where to connect instead: an IP address or a name (resolved in place
    /// of the URL's host), IPv6 without brackets.
    pub addr: String,
    /// The port to connect to; `None`: the URL's.
    pub to_port: Option<u16>,
}

/// Why a `--connect-to` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not HOST:PORT:ADDR:PORT ({why})")]
pub struct ConnectToError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Splits `s` at its colons, keeping `[...]` (IPv6) parts whole and
/// without their brackets.
fn fields(s: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let (field, after) = if let Some(inner) = rest.strip_prefix('[') {
            let (v6, after) = inner.split_once(']')?;
            if !(after.is_empty() || after.starts_with(':')) {
                return None;
            }
            (v6, after)
        } else {
            match rest.find(':') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            }
        };
        out.push(field);
        match after.strip_prefix(':') {
            Some(next) => rest = next,
            None => return Some(out),
        }
    }
}

fn is_host(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (!s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')))
}

impl std::str::FromStr for ConnectTo {
    type Err = ConnectToError;

    fn from_str(s: &str) -> Result<ConnectTo, ConnectToError> {
        let bad = |why| ConnectToError { entry: s.to_owned(), why };
        let f = fields(s.trim()).ok_or_else(|| bad("an unclosed or misplaced [ ]"))?;
        let [host, port, addr, to_port] = f[..] else { return Err(bad("four parts are needed")) };
        let port_of = |p: &str| -> Result<Option<u16>, ConnectToError> {
            if p.is_empty() {
                return Ok(None);
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(bad("a port must be 1-65535 or empty")),
                Ok(n) => Ok(Some(n)),
            }
        };
        if !host.is_empty() && !is_host(host) {
            return Err(bad("HOST is not a host name or address"));
        }
        if !is_host(addr) {
            return Err(bad("ADDR must be a host name or IP address"));
        }
        Ok(ConnectTo {
            host: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
            port: port_of(port)?,
            addr: addr.to_ascii_lowercase(),
            to_port: port_of(to_port)?,
        })
    }
}

impl fmt::Display for ConnectTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| if h.contains(':') { format!("[{h}]") } else { h.to_owned() };
        let port = |p: Option<u16>| p.map(|p| p.to_string()).unwrap_or_default();
        write!(
            f,
            "{}:{}:{}:{}",
            self.host.as_deref().map(host).unwrap_or_default(),
            port(self.port),
            host(&self.addr),
            port(self.to_port)
        )
    }
}

impl ConnectTo {
    /// Whether this entry applies to `host` (as the URL names it) on `port`.
    pub fn applies(&self, host: &str, port: u16) -> bool {
        self.host.as_deref().is_none_or(|h| h.eq_ignore_ascii_case(host)) && self.port.is_none_or(|p| p == port)
    }

    /// Where to connect for `host:port` under the first entry of `list` that
    /// applies: (host to resolve, port). `None`: no entry applies.
    pub fn route(list: &[ConnectTo], host: &str, port: u16) -> Option<(String, u16)> {
        let e = list.iter().find(|e| e.applies(host, port))?;
        Some((e.addr.clone(), e.to_port.unwrap_or(port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curls_form() {
        let c: ConnectTo = "Example.com:443:10.0.0.5:8443".parse().unwrap();
        assert_eq!(c.host.as_deref(), Some("example.com"));
        assert_eq!((c.port, c.addr.as_str(), c.to_port), (Some(443), "10.0.0.5", Some(8443)));
        assert!(c.applies("EXAMPLE.com", 443));
        assert!(!c.applies("example.com", 80));
        let any: ConnectTo = "::[::1]:".parse().unwrap();
        assert_eq!((any.host, any.port, any.addr.as_str(), any.to_port), (None, None, "::1", None));
        assert_eq!(any_route("x", 9), Some(("::1".to_owned(), 9)));
        let v6: ConnectTo = "[fe80::1]:80:backend.test:81".parse().unwrap();
        assert_eq!(v6.host.as_deref(), Some("fe80::1"));
        assert_eq!(v6.to_string(), "[fe80::1]:80:backend.test:81");
        for bad in ["", "a:1:b", "a:1:b:2:3", "a:x:b:2", "a:1:b:0", "a:1::2", "a b:1:c:2", "[::1:1:c:2", "a:1:[::1]x:2"]
        {
            let err = bad.parse::<ConnectTo>().unwrap_err().to_string();
            assert!(err.contains("is not HOST:PORT:ADDR:PORT"), "{bad}: {err}");
        }
    }

    fn any_route(host: &str, port: u16) -> Option<(String, u16)> {
        ConnectTo::route(&["::[::1]:".parse().unwrap()], host, port)
    }
}
