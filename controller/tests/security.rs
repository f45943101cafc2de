//! Agents obey only their controller: the shared token, TLS and mutual TLS,
//! the refusal to listen openly, and limits a controller cannot override.
//! Real agent and controller processes; certificates made for the test.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use volley_testkit::*;

const TOKEN: &str = "t0ken-under-test-9f2c";

/// Runs the controller against one agent and a target; returns the output.
fn run_against(agent: &str, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--agents", agent, "--url", url, "-n", "50", "-c", "2"];
    args.extend_from_slice(extra);
    controller(&args)
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
    refused(
        &controller(&["run", "--agents", &a.addr, "--url", &url, "-n", "5", "-c", "3", "--rate", "10"]),
        1,
        &["--max-connections"],
    );
    refused(
        &controller(&["run", "--agents", &a.addr, "--url", &url, "-n", "5", "-c", "2"]),
        1,
        &["--max-rate", "unbounded"],
    );
    refused(
        &controller(&["run", "--agents", &a.addr, "--url", &url, "-n", "5", "-c", "2", "--rate", "500"]),
        1,
        &["--max-rate"],
    );
    refused(
        &controller(&["run", "--agents", &a.addr, "--url", &url, "-z", "3s", "-c", "2", "--rate", "50"]),
        1,
        &["--max-duration"],
    );
    let big = "x".repeat(64);
    let b = spawn_agent(&["--threads", "1", "--max-body", "16"]);
    refused(
        &controller(&["run", "--agents", &b.addr, "--url", &url, "-n", "5", "-m", "POST", "-d", &big]),
        1,
        &["--max-body"],
    );
    // Within the limits it runs; a count-mode run is cut at --max-duration.
    let out = controller(&[
        "run", "--agents", &a.addr, "--url", &url, "-n", "1000", "-c", "2", "--rate", "100", "--output", "json",
    ]);
    let r = json_report(&out);
    let total = r["total_requests"].as_u64().unwrap();
    assert!((80..=120).contains(&total), "{total} requests in the 1 s --max-duration at 100/s");
    assert_eq!(server.stats().count("/hello", 200), total);
    server.shutdown();
}

#[test]
fn a_busy_agent_refuses_a_second_controller() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let a = spawn_agent(&["--threads", "1"]);
    let first = spawn_controller(&["run", "--agents", &a.addr, "--url", &url, "-z", "20s", "-c", "1", "--rate", "200"]);
    served_at_least(&server, "/hello", 10);
    refused(&run_against(&a.addr, &url, &[]), 1, &[&a.addr, "busy"]);
    let mut first = first;
    let _ = first.child.kill();
    let _ = first.child.wait();
    server.shutdown();
}

/// A CA, a server certificate for localhost and a client certificate, as PEM files.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("volley-pki-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (name, purpose) in
            [("server", ExtendedKeyUsagePurpose::ServerAuth), ("client", ExtendedKeyUsagePurpose::ClientAuth)]
        {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        Path::new(&self.dir).join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
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
