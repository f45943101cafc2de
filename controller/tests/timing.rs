//! Time, true at every length: a run's duration is the span from its first
//! request to its last answer (checked against the target's own first and
//! last request instants), and `-z` ends on time in both models, counting what
//! the schedule could not send as `missed` and what was still in flight after
//! the grace as `cancelled_in_flight`.

use std::time::{Duration, Instant};

use volley_testkit::*;

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_short_count_run_reports_the_span_the_target_saw() {
    let server = target(2);
    let url = format!("http://{}/hello", server.local_addr());
    let r = Run::new(&url).requests(5000).connections(10).json();
    let stats = server.stats();
    assert_eq!(r["total_requests"], 5000);
    assert_eq!(stats.count("/hello", 200), 5000);
    let (first, last) = (stats.first_request_unix_us.unwrap(), stats.last_request_unix_us.unwrap());
    let target_span = (last - first) as f64 / 1e6;
    let reported = num(&r["duration_s"]);
    assert!(
        (reported - target_span).abs() <= 0.2 * target_span,
        "reported {reported:.4} s, the target saw requests over {target_span:.4} s"
    );
    let rps = num(&r["requests_per_second"]);
    assert!((rps - 5000.0 / reported).abs() < 1.0, "rate {rps} is not 5000 over {reported} s");
    server.shutdown();
}

#[test]
fn the_open_model_ends_on_time_and_counts_what_it_missed() {
    let server = target(2);
    // Five connections of 50 ms requests hold at most 100 per second: far
    // below the 500 asked. Sending the backlog late would take 10 s.
    let url = format!("http://{}/delay/50", server.local_addr());
    let t0 = Instant::now();
    let out = Run::new(&url).connections(5).args(&["-q", "500", "-z", "2s", "--fail-if", "missed < 1%"]).json_output();
    let wall = t0.elapsed();
    assert_eq!(out.status.code(), Some(3), "the threshold on missed requests fails: {}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(wall < Duration::from_secs(5), "the run took {wall:?}: 2 s, a grace of at most 1 s, and the start");
    let duration = num(&r["duration_s"]);
    assert!(duration <= 3.0, "duration {duration} s");
    let (sent, missed) = (r["total_requests"].as_u64().unwrap(), r["missed"].as_u64().unwrap());
    assert_eq!(r["cancelled_in_flight"], 0, "50 ms requests end within the grace");
    assert_eq!(sent, server.stats().count("/delay/50", 200));
    assert!(missed > 0 && sent > 0, "sent {sent}, missed {missed}");
    let asked = 500.0 * 2.0;
    assert!(((sent + missed) as f64 - asked).abs() <= 0.01 * asked, "sent {sent} + missed {missed} vs {asked}");
    assert_eq!(r["thresholds"][0]["passed"], false, "{}", r["thresholds"]);
    server.shutdown();
}

#[test]
fn a_rate_the_connections_hold_misses_nothing() {
    let server = target(2);
    let url = format!("http://{}/hello", server.local_addr());
    let r = Run::new(&url).connections(10).args(&["-q", "200", "-z", "2s", "--fail-if", "missed < 1%"]).json();
    assert_eq!(r["missed"], 0);
    let sent = r["total_requests"].as_u64().unwrap();
    assert_eq!(sent, server.stats().count("/hello", 200));
    assert!((sent as f64 - 400.0).abs() <= 4.0, "sent {sent} of 400");
    assert_eq!(r["thresholds"][0]["passed"], true, "{}", r["thresholds"]);
    server.shutdown();
}

#[test]
fn requests_in_flight_at_the_end_are_cancelled_after_the_grace() {
    let server = target(2);
    // Each connection's first request takes 5 s; the run ends at 1 s and
    // gives them a grace of 1 s (less than the 10 s timeout).
    let url = format!("http://{}/delay/5000", server.local_addr());
    let t0 = Instant::now();
    let r = Run::new(&url).connections(2).args(&["-z", "1s", "--timeout", "10s"]).json();
    let wall = t0.elapsed();
    assert!(wall < Duration::from_millis(4500), "the run took {wall:?}, not about 2 s");
    assert_eq!(r["total_requests"], 0);
    assert_eq!(r["failed_requests"], 0);
    assert_eq!(r["cancelled_in_flight"], 2);
    server.shutdown();
}
