//! An agent cut off by the network (its link taken down mid-run) is detected
//! within 3 s and handled like a dead one. The agent lives in a network
//! namespace of its own, joined to this one by a veth pair; needs root and
//! iproute2, and skips itself (saying so) where those are missing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use volley_testkit::*;

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A namespace with a veth link to this one; removed when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn create() -> Option<Netns> {
        let id = std::process::id() % 250;
        let name = format!("volley-cut-{}", std::process::id());
        let (host_if, ns_if) = (format!("vc{id}h"), format!("vc{id}n"));
        let (host_ip, ns_ip) = (format!("10.231.{id}.1"), format!("10.231.{id}.2"));
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns { name, host_if, host_ip, ns_ip };
        let ok = ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns_if])
            && ip(&["link", "set", &ns_if, "netns", &ns.name])
            && ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.host_if])
            && ip(&["link", "set", &ns.host_if, "up"])
            && ip(&["-n", &ns.name, "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns_if])
            && ip(&["-n", &ns.name, "link", "set", &ns_if, "up"])
            && ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_if]);
        ip(&["netns", "del", &self.name]);
    }
}

const TOKEN: &str = "link-cut-test-token";

#[test]
fn a_cut_off_agent_is_detected_within_3s_and_its_share_moves() {
    let Some(ns) = Netns::create() else {
        eprintln!("SKIP a_cut_off_agent_is_detected_within_3s: needs root and `ip netns` (iproute2)");
        return;
    };
    // The target listens on this namespace's end of the link, so both the
    // namespaced agent and a local one reach it.
    let listener = std::net::TcpListener::bind(format!("{}:0", ns.host_ip)).unwrap();
    let server = target_server::start(listener, 2).unwrap();
    let cut = spawn_ready(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(agent_bin())
            // Agents on a non-loopback address take orders only with a token.
            .args(["--listen", &format!("{}:0", ns.ns_ip), "--threads", "1", "--token", TOKEN])
            .env("RUST_LOG", "warn"),
    );
    let cut_addr = cut.addr.clone();
    let local = spawn_agent(&["--threads", "1", "--token", TOKEN]);

    let url = format!("http://{}/delay/2", server.local_addr());
    let n = 10_000u64;
    let ctl = Run::new(&url)
        .agents(&[&cut, &local])
        .connections(8)
        .requests(n)
        .args(&["--token", TOKEN])
        .with_json_report()
        .spawn();
    served_at_least(&server, "/delay/2", 2500);
    let cut_at = Instant::now();
    assert!(ip(&["link", "set", &ns.host_if, "down"]), "taking the link down");
    let (status, out, lines) = ctl.finish();
    assert!(status.success(), "{status:?} {lines:?}");
    let (noticed, what) = lines.iter().find(|(_, l)| l.contains(" lost: ")).expect("the loss is reported");
    let detection = noticed.duration_since(cut_at);
    eprintln!("cut-off agent detected after {detection:?}: {what}");
    assert!(detection < Duration::from_secs(3), "detected after {detection:?}");
    assert!(what.contains(&cut_addr));

    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["total_requests"], n);
    let bound = r["unaccounted_max"].as_u64().unwrap();
    let served = server.stats().count("/delay/2", 200);
    eprintln!("n {n}, served {served}, unaccounted bound {bound}");
    assert!(served >= n && served <= n + bound, "served {served}, bound {bound}");
    assert_eq!(agent_row(&r, &cut_addr)["state"], "lost");
    drop(cut);
    server.shutdown();
}
