//! Several hosts on one machine: network namespaces, each with its own address
//! on a bridge in the root namespace, and a hosts file that only the
//! controller sees (bind-mounted over `/etc/hosts` in a private mount
//! namespace, with a loopback resolver, so no query leaves the machine).
//!
//! Needs root and iproute2's `ip netns`. [`network_or_skip`] says `SKIP` and
//! gives `None` where they are missing, unless `VOLLEY_REQUIRE_NETNS` is set
//! (`.ci/run` sets it when it runs as root): then a skip is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{Proc, spawn_ready};

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A test's network: a bridge and namespaces, removed when dropped (also
/// when the test fails), which removes the veth pairs with them.
#[derive(Debug)]
pub struct Net {
    /// The first three octets of the test's /24.
    pub prefix: String,
    /// The bridge in the root namespace (`PREFIX.1`).
    pub bridge: String,
    /// The namespaces; host `i` is in `namespaces[i]`.
    pub namespaces: Vec<String>,
    /// A scratch directory: the hosts file and resolver configuration.
    pub dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Net {
    /// Address of host `i` (0-based) on the test's /24.
    pub fn host(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    /// The hosts file [`Net::with_hosts`] mounts over `/etc/hosts`.
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// Writes the hosts file in place (the same inode: a bind mount of it
    /// sees the new text).
    pub fn write_hosts(&self, text: &str) {
        std::fs::write(self.hosts_file(), text).unwrap();
    }

    /// `bin` to run in a private mount namespace where `/etc/hosts` is
    /// [`Net::hosts_file`] and the resolver is loopback; add its arguments.
    pub fn with_hosts(&self, bin: &Path) -> Command {
        let resolv = self.dir.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
        if !self.hosts_file().exists() {
            self.write_hosts("");
        }
        let script = r#"mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@""#;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(self.hosts_file())
            .arg(resolv)
            .arg(bin)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `bin ARGS` inside host `i`'s namespace and reads its ready line.
    pub fn spawn_in(&self, i: usize, bin: PathBuf, args: &[&str]) -> Proc {
        spawn_ready(
            Command::new("ip").args(["netns", "exec", &self.namespaces[i]]).arg(bin).args(args).env("RUST_LOG", "warn"),
        )
    }
}

/// Why this machine cannot make namespaces, if it cannot.
fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")) {
        return Some("not running as root".into());
    }
    for tool in [["ip", "netns"], ["unshare", "--version"]] {
        match Command::new(tool[0]).arg(tool[1]).stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(s) if s.success() => {}
            _ => return Some(format!("`{} {}` is unavailable", tool[0], tool[1])),
        }
    }
    None
}

/// A bridge and `hosts` namespaces on a /24 of `10.SECOND.0.0/16` that no
/// route on this machine uses yet; `tag` (one letter) starts the names of the
/// bridge, namespaces and veths, so that tests with different tags and
/// `second` octets may run at once. `None` (after printing `SKIP test: why`)
/// where namespaces cannot be made, unless `VOLLEY_REQUIRE_NETNS` is set.
pub fn network_or_skip(test: &str, tag: char, second: u8, hosts: usize) -> Option<Net> {
    match unavailable().map_or_else(|| network(tag, second, hosts), Err) {
        Ok(net) => Some(net),
        Err(why) => {
            assert!(std::env::var("VOLLEY_REQUIRE_NETNS").is_err(), "VOLLEY_REQUIRE_NETNS is set but {why}");
            eprintln!("SKIP {test}: {why}; this test needs root and network namespaces");
            None
        }
    }
}

fn network(tag: char, second: u8, hosts: usize) -> Result<Net, String> {
    let pid = std::process::id();
    let third = (0..250).map(|k| (pid as usize + k) % 250 + 1).find(|x| {
        let out = Command::new("ip").args(["-4", "route", "show", &format!("10.{second}.{x}.0/24")]).output();
        out.is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    });
    let third = third.ok_or(format!("no free 10.{second}.x.0/24"))?;
    let dir = std::env::temp_dir().join(format!("volley-netns-{tag}-{pid}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut net =
        Net { prefix: format!("10.{second}.{third}"), bridge: format!("{tag}b{pid}"), namespaces: Vec::new(), dir };
    let first = format!("{tag}net{pid}-0");
    let made = Command::new("ip").args(["netns", "add", &first]).output().map_err(|e| e.to_string())?;
    if !made.status.success() {
        return Err(format!("ip netns add failed: {}", String::from_utf8_lossy(&made.stderr).trim()));
    }
    net.namespaces.push(first);
    for i in 1..hosts {
        let ns = format!("{tag}net{pid}-{i}");
        ip(&["netns", "add", &ns]);
        net.namespaces.push(ns);
    }
    ip(&["link", "add", &net.bridge, "type", "bridge"]);
    ip(&["addr", "add", &format!("{}.1/24", net.prefix), "dev", &net.bridge]);
    ip(&["link", "set", &net.bridge, "up"]);
    for (i, ns) in net.namespaces.iter().enumerate() {
        let (outside, inside) = (format!("{tag}h{pid}-{i}"), format!("{tag}p{pid}-{i}"));
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        ip(&["link", "set", &inside, "netns", ns]);
        ip(&["link", "set", &outside, "master", &net.bridge]);
        ip(&["link", "set", &outside, "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{}/24", net.host(i)), "dev", &inside]);
        ip(&["-n", ns, "link", "set", &inside, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    Ok(net)
}
