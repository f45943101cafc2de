//! HTTP/2 (`--http2`, `--streams`): exact counts over h2c and over TLS
//! against the target-server across two agents, against a real nginx
//! (`listen ... http2`, counted by its stub_status), and against small
//! in-process h2 servers that lower SETTINGS_MAX_CONCURRENT_STREAMS, send
//! GOAWAY mid-run, or reset streams (RST_STREAM) with given codes. Every
//! check compares the report with what the server itself counted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use volley_testkit::{PemDir, Run, TestCa, spawn_agent, stdout};

const H2: [&str; 3] = ["--http2", "--streams", "10"];

#[test]
fn h2c_and_tls_count_exactly_across_two_agents() {
    let server = volley_testkit::target(2);
    let (a, b) = (spawn_agent(&[]), spawn_agent(&[]));
    let url = format!("http://127.0.0.1:{}/hello", server.local_addr().port());
    let r = Run::new(&url).agents(&[&a, &b]).requests(3001).connections(4).args(&H2).json();
    assert_eq!((r["total_requests"].as_u64(), r["successful_requests"].as_u64()), (Some(3001), Some(3001)), "{r}");
    assert_eq!(server.stats().count("/hello", 200), 3001);
    assert_eq!(r["protocol"], "HTTP/2");
    assert_eq!(r["http2"]["streams"], 10);
    assert_eq!(r["http2"]["in_flight"], 40);
    assert_eq!(r["http2"]["streams_limited"], false, "{}", r["http2"]);
    // One connection per -c, streams multiplexed on it.
    assert_eq!(r["connections_opened"], 4, "{r}");

    // HTTP/2 over TLS, negotiated by ALPN.
    let dir = PemDir::new("http2-tls");
    let ca = TestCa::new();
    dir.write("ca.pem", ca.pem());
    let leaf = ca.leaf(&["localhost"]).ip(Ipv4Addr::LOCALHOST).sign();
    let tls = volley_testkit::target_tls(2, &leaf);
    let url = format!("https://127.0.0.1:{}/hello", tls.local_addr().port());
    let ca_path = dir.path("ca.pem");
    let r = Run::new(&url)
        .agents(&[&a, &b])
        .requests(2002)
        .connections(2)
        .args(&H2)
        .args(&["--target-ca", &ca_path])
        .json();
    assert_eq!((r["total_requests"].as_u64(), r["successful_requests"].as_u64()), (Some(2002), Some(2002)), "{r}");
    assert_eq!(tls.stats().count("/hello", 200), 2002);
    assert_eq!(r["connections_opened"], 2, "{r}");

    // The text report names the protocol and the streams.
    let out = Run::new(&url).requests(100).connections(1).args(&H2).args(&["-k", "--quiet"]).output();
    let text = stdout(&out);
    assert!(text.contains("Protocol:               HTTP/2"), "{text}");
    assert!(text.contains("Streams per connection: 10"), "{text}");
    assert_eq!(tls.stats().count("/hello", 200), 2102);

    // The open model and -z hold over streams too: every request sent is counted.
    let url = format!("http://127.0.0.1:{}/hello", server.local_addr().port());
    let r = Run::new(&url).agents(&[&a, &b]).rate(400).duration("1s").connections(2).args(&H2).json();
    let total = r["total_requests"].as_u64().unwrap();
    assert!(total > 300, "{r}");
    assert_eq!(server.stats().count("/hello", 200), 3001 + total);
    server.shutdown();
    tls.shutdown();
}

