//! Helpers for the controller's integration tests: real agent processes, a
//! real target-server on a free port, and the real controller binary.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The `agent` binary next to the `controller` binary under test, built if
/// this test run has not built it (e.g. `cargo test -p controller`).
pub fn agent_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| sibling_bin("agent")).clone()
}

/// The `target-server` binary, found and built like [`agent_bin`].
pub fn target_server_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| sibling_bin("target-server")).clone()
}

/// Builds the binary `name` of the package of the same name, in the profile
/// of the controller under test, and returns its path beside the controller.
fn sibling_bin(name: &str) -> PathBuf {
    let controller = PathBuf::from(env!("CARGO_BIN_EXE_controller"));
    let path = controller.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", name, "--bin", name])
        .args(if controller.parent().is_some_and(|d| d.ends_with("release")) { &["--release"][..] } else { &[][..] })
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build the {name} binary: {e}"));
    assert!(status.success(), "cargo build -p {name} failed");
    assert!(path.exists(), "no {name} binary at {}", path.display());
    path
}

/// Reads the first line a child printed on stdout and the first socket
/// address in it: how the binaries announce that they are ready.
pub fn ready_address(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped")).read_line(&mut line).expect("read the ready line");
    line.split_whitespace()
        .map(|w| w.trim_start_matches("http://"))
        .find_map(|w| w.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in the ready line {line:?}"))
        .to_string()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a real agent process on a free loopback port and reads its address
/// from the line it prints when ready.
pub fn spawn_agent(extra: &[&str]) -> Proc {
    spawn_agent_on("127.0.0.1:0", extra)
}

/// Starts a real agent process listening on `listen` (a token from the
/// environment never leaks in: each test says what it wants).
pub fn spawn_agent_on(listen: &str, extra: &[&str]) -> Proc {
    let mut child = Command::new(agent_bin())
        .args(["--listen", listen])
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("VOLLEY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start agent");
    let addr = ready_address(&mut child);
    Proc { child, addr }
}

/// A real target-server on a free loopback port, in this process.
pub fn target(threads: usize) -> target_server::ServerHandle {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target_server::start(listener, threads).expect("start target-server")
}

/// Runs the real controller binary with `args`.
pub fn controller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_controller"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run controller")
}

/// `controller run --quiet --output json ARGS`: its JSON report, after
/// checking it exited 0.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec!["run", "--quiet", "--output", "json"];
    full.extend_from_slice(args);
    json_report(&controller(&full))
}

/// The example scenario shipped with the project (`scenarios/shop.toml`).
pub fn example_scenario() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/shop.toml").to_owned()
}

/// The JSON report the controller printed, after checking it exited 0.
pub fn json_report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "controller failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A controller process running in the background, its stderr lines
/// collected with the time each arrived.
pub struct Running {
    pub child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl Running {
    /// Waits for the process; returns its status, stdout and stderr lines.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, Vec<(std::time::Instant, String)>) {
        use std::io::Read;
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let status = self.child.wait().unwrap();
        let lines = self.lines.lock().unwrap().clone();
        (status, out, lines)
    }
}

/// Starts the real controller binary with `args` in the background.
pub fn spawn_controller(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_controller"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start controller");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((std::time::Instant::now(), line));
        }
    });
    Running { child, lines }
}

/// Waits until the target has served at least `n` responses to `path`.
pub fn served_at_least(server: &target_server::ServerHandle, path: &str, n: u64) {
    let t = within(std::time::Duration::from_secs(20), || server.stats().path_total(path) >= n);
    assert!(t.is_some(), "the target never served {n} requests to {path}");
}

/// The report's row for the agent at `addr`.
pub fn agent_row<'a>(report: &'a serde_json::Value, addr: &str) -> &'a serde_json::Value {
    report["agents"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["address"] == addr))
        .unwrap_or_else(|| panic!("no row for agent {addr} in {report}"))
}

/// Sends a signal (e.g. "KILL", "STOP", "CONT") to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("run kill").success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Polls `f` every 50 ms until it returns true or `limit` passes; returns
/// the time it took, or None. For waiting on an outcome with a deadline.
pub fn within(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> Option<std::time::Duration> {
    let t0 = std::time::Instant::now();
    loop {
        if f() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts `controller serve` on a free loopback port (plus `extra` flags) and
/// reads its address from the line it prints when ready.
pub fn spawn_serve(extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_controller"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start controller serve");
    let addr = ready_address(&mut child);
    Proc { child, addr }
}

/// One HTTP/1.1 exchange with `Connection: close`: the status, the headers
/// (lower-cased names) and the body. Enough of a client for the API tests.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the API's answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    (status, headers, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// [`http`] for JSON answers.
pub fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, _, text) = http(addr, method, path, headers, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
    (status, v)
}
