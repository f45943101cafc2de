//! Volley scenarios: user types that log in, think, and call several
//! endpoints with weights and assertions, declared in one TOML file that the
//! controller checks before any load and ships to every agent.
//!
//! ```toml
//! base_url = "http://127.0.0.1:8080"   # optional; `controller run --url` overrides it
//!
//! [vars]                                # constants, usable as ${name}
//! password = "secret"
//!
//! [[user]]
//! name = "shopper"
//! weight = 3                            # share of the virtual users; or `count = 10` (a fixed number)
//! think = "between 0.1s..0.3s"          # or "constant 1s", "constant_throughput 2" (iterations/s per user)
//!
//! [[user.setup]]                        # once per virtual user, in order
//! name = "login"
//! method = "POST"
//! path = "/login"
//! json = { user = "alice", password = "${password}" }
//! capture = { token = { json = "/token" } }   # or { cookie = "session" }, { header = "x-token" }
//! assert = { status = [200] }
//!
//! [[user.request]]                      # one picked per iteration, by weight
//! name = "list items"
//! weight = 3
//! path = "/items"
//! query = { limit = "10" }
//! headers = { authorization = "Bearer ${token}" }
//! tags = ["read"]
//! assert = { status = [200], body_contains = "items", json = { "/count" = 3 }, latency_below = "500ms" }
//! ```
//!
//! A request's body is at most one of `body` (text), `json` (any TOML value,
//! sent as JSON), `form` (a table, sent url-encoded) and `body_file` (a file
//! next to the scenario, read once by the controller and shipped inline).
//! Without `assert.status`, any 2xx passes.
//!
//! # Layout
//! - [`file`]: reading the TOML with positions; every error is one line
//!   `FILE:LINE:COLUMN: FIELD: MESSAGE`.
//! - [`template`]: `${name}` templates.
//! - [`check`]: assertions and captures.
//! - this module: the resolved [`Scenario`] (what travels to agents as JSON)
//!   and its [`Compiled`] form (what virtual users run).

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod check;
pub mod file;
pub mod template;

pub use check::{Assertions, Capture};
pub use template::{Escape, Slots, Template, Vars};

/// Why a scenario was refused. Its `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {message}", position(.origin, *.at))]
pub struct ScenarioError {
    /// The file (or "scenario" for one received as JSON).
    pub origin: String,
    /// Line and column, 1-based, when known.
    pub at: Option<(usize, usize)>,
    /// Which field, e.g. `user[0].request[1].weight`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn position(origin: &str, at: Option<(usize, usize)>) -> String {
    match at {
        Some((line, col)) => format!("{origin}:{line}:{col}: "),
        None => format!("{origin}: "),
    }
}

/// Think time between a virtual user's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Think {
    /// None: the next iteration starts at once.
    #[default]
    None,
    /// Always this long (ms).
    Constant(u64),
    /// Uniformly between two bounds (ms).
    Between(u64, u64),
    /// Iterations per second per user: the pause fills up each 1/rate period.
    ConstantThroughput(f64),
}

impl Think {
    /// Parses `constant 1s`, `between 0.5s..1.5s`, `constant_throughput 2` or `none`.
    pub fn parse(s: &str) -> Result<Think, String> {
        let s = s.trim();
        let dur = |d: &str| {
            humantime::parse_duration(d.trim())
                .map(|d| d.as_millis() as u64)
                .map_err(|e| format!("{d:?} is not a duration ({e}; e.g. 500ms, 1s)"))
        };
        let (kind, arg) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        match kind {
            "none" if arg.is_empty() => Ok(Think::None),
            "constant" => Ok(Think::Constant(dur(arg)?)),
            "between" => {
                let (a, b) = arg.split_once("..").ok_or_else(|| format!("{arg:?} is not A..B (e.g. 0.5s..1.5s)"))?;
                let (a, b) = (dur(a)?, dur(b)?);
                if a > b {
                    return Err(format!("{arg:?}: the lower bound is above the upper one"));
                }
                Ok(Think::Between(a, b))
            }
            "constant_throughput" => match arg.trim().parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Ok(Think::ConstantThroughput(r)),
                _ => Err(format!("{arg:?} is not a number of iterations per second above 0")),
            },
            _ => Err(format!(
                "{s:?} is not a think time: use \"constant 1s\", \"between 0.5s..1.5s\", \"constant_throughput 2\" or \"none\""
            )),
        }
    }

    /// The pause after an iteration that took `took`; `random` is a random u64.
    pub fn pause(&self, took: Duration, random: u64) -> Duration {
        match *self {
            Think::None => Duration::ZERO,
            Think::Constant(ms) => Duration::from_millis(ms),
            Think::Between(a, b) => Duration::from_millis(a + random % (b - a + 1)),
            Think::ConstantThroughput(r) => Duration::from_secs_f64(1.0 / r).saturating_sub(took),
        }
    }
}

