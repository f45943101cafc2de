//! `controller serve`: load tests as a service.
//!
//! An HTTP API (`POST /v1/runs`, `GET /v1/runs`, `GET /v1/runs/{id}`,
//! `DELETE /v1/runs/{id}`, `GET /v1/runs/{id}/report.html`,
//! `GET /v1/runs/{a}/compare/{b}` (run b against run a as its baseline); described in
//! `controller/openapi.yaml`, also served at `/openapi.yaml`) and a web page at
//! `/` where a person starts a run and watches it.
//!
//! A posted body is a [`RunRequest`], checked by the same
//! [`RunRequest::check`] as `controller run` (its errors name the JSON
//! field), then runs in the background with an
//! observer that keeps the merged per-second series: `GET` shows live figures
//! while it goes and, once it is over, the same report object as
//! `--output json`.
//!
//! Requests never read files on this host: a body is taken as given and
//! `@FILE` agent lists are refused, since callers of the API have no business
//! reading the controller's disk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use volley_common::lock;

use crate::cli::ServeArgs;
use crate::config::{Output, RunConfig};
use crate::error::{Error, Field, UsageError};
use crate::outcome::{AgentOutcome, AgentState, Observer};
use crate::report::Report;
use crate::request::RunRequest;
use crate::series::{Progress, SecondRow, Series};

/// The web page: a form, live charts, the report. Self-contained (inline
/// script and style), so it works where nothing else can be fetched.
const PAGE: &str = include_str!("serve_page.html");
/// The API's description.
pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// Checks `controller serve`'s flags: a non-loopback address needs a token
/// (or `--insecure`), since anyone who reaches the API can start load.
pub fn check_serve_args(args: &ServeArgs) -> Result<(), UsageError> {
    if !args.listen.ip().is_loopback() && args.api_token.as_deref().is_none_or(str::is_empty) && !args.insecure {
        return Err(UsageError::new(
            Field::Listen,
            format!(
                "{}: refusing to start load for anyone on a non-loopback address; set --api-token (or \
                 VOLLEY_API_TOKEN), or pass --insecure",
                args.listen
            ),
        ));
    }
    if let Some(list) = &args.agents {
        crate::discovery::parse_agents(list)?;
    }
    args.link.channel()?;
    Ok(())
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Load is going.
    Running,
    /// It ran to its end (its thresholds may still have failed).
    Done,
    /// It was cancelled; the report covers what was done.
    Cancelled,
    /// It could not run or could not do its work; `error` says why.
    Failed,
}

/// What the run's observer and its end leave behind.
#[derive(Debug)]
struct RunProgress {
    state: RunState,
    series: Series,
    agents: Vec<String>,
    started: Option<Instant>,
    elapsed: Duration,
    report: Option<Report>,
    error: Option<String>,
    /// Once over: the size of its JSON, what `--keep-bytes` counts.
    bytes: usize,
}

/// One run the API started: what was asked, and where it is.
#[derive(Debug)]
struct ApiRun {
    id: String,
    created: SystemTime,
    request: Value,
    live: Mutex<RunProgress>,
    cancel: Mutex<Option<oneshot::Sender<()>>>,
}

/// Feeds the run's series as snapshots arrive; `GET` reads it meanwhile.
struct Watch(Arc<ApiRun>);

impl Observer for Watch {
    fn started(&mut self, agents: &[AgentOutcome]) {
        let mut live = lock(&self.0.live);
        live.series.started(agents);
        live.agents = agents.iter().map(|a| a.address.clone()).collect();
        live.started = Some(Instant::now());
    }

    fn delta(&mut self, agent: usize, delta: &crate::coordinator::Delta, elapsed: Duration) {
        lock(&self.0.live).series.delta(agent, delta, elapsed);
    }

    fn ended(&mut self, agent: usize, state: AgentState, error: Option<&str>) {
        lock(&self.0.live).series.ended(agent, state, error);
    }
}

