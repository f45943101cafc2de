//! The HTML report and the `controller serve` web page in a real headless
//! browser (Debian's Chromium driven by playwright-core; `tests/browser/`):
//! the charts render with data points, nothing logs an error, and the page's
//! report matches what the target served. Screenshots are left under
//! `target/tmp/browser/`, out of the repository.
//!
//! Without Chromium or `npm ci --prefix controller/tests/browser` the tests
//! say so and pass, unless `VOLLEY_REQUIRE_BROWSER=1` (CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Whether the browser checks can run here; panics when they must but cannot.
fn available() -> bool {
    let missing: Vec<String> = [
        (chromium().exists(), "Chromium (apt-get install chromium)".to_owned()),
        (
            browser_dir().join("node_modules/playwright-core").exists(),
            "playwright-core (npm ci --prefix controller/tests/browser)".to_owned(),
        ),
        (Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()), "node".to_owned()),
    ]
    .into_iter()
    .filter_map(|(ok, what)| (!ok).then_some(what))
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var("VOLLEY_REQUIRE_BROWSER").as_deref() != Ok("1"), "browser checks need {missing:?}");
    eprintln!("skipping the browser checks: missing {missing:?}");
    false
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the driver script and returns what it saw.
fn check(args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(browser_dir().join("check.mjs"))
        .args(args)
        .env("CHROMIUM", chromium())
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the driver failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(seen["failure"].is_null(), "{}", seen["failure"]);
    assert_eq!(seen["consoleErrors"], Value::Array(vec![]), "console errors");
    seen
}

/// The charts' checks that hold on every page: each chart has tick labels
/// on both axes, its lines are told apart by colour, and every line's colour
/// is shown in its legend (nothing overrides them).
fn check_charts(charts: &Value) {
    for c in charts.as_array().unwrap() {
        let names = c["names"].as_array().unwrap();
        // Lines: ticks on both axes; bars: on the value axis.
        let ticks = if names.is_empty() { 3 } else { 6 };
        assert!(c["ticks"].as_u64().unwrap() >= ticks, "fewer than 3 tick labels per axis: {c}");
        let colours = c["colours"].as_array().unwrap();
        assert_eq!(colours.len(), names.len(), "lines share a colour: {c}");
        assert_eq!(
            c["swatches"].as_u64().unwrap() as usize,
            colours.len(),
            "a legend colour differs from its line: {c}"
        );
    }
}

/// The chart with this id.
fn chart<'a>(seen: &'a Value, key: &str, id: &str) -> &'a Value {
    seen[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no chart {id}: {}", seen[key]))
}

