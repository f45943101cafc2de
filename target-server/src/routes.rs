//! The HTTP routes: which request gets which answer, and counting it.
//!
//! [`respond`] decides synchronously. Routes that answer at once (`/hello`,
//! `/status`, errors) return [`Reply::Now`], so the hot path costs no boxed
//! future; only routes that wait (`/cast`, `/delay`, `/echo`, or any request
//! with a body to read) box one.
//!
//! `GET /stall/<ms>` makes the whole server stop answering for that long:
//! every request that arrives or is pending meanwhile (except `/stats` and
//! `/stall`) is held until the stall ends. It exists to test that a load
//! generator reports such a stall truthfully (coordinated omission).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};

use crate::demo::Demo;
use crate::stats::Counters;

pub(crate) type Body = Full<Bytes>;

/// The longest `/cast` or `/delay` accepted; anything longer is surely a typo.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The largest `/echo` body: the server must not be made to buffer without bound.
const MAX_ECHO: usize = 16 << 20;

const HELLO: &str = "Hello World!";
const TEXT: HeaderValue = HeaderValue::from_static("text/plain");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What one server thread's connections share.
pub(crate) struct Worker {
    pub(crate) counters: Arc<Counters>,
    /// This thread's shard in `counters`.
    pub(crate) shard: usize,
    /// The server-wide stall, shared by all threads.
    pub(crate) stall: Arc<Stall>,
    /// The demo API's tokens and items, shared by all threads.
    pub(crate) demo: Arc<Demo>,
}

/// Until when the server holds its answers (`GET /stall/<ms>`).
#[derive(Debug)]
pub(crate) struct Stall {
    epoch: std::time::Instant,
    /// Microseconds after `epoch`; 0 when never stalled.
    until_us: std::sync::atomic::AtomicU64,
}

impl Stall {
    pub(crate) fn new() -> Stall {
        Stall { epoch: std::time::Instant::now(), until_us: std::sync::atomic::AtomicU64::new(0) }
    }

