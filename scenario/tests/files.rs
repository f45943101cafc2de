//! Scenario files: the shipped example loads, and every kind of bad file is
//! refused with its line, column and field.

use std::path::Path;
use std::time::Duration;

use volley_scenario::{Body, Capture, Scenario, Think};

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
        "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/a\"\nweight = 3\n[[user.request]]\npath = \"/b\"\n",
    )
    .unwrap();
    let c = s.compile().unwrap();
    let picks: Vec<usize> = (0..4000u64).map(|r| c.users[0].pick(r)).collect();
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3000);
}

#[test]
fn bad_files_say_where_and_what() {
    let cases: &[(&str, &str)] = &[
        ("base_url = \"http://h\"\n[[user]\nname = \"u\"\n", "s.toml:2:"),
        ("base_url = \"http://h\"\ncolour = 1\n", "s.toml:2:1: colour: unknown field `colour`"),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\nweight = -1\n[[user.request]]\npath = \"/\"\n",
            "s.toml:4:10: user[0].weight: -1 is negative; it must be 0 or more",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nweight = -2\n",
            "s.toml:6:10: user[0].request[0].weight: -2 is negative",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nheaders = { a = \"${tokn}\" }\n",
            "s.toml:6:17: user[0].request[0].headers.a: unknown variable ${tokn} (no variables are defined here)",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\ncolor = 1\n",
            "s.toml:6:1: user[0].request[0].color: unknown field `color`",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\nweight = 1\ncount = 2\n[[user.request]]\npath = \"/\"\n",
            "user[0].weight: give weight or count, not both",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n",
            "s.toml:2:1: user[0].request: user type \"u\" has no [[user.request]]",
        ),
        (
            "base_url = \"ftp://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\n",
            "s.toml:1:12: base_url: \"ftp://h\" is not an http",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"x\"\n",
            "s.toml:5:8: user[0].request[0].path: \"x\" must start with /",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nmethod = \"G T\"\n",
            "s.toml:6:10: user[0].request[0].method",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nassert = { status = [200, 999] }\n",
            "user[0].request[0].assert.status: 999 is not an HTTP status",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nassert = { json = { \"count\" = 1 } }\n",
            "user[0].request[0].assert.json: \"count\" is not a JSON pointer",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\nthink = \"often\"\n[[user.request]]\npath = \"/\"\n",
            "s.toml:4:9: user[0].think: \"often\" is not a think time",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nbody = \"x\"\njson = 1\n",
            "user[0].request[0].json: give one body, not both body and json",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nbody_file = \"nope.json\"\n",
            "user[0].request[0].body_file: cannot read",
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\nweight = \"x\"\n[[user.request]]\npath = \"/\"\n",
            "s.toml:4:10: user[0].weight: invalid type",
        ),
        // A capture is only visible after its own step.
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[user.setup]]\npath = \"/l\"\nheaders = { a = \"${t}\" }\ncapture = { t = { json = \"/t\" } }\n[[user.request]]\npath = \"/\"\n",
            "s.toml:6:17: user[0].setup[0].headers.a: unknown variable ${t}",
        ),
    ];
    for (text, want) in cases {
        let got = parse(text).expect_err(text);
        assert!(got.contains(want), "for\n{text}\nwant {want:?}\ngot  {got:?}");
        assert_eq!(got.lines().count(), 1, "{got}");
    }
}

#[test]
fn body_files_are_inlined() {
    let dir = std::env::temp_dir().join(format!("volley-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("item.json"), "{\"name\": \"${who}\"}").unwrap();
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        "base_url = \"http://h\"\n[vars]\nwho = \"me\"\n[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nbody_file = \"item.json\"\n",
    )
    .unwrap();
    let s = Scenario::load(&path).unwrap();
    assert_eq!(s.users[0].requests[0].body, Some(Body::Raw("{\"name\": \"${who}\"}".into())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_example_is_valid() {
    let s = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/shop.toml")).unwrap();
    let c = s.compile().unwrap();
    assert_eq!(c.users.len(), 2);
    assert_eq!(s.split_users(100).unwrap(), [75, 25]);
}
