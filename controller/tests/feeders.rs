//! Feeders across real agents against a real target-server, whose demo API
//! counts logins by user and items by name: a unique feeder gives each row
//! to exactly one user of the cluster, a cycle feeder deals rows round-robin
//! over the cluster, a unique feeder that runs out stops users (or ends the
//! run) and says so; bad feeders are refused at their file, line and
//! column before any load; `http2 = true` in the file speaks HTTP/2.

use std::path::PathBuf;

use volley_testkit::{Run, controller, spawn_agent, stderr, target};

/// A scenario and its data files in a fresh temporary directory; returns the scenario's path.
fn scenario_dir(tag: &str, scenario: &str, files: &[(&str, String)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-feeders-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("s.toml");
    std::fs::write(&path, scenario).unwrap();
    path
}

/// `n` demo users, `user0000` on, all with the demo's password.
fn users_csv(n: usize) -> String {
    let mut s = String::from("name,password\n");
    for i in 0..n {
        s.push_str(&format!("user{i:04},secret\n"));
    }
    s
}

/// Users log in as a row of `users` (mode and more in `feeder`), then list items.
fn login_scenario(feeder: &str) -> String {
    format!(
        r#"
[[feeder]]
name = "users"
file = "users.csv"
{feeder}

[[user]]
name = "member"
think = "constant 200ms"

[[user.setup]]
name = "login"
method = "POST"
path = "/login"
json = {{ user = "${{users.name}}", password = "${{users.password}}" }}
capture = {{ token = {{ json = "/token" }} }}
assert = {{ status = [200] }}

[[user.request]]
name = "list"
path = "/items"
headers = {{ authorization = "Bearer ${{token}}" }}
"#
    )
}

#[test]
fn a_unique_feeder_gives_each_row_to_exactly_one_user_across_two_agents_of_two_threads() {
    let server = target(2);
    let (a, b) = (spawn_agent(&["--threads", "2"]), spawn_agent(&["--threads", "2"]));
    let file = scenario_dir("unique", &login_scenario("mode = \"unique\""), &[("users.csv", users_csv(1000))]);
    let base = format!("http://{}", server.local_addr());
    let r = Run::new(&base).scenario(&file).users(1000).duration("4s").agents(&[&a, &b]).json();
    let stats = server.stats();

    // Every one of the 1,000 users logged in exactly once, as whom the
    // target says: each row went to one user of the whole cluster.
    assert_eq!(stats.logins_by_user.len(), 1000, "{:?}", stats.logins_by_user.len());
    for i in 0..1000 {
        assert_eq!(stats.logins_by_user.get(&format!("user{i:04}")), Some(&1), "user{i:04}");
    }
    assert_eq!(stats.count_method("POST", "/login", 200), 1000);
    let f = &r["scenario"]["feeders"][0];
    assert_eq!(
        (f["name"].as_str(), f["mode"].as_str(), f["per"].as_str()),
        (Some("users"), Some("unique"), Some("user"))
    );
    assert_eq!((f["rows"].as_u64(), f["used"].as_u64(), f["exhausted"].as_u64()), (Some(1000), Some(1000), Some(0)));
    // Both agents, both threads each, ran users.
    for row in r["agents"].as_array().unwrap() {
        assert_eq!(row["threads"], 2, "{row}");
        assert!(row["total_requests"].as_u64().unwrap() >= 500, "{row}");
    }
    assert_eq!(r["total_requests"].as_u64().unwrap(), stats.total);
    server.shutdown();
}

#[test]
fn a_cycle_feeder_deals_rows_round_robin_over_the_cluster() {
    let server = target(1);
    let (a, b) = (spawn_agent(&["--threads", "2"]), spawn_agent(&["--threads", "1"]));
    let file = scenario_dir("cycle", &login_scenario("mode = \"cycle\""), &[("users.csv", users_csv(3))]);
    let base = format!("http://{}", server.local_addr());
    let r = Run::new(&base).scenario(&file).users(10).duration("2s").agents(&[&a, &b]).json();
    let stats = server.stats();
    // Users 0..10 of the run take rows 0, 1, 2, 0, 1, ...: 4, 3 and 3 logins.
    let logins: Vec<(String, u64)> = stats.logins_by_user.clone().into_iter().collect();
    assert_eq!(logins, [("user0000".into(), 4), ("user0001".into(), 3), ("user0002".into(), 3)]);
    let f = &r["scenario"]["feeders"][0];
    assert_eq!((f["mode"].as_str(), f["rows"].as_u64(), f["used"].as_u64()), (Some("cycle"), Some(3), Some(10)));
    server.shutdown();
}

#[test]
fn a_unique_feeder_per_iteration_posts_each_record_once_then_users_stop() {
    let server = target(1);
    let agent = spawn_agent(&["--threads", "2"]);
    let mut items = String::from("name\n");
    for i in 0..50 {
        items.push_str(&format!("item-{i}\n"));
    }
    let scenario = r#"
[[feeder]]
name = "items"
file = "items.csv"
mode = "unique"
per = "iteration"

[[user]]
name = "writer"

[[user.setup]]
name = "login"
method = "POST"
path = "/login"
json = { user = "w", password = "secret" }
capture = { token = { json = "/token" } }

[[user.request]]
name = "add"
method = "POST"
path = "/items"
headers = { authorization = "Bearer ${token}" }
json = { name = "${items.name}" }
assert = { status = [201] }
"#;
    let file = scenario_dir("per-iteration", scenario, &[("items.csv", items)]);
    let base = format!("http://{}", server.local_addr());
    let started = std::time::Instant::now();
    let r = Run::new(&base).scenario(&file).users(4).duration("60s").agents(&[&agent]).json();
    // Every user stopped when its thread's rows ran out: the run ended then,
    // long before its 60 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    let stats = server.stats();
    assert_eq!(stats.items_by_name.len(), 50);
    assert!(stats.items_by_name.values().all(|&n| n == 1), "{:?}", stats.items_by_name);
    assert_eq!(stats.count_method("POST", "/items", 201), 50);
    let f = &r["scenario"]["feeders"][0];
    assert_eq!(
        (f["per"].as_str(), f["used"].as_u64(), f["exhausted"].as_u64()),
        (Some("iteration"), Some(50), Some(4))
    );
    assert_eq!(r["total_requests"].as_u64().unwrap(), stats.total);
    server.shutdown();
}

#[test]
fn a_unique_feeder_too_small_is_warned_about_and_end_run_ends_the_run() {
    let server = target(1);
    let agent = spawn_agent(&["--threads", "1"]);
    let feeder = "mode = \"unique\"\non_exhausted = \"end_run\"";
    let file = scenario_dir("end-run", &login_scenario(feeder), &[("users.csv", users_csv(6))]);
    let base = format!("http://{}", server.local_addr());
    let started = std::time::Instant::now();
    let out = Run::new(&base).scenario(&file).users(10).duration("60s").agents(&[&agent]).json_output();
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    let err = stderr(&out);
    assert!(
        err.contains(
            "controller: warning: unique feeder \"users\" has 6 rows for 10 users that take one each; an agent \
             whose rows run out ends its part of the run"
        ),
        "{err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &r["scenario"]["feeders"][0];
    // The four users without a row all found none (they start at once).
    assert_eq!((f["used"].as_u64(), f["exhausted"].as_u64()), (Some(6), Some(4)), "{f}");
    let stats = server.stats();
    assert_eq!(stats.logins_by_user.len(), 6);
    assert!(stats.logins_by_user.values().all(|&n| n == 1));
    server.shutdown();
}

#[test]
fn bad_feeders_are_refused_at_their_line_and_column_before_any_load() {
    let server = target(1);
    let base = format!("http://{}", server.local_addr());
    let ragged = "name,password\nuser0,secret\nuser1\n".to_owned();
    let file = scenario_dir("ragged", &login_scenario(""), &[("users.csv", ragged)]);
    let out = controller(&["run", "--scenario", file.to_str().unwrap(), "--url", &base, "-n", "10"]);
    assert_eq!(out.status.code(), Some(2));
    let csv = file.with_file_name("users.csv");
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "controller: --scenario: {}:3:1: feeder[0]: this row has 1 fields; the header row has 2",
            csv.display()
        )
    );
    // A missing file, at the `file` value in the scenario.
    let file = scenario_dir("missing", &login_scenario(""), &[]);
    let out = controller(&["run", "--scenario", file.to_str().unwrap(), "--url", &base, "-n", "10"]);
    assert_eq!(out.status.code(), Some(2));
    let want = format!("controller: --scenario: {}:4:8: feeder[0].file: cannot read ", file.display());
    assert!(stderr(&out).starts_with(&want), "{}", stderr(&out));
    // A column the file does not have, where the template uses it.
    let text = login_scenario("").replace("${users.password}", "${users.pasword}");
    let file = scenario_dir("column", &text, &[("users.csv", users_csv(2))]);
    let out = controller(&["run", "--scenario", file.to_str().unwrap(), "--url", &base, "-n", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "s.toml:15:8: user[0].setup[0].json: unknown variable ${users.pasword} (defined: users.name, users.password)"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.stats().total, 0, "no load before the refusal");
    server.shutdown();
}

#[test]
fn http2_in_the_scenario_file_speaks_http2() {
    let server = target(1);
    let base = format!("http://{}", server.local_addr());
    let one = "[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/hello\"\n";
    // Without it: HTTP/1.1, the target says.
    let file = scenario_dir("h1", one, &[]);
    let r = Run::new(&base).scenario(&file).users(2).requests(40).json();
    assert_eq!((r["total_requests"].as_u64(), r["protocol"].as_str()), (Some(40), Some("HTTP/1.1")));
    assert_eq!((server.stats().total, server.stats().http2_requests), (40, 0));
    // With it: every request arrived over HTTP/2 (h2c).
    let file = scenario_dir("h2", &format!("http2 = true\n{one}"), &[]);
    let r = Run::new(&base).scenario(&file).users(2).requests(60).json();
    assert_eq!((r["total_requests"].as_u64(), r["protocol"].as_str()), (Some(60), Some("HTTP/2")));
    assert_eq!((server.stats().total, server.stats().http2_requests), (100, 60));
    server.shutdown();
}
