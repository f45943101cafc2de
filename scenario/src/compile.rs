//! The compiled form of a scenario: every check that makes a request able to
//! succeed (methods, paths, header names, `${variables}` known where they are
//! used, weights that add up), and the result ready to run, with templates
//! parsed and variables resolved to slots so that a virtual user's iteration
//! does no lookups by name.
//!
//! The checks are written once, here, against places without positions: the
//! file reader maps a place back to a line and column, while a scenario
//! received as JSON reports the field alone.

use crate::feeder::{Feeder, Per};
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

impl CompiledStep {
    /// The variable slots its templates use.
    fn used_slots(&self, used: &mut [bool]) {
        let mut mark = |t: &Template| t.slots().for_each(|s| used[s] = true);
        mark(&self.path);
        self.query.iter().for_each(|(_, t)| mark(t));
        self.headers.iter().for_each(|(_, t)| mark(t));
        match &self.body {
            None => {}
            Some(CompiledBody::Raw(t) | CompiledBody::Json(t)) => mark(t),
            Some(CompiledBody::Form(fields)) => fields.iter().for_each(|(_, t)| mark(t)),
        }
    }
}

/// A feeder a user type takes rows from (it uses one of its columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// The feeder's index in the scenario.
    pub feeder: usize,
    /// The slot of its first column; the others follow.
    pub first_slot: usize,
    /// Its columns.
    pub columns: usize,
    /// When a row is taken.
    pub per: Per,
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
    /// The feeders its steps use, each filling its columns' slots.
    pub feeds: Vec<Feed>,
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
    Feeder(usize),
    User(usize),
    Step(usize, &'static str, usize),
}

impl Place {
    pub(crate) fn path(&self, field: &str) -> String {
        match self {
            Place::Scenario => field.to_owned(),
            Place::Feeder(f) => format!("feeder[{f}].{field}"),
            Place::User(u) => format!("user[{u}].{field}"),
            Place::Step(u, list, i) => format!("user[{u}].{list}[{i}].{field}"),
        }
    }
}

/// The variables of a user type: constants, the columns of feeders taken
/// per user, its setup captures in order, then the columns of feeders taken
/// per iteration (after the captures, so that what setup steps see is a
/// prefix). Also returns the length of that prefix before the captures.
pub(crate) fn slots_of(vars: &[(String, String)], feeders: &[Feeder], user: &UserType) -> (Slots, usize) {
    let mut names: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
    let columns = |per: Per| {
        feeders.iter().filter(move |f| f.per == per).flat_map(|f| (0..f.columns.len()).map(move |c| f.var(c)))
    };
    names.extend(columns(Per::User));
    let before_captures = names.len();
    for step in &user.setup {
        for (var, _) in &step.captures {
            if !names.contains(var) {
                names.push(var.clone());
            }
        }
    }
    names.extend(columns(Per::Iteration));
    (Slots(names), before_captures)
}

/// Checks the feeders' own values: names, columns, rows.
fn check_feeders(s: &Scenario, error: &dyn Fn(Place, &str, String) -> ScenarioError) -> Result<(), ScenarioError> {
    for (i, f) in s.feeders.iter().enumerate() {
        if !crate::feeder::valid_name(&f.name) {
            let why = format!("{:?} cannot be a variable prefix (letters, digits, _ and - only)", f.name);
            return Err(error(Place::Feeder(i), "name", why));
        }
        if let Some(first) = s.feeders[..i].iter().position(|g| g.name == f.name) {
            return Err(error(Place::Feeder(i), "name", format!("feeder {:?} is already feeder[{first}]", f.name)));
        }
        if f.columns.is_empty() || f.columns.iter().any(|c| !crate::feeder::valid_name(c)) {
            return Err(error(Place::Feeder(i), "file", "columns must be names of letters, digits, _ and -".into()));
        }
        if f.rows == 0 {
            return Err(error(Place::Feeder(i), "file", "has no rows of data".into()));
        }
        for c in 0..f.columns.len() {
            let var = f.var(c);
            if s.vars.iter().any(|(k, _)| *k == var) {
                let why = format!("[vars] defines {var:?} too; rename one");
                return Err(error(Place::Feeder(i), "name", why));
            }
        }
    }
    Ok(())
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
        check_feeders(self, error)?;
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
            let (all, before_captures) = slots_of(&self.vars, &self.feeders, user);
            // A setup step sees the constants, the columns of feeders taken
            // per user, and the captures before it.
            let mut known = Slots(all.0[..before_captures].to_vec());
            let mut setup = Vec::new();
            for (i, step) in user.setup.iter().enumerate() {
                // `known` is a prefix of `all`, so template slots agree.
                let c = compile_step(step, &known, &all, &mut names).map_err(|e| {
                    let message = per_iteration_hint(&self.feeders, &e.message).unwrap_or(e.message);
                    error(Place::Step(u, "setup", i), &e.field, message)
                })?;
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
            let feeds = feeds_of(&self.feeders, &all, setup.iter().chain(&requests));
            users.push(CompiledUser {
                name: user.name.clone(),
                think: user.think,
                setup,
                requests,
                cumulative,
                initial,
                feeds,
            });
        }
        Ok(Compiled { base_url: base_url.trim_end_matches('/').to_owned(), users, names: names.list })
    }
}

/// The feeders whose columns `steps` use, with where their columns sit in `all`.
fn feeds_of<'a>(feeders: &[Feeder], all: &Slots, steps: impl Iterator<Item = &'a CompiledStep>) -> Vec<Feed> {
    let mut used = vec![false; all.0.len()];
    steps.for_each(|s| s.used_slots(&mut used));
    feeders
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            // Columns are consecutive slots (see `slots_of`).
            let first_slot = all.find(&f.var(0))?;
            let columns = f.columns.len();
            used[first_slot..first_slot + columns].iter().any(|u| *u).then_some(Feed {
                feeder: i,
                first_slot,
                columns,
                per: f.per,
            })
        })
        .collect()
}

/// A clearer message when a setup step used a column of a feeder taken per
/// iteration (`message` is the unknown-variable one).
fn per_iteration_hint(feeders: &[Feeder], message: &str) -> Option<String> {
    feeders.iter().filter(|f| f.per == Per::Iteration).find_map(|f| {
        let var = (0..f.columns.len()).map(|c| f.var(c)).find(|v| message.contains(&format!("${{{v}}}")))?;
        Some(format!(
            "${{{var}}} comes from feeder {:?}, which gives a row per iteration; setup steps run before any \
             (give the feeder per = \"user\")",
            f.name
        ))
    })
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
