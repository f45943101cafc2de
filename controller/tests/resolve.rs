//! Every target address, and DNS that changes (`--resolve-each`,
//! `--connect-to`, requests per target address).
//!
//! The namespace test: four target-servers, each in its own network
//! namespace with its own address on a bridge in the root namespace, and one
//! name that a hosts file gives three of those addresses. The controller (its
//! agent embedded, so it resolves through the same hosts file) runs in a
//! private mount namespace where that file is `/etc/hosts` (the method of
//! `multihost.rs`); mid-run the test rewrites the file: the fourth address
//! comes, the first goes. Every target must get load, the fourth after the
//! re-resolution, the first none after it drained, and the report's
//! requests per address must equal what each target served.
//!
//! Needs root and `ip netns`; without them it prints `SKIP` and passes,
//! unless `VOLLEY_REQUIRE_NETNS=1` makes a skip a failure.

use std::time::{Duration, Instant};

use volley_testkit::netns::{Net, network_or_skip};
use volley_testkit::*;

/// The port every target-server listens on in its namespace: one name, one
/// port, several addresses.
const TARGET_PORT: u16 = 8080;
const NAME: &str = "targets.volley.test";

/// Gives the test's name the addresses `addrs` in the hosts file.
fn write_hosts(net: &Net, addrs: &[String]) {
    let text: String = addrs.iter().map(|a| format!("{a} {NAME}\n")).collect();
    net.write_hosts(&text);
}

#[test]
fn connections_spread_over_every_address_and_follow_the_hosts_file() {
    let Some(net) = network_or_skip("resolve", 'r', 232, 4) else { return };
    let targets: Vec<Proc> = (0..4)
        .map(|i| {
            let listen = format!("{}:{TARGET_PORT}", net.host(i));
            net.spawn_in(i, target_server_bin(), &["--listen", &listen, "--threads", "1"])
        })
        .collect();
    for protocol in [&[][..], &["--http2", "--streams", "2"][..]] {
        follow_the_hosts_file(&net, &targets, protocol);
    }
    drop(targets);
}

/// One run over the name (`protocol`: extra flags): three addresses, then
/// the fourth instead of the first; checks every count against the
/// targets' (as deltas: the targets serve every run of the test).
fn follow_the_hosts_file(net: &Net, targets: &[Proc], protocol: &[&str]) {
    let count = |i: usize| targets[i].target_stats().count("/hello", 200);
    let before: Vec<u64> = (0..4).map(count).collect();
    let addr = |i: usize| format!("{}:{TARGET_PORT}", net.host(i));
    write_hosts(net, &[net.host(0), net.host(1), net.host(2)]);
    let url = format!("http://{NAME}:{TARGET_PORT}/hello");
    // Bounded in time (6 s) and rate (300/s): about 1,800 requests.
    let mut args =
        vec!["run", &url, "-z", "6s", "-q", "300", "-c", "8", "--resolve-each", "200ms", "--output", "json", "--quiet"];
    args.extend_from_slice(protocol);
    let run = spawn_controller_command(net.with_hosts(&controller_bin()).args(&args));
    // Once all three have load, the fourth comes and the first goes.
    let loaded = wait::within(Duration::from_secs(10), || (0..3).all(|i| count(i) > before[i]));
    assert!(loaded.is_some(), "the three first addresses did not all get load");
    write_hosts(net, &[net.host(1), net.host(2), net.host(3)]);
    let changed = Instant::now();
    // Re-resolution (200 ms), the threads' next look (1 s), the request in flight.
    std::thread::sleep(Duration::from_millis(2500));
    let first_after_drain = count(0);
    let (status, out, lines) = run.finish();
    let err: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(changed.elapsed() > Duration::from_millis(2500));
    assert!(status.success(), "controller failed ({protocol:?}): {err:?}\n{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err:?}"));
    let served: Vec<u64> = (0..4).map(|i| count(i) - before[i]).collect();
    assert!(served.iter().all(|&n| n > 0), "every address gets load ({protocol:?}): {served:?}");
    assert_eq!(served[0] + before[0], first_after_drain, "no request reached the removed address once it drained");
    assert_eq!(r["total_requests"], served.iter().sum::<u64>(), "{served:?}");
    assert_eq!(r["successful_requests"], r["total_requests"]);
    let rows = r["target_addresses"].as_array().unwrap();
    let listed: Vec<&str> = rows.iter().map(|row| row["address"].as_str().unwrap()).collect();
    assert_eq!(listed, [addr(0), addr(1), addr(2), addr(3)], "{rows:?}");
    for (row, n) in rows.iter().zip(&served) {
        assert_eq!(row["requests"], *n, "the report's count is the target's: {row}");
        assert_eq!(row["failures"], 0, "{row}");
        assert_eq!(row["refused"], false, "{row}");
        assert!(row["connections_opened"].as_u64().unwrap() > 0, "{row}");
    }
}

#[test]
fn connect_to_pins_the_name_and_the_report_names_the_address() {
    let target = spawn_target(target_server_bin(), &["--threads", "1"]);
    let port = target.socket_addr().port();
    // A name no resolver knows: --connect-to means it is never looked up.
    let url = format!("http://pinned.volley.invalid:{port}/hello");
    let pin = format!("pinned.volley.invalid:{port}:127.0.0.1:{port}");
    let r = Run::new(&url).requests(300).connections(3).args(&["--connect-to", &pin]).json();
    assert_eq!(target.target_stats().count("/hello", 200), 300);
    assert_eq!(r["successful_requests"], 300);
    let rows = r["target_addresses"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["address"], format!("127.0.0.1:{port}"));
    assert_eq!(rows[0]["requests"], 300);
    assert!(stdout(&Run::new(&url).requests(10).args(&["--connect-to", &pin]).output()).contains("Target address"));

    let dry = controller(&["run", &url, "-n", "1", "--connect-to", &pin, "--resolve-each", "0", "--dry-run"]);
    let said = stdout(&dry);
    assert!(said.contains(&format!("connect-to: {pin}")) && said.contains("resolved once"), "{said}");

    // Usage errors name the flag.
    for (bad, why) in [("a:1:b", "is not HOST:PORT:ADDR:PORT"), ("h:0:127.0.0.1:1", "a port must be")] {
        let out = controller(&["run", &url, "-n", "1", "--connect-to", bad]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--connect-to") && err.contains(why), "{err}");
    }
    let out = controller(&["run", &url, "-n", "1", "--resolve-each", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The allowlist checks where connections really go: a pin elsewhere is refused.
    let agent = spawn_agent(&["--allow-target", "127.0.0.1"]);
    let direct = format!("http://127.0.0.1:{port}/hello");
    let elsewhere = format!("127.0.0.1:{port}:127.0.0.2:{port}");
    let out = Run::new(&direct).agents(&[&agent.addr]).requests(5).args(&["--connect-to", &elsewhere]).output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("(127.0.0.2) is not allowed on this agent (--allow-target)"), "{err}");
    assert_eq!(target.target_stats().count("/hello", 200), 310, "nothing was sent");
}
