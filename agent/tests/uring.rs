//! The io_uring engine (`--io`) against the epoll one: the same features
//! give the same exact counts on both (count mode, open model, stages,
//! take-overs, `Connection: close`), checked against what the target
//! served; the agent says which engine it runs (ready line, `Describe`,
//! `Started`) and why a run falls back to epoll; and where io_uring is
//! blocked (a seccomp filter denying `io_uring_setup`, as container
//! runtimes' default profiles do) `--io uring` refuses to start with the
//! reason while `--io auto` falls back to epoll.
//!
//! Skips the io_uring half, saying so, on a host without io_uring.

use agent::engine;
use agent::plan::Plan;
use agent::uring::{Engine, IoChoice};
use futures::StreamExt;
use volley_proto::agent_client::AgentClient;
use volley_proto::{DescribeRequest, PROTOCOL_VERSION, RunPlan, run_event, run_plan};
use volley_stats::Totals;

/// The engines this host can run: epoll always, io_uring when it is allowed.
fn engines() -> Vec<Engine> {
    match agent::uring::probe() {
        Ok(()) => vec![Engine::Epoll, Engine::Uring],
        Err(why) => {
            eprintln!("SKIP the io_uring half: {why}");
            vec![Engine::Epoll]
        }
    }
}

fn plan(url: String, limit: run_plan::Limit, connections: u32) -> RunPlan {
    RunPlan {
        protocol_version: PROTOCOL_VERSION,
        url,
        limit: Some(limit),
        connections,
        threads: 2,
        timeout_ms: 5000,
        ..Default::default()
    }
}

/// Runs `p` on `io` to its end; `during` may act on the running run.
async fn run_on(io: Engine, p: RunPlan, during: impl FnOnce(&engine::Run)) -> Totals {
    let mut plan = Plan::from_proto(p, 2).await.unwrap();
    plan.io = io;
    let mut run = engine::start(plan).unwrap();
    during(&run);
    let mut total = Totals::default();
    while let Some(d) = run.next_delta().await {
        total.add(&d);
    }
    assert!(run.panic().is_none(), "{io:?}: {:?}", run.panic());
    total
}

#[tokio::test]
async fn count_mode_is_exact_on_both_engines() {
    for io in engines() {
        let server = volley_testkit::target(1);
        let url = format!("http://{}/hello", server.local_addr());
        let t = run_on(io, plan(url, run_plan::Limit::Requests(3001), 7), |_| {}).await;
        assert_eq!((t.requests, t.successes, t.failures), (3001, 3001, 0), "{io:?}: {:?}", t.errors);
        assert_eq!(server.stats().count("/hello", 200), 3001, "{io:?}: the target served what was counted");
        assert_eq!(t.connects, 7, "{io:?}: one connection each, kept alive");
        assert_eq!(t.bytes_received, 3001 * (t.bytes_received / 3001), "{io:?}");
        server.shutdown();
    }
}

#[tokio::test]
async fn open_model_with_stages_and_a_take_over_are_exact_on_both_engines() {
    for io in engines() {
        let server = volley_testkit::target(1);
        let url = format!("http://{}/hello", server.local_addr());
        let mut p = plan(url, run_plan::Limit::DurationMs(1500), 4);
        p.rate = 400.0;
        let t = run_on(io, p, |run| {
            // A lost agent's connections, taken over at once.
            run.control().add_connections(2);
        })
        .await;
        assert!(t.requests > 0, "{io:?}");
        assert_eq!(t.requests, t.successes, "{io:?}: {:?}", t.errors);
        assert_eq!(server.stats().count("/hello", 200), t.requests, "{io:?}");
        // Every slot due before the end was sent or counted as missed.
        assert!(t.requests + t.missed >= 590, "{io:?}: {} sent, {} missed", t.requests, t.missed);
        assert_eq!(t.connects, 6, "{io:?}: the 2 taken over opened too");

        // Closed model with stages: connections open and close with the profile.
        let mut p = plan(format!("http://{}/hello", server.local_addr()), run_plan::Limit::DurationMs(1200), 4);
        p.stages = vec![
            volley_proto::Stage { duration_ms: 600, level: 1.0 },
            volley_proto::Stage { duration_ms: 600, level: 0.25 },
        ];
        let before = server.stats().count("/hello", 200);
        let t = run_on(io, p, |_| {}).await;
        assert!(t.requests > 0 && t.requests == t.successes, "{io:?}: {:?}", t.errors);
        assert_eq!(server.stats().count("/hello", 200) - before, t.requests, "{io:?}");
        server.shutdown();
    }
}

