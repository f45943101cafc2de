//! The controller's errors, each with the exit code a user or script sees.
//!
//! A wrong value is a [`UsageError`]: the [`Field`] at fault and why. The
//! field knows both of its spellings, so the command line says
//! `-c/--connections: must be at least 1` and the HTTP API says
//! `concurrency: must be at least 1` from the same check.

use std::path::PathBuf;

/// A value of a run request (or of the controller's flags), with its
/// spelling on the command line and in the HTTP API's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `--url` / `url`.
    Url,
    /// `-n/--requests` / `requests`.
    Requests,
    /// `-z/--duration` / `duration`.
    Duration,
    /// `-c/--connections` / `concurrency`.
    Connections,
    /// `-q/--rate` / `rate`.
    Rate,
    /// `--ramp-up` / `ramp_up`.
    RampUp,
    /// `--stage` / `stages`.
    Stages,
    /// `-m/--method` / `method`.
    Method,
    /// `-H/--header` / `headers`.
    Headers,
    /// `-d/--body` / `body`.
    Body,
    /// `--agents` / `agents`.
    Agents,
    /// `--min-agents` / `min_agents`.
    MinAgents,
    /// `--threads` / `threads`.
    Threads,
    /// `--timeout` / `timeout`.
    Timeout,
    /// `--success-status` / `success_status`.
    SuccessStatus,
    /// `--fail-if` / `fail_if`.
    FailIf,
    /// `--scenario` / `scenario` (a file on the command line, its text in the API).
    Scenario,
    /// `-u/--users` / `users`.
    Users,
    /// `-r/--spawn-rate` / `spawn_rate`.
    SpawnRate,
    /// `--tags` / `tags`.
    Tags,
    /// `--exclude-tags` / `exclude_tags`.
    ExcludeTags,
    /// `-k/--target-insecure` / `target_insecure`.
    TargetInsecure,
    /// `--target-ca` (command line only).
    TargetCa,
    /// `--tls-ca` (command line only).
    TlsCa,
    /// `--tls-cert` (command line only).
    TlsCert,
    /// `--tls-key` (command line only).
    TlsKey,
    /// `controller serve --listen` (command line only).
    Listen,
    /// `--source-addr` / `source_addr`.
    SourceAddr,
    /// `--baseline` (command line only: the API compares stored runs).
    Baseline,
    /// `--html` (command line only).
    Html,
    /// `--hdr-log` (command line only).
    HdrLog,
    /// `--http2` / `http2`.
    Http2,
    /// `--streams` / `streams`.
    Streams,
    /// `--resolve-each` / `resolve_each`.
    ResolveEach,
    /// `--connect-to` / `connect_to`.
    ConnectTo,
}

impl Field {
    /// Every field, in the order `--help` and the API description give them.
    pub const ALL: [Field; 35] = [
        Field::Url,
        Field::Requests,
        Field::Duration,
        Field::Connections,
        Field::Rate,
        Field::RampUp,
        Field::Stages,
        Field::Method,
        Field::Headers,
        Field::Body,
        Field::Agents,
        Field::MinAgents,
        Field::Threads,
        Field::Timeout,
        Field::SuccessStatus,
        Field::FailIf,
        Field::Scenario,
        Field::Users,
        Field::SpawnRate,
        Field::Tags,
        Field::ExcludeTags,
        Field::TargetInsecure,
        Field::TargetCa,
        Field::TlsCa,
        Field::TlsCert,
        Field::TlsKey,
        Field::Listen,
        Field::Baseline,
        Field::Html,
        Field::HdrLog,
        Field::Http2,
        Field::Streams,
        Field::SourceAddr,
        Field::ResolveEach,
        Field::ConnectTo,
    ];