/// The server's state: its settings and the runs it knows.
struct Service {
    args: ServeArgs,
    token: Option<volley_proto::auth::Token>,
    runs: Mutex<Vec<Arc<ApiRun>>>,
    /// Seeds run ids so they cannot be guessed from one another.
    ids: std::hash::RandomState,
    next: std::sync::atomic::AtomicU64,
    /// `--metrics-listen`: the runs' live figures for Prometheus.
    metrics: Option<crate::metrics::Metrics>,
}

/// A refusal: a status and a JSON body naming the field at fault.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), field: None }
    }

    fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), field: Some(field.to_owned()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message, "field": self.field }))).into_response()
    }
}

impl From<UsageError> for ApiError {
    fn from(e: UsageError) -> ApiError {
        let message = e.for_api();
        match e.field.json() {
            Some(field) => ApiError::field(field, message),
            None => ApiError::new(StatusCode::BAD_REQUEST, message),
        }
    }
}

/// Reads a `POST /v1/runs` body into a [`RunRequest`]; a refusal names the
/// field at fault.
fn read_request(body: &[u8]) -> Result<RunRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the body must be a JSON object"));
    };
    let whole = match RunRequest::deserialize(&value) {
        Ok(request) => return Ok(request),
        Err(e) => e,
    };
    // Every field is optional, so the first field refused on its own is the one at fault.
    for (name, v) in obj {
        let Err(e) = RunRequest::deserialize(&json!({ name: v })) else { continue };
        return Err(match Field::from_json(name) {
            Some(_) => ApiError::field(name, format!("{name}: {e}")),
            None => {
                let known: Vec<&str> = Field::ALL.iter().filter_map(|f| f.json()).collect();
                ApiError::field(name, format!("unknown field {name:?} (known: {})", known.join(", ")))
            }
        });
    }
    Err(ApiError::new(StatusCode::BAD_REQUEST, whole.to_string()))
}

/// Turns a `POST /v1/runs` body into a checked run.
fn parse_run(body: &[u8], args: &ServeArgs) -> Result<RunConfig, ApiError> {
    let mut request = read_request(body)?;
    match &request.agents {
        // Callers of the API have no business reading the controller's disk.
        Some(list) if list.split(',').any(|e| e.trim().starts_with('@')) => {
            return Err(UsageError::new(Field::Agents, "@FILE lists are not accepted over the API").into());
        }
        Some(_) => {}
        None => request.agents.clone_from(&args.agents),
    }
    request.output = Output::Json;
    request.quiet = true;
    request.link = args.link.clone();
    Ok(request.check()?)
}

/// Live figures of a run: totals so far and the last complete second.
#[derive(Debug, Serialize)]
struct LiveFigures {
    elapsed_s: f64,
    requests: u64,
    successes: u64,
    failures: u64,
    requests_per_second: Option<u64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    agents: usize,
    agents_lost: usize,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl ApiRun {
    /// The run as `GET /v1/runs/{id}` shows it; the series from second `since`.
    fn view(&self, since: usize) -> Value {
        self.view_of(&lock(&self.live), since)
    }

    /// [`ApiRun::view`] of `live`, this run's progress, already locked.
    fn view_of(&self, live: &RunProgress, since: usize) -> Value {
        let rows = live.series.rows();
        // While running, the newest second is still filling up.
        let complete = if live.state == RunState::Running { rows.len().saturating_sub(1) } else { rows.len() };
        let last: Option<&SecondRow> = complete.checked_sub(1).and_then(|i| rows.get(i));
        let (up, lost) = live.series.agents();
        let elapsed = match (live.state, live.started) {
            (RunState::Running, Some(t)) => t.elapsed(),
            _ => live.elapsed,
        };
        let figures = LiveFigures {
            elapsed_s: elapsed.as_secs_f64(),
            requests: rows.iter().map(|r| r.requests).sum(),
            successes: rows.iter().map(|r| r.successes).sum(),
            failures: rows.iter().map(|r| r.failures).sum(),
            requests_per_second: last.map(|r| r.requests),
            p50_ms: last.and_then(|r| r.p50_ms),
            p99_ms: last.and_then(|r| r.p99_ms),
            agents: up,
            agents_lost: lost,
        };
        json!({
            "id": self.id,
            "state": live.state,
            "created_at": rfc3339(self.created),
            "request": self.request,
            "agents": live.agents,
            "live": figures,
            "series": rows.get(since.min(rows.len())..).unwrap_or_default(),
            "error": live.error,
            "passed": live.report.as_ref().map(|r| r.thresholds.iter().all(|t| t.passed)),
            "report": live.report,
        })
    }

    fn summary(&self) -> Value {
        let live = lock(&self.live);
        json!({
            "id": self.id,
            "state": live.state,
            "created_at": rfc3339(self.created),
            "url": self.request.get("url"),
        })
    }
}

impl Service {
    fn find(&self, id: &str) -> Result<Arc<ApiRun>, ApiError> {
        lock(&self.runs)
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no run {id:?}")))
    }

