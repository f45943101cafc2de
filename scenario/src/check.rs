//! What a response must satisfy (assertions) and the values taken from it
//! (captures).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A step's assertions. A failed one fails the request with its message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assertions {
    /// Statuses that pass; empty means any 2xx.
    pub status: Vec<u16>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// JSON pointer → the value found there must equal.
    pub json: Vec<(String, serde_json::Value)>,
    /// The latency must be below this (ms).
    pub latency_below_ms: Option<u64>,
}

impl Assertions {
    /// Checks the values themselves: statuses and pointers. The error names
    /// the field (`status`, or `json.POINTER`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(bad) = self.status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(("status".into(), format!("{bad} is not an HTTP status (100..=599)")));
        }
        if let Some((p, _)) = self.json.iter().find(|(p, _)| !p.is_empty() && !p.starts_with('/')) {
            let why = format!("{p:?} is not a JSON pointer (they start with /, e.g. \"/items/0/id\")");
            return Err((format!("json.{p}"), why));
        }
        Ok(())
    }

    /// Whether checking needs the body (so the runtime can skip reading it).
    pub fn needs_body(&self) -> bool {
        self.body_contains.is_some() || !self.json.is_empty()
    }

    /// Checks a response; the error is the message the failure is counted under.
    pub fn check(&self, status: u16, body: &[u8], latency: Duration) -> Result<(), String> {
        let status_ok =
            if self.status.is_empty() { (200..300).contains(&status) } else { self.status.contains(&status) };
        if !status_ok {
            return Err(if self.status.is_empty() {
                format!("status {status} is not 2xx")
            } else {
                let list: Vec<String> = self.status.iter().map(u16::to_string).collect();
                format!("status {status} not in [{}]", list.join(", "))
            });
        }
        if let Some(text) = &self.body_contains
            && !contains(body, text.as_bytes())
        {
            return Err(format!("body does not contain {text:?}"));
        }
        if !self.json.is_empty() {
            let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| "body is not JSON".to_owned())?;
            for (pointer, want) in &self.json {
                match doc.pointer(pointer) {
                    None => return Err(format!("JSON {pointer} missing")),
                    Some(got) if got != want => return Err(format!("JSON {pointer} is {got}, expected {want}")),
                    Some(_) => {}
                }
            }
        }
        if let Some(ms) = self.latency_below_ms
            && latency >= Duration::from_millis(ms)
        {
            return Err(format!("latency {} ms above {ms} ms", latency.as_millis()));
        }
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Where a captured value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// A JSON pointer into the body.
    Json(String),
    /// A cookie the response sets.
    Cookie(String),
    /// A response header.
    Header(String),
}

impl Capture {
    /// Checks the capture's own value.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Capture::Json(p) if !p.is_empty() && !p.starts_with('/') => {
                Err(format!("{p:?} is not a JSON pointer (they start with /, e.g. \"/token\")"))
            }
            Capture::Header(h) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                Err(format!("{h:?} is not a header name"))
            }
            Capture::Cookie(c) if c.is_empty() => Err("an empty cookie name".into()),
            _ => Ok(()),
        }
    }

    /// Whether capturing needs the body.
    pub fn needs_body(&self) -> bool {
        matches!(self, Capture::Json(_))
    }

    /// The captured value, if the response has it (JSON strings as they are,
    /// other JSON values as their text).
    pub fn extract(&self, headers: &http::HeaderMap, body: &[u8]) -> Option<String> {
        match self {
            Capture::Json(p) => {
                let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
                match doc.pointer(p)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    v => Some(v.to_string()),
                }
            }
            Capture::Header(h) => headers.get(h.as_str())?.to_str().ok().map(str::to_owned),
            Capture::Cookie(name) => set_cookies(headers).find(|(k, _)| k == name).map(|(_, v)| v.to_owned()),
        }
    }

    /// What it looks for, for messages.
    pub fn describe(&self) -> String {
        match self {
            Capture::Json(p) => format!("JSON {p}"),
            Capture::Cookie(c) => format!("cookie {c}"),
            Capture::Header(h) => format!("header {h}"),
        }
    }
}

/// The (name, value) pairs a response's `Set-Cookie` headers set, in order
/// (attributes such as `Path` dropped; malformed headers skipped).
pub fn set_cookies(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers.get_all(http::header::SET_COOKIE).iter().filter_map(|v| {
        let (k, val) = v.to_str().ok()?.split(';').next()?.split_once('=')?;
        Some((k.trim(), val.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_messages() {
        let a = Assertions {
            status: vec![200],
            body_contains: Some("items".into()),
            json: vec![("/count".into(), serde_json::json!(3))],
            latency_below_ms: Some(500),
        };
        let fast = Duration::from_millis(5);
        assert_eq!(a.check(200, br#"{"items":[],"count":3}"#, fast), Ok(()));
        assert_eq!(a.check(401, b"", fast).unwrap_err(), "status 401 not in [200]");
        assert_eq!(a.check(200, b"{}", fast).unwrap_err(), "body does not contain \"items\"");
        assert_eq!(a.check(200, br#"{"items":1}"#, fast).unwrap_err(), "JSON /count missing");
        assert_eq!(a.check(200, br#"{"items":1,"count":2}"#, fast).unwrap_err(), "JSON /count is 2, expected 3");
        assert_eq!(a.check(200, b"items!", fast).unwrap_err(), "body is not JSON");
        let slow = Duration::from_millis(612);
        assert_eq!(a.check(200, br#"{"items":1,"count":3}"#, slow).unwrap_err(), "latency 612 ms above 500 ms");
        assert_eq!(Assertions::default().check(204, b"", fast), Ok(()));
        assert_eq!(Assertions::default().check(302, b"", fast).unwrap_err(), "status 302 is not 2xx");
        assert!(a.needs_body() && !Assertions::default().needs_body());
    }

    #[test]
    fn captures() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::SET_COOKIE, "theme=dark; Path=/".parse().unwrap());
        h.append(http::header::SET_COOKIE, "session=t-42; Path=/; HttpOnly".parse().unwrap());
        h.append("x-token", "abc".parse().unwrap());
        let body = br#"{"token":"t-42","n":7,"none":null}"#;
        assert_eq!(Capture::Cookie("session".into()).extract(&h, body).as_deref(), Some("t-42"));
        assert_eq!(Capture::Header("x-token".into()).extract(&h, body).as_deref(), Some("abc"));
        assert_eq!(Capture::Json("/token".into()).extract(&h, body).as_deref(), Some("t-42"));
        assert_eq!(Capture::Json("/n".into()).extract(&h, body).as_deref(), Some("7"));
        assert_eq!(Capture::Json("/none".into()).extract(&h, body), None);
        assert_eq!(Capture::Json("/missing".into()).extract(&h, body), None);
        assert_eq!(Capture::Cookie("nope".into()).extract(&h, body), None);
        assert!(Capture::Json("token".into()).validate().is_err());
    }
}