#[test]
fn a_killed_agent_s_share_moves_over_http2_streams() {
    let server = volley_testkit::target(2);
    let a = spawn_agent(&["--threads", "1"]);
    let mut b = spawn_agent(&["--threads", "1"]);
    // Count mode: 4 connections × 4 streams to a 2 ms endpoint.
    let url = format!("http://127.0.0.1:{}/delay/2", server.local_addr().port());
    let n = 12_000u64;
    let agents = format!("{},{}", a.addr, b.addr);
    let streams = ["--http2", "--streams", "4"];
    let ctl = Run::new(&url).agents(&[&agents]).connections(4).requests(n).args(&streams).with_json_report().spawn();
    volley_testkit::served_at_least(&server, "/delay/2", 3000);
    volley_testkit::signal(b.child.id(), "KILL");
    let _ = b.child.wait();
    let (status, out, lines) = ctl.finish();
    assert!(status.success(), "controller failed: {status:?} {lines:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["total_requests"], n, "the report accounts for exactly n");
    let unaccounted = r["unaccounted_max"].as_u64().expect("an unaccounted bound");
    let served = server.stats().count("/delay/2", 200);
    assert!(served >= n && served <= n + unaccounted, "served {served}, n {n}, bound {unaccounted}");
    let (lost, survivor) = (volley_testkit::agent_row(&r, &b.addr), volley_testkit::agent_row(&r, &a.addr));
    assert_eq!((lost["state"].as_str(), survivor["state"].as_str()), (Some("lost"), Some("done")), "{r}");
    assert_eq!(
        survivor["total_requests"].as_u64().unwrap() + lost["total_requests"].as_u64().unwrap(),
        n,
        "the survivor sent the lost agent's unfinished share"
    );

    // Duration mode: the survivor takes over the lost agent's connections,
    // each with its streams.
    let mut c = spawn_agent(&["--threads", "1"]);
    let before = server.stats().count("/delay/2", 200);
    let agents = format!("{},{}", a.addr, c.addr);
    let ctl = Run::new(&url).agents(&[&agents]).duration("4s").connections(6).args(&streams).with_json_report().spawn();
    volley_testkit::served_at_least(&server, "/delay/2", before + 500);
    volley_testkit::signal(c.child.id(), "KILL");
    let _ = c.child.wait();
    let (status, out, lines) = ctl.finish();
    assert!(status.success(), "controller failed: {status:?} {lines:?}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(volley_testkit::agent_row(&r, &a.addr)["connections"], 6, "the survivor took over 3 connections: {r}");
    assert_eq!(volley_testkit::agent_row(&r, &c.addr)["state"], "lost");
    let served = server.stats().count("/delay/2", 200) - before;
    assert!(served >= r["total_requests"].as_u64().unwrap(), "served {served}: {r}");
    server.shutdown();
}

#[test]
fn streams_without_http2_and_out_of_range_are_usage_errors() {
    for (args, needle) in [
        (&["--streams", "4"][..], "--streams: more than one stream per connection needs --http2"),
        (&["--http2", "--streams", "0"][..], "--streams: 0 is not in 1..=1000"),
        (&["--h2", "--streams", "1001"][..], "--streams: 1001 is not in 1..=1000"),
    ] {
        let out = Run::new("http://127.0.0.1:9/").requests(1).args(args).output();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// What an in-process h2 server does.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// SETTINGS_MAX_CONCURRENT_STREAMS to announce.
    max_streams: Option<u32>,
    /// Send GOAWAY (graceful: the streams already open are answered) after
    /// this many requests on a connection.
    goaway_after: Option<u64>,
    /// Reset every k-th request with this code instead of answering.
    resets: [Option<(u64, h2::Reason)>; 2],
}

/// A small HTTP/2 server (the `h2` crate's server API) counting what it did.
struct H2Server {
    port: u16,
    /// 200 responses sent.
    served: Arc<AtomicU64>,
    /// Streams reset, by error code.
    reset: Arc<Mutex<BTreeMap<u32, u64>>>,
    /// GOAWAY frames sent.
    goaways: Arc<AtomicU64>,
}

fn h2_server(b: Behaviour) -> H2Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicU64::new(0));
    let reset = Arc::new(Mutex::new(BTreeMap::new()));
    let goaways = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let s = H2Server { port, served: served.clone(), reset: reset.clone(), goaways: goaways.clone() };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // Serves until the test process ends (the test's runs are bounded).
            while let Ok((socket, _)) = listener.accept().await {
                let (served, reset, goaways, seen) = (served.clone(), reset.clone(), goaways.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut builder = h2::server::Builder::new();
                    if let Some(m) = b.max_streams {
                        builder.max_concurrent_streams(m);
                    }
                    let Ok(mut conn) = builder.handshake::<_, Bytes>(socket).await else { return };
                    let mut on_conn = 0u64;
                    while let Some(Ok((_request, mut respond))) = conn.accept().await {
                        let k = seen.fetch_add(1, Ordering::Relaxed) + 1;
                        on_conn += 1;
                        if b.goaway_after == Some(on_conn) {
                            conn.graceful_shutdown();
                            goaways.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some((_, reason)) = b.resets.iter().flatten().find(|(every, _)| k % every == 0) {
                            respond.send_reset(*reason);
                            *reset.lock().unwrap().entry(u32::from(*reason)).or_default() += 1;
                            continue;
                        }
                        let response = http::Response::builder().status(200).body(()).unwrap();
                        if let Ok(mut body) = respond.send_response(response, false)
                            && body.send_data(Bytes::from_static(b"Hello World!"), true).is_ok()
                        {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
    });
    s
}

#[test]
fn a_lower_stream_limit_holds_the_extra_streams_back_and_the_report_says_so() {
    let server = h2_server(Behaviour { max_streams: Some(3), ..Default::default() });
    let url = format!("http://127.0.0.1:{}/", server.port);
    let r = Run::new(&url).requests(1500).connections(2).args(&H2).json();
    assert_eq!((r["total_requests"].as_u64(), r["successful_requests"].as_u64()), (Some(1500), Some(1500)), "{r}");
    assert_eq!(server.served.load(Ordering::Relaxed), 1500);
    assert_eq!(r["http2"]["server_max_streams"], 3, "{}", r["http2"]);
    assert_eq!(r["http2"]["streams_limited"], true);
    assert_eq!(r["connections_opened"], 2, "no stream was refused, no connection lost: {r}");
    let out = Run::new(&url).requests(100).connections(1).args(&H2).quiet().output();
    assert!(stdout(&out).contains("Server max streams:     3 (SETTINGS_MAX_CONCURRENT_STREAMS below --streams"));
}

#[test]
fn goaway_mid_run_cuts_requests_off_as_failed_and_the_run_reconnects() {
    let server = h2_server(Behaviour { goaway_after: Some(200), ..Default::default() });
    let url = format!("http://127.0.0.1:{}/", server.port);
    let r = Run::new(&url).requests(2000).connections(2).args(&H2).json();
    let served = server.served.load(Ordering::Relaxed);
    assert_eq!(r["total_requests"], 2000, "{r}");
    assert_eq!(r["successful_requests"].as_u64(), Some(served), "{r}");
    // Requests the GOAWAY cut off are failed with their own class; nothing else failed.
    let cut = r["errors"]["h2_goaway"].as_u64().unwrap_or(0);
    assert_eq!(served + cut, 2000, "{}", r["errors"]);
    assert_eq!(r["errors"].as_object().unwrap().len(), usize::from(cut > 0), "{}", r["errors"]);
    // Each connection answered its 200 and went away; the slots reconnected.
    let goaways = server.goaways.load(Ordering::Relaxed);
    assert!(goaways >= 5, "{goaways} GOAWAYs");
    let opened = r["connections_opened"].as_u64().unwrap();
    assert!((goaways..=goaways + 2).contains(&opened), "{opened} connections for {goaways} GOAWAYs");
}

#[test]
fn reset_streams_are_counted_by_error_code() {
    let resets = [Some((5, h2::Reason::REFUSED_STREAM)), Some((7, h2::Reason::ENHANCE_YOUR_CALM))];
    let server = h2_server(Behaviour { resets, ..Default::default() });
    let url = format!("http://127.0.0.1:{}/", server.port);
    let r = Run::new(&url).requests(700).connections(2).args(&H2).json();
    let reset = server.reset.lock().unwrap().clone();
    // Every 5th refused (140), every 7th not a multiple of 5 calmed (80).
    assert_eq!(reset, BTreeMap::from([(7, 140), (11, 80)]));
    assert_eq!(r["total_requests"], 700, "{r}");
    assert_eq!(r["errors"]["h2_rst_REFUSED_STREAM"], 140, "{}", r["errors"]);
    assert_eq!(r["errors"]["h2_rst_ENHANCE_YOUR_CALM"], 80, "{}", r["errors"]);
    assert_eq!(r["successful_requests"].as_u64(), Some(server.served.load(Ordering::Relaxed)));
    assert_eq!(r["successful_requests"], 480);
    // A reset ends its stream, not the connection.
    assert_eq!(r["connections_opened"], 2, "{r}");
    let out = Run::new(&url).requests(10).connections(1).args(&H2).quiet().output();
    assert!(stdout(&out).contains("h2_rst_REFUSED_STREAM: 2"), "{}", stdout(&out));
}

/// nginx serving HTTP/2 (h2c) on a port, with stub_status on another.
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

/// Starts nginx with `listen ... http2`, or says why it cannot.
fn nginx() -> Result<Nginx, String> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("nginx is not installed")?;
    let version = Command::new(bin).arg("-V").output().map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&version.stderr).contains("--with-http_v2_module") {
        return Err(format!("{bin} lacks http_v2 (nginx -V has no --with-http_v2_module)"));
    }
    let dir = std::env::temp_dir().join(format!("volley-nginx-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, status_port) = (free_port(), free_port());
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
  # Not nginx's 1000: its GOAWAY would cut requests off (see the GOAWAY test).
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} http2;
    location = /hello {{ default_type text/plain; return 200 "Hello World!"; }}
  }}
  server {{ listen 127.0.0.1:{status_port}; location = /status {{ stub_status; }} }}
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let status = Command::new(bin)
        .args(["-c", &dir.join("nginx.conf").display().to_string(), "-p", &dir.display().to_string()])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("nginx did not start: {status}"));
    }
    Ok(Nginx { dir, port, status_port })
}

