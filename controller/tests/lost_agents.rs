//! Runs that survive lost agents, and agents that stop when their controller
//! is gone: real processes, killed and frozen with signals.

use std::time::{Duration, Instant};

use volley_testkit::*;

#[test]
fn a_killed_agent_in_count_mode_loses_nothing_and_its_share_moves() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let mut b = spawn_agent(&["--threads", "1"]);
    // About 2,000 requests per second in all: 8 connections to a 2 ms endpoint.
    let url = format!("http://{}/delay/2", server.local_addr());
    let n = 12_000u64;
    let agents = format!("{},{}", a.addr, b.addr);
    let ctl = Run::new(&url).agents(&[&agents]).connections(8).requests(n).with_json_report().spawn();
    served_at_least(&server, "/delay/2", 3000);
    let killed_at = Instant::now();
    signal(b.child.id(), "KILL");
    let _ = b.child.wait();
    let (status, out, lines) = ctl.finish();
    assert!(status.success(), "controller failed: {status:?} {lines:?}");
    let (noticed, line) = lines.iter().find(|(_, l)| l.contains(" lost: ")).expect("the loss was reported on stderr");
    let detection = noticed.duration_since(killed_at);
    eprintln!("detected after {detection:?}: {line}");
    assert!(detection < Duration::from_secs(3), "detected after {detection:?}");
    assert!(line.contains(&b.addr), "{line}");

    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["total_requests"], n, "the report accounts for exactly n");
    let unaccounted = r["unaccounted_max"].as_u64().expect("an unaccounted bound");
    let served = server.stats().count("/delay/2", 200);
    eprintln!("n {n}, served {served}, unaccounted bound {unaccounted}");
    assert!(served >= n && served <= n + unaccounted, "served {served}, n {n}, bound {unaccounted}");
    let lost = agent_row(&r, &b.addr);
    assert_eq!(lost["state"], "lost");
    assert!(lost["reassigned"].as_u64().unwrap() > 0, "{lost}");
    let survivor = agent_row(&r, &a.addr);
    assert_eq!(survivor["state"], "done");
    assert_eq!(
        survivor["total_requests"].as_u64().unwrap() + lost["total_requests"].as_u64().unwrap(),
        n,
        "the survivor sent the lost agent's unfinished share"
    );
    server.shutdown();
}

#[test]
fn survivors_take_over_connections_in_duration_mode() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let mut b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/delay/2", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    let ctl = Run::new(&url).agents(&[&agents]).duration("4s").connections(6).with_json_report().spawn();
    served_at_least(&server, "/delay/2", 500);
    signal(b.child.id(), "KILL");
    let _ = b.child.wait();
    let (status, out, _) = ctl.finish();
    assert!(status.success());
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(agent_row(&r, &a.addr)["connections"], 6, "the survivor took over the lost agent's 3 connections");
    assert_eq!(agent_row(&r, &b.addr)["state"], "lost");
    // Everything reported was served (the lost agent may have sent a few unseen).
    let served = server.stats().count("/delay/2", 200);
    assert!(served >= r["total_requests"].as_u64().unwrap());
    server.shutdown();
}

#[test]
fn agents_stop_on_their_own_when_the_controller_dies_or_freezes() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/hello", server.local_addr());
    for sig in ["KILL", "STOP"] {
        let mut ctl = Run::new(&url).agents(&[&a]).duration("60s").connections(2).spawn();
        let before = server.stats().count("/hello", 200);
        served_at_least(&server, "/hello", before + 1000);
        let t0 = Instant::now();
        // KILL: the agent's stream breaks at once. STOP: the controller's
        // sockets stay open but it renews nothing, so the lease runs out.
        signal(ctl.child.id(), sig);
        let mut last = server.stats().count("/hello", 200);
        let stopped = within(Duration::from_secs(8), || {
            std::thread::sleep(Duration::from_millis(300));
            let now = server.stats().count("/hello", 200);
            let quiet = now == last;
            last = now;
            quiet
        })
        .map(|_| t0.elapsed());
        let stopped = stopped.unwrap_or_else(|| panic!("after SIG{sig} the agent kept sending"));
        eprintln!("after SIG{sig} of the controller the load stopped within {stopped:?}");
        assert!(stopped < Duration::from_secs(5), "SIG{sig}: stopped after {stopped:?}");
        let _ = ctl.child.kill();
        let _ = ctl.child.wait();
        // And the agent is ready for the next run.
        let ready = within(Duration::from_secs(5), || {
            let out = Run::new(&url).agents(&[&a]).requests(100).connections(2).json_output();
            out.status.success()
        });
        assert!(ready.is_some(), "the agent did not take a new run after SIG{sig}");
    }
    server.shutdown();
}

#[test]
fn min_agents_lets_a_run_go_on_without_unreachable_agents() {
    let server = target(1);
    let a = spawn_agent(&["--threads", "1"]);
    let dead =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let url = format!("http://{}/hello", server.local_addr());
    let agents = format!("{},{dead}", a.addr);
    let out = Run::new(&url).agents(&[&agents]).requests(500).connections(2).args(&["--min-agents", "1"]).json_output();
    assert!(stderr(&out).contains(&dead), "the unreachable agent is named: {}", stderr(&out));
    let r = json_report(&out);
    assert_eq!(r["total_requests"], 500);
    assert_eq!(server.stats().count("/hello", 200), 500);
    assert_eq!(agent_row(&r, &dead)["state"], "unreachable");
    let out = Run::new(&url).agents(&[&agents]).requests(5).args(&["--min-agents", "3"]).output();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    server.shutdown();
}