    /// The flag, as messages on the command line name it.
    pub fn cli(self) -> &'static str {
        match self {
            Field::Url => "--url",
            Field::Requests => "-n/--requests",
            Field::Duration => "-z/--duration",
            Field::Connections => "-c/--connections",
            Field::Rate => "-q/--rate",
            Field::RampUp => "--ramp-up",
            Field::Stages => "--stage",
            Field::Method => "-m/--method",
            Field::Headers => "-H/--header",
            Field::Body => "-d/--body",
            Field::Agents => "--agents",
            Field::MinAgents => "--min-agents",
            Field::Threads => "--threads",
            Field::Timeout => "--timeout",
            Field::SuccessStatus => "--success-status",
            Field::FailIf => "--fail-if",
            Field::Scenario => "--scenario",
            Field::Users => "-u/--users",
            Field::SpawnRate => "-r/--spawn-rate",
            Field::Tags => "--tags",
            Field::ExcludeTags => "--exclude-tags",
            Field::TargetInsecure => "-k/--target-insecure",
            Field::TargetCa => "--target-ca",
            Field::TlsCa => "--tls-ca",
            Field::TlsCert => "--tls-cert",
            Field::TlsKey => "--tls-key",
            Field::Listen => "--listen",
            Field::Baseline => "--baseline",
            Field::Html => "--html",
            Field::HdrLog => "--hdr-log",
            Field::Http2 => "--http2",
            Field::Streams => "--streams",
            Field::SourceAddr => "--source-addr",
            Field::ResolveEach => "--resolve-each",
            Field::ConnectTo => "--connect-to",
        }
    }

    /// The field of a `POST /v1/runs` body; `None` for what only the command
    /// line can set (files on the controller's host, its own listener).
    pub fn json(self) -> Option<&'static str> {
        Some(match self {
            Field::Url => "url",
            Field::Requests => "requests",
            Field::Duration => "duration",
            Field::Connections => "concurrency",
            Field::Rate => "rate",
            Field::RampUp => "ramp_up",
            Field::Stages => "stages",
            Field::Method => "method",
            Field::Headers => "headers",
            Field::Body => "body",
            Field::Agents => "agents",
            Field::MinAgents => "min_agents",
            Field::Threads => "threads",
            Field::Timeout => "timeout",
            Field::SuccessStatus => "success_status",
            Field::FailIf => "fail_if",
            Field::Scenario => "scenario",
            Field::Users => "users",
            Field::SpawnRate => "spawn_rate",
            Field::Tags => "tags",
            Field::ExcludeTags => "exclude_tags",
            Field::TargetInsecure => "target_insecure",
            Field::Http2 => "http2",
            Field::Streams => "streams",
            Field::SourceAddr => "source_addr",
            Field::ResolveEach => "resolve_each",
            Field::ConnectTo => "connect_to",
            Field::TargetCa
            | Field::TlsCa
            | Field::TlsCert
            | Field::TlsKey
            | Field::Listen
            | Field::Html
            | Field::HdrLog
            | Field::Baseline => {
                return None;
            }
        })
    }

    /// The field whose JSON name is `name`.
    pub fn from_json(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.json() == Some(name))
    }
}

/// A value that is wrong, and why. Shown as `{cli}: {reason}` on the command
/// line (its `Display`) and as `{json}: {reason}` by the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", field.cli())]
pub struct UsageError {
    /// The value at fault.
    pub field: Field,
    /// Why, in words that fit after either spelling of the field.
    pub reason: String,
}

impl UsageError {
    /// `field` is wrong because `reason`.
    pub fn new(field: Field, reason: impl Into<String>) -> UsageError {
        UsageError { field, reason: reason.into() }
    }

    /// The message as the HTTP API gives it: the JSON name instead of the flag.
    pub fn for_api(&self) -> String {
        format!("{}: {}", self.field.json().unwrap_or(self.field.cli()), self.reason)
    }
}

/// Why a `dns:` name gave no agents.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The resolver did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The resolver refused.
    #[error("{0}")]
    Lookup(std::io::Error),
    /// It answered with no addresses.
    #[error("the name has no addresses")]
    NoAddresses,
}

/// Why the controller could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or value is wrong: exit code 2, like other command-line tools.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The request cannot be served by the agents that answered (too few
    /// connections for them, say): exit code 2, since the request must change.
    #[error("{0}")]
    Unservable(String),
    /// An agent could not be reached or used: exit code 1.
    #[error("{0}")]
    Agent(String),
    /// A `dns:` entry of `--agents` did not resolve: exit code 1.
    #[error("--agents: cannot resolve dns:{name}:{port}")]
    Resolve {
        /// The name.
        name: String,
        /// The agents' port.
        port: u16,
        /// Why.
        #[source]
        source: ResolveError,
    },
    /// An output file could not be written: exit code 1.
    #[error("{flag}: cannot write {}", path.display())]
    Write {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An output could not be encoded: exit code 1.
    #[error("{flag}: cannot encode the output")]
    Encode {
        /// The flag that asked for the output.
        flag: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `controller compare`: a saved report or a setting is unusable: exit code 2.
    #[error(transparent)]
    Compare(#[from] crate::compare::CompareError),
    /// A piece the controller starts itself (the embedded agent, the demo's
    /// target-server, the async runtime, the API's listener) failed: exit code 1.
    #[error("cannot start {what}")]
    Start {
        /// What could not start.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A request the agents found cannot serve (see [`Error::Unservable`]).
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Unservable(msg.into())
    }

    /// An agent error.
    pub fn agent(msg: impl Into<String>) -> Error {
        Error::Agent(msg.into())
    }

    /// `what` could not start because of `source`.
    pub fn start(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Start { what, source: source.into() }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Unservable(_) | Error::Compare(_) => 2,
            Error::Agent(_)
            | Error::Resolve { .. }
            | Error::Write { .. }
            | Error::Encode { .. }
            | Error::Start { .. } => 1,
        }
    }
}

/// `error` and its causes on one line, `: `-separated: what a user reads.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
