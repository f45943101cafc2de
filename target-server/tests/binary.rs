//! The real `target-server` binary: it reports its port, serves, and exits 0
//! on SIGTERM; bad flags give one clear line, not a panic.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use volley_testkit::{Client, signal, spawn_target};

const BIN: &str = env!("CARGO_BIN_EXE_target-server");

#[test]
fn serves_on_the_port_it_reports_and_exits_cleanly_on_sigterm() {
    let mut target = spawn_target(BIN, &["--threads", "2"]);
    let line = &target.ready_line;
    assert_eq!(line.strip_prefix("listening on http://"), Some(target.addr.as_str()), "unexpected first line {line:?}");

    let response = Client::connect(target.socket_addr()).get("/hello");
    assert_eq!((response.status, response.text()), (200, "Hello World!"));

    signal(target.child.id(), "TERM");
    let child = &mut target.child;

    // Polls for exit only, to fail rather than hang if the signal is ignored.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("target-server did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

#[test]
fn stats_say_when_the_first_and_last_requests_were_served() {
    let target = spawn_target(BIN, &["--threads", "2"]);
    let idle = target.target_stats();
    assert_eq!((idle.first_request_unix_us, idle.last_request_unix_us), (None, None));
    // Null, not absent, before any request.
    let raw = Client::connect(target.socket_addr()).get("/stats");
    let json: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert!(json["first_request_unix_us"].is_null() && json["last_request_unix_us"].is_null(), "{json}");

    let before = unix_us();
    let mut client = Client::connect(target.socket_addr());
    assert_eq!(client.get("/hello").status, 200);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(client.get("/status/503").status, 503);
    let after = unix_us();

    let stats = target.target_stats();
    assert_eq!(stats.total, 2);
    let (first, last) = (stats.first_request_unix_us.unwrap(), stats.last_request_unix_us.unwrap());
    assert!(before <= first && first + 20_000 <= last && last <= after, "{before} {first} {last} {after}");
    // Reading /stats is not a request served: the instants stay put.
    let again = target.target_stats();
    assert_eq!((again.first_request_unix_us, again.last_request_unix_us), (Some(first), Some(last)));
}

#[test]
fn a_bad_listen_address_is_one_clear_line() {
    let output = Command::new(BIN).args(["--listen", "not-an-address"]).output().expect("run target-server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'not-an-address' for '--listen"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_address_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BIN).args(["--listen", &addr]).stdout(Stdio::null()).output().expect("run target-server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with(&format!("target-server: cannot listen on {addr}: ")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
