//! `controller compare` and `--baseline` on real runs against a real
//! target-server: a run equals itself, `/delay/5` against `/delay/10` is
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

/// Runs `path` on `server` for 4 s over 4 connections, saves the JSON report
/// as `file`, checks every response was counted by the target, returns it.
fn saved_run(server: &target_server::ServerHandle, path: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
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
fn delay_10_is_slower_than_delay_5_and_the_gates_catch_it() {
    let server = target(1);
    let d = dir("slower");
    let (five, ten) = (d.join("five.json"), d.join("ten.json"));
    saved_run(&server, "/delay/5", &five, &[]);
    saved_run(&server, "/delay/10", &ten, &[]);
    let (five, ten) = (five.display().to_string(), ten.display().to_string());

    let (code, c) = compare_json(&[&five, &ten]);
    assert_eq!(code, Some(0), "no --fail-if, no failure");
    assert_eq!(c["latency"]["verdict"], "slower", "{c:#}");
    let p50 = figure(&c, "p50");
    let (b, n) = (p50["baseline"].as_f64().unwrap(), p50["candidate"].as_f64().unwrap());
    assert!((5.0..8.0).contains(&b), "baseline p50 {b}");
    assert!((10.0..13.0).contains(&n), "candidate p50 {n}");
    assert!((p50["change"].as_f64().unwrap() - (n - b)).abs() < 1e-9);
    let rel = p50["relative_change"].as_f64().unwrap();
    assert!((0.5..1.1).contains(&rel), "relative change {rel}");
    // Half the latency, half the rate (closed model, same connections).
    let rps = figure(&c, "rps")["relative_change"].as_f64().unwrap();
    assert!((-0.65..-0.3).contains(&rps), "rps change {rps}");
    let test = &c["latency"]["tests"][0];
    assert_eq!(test["quantile"], "p50");
    assert_eq!(test["verdict"], "slower");
    assert!(test["estimate"]["low"].as_f64().unwrap() > 1.1, "{test}");
    // Not the same URL: named.
    assert!(c["warnings"][0].as_str().unwrap().contains("different URL"), "{c:#}");
    // The other way round it is faster.
    assert_eq!(compare_json(&[&ten, &five]).1["latency"]["verdict"], "faster");

    // The gates: a planted regression exits 3, none exits 0.
    let out = compare(&[&five, &ten, "--fail-if", "p99 < baseline * 1.10"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAIL  p99 < baseline * 1.10"), "{}", stdout(&out));
    let out = compare(&[&five, &ten, "--fail-if", "rps > baseline * 0.95"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let out = compare(&[&ten, &five, "--fail-if", "p99 < baseline * 1.10", "--fail-if", "rps > baseline * 0.95"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The same gate on a run: /delay/10 against the /delay/5 baseline.
    let url = |p: &str| format!("http://{}{p}", server.local_addr());
    let gate = |path: &str| {
        let u = url(path);
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
            "p50 < baseline * 1.20",
        ])
    };
    let out = gate("/delay/10");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = &json_report(&out)["thresholds"][0];
    assert_eq!(v["passed"], false);
    assert_eq!(v["baseline"].as_f64().unwrap(), b);
    assert!(stderr(&out).contains("not comparable: different URL"), "{}", stderr(&out));
    let out = gate("/delay/5");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_report(&out)["thresholds"][0]["passed"], true);
}

#[test]
fn two_runs_of_the_same_settings_are_not_a_regression() {
    let server = target(1);
    let d = dir("noisy");
    let (a, b) = (d.join("a.json"), d.join("b.json"));
    saved_run(&server, "/delay/5", &a, &[]);
    saved_run(&server, "/delay/5", &b, &[]);
    let (a, b) = (a.display().to_string(), b.display().to_string());
    for (x, y) in [(&a, &b), (&b, &a)] {
        let (code, c) = compare_json(&[x, y, "--fail-if", "p50 < baseline * 1.20"]);
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