/// A request body as the file gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Text (also what `body_file` becomes).
    Raw(String),
    /// JSON text; variables inside its strings are JSON-escaped.
    Json(String),
    /// Form fields, sent url-encoded.
    Form(Vec<(String, String)>),
}

/// One request of a user type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The name results are grouped under (default `METHOD path`).
    pub name: String,
    /// Relative weight among the user type's requests (setup steps: unused).
    pub weight: u64,
    /// The method.
    pub method: String,
    /// Path and templates (`/items/${id}`).
    pub path: String,
    /// Query parameters (values are templates).
    pub query: Vec<(String, String)>,
    /// Headers (values are templates).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Body>,
    /// Tags for `--tags` / `--exclude-tags`.
    pub tags: Vec<String>,
    /// Values this step captures into variables.
    pub captures: Vec<(String, Capture)>,
    /// What its response must satisfy.
    pub assert: Assertions,
}

/// A kind of virtual user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserType {
    /// Its name.
    pub name: String,
    /// Its share of the users (when `count` is not set).
    pub weight: u64,
    /// A fixed number of users instead.
    pub count: Option<u64>,
    /// Pause between iterations.
    pub think: Think,
    /// Run once per virtual user, in order.
    pub setup: Vec<Step>,
    /// One picked per iteration, by weight.
    pub requests: Vec<Step>,
}

/// A checked scenario, resolved (bodies inlined): what the controller ships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// `http(s)://host[:port]` (and an optional path prefix).
    pub base_url: Option<String>,
    /// Constants.
    pub vars: Vec<(String, String)>,
    /// The user types.
    pub users: Vec<UserType>,
}

/// One step ready to run: templates parsed, names resolved.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    /// Its slot in [`Compiled::names`].
    pub name_slot: usize,
    /// The method.
    pub method: http::Method,
    /// The path template (rendered with [`Escape::Path`]).
    pub path: Template,
    /// Query: encoded key, value template (rendered with [`Escape::Form`]).
    pub query: Vec<(String, Template)>,
    /// Headers.
    pub headers: Vec<(http::HeaderName, Template)>,
    /// Body template, how to escape into it, and its content type.
    pub body: Option<CompiledBody>,
    /// Variable slot and what fills it.
    pub captures: Vec<(usize, Capture)>,
    /// Response checks.
    pub assert: Assertions,
}

/// A body ready to render.
#[derive(Debug, Clone)]
pub enum CompiledBody {
    /// Text, as is.
    Raw(Template),
    /// JSON text.
    Json(Template),
    /// Encoded key, value template.
    Form(Vec<(String, Template)>),
}

impl CompiledBody {
    /// Renders the body into `out`; returns the content type it implies.
    pub fn render(&self, vars: &Vars, out: &mut String) -> Option<&'static str> {
        match self {
            CompiledBody::Raw(t) => {
                t.render(vars, Escape::None, out);
                None
            }
            CompiledBody::Json(t) => {
                t.render(vars, Escape::Json, out);
                Some("application/json")
            }
            CompiledBody::Form(fields) => {
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push('&');
                    }
                    out.push_str(k);
                    out.push('=');
                    v.render(vars, Escape::Form, out);
                }
                Some("application/x-www-form-urlencoded")
            }
        }
    }
}

/// A user type ready to run.
#[derive(Debug, Clone)]
pub struct CompiledUser {
    /// Its name.
    pub name: String,
    /// Pause between iterations.
    pub think: Think,
    /// Setup steps.
    pub setup: Vec<CompiledStep>,
    /// Weighted requests.
    pub requests: Vec<CompiledStep>,
    /// Running sums of the requests' weights.
    cumulative: Vec<u64>,
    /// A new user's variables: the constants set, captures empty.
    pub initial: Vars,
}

impl CompiledUser {
    /// Picks a request index by weight from a random u64.
    pub fn pick(&self, random: u64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0).max(1);
        let r = random % total;
        self.cumulative.partition_point(|&c| c <= r).min(self.requests.len().saturating_sub(1))
    }
}

