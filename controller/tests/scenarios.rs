//! Scenario runs: the example scenario across two real agents against a real
//! target-server, checked against the target's own counts by method and path;
//! weights, think times and constant throughput; bad files refused before
//! any load.

use std::path::PathBuf;

use serde_json::Value;
use volley_testkit::{Run, controller, example_scenario as example, spawn_agent, stderr, target};

fn name_row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {}", report["names"]))
}

fn requests(report: &Value, name: &str) -> u64 {
    name_row(report, name)["requests"].as_u64().unwrap()
}

/// A scenario file in a fresh temporary directory.
fn scenario_file(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-scn-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_across_two_agents_counts_what_the_target_served() {
    let server = target(2);
    let (a, b) = (spawn_agent(&["--threads", "1"]), spawn_agent(&["--threads", "1"]));
    let base = format!("http://{}", server.local_addr());
    let r = Run::new(&base).scenario(example()).users(40).duration("4s").agents(&[&a, &b]).args(&["-r", "200"]).json();
    let stats = server.stats();

    // Users: 3:1 by weight, exactly; each shopper logged in once.
    let types = &r["scenario"]["user_types"];
    assert_eq!((types[0]["name"].as_str(), types[0]["users"].as_u64()), (Some("shopper"), Some(30)));
    assert_eq!((types[1]["name"].as_str(), types[1]["users"].as_u64()), (Some("browser"), Some(10)));
    assert_eq!(requests(&r, "login"), 30);

    // Per name == the target's own count of that method, path and status.
    assert_eq!(requests(&r, "login"), stats.count_method("POST", "/login", 200));
    assert_eq!(requests(&r, "list items"), stats.count_method("GET", "/items", 200));
    assert_eq!(requests(&r, "add item"), stats.count_method("POST", "/items", 201));
    assert_eq!(requests(&r, "hello"), stats.count_method("GET", "/hello", 200));
    assert_eq!(requests(&r, "unauthorized items"), stats.count_method("GET", "/items", 401));
    assert_eq!(r["total_requests"].as_u64().unwrap(), stats.total);
    assert_eq!(
        r["names"].as_array().unwrap().iter().map(|n| n["requests"].as_u64().unwrap()).sum::<u64>(),
        stats.total
    );

    // Requests without a token are rejected by the target and counted as
    // failures with the assertion's message; nothing else failed.
    let unauthorized = requests(&r, "unauthorized items");
    assert!(unauthorized > 0);
    assert_eq!(name_row(&r, "unauthorized items")["failures"], unauthorized);
    assert_eq!(r["failed_requests"], unauthorized);
    assert_eq!(r["failures"][0]["message"], "status 401 not in [200]");
    assert_eq!(r["failures"][0]["count"], unauthorized);
    assert_eq!(r["failures"].as_array().unwrap().len(), 1, "{}", r["failures"]);

    // Weights within a user type, within statistical tolerance (5 sigma).
    let within = |a: u64, b: u64, share: f64| {
        let n = (a + b) as f64;
        let sigma = (n * share * (1.0 - share)).sqrt() / n;
        ((a as f64 / n) - share).abs() < 5.0 * sigma
    };
    let (list, add) = (requests(&r, "list items"), requests(&r, "add item"));
    assert!(list + add > 300 && within(list, add, 0.75), "list {list} add {add}");
    let hello = requests(&r, "hello");
    assert!(
        hello + unauthorized > 100 && within(hello, unauthorized, 0.75),
        "hello {hello} unauthorized {unauthorized}"
    );

    // Both agents ran users; the per-name latencies are merged histograms.
    for row in r["agents"].as_array().unwrap() {
        assert!(row["total_requests"].as_u64().unwrap() > 0, "{row}");
    }
    let l = &name_row(&r, "list items")["latency_ms"];
    assert!(l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap());
    server.shutdown();
}

#[test]
fn count_mode_sends_exactly_n_including_setup() {
    let server = target(1);
    let base = format!("http://{}", server.local_addr());
    let r = Run::new(&base).scenario(example()).users(8).requests(501).args(&["--exclude-tags", "write"]).json();
    assert_eq!(r["total_requests"], 501);
    assert_eq!(server.stats().total, 501);
    // Excluded by tag: never sent.
    assert_eq!(server.stats().method_total("POST", "/items"), 0);
    assert!(r["names"].as_array().unwrap().iter().all(|n| n["name"] != "add item"));
    server.shutdown();
}

#[test]
fn think_time_and_constant_throughput_set_the_rate() {
    let server = target(1);
    let base = format!("http://{}", server.local_addr());
    // 10 users at 5 iterations per second each, for 4 s: 200 requests.
    let ct = scenario_file(
        "ct",
        "[[user]]\nname = \"paced\"\nthink = \"constant_throughput 5\"\n[[user.request]]\npath = \"/hello\"\n",
    );
    let r = Run::new(&base).scenario(ct.to_str().unwrap()).users(10).duration("4s").json();
    let n = r["total_requests"].as_u64().unwrap();
    assert!((185..=215).contains(&n), "constant_throughput 5 x 10 users x 4 s gave {n}");
    assert_eq!(server.stats().count("/hello", 200), n);

    // 10 users thinking 0.25 s after each ~1 ms request, for 3 s: at most 4
    // iterations per second each, a little fewer for the request time.
    let constant = scenario_file(
        "constant",
        "[[user]]\nname = \"slow\"\nthink = \"constant 0.25s\"\n[[user.request]]\npath = \"/hello\"\n",
    );
    let r = Run::new(&base).scenario(constant.to_str().unwrap()).users(10).duration("3s").json();
    let m = r["total_requests"].as_u64().unwrap();
    assert!((100..=120).contains(&m), "constant 0.25s x 10 users x 3 s gave {m}");
    assert_eq!(server.stats().count("/hello", 200), n + m);
    server.shutdown();
}

#[test]
fn bad_scenarios_are_refused_before_any_load() {
    let server = target(1);
    let base = format!("http://{}", server.local_addr());
    let head = "[[user]]\nname = \"u\"\n";
    let cases = [
        ("syntax", format!("{head}[[user.request]\npath = \"/hello\"\n"), ":3:"),
        (
            "unknown",
            format!("{head}[[user.request]]\npath = \"/hello\"\nretries = 3\n"),
            ":5:1: user[0].request[0].retries: unknown field",
        ),
        (
            "negative",
            format!("{head}weight = -3\n[[user.request]]\npath = \"/hello\"\n"),
            ":3:10: user[0].weight: -3 is negative",
        ),
        (
            "variable",
            format!(
                "{head}[[user.request]]\npath = \"/items\"\nheaders = {{ authorization = \"Bearer ${{token}}\" }}\n"
            ),
            ":5:29: user[0].request[0].headers.authorization: unknown variable ${token}",
        ),
    ];
    for (tag, text, want) in &cases {
        let path = scenario_file(tag, text);
        let out = Run::new(&base).scenario(&path).users(2).requests(10).output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{tag}: {err}");
        assert_eq!(err.lines().count(), 1, "{tag}: {err}");
        assert!(err.contains(&format!("--scenario: {}{want}", path.display())), "{tag}: {err}");
        assert!(out.stdout.is_empty());
    }
    for (args, want) in [
        (vec!["--scenario", "/nonexistent/s.toml", "-n", "5"], "cannot read it"),
        (vec!["--url", base.as_str(), "-u", "5", "-n", "5"], "-u/--users: only for --scenario runs"),
        (vec!["--scenario", &example(), "--url", base.as_str(), "-q", "10", "-n", "5"], "-q/--rate"),
        (vec!["--scenario", &example(), "--url", "ftp://x", "-n", "5"], "base_url"),
        (
            vec!["--scenario", &example(), "--url", base.as_str(), "--tags", "nothing", "-n", "5"],
            "has no requests left",
        ),
    ] {
        let mut full = vec!["run"];
        full.extend(args);
        let out = controller(&full);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{full:?}: {}", stderr(&out));
    }
    assert_eq!(server.stats().total, 0, "a refused scenario sent load");
    server.shutdown();
}
