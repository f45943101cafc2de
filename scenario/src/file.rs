//! Reading a scenario file: TOML with every value's position kept, so each
//! refusal names the line, the column and the field, on one line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::compile::Place;
use crate::feeder::{self, Feeder, Mode, OnExhausted, Per};
use crate::{Assertions, Body, Capture, Scenario, ScenarioError, Step, Think, UserType};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScenario {
    base_url: Option<Spanned<String>>,
    http2: Option<bool>,
    #[serde(default)]
    vars: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    feeder: Vec<Spanned<FileFeeder>>,
    #[serde(default)]
    stage: Vec<Spanned<FileStage>>,
    #[serde(default)]
    user: Vec<Spanned<FileUser>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStage {
    duration: Spanned<String>,
    target: Spanned<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFeeder {
    name: Spanned<String>,
    file: Spanned<String>,
    mode: Option<Spanned<Mode>>,
    per: Option<Spanned<Per>>,
    on_exhausted: Option<Spanned<OnExhausted>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: Spanned<String>,
    weight: Option<Spanned<i64>>,
    count: Option<Spanned<i64>>,
    think: Option<Spanned<String>>,
    #[serde(default)]
    setup: Vec<Spanned<FileStep>>,
    #[serde(default)]
    request: Vec<Spanned<FileStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    name: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    query: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    json: Option<Spanned<toml::Value>>,
    form: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    body_file: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    capture: BTreeMap<String, Spanned<FileCapture>>,
    assert: Option<Spanned<FileAssert>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCapture {
    json: Option<String>,
    cookie: Option<String>,
    header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAssert {
    status: Option<Spanned<Vec<Spanned<i64>>>>,
    body_contains: Option<String>,
    #[serde(default)]
    json: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    latency_below: Option<Spanned<String>>,
}

/// Positions of one step's fields, by field name relative to the step.
#[derive(Default)]
struct StepSpans {
    whole: Range<usize>,
    fields: FieldSpans,
}

impl StepSpans {
    fn find(&self, field: &str) -> Range<usize> {
        let top = field.split('.').next().unwrap_or(field);
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .or_else(|| self.fields.iter().find(|(f, _)| f == top))
            .map_or_else(|| self.whole.clone(), |(_, r)| r.clone())
    }
}

/// Positions of named fields.
type FieldSpans = Vec<(String, Range<usize>)>;

/// Where things are in the file.
#[derive(Default)]
struct Spans {
    base_url: Option<Range<usize>>,
    feeders: Vec<(Range<usize>, FieldSpans)>,
    users: Vec<(Range<usize>, FieldSpans)>,
    setup: Vec<Vec<StepSpans>>,
    requests: Vec<Vec<StepSpans>>,
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // A span from the parser may in principle land inside a character: step
    // back to its start rather than slice there.
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Reader<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Reader<'_> {
    fn err(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            origin: self.origin.to_owned(),
            at: Some(line_col(self.text, span.start)),
            field: field.into(),
            // One line, whatever the parser's message looked like.
            message: message.into().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; "),
        }
    }
}

/// The largest scenario file read.
pub const MAX_FILE: u64 = 4 << 20;
/// The largest `body_file` read: the scenario that carries it to the agents
/// may be no larger (`MAX_SCENARIO` of the contract, 1 MiB).
pub const MAX_BODY_FILE: u64 = 1 << 20;

/// Reads and checks the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let origin = path.display().to_string();
    let text = volley_common::file::read_text(path, MAX_FILE).map_err(|e| ScenarioError {
        origin: origin.clone(),
        at: None,
        field: "(file)".into(),
        // The origin already names the file.
        message: match e {
            volley_common::file::FileError::Io { source, .. } => format!("cannot read it: {source}"),
            other => other.to_string(),
        },
    })?;
    parse(&text, &origin, path.parent().unwrap_or(Path::new(".")))
}

/// Parses and checks scenario `text`; `origin` names it in errors and
/// `base_dir` is where `body_file` paths start.
pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Scenario, ScenarioError> {
    parse_in(text, origin, Some(base_dir))
}

/// [`parse`] for a scenario that did not come from this host's disk (the
/// controller's HTTP API): `body_file` is refused, since whoever sent it has
/// no business reading files here.
pub fn parse_untrusted(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    parse_in(text, origin, None)
}

fn parse_in(text: &str, origin: &str, base_dir: Option<&Path>) -> Result<Scenario, ScenarioError> {
    let r = Reader { origin, text };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        r.err(span, "(syntax)", e.message().trim().to_owned())
    })?;
    let file: FileScenario = serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned values show up as a private key in the path; drop it.
        let field = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let field = field.trim_start_matches("$__serde_spanned_private_value.").to_owned();
        let inner = e.into_inner();
        let span = inner.span().unwrap_or(0..0);
        r.err(span, if field == "." { "(top level)".to_owned() } else { field }, inner.message().trim().to_owned())
    })?;
    let mut spans = Spans { base_url: file.base_url.as_ref().map(Spanned::span), ..Spans::default() };
    let vars: Vec<(String, String)> = file.vars.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect();
    let mut feeders = Vec::new();
    let mut budget = feeder::MAX_FEEDER_BYTES;
    for (i, ff) in file.feeder.iter().enumerate() {
        let (f, fields) = read_feeder(&r, ff.get_ref(), i, base_dir, &mut budget)?;
        spans.feeders.push((ff.span(), fields));
        feeders.push(f);
    }
    let mut stages = Vec::new();
    for (i, st) in file.stage.iter().enumerate() {
        let st = st.get_ref();
        let duration = crate::think::parse_millis(st.duration.get_ref())
            .map_err(|m| r.err(st.duration.span(), format!("stage[{i}].duration"), m))?;
        let users = match st.target.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => *n as u64,
            toml::Value::String(t) if t.trim().ends_with("/s") => {
                let why = "a scenario's stages are numbers of active users; its users pace themselves with think times";
                return Err(r.err(st.target.span(), format!("stage[{i}].target"), why));
            }
            other => {
                let why = format!(
                    "{} is not a number of users (0 or more)",
                    to_json(other).map_or_else(|e| e, |v| v.to_string())
                );
                return Err(r.err(st.target.span(), format!("stage[{i}].target"), why));
            }
        };
        stages.push(crate::Stage { duration_ms: duration.as_millis() as u64, users });
    }
    let mut users = Vec::new();
    for (u, fu) in file.user.iter().enumerate() {
        let fu_ref = fu.get_ref();
        let mut fields = vec![("name".to_owned(), fu_ref.name.span())];
        let at = |s: &Spanned<i64>, f: &str| r.err(s.span(), format!("user[{u}].{f}"), "");
        let non_negative = |s: &Spanned<i64>, f: &str| -> Result<u64, ScenarioError> {
            u64::try_from(*s.get_ref()).map_err(|_| ScenarioError {
                message: format!("{} is negative; it must be 0 or more", s.get_ref()),
                ..at(s, f)
            })
        };
        let count = match &fu_ref.count {
            Some(c) => {
                fields.push(("count".into(), c.span()));
                Some(non_negative(c, "count")?)
            }
            None => None,
        };
        let weight = match &fu_ref.weight {
            Some(w) if count.is_some() => {
                return Err(ScenarioError { message: "give weight or count, not both".into(), ..at(w, "weight") });
            }
            Some(w) => {
                fields.push(("weight".into(), w.span()));
                non_negative(w, "weight")?
            }
            None => 1,
        };
        let think = match &fu_ref.think {
            Some(t) => Think::parse(t.get_ref()).map_err(|m| r.err(t.span(), format!("user[{u}].think"), m))?,
            None => Think::None,
        };
        let read_steps =
            |list: &[Spanned<FileStep>], kind: &str| -> Result<(Vec<Step>, Vec<StepSpans>), ScenarioError> {
                let mut steps = Vec::new();
                let mut step_spans = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    let (step, sp) = read_step(&r, s, &format!("user[{u}].{kind}[{i}]"), kind == "setup", base_dir)?;
                    steps.push(step);
                    step_spans.push(sp);
                }
                Ok((steps, step_spans))
            };
        let (setup, setup_spans) = read_steps(&fu_ref.setup, "setup")?;
        let (requests, request_spans) = read_steps(&fu_ref.request, "request")?;
        spans.users.push((fu.span(), fields));
        spans.setup.push(setup_spans);
        spans.requests.push(request_spans);
        users.push(UserType { name: fu_ref.name.get_ref().clone(), weight, count, think, setup, requests });
    }
    let scenario = Scenario {
        base_url: file.base_url.map(Spanned::into_inner),
        vars,
        users,
        feeders,
        http2: file.http2.unwrap_or(false),
        stages,
    };
    // The one set of checks, with positions looked up for whatever it refuses.
    // A file without a base URL gets one from `--url`; everything else is
    // checked now.
    let mut checked = scenario.clone();
    checked.base_url.get_or_insert_with(|| "http://base-url-from-the-command-line".into());
    checked.compile_at(&|place, field, message| {
        let span = match place {
            Place::Scenario => match field {
                "base_url" => spans.base_url.clone().unwrap_or(0..0),
                _ => 0..0,
            },
            Place::User(u) => spans.users.get(u).map_or(0..0, |(whole, fields)| {
                fields.iter().find(|(f, _)| f == field).map_or_else(|| whole.clone(), |(_, s)| s.clone())
            }),
            Place::Feeder(i) => spans.feeders.get(i).map_or(0..0, |(whole, fields)| {
                fields.iter().find(|(f, _)| f == field).map_or_else(|| whole.clone(), |(_, s)| s.clone())
            }),
            Place::Step(u, list, i) => {
                let lists = if list == "setup" { &spans.setup } else { &spans.requests };
                lists.get(u).and_then(|l| l.get(i)).map_or(0..0, |s| s.find(field))
            }
        };
        r.err(span, place.path(field), message)
    })?;
    Ok(scenario)
}

