//! The compiled form of a scenario: every check that makes a request able to
//! succeed (methods, paths, header names, `${variables}` known where they are
//! used, weights that add up), and the result ready to run, with templates
//! parsed and variables resolved to slots so that a virtual user's iteration
//! does no lookups by name.
//!
//! The checks are written once, here, against places without positions: the
//! file reader maps a place back to a line and column, while a scenario
//! received as JSON reports the field alone.

use crate::template::{self, Escape, Slots, Template, Vars};
use crate::{Assertions, Body, Capture, Scenario, ScenarioError, Step, Think, UserType};

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
    names: &mut NameSlots,
) -> Result<CompiledStep, FieldError> {
    let method = http::Method::from_bytes(step.method.as_bytes())
        .map_err(|_| field_err("method", format!("{:?} is not an HTTP method", step.method)))?;
    if !step.path.starts_with('/') {
        return Err(field_err("path", format!("{:?} must start with /", step.path)));
    }
    // The path goes into the request line as written (only variables are
    // escaped): what cannot be there would fail every request.
    if let Some(c) = step.path.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '#') {
        return Err(field_err("path", format!("{:?} contains {c:?}; write it percent-encoded", step.path)));
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
            // Variables are checked when rendered; the text around them now.
            if http::HeaderValue::from_bytes(v.as_bytes()).is_err() {
                let why = "the value contains a line break or another control character a header cannot carry";
                return Err(field_err(format!("headers.{k}"), why));
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
        let slot = all.find(var).ok_or_else(|| field_err(format!("capture.{var}"), ONLY_SETUP))?;
        captures.push((slot, c.clone()));
    }
    let name_slot = names.slot(&step.name, method.as_str());
    Ok(CompiledStep { name_slot, method, path, query, headers, body, captures, assert: step.assert.clone() })
}

/// Request names as (name, method) in slot order, with an index, so
/// compiling stays linear in the number of steps.
#[derive(Debug, Default)]
pub(crate) struct NameSlots {
    list: Vec<(String, String)>,
    index: std::collections::HashMap<(String, String), usize>,
}

impl NameSlots {
    /// The slot of (`name`, `method`), a new one the first time.
    fn slot(&mut self, name: &str, method: &str) -> usize {
        let key = (name.to_owned(), method.to_owned());
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.list.push(key.clone());
        self.index.insert(key, self.list.len() - 1);
        self.list.len() - 1
    }
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
    /// Checks everything and compiles it for running.
    pub fn compile(&self) -> Result<Compiled, ScenarioError> {
        self.compile_at(&|place, field, message| ScenarioError {
            origin: "scenario".into(),
            at: None,
            field: place.path(field),
            message,
        })
    }

    /// [`Scenario::compile`], with `error` building each refusal (so the
    /// file reader can add positions).
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
            return Err(error(
                Place::User(0),
                "weight",
                "every user type has weight 0: give one a weight above 0, or a count".into(),
            ));
        }
        let mut names = NameSlots::default();
        let mut users = Vec::new();
        // Each type's name and index, to refuse a repeat without a quadratic scan.
        let mut seen = std::collections::HashMap::with_capacity(self.users.len());
        for (u, user) in self.users.iter().enumerate() {
            if user.name.trim().is_empty() {
                return Err(error(Place::User(u), "name", "a user type needs a name".into()));
            }
            if let Some(first) = seen.insert(user.name.as_str(), u) {
                seen.insert(user.name.as_str(), first);
                let why =
                    format!("user type {:?} is already user[{first}]; names tell types apart in reports", user.name);
                return Err(error(Place::User(u), "name", why));
            }
            user.think.validate().map_err(|m| error(Place::User(u), "think", m))?;
            if user.requests.is_empty() {
                return Err(error(
                    Place::User(u),
                    "request",
                    format!("user type {:?} has no [[user.request]]", user.name),
                ));
            }
            let mut cumulative = Vec::with_capacity(user.requests.len());
            let mut sum = 0u64;
            for (i, r) in user.requests.iter().enumerate() {
                sum = sum.checked_add(r.weight).ok_or_else(|| {
                    let why = format!("the weights of {:?}'s requests add up to more than {}", user.name, u64::MAX);
                    error(Place::Step(u, "request", i), "weight", why)
                })?;
                cumulative.push(sum);
            }
            if sum == 0 {
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
                        return Err(error(Place::Step(u, "request", i), &format!("capture.{var}"), ONLY_SETUP.into()));
                    }
                    compile_step(step, &all, &all, &mut names)
                        .map_err(|e| error(Place::Step(u, "request", i), &e.field, e.message))
                })
                .collect::<Result<Vec<_>, _>>()?;
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
        Ok(Compiled { base_url: base_url.trim_end_matches('/').to_owned(), users, names: names.list })
    }
}

/// Why a request may not capture.
const ONLY_SETUP: &str = "captures are only for setup steps (a request's value would be lost)";

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
    if url.parse::<http::Uri>().is_err() {
        return Err(format!("{url:?} is not a valid URL"));
    }
    Ok(())
}