    fn new_id(&self) -> String {
        use std::hash::{BuildHasher, Hasher};
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut h = self.ids.build_hasher();
        h.write_u64(n);
        format!("{:016x}", h.finish())
    }

    /// Registers a run if there is room: at most `--max-runs` going, and
    /// the oldest finished ones forgotten beyond `--keep` runs or
    /// `--keep-bytes` bytes.
    fn admit(&self, run: Arc<ApiRun>) -> Result<(), ApiError> {
        let mut runs = lock(&self.runs);
        let running = runs.iter().filter(|r| lock(&r.live).state == RunState::Running).count();
        if running >= self.args.max_runs as usize {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{running} runs are going, the most this server takes (--max-runs); try again later"),
            ));
        }
        let mut finished = runs.len() - running;
        // Every run going now (the new one too) will finish and stay: room
        // is made for them, so no more than `--keep` finished runs remain,
        // holding no more than `--keep-bytes` between them.
        let mut bytes: usize = runs.iter().map(|r| lock(&r.live).bytes).sum();
        runs.retain(|r| {
            let live = lock(&r.live);
            let over = finished + running + 1 > self.args.keep || bytes > self.args.keep_bytes;
            let forget = over && live.state != RunState::Running;
            finished -= usize::from(forget);
            bytes -= if forget { live.bytes } else { 0 };
            !forget
        });
        runs.push(run);
        Ok(())
    }
}

async fn create(State(svc): State<Arc<Service>>, body: Bytes) -> Result<Response, ApiError> {
    let cfg = parse_run(&body, &svc.args)?;
    let (tx, rx) = oneshot::channel();
    let run = Arc::new(ApiRun {
        id: svc.new_id(),
        created: SystemTime::now(),
        // Parsed already: it is an object.
        request: serde_json::from_slice(&body).unwrap_or_default(),
        live: Mutex::new(RunProgress {
            state: RunState::Running,
            series: Series::new(Progress::Off).with_stages(cfg.stages.as_ref().map(|s| s.ends()).unwrap_or_default()),
            agents: Vec::new(),
            started: None,
            elapsed: Duration::ZERO,
            report: None,
            error: None,
            bytes: 0,
        }),
        cancel: Mutex::new(Some(tx)),
    });
    svc.admit(run.clone())?;
    let id = run.id.clone();
    let watch = svc.metrics.as_ref().map(|m| m.watch(&cfg, Some(id.clone())));
    tokio::spawn(run_in_background(run, cfg, rx, watch));
    let location = format!("/v1/runs/{id}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(json!({ "id": id }))).into_response())
}

/// Runs in the background and leaves the report (or the error) on the run.
async fn run_in_background(
    run: Arc<ApiRun>,
    cfg: RunConfig,
    cancel: oneshot::Receiver<()>,
    metrics: Option<crate::metrics::RunMetrics>,
) {
    let mut watch = Watch(run.clone());
    let cancel = async {
        // A dropped sender (the server going away) cancels too.
        let _ = cancel.await;
    };
    let mut tee = crate::metrics::Tee::new(&mut watch, metrics);
    let result = crate::run_on_agents(&cfg, &mut tee, cancel).await;
    tee.finish(result.as_ref().map_or(&[][..], |o| &o.agents[..]));
    let mut live = lock(&run.live);
    live.elapsed = live.started.map(|t| t.elapsed()).unwrap_or_default();
    match result {
        Ok(outcome) => {
            let report = Report::build(&cfg, &outcome, live.series.rows(), live.series.stages());
            live.state = match report.exit_code() {
                _ if report.cancelled => RunState::Cancelled,
                1 => {
                    live.error = Some("the run could not do its work: every agent was lost".into());
                    RunState::Failed
                }
                _ => RunState::Done,
            };
            live.report = Some(report);
        }
        Err(e) => {
            live.error = Some(crate::error::chain(&e));
            live.state = RunState::Failed;
        }
    }
    // What the run now holds is what `GET` shows of it, so its JSON is the
    // measure; set with the state, so a run seen over is counted.
    live.bytes = run.view_of(&live, 0).to_string().len();
}

#[derive(Deserialize)]
struct Since {
    since: Option<usize>,
}

async fn show(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(svc.find(&id)?.view(q.since.unwrap_or(0))))
}

