//! `controller compare` and `--baseline` on real runs against a real
//! target-server: a run equals itself, `/delay/5` against `/delay/20` is
//! slower by the right amount, two runs of the same settings are not called
//! a regression, the gates exit 3 on a planted regression and 0 otherwise,
//! and the report's histograms decode to its own percentiles.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use volley_testkit::*;

/// A fresh directory for this test's files.
fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("volley-compare-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Held by each run of these tests: they judge latencies (a /delay/5 run's
/// p50 within 5–10 ms), so their runs take turns instead of sharing two cores
/// with each other (five at once, and the contention showed in a p50; so did
/// the API's runs of one test beside another's saved run, before they took
/// turns too).
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's turn to load the machine (see [`ONE_RUN_AT_A_TIME`]).
fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `path` on `server` for 4 s over 4 connections, saves the JSON report
/// as `file`, checks every response was counted by the target, returns it.
fn saved_run(server: &target_server::ServerHandle, path: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
    let _turn = turn();
    let before = server.stats().count(path, 200);
    let url = format!("http://{}{path}", server.local_addr());
    let mut args = vec!["run", "--url", &url, "-z", "4s", "-c", "4", "--threads", "1", "--quiet", "--output", "json"];
    args.extend_from_slice(extra);
    let out = controller(&args);
    let report = json_report(&out);
    assert_eq!(server.stats().count(path, 200) - before, report["successful_requests"].as_u64().unwrap());
    std::fs::write(file, stdout(&out)).unwrap();
    report
}

fn compare(args: &[&str]) -> Output {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    controller(&all)
}

fn compare_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    let out = compare(&all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code(), v)
}

fn figure<'a>(c: &'a serde_json::Value, metric: &str) -> &'a serde_json::Value {
    c["figures"].as_array().unwrap().iter().find(|f| f["metric"] == metric).unwrap()
}

fn decode(text: &serde_json::Value) -> hdrhistogram::Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.as_str().unwrap()).unwrap();
    Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap()
}

#[test]
fn a_run_equals_itself_and_its_histograms_are_its_percentiles() {
    let server = target(1);
    let d = dir("self");
    let file = d.join("run.json");
    let r = saved_run(&server, "/delay/5", &file, &["--rate", "400"]);

    // The histograms decode to the report's own figures.
    let h = decode(&r["histograms"]["latency"]);
    assert_eq!(h.len(), r["successful_requests"].as_u64().unwrap());
    let l = &r["latency_ms"];
    for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        assert_eq!(l[key].as_f64().unwrap(), h.value_at_quantile(q) as f64 / 1000.0, "{key}");
    }
    assert_eq!(l["max"].as_f64().unwrap(), h.max() as f64 / 1000.0);
    assert_eq!(l["min"].as_f64().unwrap(), h.min() as f64 / 1000.0);
    let u = decode(&r["histograms"]["latency_uncorrected"]);
    assert_eq!(u.len(), h.len());
    assert_eq!(r["latency_uncorrected_ms"]["p99"].as_f64().unwrap(), u.value_at_quantile(0.99) as f64 / 1000.0);

    let f = file.display().to_string();
    let (code, c) = compare_json(&[&f, &f]);
    assert_eq!(code, Some(0));
    assert_eq!(c["latency"]["verdict"], "no_significant_difference", "{c:#}");
    assert_eq!(c["warnings"].as_array().unwrap().len(), 0);
    assert_eq!(figure(&c, "p99")["change"], 0.0);
    let out = compare(&[&f, &f, "--fail-if", "p99 <= baseline", "--fail-if", "rps >= baseline * 0.95"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("Latency: NO SIGNIFICANT DIFFERENCE"), "{}", stdout(&out));
}

