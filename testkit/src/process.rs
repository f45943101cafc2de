//! A binary started and read until its ready line (the first line it prints
//! on stdout, naming the address it serves on), killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a binary may take to print its ready line. Generous: the
/// machine running the tests may be busy.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) when dropped, with the address from
/// its ready line.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub addr: String,
    /// The ready line as printed, end of line trimmed.
    pub ready_line: String,
}

impl Proc {
    /// The address as a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.parse().unwrap_or_else(|e| panic!("{:?} is not a socket address: {e}", self.addr))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Anything that serves on an address: a process, an in-process server, or
/// the address itself.
pub trait Address {
    fn address(&self) -> String;
}

impl Address for Proc {
    fn address(&self) -> String {
        self.addr.clone()
    }
}

impl Address for str {
    fn address(&self) -> String {
        self.to_owned()
    }
}

impl Address for String {
    fn address(&self) -> String {
        self.clone()
    }
}

impl<T: Address + ?Sized> Address for &T {
    fn address(&self) -> String {
        (**self).address()
    }
}

/// Starts `command` with stdout piped and waits (at most [`READY_WITHIN`])
/// for its ready line; the process is killed if it never comes.
pub fn spawn_ready(command: &mut Command) -> Proc {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let (addr, ready_line) = match ready_line(&mut child, READY_WITHIN) {
        Ok(ready) => ready,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?}: {why}");
        }
    };
    Proc { child, addr, ready_line }
}

/// Reads the first line a child printed on stdout and the first socket
/// address in it (an `http://` or `https://` prefix allowed).
pub fn ready_address(child: &mut Child) -> String {
    ready_line(child, READY_WITHIN).unwrap_or_else(|why| panic!("{why}")).0
}

/// The address in the child's first line, and that line.
fn ready_line(child: &mut Child, limit: Duration) -> Result<(String, String), String> {
    let stdout = child.stdout.take().ok_or("stdout not piped")?;
    let (tx, rx) = mpsc::channel();
    // A thread, so that a silent child fails the test instead of hanging it.
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    let line = match rx.recv_timeout(limit) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(format!("cannot read the ready line: {e}")),
        Err(_) => return Err(format!("no ready line within {limit:?}")),
    };
    line.split_whitespace()
        .map(|w| w.trim_start_matches("http://").trim_start_matches("https://"))
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .map(|a| (a.to_string(), line.trim_end().to_owned()))
        .ok_or_else(|| format!("no address in the ready line {line:?}"))
}

/// Sends a signal (e.g. "KILL", "STOP", "CONT", "TERM") to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("run kill").success();
    assert!(ok, "kill -{sig} {pid} failed");
}
