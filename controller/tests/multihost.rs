//! Several hosts on one machine: three network namespaces, each with its own
//! address on a bridge in the root namespace. Agents run in two of them and the
//! target-server in the third; the controller, in the root namespace, finds the
//! agents through one name that resolves to both addresses (`dns:NAME:PORT`),
//! as a Kubernetes headless Service would, and every count is checked against
//! the target-server's own.
//!
//! The name comes from a hosts file bind-mounted over `/etc/hosts` in a private
//! mount namespace (`unshare --mount`) that only the controller sees; its
//! `/etc/resolv.conf` points at loopback, so no query leaves the machine. All
//! traffic stays on addresses this test assigns.
//!
//! Needs root and iproute2's `ip netns`; without them the test prints `SKIP`
//! and passes, unless `VOLLEY_REQUIRE_NETNS=1` (set by `.ci/run` when it runs
//! as root) makes a skip a failure.

use std::process::Output;

use volley_testkit::netns::{Net, network_or_skip};
use volley_testkit::*;

/// The port every agent listens on inside its own namespace. Fixed on purpose:
/// each namespace is new and empty, and a `dns:` entry names one port for
/// every address, as in a real deployment.
const AGENT_PORT: u16 = 7070;
const NAME: &str = "agents.volley.test";

/// Runs the controller with `args` where `/etc/hosts` is `hosts` (see
/// [`volley_testkit::netns`]).
fn controller_with_hosts(net: &Net, hosts: &str, args: &[&str]) -> Output {
    net.write_hosts(hosts);
    net.with_hosts(&controller_bin()).args(args).output().expect("run the controller under unshare")
}

#[test]
fn agents_on_two_hosts_found_by_one_name_send_exactly_n() {
    const TOKEN: &str = "multihost-test-token";
    let Some(net) = network_or_skip("multihost", 'v', 231, 3) else { return };
    // Declared after `net`, so they are stopped before the namespaces go.
    let target = net.spawn_in(2, target_server_bin(), &["--listen", &format!("{}:0", net.host(2)), "--threads", "1"]);
    let agents: Vec<Proc> = (0..2)
        .map(|i| {
            let listen = format!("{}:{AGENT_PORT}", net.host(i));
            // Agents on a non-loopback address take orders only with a token.
            net.spawn_in(i, agent_bin(), &["--listen", &listen, "--threads", "1", "--token", TOKEN])
        })
        .collect();
    let hosts = format!("{} {NAME}\n{} {NAME}\n", agents[1].addr.split(':').next().unwrap(), net.host(0));
    let url = format!("http://{}/hello", target.addr);
    let spec = format!("dns:{NAME}:{AGENT_PORT}");

    let run =
        Run::new(&url).agents(&[&spec]).requests(2001).connections(4).args(&["--output", "json", "--token", TOKEN]);
    let r = json_report(&controller_with_hosts(&net, &hosts, &run.argv()));
    let stats = target.target_stats();
    assert_eq!(stats.count("/hello", 200), 2001, "target-server's count: {stats:?}");
    assert_eq!(r["total_requests"], 2001);
    assert_eq!(r["successful_requests"], 2001);
    let rows = r["agents"].as_array().unwrap();
    // Sorted by address, whatever order the hosts file gave them in.
    let addresses: Vec<&str> = rows.iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, [agents[0].addr.as_str(), agents[1].addr.as_str()]);
    for row in rows {
        assert_eq!(row["state"], "done", "{row}");
        assert!(row["total_requests"].as_u64().unwrap() > 0, "{row}");
    }
    let per_agent: u64 = rows.iter().map(|a| a["total_requests"].as_u64().unwrap()).sum();
    assert_eq!(per_agent, 2001);

    // A name that does not resolve is named, with exit code 1 and one line.
    let out = controller_with_hosts(
        &net,
        &hosts,
        &Run::new(&url).agents(&["dns:nobody.volley.test:7070"]).requests(1).argv(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot resolve dns:nobody.volley.test:7070"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    drop(agents);
    drop(target);
}
