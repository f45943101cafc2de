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

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use volley_testkit::*;

/// The port every target-server listens on in its namespace: one name, one
/// port, several addresses.
const TARGET_PORT: u16 = 8080;
const NAME: &str = "targets.volley.test";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// The test's bridge and namespaces, removed when dropped.
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
    fn host(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")) {
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

/// A bridge and `hosts` namespaces on a free /24 of 10.232.0.0/16 (not
/// multihost's 10.231, so the two tests may run at once).
fn network(hosts: usize) -> Result<Net, String> {
    let pid = std::process::id();
    let third = (0..250).map(|k| (pid as usize + k) % 250 + 1).find(|x| {
        let out = Command::new("ip").args(["-4", "route", "show", &format!("10.232.{x}.0/24")]).output();
        out.is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    });
    let third = third.ok_or("no free 10.232.x.0/24")?;
    let dir = std::env::temp_dir().join(format!("volley-resolve-{pid}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut net = Net { prefix: format!("10.232.{third}"), bridge: format!("rb{pid}"), namespaces: Vec::new(), dir };
    let first = format!("rnet{pid}-0");
    let made = Command::new("ip").args(["netns", "add", &first]).output().map_err(|e| e.to_string())?;
    if !made.status.success() {
        return Err(format!("ip netns add failed: {}", String::from_utf8_lossy(&made.stderr).trim()));
    }
    net.namespaces.push(first);
    for i in 1..hosts {
        let ns = format!("rnet{pid}-{i}");
        ip(&["netns", "add", &ns]);
        net.namespaces.push(ns);
    }
    ip(&["link", "add", &net.bridge, "type", "bridge"]);
    ip(&["addr", "add", &format!("{}.1/24", net.prefix), "dev", &net.bridge]);
    ip(&["link", "set", &net.bridge, "up"]);
    for (i, ns) in net.namespaces.iter().enumerate() {
        let (outside, inside) = (format!("rh{pid}-{i}"), format!("rp{pid}-{i}"));
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

/// Rewrites the hosts file in place (the same inode: the bind mount sees it).
fn write_hosts(net: &Net, addrs: &[String]) {
    let text: String = addrs.iter().map(|a| format!("{a} {NAME}\n")).collect();
    std::fs::write(net.dir.join("hosts"), text).unwrap();
}

/// Starts the controller with `args` in a private mount namespace where
/// `/etc/hosts` is the test's file and the resolver is loopback.
fn spawn_controller_with_hosts(net: &Net, args: &[&str]) -> Running {
    let resolv = net.dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
    let script = r#"mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@""#;
    let hosts = net.dir.join("hosts");
    let mut argv: Vec<String> =
        ["--mount", "--propagation", "private", "sh", "-c", script, "sh"].iter().map(|s| s.to_string()).collect();
    argv.push(hosts.display().to_string());
    argv.push(resolv.display().to_string());
    argv.push(controller_bin().display().to_string());
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut child = Command::new("unshare")
        .args(&argv)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the controller under unshare");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    Running { child, reader }
}

struct Running {
    child: std::process::Child,
    reader: std::thread::JoinHandle<String>,
}

impl Running {
    /// Waits (at most `limit`) for the controller; its stdout and stderr.
    fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the controller did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::io::read_to_string(self.child.stdout.take().unwrap()).unwrap();
        (status, out, self.reader.join().unwrap())
    }
}

#[test]
fn connections_spread_over_every_address_and_follow_the_hosts_file() {
    if let Some(why) = unavailable() {
        assert!(std::env::var("VOLLEY_REQUIRE_NETNS").is_err(), "VOLLEY_REQUIRE_NETNS is set but {why}");
        eprintln!("SKIP resolve: {why}; this test needs root and network namespaces");
        return;
    }
    let net = match network(4) {
        Ok(net) => net,
        Err(why) => {
            assert!(std::env::var("VOLLEY_REQUIRE_NETNS").is_err(), "VOLLEY_REQUIRE_NETNS is set but {why}");
            eprintln!("SKIP resolve: {why}");
            return;
        }
    };
    let targets: Vec<Proc> = (0..4)
        .map(|i| {
            let listen = format!("{}:{TARGET_PORT}", net.host(i));
            spawn_ready(
                Command::new("ip")
                    .args(["netns", "exec", &net.namespaces[i]])
                    .arg(target_server_bin())
                    .args(["--listen", &listen, "--threads", "1"])
                    .env("RUST_LOG", "warn")
                    .stderr(Stdio::null()),
            )
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
    let run = spawn_controller_with_hosts(net, &args);
    // Once all three have load, the fourth comes and the first goes.
    let loaded = wait::within(Duration::from_secs(10), || (0..3).all(|i| count(i) > before[i]));
    assert!(loaded.is_some(), "the three first addresses did not all get load");
    write_hosts(net, &[net.host(1), net.host(2), net.host(3)]);
    let changed = Instant::now();
    // Re-resolution (200 ms), the threads' next look (1 s), the request in flight.
    std::thread::sleep(Duration::from_millis(2500));
    let first_after_drain = count(0);
    let (status, out, err) = run.finish(Duration::from_secs(60));
    assert!(changed.elapsed() > Duration::from_millis(2500));
    assert!(status.success(), "controller failed ({protocol:?}): {err}\n{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
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