/// A scenario ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The base URL, without a trailing `/`.
    pub base_url: String,
    /// The user types.
    pub users: Vec<CompiledUser>,
    /// Request names as (name, method), in slot order.
    pub names: Vec<(String, String)>,
}

/// A failed check of one field of a step, before positions are added.
#[derive(Debug)]
pub(crate) struct FieldError {
    /// The field relative to the step (`path`, `headers.x-a`, `assert.status`).
    pub field: String,
    pub message: String,
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// Checks one step and compiles it; `slots` are the variables known there.
/// `all` is the user type's whole slot table, where captures land.
pub(crate) fn compile_step(
    step: &Step,
    slots: &Slots,
    all: &Slots,
    names: &mut Vec<(String, String)>,
) -> Result<CompiledStep, FieldError> {
    let method = http::Method::from_bytes(step.method.as_bytes())
        .map_err(|_| field_err("method", format!("{:?} is not an HTTP method", step.method)))?;
    if !step.path.starts_with('/') {
        return Err(field_err("path", format!("{:?} must start with /", step.path)));
    }
    let tpl = |field: String, text: &str| Template::parse(text, slots).map_err(|e| field_err(field, e.to_string()));
    let path = tpl("path".into(), &step.path)?;
    let query = step
        .query
        .iter()
        .map(|(k, v)| Ok((template::form_encode(k), tpl(format!("query.{k}"), v)?)))
        .collect::<Result<_, FieldError>>()?;
    let headers = step
        .headers
        .iter()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| field_err(format!("headers.{k}"), format!("{k:?} is not a header name")))?;
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(field_err(format!("headers.{k}"), "the value contains a line break"));
            }
            Ok((name, tpl(format!("headers.{k}"), v)?))
        })
        .collect::<Result<_, FieldError>>()?;
    let body = match &step.body {
        None => None,
        Some(Body::Raw(t)) => Some(CompiledBody::Raw(tpl("body".into(), t)?)),
        Some(Body::Json(t)) => Some(CompiledBody::Json(tpl("json".into(), t)?)),
        Some(Body::Form(fields)) => Some(CompiledBody::Form(
            fields
                .iter()
                .map(|(k, v)| Ok((template::form_encode(k), tpl(format!("form.{k}"), v)?)))
                .collect::<Result<_, FieldError>>()?,
        )),
    };
    step.assert.validate().map_err(|(f, m)| field_err(format!("assert.{f}"), m))?;
    let mut captures = Vec::new();
    for (var, c) in &step.captures {
        c.validate().map_err(|m| field_err(format!("capture.{var}"), m))?;
        let slot = all.find(var).ok_or_else(|| {
            field_err(format!("capture.{var}"), "captures are only for setup steps (a request's value would be lost)")
        })?;
        captures.push((slot, c.clone()));
    }
    let key = (step.name.clone(), method.as_str().to_owned());
    let name_slot = match names.iter().position(|n| *n == key) {
        Some(i) => i,
        None => {
            names.push(key);
            names.len() - 1
        }
    };
    Ok(CompiledStep { name_slot, method, path, query, headers, body, captures, assert: step.assert.clone() })
}

/// Where a compile error is: user index, `setup` or `request`, step index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Scenario,
    User(usize),
    Step(usize, &'static str, usize),
}

impl Place {
    pub(crate) fn path(&self, field: &str) -> String {
        match self {
            Place::Scenario => field.to_owned(),
            Place::User(u) => format!("user[{u}].{field}"),
            Place::Step(u, list, i) => format!("user[{u}].{list}[{i}].{field}"),
        }
    }
}

/// The variables of a user type: constants, then its setup captures in order.
pub(crate) fn slots_of(vars: &[(String, String)], user: &UserType) -> Slots {
    let mut names: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
    for step in &user.setup {
        for (var, _) in &step.captures {
            if !names.contains(var) {
                names.push(var.clone());
            }
        }
    }
    Slots(names)
}

