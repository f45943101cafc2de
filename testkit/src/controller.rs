//! The real `controller` binary: one invocation ([`controller`]), one in the
//! background ([`spawn_controller`]), `controller serve` ([`spawn_serve`]),
//! and [`Run`], which says what a `controller run` is in words instead of a
//! repeated argument array:
//! `Run::new(&url).agents(&[&a, &b]).requests(300).connections(4).json()`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::process::{Address, Proc, spawn_ready};

/// The `controller` binary of this workspace.
pub fn controller_bin() -> PathBuf {
    crate::bins::workspace_bin("controller")
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(controller_bin());
    c.args(args).env("RUST_LOG", "warn").stdin(Stdio::null());
    c
}

/// Runs the real controller binary with `args`.
pub fn controller(args: &[&str]) -> Output {
    command(args).output().expect("run controller")
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

/// The report's row for the agent at `addr`.
pub fn agent_row<'a>(report: &'a serde_json::Value, addr: &str) -> &'a serde_json::Value {
    report["agents"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["address"] == addr))
        .unwrap_or_else(|| panic!("no row for agent {addr} in {report}"))
}

/// Stderr lines with the instant each arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A controller process running in the background, its stderr lines
/// collected with the time each arrived.
pub struct Running {
    pub child: Child,
    lines: Lines,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Waits for the process; returns its status, stdout and stderr lines.
    pub fn finish(mut self) -> (ExitStatus, String, Vec<(Instant, String)>) {
        let mut out = String::new();
        self.child.stdout.take().expect("stdout piped").read_to_string(&mut out).expect("read stdout");
        let status = self.child.wait().expect("wait for the controller");
        // Every stderr line is in once the pipe has closed.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (status, out, lines)
    }
}

/// Starts the real controller binary with `args` in the background.
pub fn spawn_controller(args: &[&str]) -> Running {
    spawn_controller_command(&mut command(args))
}

/// Starts `cmd` (a controller, perhaps wrapped, as [`crate::netns::Net::with_hosts`]
/// does) in the background, collecting its stderr lines.
pub fn spawn_controller_command(cmd: &mut Command) -> Running {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start controller");
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let err = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), line));
        }
    });
    Running { child, lines, reader: Some(reader) }
}

/// Starts `controller serve` on a free loopback port (plus `extra` flags) and
/// reads its address from the line it prints when ready.
pub fn spawn_serve(extra: &[&str]) -> Proc {
    spawn_ready(command(&["serve", "--listen", "127.0.0.1:0"]).args(extra))
}

/// A `controller run`, said in words. Flags not covered by a method go
/// through [`Run::arg`] / [`Run::args`]; they follow in the order given.
#[derive(Debug, Clone)]
pub struct Run {
    args: Vec<String>,
}

impl Run {
    /// A run against `url` (`--url`).
    pub fn new(url: impl Into<String>) -> Run {
        Run { args: vec!["--url".into(), url.into()] }
    }

    /// A run with no `--url` (e.g. a scenario's own base URL, or none at all).
    pub fn without_url() -> Run {
        Run { args: vec![] }
    }

    fn flag(mut self, flag: &str, value: impl ToString) -> Run {
        self.args.push(flag.into());
        self.args.push(value.to_string());
        self
    }

    /// `--agents a,b,...`.
    pub fn agents<T: Address>(self, agents: &[T]) -> Run {
        let list = agents.iter().map(Address::address).collect::<Vec<_>>().join(",");
        self.flag("--agents", list)
    }

    /// `-n`: this many requests in all.
    pub fn requests(self, n: u64) -> Run {
        self.flag("-n", n)
    }

    /// `-c`: this many connections in all.
    pub fn connections(self, c: u32) -> Run {
        self.flag("-c", c)
    }

    /// `-z`: run for this long (e.g. "2s").
    pub fn duration(self, d: &str) -> Run {
        self.flag("-z", d)
    }

    /// `--rate`: this many requests a second in all.
    pub fn rate(self, r: u64) -> Run {
        self.flag("--rate", r)
    }

    /// `--scenario`: the scenario file at `path`.
    pub fn scenario(self, path: impl AsRef<std::path::Path>) -> Run {
        let path = path.as_ref().display().to_string();
        self.flag("--scenario", path)
    }

    /// `-u`: this many virtual users (scenario runs).
    pub fn users(self, u: u32) -> Run {
        self.flag("-u", u)
    }

    /// `--quiet`: no progress lines.
    pub fn quiet(self) -> Run {
        self.arg("--quiet")
    }

    /// `--output json`, for a run that is [spawned](Run::spawn) or whose
    /// [output](Run::output) is judged by the test.
    pub fn with_json_report(self) -> Run {
        self.flag("--output", "json")
    }

    /// One more flag or value, as given.
    pub fn arg(mut self, arg: impl Into<String>) -> Run {
        self.args.push(arg.into());
        self
    }

    /// More flags and values, as given.
    pub fn args(mut self, args: &[&str]) -> Run {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The full argument list, from `run` on.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once("run").chain(self.args.iter().map(String::as_str)).collect()
    }

    /// Runs it as given and returns what the controller did.
    pub fn output(&self) -> Output {
        controller(&self.argv())
    }

    /// Runs it with `--output json` and returns what the controller did
    /// (exit code, report or error), without judging it.
    pub fn json_output(&self) -> Output {
        let mut argv = self.argv();
        argv.splice(1..1, ["--output", "json"]);
        controller(&argv)
    }

    /// Runs it with `--quiet --output json`; its parsed report, after
    /// checking it exited 0.
    pub fn json(&self) -> serde_json::Value {
        let mut argv = self.argv();
        argv.splice(1..1, ["--quiet", "--output", "json"]);
        json_report(&controller(&argv))
    }

    /// Runs it with `--quiet --output json` where every request must fail:
    /// its parsed report, after checking it exited 1 with a headline saying so.
    pub fn json_all_failed(&self) -> serde_json::Value {
        let mut argv = self.argv();
        argv.splice(1..1, ["--quiet", "--output", "json"]);
        let out = controller(&argv);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(r["headline"].as_str().is_some_and(|h| h.contains(" requests failed: ")), "{r}");
        r
    }

    /// Starts it in the background.
    pub fn spawn(&self) -> Running {
        spawn_controller(&self.argv())
    }
}
