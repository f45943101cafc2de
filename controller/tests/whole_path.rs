//! The whole path with real processes: agent binaries, the controller binary,
//! a real target-server; every count checked against the target's own count.

use volley_testkit::*;

#[test]
fn two_agents_send_exactly_n_requests_and_the_target_agrees() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "2"]);
    let b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/hello", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    let out = Run::new(&url).agents(&[&agents]).requests(5003).connections(7).json_output();
    let r = json_report(&out);
    let served = server.stats().count("/hello", 200);
    assert_eq!(served, 5003, "target-server served");
    assert_eq!(r["total_requests"], 5003);
    assert_eq!(r["successful_requests"], 5003);
    assert_eq!(r["failed_requests"], 0);
    assert_eq!(r["status_codes"]["200"], 5003);
    assert_eq!(r["error_rate"], 0.0);
    let agents = r["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    // Connections split 2:1 by threads (7 -> 5 + 2), requests by connections.
    assert_eq!(agents[0]["connections"], 5);
    assert_eq!(agents[1]["connections"], 2);
    let per_agent: Vec<u64> = agents.iter().map(|a| a["total_requests"].as_u64().unwrap()).collect();
    assert_eq!(per_agent, [3574, 1429]);
    for (row, proc_) in agents.iter().zip([&a, &b]) {
        assert_eq!(row["address"], proc_.addr.as_str());
        assert_eq!(row["state"], "done");
        assert_eq!(row["failed_requests"], 0);
    }
    let l = &r["latency_ms"];
    for k in ["min", "mean", "stdev", "p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(l[k].is_number(), "latency_ms.{k} missing: {l}");
    }
    assert!(l["min"].as_f64() <= l["p50"].as_f64() && l["p50"].as_f64() <= l["p99"].as_f64());
    assert!(l["p99"].as_f64() <= l["max"].as_f64());
    assert!(r["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(r["duration_s"].as_f64().unwrap() > 0.0);
    server.shutdown();
}

#[test]
fn text_report_has_the_required_labels_and_agent_rows() {
    let server = target(1);
    let a = spawn_agent(&["--threads", "1"]);
    let b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/hello", server.local_addr());
    let out = Run::new(&url).agents(&[&a, &b]).requests(300).connections(4).output();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "Total requests:         300",
        "Successful requests:    300",
        "Failed requests:        0",
        "Average response time:  ",
        "Requests per second:",
        "Time taken for tests:",
        "Connections:            4",
        "Time per request:",
        "Transfer rate:",
        "Percentage of the requests served within a certain time (ms)",
        "99.9%",
        "100%",
        "200: 300",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains(&a.addr) && text.contains(&b.addr), "agent rows missing:\n{text}");
    assert_eq!(server.stats().count("/hello", 200), 300);
    server.shutdown();
}

#[test]
fn server_errors_count_as_failures_with_their_status() {
    let server = target(1);
    let a = spawn_agent(&["--threads", "1"]);
    let b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/status/500", server.local_addr());
    let r = Run::new(&url).agents(&[&a, &b]).requests(400).connections(4).json_all_failed();
    assert_eq!(r["total_requests"], 400);
    assert_eq!(r["successful_requests"], 0);
    assert_eq!(r["failed_requests"], 400);
    assert_eq!(r["status_codes"]["500"], 400);
    assert_eq!(r["error_rate"], 1.0);
    assert_eq!(server.stats().count("/status/500", 500), 400);
    server.shutdown();
}

#[test]
fn success_status_narrows_success() {
    let server = target(1);
    let url = format!("http://{}/status/204", server.local_addr());
    let r = Run::new(&url).requests(50).connections(2).args(&["--success-status", "200"]).json_all_failed();
    assert_eq!(r["failed_requests"], 50);
    assert_eq!(r["status_codes"]["204"], 50);
    assert_eq!(server.stats().count("/status/204", 204), 50);
    server.shutdown();
}

#[test]
fn a_refused_target_gives_failed_requests_with_their_class_and_a_report() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a = spawn_agent(&["--threads", "1"]);
    let b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://127.0.0.1:{port}/hello");
    let out = Run::new(&url).agents(&[&a, &b]).requests(100).connections(2).json_output();
    // Nothing succeeded: exit 1, the report still printed, the reason named.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["headline"], "all 100 requests failed: connection refused (is the target running, on that port?)");
    assert_eq!(r["total_requests"], 100);
    assert_eq!(r["failed_requests"], 100);
    assert_eq!(r["errors"]["connect_refused"], 100);
    assert!(r["average_response_time_ms"].is_null());
    assert!(r["latency_ms"]["p50"].is_null());
    let text = Run::new(&url).agents(&[&a, &b]).requests(10).connections(2).output();
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout(&text).contains("connect_refused: 10"), "{}", stdout(&text));
}

#[test]
fn embedded_agent_duration_mode_counts_match_the_target() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let out = Run::new(&url).duration("1s").connections(3).args(&["--threads", "1"]).json_output();
    let r = json_report(&out);
    let total = r["total_requests"].as_u64().unwrap();
    assert!(total > 100, "only {total} requests in a second");
    assert_eq!(server.stats().count("/hello", 200), total, "the target served what the report says");
    let d = r["duration_s"].as_f64().unwrap();
    assert!((0.9..3.0).contains(&d), "duration {d}");
    assert_eq!(r["agents"].as_array().unwrap().len(), 1);
    server.shutdown();
}

#[test]
fn post_bodies_and_headers_reach_the_target() {
    let server = target(1);
    let url = format!("http://{}/echo", server.local_addr());
    let out = Run::new(&url)
        .requests(20)
        .connections(2)
        .args(&["-m", "POST", "-H", "Content-Type: application/json", "-d", r#"{"a":1}"#])
        .json_output();
    let r = json_report(&out);
    assert_eq!(r["successful_requests"], 20);
    assert_eq!(server.stats().count("/echo", 200), 20);
    // Each echo response carries the 7-byte body back.
    assert!(r["bytes_received"].as_u64().unwrap() >= 20 * 7);
    server.shutdown();
}

#[test]
fn demo_runs_two_agents_and_matches_the_target() {
    let out = controller(&["demo", "-n", "2000", "-c", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Total requests:         2000"), "{text}");
    assert!(text.contains("target-server counted 2000 responses to /hello"), "{text}");
    assert_eq!(text.matches("done").count(), 2, "two agent rows:\n{text}");
}
