//! Scenario files: the shipped example loads, a good file resolves and
//! renders, and every kind of bad file is refused with its line, column and
//! field.

use std::path::Path;
use std::time::Duration;

use volley_scenario::{Body, Capture, Escape, Scenario, Think};

fn parse(text: &str) -> Result<Scenario, String> {
    volley_scenario::file::parse(text, "s.toml", Path::new(".")).map_err(|e| e.to_string())
}

const GOOD: &str = r#"
base_url = "http://127.0.0.1:8080"
[vars]
password = "secret"
[[user]]
name = "a"
weight = 2
think = "constant 1s"
[[user.setup]]
name = "login"
method = "post"
path = "/login"
json = { user = "x", password = "${password}" }
capture = { token = { json = "/token" }, sid = { cookie = "session" } }
[[user.request]]
path = "/items"
headers = { authorization = "Bearer ${token}" }
tags = ["read"]
[[user.request]]
name = "add"
method = "POST"
path = "/items"
weight = 0
form = { name = "x y", by = "${sid}" }
tags = ["write"]
[[user]]
name = "b"
count = 3
[[user.request]]
path = "/hello"
"#;

#[test]
fn a_good_file_resolves() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.users.len(), 2);
    let a = &s.users[0];
    assert_eq!((a.weight, a.count, a.think), (2, None, Think::Constant(Duration::from_millis(1000))));
    assert_eq!(a.setup[0].method, "POST");
    assert_eq!(a.setup[0].body, Some(Body::Json(r#"{"password":"${password}","user":"x"}"#.into())));
    assert_eq!(a.setup[0].captures[0], ("sid".into(), Capture::Cookie("session".into())));
    assert_eq!(a.requests[0].name, "GET /items");
    assert_eq!(s.users[1].count, Some(3));
    let c = s.compile().unwrap();
    assert_eq!(
        c.names,
        [
            ("login".into(), "POST".into()),
            ("GET /items".into(), "GET".into()),
            ("add".into(), "POST".into()),
            ("GET /hello".into(), "GET".into())
        ]
    );
    // Weight 0 is never picked.
    assert!((0..100).all(|r| c.users[0].pick(r) == 0));
    // JSON round trip, as the plan carries it.
    assert_eq!(Scenario::from_json(&s.to_json()).unwrap(), s);
    // Tags.
    let only_write = s.clone().select_tags(&["write".into()], &[]);
    assert!(only_write.unwrap_err().to_string().contains("\"a\" has no requests left"));
    let reads = s.clone().select_tags(&[], &["write".into()]).unwrap();
    assert_eq!(reads.users[0].requests.len(), 1);
}

#[test]
fn the_base_url_may_come_later() {
    let s = parse("[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\n").unwrap();
    assert!(s.compile().unwrap_err().to_string().contains("base_url: no base URL"));
    s.with_base_url("http://h:1").compile().unwrap();
}

#[test]
fn weights_are_honoured() {
    let s = parse(
        "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/a\"\nweight = 3\n\
         [[user.request]]\npath = \"/off\"\nweight = 0\n[[user.request]]\npath = \"/b\"\n",
    )
    .unwrap();
    let c = s.compile().unwrap();
    // Over every residue of the total weight (4), each request gets exactly
    // its weight's share, and the compiled and plain picks agree.
    let mut got = [0; 3];
    for r in (0..4000u64).chain(u64::MAX - 3999..=u64::MAX) {
        let i = c.users[0].pick(r);
        assert_eq!(i, s.users[0].pick(r), "r = {r}");
        got[i] += 1;
    }
    assert_eq!(got, [6000, 0, 2000]);
}

#[test]
fn tags_select_requests_and_keep_setup() {
    let s = parse(&format!(
        "{HEAD}{}[[user.request]]\npath = \"/r\"\ntags = [\"read\"]\n[[user.request]]\npath = \"/w\"\n\
             tags = [\"write\", \"slow\"]\n[[user.request]]\npath = \"/none\"\n",
        "[[user.setup]]\npath = \"/login\"\n"
    ))
    .unwrap();
    let paths = |s: &Scenario| s.users[0].requests.iter().map(|r| r.path.clone()).collect::<Vec<_>>();
    let tags = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    assert_eq!(paths(&s.clone().select_tags(&[], &[]).unwrap()), ["/r", "/w", "/none"]);
    assert_eq!(paths(&s.clone().select_tags(&tags(&["read", "slow"]), &[]).unwrap()), ["/r", "/w"]);
    assert_eq!(paths(&s.clone().select_tags(&[], &tags(&["slow"])).unwrap()), ["/r", "/none"]);
    let both = s.clone().select_tags(&tags(&["read", "write"]), &tags(&["slow"])).unwrap();
    assert_eq!(paths(&both), ["/r"]);
    assert_eq!(both.users[0].setup.len(), 1, "setup steps always stay");
    both.compile().unwrap();
    let none = s.clone().select_tags(&tags(&["nope"]), &[]).unwrap_err();
    assert_eq!(none.to_string(), "--tags/--exclude-tags: user[0]: user type \"u\" has no requests left to send");
}

#[test]
fn json_round_trip_is_checked_again() {
    let s = parse(GOOD).unwrap();
    let json = s.to_json();
    assert_eq!(Scenario::from_json(&json).unwrap(), s);
    // Durations travel as whole milliseconds.
    assert!(json.contains(r#""think":{"constant":1000}"#), "{json}");
    // What an agent receives is checked as thoroughly as the file was.
    let tampered = json.replace("Bearer ${token}", "Bearer ${tokn}");
    assert_eq!(
        Scenario::from_json(&tampered).unwrap_err().to_string(),
        "scenario: user[0].request[0].headers.authorization: unknown variable ${tokn} (defined: password, sid, token)"
    );
    let inverted = json.replace(r#"{"constant":1000}"#, r#"{"between":[5,3]}"#);
    assert!(Scenario::from_json(&inverted).unwrap_err().to_string().contains("user[0].think: between 5ms..3ms"));
    assert!(Scenario::from_json("{").unwrap_err().to_string().starts_with("scenario: (json): "));
}

#[test]
fn a_compiled_step_renders_every_part() {
    let s = parse(
        "base_url = \"http://h/\"\n[vars]\nwho = \"a b&\\\"c\"\n[[user]]\nname = \"u\"\n\
         [[user.request]]\npath = \"/p/${who}/$${lit}\"\nquery = { q = \"${who}\" }\n\
         headers = { x-who = \"<${who}>\" }\njson = { name = \"${who}\", n = 1 }\n\
         [[user.request]]\npath = \"/f\"\nform = { \"k y\" = \"${who}\" }\n",
    )
    .unwrap();
    let c = s.compile().unwrap();
    assert_eq!(c.base_url, "http://h");
    let u = &c.users[0];
    let vars = &u.initial;
    let step = &u.requests[0];
    assert_eq!(step.path.to_string_with(vars, Escape::Path), "/p/a%20b&%22c/${lit}");
    assert_eq!(step.query[0].0, "q");
    assert_eq!(step.query[0].1.to_string_with(vars, Escape::Form), "a%20b%26%22c");
    assert_eq!(step.headers[0].1.to_string_with(vars, Escape::None), "<a b&\"c>");
    let mut body = String::new();
    let kind = step.body.as_ref().unwrap().render(vars, &mut body);
    assert_eq!((kind, body.as_str()), (Some("application/json"), r#"{"n":1,"name":"a b&\"c"}"#));
    let mut form = String::new();
    let kind = u.requests[1].body.as_ref().unwrap().render(vars, &mut form);
    assert_eq!((kind, form.as_str()), (Some("application/x-www-form-urlencoded"), "k%20y=a%20b%26%22c"));
}

/// The head of most bad files below: lines 1 to 3.
const HEAD: &str = "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n";

/// A file whose one request (lines 4 and 5) ends with `extra`, from line 6.
fn request_with(extra: &str) -> String {
    format!("{HEAD}[[user.request]]\npath = \"/\"\n{extra}")
}

/// Every kind of bad file, with the exact one-line error it gets.
#[test]
fn bad_files_say_where_and_what() {
    let login = "[[user.setup]]\npath = \"/login\"\ncapture = { token = { json = \"/token\" } }\n";
    let cases: Vec<(String, &str)> = vec![
        // Syntax, unknown fields, wrong types: positions come from the TOML reader.
        (format!("{HEAD}[[user.request]\npath = \"/\"\n"), "s.toml:4:16: (syntax): unclosed array table, expected `]`"),
        (
            "base_url = \"http://h\"\ncolour = 1\n".into(),
            "s.toml:2:1: colour: unknown field `colour`, expected one of `base_url`, `http2`, `vars`, `feeder`, `stage`, `user`",
        ),
        (
            request_with("colr = 1\n"),
            "s.toml:6:1: user[0].request[0].colr: unknown field `colr`, expected one of `name`, `weight`, `method`, \
             `path`, `query`, `headers`, `body`, `json`, `form`, `body_file`, `tags`, `capture`, `assert`",
        ),
        (
            format!("{HEAD}weight = \"x\"\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:10: user[0].weight: invalid type: string \"x\", expected i64",
        ),
        (
            request_with("query = { n = 1 }\n"),
            "s.toml:6:15: user[0].request[0].query.n: invalid type: integer `1`, expected a string",
        ),
        (
            request_with("assert = { status = 200 }\n"),
            "s.toml:6:21: user[0].request[0].assert.status: invalid type: integer `200`, expected a sequence",
        ),
        // Weights and counts.
        (
            format!("{HEAD}weight = -1\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:10: user[0].weight: -1 is negative; it must be 0 or more",
        ),
        (request_with("weight = -2\n"), "s.toml:6:10: user[0].request[0].weight: -2 is negative; it must be 0 or more"),
        (
            format!("{HEAD}count = -3\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:9: user[0].count: -3 is negative; it must be 0 or more",
        ),
        (
            format!("{HEAD}weight = 1\ncount = 2\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:10: user[0].weight: give weight or count, not both",
        ),
        (request_with("weight = 0\n"), "s.toml:2:1: user[0].request: every request of \"u\" has weight 0"),
        (
            format!("{HEAD}weight = 0\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:10: user[0].weight: every user type has weight 0: give one a weight above 0, or a count",
        ),
        (
            format!("{HEAD}{r}{r}{r}", r = format_args!("[[user.request]]\npath = \"/\"\nweight = {}\n", i64::MAX)),
            "s.toml:12:10: user[0].request[2].weight: the weights of \"u\"'s requests add up to more than 18446744073709551615",
        ),
        // User types.
        ("base_url = \"http://h\"\n".into(), "s.toml:1:1: user: no user types: add at least one [[user]]"),
        (HEAD.into(), "s.toml:2:1: user[0].request: user type \"u\" has no [[user.request]]"),
        (
            format!("{}[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\n", request_with("")),
            "s.toml:7:8: user[1].name: user type \"u\" is already user[0]; names tell types apart in reports",
        ),
        (
            format!("{HEAD}think = \"often\"\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:9: user[0].think: \"often\" is not a think time: use \"constant 1s\", \"between 0.5s..1.5s\", \"constant_throughput 2\" or \"none\"",
        ),
        (
            format!("{HEAD}think = \"between 2s..1s\"\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:4:9: user[0].think: between 2s..1s: the lower bound is above the upper one",
        ),
        // Requests.
        (
            "base_url = \"ftp://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\n".into(),
            "s.toml:1:12: base_url: \"ftp://h\" is not an http:// or https:// URL",
        ),
        (
            format!("{HEAD}[[user.request]]\npath = \"x\"\n"),
            "s.toml:5:8: user[0].request[0].path: \"x\" must start with /",
        ),
        (
            format!("{HEAD}[[user.request]]\npath = \"/a b\"\n"),
            "s.toml:5:8: user[0].request[0].path: \"/a b\" contains ' '; write it percent-encoded",
        ),
        (request_with("method = \"G T\"\n"), "s.toml:6:10: user[0].request[0].method: \"G T\" is not an HTTP method"),
        (
            request_with("headers = { \"a b\" = \"x\" }\n"),
            "s.toml:6:21: user[0].request[0].headers.a b: \"a b\" is not a header name",
        ),
        (
            request_with("headers = { a = \"x\\u0001\" }\n"),
            "s.toml:6:17: user[0].request[0].headers.a: the value contains a line break or another control character a header cannot carry",
        ),
        (
            request_with("body = \"x\"\njson = 1\n"),
            "s.toml:7:8: user[0].request[0].json: give one body, not both body and json",
        ),
        (request_with("json = { n = nan }\n"), "s.toml:6:8: user[0].request[0].json: NaN cannot be written in JSON"),
        (
            request_with("body_file = \"nope.json\"\n"),
            "s.toml:6:13: user[0].request[0].body_file: cannot read ./nope.json: No such file or directory (os error 2)",
        ),
        // Assertions.
        (
            request_with("assert = { status = [200, 999] }\n"),
            "s.toml:6:27: user[0].request[0].assert.status: 999 is not an HTTP status (100..=599)",
        ),
        (
            request_with("assert = { json = { \"/ok\" = 1, \"count\" = 1 } }\n"),
            "s.toml:6:32: user[0].request[0].assert.json.count: \"count\" is not a JSON pointer (they start with /, e.g. \"/items/0/id\")",
        ),
        (
            request_with("assert = { latency_below = \"soon\" }\n"),
            "s.toml:6:28: user[0].request[0].assert.latency_below: \"soon\" is not a duration (a number and a unit, e.g. 10s)",
        ),
        // Captures.
        (
            format!(
                "{HEAD}[[user.setup]]\npath = \"/l\"\ncapture = {{ t = {{ json = \"t\" }} }}\n[[user.request]]\npath = \"/\"\n"
            ),
            "s.toml:6:17: user[0].setup[0].capture.t: \"t\" is not a JSON pointer (they start with /, e.g. \"/token\")",
        ),
        (
            format!(
                "{HEAD}[[user.setup]]\npath = \"/l\"\ncapture = {{ t = {{ json = \"/t\", cookie = \"s\" }} }}\n[[user.request]]\npath = \"/\"\n"
            ),
            "s.toml:6:17: user[0].setup[0].capture.t: give exactly one of json = \"/pointer\", cookie = \"name\", header = \"name\"",
        ),
        (
            request_with("capture = { t = { json = \"/t\" } }\n"),
            "s.toml:6:17: user[0].request[0].capture.t: captures are only for setup steps (a request's value would be lost)",
        ),
        (
            format!("{HEAD}[[user.setup]]\npath = \"/l\"\nweight = 2\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:6:10: user[0].setup[0].weight: setup steps all run, once, in order; weight is for [[user.request]]",
        ),
        (
            format!("{HEAD}[[user.setup]]\npath = \"/l\"\ntags = [\"a\"]\n[[user.request]]\npath = \"/\"\n"),
            "s.toml:6:8: user[0].setup[0].tags: setup steps always run; tags select among [[user.request]]",
        ),
        // Variables: known where used, or refused up front.
        (
            format!(
                "base_url = \"http://h\"\n[vars]\npassword = \"p\"\n[[user]]\nname = \"u\"\n{login}[[user.request]]\npath = \"/\"\nheaders = {{ authorization = \"Bearer ${{tokn}}\" }}\n"
            ),
            "s.toml:11:29: user[0].request[0].headers.authorization: unknown variable ${tokn} (defined: password, token)",
        ),
        (
            request_with("query = { q = \"${x}\" }\n"),
            "s.toml:6:15: user[0].request[0].query.q: unknown variable ${x} (no variables are defined here)",
        ),
        (
            request_with("json = { a = [\"${x}\"] }\n"),
            "s.toml:6:8: user[0].request[0].json: unknown variable ${x} (no variables are defined here)",
        ),
        (
            request_with("form = { a = \"${x}\" }\n"),
            "s.toml:6:14: user[0].request[0].form.a: unknown variable ${x} (no variables are defined here)",
        ),
        (
            format!("{HEAD}[[user.request]]\npath = \"/${{x}}\"\n"),
            "s.toml:5:8: user[0].request[0].path: unknown variable ${x} (no variables are defined here)",
        ),
        (
            request_with("body = \"${\"\n"),
            "s.toml:6:8: user[0].request[0].body: unclosed or empty ${...} at byte 0 (write $${ for a literal ${)",
        ),
        // A setup step's captures are not visible to itself...
        (
            format!(
                "{HEAD}[[user.setup]]\npath = \"/l\"\nheaders = {{ a = \"${{t}}\" }}\ncapture = {{ t = {{ json = \"/t\" }} }}\n[[user.request]]\npath = \"/\"\n"
            ),
            "s.toml:6:17: user[0].setup[0].headers.a: unknown variable ${t} (no variables are defined here)",
        ),
        // ...nor to another user type.
        (
            format!(
                "{HEAD}{login}[[user.request]]\npath = \"/\"\n[[user]]\nname = \"v\"\n[[user.request]]\npath = \"/${{token}}\"\n"
            ),
            "s.toml:12:8: user[1].request[0].path: unknown variable ${token} (no variables are defined here)",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, want) in &cases {
        match parse(text) {
            Err(got) if got == *want => {}
            got => wrong.push(format!("for\n{text}want {want:?}\ngot  {got:?}\n")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn variables_are_scoped_to_what_came_before() {
    // The second setup step sees the first one's capture; requests see both.
    let text = format!(
        "{HEAD}[[user.setup]]\npath = \"/a\"\ncapture = {{ a = {{ header = \"x-a\" }} }}\n\
         [[user.setup]]\npath = \"/b/${{a}}\"\ncapture = {{ b = {{ cookie = \"b\" }} }}\n\
         [[user.request]]\npath = \"/c/${{a}}/${{b}}\"\n"
    );
    let c = parse(&text).unwrap().compile().unwrap();
    let u = &c.users[0];
    assert_eq!(u.initial.0.len(), 2, "one slot per capture");
    let mut vars = u.initial.clone();
    vars.set(u.setup[0].captures[0].0, "1".into());
    vars.set(u.setup[1].captures[0].0, "2".into());
    assert_eq!(u.requests[0].path.to_string_with(&vars, Escape::Path), "/c/1/2");
}

#[test]
fn a_datetime_in_a_json_body_is_its_text() {
    let s = parse(&request_with("json = { at = 1979-05-27T07:32:00Z, n = 1.5 }\n")).unwrap();
    assert_eq!(s.users[0].requests[0].body, Some(Body::Json(r#"{"at":"1979-05-27T07:32:00Z","n":1.5}"#.into())));
}

#[test]
fn body_files_are_inlined() {
    let dir = std::env::temp_dir().join(format!("volley-scenario-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bodies")).unwrap();
    std::fs::write(dir.join("bodies/item.json"), "{\"name\": \"${who}\"}").unwrap();
    let text = "base_url = \"http://h\"\n[vars]\nwho = \"me\"\n[[user]]\nname = \"u\"\n[[user.request]]\n\
                path = \"/\"\nbody_file = \"bodies/item.json\"\n";
    let path = dir.join("s.toml");
    std::fs::write(&path, text).unwrap();
    // Relative to the scenario file, not to the working directory.
    let s = Scenario::load(&path).unwrap();
    assert_eq!(s.users[0].requests[0].body, Some(Body::Raw("{\"name\": \"${who}\"}".into())));
    assert_eq!(Scenario::parse(text, "s.toml", &dir).unwrap(), s);
    // Inlined: the JSON an agent gets needs no file, and its variables still render.
    std::fs::remove_dir_all(&dir).unwrap();
    let again = Scenario::from_json(&s.to_json()).unwrap().compile().unwrap();
    let mut body = String::new();
    again.users[0].requests[0].body.as_ref().unwrap().render(&again.users[0].initial, &mut body);
    assert_eq!(body, "{\"name\": \"me\"}");
    // A scenario sent over the API may not read this host's files.
    let e = volley_scenario::file::parse_untrusted(text, "api").unwrap_err();
    assert_eq!(
        e.to_string(),
        "api:8:13: user[0].request[0].body_file: body_file is not accepted here; give the body inline"
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let s = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/shop.toml")).unwrap();
    let c = s.compile().unwrap();
    let names: Vec<&str> = c.names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["login", "list items", "add item", "hello", "unauthorized items"]);
    assert_eq!(s.split_users(100).unwrap(), [75, 25]);
    assert_eq!(s.users[0].think, Think::Between(Duration::from_millis(100), Duration::from_millis(300)));
    // The browser's items request is meant to fail, with this message.
    let unauthorized = &c.users[1].requests[1];
    assert_eq!(
        unauthorized.assert.check(401, br#"{"error":"missing or unknown token"}"#, Duration::from_millis(1)),
        Err("status 401 not in [200]".into())
    );
    assert!(unauthorized.headers.is_empty(), "sent without a token");
}