    /// How long answers are still held, if they are.
    #[inline]
    fn remaining(&self) -> Option<Duration> {
        // One relaxed load per request: nothing is ordered by it.
        let until = self.until_us.load(std::sync::atomic::Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        Duration::from_micros(until).checked_sub(self.epoch.elapsed()).filter(|d| !d.is_zero())
    }

    fn hold_for(&self, wait: Duration) {
        let until = (self.epoch.elapsed() + wait).as_micros() as u64;
        self.until_us.fetch_max(until, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The future a request resolves to.
pub(crate) enum Reply {
    Now(Option<Response<Body>>),
    Later(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
}

impl Future for Reply {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            // hyper polls a service future only until it is ready, once.
            Reply::Now(response) => Poll::Ready(Ok(response.take().expect("polled after ready"))),
            Reply::Later(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The known paths; `&str` fields are the parameter after the prefix.
enum Route<'a> {
    Hello,
    Cast(&'a str),
    Delay(&'a str),
    Status(&'a str),
    Echo,
    Stats,
    Stall(&'a str),
    Login,
    Items,
    NotFound,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Self {
        if path == "/hello" {
            Route::Hello
        } else if let Some(secs) = path.strip_prefix("/cast/") {
            Route::Cast(secs)
        } else if let Some(ms) = path.strip_prefix("/delay/") {
            Route::Delay(ms)
        } else if let Some(code) = path.strip_prefix("/status/") {
            Route::Status(code)
        } else if path == "/echo" {
            Route::Echo
        } else if path == "/stats" {
            Route::Stats
        } else if let Some(ms) = path.strip_prefix("/stall/") {
            Route::Stall(ms)
        } else if path == "/login" {
            Route::Login
        } else if path == "/items" {
            Route::Items
        } else {
            Route::NotFound
        }
    }

    /// The methods the route answers, as its `Allow` header says them.
    fn allows(&self, method: &Method) -> Result<(), &'static str> {
        let allow = match self {
            Route::Echo | Route::Login => "POST",
            Route::Items => "GET, POST",
            _ => "GET",
        };
        let ok = match self {
            Route::Items => *method == Method::GET || *method == Method::POST,
            Route::Echo | Route::Login => *method == Method::POST,
            _ => *method == Method::GET,
        };
        if ok { Ok(()) } else { Err(allow) }
    }
}

pub(crate) fn respond(request: Request<Incoming>, worker: &Arc<Worker>) -> Reply {
    if let Some(wait) = worker.stall.remaining() {
        let path = request.uri().path();
        if path != "/stats" && !path.starts_with("/stall/") {
            let worker = Arc::clone(worker);
            return Reply::Later(Box::pin(async move {
                tokio::time::sleep(wait).await;
                match respond(request, &worker) {
                    Reply::Now(response) => response.expect("a fresh reply holds its response"),
                    Reply::Later(future) => future.await,
                }
            }));
        }
    }
    // HTTP/1.1 requests pay one comparison; `/stats` is not counted.
    if request.version() == hyper::Version::HTTP_2 && request.uri().path() != "/stats" {
        worker.counters.http2(worker.shard);
    }
    // Checked first and on its own so the hot path does no more than compare.
    if request.uri().path() == "/hello" && request.method() == Method::GET && request.body().is_end_stream() {
        worker.counters.hello_ok(worker.shard);
        let mut response = Response::new(Full::new(Bytes::from_static(HELLO.as_bytes())));
        response.headers_mut().insert(CONTENT_TYPE, TEXT);
        return Reply::Now(Some(response));
    }

    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let route = Route::parse(path);
    // `/stats` is not counted, so that tests can poll it without changing what they read.
    let counted = !matches!(route, Route::Stats);
    let action = decide(&parts.method, route, worker);

    match action {
        Action::Answer(response) if body.is_end_stream() => {
            if counted {
                worker.counters.record(worker.shard, parts.method.as_str(), path, response.status().as_u16());
            }
            Reply::Now(Some(response))
        }
        Action::Echo => echo(worker, parts, body),
        Action::Demo => demo(worker, parts, body),
        action => {
            let worker = Arc::clone(worker);
            Reply::Later(Box::pin(async move {
                // hyper reuses a connection only once the request body is read,
                // so read it even when the answer does not need it.
                let _ = Limited::new(body, MAX_ECHO).collect().await;
                let response = match action {
                    Action::Answer(response) => response,
                    // Counted only once the wait is over: a response cut off
                    // by shutdown was never served.
                    Action::Wait(wait) => {
                        tokio::time::sleep(wait).await;
                        text(StatusCode::OK, "ok")
                    }
                    Action::Echo | Action::Demo => unreachable!("handled above"),
                };
                if counted {
                    let status = response.status().as_u16();
                    worker.counters.record(worker.shard, parts.method.as_str(), parts.uri.path(), status);
                }
                response
            }))
        }
    }
}

/// What a request calls for, decided without reading its body.
enum Action {
    Answer(Response<Body>),
    Wait(Duration),
    Echo,
    /// The demo API: needs the body.
    Demo,
}

fn decide(method: &Method, route: Route<'_>, worker: &Worker) -> Action {
    if let (false, Err(allow)) = (matches!(route, Route::NotFound), route.allows(method)) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        return Action::Answer(response);
    }
    let bad_request = |why| Action::Answer(text(StatusCode::BAD_REQUEST, why));
    match route {
        Route::Hello => Action::Answer(text(StatusCode::OK, HELLO)),
        Route::Stats => {
            let mut stats = worker.counters.snapshot();
            worker.demo.fill(&mut stats);
            // Serializing a struct of integers and string keys cannot fail.
            let json = serde_json::to_vec(&stats).expect("Stats serializes to JSON");
            let mut response = Response::new(Full::new(Bytes::from(json)));
            response.headers_mut().insert(CONTENT_TYPE, JSON);
            Action::Answer(response)
        }
        Route::Status(code) => match parse_status(code) {
            Ok(status) => Action::Answer(status_response(status)),
            Err(why) => bad_request(why),
        },
        Route::Cast(secs) => parse_secs(secs).map_or_else(bad_request, Action::Wait),
        Route::Delay(ms) => parse_millis(ms).map_or_else(bad_request, Action::Wait),
        Route::Echo => Action::Echo,
        Route::Stall(ms) => match parse_millis(ms) {
            Ok(wait) => {
                worker.stall.hold_for(wait);
                Action::Answer(text(StatusCode::OK, "stalled\n"))
            }
            Err(why) => bad_request(why),
        },
        Route::Login | Route::Items => Action::Demo,
        Route::NotFound => Action::Answer(text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// The demo API's bodies are small JSON objects.
const MAX_DEMO_BODY: usize = 64 << 10;

fn demo(worker: &Arc<Worker>, parts: Parts, body: Incoming) -> Reply {
    let worker = Arc::clone(worker);
    Reply::Later(Box::pin(async move {
        let response = match Limited::new(body, MAX_DEMO_BODY).collect().await {
            Ok(body) => {
                let body = body.to_bytes();
                if parts.uri.path() == "/login" {
                    worker.demo.login(&body)
                } else {
                    worker.demo.items(&parts.method, &parts.headers, &body)
                }
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "could not read body\n"),
        };
        let status = response.status().as_u16();
        worker.counters.record(worker.shard, parts.method.as_str(), parts.uri.path(), status);
        response
    }))
}

fn echo(worker: &Arc<Worker>, parts: Parts, body: Incoming) -> Reply {
    let worker = Arc::clone(worker);
    Reply::Later(Box::pin(async move {
        let response = match Limited::new(body, MAX_ECHO).collect().await {
            Ok(body) => {
                let mut response = Response::new(Full::new(body.to_bytes()));
                if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
                    response.headers_mut().insert(CONTENT_TYPE, content_type.clone());
                }
                response
            }
            Err(err) if err.is::<LengthLimitError>() => text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            // The client went away mid-body: nobody reads this answer, but it is the honest one.
            Err(_) => text(StatusCode::BAD_REQUEST, "could not read body\n"),
        };
        let status = response.status().as_u16();
        worker.counters.record(worker.shard, parts.method.as_str(), parts.uri.path(), status);
        response
    }))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT);
    response
}

fn status_response(status: StatusCode) -> Response<Body> {
    // These statuses forbid a body (RFC 9110 15.3.5, 15.3.6, 15.4.5).
    if matches!(status.as_u16(), 204 | 205 | 304) {
        let mut response = Response::new(Full::default());
        *response.status_mut() = status;
        return response;
    }
    let body = status.canonical_reason().unwrap_or("status");
    text(status, body)
}

fn parse_status(code: &str) -> Result<StatusCode, &'static str> {
    let status = code
        .parse::<u16>()
        .ok()
        // `StatusCode` takes up to 999, but HTTP defines only three digits starting 1 to 5.
        .filter(|code| (100..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("status must be an integer in 200..=599\n")?;
    // A 1xx is not a final answer; sending one as such would leave the client waiting.
    if status.is_informational() {
        return Err("1xx statuses are not final answers\n");
    }
    Ok(status)
}

fn parse_secs(secs: &str) -> Result<Duration, &'static str> {
    const WHY: &str = "seconds must be a number in 0..=3600\n";
    let secs: f64 = secs.parse().map_err(|_| WHY)?;
    // `contains` is false for NaN, and infinity is out of range.
    if !(0.0..=MAX_WAIT.as_secs_f64()).contains(&secs) {
        return Err(WHY);
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_millis(ms: &str) -> Result<Duration, &'static str> {
    const WHY: &str = "milliseconds must be an integer in 0..=3600000\n";
    let ms: u64 = ms.parse().map_err(|_| WHY)?;
    let wait = Duration::from_millis(ms);
    if wait > MAX_WAIT {
        return Err(WHY);
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_seconds() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_secs("3600"), Ok(MAX_WAIT));
        for bad in ["-1", "NaN", "inf", "3600.5", "", "1s", "0x10"] {
            assert!(parse_secs(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn delay_millis() {
        assert_eq!(parse_millis("50"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_millis("0"), Ok(Duration::ZERO));
        for bad in ["-5", "1.5", "", "3600001", "99999999999999999999"] {
            assert!(parse_millis(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn status_codes() {
        assert_eq!(parse_status("503"), Ok(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(parse_status("200"), Ok(StatusCode::OK));
        assert_eq!(parse_status("599").map(|s| s.as_u16()), Ok(599));
        for bad in ["100", "199", "99", "600", "abc", "", "-200"] {
            assert!(parse_status(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