impl Scenario {
    /// Reads and checks a scenario file (see [`file`]).
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        file::load(path)
    }

    /// A scenario received as JSON (from the controller), checked again.
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = serde_json::from_str(text).map_err(|e| ScenarioError {
            origin: "scenario".into(),
            at: None,
            field: "(json)".into(),
            message: e.to_string(),
        })?;
        s.compile()?;
        Ok(s)
    }

    /// The scenario as JSON, for the plan.
    pub fn to_json(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string(self).expect("a scenario serialises")
    }

    /// The same scenario with another base URL (`--url`).
    pub fn with_base_url(mut self, url: &str) -> Scenario {
        self.base_url = Some(url.to_owned());
        self
    }

    /// Keeps only requests with any of `include` (when given) and drops those
    /// with any of `exclude`; setup steps always stay. A user type left with
    /// no requests is an error naming it.
    pub fn select_tags(mut self, include: &[String], exclude: &[String]) -> Result<Scenario, ScenarioError> {
        for (u, user) in self.users.iter_mut().enumerate() {
            user.requests.retain(|r| {
                (include.is_empty() || r.tags.iter().any(|t| include.contains(t)))
                    && !r.tags.iter().any(|t| exclude.contains(t))
            });
            if user.requests.iter().all(|r| r.weight == 0) {
                return Err(ScenarioError {
                    origin: "--tags/--exclude-tags".into(),
                    at: None,
                    field: format!("user[{u}]"),
                    message: format!("user type {:?} has no requests left to send", user.name),
                });
            }
        }
        Ok(self)
    }

    /// Checks everything and compiles it for running.
    pub fn compile(&self) -> Result<Compiled, ScenarioError> {
        self.compile_at(&|place, field, message| ScenarioError {
            origin: "scenario".into(),
            at: None,
            field: place.path(field),
            message,
        })
    }

    pub(crate) fn compile_at(
        &self,
        error: &dyn Fn(Place, &str, String) -> ScenarioError,
    ) -> Result<Compiled, ScenarioError> {
        let base_url = self.base_url.clone().ok_or_else(|| {
            error(Place::Scenario, "base_url", "no base URL: set base_url in the file or give --url".into())
        })?;
        check_base_url(&base_url).map_err(|m| error(Place::Scenario, "base_url", m))?;
        if self.users.is_empty() {
            return Err(error(Place::Scenario, "user", "no user types: add at least one [[user]]".into()));
        }
        if self.users.iter().all(|u| u.count.is_none() && u.weight == 0) {
            return Err(error(Place::Scenario, "user", "every user type has weight 0".into()));
        }
        let mut names = Vec::new();
        let mut users = Vec::new();
        for (u, user) in self.users.iter().enumerate() {
            if user.requests.is_empty() {
                return Err(error(
                    Place::User(u),
                    "request",
                    format!("user type {:?} has no [[user.request]]", user.name),
                ));
            }
            if user.requests.iter().all(|r| r.weight == 0) {
                return Err(error(Place::User(u), "request", format!("every request of {:?} has weight 0", user.name)));
            }
            let all = slots_of(&self.vars, user);
            // A setup step sees the constants and the captures before it.
            let mut known = Slots(self.vars.iter().map(|(k, _)| k.clone()).collect());
            let mut setup = Vec::new();
            for (i, step) in user.setup.iter().enumerate() {
                // `known` is a prefix of `all`, so template slots agree.
                let c = compile_step(step, &known, &all, &mut names)
                    .map_err(|e| error(Place::Step(u, "setup", i), &e.field, e.message))?;
                setup.push(c);
                for (var, _) in &step.captures {
                    if known.find(var).is_none() {
                        known.0.push(var.clone());
                    }
                }
            }
            let requests = user
                .requests
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    if let Some((var, _)) = step.captures.first() {
                        let why = "captures are only for setup steps (a request's value would be lost)";
                        return Err(error(Place::Step(u, "request", i), &format!("capture.{var}"), why.into()));
                    }
                    compile_step(step, &all, &all, &mut names)
                        .map_err(|e| error(Place::Step(u, "request", i), &e.field, e.message))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut sum = 0;
            let cumulative = user.requests.iter().map(|r| {
                sum += r.weight;
                sum
            });
            let cumulative = cumulative.collect();
            let mut initial = Vars(vec![None; all.0.len()]);
            for (i, (_, v)) in self.vars.iter().enumerate() {
                initial.set(i, v.clone());
            }
            users.push(CompiledUser {
                name: user.name.clone(),
                think: user.think,
                setup,
                requests,
                cumulative,
                initial,
            });
        }
        Ok(Compiled { base_url: base_url.trim_end_matches('/').to_owned(), users, names })
    }

    /// Virtual users per user type for `total` users: fixed counts first,
    /// the rest by weight (largest remainders, ties to the first), exact.
    pub fn split_users(&self, total: u64) -> Result<Vec<u64>, String> {
        let fixed: u64 = self.users.iter().filter_map(|u| u.count).sum();
        if fixed > total {
            return Err(format!("the user types' fixed counts add up to {fixed}, more than the {total} users asked"));
        }
        let rest = total - fixed;
        let weights: Vec<u64> = self.users.iter().map(|u| if u.count.is_some() { 0 } else { u.weight }).collect();
        let sum: u64 = weights.iter().sum();
        if rest > 0 && sum == 0 {
            return Err(format!("{rest} users are left after the fixed counts but no user type has a weight"));
        }
        let mut out: Vec<u64> = self.users.iter().map(|u| u.count.unwrap_or(0)).collect();
        if rest == 0 {
            return Ok(out);
        }
        let shares: Vec<(u64, u128)> = weights
            .iter()
            .map(|&w| {
                let exact = u128::from(rest) * u128::from(w);
                ((exact / u128::from(sum)) as u64, exact % u128::from(sum))
            })
            .collect();
        let mut given: u64 = shares.iter().map(|s| s.0).sum();
        for (o, s) in out.iter_mut().zip(&shares) {
            *o += s.0;
        }
        let mut order: Vec<usize> = (0..shares.len()).filter(|&i| weights[i] > 0).collect();
        order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1).then(a.cmp(&b)));
        for i in order.into_iter().cycle() {
            if given == rest {
                break;
            }
            out[i] += 1;
            given += 1;
        }
        Ok(out)
    }
}

