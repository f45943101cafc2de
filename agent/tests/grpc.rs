//! The agent over its real gRPC interface: describe, run, progress deltas
//! that add up to what the target served, busy refusal, bad plans, cancel,
//! and a controller that goes away. The binary's own flags and ready line
//! are tested on the binary; the rest on an agent served in-process
//! through `agent::serve`, the same service the binary serves.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::Code;
use volley_proto::agent_client::AgentClient;
use volley_proto::{CancelRequest, DescribeRequest, PROTOCOL_VERSION, RunPlan, run_event, run_plan};
use volley_stats::Totals;
use volley_testkit::agents::spawn_agent_bin;
use volley_testkit::{InProcessAgent, in_process_agent, target as server_with};

/// An agent with two worker threads, served in this process.
fn spawn_agent() -> InProcessAgent {
    in_process_agent(2)
}

fn target() -> target_server::ServerHandle {
    server_with(1)
}

fn plan(url: String, limit: run_plan::Limit, connections: u32) -> RunPlan {
    RunPlan {
        protocol_version: PROTOCOL_VERSION,
        run_id: "test".into(),
        url,
        limit: Some(limit),
        connections,
        ..Default::default()
    }
}

async fn client(addr: &str) -> AgentClient<tonic::transport::Channel> {
    AgentClient::connect(format!("http://{addr}")).await.unwrap()
}

/// Reads a run's stream to its end: (progress snapshots, merged totals).
async fn drain(stream: &mut tonic::Streaming<volley_proto::RunEvent>) -> (usize, Totals, bool) {
    let (mut progress, mut total, mut finished) = (0, Totals::default(), false);
    while let Some(ev) = stream.next().await {
        match ev.unwrap().event.unwrap() {
            run_event::Event::Started(s) => assert!(s.threads >= 1),
            run_event::Event::Progress(s) => {
                progress += 1;
                total.add(&Totals::from_snapshot(&s).unwrap());
            }
            run_event::Event::Finished(s) => {
                finished = true;
                total.add(&Totals::from_snapshot(&s).unwrap());
            }
        }
    }
    (progress, total, finished)
}

#[tokio::test]
async fn describes_itself() {
    // The binary, with --threads, and the in-process agent say the same.
    let binary = spawn_agent_bin(env!("CARGO_BIN_EXE_agent"), "127.0.0.1:0", &["--threads", "2"]);
    let prefix = format!("agent listening on {} with 2 worker threads, open-file limit ", binary.addr);
    let rest = binary.ready_line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{:?}", binary.ready_line));
    // Then the I/O engine (see tests/uring.rs).
    let (files, io) = rest.split_once(", io engine ").unwrap_or_else(|| panic!("{:?}", binary.ready_line));
    assert!(io == "io_uring" || io.starts_with("epoll"), "{io}");
    // The soft limit was raised to the hard one, which the ready line and
    // Describe both name.
    let hard = std::process::Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    assert_eq!(files, hard, "the ready line names the hard limit");
    let info = client(&binary.addr).await.describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(info.open_files.to_string(), if hard == "unlimited" { "0" } else { hard.as_str() });
    let in_process = spawn_agent();
    for addr in [&binary.addr, &in_process.addr] {
        let info = client(addr).await.describe(DescribeRequest {}).await.unwrap().into_inner();
        assert_eq!(info.protocol_version, PROTOCOL_VERSION);
        assert_eq!(info.worker_threads, 2);
        assert!(info.cores >= 1);
        assert!(!info.busy);
    }
}

#[tokio::test]
async fn a_duration_run_streams_deltas_that_add_up_to_what_the_target_served() {
    let server = target();
    let agent = spawn_agent();
    let mut c = client(&agent.addr).await;
    let url = format!("http://{}/hello", server.local_addr());
    let mut stream = c.run(plan(url, run_plan::Limit::DurationMs(2500), 4)).await.unwrap().into_inner();
    let (progress, total, finished) = drain(&mut stream).await;
    assert!(finished, "no final snapshot");
    assert!(progress >= 2, "expected progress about once a second, got {progress}");
    assert!(total.requests > 0);
    assert_eq!(total.requests, total.successes);
    assert_eq!(server.stats().count("/hello", 200), total.requests);
    assert_eq!(total.responses(), total.requests);
    server.shutdown();
}

