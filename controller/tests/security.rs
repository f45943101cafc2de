//! Agents obey only their controller: the shared token, TLS and mutual TLS,
//! the refusal to listen openly, and limits a controller cannot override.
//! Real agent and controller processes; certificates made for the test.

use volley_testkit::*;

const TOKEN: &str = "t0ken-under-test-9f2c";

/// Runs the controller against one agent and a target; returns the output.
fn run_against(agent: &str, url: &str, extra: &[&str]) -> std::process::Output {
    Run::new(url).agents(&[agent]).requests(50).connections(2).args(extra).output()
}

/// Checks a refusal: exit code, one line, the needles, and no token leaked.
fn refused(out: &std::process::Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
    assert!(!err.contains(TOKEN) && !stdout(out).contains(TOKEN), "the token leaked: {err}");
}

#[test]
fn the_token_is_required_and_never_shown() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let a = spawn_agent(&["--threads", "1", "--token", TOKEN]);
    refused(&run_against(&a.addr, &url, &[]), 1, &[&a.addr, "token"]);
    refused(&run_against(&a.addr, &url, &["--token", "not-the-token"]), 1, &[&a.addr, "wrong token"]);
    let ok = run_against(&a.addr, &url, &["--token", TOKEN]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(!stdout(&ok).contains(TOKEN));
    assert_eq!(server.stats().count("/hello", 200), 50);
    // The environment variable works the same way.
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_controller"))
        .args(["run", "--agents", &a.addr, "--url", &url, "-n", "10", "-c", "1"])
        .env("VOLLEY_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    server.shutdown();
}

#[test]
fn an_open_listen_address_needs_a_token_or_mutual_tls() {
    let out = std::process::Command::new(agent_bin())
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("VOLLEY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--listen 0.0.0.0:0") && err.contains("--insecure"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // With --insecure it starts (and says where it listens).
    let a = spawn_agent_on("0.0.0.0:0", &["--threads", "1", "--insecure"]);
    assert!(a.addr.starts_with("0.0.0.0:"), "{}", a.addr);
    let b = spawn_agent_on("0.0.0.0:0", &["--threads", "1", "--token", TOKEN]);
    assert!(b.addr.starts_with("0.0.0.0:"), "{}", b.addr);
}

#[test]
fn targets_outside_allow_target_are_refused() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let port = server.local_addr().port();
    // Allowed: loopback on the target's port only.
    let a = spawn_agent(&["--threads", "1", "--allow-target", &format!("127.0.0.0/8:{port}")]);
    assert!(run_against(&a.addr, &url, &[]).status.success());
    let other = format!("http://127.0.0.1:{}/hello", port.wrapping_add(1).max(1));
    refused(&run_against(&a.addr, &other, &[]), 1, &["not allowed", "--allow-target"]);
    let b = spawn_agent(&["--threads", "1", "--allow-target", "10.0.0.0/8,*.example.com"]);
    refused(&run_against(&b.addr, &url, &[]), 1, &["not allowed", &server.local_addr().to_string()]);
    // A bad pattern is a usage error of the agent.
    let out = std::process::Command::new(agent_bin())
        .args(["--listen", "127.0.0.1:0", "--allow-target", "10.0.0.0/8:99999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-target"), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 50, "only the allowed run reached the target");
    server.shutdown();
}

#[test]
fn limits_the_controller_cannot_override() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let a = spawn_agent(&["--threads", "1", "--max-connections", "2", "--max-rate", "100", "--max-duration", "1s"]);
    refused(&Run::new(&url).agents(&[&a]).requests(5).connections(3).rate(10).output(), 1, &["--max-connections"]);
    refused(&Run::new(&url).agents(&[&a]).requests(5).connections(2).output(), 1, &["--max-rate", "unbounded"]);
    refused(&Run::new(&url).agents(&[&a]).requests(5).connections(2).rate(500).output(), 1, &["--max-rate"]);
    refused(&Run::new(&url).agents(&[&a]).duration("3s").connections(2).rate(50).output(), 1, &["--max-duration"]);
    let big = "x".repeat(64);
    let b = spawn_agent(&["--threads", "1", "--max-body", "16"]);
    refused(&Run::new(&url).agents(&[&b]).requests(5).args(&["-m", "POST", "-d", &big]).output(), 1, &["--max-body"]);
    // Within the limits it runs; a count-mode run is cut at --max-duration,
    // and the requests never sent are reported as such (exit 1: the count
    // asked for was not done).
    let out = Run::new(&url).agents(&[&a]).requests(1000).connections(2).rate(100).json_output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let total = r["total_requests"].as_u64().unwrap();
    assert!((80..=120).contains(&total), "{total} requests in the 1 s --max-duration at 100/s");
    assert_eq!(r["unassigned"].as_u64(), Some(1000 - total), "every request not sent is accounted for");
    assert_eq!(server.stats().count("/hello", 200), total);
    server.shutdown();
}

#[test]
fn a_busy_agent_refuses_a_second_controller() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let a = spawn_agent(&["--threads", "1"]);
    let first = Run::new(&url).agents(&[&a]).duration("20s").connections(1).rate(200).spawn();
    served_at_least(&server, "/hello", 10);
    refused(&run_against(&a.addr, &url, &[]), 1, &[&a.addr, "busy"]);
    let mut first = first;
    let _ = first.child.kill();
    let _ = first.child.wait();
    server.shutdown();
}

/// A CA, a server certificate for localhost and a client certificate, as PEM files.
struct Pki {
    dir: PemDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = PemDir::new("pki");
        let ca = TestCa::new();
        dir.write("ca.pem", ca.pem());
        for (name, leaf) in
            [("server", ca.leaf(&["localhost"]).server_auth()), ("client", ca.leaf(&["localhost"]).client_auth())]
        {
            let leaf = leaf.sign();
            dir.write(&format!("{name}.pem"), leaf.cert_pem);
            dir.write(&format!("{name}.key"), leaf.key_pem);
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path(name)
    }
}

#[test]
fn tls_and_mutual_tls() {
    let pki = Pki::new();
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key"));
    let tls_client = ["--tls-ca", &ca, "--tls-domain", "localhost"];

    let a = spawn_agent(&["--threads", "1", "--tls-cert", &cert, "--tls-key", &key]);
    let ok = run_against(&a.addr, &url, &tls_client);
    assert!(ok.status.success(), "TLS: {}", stderr(&ok));
    refused(&run_against(&a.addr, &url, &[]), 1, &[&a.addr]);

    let m = spawn_agent(&["--threads", "1", "--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &ca]);
    refused(&run_against(&m.addr, &url, &tls_client), 1, &[&m.addr]);
    let (ccert, ckey) = (pki.path("client.pem"), pki.path("client.key"));
    let mut with_cert = tls_client.to_vec();
    with_cert.extend_from_slice(&["--tls-cert", &ccert, "--tls-key", &ckey]);
    let ok = run_against(&m.addr, &url, &with_cert);
    assert!(ok.status.success(), "mTLS: {}", stderr(&ok));
    assert_eq!(server.stats().count("/hello", 200), 100);

    // Unreadable files are named.
    refused(&run_against(&a.addr, &url, &["--tls-ca", "/nonexistent/ca.pem"]), 2, &["--tls-ca", "/nonexistent/ca.pem"]);
    server.shutdown();
}
