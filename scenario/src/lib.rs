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
//! - [`compile`]: every check that makes a request able to succeed, and the
//!   [`Compiled`] form virtual users run (templates parsed, variables in slots).
//! - [`template`]: `${name}` templates and the per-user [`Vars`].
//! - [`check`]: assertions and captures.
//! - [`think`]: think times.
//! - [`users`]: how many users of each type, and in which order they start.
//! - this module: the resolved [`Scenario`], what travels to agents as JSON.

use serde::{Deserialize, Serialize};

pub mod check;
pub mod compile;
pub mod file;
pub mod template;
pub mod think;
pub mod users;

pub use check::{Assertions, Capture};
pub use compile::{Compiled, CompiledBody, CompiledStep, CompiledUser};
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
}
