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
//! # The format
//!
//! | key | meaning |
//! |---|---|
//! | `base_url` | `http(s)://host[:port][/prefix]`; optional in the file, since `--url` replaces it |
//! | `[vars]` | string constants, used as `${name}` |
//! | `[[user]]` | a user type: `name` (unique), and `weight` (default 1, may be 0) *or* `count` (a fixed number of users, taken first), `think` |
//! | `user.think` | pause after each iteration: `constant 1s`, `between 0.5s..1.5s` (uniform, whole ms), `constant_throughput 2` (each user paces itself to 2 iterations/s: pause = 1/rate − the iteration's time, at least 0), `none` (default) |
//! | `[[user.setup]]` | steps run once per virtual user, in order; the only steps that may `capture`; no `weight` or `tags` |
//! | `[[user.request]]` | one is picked per iteration by `weight` (default 1; 0 disables it; not all 0; never negative) |
//! | step keys | `name` (results are grouped by it; default `METHOD path`), `method` (default `GET`), `path` (starts with `/`), `query` and `headers` (tables of strings), a body, `tags` (requests only), `assert`, `capture` (setup only) |
//! | body | at most one of `body = "text"`, `json = <any TOML value>` (content type `application/json` unless a header gives one), `form = { k = "v" }` (url-encoded, with its content type), `body_file = "path"` (relative to the scenario file; read when the file is loaded and shipped inline, so agents need no copy) |
//! | `assert` | `status = [200, 201]` (default: any 2xx), `body_contains = "text"`, `json = { "/pointer" = value }` (RFC 6901 pointers), `latency_below = "500ms"`; the first that fails fails the request, counted under its message |
//! | `capture` | `{ var = { json = "/pointer" } }`, `{ var = { cookie = "name" } }` or `{ var = { header = "name" } }` |
//! | `http2` | `true`: speak HTTP/2 only, as `--http2` does |
//! | `[[stage]]` | `duration = "30s"`, `target = 50`: the active virtual users move linearly to the target over the duration (as `--stage 30s:50`, which replaces the file's stages) |
//! | `[[feeder]]` | test data: `name`, `file` (CSV with a header row, or JSON lines), `mode` (`cycle`, `random`, `unique`), `per` (`user`, `iteration`), `on_exhausted` (`stop_user`, `end_run`); its columns are `${name.column}` (see [`feeder`]) |
//!
//! `${name}` may appear in the path, query values, header values and body
//! text (inside `json` strings and `form` values too); `$${` writes a literal
//! `${`. A step sees `[vars]` and the captures of the setup steps *before* it
//! in its own user type (a setup step's captures are not visible to itself);
//! a name used anywhere else is refused before any load, as in
//! `unknown variable ${tokn} (defined: password, token)`. Substituted values
//! are escaped for where they land (percent-encoded in paths, queries and
//! forms, JSON-escaped in `json` bodies).
//!
//! Every refusal is one line, `FILE:LINE:COLUMN: FIELD: MESSAGE`, for
//! instance `shop.toml:12:10: user[0].request[1].weight: -1 is negative; it
//! must be 0 or more`.
//!
//! # Layout
//! - [`mod@file`]: reading the TOML with positions; every error is one line
//!   `FILE:LINE:COLUMN: FIELD: MESSAGE`.
//! - [`compile`]: every check that makes a request able to succeed, and the
//!   [`Compiled`] form virtual users run (templates parsed, variables in slots).
//! - [`template`]: `${name}` templates and the per-user [`Vars`].
//! - [`feeder`]: feeder files read into tables, and how rows are handed out.
//! - [`check`]: assertions and captures.
//! - [`think`]: think times.
//! - [`users`]: how many users of each type, and in which order they start.
//! - this module: the resolved [`Scenario`], what travels to agents as JSON.

use serde::{Deserialize, Serialize};

pub mod check;
pub mod compile;
pub mod feeder;
pub mod file;
pub mod template;
pub mod think;
pub mod users;

pub use check::{Assertions, Capture};
pub use compile::{Compiled, CompiledBody, CompiledStep, CompiledUser, Feed};
pub use feeder::Feeder;
pub use template::{Escape, Slots, Template, Vars};
pub use think::Think;
pub use users::interleave;

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

impl UserType {
    /// Picks a request index by weight from a random u64 (what
    /// [`CompiledUser::pick`] does with running sums kept ready).
    pub fn pick(&self, random: u64) -> usize {
        // u128: a checked scenario's weights fit u64 together, an unchecked one may not.
        let total: u128 = self.requests.iter().map(|r| u128::from(r.weight)).sum();
        if total == 0 {
            return 0;
        }
        let mut r = u128::from(random) % total;
        for (i, req) in self.requests.iter().enumerate() {
            let w = u128::from(req.weight);
            if r < w {
                return i;
            }
            r -= w;
        }
        // Unreachable: r < total, the sum of the weights.
        0
    }
}

/// A checked scenario, resolved (bodies inlined): what the controller ships.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// `http(s)://host[:port]` (and an optional path prefix).
    pub base_url: Option<String>,
    /// Constants.
    pub vars: Vec<(String, String)>,
    /// The user types.
    pub users: Vec<UserType>,
    /// Test data (their tables travel beside the scenario, not in its JSON).
    #[serde(default)]
    pub feeders: Vec<Feeder>,
    /// `http2 = true`: speak HTTP/2 only, as `--http2` does.
    #[serde(default)]
    pub http2: bool,
    /// `[[stage]]`s: the active virtual users over time, as `--stage
    /// DURATION:USERS` gives them (the flags, when given, replace these).
    #[serde(default)]
    pub stages: Vec<Stage>,
}

/// One `[[stage]]`: the active users move linearly to `users` over `duration_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// How long the stage lasts (0: a step).
    pub duration_ms: u64,
    /// The active users at its end.
    pub users: u64,
}

impl Scenario {
    /// Reads and checks a scenario file (see [`mod@file`]).
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        file::load(path)
    }

    /// Parses and checks scenario `text`; `origin` names it in errors and
    /// `base_dir` is where `body_file` paths start.
    pub fn parse(text: &str, origin: &str, base_dir: &std::path::Path) -> Result<Scenario, ScenarioError> {
        file::parse(text, origin, base_dir)
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
}
