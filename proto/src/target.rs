//! Target URLs: what both sides accept as the URL to load, and the parts the
//! agent's engine needs from it. The controller refuses a bad `--url` with the
//! same rule the agent applies to the plan, so a run never starts only to be
//! refused by every agent.

/// The parts of a target URL the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written in the URL (IPv6 without brackets).
    pub host: String,
    /// The port (80, or 443 for https, when the URL gives none).
    pub port: u16,
    /// host:port to connect to.
    pub authority: String,
    /// The Host header value.
    pub host_header: String,
    /// Path and query sent in the request line.
    pub path_and_query: String,
    /// Whether it is an `https://` URL.
    pub tls: bool,
}

/// Why a target URL was refused. The message is the reason alone, naming the
/// URL; callers say which field or flag it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not URL syntax. The parser's reason is part of the message (it is the
    /// reason), so it is not also a `source`: a `{:#}` chain would say it twice.
    #[error("{url:?} is not a URL: {reason}")]
    Syntax {
        /// The URL as given.
        url: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// A scheme other than http or https.
    #[error("{url:?}: scheme {scheme:?} is not http or https")]
    Scheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A relative URL or `host:port/path`.
    #[error("{url:?} has no scheme; use http://host:port/path")]
    NoScheme {
        /// The URL as given.
        url: String,
    },
    /// `http:///path`.
    #[error("{url:?} has no host")]
    NoHost {
        /// The URL as given.
        url: String,
    },
    /// `http://host:0/`.
    #[error("{url:?}: port 0 is not a port to connect to")]
    PortZero {
        /// The URL as given.
        url: String,
    },
}

/// Checks a target URL: absolute, `http://` or `https://`, with a host and a
/// port other than 0.
pub fn parse_url(url: &str) -> Result<Target, UrlError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::Syntax { url: url.to_owned(), reason: e.to_string() })?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => return Err(UrlError::Scheme { url: url.to_owned(), scheme: other.to_owned() }),
        None => return Err(UrlError::NoScheme { url: url.to_owned() }),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| UrlError::NoHost { url: url.to_owned() })?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if port == 0 {
        return Err(UrlError::PortZero { url: url.to_owned() });
    }
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok(Target {
        host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port,
        authority: format!("{host}:{port}"),
        host_header,
        path_and_query: encode_non_ascii(uri.path_and_query().map_or("/", |p| p.as_str())),
        tls,
    })
}

/// `path` with every non-ASCII byte percent-encoded: the URL parser lets raw
/// UTF-8 through, but a request line carries ASCII (RFC 3986 §2.1), and a
/// browser would send `/caf%C3%A9` for `/café`.
fn encode_non_ascii(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/hello?x=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/hello?x=1");
        let t = parse_url("http://example.com").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host_header.as_str(), t.path_and_query.as_str()),
            ("example.com:80", "example.com", "/")
        );
        assert!(!t.tls);
        let t = parse_url("https://example.com/a").unwrap();
        assert_eq!((t.authority.as_str(), t.host_header.as_str(), t.tls), ("example.com:443", "example.com", true));
        let t = parse_url("https://localhost:8443").unwrap();
        assert_eq!((t.authority.as_str(), t.host.as_str(), t.tls), ("localhost:8443", "localhost", true));
        let t = parse_url("http://[::1]:9/").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str(), t.port), ("::1", "[::1]:9", 9));
        let t = parse_url("http://h/café?q=ü&r=%C3%A9").unwrap();
        assert_eq!(t.path_and_query, "/caf%C3%A9?q=%C3%BC&r=%C3%A9", "raw UTF-8 is encoded, escapes kept");
        for bad in ["", "ftp://x/", "localhost:80/x", "http:///x", "/hello", "http://h:0/"] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_message_is_the_reason_alone() {
        let why = |url: &str| parse_url(url).unwrap_err().to_string();
        assert_eq!(why("ftp://x/"), "\"ftp://x/\": scheme \"ftp\" is not http or https");
        assert_eq!(why("/hello"), "\"/hello\" has no scheme; use http://host:port/path");
        assert_eq!(why("http://h:0/"), "\"http://h:0/\": port 0 is not a port to connect to");
        assert!(why("").starts_with("\"\" is not a URL: "), "{}", why(""));
        assert!(matches!(parse_url("http:///x"), Err(UrlError::NoHost { .. }) | Err(UrlError::Syntax { .. })));
    }
}
