//! `--metrics-listen` scraped by a real Prometheus server: what it stores
//! must be the run's exact totals (the report's, the target's), its
//! `histogram_quantile` within a bucket of the report's exact p99, and the
//! exposition must pass `promtool check metrics`.
//!
//! Needs Debian's `prometheus` package (`/usr/bin/prometheus`, `promtool`);
//! skips, saying so, without it, unless `VOLLEY_REQUIRE_PROMETHEUS=1` (set
//! by `.ci/run`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controller::metrics::BUCKETS_SECONDS;
use serde_json::Value;
use volley_testkit::{http_json, spawn_agent, spawn_controller, spawn_serve, target, within};

/// A binary from `PATH` or Debian's place for it.
fn tool(name: &str) -> Option<PathBuf> {
    let usr = Path::new("/usr/bin").join(name);
    if usr.is_file() {
        return Some(usr);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// Prometheus and promtool, or `None` (the test skips) unless they are required.
fn tools() -> Option<(PathBuf, PathBuf)> {
    match (tool("prometheus"), tool("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ if std::env::var("VOLLEY_REQUIRE_PROMETHEUS").as_deref() == Ok("1") => {
            panic!("VOLLEY_REQUIRE_PROMETHEUS=1 but prometheus or promtool is not installed")
        }
        _ => {
            eprintln!("SKIP: prometheus or promtool not installed (Debian package `prometheus`)");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("its address").port()
}

/// GET `path` from `addr`: the status and body, or `None` when it cannot connect.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An instant query to Prometheus at `addr`: the result vector.
fn query(addr: &str, promql: &str) -> Vec<Value> {
    let encoded: String = promql
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let (status, body) = get(addr, &format!("/api/v1/query?query={encoded}")).expect("Prometheus answers");
    assert_eq!(status, 200, "{promql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {body}"));
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The one value of an instant query's result.
fn scalar(addr: &str, promql: &str) -> f64 {
    let r = query(addr, promql);
    assert_eq!(r.len(), 1, "{promql}: {r:?}");
    r[0]["value"][1].as_str().expect("a value").parse().expect("a number")
}

/// Index of the bucket holding `seconds` (the `+Inf` bucket past the last bound).
fn bucket(seconds: f64) -> usize {
    BUCKETS_SECONDS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS_SECONDS.len())
}

#[test]
fn prometheus_scrapes_the_exact_totals_of_a_run() {
    let Some((prometheus, promtool)) = tools() else { return };
    let server = target(2);
    let agent_metrics = format!("127.0.0.1:{}", free_port());
    let a = spawn_agent(&["--threads", "1", "--metrics-listen", &agent_metrics]);
    let b = spawn_agent(&["--threads", "1"]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let web = format!("127.0.0.1:{}", free_port());
    let dir = std::env::temp_dir().join(format!("volley-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).expect("a temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: volley\n    \
             static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .expect("write the config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("a log file");
    let _prometheus = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let ready = within(Duration::from_secs(60), || get(&web, "/-/ready").is_some_and(|(s, _)| s == 200));
    assert!(ready.is_some(), "prometheus not ready: {}", std::fs::read_to_string(dir.join("prometheus.log")).unwrap());

    let url = format!("http://{}/hello", server.local_addr());
    let agents = format!("{},{}", a.addr, b.addr);
    let run = spawn_controller(&[
        "run",
        "--agents",
        &agents,
        "--url",
        &url,
        "-z",
        "3s",
        "-c",
        "4",
        "--quiet",
        "--output",
        "json",
        "--metrics-listen",
        &metrics,
        "--metrics-linger",
        "3s",
    ]);
    // Scrape it too: the last scrape, of the finished run, goes to promtool.
    let mut last = None;
    let mut most_in_flight: f64 = 0.0;
    let started = Instant::now();
    let mut run = run;
    while run.child.try_wait().expect("wait").is_none() && started.elapsed() < Duration::from_secs(60) {
        if let Some((200, body)) = get(&metrics, "/metrics") {
            most_in_flight = samples(&body, "volley_in_flight").iter().map(|(_, v)| *v).fold(most_in_flight, f64::max);
            let over = body
                .lines()
                .find(|l| l.starts_with("volley_run_active{"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                == Some(0.0);
            if over {
                last = Some(body);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, out, lines) = run.finish();
    let stderr: Vec<_> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(status.success(), "{status}: {stderr:?}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let total = report["total_requests"].as_u64().expect("total_requests");
    let served = server.stats().count("/hello", 200);
    assert!(total > 1000, "a few seconds of load: {total}");
    assert_eq!(total, served, "the report counts what the target served");

    // Closed model: each of the 4 connections has a request out nearly always.
    assert!((1.0..=4.0).contains(&most_in_flight), "requests in flight: at most {most_in_flight}");

    // The series stay queryable after the controller went away: the range
    // functions read the samples before the staleness marker.
    let sum = scalar(&web, "sum(max_over_time(volley_requests_total[5m]))");
    assert_eq!(sum as u64, total, "Prometheus' sum is the report's total");
    let ok = scalar(&web, r#"sum(max_over_time(volley_requests_total{outcome="success",status_class="2xx"}[5m]))"#);
    assert_eq!(ok as u64, served);

    let p99_ms = report["latency_ms"]["p99"].as_f64().expect("p99");
    let q = scalar(
        &web,
        r#"histogram_quantile(0.99, sum by (le) (max_over_time(volley_request_duration_seconds_bucket{latency="corrected"}[5m])))"#,
    );
    let (exact, bucketed) = (bucket(p99_ms / 1000.0), bucket(q));
    assert!(
        exact.abs_diff(bucketed) <= 1,
        "histogram_quantile says {q} s (bucket {bucketed}), the report's p99 is {p99_ms} ms (bucket {exact})"
    );

    let up = query(&web, "max_over_time(volley_agent_up[5m]) == 1");
    let mut named: Vec<String> = up.iter().map(|s| s["metric"]["agent"].as_str().unwrap_or("").to_owned()).collect();
    named.sort();
    let mut expected = vec![a.addr.clone(), b.addr.clone()];
    expected.sort();
    assert_eq!(named, expected, "both agents up");

    // The agent's own health: one run started and finished, idle now.
    let (status, health) = get(&agent_metrics, "/metrics").expect("the agent's /metrics");
    assert_eq!(status, 200, "{health}");
    for line in ["volley_agent_runs_started_total 1", "volley_agent_runs_finished_total 1", "volley_agent_busy 0"] {
        assert!(health.lines().any(|l| l == line), "no {line:?} in\n{health}");
    }
    assert!(health.contains("volley_agent_process_cpu_seconds_total "), "{health}");

    // The text format as a plain scraper gets it passes promtool's lint.
    let last = last.expect("a scrape of the finished run during --metrics-linger");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    check.stdin.take().expect("stdin").write_all(last.as_bytes()).expect("feed promtool");
    let checked = check.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{last}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The samples of `family` in a text exposition: (labels, value).
fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix(family)?.strip_prefix('{'))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once("} ")?;
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// Runs `body` through the API at `api`; waits until it is over.
fn api_run(api: &str, body: &str) -> String {
    let (status, created) = http_json(api, "POST", "/v1/runs", &[], body);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_owned();
    let over = within(Duration::from_secs(60), || {
        let (_, v) = http_json(api, "GET", &format!("/v1/runs/{id}"), &[], "");
        v["state"] != "running"
    });
    assert!(over.is_some(), "run {id} still running");
    id
}

#[test]
fn serve_exports_each_run_labelled_with_its_id_until_the_next_starts() {
    let server = target(2);
    let agent = spawn_agent(&["--threads", "1"]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let api = spawn_serve(&["--agents", &agent.addr, "--metrics-listen", &metrics]);
    let url = format!("http://{}/hello", server.local_addr());
    let first = api_run(&api.addr, &format!(r#"{{"url": "{url}", "requests": 3001, "concurrency": 2}}"#));
    let (status, text) = get(&metrics, "/metrics").expect("serve's /metrics");
    assert_eq!(status, 200, "{text}");
    let requests = samples(&text, "volley_requests_total");
    assert!(!requests.is_empty(), "{text}");
    let label = format!(r#"run_id="{first}""#);
    assert!(requests.iter().all(|(l, _)| l.contains(&label)), "{requests:?}");
    assert_eq!(requests.iter().map(|(_, v)| v).sum::<f64>() as u64, 3001);
    assert_eq!(server.stats().count("/hello", 200), 3001);
    assert_eq!(samples(&text, "volley_run_active"), [(label.as_str(), 0.0)], "over, and still there");

    // The next run replaces the finished one.
    let second = api_run(&api.addr, &format!(r#"{{"url": "{url}", "requests": 500, "concurrency": 1}}"#));
    let (_, text) = get(&metrics, "/metrics").expect("serve's /metrics");
    let requests = samples(&text, "volley_requests_total");
    assert!(requests.iter().all(|(l, _)| l.contains(&format!(r#"run_id="{second}""#))), "{requests:?}");
    assert_eq!(requests.iter().map(|(_, v)| v).sum::<f64>() as u64, 500);
    server.shutdown();
}
