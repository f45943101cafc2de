//! Hostile networks and hostile input (issue #21, items 7–11): idle
//! connections cannot exhaust an agent, web pages cannot start runs through
//! `controller serve`, extreme numbers are refused instead of panicking,
//! bodies up to `--max-body` travel, and files are read with care.

use std::io::Read as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use volley_testkit::*;

const TOKEN: &str = "s3cret-token";

/// Item 7: an agent limited to 256 descriptors, 400 connections that never
/// send a call; a controller still runs on it, the idle ones are closed
/// after `--auth-timeout`, and a plan needing more descriptors than the
/// agent has is refused naming the limit.
#[test]
fn idle_connections_cannot_exhaust_an_agent() {
    let server = target(2);
    let url = format!("http://{}/hello", server.local_addr());
    let agent = spawn_agent_with_open_files(256, &["--token", TOKEN, "--auth-timeout", "3s"]);
    let idle: Vec<TcpStream> =
        (0..400).map(|_| TcpStream::connect(&agent.addr).expect("the agent accepts (and sheds) connections")).collect();

    let run = Run::new(&url).agents(&[&agent]).requests(300).connections(4).args(&["--token", TOKEN]);
    let out = run.output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 300);

    // The newest idle connection is closed by the agent once its time is up
    // (the oldest were closed before, to make room).
    let mut newest = idle.last().unwrap().try_clone().unwrap();
    newest.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t0 = Instant::now();
    // The agent speaks first (its HTTP/2 settings); then the close.
    let mut buf = [0u8; 1024];
    loop {
        match newest.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the idle connection is still open after {:?}", t0.elapsed())
            }
            Err(_) => break,
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(15), "closed after {:?}", t0.elapsed());
    drop(idle);

    // 250 connections with the agent's 64 spare descriptors exceed 256.
    let out = Run::new(&url).agents(&[&agent]).requests(300).connections(250).args(&["--token", TOKEN]).output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("open-file limit (RLIMIT_NOFILE) is 256"), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 300, "the refused run sent nothing");
}

