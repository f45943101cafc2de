//! The first ten minutes of a newcomer: the URL where ab and hey put it,
//! helpful usage errors, a run where everything failed saying so and why,
//! a closed pipe, Ctrl-C, output files checked before any load, progress
//! without escape codes off a terminal, and the JSON report against its
//! published schema. Real binaries against real targets on loopback.

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;

use volley_testkit::*;

/// An address nothing listens on: bound, then released.
fn dead_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

#[test]
fn the_url_may_come_first_as_in_ab_and_hey() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let out = controller(&["run", &url, "-n", "10", "-c", "2", "--quiet", "--output", "json"]);
    let r = json_report(&out);
    assert_eq!(r["total_requests"], 10);
    assert_eq!(server.stats().count("/hello", 200), 10);
    // Both spellings at once is a usage error, not a guess.
    let both = controller(&["run", &url, "--url", &url, "-n", "1"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    server.shutdown();
}

#[test]
fn usage_errors_suggest_and_hint() {
    let out = controller(&["run", "http://127.0.0.1:1/", "-n", "1", "--connection", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--connections"), "{}", stderr(&out));
    for url in ["127.0.0.1:8080/hello", "localhost:8080/hello", "example.com"] {
        let out = controller(&["run", url, "-n", "1"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = stderr(&out);
        assert!(err.contains(&format!("has no scheme; use http://{url}")), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn a_run_where_every_request_failed_says_why_and_fails() {
    let url = format!("http://{}/hello", dead_port());
    let out = controller(&["run", &url, "-n", "20", "-c", "2", "--quiet", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["failed_requests"], 20);
    assert_eq!(r["passed"], false);
    let headline = r["headline"].as_str().unwrap();
    assert!(headline.starts_with("all 20 requests failed: connection refused"), "{headline}");
    assert!(stderr(&out).contains(headline), "JSON users see it on stderr too: {}", stderr(&out));

    let text = controller(&["run", &url, "-n", "4", "-c", "1", "--quiet"]);
    assert_eq!(text.status.code(), Some(1));
    let second_line = stdout(&text).lines().nth(1).unwrap_or_default().to_owned();
    assert!(second_line.starts_with("FAILED: all 4 requests failed: connection refused"), "{}", stdout(&text));

    // Thresholds, when given, decide.
    let judged = controller(&["run", &url, "-n", "4", "-c", "1", "--quiet", "--fail-if", "failures < 100"]);
    assert_eq!(judged.status.code(), Some(0), "{}", stdout(&judged));
}

#[test]
fn a_dead_target_is_not_hammered_with_connects() {
    let url = format!("http://{}/hello", dead_port());
    let r = json_report_any(&controller(&["run", &url, "-z", "1s", "-c", "2", "--quiet", "--output", "json"]));
    let failed = r["failed_requests"].as_u64().unwrap();
    // Two connections backing off up to 50 ms each: well under a thousand
    // attempts in a second (without backoff: tens of thousands).
    assert!((2..1000).contains(&failed), "{failed} connect attempts in 1 s");
    assert_eq!(r["errors"]["connect_refused"], failed);
}

/// The report of a run that may have failed.
fn json_report_any(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

#[test]
fn a_closed_pipe_is_no_panic() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let mut child = std::process::Command::new(controller_bin())
        .args(["run", &url, "-n", "50", "-c", "2", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the report is written (`| head -0`).
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    server.shutdown();
}

#[test]
fn ctrl_c_prints_the_partial_report_and_exits_130() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let ctl = Run::new(&url).duration("60s").connections(2).arg("--threads").arg("1").spawn();
    served_at_least(&server, "/hello", 100);
    signal(ctl.child.id(), "INT");
    let (status, out, lines) = ctl.finish();
    assert_eq!(status.code(), Some(130), "{lines:?}");
    assert!(out.contains("cancelled before the end"), "{out}");
    assert!(lines.iter().any(|(_, l)| l.starts_with("controller: interrupted")), "{lines:?}");
    let total: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Total requests:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a total in the partial report");
    assert_eq!(total, server.stats().count("/hello", 200));
    server.shutdown();
}

#[test]
fn unwritable_output_files_are_refused_before_any_load() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let missing = std::env::temp_dir().join(format!("volley-no-such-dir-{}", std::process::id()));
    let html = missing.join("report.html").display().to_string();
    for flag in ["--html", "--hdr-log"] {
        for dry in [false, true] {
            let mut args = vec!["run", &url, "-n", "5", "--quiet", flag, &html];
            if dry {
                args.push("--dry-run");
            }
            let out = controller(&args);
            assert_eq!(out.status.code(), Some(2), "{flag} dry={dry}: {}", stderr(&out));
            assert!(stderr(&out).contains(&format!("{flag}: cannot write {html}")), "{}", stderr(&out));
        }
    }
    assert_eq!(server.stats().count("/hello", 200), 0, "no load was sent");
    assert!(!missing.exists());
    server.shutdown();
}

#[test]
fn progress_off_a_terminal_has_no_escape_codes() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let out = controller(&["run", &url, "-z", "2s", "-c", "2", "--threads", "1", "--rate", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("[   1s]"), "{err}");
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    server.shutdown();
}

/// Validates `report` against `controller/report.schema.json`.
fn assert_valid(report: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../report.schema.json")).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema is a JSON Schema");
    let errors: Vec<String> =
        validator.iter_errors(report).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{report:#}");
}

#[test]
fn reports_validate_against_the_published_schema() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let plain = Run::new(&url).requests(40).connections(2).json();
    assert_eq!(plain["schema_version"], 1);
    assert_eq!(plain["settings"]["requests"], 40);
    assert!(plain["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(plain["passed"], true);
    assert_valid(&plain);

    let judged = Run::new(&url)
        .connections(2)
        .args(&["--stage", "0s:100/s", "--stage", "1s:100/s"])
        .args(&["--fail-if", "p99 < 10s", "--fail-if", "error_rate < 1% @ stage 2"])
        .json();
    assert_eq!(judged["stages"]["stages"][1]["seconds"], 1);
    assert_eq!(judged["thresholds"][0]["unit"], "ms");
    assert_eq!(judged["thresholds"][1]["unit"], "fraction");
    assert!(judged["rate"]["shortfall_percent"].as_f64().unwrap() >= 0.0);
    assert_valid(&judged);

    let base = format!("http://{}", server.local_addr());
    let scenario = Run::new(&base).scenario(example_scenario()).users(2).requests(20).json();
    assert_eq!(scenario["method"], serde_json::Value::Null);
    assert_eq!(scenario["connections_opened"], serde_json::Value::Null);
    assert_valid(&scenario);

    let failed = json_report_any(&controller(&[
        "run",
        &format!("http://{}/", dead_port()),
        "-n",
        "3",
        "-c",
        "1",
        "--quiet",
        "--output",
        "json",
    ]));
    assert_valid(&failed);
    server.shutdown();
}

#[test]
fn a_report_with_a_lost_agent_validates() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let mut b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/delay/2", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    let ctl = Run::new(&url).agents(&[&agents]).duration("3s").connections(4).with_json_report().spawn();
    served_at_least(&server, "/delay/2", 200);
    signal(b.child.id(), "KILL");
    let _ = b.child.wait();
    let (status, out, lines) = ctl.finish();
    assert!(status.success(), "{lines:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(agent_row(&r, &b.addr)["state"], "lost");
    assert_valid(&r);
    server.shutdown();
}

/// Runs `tmux` with `args`; its stdout.
fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux").args(args).output().expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_live_line_fits_an_80_column_terminal() {
    if std::process::Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIP: tmux is not installed (.ci/run installs it)");
        return;
    }
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let session = format!("volley-live-{}", std::process::id());
    let script = format!(
        "{} run {url} -z 3s -c 2 --threads 1 --rate 300 > /dev/null; echo EXIT=$?; sleep 60",
        controller_bin().display()
    );
    tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", "sh", "-c", &script]);
    let mut seen = Vec::new();
    let ended = volley_testkit::wait::within(std::time::Duration::from_secs(30), || {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]);
        let done = screen.contains("EXIT=");
        seen.push(screen);
        done
    });
    tmux(&["kill-session", "-t", &session]);
    assert!(ended.is_some(), "the run never ended: {seen:#?}");
    let last = seen.last().unwrap();
    assert!(last.contains("EXIT=0"), "{last}");
    assert!(seen.iter().any(|s| s.contains("ETA") && s.contains("/3s")), "no live line: {seen:#?}");
    // Every row is the bar, the figures or the exit line, each once, and
    // narrower than the terminal: a wrapped line would leave a fragment row,
    // a line not redrawn in place a second copy.
    for screen in &seen {
        let rows: Vec<&str> = screen.lines().map(str::trim_end).filter(|r| !r.is_empty()).collect();
        let bars = rows.iter().filter(|r| r.contains("] ") && r.contains("% ETA")).count();
        let figures = rows.iter().filter(|r| r.contains(" req/s, ") || **r == "starting").count();
        let exits = rows.iter().filter(|r| r.starts_with("EXIT=")).count();
        assert!(bars <= 1 && figures <= 1 && bars + figures + exits == rows.len(), "{rows:#?}");
        assert!(rows.iter().all(|r| r.chars().count() < 80), "{rows:#?}");
    }
    server.shutdown();
}