/// Reads feeder `i`'s file (at most `budget` bytes, which it lowers by what
/// it read) into its columns and rows.
fn read_feeder(
    r: &Reader<'_>,
    ff: &FileFeeder,
    i: usize,
    base_dir: Option<&Path>,
    budget: &mut u64,
) -> Result<(Feeder, FieldSpans), ScenarioError> {
    let at = |f: &str| format!("feeder[{i}].{f}");
    let mut fields = vec![("name".to_owned(), ff.name.span()), ("file".to_owned(), ff.file.span())];
    let mode = ff.mode.as_ref().map_or(Mode::default(), |m| *m.get_ref());
    if let Some(m) = &ff.mode {
        fields.push(("mode".into(), m.span()));
    }
    if let Some(o) = &ff.on_exhausted
        && mode != Mode::Unique
    {
        let why = "only a unique feeder runs out of rows; cycle and random feeders never do";
        return Err(r.err(o.span(), at("on_exhausted"), why));
    }
    let Some(base_dir) = base_dir else {
        let why = "feeder files are not read here (a scenario sent over the HTTP API); run it with --scenario FILE";
        return Err(r.err(ff.file.span(), at("file"), why));
    };
    let path = base_dir.join(ff.file.get_ref());
    let text = volley_common::file::read_text(&path, *budget).map_err(|e| {
        let message = match e {
            volley_common::file::FileError::TooLarge { path, .. } => format!(
                "{path} is too large: feeder files may hold {} MiB together (they travel in the plan)",
                feeder::MAX_FEEDER_BYTES >> 20
            ),
            other => other.to_string(),
        };
        r.err(ff.file.span(), at("file"), message)
    })?;
    *budget -= text.len() as u64;
    let (columns, table) =
        feeder::read(&text, feeder::Format::of(&path), &path.display().to_string(), &format!("feeder[{i}]"))?;
    let rows = (table.ends.len() / columns.len()) as u64;
    let f = Feeder {
        name: ff.name.get_ref().clone(),
        columns,
        mode,
        per: ff.per.as_ref().map_or(Per::default(), |p| *p.get_ref()),
        on_exhausted: ff.on_exhausted.as_ref().map_or(OnExhausted::default(), |o| *o.get_ref()),
        rows,
        table,
    };
    Ok((f, fields))
}

