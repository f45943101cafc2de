//! Where the workspace's binaries are. A test of crate X gets
//! `env!("CARGO_BIN_EXE_...")` only for X's own binaries; for the others the
//! kit looks in `target/<profile>/`, next to the test executable's `deps/`,
//! after asking cargo to bring that binary up to date (a no-op when it is),
//! so `cargo test -p controller` never runs a stale `agent`. The binaries
//! of the package under test (`CARGO_PKG_NAME`, set by `cargo test` when it
//! runs a test) were just built by cargo for that run and are used as they are.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The path of the workspace binary `name` (of the package of the same
/// name), in the profile of the running test, built if needed.
pub fn workspace_bin(name: &str) -> PathBuf {
    static FOUND: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let found = FOUND.get_or_init(Mutex::default);
    // Held while building, so two tests of one run do not build it twice.
    let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = found.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = build(name);
    found.push((name.to_owned(), path.clone()));
    path
}

/// `target/<profile>/` of the running test executable.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the test executable's directory");
    // Integration and unit tests live in `target/<profile>/deps/`.
    if dir.ends_with("deps") { dir.parent().expect("target/<profile>").to_path_buf() } else { dir.to_path_buf() }
}

fn build(name: &str) -> PathBuf {
    let dir = profile_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if std::env::var("CARGO_PKG_NAME").is_ok_and(|package| package == name) {
        assert!(path.exists(), "no {name} binary at {}", path.display());
        return path;
    }
    let release = dir.ends_with("release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", name, "--bin", name])
        .args(if release { &["--release"][..] } else { &[][..] })
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build the {name} binary: {e}"));
    assert!(status.success(), "cargo build -p {name} failed");
    assert!(path.exists(), "no {name} binary at {}", path.display());
    path
}
