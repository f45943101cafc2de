//! `controller serve`: the HTTP API's create / watch / cancel / bad-input
//! paths against real agents and a real target-server, checked against the
//! target's own counts.

use std::time::Duration;

use serde_json::{Value, json};
use volley_testkit::{http, http_json, spawn_agent, spawn_serve, target, within};

/// Polls a run until it is no longer running; returns its last view.
fn wait_over(api: &str, id: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    let over = within(limit, || {
        let (status, v) = http_json(api, "GET", &format!("/v1/runs/{id}"), &[], "");
        assert_eq!(status, 200, "{v}");
        last = v;
        last["state"] != "running"
    });
    assert!(over.is_some(), "run {id} still running after {limit:?}: {last}");
    last
}

#[test]
fn a_run_is_created_watched_and_reported_like_controller_run() {
    let server = target(2);
    let (a, b) = (spawn_agent(&[]), spawn_agent(&[]));
    let api = spawn_serve(&["--agents", &format!("{},{}", a.addr, b.addr)]);
    let url = format!("http://{}/hello", server.local_addr());
    let body = json!({ "url": url, "requests": 20_003, "concurrency": 4, "fail_if": ["error_rate < 1%"] });
    let json_type = [("content-type", "application/json")];
    let (status, headers, text) = http(&api.addr, "POST", "/v1/runs", &json_type, &body.to_string());
    assert_eq!(status, 201, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"].as_str().unwrap().to_owned();
    assert!(headers.contains(&("location".into(), format!("/v1/runs/{id}"))), "{headers:?}");

    let run = wait_over(&api.addr, &id, Duration::from_secs(60));
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["passed"], true);
    assert_eq!(run["request"], body);
    let report = &run["report"];
    let served = server.stats().count("/hello", 200);
    assert_eq!(served, 20_003);
    assert_eq!(report["total_requests"], served);
    assert_eq!(report["successful_requests"], served);
    assert_eq!(report["agents"].as_array().unwrap().len(), 2);
    assert_eq!(run["live"]["requests"], served);
    let per_second: u64 = run["series"].as_array().unwrap().iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(per_second, served);

    // The same object as `controller run --output json`: the same fields.
    let cli = volley_testkit::Run::new(&url).agents(&[&a]).requests(10).connections(1).json();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(report), keys(&cli));

    let (status, list) = http_json(&api.addr, "GET", "/v1/runs", &[], "");
    assert_eq!(status, 200);
    assert_eq!(list["runs"][0]["id"], id.as_str());
    let (status, _, page) = http(&api.addr, "GET", &format!("/v1/runs/{id}/report.html"), &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("<svg") && page.contains("20003"), "{}", &page[..page.len().min(300)]);
    // Over: nothing to cancel.
    let (status, e) = http_json(&api.addr, "DELETE", &format!("/v1/runs/{id}"), &[], "");
    assert_eq!(status, 409, "{e}");
    server.shutdown();
}

