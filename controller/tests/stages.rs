//! `--stage`: a run shaped as a piecewise-linear profile of rates (open
//! model) or connections (closed model), split across agents from one start
//! and taken over by survivors when an agent is lost. Real binaries; every
//! count checked at the target.

use volley_testkit::*;

fn rows(r: &serde_json::Value) -> Vec<(u64, f64)> {
    r["series"]
        .as_array()
        .expect("a series")
        .iter()
        .map(|row| (row["requests"].as_u64().unwrap(), row["target"].as_f64().expect("a target in every row")))
        .collect()
}

/// Row `i` of `rows` is within 2 % of `expected`, and its target says so.
fn plateau(rows: &[(u64, f64)], i: usize, expected: f64) {
    let (got, target) = rows[i];
    assert!((target - expected).abs() < 1e-6, "second {i}: target {target}, expected {expected}; {rows:?}");
    let off = (got as f64 - expected).abs() / expected;
    assert!(off <= 0.02, "second {i}: {got} requests, target {expected}; {rows:?}");
}

#[test]
fn three_stages_across_two_agents_follow_the_shape() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/hello", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    // Up to 200/s over 1 s, 2 s at 200/s, up to 400/s over 1 s: 100 + 400 + 300.
    let stages = ["--stage", "1s:200/s", "--stage", "2s:200/s", "--stage", "1s:400/s"];
    // A condition limited to the plateau holds; one the whole run (200/s on
    // average) cannot meet fails, so the run exits 3.
    let fail_if = ["--fail-if", "rps >= 196 @ stage 2", "--fail-if", "rps >= 250", "--fail-if", "p99 < 1s @ stage 3"];
    let out = Run::new(&url).agents(&[&agents]).connections(10).args(&stages).args(&fail_if).json_output();
    assert_eq!(out.status.code(), Some(3), "a failed threshold exits 3: {}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let passed: Vec<bool> =
        r["thresholds"].as_array().unwrap().iter().map(|v| v["passed"].as_bool().unwrap()).collect();
    assert_eq!(passed, [true, false, true], "{}", r["thresholds"]);
    let total = r["total_requests"].as_u64().unwrap();
    assert_eq!(server.stats().count("/hello", 200), total, "the target served what the report says");
    assert!(total.abs_diff(800) <= 4, "sent {total}, the stages scheduled 800");
    let rows = rows(&r);
    assert_eq!(rows.len(), 4, "{rows:?}");
    plateau(&rows, 1, 200.0);
    plateau(&rows, 2, 200.0);
    plateau(&rows, 3, 300.0);
    assert!((rows[0].1 - 100.0).abs() < 1e-6, "the first ramp's mean: {rows:?}");
    for row in r["agents"].as_array().unwrap() {
        assert_eq!(row["rate"].as_f64().unwrap(), 200.0, "each agent has half the peak: {row}");
        assert_eq!(row["state"], "done");
    }
    assert_eq!(r["stages"]["unit"], "requests_per_second");
    assert_eq!(r["stages"]["stages"][2]["target"], 400.0);
    // Each stage's figures are its seconds' (1, 2 and 1 of them): they add
    // up to the run, and the plateau's rate is its target's.
    let st = r["stages"]["stages"].as_array().unwrap();
    let field = |k: &str| st.iter().map(|s| s[k].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(field("seconds"), [1, 2, 1], "{st:?}");
    assert_eq!(field("first_second"), [0, 1, 3], "{st:?}");
    assert_eq!(field("requests").iter().sum::<u64>(), total, "{st:?}");
    assert_eq!(field("requests")[1], rows[1].0 + rows[2].0, "{st:?}");
    let plateau_rps = st[1]["requests_per_second"].as_f64().unwrap();
    assert!((plateau_rps - 200.0).abs() <= 4.0, "plateau at {plateau_rps}/s: {st:?}");
    assert_eq!(st[2]["target_mean"], 300.0, "the last ramp's mean target");
    assert!(st[2]["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{st:?}");
    assert_eq!(r["thresholds"][0]["actual"].as_f64().unwrap(), plateau_rps, "judged on the stage's rate");
    assert!(r["rate"].get("warning").is_none(), "no shortfall: {}", r["rate"]);
    assert_eq!(r["duration_s"].as_f64().unwrap().round(), 4.0, "the run lasts the stages' total");
    server.shutdown();
}

#[test]
fn a_lost_agent_s_part_of_the_stages_moves_to_the_survivor() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let mut b = spawn_agent(&["--threads", "1"]);
    let url = format!("http://{}/hello", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    // Three stages: a ramp, a plateau, and a ramp on to 300/s (seconds 6
    // and 7 ask for 225 and 275).
    let stages = ["--stage", "1s:200/s", "--stage", "5s:200/s", "--stage", "2s:300/s"];
    let ctl = Run::new(&url).agents(&[&agents]).connections(10).args(&stages).with_json_report().spawn();
    // Killed in the plateau's first second (100 requests ramp up, then 200/s).
    served_at_least(&server, "/hello", 200);
    signal(b.child.id(), "KILL");
    let _ = b.child.wait();
    let (status, out, lines) = ctl.finish();
    assert!(status.success(), "controller failed: {status:?} {lines:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(agent_row(&r, &b.addr)["state"], "lost");
    let survivor = agent_row(&r, &a.addr);
    assert_eq!(survivor["state"], "done");
    assert_eq!(survivor["rate"].as_f64().unwrap(), 300.0, "the survivor took over the whole peak: {survivor}");
    let rows = rows(&r);
    assert_eq!(rows.len(), 8, "{rows:?}");
    // The loss is noticed within about 2.2 s of the kill (near 1.5 s): the
    // seconds from 5 on are the survivor's alone, on the whole shape.
    plateau(&rows, 5, 200.0);
    plateau(&rows, 6, 225.0);
    plateau(&rows, 7, 275.0);
    let total = r["total_requests"].as_u64().unwrap();
    let served = server.stats().count("/hello", 200);
    let unseen = r["unaccounted_max"].as_u64().expect("an open-model loss has a bound");
    assert!(served >= total && served <= total + unseen, "served {served}, reported {total}, bound {unseen}");
    server.shutdown();
}

#[test]
fn closed_model_stages_open_and_close_connections() {
    let server = target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let b = spawn_agent(&["--threads", "1"]);
    // Each connection sends about one request per 10 ms: the rate follows
    // the connections.
    let url = format!("http://{}/delay/10", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    let steps = ["0s:2", "1s:2", "0s:6", "1s:6", "0s:2", "1s:2"];
    let args: Vec<&str> = steps.iter().flat_map(|s| ["--stage", s]).collect();
    let r = Run::new(&url).agents(&[&agents]).args(&args).json();
    let total = r["total_requests"].as_u64().unwrap();
    assert_eq!(server.stats().count("/delay/10", 200), total, "count exact");
    assert_eq!(r["connections"], 6, "the peak is the run's connections");
    assert_eq!(r["stages"]["unit"], "connections");
    let rows = rows(&r);
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), [2.0, 6.0, 2.0], "{rows:?}");
    let (low, high, low_again) = (rows[0].0 as f64, rows[1].0 as f64, rows[2].0 as f64);
    assert!(high > 2.2 * low, "6 connections did not outpace 2: {rows:?}");
    assert!(high > 2.2 * low_again, "the connections did not fall back to 2: {rows:?}");
    // One per agent at first, two more each at 1 s, closed again at 2 s: the
    // lowest-numbered stay open throughout, so 6 connects in all.
    assert_eq!(r["connections_opened"], 6, "{r}");
    server.shutdown();
}

#[test]
fn bad_stages_are_refused_with_one_line_and_no_load() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let cases: &[(&[&str], &str)] = &[
        (&["--stage", "30s"], "DURATION:TARGET"),
        (&["--stage", "soon:100/s"], "soon"),
        (&["--stage", "1s:fast"], "fast"),
        (&["--stage", "1s:-5/s"], "-5"),
        (&["--stage", "1s:1.5"], "whole number"),
        (&["--stage", "1s:100/s", "--stage", "1s:5"], "mixes"),
        (&["--stage", "0s:100/s"], "0 s"),
        (&["--stage", "1s:0/s"], "nothing to send"),
        (&["--stage", "25h:10/s"], "longer"),
        (&["--stage", "1s:100/s", "-q", "100"], "-q"),
        (&["--stage", "1s:100/s", "--ramp-up", "1s"], "--ramp-up"),
        (&["--stage", "1s:100/s", "-n", "10"], "-n"),
        (&["--stage", "1s:200000"], "more than"),
        (&["--stage", "1s:100/s", "--fail-if", "p99 < 5ms @ stage 2"], "has 1 stage"),
        (&["--stage", "1s:100/s", "--stage", "0s:200/s", "--fail-if", "p99 < 5ms @ stage 2"], "a step"),
        (&["-z", "1s", "--fail-if", "p99 < 5ms @ stage 1"], "no --stage"),
        (&["--stage", "1s:100/s", "--fail-if", "missed < 1% @ stage 1"], "whole run"),
    ];
    for (args, needle) in cases {
        let mut argv = vec!["run", url.as_str()];
        argv.extend_from_slice(args);
        let out = controller(&argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} exited {:?}: {err}", out.status);
        assert!((err.contains("--stage") || err.contains("--fail-if")) && err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(server.stats().path_total("/hello"), 0, "a refused run sends nothing");
    server.shutdown();
}

#[test]
fn scenario_stages_set_the_active_users_across_two_agents() {
    let server = target(2);
    // Each agent rounds its own share (its user i of U is active while
    // level · U > i), as with connections: 3 users each splits 2 and 6 exactly.
    let (a, b) = (spawn_agent(&["--threads", "1"]), spawn_agent(&["--threads", "1"]));
    let dir = std::env::temp_dir().join(format!("volley-stages-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    // Each user sends 10 requests a second; 2 users for 2 s, then 6 for 2 s.
    std::fs::write(
        &file,
        "[[stage]]\nduration = \"0s\"\ntarget = 2\n[[stage]]\nduration = \"2s\"\ntarget = 2\n\
         [[stage]]\nduration = \"0s\"\ntarget = 6\n[[stage]]\nduration = \"2s\"\ntarget = 6\n\
         [[user]]\nname = \"paced\"\nthink = \"constant_throughput 10\"\n[[user.request]]\npath = \"/hello\"\n",
    )
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    // (-z, as clap wants a limit; the stages' total here.)
    let r = Run::new(&base).scenario(&file).duration("4s").agents(&[&a, &b]).json();
    let total = r["total_requests"].as_u64().unwrap();
    assert_eq!(server.stats().count("/hello", 200), total, "the target served what the report says");
    assert_eq!(r["scenario"]["users"], 6, "the run's users are the stages' peak");
    assert_eq!(r["stages"]["unit"], "users");
    let rows = rows(&r);
    // A fifth second only for a few requests of a late-started agent (its
    // users' last iteration, cut at its own end).
    assert!(rows.len() == 4 || (rows.len() == 5 && rows[4].0 <= 6), "{rows:?}");
    for (i, want) in [(0, 20.0), (1, 20.0), (2, 60.0), (3, 60.0)] {
        let (got, target) = rows[i];
        assert!((target * 10.0 - want).abs() < 1e-6, "second {i}: target {target} users; {rows:?}");
        assert!((got as f64 - want).abs() <= want * 0.15, "second {i}: {got} requests, about {want} due; {rows:?}");
    }
    // The same from --stage, which replaces the file's stages; a rate is refused.
    let out = Run::new(&base).scenario(&file).args(&["--stage", "1s:3/s"]).output();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("a scenario's stages are numbers of active users"), "{}", stderr(&out));
    let out = Run::new(&base).scenario(&file).users(5).duration("4s").output();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("the stages set the active users"), "{}", stderr(&out));
    server.shutdown();
}
