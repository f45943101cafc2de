//! Wide runs (issue #19): many connections from one agent. The open-file
//! limit is checked before any load goes out.

use std::process::{Command, Stdio};

use volley_testkit::*;

/// `controller run` with its embedded agent, under an open-file limit of
/// 256: 250 connections (plus the agent's spare descriptors) do not fit, so
/// the run is refused up front with one line naming the limit, and the
/// target sees nothing. 100 connections fit and run exactly.
#[test]
fn the_embedded_agent_refuses_a_plan_beyond_the_open_file_limit() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let run = |connections: u32| {
        let run = Run::new(&url).requests(300).connections(connections).quiet();
        Command::new("prlimit")
            .arg("--nofile=256:256")
            .arg(controller_bin())
            .args(run.argv())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run prlimit controller")
    };
    let out = run(250);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("250 connections need about 314 open files"), "{text}");
    assert!(text.contains("open-file limit (RLIMIT_NOFILE) is 256"), "{text}");
    assert_eq!(server.stats().total, 0, "the refused run sent nothing");

    let out = run(100);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 300);
}

/// `--source-addr`: connections bind round-robin to the listed addresses,
/// one round-robin over the whole run (two agents: the second continues
/// where the first's connections end), so the target sees exactly 3 + 3
/// connections from 127.0.0.2 and 127.0.0.3, and counts every request.
#[test]
fn source_addresses_spread_connections_round_robin() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    // Each agent has 3 connections: alone, each would make 2 + 1.
    let (a, b) = (spawn_agent(&["--threads", "2"]), spawn_agent(&["--threads", "1"]));
    let report = Run::new(&url)
        .agents(&[&a, &b])
        .duration("1s")
        .connections(6)
        .args(&["--threads", "1", "--source-addr", "127.0.0.2-127.0.0.3"])
        .json();
    let stats = server.stats();
    assert_eq!(stats.connections_from("127.0.0.2"), 3, "{:?}", stats.connections_by_peer);
    assert_eq!(stats.connections_from("127.0.0.3"), 3, "{:?}", stats.connections_by_peer);
    assert_eq!(report["connections_opened"], 6);
    assert_eq!(report["total_requests"], stats.count("/hello", 200), "{report}");

    // The embedded agent too, with a CIDR: 127.0.0.4/30 holds .5 and .6.
    let server = target(2);
    let url = format!("http://{}/hello", server.local_addr());
    let report = Run::new(&url).requests(500).connections(5).args(&["--source-addr", "127.0.0.4/30"]).json();
    let stats = server.stats();
    assert_eq!(report["total_requests"], 500);
    assert_eq!(stats.count("/hello", 200), 500);
    let five = stats.connections_from("127.0.0.5");
    let six = stats.connections_from("127.0.0.6");
    // Count mode opens a connection when it gets its first request, so
    // (rarely) one may never open; those that do alternate.
    assert_eq!(five + six, report["connections_opened"].as_u64().unwrap());
    assert!(five <= 3 && six <= 2 && five + six >= 4, "{:?}", stats.connections_by_peer);
}

/// An agent refuses source addresses its --allow-source does not allow
/// (its default is loopback only), before any load; a list that does not
/// parse is a usage error.
#[test]
fn disallowed_or_malformed_source_addresses_are_refused() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let agent = spawn_agent(&["--allow-source", "127.0.0.2"]);
    let out = Run::new(&url).agents(&[&agent]).requests(100).args(&["--source-addr", "127.0.0.2,127.0.0.3"]).output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("source address 127.0.0.3 is not allowed on this agent (--allow-source 127.0.0.2)"),
        "{}",
        stderr(&out)
    );
    // TEST-NET-1 is not loopback: refused by the default; allowed, it is
    // still not this host's.
    let default = spawn_agent(&[]);
    let any = spawn_agent(&["--allow-source", "any"]);
    for (agent, why) in [(&default, "is not allowed on this agent"), (&any, "cannot be used on this agent's host")] {
        let out = Run::new(&url).agents(&[agent]).requests(100).args(&["--source-addr", "192.0.2.7"]).output();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("source address 192.0.2.7 {why}")), "{}", stderr(&out));
    }
    assert_eq!(server.stats().total, 0, "refused runs sent nothing");

    for (bad, why) in [
        ("127.0.0.9-127.0.0.2", "lower to a higher"),
        ("nope", "\"nope\" is not an IP address"),
        ("::1", "address family"),
    ] {
        let out = Run::new(&url).requests(10).args(&["--source-addr", bad]).output();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--source-addr: ") && stderr(&out).contains(why), "{bad}: {}", stderr(&out));
    }
}

/// The fan-in path with 200 agents (in this process, one thread each): the
/// controller connects and plans in bounded waves, merges every agent's
/// snapshots, and the totals are exact: the report's count is the target's,
/// and no agent is lost. Small counts, so the test measures the fan-in, not
/// the machine. (The controller once spent milliseconds per snapshot in its
/// debug build adding full-range histograms: its merge loop then fell
/// seconds behind, live agents were declared lost and their work handed
/// over while they still sent it. Histograms now hold only the range they
/// use.)
#[test]
fn many_agents_keep_exact_totals() {
    const AGENTS: usize = 200;
    let server = target(2);
    let url = format!("http://{}/hello", server.local_addr());
    let agents: Vec<InProcessAgent> = (0..AGENTS).map(|_| in_process_agent(1)).collect();
    let report =
        Run::new(&url).agents(&agents).requests(1_000).connections(AGENTS as u32).args(&["--threads", "1"]).json();
    assert_eq!(report["total_requests"], 1_000, "{report}");
    assert_eq!(server.stats().count("/hello", 200), 1_000);
    let rows = report["agents"].as_array().unwrap();
    assert_eq!(rows.len(), AGENTS);
    assert!(rows.iter().all(|r| r["state"] == "done"), "{report}");
    let by_agents: u64 = rows.iter().map(|r| r["total_requests"].as_u64().unwrap()).sum();
    assert_eq!(by_agents, 1_000);
}