/// The user type of every virtual user, in start order, for `per_type`
/// users of each type: types interleaved in proportion, so that any
/// contiguous slice (an agent's share, or the first users a spawn rate
/// starts) is already a fair mix. Deterministic: the controller and the
/// agents compute the same order.
pub fn interleave(per_type: &[u64]) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = Vec::new();
    for (t, &n) in per_type.iter().enumerate() {
        for j in 0..n {
            keyed.push(((j as f64 + 0.5) / n as f64, t));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, t)| t).collect()
}

/// A base URL must be absolute http(s) with a host, without query.
fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(format!("{url:?}: a base URL has no query or fragment (use a request's query)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, weight: u64, count: Option<u64>) -> UserType {
        UserType { name: name.into(), weight, count, think: Think::None, setup: vec![], requests: vec![] }
    }

    #[test]
    fn users_split_exactly() {
        let s = Scenario {
            base_url: None,
            vars: vec![],
            users: vec![user("a", 3, None), user("b", 1, None), user("c", 0, Some(2))],
        };
        assert_eq!(s.split_users(10).unwrap(), [6, 2, 2]);
        assert_eq!(s.split_users(3).unwrap(), [1, 0, 2]);
        assert_eq!(s.split_users(2).unwrap(), [0, 0, 2]);
        for n in 2..200 {
            assert_eq!(s.split_users(n).unwrap().iter().sum::<u64>(), n);
        }
        assert!(s.split_users(1).unwrap_err().contains("fixed counts add up to 2"));
    }

    #[test]
    fn interleaving_mixes_every_slice() {
        let order = interleave(&[6, 2]);
        assert_eq!(order, [0, 0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(interleave(&[0, 3]), [1, 1, 1]);
        assert_eq!(interleave(&[]), Vec::<usize>::new());
    }

    #[test]
    fn think_times() {
        assert_eq!(Think::parse("constant 1s").unwrap(), Think::Constant(1000));
        assert_eq!(Think::parse("between 0.5s..1.5s").unwrap(), Think::Between(500, 1500));
        assert_eq!(Think::parse("constant_throughput 2").unwrap(), Think::ConstantThroughput(2.0));
        for bad in ["sometimes", "between 2s..1s", "constant soon", "constant_throughput -1", "between 1s"] {
            assert!(Think::parse(bad).is_err(), "{bad}");
        }
        let ct = Think::ConstantThroughput(2.0);
        assert_eq!(ct.pause(Duration::from_millis(100), 0), Duration::from_millis(400));
        assert_eq!(ct.pause(Duration::from_secs(1), 0), Duration::ZERO);
        let b = Think::Between(100, 200);
        assert!(
            (0..1000)
                .map(|r| b.pause(Duration::ZERO, r))
                .all(|p| p >= Duration::from_millis(100) && p <= Duration::from_millis(200))
        );
    }
}