/// Item 8: what another site could make a browser send is refused; the
/// page's own requests, scripts' JSON and IP or `--allowed-host` names pass.
#[test]
fn serve_refuses_cross_site_requests() {
    let server = target(1);
    let api = spawn_serve(&["--allowed-host", "loadbox.internal"]);
    let url = format!("http://{}/hello", server.local_addr());
    let body = json!({ "url": url, "requests": 5, "concurrency": 1 }).to_string();
    let own_origin = format!("http://{}", api.addr);
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers<'_>, u16, &str); 5] = [
        (&[("content-type", "text/plain")], 415, "application/json"),
        (&[("content-type", "application/x-www-form-urlencoded")], 415, "application/json"),
        (&[("content-type", "application/json"), ("origin", "http://evil.example")], 403, "evil.example"),
        (&[("content-type", "text/plain"), ("origin", "http://evil.example")], 403, "evil.example"),
        (&[("content-type", "application/json"), ("origin", "null")], 403, "cross-origin"),
    ];
    for (headers, status, needle) in cases {
        let (got, _, text) = http(&api.addr, "POST", "/v1/runs", headers, &body);
        assert_eq!(got, status, "{headers:?}: {text}");
        assert!(text.contains(needle), "{headers:?}: {text}");
    }
    // DNS rebinding: the right address, another site's name.
    let raw = |host: &str| {
        let mut c = std::net::TcpStream::connect(&api.addr).unwrap();
        use std::io::Write as _;
        write!(c, "GET /v1/runs HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(raw("evil.example").starts_with("HTTP/1.1 403"), "{}", raw("evil.example"));
    assert!(raw("evil.example:8089").starts_with("HTTP/1.1 403"));
    assert!(raw("localhost").starts_with("HTTP/1.1 200"), "{}", raw("localhost"));
    assert!(raw("LoadBox.internal:8089").starts_with("HTTP/1.1 200"), "--allowed-host");
    assert_eq!(server.stats().count("/hello", 200), 0, "no refused request started load");

    // The page's own request: same origin, JSON.
    let (status, _, text) = http(
        &api.addr,
        "POST",
        "/v1/runs",
        &[("content-type", "application/json; charset=utf-8"), ("origin", &own_origin)],
        &body,
    );
    assert_eq!(status, 201, "{text}");
    served_at_least(&server, "/hello", 5);
}

/// Item 9: rates too small to schedule and durations beyond a day are usage
/// errors in the CLI and the API, never a panic or a run that ends `done`.
#[test]
fn extreme_numbers_are_refused_not_panicked_on() {
    let url = "http://127.0.0.1:9/hello";
    for rate in ["1e-300", "1e-19", "0.00001", "5e-324", "inf", "NaN", "-1", "1e300"] {
        let rate_flag = format!("--rate={rate}");
        let out = controller(&["run", "--url", url, "-n", "5", &rate_flag, "-c", "5", "--threads", "1"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "--rate {rate}: {err}");
        assert!(err.contains("-q/--rate") && !err.contains("panicked"), "--rate {rate}: {err}");
        assert!(err.len() < 200, "one short line: {err}");
    }
    for (flag, value) in [("-z", "25h"), ("--ramp-up", "100000d"), ("--timeout", "2d")] {
        let limit = if flag == "-z" { vec!["--rate", "10"] } else { vec!["-n", "5"] };
        let mut args = vec!["run", "--url", url, flag, value];
        args.extend(limit);
        let out = controller(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains("longer than the 1day limit"), "{flag} {value}: {err}");
    }
    let out = controller(&["run", "--scenario", "/dev/null", "-n", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let api = spawn_serve(&[]);
    for (field, value) in [
        ("rate", json!(1e-300)),
        ("rate", json!(1e-19)),
        ("duration", json!(1e8)),
        ("duration", json!("25h")),
        ("timeout", json!("2d")),
        ("ramp_up", json!(90000)),
    ] {
        let mut body = json!({ "url": url, "concurrency": 5, "threads": 1 });
        body[field] = value.clone();
        if field != "duration" {
            body["requests"] = json!(5);
        }
        let (status, e) = http_json(&api.addr, "POST", "/v1/runs", &[], &body.to_string());
        assert_eq!(status, 400, "{field} = {value}: {e}");
        assert_eq!(e["field"], field, "{e}");
    }
    let (_, runs) = http_json(&api.addr, "GET", "/v1/runs", &[], "");
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "no run was started: {runs}");
}

/// Item 9, the floor itself: the smallest rate allowed runs and sends what
/// it was asked (the first slot is due at once), and no worker panics.
#[test]
fn the_smallest_rate_runs_without_panicking() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let rate = (1.0f64 / 86_400.0).to_string();
    let run =
        Run::new(&url).duration("1s").connections(5).args(&["--rate", &rate, "--threads", "1"]).with_json_report();
    let out = run.output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let report = json_report(&out);
    assert_eq!(report["total_requests"], server.stats().count("/hello", 200), "{report}");
    assert!(report["total_requests"].as_u64() >= Some(1), "the first slot is due at once: {report}");
}

/// Item 10: a 5 MiB body reaches the target when the agent allows 8 MiB.
#[test]
fn bodies_up_to_max_body_travel() {
    let server = target(1);
    let url = format!("http://{}/echo", server.local_addr());
    let agent = spawn_agent(&["--max-body", &(8 << 20).to_string()]);
    let dir = PemDir::new("big-body");
    let body = dir.write("body", vec![b'x'; 5 << 20]);
    let out = Run::new(&url)
        .agents(&[&agent])
        .requests(3)
        .connections(1)
        .args(&["-m", "POST", "-d", &format!("@{body}")])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(server.stats().count_method("POST", "/echo", 200), 3);
}

/// Item 11: files are read only when regular and small enough; header and
/// URL oddities get their own answer.
#[test]
fn files_and_odd_input() {
    let url = "http://127.0.0.1:9/hello";
    let dir = PemDir::new("fifo");
    let fifo = dir.path("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let cases: [(Vec<String>, &str); 5] = [
        (vec!["-d".into(), "@/dev/zero".into()], "/dev/zero is not a regular file (a device)"),
        (vec!["-d".into(), format!("@{fifo}")], "is not a regular file (a FIFO)"),
        (vec!["--agents".into(), format!("@{fifo}")], "is not a regular file (a FIFO)"),
        (vec!["--agents".into(), "@/dev/zero".into()], "is not a regular file (a device)"),
        (vec!["-H".into(), "X-A: a\x01b".into()], "contains the control byte 0x01"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["run", "--url", url, "-n", "1", "--dry-run"];
        args.extend(extra.iter().map(String::as_str));
        let t0 = Instant::now();
        let out = controller(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{extra:?} hung for {:?}", t0.elapsed());
    }
    let scenario = dir.write(
        "s.toml",
        format!(
            "base_url = \"http://127.0.0.1:9\"\n[[user]]\nname = \"u\"\n[[user.request]]\nname = \"r\"\npath = \"/\"\n\
             method = \"POST\"\nbody_file = \"{fifo}\"\n"
        ),
    );
    let out = controller(&["run", "--scenario", &scenario, "-n", "1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a regular file (a FIFO)"), "{}", stderr(&out));

    // Raw UTF-8 in a URL path goes out percent-encoded.
    let server = target(1);
    // The target has no such page: its 404 counts as the success here.
    let out = Run::new(format!("http://{}/café", server.local_addr()))
        .requests(2)
        .connections(1)
        .args(&["--success-status", "404"])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(server.stats().path_total("/caf%C3%A9"), 2);

    // The API token's scheme is case-insensitive; a NUL (which no command
    // line can carry) in a header value is named as what it is.
    let api = spawn_serve(&["--api-token", TOKEN]);
    let lower = format!("bearer {TOKEN}");
    let (status, _) = http_json(&api.addr, "GET", "/v1/runs", &[("authorization", &lower)], "");
    assert_eq!(status, 200);
    let body = json!({ "url": url, "requests": 1, "headers": { "X-A": "a\u{0}b" } }).to_string();
    let (status, e) = http_json(&api.addr, "POST", "/v1/runs", &[("authorization", &lower)], &body);
    assert_eq!((status, e["field"].as_str()), (400, Some("headers")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("control byte 0x00"), "{e}");
}

/// Item 11: `--keep N` keeps N finished runs, not N + 1.
#[test]
fn serve_keeps_what_keep_says() {
    let server = target(1);
    let api = spawn_serve(&["--keep", "2"]);
    let url = format!("http://{}/hello", server.local_addr());
    for i in 1..=4u64 {
        let body = json!({ "url": url, "requests": 1, "concurrency": 1 }).to_string();
        let (status, created) = http_json(&api.addr, "POST", "/v1/runs", &[], &body);
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let over = within(Duration::from_secs(30), || {
            http_json(&api.addr, "GET", &format!("/v1/runs/{id}"), &[], "").1["state"] == "done"
        });
        assert!(over.is_some(), "run {i} never finished");
        let (_, runs) = http_json(&api.addr, "GET", "/v1/runs", &[], "");
        assert_eq!(runs["runs"].as_array().unwrap().len() as u64, i.min(2), "{runs}");
    }
}