fn read_step(
    r: &Reader<'_>,
    s: &Spanned<FileStep>,
    at: &str,
    setup: bool,
    base_dir: Option<&Path>,
) -> Result<(Step, StepSpans), ScenarioError> {
    let f = s.get_ref();
    // Setup steps all run, once each and in order: a weight or tags there
    // would be silently ignored, which is worse than refused.
    if setup && let Some(w) = &f.weight {
        let why = "setup steps all run, once, in order; weight is for [[user.request]]";
        return Err(r.err(w.span(), format!("{at}.weight"), why));
    }
    if setup && let Some(t) = &f.tags {
        let why = "setup steps always run; tags select among [[user.request]]";
        return Err(r.err(t.span(), format!("{at}.tags"), why));
    }
    let mut sp = StepSpans { whole: s.span(), fields: vec![("path".into(), f.path.span())] };
    let method = match &f.method {
        Some(m) => {
            sp.fields.push(("method".into(), m.span()));
            m.get_ref().to_ascii_uppercase()
        }
        None => "GET".into(),
    };
    let weight = match &f.weight {
        Some(w) => {
            sp.fields.push(("weight".into(), w.span()));
            u64::try_from(*w.get_ref()).map_err(|_| {
                r.err(w.span(), format!("{at}.weight"), format!("{} is negative; it must be 0 or more", w.get_ref()))
            })?
        }
        None => 1,
    };
    let name = f.name.as_ref().map_or_else(|| format!("{method} {}", f.path.get_ref()), |n| n.get_ref().clone());
    for (k, v) in &f.query {
        sp.fields.push((format!("query.{k}"), v.span()));
    }
    for (k, v) in &f.headers {
        sp.fields.push((format!("headers.{k}"), v.span()));
    }
    let bodies = [
        f.body.as_ref().map(|b| ("body", b.span())),
        f.json.as_ref().map(|b| ("json", b.span())),
        f.form.as_ref().map(|b| ("form", b.span())),
        f.body_file.as_ref().map(|b| ("body_file", b.span())),
    ];
    let given: Vec<(&str, Range<usize>)> = bodies.into_iter().flatten().collect();
    if let Some((second, span)) = given.get(1) {
        return Err(r.err(
            span.clone(),
            format!("{at}.{second}"),
            format!("give one body, not both {} and {second}", given[0].0),
        ));
    }
    let body = if let Some(b) = &f.body {
        sp.fields.push(("body".into(), b.span()));
        Some(Body::Raw(b.get_ref().clone()))
    } else if let Some(j) = &f.json {
        sp.fields.push(("json".into(), j.span()));
        let v = to_json(j.get_ref()).map_err(|m| r.err(j.span(), format!("{at}.json"), m))?;
        Some(Body::Json(v.to_string()))
    } else if let Some(form) = &f.form {
        sp.fields.push(("form".into(), form.span()));
        for (k, v) in form.get_ref() {
            sp.fields.push((format!("form.{k}"), v.span()));
        }
        Some(Body::Form(form.get_ref().iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect()))
    } else if let Some(file) = &f.body_file {
        sp.fields.push(("body_file".into(), file.span()));
        let Some(base_dir) = base_dir else {
            return Err(r.err(
                file.span(),
                format!("{at}.body_file"),
                "body_file is not accepted here; give the body inline",
            ));
        };
        let path = base_dir.join(file.get_ref());
        // A body larger than a whole scenario could not be sent to the agents anyway.
        let text = volley_common::file::read_file(&path, MAX_BODY_FILE)
            .map_err(|e| r.err(file.span(), format!("{at}.body_file"), e.to_string()))?;
        let text = String::from_utf8(text).map_err(|_| {
            r.err(file.span(), format!("{at}.body_file"), format!("{} is not UTF-8 text", path.display()))
        })?;
        Some(Body::Raw(text))
    } else {
        None
    };
    let mut captures = Vec::new();
    for (var, c) in &f.capture {
        sp.fields.push((format!("capture.{var}"), c.span()));
        let fc = c.get_ref();
        let from = match (&fc.json, &fc.cookie, &fc.header) {
            (Some(p), None, None) => Capture::Json(p.clone()),
            (None, Some(n), None) => Capture::Cookie(n.clone()),
            (None, None, Some(h)) => Capture::Header(h.to_ascii_lowercase()),
            _ => {
                return Err(r.err(
                    c.span(),
                    format!("{at}.capture.{var}"),
                    "give exactly one of json = \"/pointer\", cookie = \"name\", header = \"name\"",
                ));
            }
        };
        captures.push((var.clone(), from));
    }
    let assert = match &f.assert {
        None => Assertions::default(),
        Some(a) => {
            sp.fields.push(("assert".into(), a.span()));
            let fa = a.get_ref();
            let mut status = Vec::new();
            if let Some(st) = &fa.status {
                sp.fields.push(("assert.status".into(), st.span()));
                for code in st.get_ref() {
                    let ok = u16::try_from(*code.get_ref()).ok().filter(|c| (100..=599).contains(c));
                    status.push(ok.ok_or_else(|| {
                        r.err(
                            code.span(),
                            format!("{at}.assert.status"),
                            format!("{} is not an HTTP status (100..=599)", code.get_ref()),
                        )
                    })?);
                }
            }
            let latency_below_ms = match &fa.latency_below {
                Some(l) => Some(
                    crate::think::parse_millis(l.get_ref())
                        // Whole milliseconds by construction, so this fits.
                        .map(|d| d.as_millis() as u64)
                        .map_err(|m| r.err(l.span(), format!("{at}.assert.latency_below"), m))?,
                ),
                None => None,
            };
            let mut json = Vec::new();
            for (pointer, want) in &fa.json {
                // Keyed by the pointer, so a bad one is refused at its own key.
                let field = format!("assert.json.{}", pointer.get_ref());
                sp.fields.push((field.clone(), pointer.span()));
                let want = to_json(want.get_ref()).map_err(|m| r.err(want.span(), format!("{at}.{field}"), m))?;
                json.push((pointer.get_ref().clone(), want));
            }
            Assertions { status, body_contains: fa.body_contains.clone(), json, latency_below_ms }
        }
    };
    let step = Step {
        name,
        weight,
        method,
        path: f.path.get_ref().clone(),
        query: f.query.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect(),
        headers: f.headers.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect(),
        body,
        tags: f.tags.as_ref().map_or_else(Vec::new, |t| t.get_ref().clone()),
        captures,
        assert,
    };
    Ok((step, sp))
}

/// A TOML value as JSON: datetimes become their text (JSON has none), and a
/// float JSON cannot write (nan, inf) is refused rather than sent as null.
fn to_json(v: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => {
            J::Number(serde_json::Number::from_f64(*f).ok_or_else(|| format!("{f} cannot be written in JSON"))?)
        }
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => {
            J::Object(t.iter().map(|(k, v)| Ok((k.clone(), to_json(v)?))).collect::<Result<_, String>>()?)
        }
    })
}
