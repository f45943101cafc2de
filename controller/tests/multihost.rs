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

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use volley_testkit::*;

/// The port every agent listens on inside its own namespace. Fixed on purpose:
/// each namespace is new and empty, and a `dns:` entry names one port for
/// every address, as in a real deployment.
const AGENT_PORT: u16 = 7070;
const NAME: &str = "agents.volley.test";

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The test's network: a bridge and namespaces, removed when dropped (also
/// when the test fails), which removes the veth pairs with them.
struct Net {
    prefix: String,
    bridge: String,
    namespaces: Vec<String>,
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Net {
    /// Address of host `i` (0-based) on the test's /24.
    fn host(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("not running as root".into());
    }
    for tool in [["ip", "netns"], ["unshare", "--version"]] {
        match Command::new(tool[0]).arg(tool[1]).stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(s) if s.success() => {}
            _ => return Some(format!("`{} {}` is unavailable", tool[0], tool[1])),
        }
    }
    None
}

/// Creates the bridge and `hosts` namespaces on a /24 in 10.231.0.0/16 that no
/// route on this machine uses yet. `Err` means namespaces cannot be made here.
fn network(hosts: usize) -> Result<Net, String> {
    let pid = std::process::id();
    let third = (0..250).map(|k| (pid as usize + k) % 250 + 1).find(|x| {
        let out = Command::new("ip").args(["-4", "route", "show", &format!("10.231.{x}.0/24")]).output();
        out.is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    });
    let third = third.ok_or("no free 10.231.x.0/24")?;
    let dir = std::env::temp_dir().join(format!("volley-multihost-{pid}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut net = Net { prefix: format!("10.231.{third}"), bridge: format!("vb{pid}"), namespaces: Vec::new(), dir };
    let first = format!("vnet{pid}-0");
    let made = Command::new("ip").args(["netns", "add", &first]).output().map_err(|e| e.to_string())?;
    if !made.status.success() {
        return Err(format!("ip netns add failed: {}", String::from_utf8_lossy(&made.stderr).trim()));
    }
    net.namespaces.push(first);
    for i in 1..hosts {
        let ns = format!("vnet{pid}-{i}");
        ip(&["netns", "add", &ns]);
        net.namespaces.push(ns);
    }
    ip(&["link", "add", &net.bridge, "type", "bridge"]);
    ip(&["addr", "add", &format!("{}.1/24", net.prefix), "dev", &net.bridge]);
    ip(&["link", "set", &net.bridge, "up"]);
    for (i, ns) in net.namespaces.iter().enumerate() {
        let (outside, inside) = (format!("vh{pid}-{i}"), format!("vp{pid}-{i}"));
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        ip(&["link", "set", &inside, "netns", ns]);
        ip(&["link", "set", &outside, "master", &net.bridge]);
        ip(&["link", "set", &outside, "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{}/24", net.host(i)), "dev", &inside]);
        ip(&["-n", ns, "link", "set", &inside, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    Ok(net)
}

/// Starts `bin ARGS` inside namespace `ns` and reads its ready line.
fn spawn_in(ns: &str, bin: PathBuf, args: &[&str]) -> Proc {
    spawn_ready(Command::new("ip").args(["netns", "exec", ns]).arg(bin).args(args).env("RUST_LOG", "warn"))
}

/// Runs the controller with `args` in a private mount namespace where
/// `/etc/hosts` is `hosts` and the resolver is loopback.
fn controller_with_hosts(net: &Net, hosts: &str, args: &[&str]) -> Output {
    let (hosts_file, resolv) = (net.dir.join("hosts"), net.dir.join("resolv.conf"));
    std::fs::write(&hosts_file, hosts).unwrap();
    std::fs::write(&resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
    let script = r#"mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@""#;
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&hosts_file)
        .arg(&resolv)
        .arg(env!("CARGO_BIN_EXE_controller"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run the controller under unshare")
}

#[test]
fn agents_on_two_hosts_found_by_one_name_send_exactly_n() {
    if let Some(why) = unavailable() {
        assert!(std::env::var("VOLLEY_REQUIRE_NETNS").is_err(), "VOLLEY_REQUIRE_NETNS is set but {why}");
        eprintln!("SKIP multihost: {why}; this test needs root and network namespaces");
        return;
    }
    const TOKEN: &str = "multihost-test-token";
    let net = match network(3) {
        Ok(net) => net,
        Err(why) => {
            assert!(std::env::var("VOLLEY_REQUIRE_NETNS").is_err(), "VOLLEY_REQUIRE_NETNS is set but {why}");
            eprintln!("SKIP multihost: {why}");
            return;
        }
    };
    // Declared after `net`, so they are stopped before the namespaces go.
    let target = spawn_in(
        &net.namespaces[2],
        target_server_bin(),
        &["--listen", &format!("{}:0", net.host(2)), "--threads", "1"],
    );
    let agents: Vec<Proc> = (0..2)
        .map(|i| {
            let listen = format!("{}:{AGENT_PORT}", net.host(i));
            // Agents on a non-loopback address take orders only with a token.
            spawn_in(&net.namespaces[i], agent_bin(), &["--listen", &listen, "--threads", "1", "--token", TOKEN])
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
