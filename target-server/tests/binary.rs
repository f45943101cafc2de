//! The real `target-server` binary: it reports its port, serves, and exits 0
//! on SIGTERM; bad flags give one clear line, not a panic.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::Client;

const BIN: &str = env!("CARGO_BIN_EXE_target-server");

#[test]
fn serves_on_the_port_it_reports_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--threads", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn target-server");

    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");

    let response = Client::connect(addr).get("/hello");
    assert_eq!((response.status, response.text()), (200, "Hello World!"));

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(killed.success());

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
