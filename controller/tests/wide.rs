//! Wide runs (issue #19): many connections from one agent. The open-file
//! limit is checked before any load goes out.

use std::process::{Command, Stdio};

use volley_testkit::*;

/// `controller run` with its embedded agent, under an open-file limit of
/// 256: 250 connections (plus the agent's spare descriptors) do not fit, so
/// the run is refused up front with one line naming the limit, and the
/// target sees nothing. 100 connections fit and run exactly.
#[test]
fn the_embedded_agent_refuses_a_plan_beyond_the_open_file_limit() {
    let server = target(1);
    let url = format!("http://{}/hello", server.local_addr());
    let run = |connections: u32| {
        let run = Run::new(&url).requests(300).connections(connections).quiet();
        Command::new("prlimit")
            .arg("--nofile=256:256")
            .arg(controller_bin())
            .args(run.argv())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run prlimit controller")
    };
    let out = run(250);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("250 connections need about 314 open files"), "{text}");
    assert!(text.contains("open-file limit (RLIMIT_NOFILE) is 256"), "{text}");
    assert_eq!(server.stats().total, 0, "the refused run sent nothing");

    let out = run(100);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.stats().count("/hello", 200), 300);
}