async fn list(State(svc): State<Arc<Service>>) -> axum::Json<Value> {
    let runs: Vec<Value> = lock(&svc.runs).iter().map(|r| r.summary()).collect();
    axum::Json(json!({ "runs": runs }))
}

async fn cancel(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = svc.find(&id)?;
    let state = lock(&run.live).state;
    match lock(&run.cancel).take() {
        Some(tx) if state == RunState::Running => {
            let _ = tx.send(());
            Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": id, "state": state, "cancelling": true })))
                .into_response())
        }
        _ => Err(ApiError::new(StatusCode::CONFLICT, format!("run {id} is not running (it is {state:?})"))),
    }
}

async fn report_html(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = svc.find(&id)?;
    let live = lock(&run.live);
    match &live.report {
        Some(report) => Ok(Html(crate::html::page(report)).into_response()),
        None => Err(ApiError::new(StatusCode::CONFLICT, format!("run {id} has no report yet"))),
    }
}

/// Run `b` compared with run `a` as its baseline, as `controller compare
/// --output json` gives it.
async fn compare_runs(
    State(svc): State<Arc<Service>>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let saved = |id: &str| -> Result<crate::compare::Saved, ApiError> {
        let run = svc.find(id)?;
        let live = lock(&run.live);
        match &live.report {
            Some(report) => Ok(crate::compare::Saved::of(report)),
            None => Err(ApiError::new(StatusCode::CONFLICT, format!("run {id} has no report yet"))),
        }
    };
    let (baseline, candidate) = (saved(&a)?, saved(&b)?);
    let comparison = crate::compare::compare(&baseline, &candidate, &crate::compare::Settings::default());
    Ok(axum::Json(comparison).into_response())
}

