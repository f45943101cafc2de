//! The routes of the target-server and their answers.
//!
//! | route | answer |
//! |---|---|
//! | `GET /hello` | 200 `text/plain` `Hello World!` |
//! | `GET /cast/<n>` | sleeps n seconds (fractions allowed, at most 3600), 200 `ok` |
//! | `GET /delay/<ms>` | sleeps ms milliseconds (at most 3,600,000), 200 `ok` |
//! | `GET /status/<code>` | that status (200..=599 or 100-less final codes), a short body |
//! | `POST /echo` | the request body, with its content type |
//! | `GET /stats` | JSON [`Stats`](crate::Stats) (not itself counted) |
//!
//! Anything else is 404; a known path with the wrong method is 405.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::stats::Counters;

const HELLO: &[u8] = b"Hello World!";
const TEXT: HeaderValue = HeaderValue::from_static("text/plain");
/// Largest body `/echo` accepts.
const MAX_ECHO: usize = 16 * 1024 * 1024;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, TEXT);
    r
}

/// Answers one request and counts the answer (except for `/stats`).
pub async fn answer(req: Request<Incoming>, counters: &Counters, thread: usize) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if path == "/hello" && method == Method::GET {
        // The hot path: no parsing, a static body, one thread-owned counter.
        counters.hello(thread);
        return text(StatusCode::OK, Bytes::from_static(HELLO));
    }
    if path == "/stats" {
        if method != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        let json = serde_json::to_vec(&counters.snapshot()).unwrap_or_default();
        let mut r = Response::new(Full::new(Bytes::from(json)));
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return r;
    }
    let response = route(req, &method, &path).await;
    counters.record(&path, response.status().as_u16());
    response
}

async fn route(req: Request<Incoming>, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let get_only = |m: &Method| *m == Method::GET || *m == Method::HEAD;
    if path == "/hello" {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    if let Some(arg) = path.strip_prefix("/cast/") {
        if !get_only(method) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        return match arg.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => {
                tokio::time::sleep(Duration::from_secs_f64(s)).await;
                text(StatusCode::OK, "ok")
            }
            _ => text(StatusCode::BAD_REQUEST, format!("{arg:?} is not a number of seconds in 0..=3600\n")),
        };
    }
    if let Some(arg) = path.strip_prefix("/delay/") {
        if !get_only(method) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        return match arg.parse::<u64>() {
            Ok(ms) if ms <= 3_600_000 => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, "ok")
            }
            _ => text(StatusCode::BAD_REQUEST, format!("{arg:?} is not a number of milliseconds in 0..=3600000\n")),
        };
    }
    if let Some(arg) = path.strip_prefix("/status/") {
        if !get_only(method) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        // 1xx are not final answers: a server cannot end a request with one.
        return match arg
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(code) => text(code, format!("status {}\n", code.as_u16())),
            None => text(StatusCode::BAD_REQUEST, format!("{arg:?} is not a final status code (200..=599)\n")),
        };
    }
    if path == "/echo" {
        if *method != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        let body = match http_body_util::Limited::new(req.into_body(), MAX_ECHO).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large or broken\n"),
        };
        let mut r = Response::new(Full::new(body));
        if let Some(ct) = content_type {
            r.headers_mut().insert(CONTENT_TYPE, ct);
        }
        return r;
    }
    text(StatusCode::NOT_FOUND, "not found\n")
}