fn points(seen: &Value, name: &str) -> u64 {
    seen["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no line {name} in {}", seen["lines"]))["points"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_html_report_renders_its_charts_offline() {
    if !available() {
        return;
    }
    let server = volley_testkit::target(1);
    let dir = artefacts();
    let html = dir.join("report.html");
    let url = format!("http://{}/hello", server.local_addr());
    let out = volley_testkit::Run::new(&url)
        .duration("3s")
        .connections(4)
        .args(&["-q", "400", "--html", html.to_str().unwrap()])
        .quiet()
        .output();
    assert!(out.status.success(), "{}", volley_testkit::stderr(&out));
    let shot = dir.join("report.png");
    let seen = check(&["report", html.to_str().unwrap(), shot.to_str().unwrap()]);
    // Nothing but the file itself is loaded.
    assert_eq!(seen["requests"].as_array().unwrap().len(), 1, "{}", seen["requests"]);
    assert!(seen["charts"].as_array().unwrap().len() >= 4, "{seen}");
    check_charts(&seen["charts"]);
    // Three seconds: three points per line of the charts over time.
    assert!(points(&seen, "req/s") >= 3, "{}", seen["lines"]);
    assert!(points(&seen, "p99") >= 3, "{}", seen["lines"]);
    // Hover values: one band per second naming each line's value.
    let rate = chart(&seen, "charts", "rate-chart");
    let titles = rate["titles"].as_array().unwrap();
    assert!(titles.len() >= 3 && titles[0].as_str().unwrap().starts_with("second 0: req/s: "), "{rate}");
    // The distribution and status charts write their values.
    let status = chart(&seen, "charts", "status-chart");
    let served = server.stats().count("/hello", 200);
    assert!(status["titles"].as_array().unwrap().iter().any(|t| *t == format!("200: {served} requests")), "{status}");
    assert!(seen["text"].as_str().unwrap().contains(&served.to_string()), "the page does not show {served}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "empty screenshot");
    server.shutdown();
}

#[test]
fn a_half_second_run_is_drawn() {
    if !available() {
        return;
    }
    let server = volley_testkit::target(1);
    let dir = artefacts();
    let html = dir.join("short.html");
    let url = format!("http://{}/hello", server.local_addr());
    let out = volley_testkit::Run::new(&url)
        .duration("500ms")
        .connections(2)
        .args(&["--html", html.to_str().unwrap()])
        .quiet()
        .output();
    assert!(out.status.success(), "{}", volley_testkit::stderr(&out));
    let seen = check(&["report", html.to_str().unwrap(), dir.join("short.png").to_str().unwrap()]);
    assert_eq!(seen["requests"].as_array().unwrap().len(), 1, "{}", seen["requests"]);
    check_charts(&seen["charts"]);
    assert!(points(&seen, "req/s") >= 1, "{}", seen["lines"]);
    assert!(points(&seen, "p50") >= 1, "{}", seen["lines"]);
    // A lone point is a dot, not an invisible line.
    assert!(chart(&seen, "charts", "rate-chart")["dots"].as_u64().unwrap() >= 1, "{}", seen["charts"]);
    let served = server.stats().count("/hello", 200);
    assert!(seen["text"].as_str().unwrap().contains(&served.to_string()), "the page does not show {served}");
    server.shutdown();
}

#[test]
fn the_web_page_starts_a_run_and_charts_it_live() {
    if !available() {
        return;
    }
    let server = volley_testkit::target(1);
    let api = volley_testkit::spawn_serve(&[]);
    let url = format!("http://{}/delay/2", server.local_addr());
    let shot = artefacts().join("page.png");
    let seen = check(&["page", &format!("http://{}", api.addr), &url, "4", shot.to_str().unwrap()]);
    assert_eq!(seen["state"], "done", "{seen}");
    let field = &seen["urlField"];
    assert_eq!(field["value"], "", "{field}");
    assert!(field["placeholder"].as_str().unwrap().starts_with("for example "), "{field}");
    assert_eq!(field["style"], "italic", "{field}");
    // The chart had points while the run was still going.
    let live = seen["live"].as_array().unwrap();
    assert!(live.iter().any(|s| s["state"] == "running" && s["points"].as_u64().unwrap() >= 1), "{live:?}");
    assert!(points(&seen, "req/s") >= 4, "{}", seen["lines"]);
    check_charts(&seen["liveCharts"]);
    // The run's own address survives a reload mid-run, and the list links it.
    let run_url = seen["runUrl"].as_str().unwrap();
    assert_eq!(seen["reloaded"]["url"], run_url, "{seen}");
    assert_eq!(seen["reloaded"]["sameId"], true, "{seen}");
    let id = run_url.rsplit('/').next().unwrap();
    assert_eq!(seen["runList"], serde_json::json!([format!("/runs/{id}")]), "{seen}");
    assert!(points(&seen, "p50") >= 4, "{}", seen["lines"]);
    let served = server.stats().count("/delay/2", 200);
    assert!(served > 0);
    assert_eq!(seen["summary"]["Total requests"], served.to_string(), "{}", seen["summary"]);
    assert_eq!(seen["summary"]["Failed requests"], "0");
    assert!(seen["fullReportCharts"].as_u64().unwrap() >= 3, "{seen}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "empty screenshot");
    server.shutdown();
}

#[test]
fn a_scenario_report_shows_its_per_name_table() {
    if !available() {
        return;
    }
    let server = volley_testkit::target(1);
    let dir = artefacts();
    let html = dir.join("scenario.html");
    let example = volley_testkit::example_scenario();
    let out = volley_testkit::Run::new(format!("http://{}", server.local_addr()))
        .scenario(&example)
        .users(8)
        .duration("2s")
        .args(&["--html", html.to_str().unwrap()])
        .quiet()
        .output();
    assert!(out.status.success(), "{}", volley_testkit::stderr(&out));
    let seen = check(&["report", html.to_str().unwrap(), dir.join("scenario.png").to_str().unwrap()]);
    let rows = seen["names"].as_array().unwrap();
    let stats = server.stats();
    for (name, method, path, status) in [
        ("login", "POST", "/login", 200),
        ("list items", "GET", "/items", 200),
        ("unauthorized items", "GET", "/items", 401),
    ] {
        let served = stats.count_method(method, path, status);
        // A name a short run never picked has no row, and the target saw none.
        let Some(row) = rows.iter().find(|r| r[1] == name) else {
            assert_eq!(served, 0, "no row {name} but the target served {served}: {rows:?}");
            continue;
        };
        assert_eq!(row[0], method);
        assert_eq!(row[2], served.to_string(), "{name}: {row:?}");
    }
    let unauthorized = stats.count_method("GET", "/items", 401);
    let text = seen["text"].as_str().unwrap();
    assert_eq!(text.contains("status 401 not in [200]"), unauthorized > 0, "failure message shown iff any");
    server.shutdown();
}

#[test]
fn the_web_page_runs_a_scenario() {
    if !available() {
        return;
    }
    let server = volley_testkit::target(1);
    let api = volley_testkit::spawn_serve(&[]);
    let example = volley_testkit::example_scenario();
    let shot = artefacts().join("page-scenario.png");
    let seen = check(&[
        "page",
        &format!("http://{}", api.addr),
        &format!("http://{}", server.local_addr()),
        "3",
        shot.to_str().unwrap(),
        &example,
    ]);
    assert_eq!(seen["state"], "done", "{seen}");
    let stats = server.stats();
    assert_eq!(seen["summary"]["Total requests"], stats.total.to_string(), "{}", seen["summary"]);
    let rows = seen["names"].as_array().unwrap();
    let login = rows.iter().find(|r| r[1] == "login").unwrap_or_else(|| panic!("no login row: {rows:?}"));
    assert_eq!(login[2], stats.count_method("POST", "/login", 200).to_string());
    // The one browser user picks it 1 time in 4: a short run may not have
    // picked it at all, and then the target saw none either.
    let (requests, failures) =
        rows.iter().find(|r| r[1] == "unauthorized items").map_or(("0".to_owned(), "0".to_owned()), |r| {
            (r[2].as_str().unwrap().to_owned(), r[3].as_str().unwrap().to_owned())
        });
    assert_eq!(requests, stats.count_method("GET", "/items", 401).to_string());
    assert_eq!(failures, requests, "every unauthorized request failed");
    server.shutdown();
}

#[test]
fn the_comparison_page_overlays_two_distinct_curves() {
    if !available() {
        return;
    }
    let server = volley_testkit::target(1);
    let dir = artefacts();
    let save = |path: &str, file: &str| {
        let url = format!("http://{}{path}", server.local_addr());
        let out =
            volley_testkit::Run::new(&url).duration("3s").connections(4).args(&["--output", "json"]).quiet().output();
        assert!(out.status.success(), "{}", volley_testkit::stderr(&out));
        let file = dir.join(file);
        std::fs::write(&file, &out.stdout).unwrap();
        file.display().to_string()
    };
    let (five, ten) = (save("/delay/5", "five.json"), save("/delay/10", "ten.json"));
    let html = dir.join("comparison.html").display().to_string();
    let out = volley_testkit::controller(&["compare", &five, &ten, "--html", &html]);
    assert!(out.status.success(), "{}", volley_testkit::stderr(&out));
    let shot = dir.join("comparison.png");
    let seen = check(&["compare", &html, shot.to_str().unwrap()]);
    // Nothing but the file itself is loaded.
    assert_eq!(seen["requests"].as_array().unwrap().len(), 1, "{}", seen["requests"]);
    assert!(seen["verdict"].as_str().unwrap().contains("slower"), "{seen}");
    let curves = seen["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2, "{seen}");
    assert_eq!((curves[0]["name"].as_str(), curves[1]["name"].as_str()), (Some("baseline"), Some("candidate")));
    assert_ne!(curves[0]["colour"], curves[1]["colour"], "{seen}");
    for c in curves {
        assert!(c["points"].as_u64().unwrap() >= 50, "{c}");
        assert!(c["width"].as_f64().unwrap() > 100.0, "{c}");
    }
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "empty screenshot");
    server.shutdown();
}
