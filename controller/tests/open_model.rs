//! The open model: a fixed send schedule, latency from the intended send time
//! (coordinated omission corrected) next to latency from the actual send, and
//! the achieved rate checked at the target.
//!
//! The stall experiment: at R requests per second for T seconds, the target
//! stops answering once for P seconds (`GET /stall/<ms>`). The R·P requests
//! scheduled during the stall wait until it ends, the one due at its start for
//! P and the last for about nothing, so their corrected latencies spread
//! evenly over (0, P]. They are P/T of all requests (10 % here), so the
//! corrected p99 is the top tenth of that spread, about 0.9·P, and p95 the top
//! half, about 0.5·P. Only the few requests already sent when the stall began
//! (at most one per connection) see the stall from their actual send, so the
//! uncorrected p99 stays at normal latency.

use std::time::Duration;

use volley_testkit::*;

const RATE: u64 = 1000;
const SECS: u64 = 4;
const STALL_MS: u64 = 400;

/// Starts the stall after `after`, from a thread, with a plain HTTP request.
fn stall_later(addr: std::net::SocketAddr, after: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        // Timing the experiment, not waiting for readiness: the stall must
        // fall inside the run, well after its start.
        std::thread::sleep(after);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /stall/{STALL_MS} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    })
}

fn ms(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn check_stall_report(r: &serde_json::Value, served: u64) {
    let total = r["total_requests"].as_u64().unwrap();
    let expected = RATE * SECS;
    assert_eq!(served, total, "the target served what the report says");
    assert_eq!(r["successful_requests"].as_u64().unwrap(), total);
    let off = (total as f64 - expected as f64).abs() / expected as f64;
    assert!(off <= 0.01, "sent {total}, scheduled {expected}");
    let p = STALL_MS as f64;
    let corrected = &r["latency_ms"];
    let (p99, p95) = (ms(&corrected["p99"]), ms(&corrected["p95"]));
    assert!((0.8 * p..=1.0 * p).contains(&p99), "corrected p99 {p99} ms, analytic {} ms", 0.9 * p);
    assert!((0.4 * p..=0.6 * p).contains(&p95), "corrected p95 {p95} ms, analytic {} ms", 0.5 * p);
    assert!(ms(&corrected["max"]) >= 0.9 * p);
    let uncorrected = &r["latency_uncorrected_ms"];
    let u99 = ms(&uncorrected["p99"]);
    assert!(u99 < 0.1 * p, "uncorrected p99 {u99} ms should stay near normal latency");
    assert!(ms(&uncorrected["max"]) >= 0.5 * p, "the requests in flight saw the stall");
    let rate = &r["rate"];
    assert_eq!(rate["requested"].as_f64().unwrap(), RATE as f64);
    assert!(ms(&rate["max_schedule_lag_ms"]) >= 0.5 * p, "the stall delayed sends: {rate}");
    assert!(rate.get("warning").is_none(), "no shortfall expected: {rate}");
}

#[test]
fn a_stall_shows_in_corrected_latency_on_one_agent() {
    let server = target(2);
    let url = format!("http://{}/hello", server.local_addr());
    let stall = stall_later(server.local_addr(), Duration::from_millis(1500));
    let (rate, secs) = (RATE.to_string(), format!("{SECS}s"));
    let out = Run::new(&url).connections(20).args(&["--rate", &rate, "-z", &secs, "--threads", "1"]).json_output();
    stall.join().unwrap();
    let r = json_report(&out);
    check_stall_report(&r, server.stats().count("/hello", 200));
    server.shutdown();
}

#[test]
fn a_stall_shows_the_same_across_two_agents() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/hello", server.local_addr());
    let stall = stall_later(server.local_addr(), Duration::from_millis(1500));
    let (rate, secs, agents) = (RATE.to_string(), format!("{SECS}s"), format!("{},{}", a.addr, b.addr));
    let out = Run::new(&url).agents(&[&agents]).connections(20).args(&["--rate", &rate, "-z", &secs]).json_output();
    stall.join().unwrap();
    let r = json_report(&out);
    check_stall_report(&r, server.stats().count("/hello", 200));
    let rows = r["agents"].as_array().unwrap();
    for row in rows {
        assert_eq!(row["rate"].as_f64().unwrap(), RATE as f64 / 2.0);
        let skew = row["start_skew_ms"].as_f64().unwrap();
        assert!(skew.abs() < 50.0, "agent began {skew} ms off the common start");
    }
    server.shutdown();
}

#[test]
fn count_mode_at_a_rate_takes_the_scheduled_time() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let out = Run::new(&url).rate(500).requests(600).connections(4).json_output();
    let r = json_report(&out);
    assert_eq!(r["total_requests"], 600);
    assert_eq!(server.stats().count("/hello", 200), 600);
    // 600 requests at 500/s: the last is due at 1.198 s.
    let d = r["duration_s"].as_f64().unwrap();
    assert!((1.19..1.6).contains(&d), "took {d} s");
    let achieved = r["rate"]["achieved"].as_f64().unwrap();
    assert!((achieved - 500.0).abs() / 500.0 < 0.02, "achieved {achieved}");
    server.shutdown();
}

#[test]
fn a_ramp_up_sends_half_its_share() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let out = Run::new(&url)
        .rate(1000)
        .duration("2s")
        .connections(8)
        .args(&["--ramp-up", "1s", "--threads", "1"])
        .json_output();
    let r = json_report(&out);
    // Scheduled: 1000/s · (2 s − 1 s / 2) = 1500.
    let total = r["total_requests"].as_u64().unwrap();
    assert!((1485..=1515).contains(&total), "sent {total}, scheduled 1500");
    assert_eq!(server.stats().count("/hello", 200), total);
    assert_eq!(r["ramp_up_s"], 1.0);
    assert!(r["rate"].get("warning").is_none(), "{}", r["rate"]);
    server.shutdown();
}

#[test]
fn too_few_connections_for_the_rate_are_reported() {
    let server = target(1);
    // One connection to a 20 ms endpoint carries at most 50 requests per second.
    let url = format!("http://{}/delay/20", server.local_addr());
    let out = Run::new(&url).rate(200).duration("1s").connections(1).json_output();
    let r = json_report(&out);
    let rate = &r["rate"];
    assert!(rate["shortfall_percent"].as_f64().unwrap() > 50.0, "{rate}");
    assert!(rate["warning"].as_str().unwrap().contains("fell behind"), "{rate}");
    let text = Run::new(&url).rate(200).duration("1s").connections(1).output();
    assert!(stdout(&text).contains("WARNING: the generator fell behind"), "{}", stdout(&text));
    server.shutdown();
}

#[test]
fn bad_rates_are_usage_errors() {
    for (args, needle) in [
        (&["--rate", "0"][..], "-q/--rate"),
        (&["--rate", "-5"][..], "-5"),
        (&["--rate", "NaN"][..], "-q/--rate"),
        (&["--rate", "fast"][..], "--rate"),
        (&["--ramp-up", "5s"][..], "--ramp-up"),
    ] {
        let mut all = vec!["run", "--url", "http://127.0.0.1:9/", "-z", "2s"];
        all.extend_from_slice(args);
        let out = controller(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{all:?}: {}", stderr(&out));
    }
}
