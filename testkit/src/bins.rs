//! Where the workspace's binaries are. A test of crate X gets
//! `env!("CARGO_BIN_EXE_...")` only for X's own binaries; for the others the
//! kit looks in `target/<profile>/`, next to the test executable's `deps/`,
//! after asking cargo to bring that binary up to date (a no-op when it is),
//! so `cargo test -p controller` never runs a stale `agent`. The binaries
//! of the package under test (`CARGO_PKG_NAME`, set by `cargo test` when it
//! runs a test) were just built by cargo for that run and are used as they are.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The path of the workspace binary `name` (of the package of the same
/// name), in the profile of the running test, built if needed.
pub fn workspace_bin(name: &str) -> PathBuf {
    if std::env::var("CARGO_PKG_NAME").is_ok_and(|package| package == name) {
        let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        assert!(path.exists(), "no {name} binary at {}", path.display());
        return path;
    }
    // One cell per binary: building one does not hold up a test that wants another.
    static CELLS: Mutex<Vec<(String, Arc<OnceLock<PathBuf>>)>> = Mutex::new(Vec::new());
    let cell = {
        let mut cells = CELLS.lock().unwrap_or_else(|e| e.into_inner());
        match cells.iter().find(|(n, _)| n == name) {
            Some((_, cell)) => cell.clone(),
            None => {
                let cell = Arc::new(OnceLock::new());
                cells.push((name.to_owned(), cell.clone()));
                cell
            }
        }
    };
    cell.get_or_init(|| build(name)).clone()
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
