//! The lean HTTP/1.1 client against a real nginx: Content-Length bodies,
//! chunked bodies (nginx's gzip output is chunked), keep-alive, and
//! `Connection: close` (nginx closes a connection after `keepalive_requests`
//! requests and says so). nginx counts what it served (`stub_status`), and
//! the engine's counts must match, on both I/O engines (epoll and io_uring).
//! Skips itself, saying so, without nginx.

use std::process::{Command, Stdio};

use agent::engine;
use agent::plan::Plan;
use agent::uring::Engine;
use volley_proto::{Header, PROTOCOL_VERSION, RunPlan, run_plan};
use volley_stats::Totals;

struct Nginx {
    dir: std::path::PathBuf,
    port: u16,
    status_port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nginx() -> Option<Nginx> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| std::path::Path::new(p).exists())?;
    let dir = std::env::temp_dir().join(format!("volley-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, status_port) = (free_port(), free_port());
    let body = "x".repeat(2000);
    let conf = format!(
        r#"daemon on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  keepalive_requests 100;
  gzip on;
  gzip_min_length 1;
  gzip_types text/plain;
  server {{
    listen 127.0.0.1:{port};
    location = /hello {{ default_type text/plain; gzip off; return 200 "Hello World!"; }}
    location = /big {{ default_type text/plain; return 200 "{body}"; }}
  }}
  server {{ listen 127.0.0.1:{status_port}; location = /status {{ stub_status; }} }}
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let ok = Command::new(bin)
        .args(["-c", &dir.join("nginx.conf").display().to_string(), "-p", &dir.display().to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    let n = Nginx { dir, port, status_port };
    // nginx daemonises after binding, so it answers once the command returns.
    Some(n)
}

/// Requests nginx has served, from stub_status (this request included).
fn served(n: &Nginx) -> u64 {
    let (status, _, body) = volley_testkit::http(&format!("127.0.0.1:{}", n.status_port), "GET", "/status", &[], "");
    assert_eq!(status, 200, "{body}");
    body.lines().nth(2).unwrap().split_whitespace().nth(2).unwrap().parse().unwrap()
}

async fn run(io: Engine, url: String, requests: u64, connections: u32, headers: Vec<Header>) -> Totals {
    let plan = RunPlan {
        protocol_version: PROTOCOL_VERSION,
        url,
        headers,
        limit: Some(run_plan::Limit::Requests(requests)),
        connections,
        threads: 2,
        timeout_ms: 5000,
        ..Default::default()
    };
    let mut plan = Plan::from_proto(plan, 2).await.unwrap();
    plan.io = io;
    let mut run = engine::start(plan).unwrap();
    let mut total = Totals::default();
    while let Some(d) = run.next_delta().await {
        total.add(&d);
    }
    total
}

#[tokio::test]
async fn content_length_chunked_keep_alive_and_close_against_nginx() {
    let Some(n) = nginx() else {
        eprintln!("SKIP content_length_chunked_keep_alive_and_close_against_nginx: nginx is not installed");
        return;
    };
    // Both engines, the same checks (io_uring where this host allows it).
    let mut engines = vec![Engine::Epoll];
    match agent::uring::probe() {
        Ok(()) => engines.push(Engine::Uring),
        Err(why) => eprintln!("SKIP the io_uring half: {why}"),
    }
    for io in engines {
        against_nginx(&n, io).await;
    }
}

async fn against_nginx(n: &Nginx, io: Engine) {
    let before = served(n);

    // Content-Length bodies; nginx closes each connection after 100
    // requests with `Connection: close`, so 4 connections x 125 requests
    // must reconnect without losing a request.
    let t = run(io, format!("http://127.0.0.1:{}/hello", n.port), 500, 4, vec![]).await;
    assert_eq!((t.requests, t.successes, t.failures), (500, 500, 0), "{:?}", t.errors);
    assert!(t.connects >= 5, "nginx closed connections after 100 requests: {} connects", t.connects);

    // Chunked bodies: gzip output has no length known in advance.
    let gzip = vec![Header { name: "Accept-Encoding".into(), value: b"gzip".to_vec() }];
    let t = run(io, format!("http://127.0.0.1:{}/big", n.port), 300, 3, gzip).await;
    assert_eq!((t.requests, t.successes), (300, 300), "{:?}", t.errors);
    // A plain 2000-byte body, for comparison: keep-alive, Content-Length.
    let plain = run(io, format!("http://127.0.0.1:{}/big", n.port), 300, 3, vec![]).await;
    assert_eq!(plain.successes, 300);
    assert!(plain.bytes_received > 300 * 2000);
    assert!(t.bytes_received < plain.bytes_received, "the gzip responses were compressed (chunked)");

    let after = served(n);
    assert_eq!(after - before - 1, 1100, "{io:?}: nginx served exactly what the engine counted");
}