#[test]
fn a_running_run_shows_live_figures_and_can_be_cancelled() {
    let server = target(2);
    let api = spawn_serve(&[]);
    let url = format!("http://{}/delay/5", server.local_addr());
    let (status, created) = http_json(
        &api.addr,
        "POST",
        "/v1/runs",
        &[],
        &json!({ "url": url, "duration": "60s", "concurrency": 8 }).to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();

    // Live figures grow while it runs.
    let mut seen = Vec::new();
    let grew = within(Duration::from_secs(15), || {
        let (_, v) = http_json(&api.addr, "GET", &format!("/v1/runs/{id}"), &[], "");
        assert_eq!(v["state"], "running", "{v}");
        assert!(v["report"].is_null());
        seen.push(v["live"]["requests"].as_u64().unwrap());
        let first = seen.iter().copied().find(|&n| n > 0);
        first.is_some_and(|f| seen[seen.len() - 1] > f) && v["live"]["p99_ms"].is_number()
    });
    assert!(grew.is_some(), "live figures did not grow: {seen:?}");
    // `since` returns only the later part of the series.
    let (_, v) = http_json(&api.addr, "GET", &format!("/v1/runs/{id}?since=1"), &[], "");
    assert!(v["series"].as_array().unwrap().iter().all(|r| r["second"].as_u64().unwrap() >= 1), "{v}");

    let (status, c) = http_json(&api.addr, "DELETE", &format!("/v1/runs/{id}"), &[], "");
    assert_eq!(status, 202, "{c}");
    let run = wait_over(&api.addr, id, Duration::from_secs(10));
    assert_eq!(run["state"], "cancelled", "{run}");
    let report = &run["report"];
    assert_eq!(report["cancelled"], true);
    assert!(report["duration_s"].as_f64().unwrap() < 30.0);
    assert_eq!(report["total_requests"], server.stats().count("/delay/5", 200));
    server.shutdown();
}

#[test]
fn bad_requests_get_400_naming_the_field_and_no_load() {
    let server = target(1);
    let api = spawn_serve(&["--api-token", "s3cret"]);
    let auth = [("Authorization", "Bearer s3cret")];
    let url = format!("http://{}/hello", server.local_addr());

    let (status, e) = http_json(&api.addr, "GET", "/v1/runs", &[], "");
    assert_eq!(status, 401, "{e}");
    let (status, e) = http_json(&api.addr, "POST", "/v1/runs", &[("Authorization", "Bearer nope")], "{}");
    assert_eq!((status, e["error"].as_str().unwrap()), (401, "wrong API token"));

    for (body, field) in [
        (json!({ "url": url, "requests": 10, "concurrency": 0 }), "concurrency"),
        (json!({ "url": url, "requests": "many" }), "requests"),
        (json!({ "url": url }), "requests"),
        (json!({ "url": url, "requests": 10, "turbo": true }), "turbo"),
        (json!({ "url": "gopher://x", "requests": 10 }), "url"),
        (json!({ "url": url, "duration": "forever" }), "duration"),
        (json!({ "url": url, "requests": 10, "agents": "@/etc/hosts" }), "agents"),
        (json!({ "url": url, "requests": 10, "fail_if": "p99 <> 3" }), "fail_if"),
    ] {
        let (status, e) = http_json(&api.addr, "POST", "/v1/runs", &auth, &body.to_string());
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(field), "{e}");
    }
    let (status, e) = http_json(&api.addr, "POST", "/v1/runs", &auth, "{not json");
    assert_eq!((status, &e["field"]), (400, &Value::Null), "{e}");
    let (status, _) = http_json(&api.addr, "GET", "/v1/runs/nosuchrun", &auth, "");
    assert_eq!(status, 404);
    let (status, _) = http_json(&api.addr, "DELETE", "/v1/runs/nosuchrun", &auth, "");
    assert_eq!(status, 404);

    // A run whose agent cannot be reached fails and says why.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let body = json!({ "url": url, "requests": 10, "agents": [dead] });
    let (status, c) = http_json(&api.addr, "POST", "/v1/runs", &auth, &body.to_string());
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().unwrap();
    let mut run = Value::Null;
    assert!(
        within(Duration::from_secs(15), || {
            run = http_json(&api.addr, "GET", &format!("/v1/runs/{id}"), &auth, "").1;
            run["state"] != "running"
        })
        .is_some()
    );
    assert_eq!(run["state"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains(&dead), "{run}");

    assert_eq!(server.stats().total, 0, "a refused run sent load");
    server.shutdown();
}

#[test]
fn serving_beyond_loopback_needs_a_token() {
    let out = volley_testkit::controller(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = volley_testkit::stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--api-token"), "{err}");
}

#[test]
fn scenarios_run_through_the_api_too() {
    let server = target(1);
    let api = spawn_serve(&[]);
    let base = format!("http://{}", server.local_addr());
    let text = std::fs::read_to_string(volley_testkit::example_scenario()).unwrap();
    let body = json!({ "scenario": text, "url": base, "users": 10, "spawn_rate": 100, "requests": 300 });
    let (status, c) = http_json(&api.addr, "POST", "/v1/runs", &[], &body.to_string());
    assert_eq!(status, 201, "{c}");
    let run = wait_over(&api.addr, c["id"].as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(run["state"], "done", "{run}");
    let report = &run["report"];
    assert_eq!(report["total_requests"], 300);
    assert_eq!(server.stats().total, 300);
    let login = report["names"].as_array().unwrap().iter().find(|n| n["name"] == "login").unwrap();
    assert_eq!(login["requests"], server.stats().count_method("POST", "/login", 200));

    // A bad scenario names the field and the position; files on this host are not read.
    for (scenario, want) in [
        ("[[user]\nname = \"u\"\n", "scenario:1:"),
        (
            "[[user]]\nname = \"u\"\n[[user.request]]\npath = \"/\"\nbody_file = \"/etc/hostname\"\n",
            "body_file is not accepted here",
        ),
    ] {
        let body = json!({ "scenario": scenario, "url": base, "requests": 5 });
        let (status, e) = http_json(&api.addr, "POST", "/v1/runs", &[], &body.to_string());
        assert_eq!((status, e["field"].as_str()), (400, Some("scenario")), "{e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{e}");
    }
    assert_eq!(server.stats().total, 300, "a refused scenario sent load");
    server.shutdown();
}

#[test]
fn finished_runs_are_forgotten_beyond_keep_bytes() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let run = |api: &str| {
        let body = json!({ "url": url, "requests": 50, "concurrency": 1 }).to_string();
        let (status, created) = http_json(api, "POST", "/v1/runs", &[], &body);
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        wait_over(api, &id, Duration::from_secs(30));
        id
    };
    // A budget smaller than one run's JSON keeps none but the newest.
    let api = spawn_serve(&["--keep-bytes", "1"]);
    let first = run(&api.addr);
    let second = run(&api.addr);
    let (status, _) = http_json(&api.addr, "GET", &format!("/v1/runs/{first}"), &[], "");
    assert_eq!(status, 404, "the oldest finished run is forgotten once the kept ones pass --keep-bytes");
    let (status, kept) = http_json(&api.addr, "GET", &format!("/v1/runs/{second}"), &[], "");
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["report"]["total_requests"], 50);
    // The default budget keeps both.
    let api = spawn_serve(&[]);
    let first = run(&api.addr);
    run(&api.addr);
    let (status, _) = http_json(&api.addr, "GET", &format!("/v1/runs/{first}"), &[], "");
    assert_eq!(status, 200);
    assert_eq!(server.stats().count("/hello", 200), 200);
    server.shutdown();
}