#[tokio::test]
async fn a_busy_agent_refuses_a_second_run_and_bad_plans_are_refused() {
    let server = target();
    let agent = spawn_agent();
    let mut c = client(&agent.addr).await;
    let slow = format!("http://{}/delay/100", server.local_addr());
    let mut first = c.run(plan(slow.clone(), run_plan::Limit::Requests(20), 2)).await.unwrap().into_inner();
    let err = c.run(plan(slow.clone(), run_plan::Limit::Requests(1), 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("busy"), "{}", err.message());
    let (_, total, finished) = drain(&mut first).await;
    assert!(finished);
    assert_eq!(total.requests, 20);

    let mut bad = plan(slow.clone(), run_plan::Limit::Requests(1), 1);
    bad.protocol_version = PROTOCOL_VERSION + 1;
    assert_eq!(c.run(bad).await.unwrap_err().code(), Code::FailedPrecondition);
    let bad = plan("ftp://x/".into(), run_plan::Limit::Requests(1), 1);
    let err = c.run(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("url"), "{}", err.message());
    assert_eq!(
        c.run(plan(slow.clone(), run_plan::Limit::Requests(1), 0)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Still serving, and idle again.
    let mut again = c.run(plan(slow, run_plan::Limit::Requests(3), 1)).await.unwrap().into_inner();
    assert_eq!(drain(&mut again).await.1.requests, 3);
    assert_eq!(server.stats().count("/delay/100", 200), 23);
    server.shutdown();
}

#[tokio::test]
async fn cancel_stops_a_run_which_still_reports() {
    let server = target();
    let agent = spawn_agent();
    let mut c = client(&agent.addr).await;
    let url = format!("http://{}/delay/20", server.local_addr());
    let mut stream = c.run(plan(url, run_plan::Limit::DurationMs(60_000), 2)).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    assert!(c.cancel(CancelRequest { run_id: "test".into() }).await.unwrap().into_inner().cancelled);
    let (_, total, finished) = drain(&mut stream).await;
    assert!(finished);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(total.requests > 0);
    assert_eq!(server.stats().count("/delay/20", 200), total.requests);
    server.shutdown();
}

#[tokio::test]
async fn a_controller_that_goes_away_stops_the_load() {
    let server = target();
    let agent = spawn_agent();
    let mut c = client(&agent.addr).await;
    let url = format!("http://{}/hello", server.local_addr());
    let mut stream = c.run(plan(url, run_plan::Limit::DurationMs(60_000), 2)).await.unwrap().into_inner();
    let _ = stream.next().await; // started
    drop(stream);
    drop(c);
    // The target's count must stop growing well before the 60 s plan ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = server.stats().total;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.stats().total;
        if now == last {
            break;
        }
        assert!(Instant::now() < deadline, "load did not stop");
        last = now;
    }
    let info = client(&agent.addr).await.describe(DescribeRequest {}).await.unwrap().into_inner();
    assert!(!info.busy, "agent still busy after its controller left");
    server.shutdown();
}

#[tokio::test]
async fn the_standard_health_service_says_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let agent = spawn_agent();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.addr)).unwrap();
    let mut health = HealthClient::new(channel.connect().await.unwrap());
    // "" is the whole server: what a Kubernetes `grpc:` probe asks by default.
    let reply = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(reply.status, ServingStatus::Serving as i32);
    let unknown = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[test]
fn dry_run_checks_flags_and_does_not_listen() {
    // The port is taken by this test, so an agent that tried to listen would
    // fail; success means the dry run bound nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["--listen", &addr, "--threads", "3", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("would listen on {addr} with 3 worker threads")), "{text}");
    let bad = Command::new(env!("CARGO_BIN_EXE_agent")).args(["--threads", "0", "--dry-run"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

/// The controller's Lease stream: its first message brings the start, its
/// heartbeats keep the run past its lease, and once it ends the lease runs
/// out and the run stops long before its planned end.
#[tokio::test]
async fn a_lease_stream_starts_a_run_and_keeps_it_alive_until_it_ends() {
    let server = target();
    let agent = spawn_agent();
    let mut c = client(&agent.addr).await;
    let url = format!("http://{}/delay/20", server.local_addr());
    let mut p = plan(url, run_plan::Limit::DurationMs(60_000), 2);
    (p.await_start, p.lease_ms) = (true, 1000);
    let mut stream = c.run(p).await.unwrap().into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lessor = c.clone();
    let lease = tokio::spawn(async move {
        lessor.lease(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await.map(|r| r.into_inner().running)
    });
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    let renewal =
        |start_at_unix_us| volley_proto::RenewRequest { run_id: "test".into(), start_at_unix_us, ..Default::default() };
    tx.send(renewal(now_us + 50_000)).unwrap();
    // Three times the lease, renewed on the stream.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tx.send(renewal(0)).unwrap();
    }
    assert!(!lease.is_finished());
    let served = server.stats().count("/delay/20", 200);
    assert!(served > 0, "the start came on the stream");
    // The stream ends: the reply says the run was going, and the lease runs out.
    drop(tx);
    assert!(lease.await.unwrap().unwrap(), "the run was going when the stream ended");
    let stopped = Instant::now();
    let (_, total, finished) = drain(&mut stream).await;
    assert!(finished);
    assert!(stopped.elapsed() < Duration::from_secs(5), "stopped {:?} after the stream ended", stopped.elapsed());
    assert_eq!(server.stats().count("/delay/20", 200), total.requests);
    assert!(total.requests >= served);
    server.shutdown();
}