/// The run's charts so far, drawn by the controller like the report's.
async fn charts(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> Result<axum::Json<Value>, ApiError> {
    let run = svc.find(&id)?;
    let requested = run.request.get("rate").and_then(Value::as_f64);
    let live = lock(&run.live);
    let mut rows = live.series.rows();
    // While running, the newest second is still filling up.
    if live.state == RunState::Running {
        rows.pop();
    }
    drop(live);
    Ok(axum::Json(json!({
        "rate": crate::html::rate_over_time(&rows, requested),
        "latency": crate::html::latency_chart(&rows),
    })))
}

/// Lets `/v1` calls through only with the API token, when one is set.
async fn authorize(State(svc): State<Arc<Service>>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if let Some(token) = &svc.token {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(volley_proto::auth::bearer);
        match presented {
            Some(p) if token.matches(p) => {}
            Some(_) => return ApiError::new(StatusCode::UNAUTHORIZED, "wrong API token").into_response(),
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this server needs 'Authorization: Bearer TOKEN' (its --api-token)",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Refuses what another web site could make a browser send here: any page
/// the user visits may POST a `text/plain` body to `127.0.0.1` without a
/// preflight, and a name it controls may resolve to this host (DNS
/// rebinding). So, for every request, on loopback too and with or without a
/// token: the `Host` must name this server (an IP address, `localhost` or an
/// `--allowed-host`), an `Origin`, when sent, must be the page's own
/// (`http://` + that Host), and a `POST` must say `Content-Type:
/// application/json`, which no page can send cross-origin without a
/// preflight this server never answers.
async fn same_origin(State(svc): State<Arc<Service>>, request: Request, next: Next) -> Response {
    match svc.check_origin(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

impl Service {
    fn check_origin(&self, method: &axum::http::Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let forbidden = |why: String| ApiError::new(StatusCode::FORBIDDEN, why);
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| forbidden("a Host header naming this server is required".into()))?;
        if !self.host_allowed(host) {
            return Err(forbidden(format!(
                "Host {host:?} is not a name of this server; reach it by IP address or localhost, or start it \
                 with --allowed-host NAME"
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let own = format!("http://{host}");
            if !origin.as_bytes().eq_ignore_ascii_case(own.as_bytes()) {
                return Err(forbidden(format!(
                    "cross-origin request from {} refused: this API answers only its own page ({own})",
                    String::from_utf8_lossy(origin.as_bytes())
                )));
            }
        }
        if *method == axum::http::Method::POST {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a POST needs 'Content-Type: application/json'",
                ));
            }
        }
        Ok(())
    }

    /// Whether `host` (a Host header: name or address, optional port) names
    /// this server: any IP address (a rebinding page cannot make a browser
    /// send one for its own name), `localhost`, or an `--allowed-host`.
    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => host
                .rsplit_once(':')
                .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
        };
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.args.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /openapi.yaml")
}

/// The API and the page, for a server with these settings.
fn router(svc: Arc<Service>) -> Router {
    let api = Router::new()
        .route("/v1/runs", get(list).post(create))
        .route("/v1/runs/{id}", get(show).delete(cancel))
        .route("/v1/runs/{id}/report.html", get(report_html))
        .route("/v1/runs/{a}/compare/{b}", get(compare_runs))
        .route("/v1/runs/{id}/charts", get(charts))
        .route_layer(middleware::from_fn_with_state(svc.clone(), authorize));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/runs/{id}", get(|| async { Html(PAGE) }))
        .route("/openapi.yaml", get(|| async { ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI) }))
        .merge(api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(svc.clone(), same_origin))
        .with_state(svc)
}

/// `controller serve`: serves until Ctrl-C or SIGTERM, then cancels the runs
/// still going and waits (a little) for their reports.
pub async fn serve(args: ServeArgs) -> Result<i32, Error> {
    check_serve_args(&args)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| UsageError::new(Field::Listen, format!("{}: cannot listen: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| Error::start("the API's listener", e))?;
    let metrics = match args.metrics_listen {
        Some(at) => {
            let m = crate::metrics::Metrics::new();
            crate::metrics::spawn(crate::metrics::bind(at).await?, &m);
            Some(m)
        }
        None => None,
    };
    let svc = Arc::new(Service {
        metrics,
        token: args.api_token.as_deref().and_then(volley_proto::auth::Token::new),
        args,
        runs: Mutex::new(Vec::new()),
        ids: std::hash::RandomState::new(),
        next: std::sync::atomic::AtomicU64::new(1),
    });
    // Installed before the ready line, so a SIGTERM sent as soon as it is read
    // stops the server gracefully.
    let shutdown = volley_common::shutdown_signal().map_err(|e| Error::start("the signal handlers", e))?;
    // Tests and scripts wait for this line.
    println!("controller: serving the API and the web page on http://{addr}");
    axum::serve(listener, router(svc.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::start("serving", e))?;
    let running: Vec<Arc<ApiRun>> =
        lock(&svc.runs).iter().filter(|r| lock(&r.live).state == RunState::Running).cloned().collect();
    for run in &running {
        if let Some(tx) = lock(&run.cancel).take() {
            let _ = tx.send(());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && running.iter().any(|r| lock(&r.live).state == RunState::Running) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("controller: stopped serving");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args() -> ServeArgs {
        let cli = crate::cli::Cli::parse_from(["controller", "serve"]);
        match cli.command {
            crate::cli::Command::Serve(a) => *a,
            _ => unreachable!(),
        }
    }

    fn field(body: &str) -> (Option<String>, String) {
        let e = parse_run(body.as_bytes(), &args()).expect_err(body);
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        (e.field, e.message)
    }

    #[test]
    fn bad_bodies_name_their_field() {
        assert_eq!(field("not json").0, None);
        assert_eq!(field("[1]").0, None);
        for (body, want) in [
            (r#"{"requests": 5}"#, "url"),
            (r#"{"url": 5, "requests": 5}"#, "url"),
            (r#"{"url": "ftp://x/", "requests": 5}"#, "url"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "color": 1}"#, "color"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": -5}"#, "requests"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 0}"#, "requests"),
            (r#"{"url": "http://127.0.0.1:1/"}"#, "requests"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "duration": "1s"}"#, "duration"),
            (r#"{"url": "http://127.0.0.1:1/", "duration": "soon"}"#, "duration"),
            (r#"{"url": "http://127.0.0.1:1/", "duration": -1}"#, "duration"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "concurrency": "x"}"#, "concurrency"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "concurrency": 0}"#, "concurrency"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "rate": -3}"#, "rate"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "method": "G T"}"#, "method"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "headers": {"X": 1}}"#, "headers"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "headers": ["nocolon"]}"#, "headers"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "agents": "@/etc/passwd"}"#, "agents"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "agents": ["a:1", "a"]}"#, "agents"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "fail_if": "p99 <"}"#, "fail_if"),
            (r#"{"url": "http://127.0.0.1:1/", "requests": 5, "body": 3}"#, "body"),
        ] {
            let (got, message) = field(body);
            assert_eq!(got.as_deref(), Some(want), "{body}: {message}");
            assert!(message.starts_with(want) || message.contains(want), "{body}: {message}");
        }
    }

    #[test]
    fn good_bodies_become_runs() {
        let cfg = parse_run(
            br#"{"url": "http://127.0.0.1:1/x", "duration": 2.5, "concurrency": 3, "method": "post",
                 "headers": {"X-A": "1"}, "body": "@/etc/passwd", "fail_if": ["p99 < 1s"]}"#,
            &args(),
        )
        .unwrap();
        assert_eq!(cfg.limit, crate::config::Limit::Duration(Duration::from_millis(2500)));
        assert_eq!((cfg.connections, cfg.method.as_str()), (3, "POST"));
        assert_eq!(cfg.headers, [("X-A".to_owned(), b"1".to_vec())]);
        // Taken as given, never read from this host's disk.
        assert_eq!(cfg.body, b"@/etc/passwd");
        assert_eq!(cfg.thresholds.len(), 1);
    }

    #[test]
    fn the_openapi_file_lists_every_field() {
        let doc: serde_json::Value = serde_yaml_ng::from_str(OPENAPI).expect("openapi.yaml parses");
        let props = &doc["components"]["schemas"]["RunRequest"]["properties"];
        // The request's fields by their JSON names (crate::request's test
        // checks these are exactly the fields serde takes).
        let fields: Vec<&str> = Field::ALL.iter().filter_map(|f| f.json()).collect();
        for field in &fields {
            assert!(props.get(field).is_some(), "openapi.yaml lacks {field}");
        }
        assert_eq!(props.as_object().unwrap().len(), fields.len(), "openapi.yaml lists fields the API does not take");
        for path in [
            "/v1/runs",
            "/v1/runs/{id}",
            "/v1/runs/{id}/report.html",
            "/v1/runs/{id}/charts",
            "/v1/runs/{a}/compare/{b}",
            "/",
            "/runs/{id}",
            "/openapi.yaml",
        ] {
            assert!(doc["paths"].get(path).is_some(), "openapi.yaml lacks {path}");
        }
    }

    #[test]
    fn open_listen_needs_a_token() {
        let mut a = args();
        a.listen = "0.0.0.0:8089".parse().unwrap();
        assert!(check_serve_args(&a).unwrap_err().to_string().contains("--api-token"));
        a.api_token = Some("s3cret".into());
        check_serve_args(&a).unwrap();
    }
}
