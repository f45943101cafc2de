//! Bad input gets one clear line naming the problem and a non-zero exit
//! (2 for usage errors), never a panic.

use std::pin::Pin;

use tonic::{Request, Response, Status};
use volley_proto::agent_server::{Agent, AgentServer};
use volley_proto::{
    AgentInfo, CancelReply, CancelRequest, DescribeRequest, RenewReply, RenewRequest, RunEvent, RunPlan,
};
use volley_testkit::*;

fn fails_with(args: &[&str], code: i32, needle: &str) {
    let out = controller(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?} exited {:?}; stderr: {err}", out.status);
    assert!(err.contains(needle), "{args:?}: stderr lacks {needle:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed a report");
}

const URL: &str = "http://127.0.0.1:9/hello";

#[test]
fn usage_errors_exit_2_with_one_line() {
    fails_with(&["run", "--url", "not a url", "-n", "1"], 2, "--url");
    fails_with(&["run", "--url", "ftp://x/", "-n", "1"], 2, "scheme");
    fails_with(&["run", "--url", "gopher://x/", "-n", "1"], 2, "scheme");
    fails_with(
        &["run", "--url", "https://127.0.0.1:9/", "--target-ca", "/nonexistent/ca.pem", "-n", "1"],
        2,
        "--target-ca",
    );
    fails_with(&["run", "--url", "localhost/x", "-n", "1"], 2, "--url");
    fails_with(&["run", "--url", URL, "-n", "0"], 2, "-n/--requests");
    fails_with(&["run", "--url", URL, "-n", "1", "-c", "0"], 2, "-c/--connections");
    fails_with(&["run", "--url", URL, "-n", "1", "-z", "1s"], 2, "cannot be used with");
    fails_with(&["run", "--url", URL], 2, "required");
    fails_with(&["run", "--url", URL, "-z", "soon"], 2, "--duration");
    fails_with(&["run", "--url", URL, "-n", "-5"], 2, "-5");
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", "a:1,,b:2"], 2, "--agents");
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", "hostonly"], 2, "no port");
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", "h:99999"], 2, "invalid port");
    fails_with(&["run", "--url", URL, "-n", "1", "-c", "1", "--agents", "a:1,b:2"], 2, "fewer than the 2 agents");
    fails_with(&["run", "--url", URL, "-n", "1", "-H", "NoColon"], 2, "-H/--header");
    fails_with(&["run", "--url", URL, "-n", "1", "-m", "GE T"], 2, "-m/--method");
    fails_with(&["run", "--url", URL, "-n", "1", "-d", "@/nonexistent/body"], 2, "-d/--body");
    fails_with(&["run", "--url", URL, "-n", "1", "--success-status", "42"], 2, "--success-status");
    fails_with(&["run", "--url", URL, "-n", "1", "--threads", "0"], 2, "--threads");
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", "@/nonexistent/agents"], 2, "/nonexistent/agents");
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", "dns:[::1]:7070"], 2, "dns:NAME:PORT");
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", "dns:a:1", "--dry-run", "-c", "0"], 2, "-c/--connections");
    fails_with(&["frobnicate"], 2, "frobnicate");
}

#[test]
fn a_dry_run_says_what_it_would_do_and_contacts_nothing() {
    // The name would not resolve and the port is closed: a dry run must not care.
    let out = Run::new(URL)
        .agents(&["dns:agents.volley.svc.cluster.local:7070,127.0.0.1:9"])
        .duration("1m30s")
        .connections(8)
        .arg("--dry-run")
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "would send GET http://127.0.0.1:9/hello for 1m 30s over 8 connections",
        "agents: every address of agents.volley.svc.cluster.local (resolved at run time), port 7070",
        "agent: 127.0.0.1:9",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn an_unreachable_agent_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let live = spawn_agent(&["--threads", "1"]);
    let dead = format!("127.0.0.1:{port}");
    fails_with(&["run", "--url", URL, "-n", "1", "-c", "2", "--agents", &format!("{},{dead}", live.addr)], 1, &dead);
}

#[test]
fn a_server_that_is_no_agent_is_refused() {
    // A plain HTTP/1.1 server where an agent should be.
    let server = target(1);
    let addr = server.local_addr().to_string();
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", &addr], 1, &addr);
    server.shutdown();
}

/// An agent from the future: it speaks protocol version 99.
struct FutureAgent;

#[tonic::async_trait]
impl Agent for FutureAgent {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<AgentInfo>, Status> {
        Ok(Response::new(AgentInfo {
            protocol_version: 99,
            version: "9.9.9".into(),
            worker_threads: 1,
            ..Default::default()
        }))
    }
    type RunStream = Pin<Box<dyn futures::Stream<Item = Result<RunEvent, Status>> + Send>>;
    async fn run(&self, _: Request<RunPlan>) -> Result<Response<Self::RunStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<CancelReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn renew(&self, _: Request<RenewRequest>) -> Result<Response<RenewReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn lease(&self, _: Request<tonic::Streaming<RenewRequest>>) -> Result<Response<RenewReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

#[test]
fn an_agent_of_another_protocol_version_is_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(FutureAgent))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    fails_with(&["run", "--url", URL, "-n", "1", "--agents", &addr], 1, "protocol version 99");
}
