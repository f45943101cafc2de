//! Feeders in scenario files: columns become `${feeder.column}` variables,
//! the feeders a user type uses are found, and every bad feeder is refused
//! with its file, line and column.

use std::path::{Path, PathBuf};

use volley_scenario::feeder::{Mode, OnExhausted, Per};
use volley_scenario::{Feed, Scenario, Vars};

/// A fresh directory with `files` in it.
fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("volley-feeders-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

fn parse_in(d: &Path, text: &str) -> Result<Scenario, String> {
    volley_scenario::file::parse(text, "s.toml", d).map_err(|e| e.to_string())
}

const USERS: &str = "name,password\nann,a1\nbob,b2\ncy,c3\n";

const GOOD: &str = r#"
base_url = "http://127.0.0.1:8080"
http2 = true
[[feeder]]
name = "users"
file = "users.csv"
mode = "unique"
on_exhausted = "end_run"
[[feeder]]
name = "orders"
file = "orders.jsonl"
per = "iteration"
[[feeder]]
name = "unused"
file = "users.csv"
mode = "random"
[[user]]
name = "buyer"
[[user.setup]]
path = "/login"
json = { user = "${users.name}", password = "${users.password}" }
capture = { token = { json = "/token" } }
[[user.request]]
method = "POST"
path = "/items"
json = { name = "${orders.item}", by = "${token}" }
[[user]]
name = "browser"
[[user.request]]
path = "/items"
"#;

#[test]
fn columns_become_variables() {
    let d = dir("good", &[("users.csv", USERS), ("orders.jsonl", "{\"item\": \"pen\"}\n{\"item\": \"ink\"}\n")]);
    let s = parse_in(&d, GOOD).unwrap();
    assert!(s.http2);
    let f = &s.feeders[0];
    assert_eq!((f.name.as_str(), f.columns.clone(), f.rows), ("users", vec!["name".into(), "password".into()], 3));
    assert_eq!((f.mode, f.per, f.on_exhausted), (Mode::Unique, Per::User, OnExhausted::EndRun));
    assert_eq!(f.table.cell(4), "cy");
    let o = &s.feeders[1];
    assert_eq!((o.mode, o.per, o.on_exhausted, o.rows), (Mode::Cycle, Per::Iteration, OnExhausted::StopUser, 2));
    let c = s.compile().unwrap();
    // Slots: no [vars]; users' two columns and unused's two (per user), the
    // capture, then orders' column (per iteration).
    let buyer = &c.users[0];
    assert_eq!(
        buyer.feeds,
        [
            Feed { feeder: 0, first_slot: 0, columns: 2, per: Per::User },
            Feed { feeder: 1, first_slot: 5, columns: 1, per: Per::Iteration }
        ]
    );
    // A user type that uses no column takes no rows.
    assert!(c.users[1].feeds.is_empty());
    let mut vars = buyer.initial.clone();
    vars.set(0, "a\"nn".into());
    vars.set(1, "pw".into());
    let mut body = String::new();
    buyer.setup[0].body.as_ref().unwrap().render(&vars, &mut body);
    assert_eq!(body, r#"{"password":"pw","user":"a\"nn"}"#);
    assert_eq!(vars.0.len(), Vars(vec![None; 6]).0.len());
    // The JSON the agents get carries the definitions, not the rows.
    let json = s.to_json();
    assert!(!json.contains("bob"), "{json}");
    let back = Scenario::from_json(&json).unwrap();
    assert_eq!(back.feeders[0].rows, 3);
    assert_eq!(back.compile().unwrap().users[0].feeds, buyer.feeds);
}

#[test]
fn bad_feeders_say_where_and_what() {
    let d =
        dir("bad", &[("users.csv", USERS), ("ragged.csv", "name,password\nann,a1\nbob\n"), ("empty.csv", "name\n")]);
    let feeder = |extra: &str| {
        format!(
            "base_url = \"http://h\"\n[[feeder]]\nname = \"users\"\nfile = \"users.csv\"\n{extra}[[user]]\nname = \"u\"\n\
             [[user.request]]\npath = \"/${{users.name}}\"\n"
        )
    };
    let cases: Vec<(String, String)> = vec![
        (
            "base_url = \"http://h\"\n[[feeder]]\nname = \"users\"\nfile = \"missing.csv\"\n".into(),
            format!("s.toml:4:8: feeder[0].file: cannot read {}/missing.csv: ", d.display()),
        ),
        (
            "base_url = \"http://h\"\n[[feeder]]\nname = \"users\"\nfile = \"ragged.csv\"\n".into(),
            format!("{}/ragged.csv:3:1: feeder[0]: this row has 1 fields; the header row has 2", d.display()),
        ),
        (
            "base_url = \"http://h\"\n[[feeder]]\nname = \"users\"\nfile = \"empty.csv\"\n".into(),
            format!("{}/empty.csv: feeder[0]: has no rows of data", d.display()),
        ),
        (
            "base_url = \"http://h\"\n[[user]]\nname = \"u\"\n[[feeder]]\nname = \"users\"\nfile = \"users.csv\"\n\
             [[user.request]]\npath = \"/${users.nmae}\"\n"
                .into(),
            // (A [[user.request]] after [[feeder]] belongs to the last [[user]].)
            "s.toml:8:8: user[0].request[0].path: unknown variable ${users.nmae} (defined: users.name, users.password)"
                .into(),
        ),
        (feeder("mode = \"once\"\n"), "s.toml:5:8: feeder[0].mode: unknown variant `once`".into()),
        (
            feeder("on_exhausted = \"end_run\"\n"),
            "s.toml:5:16: feeder[0].on_exhausted: only a unique feeder runs out of rows".into(),
        ),
        (
            feeder("[[feeder]]\nname = \"users\"\nfile = \"users.csv\"\n"),
            "s.toml:6:8: feeder[1].name: feeder \"users\" is already feeder[0]".into(),
        ),
        (
            feeder("[[feeder]]\nname = \"a.b\"\nfile = \"users.csv\"\n"),
            "s.toml:6:8: feeder[1].name: \"a.b\" cannot be a variable prefix".into(),
        ),
        (
            "base_url = \"http://h\"\n[[feeder]]\nname = \"users\"\nfile = \"users.csv\"\nper = \"iteration\"\n\
             [[user]]\nname = \"u\"\n[[user.setup]]\npath = \"/${users.name}\"\n[[user.request]]\npath = \"/\"\n"
                .into(),
            "s.toml:9:8: user[0].setup[0].path: ${users.name} comes from feeder \"users\", which gives a row per \
             iteration; setup steps run before any (give the feeder per = \"user\")"
                .into(),
        ),
    ];
    for (text, want) in cases {
        let got = parse_in(&d, &text).unwrap_err();
        assert!(got.starts_with(&want), "\n got: {got}\nwant: {want}\nfile:\n{text}");
        assert_eq!(got.lines().count(), 1, "{got}");
    }
    // Over the HTTP API, no file on the controller's disk is read.
    let e = volley_scenario::file::parse_untrusted(&feeder(""), "scenario").unwrap_err().to_string();
    assert!(e.starts_with("scenario:4:8: feeder[0].file: feeder files are not read here"), "{e}");
}

#[test]
fn stages_in_the_file() {
    let d = dir("stages", &[]);
    let head = "[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\n";
    let s = parse_in(
        &d,
        &format!("base_url = \"http://h\"\n[[stage]]\nduration = \"0s\"\ntarget = 2\n[[stage]]\nduration = \"1.5s\"\ntarget = 6\n{head}"),
    )
    .unwrap();
    assert_eq!(
        s.stages,
        [volley_scenario::Stage { duration_ms: 0, users: 2 }, volley_scenario::Stage { duration_ms: 1500, users: 6 }]
    );
    assert_eq!(Scenario::from_json(&s.to_json()).unwrap().stages, s.stages);
    let e = parse_in(&d, &format!("base_url = \"http://h\"\n[[stage]]\nduration = \"1s\"\ntarget = \"5/s\"\n{head}"))
        .unwrap_err();
    assert!(e.starts_with("s.toml:4:10: stage[0].target: a scenario's stages are numbers of active users"), "{e}");
    let e = parse_in(&d, &format!("base_url = \"http://h\"\n[[stage]]\nduration = \"1s\"\ntarget = -1\n{head}"))
        .unwrap_err();
    assert_eq!(e, "s.toml:4:10: stage[0].target: -1 is not a number of users (0 or more)");
    let e = parse_in(&d, &format!("base_url = \"http://h\"\n[[stage]]\nduration = \"soon\"\ntarget = 1\n{head}"))
        .unwrap_err();
    assert!(e.starts_with("s.toml:3:12: stage[0].duration: "), "{e}");
}
