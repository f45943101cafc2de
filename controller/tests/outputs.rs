//! Report outputs: JSON consistent with the text, the per-second series (JSON
//! and CSV) adding up to the totals, the HdrHistogram interval log parsing
//! back to the same totals, progress lines, and `--fail-if` thresholds with
//! their exit codes.

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use volley_testkit::*;

#[test]
fn json_text_series_csv_and_hdr_log_agree() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let dir = std::env::temp_dir().join(format!("volley-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("run.hlog");
    let log_arg = log.display().to_string();
    let common = ["run", "--url", &url, "-z", "2s", "-c", "2", "--threads", "1", "--rate", "300"];

    let html = dir.join("report.html");
    let html_arg = html.display().to_string();
    let mut args = common.to_vec();
    args.extend_from_slice(&["--output", "json", "--hdr-log", &log_arg, "--html", &html_arg]);
    let out = controller(&args);
    let r = json_report(&out);
    let total = r["total_requests"].as_u64().unwrap();
    assert_eq!(server.stats().count("/hello", 200), total);
    // Progress lines went to stderr, one per completed second.
    assert!(stderr(&out).contains("[   1s]"), "no progress line: {}", stderr(&out));
    let series = r["series"].as_array().unwrap();
    assert!(series.len() >= 2, "{series:?}");
    assert_eq!(series.iter().map(|s| s["requests"].as_u64().unwrap()).sum::<u64>(), total);
    assert_eq!(
        series.iter().map(|s| s["failures"].as_u64().unwrap()).sum::<u64>(),
        r["failed_requests"].as_u64().unwrap()
    );
    // About 300 per full second.
    let first = series[0]["requests"].as_u64().unwrap();
    assert!((270..=330).contains(&first), "first second: {first}");

    // The HTML page is self-contained and its charts have data points.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("http://").count(), page.matches(url.as_str()).count(), "no URL but the target's");
    // The one link is an empty inline icon, which keeps browsers from
    // asking the server for /favicon.ico.
    let page = page.replacen("<link rel=\"icon\" href=\"data:,\">", "", 1);
    assert!(!page.contains("href=") && !page.contains("https://"), "no links");
    assert!(!page.contains("<script") && !page.contains("src="), "nothing to fetch");
    assert!(page.contains(&format!("<dd id=\"total\">{total}</dd>")));
    for name in ["req/s", "p50", "p99"] {
        let at = page.find(&format!("data-name=\"{name}\"")).unwrap_or_else(|| panic!("no {name} line"));
        let points = page[at..].split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(points.split(' ').count() >= 2, "{name} has no data points: {points:?}");
    }
    assert!(page.matches("<rect class=\"bar\"").count() >= 10, "distribution and status bars");

    // The interval log parses back to every response.
    let bytes = std::fs::read(&log).unwrap();
    let mut samples = 0;
    let mut intervals = 0;
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(h) = entry.unwrap() {
            let decoded =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, h.encoded_histogram()).unwrap();
            let hist: hdrhistogram::Histogram<u64> = Deserializer::new().deserialize(&mut decoded.as_slice()).unwrap();
            // Written as the run goes, still one interval per second, in
            // order, each holding that second's responses.
            assert_eq!(h.start_timestamp(), std::time::Duration::from_secs(intervals as u64));
            assert_eq!(h.duration(), std::time::Duration::from_secs(1));
            let second = &series[intervals];
            assert_eq!(hist.len(), second["successes"].as_u64().unwrap(), "second {intervals}");
            assert_eq!(h.max(), second["max_ms"].as_f64().unwrap_or(0.0), "second {intervals}'s max, in ms");
            samples += hist.len();
            intervals += 1;
        }
    }
    assert_eq!(intervals, series.len());
    assert_eq!(samples, total, "the HDR log holds every response");
    assert_eq!(bytes.iter().filter(|&&b| b == b'#').count(), 4, "one header: {}", String::from_utf8_lossy(&bytes));

    // CSV: one row per second, adding up to the totals of its own run.
    let mut args = common.to_vec();
    args.extend_from_slice(&["--output", "csv", "--quiet"]);
    let before = server.stats().count("/hello", 200);
    let out = controller(&args);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "", "--quiet prints no progress");
    let csv = stdout(&out);
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), "second,requests,successes,failures,rps,p50_ms,p90_ms,p99_ms,max_ms");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let sum: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert_eq!(sum, server.stats().count("/hello", 200) - before, "CSV rows add up to what the target served");

    // The text report carries the same totals as the JSON one.
    let mut args = common.to_vec();
    args.extend_from_slice(&["-n", "500", "--quiet"]);
    args.retain(|a| *a != "-z" && *a != "2s");
    let text = stdout(&controller(&args));
    let mut args_json = args.clone();
    args_json.extend_from_slice(&["--output", "json"]);
    let r = json_report(&controller(&args_json));
    assert!(text.contains("Total requests:         500"), "{text}");
    assert_eq!(r["total_requests"], 500);
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown();
}

#[test]
fn thresholds_pass_fail_and_malformed() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let base = ["run", "--url", &url, "-n", "300", "-c", "2", "--quiet"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        controller(&a)
    };
    let ok = with(&["--fail-if", "p99 < 5s", "--fail-if", "error_rate < 1%", "--fail-if", "requests >= 300"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("ok    p99 < 5s"), "{}", stdout(&ok));
    let bad = with(&["--fail-if", "p99 < 5s", "--fail-if", "rps > 100000000", "--output", "json"]);
    assert_eq!(bad.status.code(), Some(3), "a failed threshold exits 3: {}", stderr(&bad));
    let r: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let verdicts = r["thresholds"].as_array().unwrap();
    assert_eq!(verdicts[0]["passed"], true);
    assert_eq!(verdicts[1]["passed"], false);
    assert_eq!(verdicts[1]["expr"], "rps > 100000000");
    let text = with(&["--fail-if", "error_rate > 50%"]);
    assert_eq!(text.status.code(), Some(3));
    assert!(stdout(&text).contains("FAIL  error_rate > 50%"), "{}", stdout(&text));
    for (expr, needle) in [("p99 200ms", "no comparison"), ("p42 < 1ms", "p42"), ("p99 < 200", "unit")] {
        let out = with(&["--fail-if", expr]);
        assert_eq!(out.status.code(), Some(2), "{expr}: {}", stderr(&out));
        assert!(stderr(&out).contains("--fail-if") && stderr(&out).contains(needle), "{}", stderr(&out));
    }
    assert_eq!(server.stats().count("/hello", 200), 900, "malformed thresholds send nothing");
    server.shutdown();
}

#[test]
fn an_hdr_log_that_cannot_be_created_stops_the_run_before_any_load() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let dir = std::env::temp_dir().join(format!("volley-no-such-dir-{}", std::process::id()));
    let log = dir.join("run.hlog").display().to_string();
    let out = controller(&["run", "--url", &url, "-n", "100", "-c", "1", "--quiet", "--hdr-log", &log]);
    // Checked with the other flags, so it is a usage error (exit 2).
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--hdr-log") && stderr(&out).contains(&log), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 0, "nothing sent");
    server.shutdown();
}