#[tokio::test]
async fn refused_connections_and_timeouts_are_classed_alike_on_both_engines() {
    for io in engines() {
        // Nothing listens there: every attempt is a refused connect.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let t = run_on(io, plan(format!("http://{addr}/"), run_plan::Limit::Requests(5), 1), |_| {}).await;
        assert_eq!(t.requests, 5, "{io:?}");
        assert_eq!(t.errors.get(&volley_stats::ErrorClass::ConnectRefused), Some(&5), "{io:?}: {:?}", t.errors);

        // A server that accepts and never answers: each request times out.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = plan(format!("http://{}/", silent.local_addr().unwrap()), run_plan::Limit::Requests(2), 1);
        p.timeout_ms = 200;
        let t = run_on(io, p, |_| {}).await;
        assert_eq!(t.errors.get(&volley_stats::ErrorClass::Timeout), Some(&2), "{io:?}: {:?}", t.errors);
    }
}

async fn client(addr: &str) -> AgentClient<tonic::transport::Channel> {
    AgentClient::connect(format!("http://{addr}")).await.unwrap()
}

/// The `Started` event of a run of `p` on the agent at `addr`, the run drained.
async fn started(addr: &str, p: RunPlan) -> volley_proto::Started {
    let mut stream = client(addr).await.run(p).await.unwrap().into_inner();
    let mut started = None;
    while let Some(ev) = stream.next().await {
        if let run_event::Event::Started(s) = ev.unwrap().event.unwrap() {
            started = Some(s);
        }
    }
    started.expect("no Started event")
}

#[tokio::test]
async fn the_agent_says_which_engine_runs_and_why_a_run_falls_back() {
    if agent::uring::probe().is_err() {
        eprintln!("SKIP the_agent_says_which_engine_runs: no io_uring here");
        return;
    }
    let server = volley_testkit::target(1);
    let bin = env!("CARGO_BIN_EXE_agent");
    let uring = volley_testkit::agents::spawn_agent_bin(bin, "127.0.0.1:0", &["--io", "uring", "--threads", "2"]);
    assert!(uring.ready_line.ends_with(", io engine io_uring"), "{}", uring.ready_line);
    let epoll = volley_testkit::agents::spawn_agent_bin(bin, "127.0.0.1:0", &["--io", "epoll"]);
    assert!(epoll.ready_line.ends_with(", io engine epoll"), "{}", epoll.ready_line);
    let info = client(&uring.addr).await.describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(info.io_engine, "io_uring");
    let info = client(&epoll.addr).await.describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(info.io_engine, "epoll");

    let url = format!("http://{}/hello", server.local_addr());
    let s = started(&uring.addr, RunPlan { run_id: "a".into(), ..plan(url.clone(), run_plan::Limit::Requests(50), 2) })
        .await;
    assert_eq!((s.io_engine.as_str(), s.io_fallback.as_str()), ("io_uring", ""));
    // HTTP/2 is not on the io_uring engine: the run says it fell back.
    let h2 = RunPlan { run_id: "b".into(), http2: true, ..plan(url.clone(), run_plan::Limit::Requests(50), 2) };
    let s = started(&uring.addr, h2).await;
    assert_eq!((s.io_engine.as_str(), s.io_fallback.as_str()), ("epoll", "HTTP/2 runs on epoll"));
    let s = started(&epoll.addr, RunPlan { run_id: "c".into(), ..plan(url, run_plan::Limit::Requests(50), 2) }).await;
    assert_eq!((s.io_engine.as_str(), s.io_fallback.as_str()), ("epoll", ""));
    assert_eq!(server.stats().count("/hello", 200), 150);
    server.shutdown();
}

/// Runs `f` on a thread whose seccomp filter makes `io_uring_setup` fail
/// with EPERM, as Docker's default profile does; processes it starts
/// inherit the filter.
fn with_io_uring_blocked<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
        // io_uring_setup: 425 on every architecture (numbered after the
        // tables were unified).
        const IO_URING_SETUP: i64 = 425;
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        let filter = SeccompFilter::new(
            [(IO_URING_SETUP, vec![])].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(1),
            arch,
        )
        .unwrap();
        let program: BpfProgram = filter.try_into().unwrap();
        seccompiler::apply_filter(&program).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn where_io_uring_is_blocked_uring_refuses_and_auto_falls_back() {
    let bin = env!("CARGO_BIN_EXE_agent");
    let (refused, fell_back, probe) = with_io_uring_blocked(move || {
        let out = std::process::Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--io", "uring"])
            .env_remove("VOLLEY_IO")
            .output()
            .unwrap();
        // Stopped when dropped.
        let auto = volley_testkit::agents::spawn_agent_bin(bin, "127.0.0.1:0", &["--io", "auto"]);
        (out, auto.ready_line.clone(), agent::uring::resolve(IoChoice::Auto))
    });
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--io uring: io_uring_setup is not permitted"), "{stderr}");
    assert!(stderr.contains("--io epoll"), "the error says what to do instead: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    assert!(
        fell_back.contains(", io engine epoll (io_uring unavailable: io_uring_setup is not permitted"),
        "{fell_back}"
    );
    let probe = probe.unwrap();
    assert_eq!(probe.engine, Engine::Epoll);
    assert!(probe.describe().starts_with("epoll (io_uring unavailable: "), "{}", probe.describe());
}
