//! HTTPS targets: plain runs on the lean client and scenario runs, against a
//! target-server serving TLS with a certificate from a test CA; the CA given
//! with --target-ca, missing (every request fails as `tls`), or skipped
//! with -k. Counts are checked against the target's own.

use std::net::Ipv4Addr;

use volley_testkit::{PemDir, Run, TestCa, controller, example_scenario, json_report, spawn_agent, stderr, stdout};

/// A CA (its PEM in a temporary directory) and a server certificate it
/// signed for 127.0.0.1 and localhost.
struct Pki {
    dir: PemDir,
    leaf: volley_testkit::Leaf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = PemDir::new(&format!("https-{tag}"));
        let ca = TestCa::new();
        dir.write("ca.pem", ca.pem());
        Pki { dir, leaf: ca.leaf(&["localhost"]).ip(Ipv4Addr::LOCALHOST).sign() }
    }

    fn ca(&self) -> String {
        self.dir.path("ca.pem")
    }

    fn server(&self, threads: usize) -> target_server::ServerHandle {
        volley_testkit::target_tls(threads, &self.leaf)
    }
}

#[test]
fn plain_runs_over_https_count_exactly() {
    let pki = Pki::new("plain");
    let server = pki.server(2);
    let url = format!("https://127.0.0.1:{}/hello", server.local_addr().port());
    let (a, b) = (spawn_agent(&[]), spawn_agent(&[]));
    let run = |n: u64, c: u32| Run::new(&url).agents(&[&a, &b]).requests(n).connections(c);

    let r = run(3001, 4).args(&["--target-ca", &pki.ca()]).json();
    assert_eq!(r["total_requests"], 3001);
    assert_eq!(r["successful_requests"], 3001);
    assert_eq!(server.stats().count("/hello", 200), 3001);
    // Keep-alive holds over TLS: a handful of handshakes, not one per request.
    assert!(r["connections_opened"].as_u64().unwrap() <= 8, "{}", r["connections_opened"]);

    // Without the CA every handshake fails, counted as `tls`, with no request
    // bytes sent and nothing served. The run still ends with a report, and
    // exit 1 with the reason, as one against a refused target does
    // (tests/whole_path.rs).
    let out = run(20, 2).quiet().json_output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(r["headline"].as_str().unwrap().starts_with("all 20 requests failed: the TLS handshake failed"), "{r}");
    assert_eq!((r["total_requests"].as_u64(), r["failed_requests"].as_u64()), (Some(20), Some(20)));
    assert_eq!(r["errors"]["tls"], 20, "{}", r["errors"]);
    assert_eq!(r["bytes_sent"], 0);
    let text = run(10, 2).quiet().output();
    assert_eq!(text.status.code(), Some(1), "{}", stderr(&text));
    assert!(stdout(&text).contains("tls: 10"), "{}", stdout(&text));
    assert_eq!(server.stats().total, 3001);

    // -k: any certificate.
    let out = Run::new(&url).requests(50).connections(2).args(&["--quiet", "-k"]).json_output();
    assert_eq!(json_report(&out)["successful_requests"], 50);
    assert!(stderr(&out).contains("certificates are not checked"), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 3051);
    server.shutdown();
}

#[test]
fn scenario_runs_over_https() {
    let pki = Pki::new("scenario");
    let server = pki.server(1);
    let base = format!("https://127.0.0.1:{}", server.local_addr().port());
    let scenario = |users: u32, n: u64| Run::new(&base).scenario(example_scenario()).users(users).requests(n);
    let r = scenario(8, 300).args(&["--target-ca", &pki.ca()]).json();
    assert_eq!(r["total_requests"], 300);
    assert_eq!(server.stats().total, 300);
    let login = r["names"].as_array().unwrap().iter().find(|n| n["name"] == "login").unwrap();
    assert_eq!(login["requests"], server.stats().count_method("POST", "/login", 200));
    assert!(r["errors"].as_object().unwrap().is_empty(), "{}", r["errors"]);

    // Without the CA: every request fails its handshake, counted as `tls`.
    let r = scenario(2, 20).json_all_failed();
    assert_eq!(r["errors"]["tls"], 20, "{}", r["errors"]);
    assert_eq!(server.stats().total, 300);
    server.shutdown();
}

#[test]
fn bad_certificate_files_are_one_line_errors() {
    let pki = Pki::new("bad");
    let junk = pki.dir.write("junk.pem", "not a certificate");
    let missing = pki.dir.path("missing.pem");
    for ca in [&junk, &missing] {
        // --dry-run checks the file just as a run does.
        for dry in [&[][..], &["--dry-run"][..]] {
            let mut args = vec!["run", "-n", "5", "--url", "https://127.0.0.1:9/", "--target-ca", ca];
            args.extend_from_slice(dry);
            let out = controller(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = stderr(&out);
            assert!(err.starts_with("controller: --target-ca:") && err.lines().count() == 1, "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}");
        }
    }

    let out = std::process::Command::new(volley_testkit::target_server_bin())
        .args(["--listen", "127.0.0.1:0", "--tls-cert", &junk, "--tls-key", &junk])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--tls-cert/--tls-key") && err.trim_end().lines().count() == 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn dry_runs_say_which_target_certificates_they_trust() {
    let pki = Pki::new("dry");
    let url = "https://127.0.0.1:9/hello";
    let trust = |extra: &[&str]| {
        let mut args = vec!["run", "--dry-run", "-n", "5", "--url", url];
        args.extend_from_slice(extra);
        let out = controller(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        text.lines().find(|l| l.starts_with("target TLS: ")).unwrap_or_else(|| panic!("{args:?}: {text}")).to_owned()
    };
    assert_eq!(trust(&[]), "target TLS: trusting certificates from the web's roots");
    assert!(trust(&["--target-ca", &pki.ca()]).contains("--target-ca"));
    assert!(trust(&["-k"]).contains("not checked"));
    // A plain http:// target has no TLS line.
    let out = Run::new("http://127.0.0.1:9/").requests(5).arg("--dry-run").output();
    assert!(!stdout(&out).contains("target TLS"), "{}", stdout(&out));
}

#[test]
fn an_https_url_at_a_plain_http_server_fails_as_tls() {
    let server = volley_testkit::target(1);
    let url = format!("https://{}/hello", server.local_addr());
    let r = Run::new(&url).requests(10).connections(2).json_all_failed();
    assert_eq!(r["errors"]["tls"], 10, "{}", r["errors"]);

    let base = format!("https://{}", server.local_addr());
    let r = Run::new(&base).scenario(example_scenario()).users(2).requests(10).json_all_failed();
    assert_eq!(r["errors"]["tls"], 10, "{}", r["errors"]);
    assert_eq!(server.stats().total, 0, "the server answered a TLS hello as HTTP");
}