/// Requests nginx has served, from stub_status (this request included).
fn nginx_served(n: &Nginx) -> u64 {
    let (status, _, body) = volley_testkit::http(&format!("127.0.0.1:{}", n.status_port), "GET", "/status", &[], "");
    assert_eq!(status, 200, "{body}");
    body.lines().nth(2).unwrap().split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn counts_equal_nginx_stub_status_over_http2() {
    let n = match nginx() {
        Ok(n) => n,
        Err(why) => {
            eprintln!("SKIP counts_equal_nginx_stub_status_over_http2: {why}");
            return;
        }
    };
    let before = nginx_served(&n);
    let (a, b) = (spawn_agent(&[]), spawn_agent(&[]));
    let url = format!("http://127.0.0.1:{}/hello", n.port);
    let r = Run::new(&url).agents(&[&a, &b]).requests(4001).connections(4).args(&H2).json();
    assert_eq!((r["total_requests"].as_u64(), r["successful_requests"].as_u64()), (Some(4001), Some(4001)), "{r}");
    assert_eq!(r["http2"]["server_max_streams"], 128, "nginx's default http2_max_concurrent_streams");
    let after = nginx_served(&n);
    assert_eq!(after - before - 1, 4001, "nginx served exactly what the report counted");
}

#[test]
fn scenario_runs_speak_http2_with_the_flag() {
    // The shop scenario over h2c against the target-server: counts exact.
    let server = volley_testkit::target(1);
    let base = format!("http://127.0.0.1:{}", server.local_addr().port());
    let r = Run::new(&base).scenario(volley_testkit::example_scenario()).users(4).requests(200).arg("--http2").json();
    assert_eq!(r["total_requests"], 200, "{r}");
    assert_eq!(server.stats().total, 200);
    assert!(r["errors"].as_object().unwrap().is_empty(), "{}", r["errors"]);
    assert_eq!(r["protocol"], "HTTP/2");

    // A server that speaks nothing but HTTP/2 answers every request: the
    // users really spoke it.
    let h2_only = h2_server(Behaviour::default());
    let dir = PemDir::new("http2-scenario");
    let file = dir.write("one.toml", "[[user]]\nname = \"u\"\n\n[[user.request]]\nname = \"root\"\npath = \"/\"\n");
    let url = format!("http://127.0.0.1:{}", h2_only.port);
    let r = Run::new(&url).scenario(&file).users(2).requests(50).arg("--http2").json();
    assert_eq!((r["total_requests"].as_u64(), r["successful_requests"].as_u64()), (Some(50), Some(50)), "{r}");
    assert_eq!(h2_only.served.load(Ordering::Relaxed), 50);
    server.shutdown();
}