#[test]
fn delay_20_is_slower_than_delay_5_and_the_gates_catch_it() {
    let server = target(1);
    let d = dir("slower");
    let (five, twenty) = (d.join("five.json"), d.join("twenty.json"));
    saved_run(&server, "/delay/5", &five, &[]);
    saved_run(&server, "/delay/20", &twenty, &[]);
    let (five, twenty) = (five.display().to_string(), twenty.display().to_string());

    let (code, c) = compare_json(&[&five, &twenty]);
    assert_eq!(code, Some(0), "no --fail-if, no failure");
    assert_eq!(c["latency"]["verdict"], "slower", "{c:#}");
    let p50 = figure(&c, "p50");
    let (b, n) = (p50["baseline"].as_f64().unwrap(), p50["candidate"].as_f64().unwrap());
    // No response beats the server's delay; above it, a timer firing late
    // on this VM adds 0.5 to 3 ms to a median (debug builds: /delay/5's p50
    // measured 6.6 to 8.4 ms), so the paths are 15 ms apart, far more than that.
    assert!((5.0..10.0).contains(&b), "baseline p50 {b}");
    assert!((20.0..25.0).contains(&n), "candidate p50 {n}");
    assert!((12.0..18.0).contains(&(n - b)), "p50 {b} -> {n}: the 15 ms the paths differ by");
    assert!((p50["change"].as_f64().unwrap() - (n - b)).abs() < 1e-9);
    let rel = p50["relative_change"].as_f64().unwrap();
    assert!((rel - (n - b) / b).abs() < 1e-9, "relative change {rel}");
    // A third of the rate or less for three times the latency or more
    // (closed model, same connections).
    let rps = figure(&c, "rps")["relative_change"].as_f64().unwrap();
    assert!((-0.85..-0.5).contains(&rps), "rps change {rps}");
    let test = &c["latency"]["tests"][0];
    assert_eq!(test["quantile"], "p50");
    assert_eq!(test["verdict"], "slower");
    assert!(test["estimate"]["low"].as_f64().unwrap() > 1.1, "{test}");
    // Not the same URL: named.
    assert!(c["warnings"][0].as_str().unwrap().contains("different URL"), "{c:#}");
    // The other way round it is faster.
    assert_eq!(compare_json(&[&twenty, &five]).1["latency"]["verdict"], "faster");

    // The gates: a planted regression exits 3, none exits 0.
    let out = compare(&[&five, &twenty, "--fail-if", "p99 < baseline * 1.10"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAIL  p99 < baseline * 1.10"), "{}", stdout(&out));
    let out = compare(&[&five, &twenty, "--fail-if", "rps > baseline * 0.95"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let out = compare(&[&twenty, &five, "--fail-if", "p99 < baseline * 1.10", "--fail-if", "rps > baseline * 0.95"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The same gate on a run: /delay/20 against the /delay/5 baseline.
    let url = |p: &str| format!("http://{}{p}", server.local_addr());
    let gate = |path: &str| {
        let u = url(path);
        let _turn = turn();
        controller(&[
            "run",
            "--url",
            &u,
            "-z",
            "3s",
            "-c",
            "4",
            "--threads",
            "1",
            "--quiet",
            "--output",
            "json",
            "--baseline",
            &five,
            "--fail-if",
            "p50 < baseline * 1.60",
        ])
    };
    let out = gate("/delay/20");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &report["thresholds"][0];
    assert_eq!(v["passed"], false);
    assert_eq!(v["baseline"].as_f64().unwrap(), b);
    assert!(stderr(&out).contains("not comparable: different URL"), "{}", stderr(&out));
    let out = gate("/delay/5");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_report(&out)["thresholds"][0]["passed"], true);
}

/// Two runs of the same settings. They run side by side, so both see the
/// same machine: on a shared 2-core box, one run started while a neighbour
/// compiles can be slower throughout than one started a minute later, a real
/// difference of the machine that no statistic on one pair can tell from a
/// regression (the book says so). What is checked here is that the
/// run-to-run sampling noise of two runs in the same conditions is not
/// turned into a regression, in either order.
#[test]
fn two_runs_of_the_same_settings_are_not_a_regression() {
    let server = target(1);
    let d = dir("noisy");
    let url = format!("http://{}/delay/5", server.local_addr());
    let run = || {
        Run::new(&url).duration("4s").connections(4).args(&["--threads", "1", "--quiet", "--output", "json"]).spawn()
    };
    // The pair runs side by side (the same conditions for both), but not
    // beside another test's runs.
    let held = turn();
    let (a, b) = (run(), run());
    let mut files = Vec::new();
    let mut total = 0;
    for (running, name) in [(a, "a.json"), (b, "b.json")] {
        let (status, out, _) = running.finish();
        assert!(status.success(), "{out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        total += report["successful_requests"].as_u64().unwrap();
        let file = d.join(name);
        std::fs::write(&file, out).unwrap();
        files.push(file.display().to_string());
    }
    drop(held);
    assert_eq!(server.stats().count("/delay/5", 200), total);
    let (a, b) = (&files[0], &files[1]);
    for (x, y) in [(a, b), (b, a)] {
        let (code, c) = compare_json(&[x, y, "--fail-if", "p50 < baseline * 1.30"]);
        assert_ne!(c["latency"]["verdict"], "slower", "{c:#}");
        assert_eq!(code, Some(0), "{c:#}");
        assert_eq!(c["warnings"].as_array().unwrap().len(), 0, "{c:#}");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = dir("bad");
    let junk = d.join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    let junk = junk.display().to_string();
    let missing = d.join("missing.json").display().to_string();
    for (args, needle) in [
        (vec![junk.as_str(), junk.as_str()], "not a Volley JSON report"),
        (vec![missing.as_str(), junk.as_str()], "cannot read it"),
        (vec![junk.as_str(), junk.as_str(), "--fail-if", "p99 < baseline * x"], "--fail-if"),
        (vec![junk.as_str(), junk.as_str(), "--confidence", "100"], "--confidence"),
        (vec![junk.as_str(), junk.as_str(), "--output", "csv"], "--output"),
        (vec![junk.as_str()], "CANDIDATE"),
    ] {
        let out = compare(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A relative threshold on a run needs a baseline.
    let out = controller(&["run", "--url", "http://127.0.0.1:1/", "-n", "1", "--fail-if", "p99 < baseline * 1.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("give --baseline FILE"), "{}", stderr(&out));
}

#[test]
fn serve_compares_two_stored_runs_and_its_json_compares_on_the_command_line() {
    let server = target(1);
    let api = spawn_serve(&[]);
    let start = |path: &str| {
        let _turn = turn();
        let url = format!("http://{}{path}", server.local_addr());
        let body = serde_json::json!({ "url": url, "duration": "4s", "concurrency": 4, "threads": 1 });
        let (status, v) = http_json(&api.addr, "POST", "/v1/runs", &[], &body.to_string());
        assert_eq!(status, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let mut last = serde_json::Value::Null;
        let over = within(std::time::Duration::from_secs(60), || {
            last = http_json(&api.addr, "GET", &format!("/v1/runs/{id}"), &[], "").1;
            last["state"] != "running"
        });
        assert!(over.is_some(), "{last}");
        assert_eq!(last["state"], "done", "{last}");
        (id, last)
    };
    let (five, five_view) = start("/delay/5");
    let (twenty, twenty_view) = start("/delay/20");
    let (status, c) = http_json(&api.addr, "GET", &format!("/v1/runs/{five}/compare/{twenty}"), &[], "");
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["latency"]["verdict"], "slower", "{c:#}");
    assert_eq!(c["candidate"]["total_requests"], twenty_view["report"]["total_requests"]);
    let (status, e) = http_json(&api.addr, "GET", &format!("/v1/runs/{five}/compare/nope"), &[], "");
    assert_eq!(status, 404, "{e}");

    // The API's view of a run, saved as is, is a report `controller compare` reads.
    let d = dir("serve");
    let (a, b) = (d.join("five.json"), d.join("twenty.json"));
    std::fs::write(&a, five_view.to_string()).unwrap();
    std::fs::write(&b, twenty_view.to_string()).unwrap();
    let (code, local) = compare_json(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    // The same figures, up to the last digit JSON text keeps of a float.
    let close = |x: &serde_json::Value, y: &serde_json::Value| match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => x == y,
    };
    for (l, r) in local["figures"].as_array().unwrap().iter().zip(c["figures"].as_array().unwrap()) {
        assert!(close(&l["baseline"], &r["baseline"]) && close(&l["candidate"], &r["candidate"]), "{l} vs {r}");
    }
    assert_eq!(local["latency"]["verdict"], c["latency"]["verdict"]);
    for (l, r) in local["latency"]["tests"].as_array().unwrap().iter().zip(c["latency"]["tests"].as_array().unwrap()) {
        assert_eq!(l["verdict"], r["verdict"]);
        assert!(close(&l["estimate"]["ratio"], &r["estimate"]["ratio"]), "{l} vs {r}");
    }
    server.shutdown();
}
