//! The book's examples are tests: every command block of the user book
//! (`docs/src/`) and of `README.md` that can run on one machine is run as
//! written against real binaries, and every relative link must resolve.
//!
//! The convention, by the fenced block's info string (also in the book's
//! Development chapter):
//! - `sh`: run; it must exit 0.
//! - `sh,exit=N`: run; it must exit N.
//! - `sh,norun=REASON`: not run (several hosts, Kubernetes, root, a whole
//!   build); the reason is required.
//! - `toml,scenario`: written to a file and checked with
//!   `controller run --dry-run --scenario`.
//! - any other language: shown, not run. A block with no language fails (it
//!   would be compiled as Rust by `mdbook test`).
//!
//! How a block runs: Volley's binaries come first on `PATH`; each chapter gets
//! a fresh working directory (with `scenarios/` linked in) that its blocks
//! share in order. A line starting `target-server`, `agent` or
//! `controller serve` and ending in `&` is started by the test on
//! `127.0.0.1:0`; the address it announces replaces, in the lines after it,
//! the address the example gave it. A target-server on a free port stands in
//! for `127.0.0.1:8080` unless the block starts its own. The other lines run
//! with `bash -e` in segments between such background lines, each bounded in
//! time.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use volley_testkit::*;

/// Longest a segment of a block may take: examples are short runs.
const SEGMENT_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("controller/ has a parent").to_path_buf()
}

/// README.md, then the book's chapters in file-name order.
fn sources() -> Vec<PathBuf> {
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(repo().join("docs/src"))
        .expect("docs/src exists")
        .map(|e| e.expect("read docs/src").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    let mut all = vec![repo().join("README.md")];
    all.extend(chapters);
    all
}

fn name(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

/// A fenced code block: where it starts, its info string, its text.
#[derive(Debug)]
struct Block {
    origin: String,
    info: String,
    body: String,
}

/// The fenced blocks of a Markdown file (fences of three backticks or more at
/// the start of a line, as the book writes them).
fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String, String)> = None; // line, fence, info, body
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(rest) = line.strip_prefix("```") {
                    let ticks = 3 + rest.chars().take_while(|c| *c == '`').count();
                    let info = rest.trim_start_matches('`').trim().to_owned();
                    open = Some((i + 1, "`".repeat(ticks), info, String::new()));
                }
            }
            Some((start, fence, info, body)) => {
                if line.trim_end() == fence.as_str() {
                    out.push(Block {
                        origin: format!("{}:{start}", name(path)),
                        info: std::mem::take(info),
                        body: std::mem::take(body),
                    });
                    open = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{}: a code block is never closed", name(path));
    out
}

/// What the test does with a block.
#[derive(Debug, PartialEq)]
enum Kind {
    Run { exit: i32 },
    NoRun,
    Scenario,
    Shown,
}

fn kind(block: &Block) -> Kind {
    let (lang, attrs) = block.info.split_once(',').unwrap_or((block.info.as_str(), ""));
    assert!(!lang.is_empty(), "{}: a code block must name its language (e.g. sh, text, toml)", block.origin);
    match (lang, attrs) {
        ("sh", "") => Kind::Run { exit: 0 },
        ("sh", a) if a.starts_with("exit=") => Kind::Run {
            exit: a["exit=".len()..].parse().unwrap_or_else(|_| panic!("{}: bad exit code in {a:?}", block.origin)),
        },
        ("sh", a) if a.starts_with("norun=") => {
            assert!(a.len() > "norun=".len(), "{}: norun needs a reason", block.origin);
            Kind::NoRun
        }
        ("toml", "scenario") => Kind::Scenario,
        (_, "") => Kind::Shown,
        _ => panic!("{}: unknown attributes {attrs:?} in the info string {:?}", block.origin, block.info),
    }
}

/// The binaries under test are in one directory; it goes first on PATH.
fn path_with_binaries() -> String {
    let dir = agent_bin().parent().expect("binary directory").to_path_buf();
    assert_eq!(target_server_bin().parent(), Some(dir.as_path()));
    let old = std::env::var("PATH").unwrap_or_default();
    format!("{}:{old}", dir.display())
}

/// Replaces `from` with `to` wherever it is not followed by another digit
/// (so `127.0.0.1:80` does not rewrite `127.0.0.1:8080`).
fn replace_address(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        out.push_str(&rest[..i]);
        out.push_str(if after.starts_with(|c: char| c.is_ascii_digit()) { from } else { to });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The example's addresses mapped to the live ones.
#[derive(Default, Clone)]
struct Addresses(BTreeMap<String, String>);

impl Addresses {
    /// The example's `127.0.0.1:PORT` (also written `localhost:PORT` or,
    /// for listening, `0.0.0.0:PORT`) is now `actual` (`127.0.0.1:NEW`).
    fn map(&mut self, example: &str, actual: &str) {
        let port = example.rsplit(':').next().expect("host:port");
        let new_port = actual.rsplit(':').next().expect("host:port");
        for host in ["127.0.0.1", "localhost"] {
            self.0.insert(format!("{host}:{port}"), format!("{host}:{new_port}"));
        }
    }

    fn apply(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |t, (from, to)| replace_address(&t, from, to))
    }
}

/// A command the block starts in the background, and the address it was
/// given (or its default).
fn background(line: &str) -> Option<(Vec<String>, String)> {
    let code = line.split(" #").next().unwrap_or(line).trim();
    let code = code.strip_suffix('&').filter(|c| !c.ends_with('&'))?;
    let words: Vec<String> = code.split_whitespace().map(str::to_owned).collect();
    let default = match (words.first()?.as_str(), words.get(1).map(String::as_str)) {
        ("target-server", _) => "127.0.0.1:8080",
        ("agent", _) => "127.0.0.1:7070",
        ("controller", Some("serve")) => "127.0.0.1:8089",
        _ => return None,
    };
    let example = words
        .iter()
        .position(|w| w == "--listen")
        .and_then(|i| words.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned());
    Some((words, example))
}

/// A chapter's working directory, with the example scenarios linked in.
fn workdir(source: &Path) -> PathBuf {
    let stem = source.file_stem().expect("file name").to_string_lossy().into_owned();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("book").join(stem);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the chapter's directory");
    std::os::unix::fs::symlink(repo().join("scenarios"), dir.join("scenarios")).expect("link scenarios/");
    dir
}

/// Starts a background line of the example on a free port; returns the
/// process and the address it announced.
fn start_background(words: &[String], addrs: &Addresses, dir: &Path, path: &str, origin: &str) -> Proc {
    let mut args: Vec<String> = words[1..].iter().map(|w| addrs.apply(w)).collect();
    match args.iter().position(|w| w == "--listen") {
        Some(i) => args[i + 1] = "127.0.0.1:0".into(),
        None => args.extend(["--listen".into(), "127.0.0.1:0".into()]),
    }
    let mut child = Command::new(&words[0])
        .args(&args)
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .env_remove("VOLLEY_TOKEN")
        .env_remove("VOLLEY_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{origin}: cannot start {}: {e}", words[0]));
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("read the ready line");
    // Keep reading, so a later line on stdout never meets a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line
        .split_whitespace()
        .map(|w| w.trim_start_matches("http://").trim_start_matches("https://"))
        .find_map(|w| w.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{origin}: `{}` printed no address when ready: {line:?}", words.join(" "))
        });
    Proc { child, addr: addr.to_string(), ready_line: line.trim_end().to_owned() }
}

/// Runs one foreground segment with `bash -e`, bounded in time; returns its
/// exit code, or panics with its output when it runs too long.
fn run_segment(script: &str, dir: &Path, path: &str, origin: &str) -> (i32, String) {
    let log = dir.join("segment.log");
    let out = File::create(&log).expect("create the segment log");
    let mut child: Child = Command::new("bash")
        .args(["-e", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .env_remove("VOLLEY_TOKEN")
        .env_remove("VOLLEY_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone the log handle"))
        .stderr(out)
        .spawn()
        .expect("run bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break status;
        }
        if started.elapsed() > SEGMENT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{origin}: still running after {SEGMENT_TIMEOUT:?}:\n{script}\n--- output:\n{output}");
        }
        // Polling for the end of a process, not waiting for readiness.
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    (status.code().unwrap_or(-1), output)
}

/// Runs one runnable block: background lines started by the test, the rest
/// in segments; the last segment must exit `expected`, the others 0.
fn run_block(block: &Block, expected: i32, dir: &Path, path: &str) {
    // A stand-in for the examples' target on 127.0.0.1:8080.
    let stand_in = start_background(&["target-server".into()], &Addresses::default(), dir, path, &block.origin);
    let mut addrs = Addresses::default();
    addrs.map("127.0.0.1:8080", &stand_in.addr);
    let mut procs = vec![stand_in];
    let run = |segment: &str, addrs: &Addresses, want: i32| {
        if segment.trim().is_empty() {
            return;
        }
        let script = addrs.apply(segment);
        let (code, output) = run_segment(&script, dir, path, &block.origin);
        assert_eq!(code, want, "{}: exited {code}, expected {want}:\n{script}\n--- output:\n{output}", block.origin);
    };
    let mut segment = String::new();
    for line in block.body.lines() {
        match background(line) {
            Some((words, example)) => {
                run(&segment, &addrs, 0);
                segment.clear();
                let p = start_background(&words, &addrs, dir, path, &block.origin);
                addrs.map(&example, &p.addr);
                procs.push(p);
            }
            None => {
                segment.push_str(line);
                segment.push('\n');
            }
        }
    }
    assert!(
        expected == 0 || !segment.trim().is_empty(),
        "{}: expects exit {expected}, but ends with a background line",
        block.origin
    );
    run(&segment, &addrs, expected);
    drop(procs);
}

#[test]
fn every_block_names_its_language_and_a_known_convention() {
    let mut runnable = 0;
    for source in sources() {
        for block in blocks(&source) {
            if matches!(kind(&block), Kind::Run { .. }) {
                runnable += 1;
            }
        }
    }
    // The README's tour and the chapters have runnable examples; if this
    // drops to nothing, the convention broke, not the examples.
    assert!(runnable >= 20, "only {runnable} runnable blocks found");
}

#[test]
fn the_scenario_examples_are_valid_scenario_files() {
    let mut checked = 0;
    for source in sources() {
        for block in blocks(&source).into_iter().filter(|b| kind(b) == Kind::Scenario) {
            let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("book-scenario-{checked}.toml"));
            std::fs::write(&file, &block.body).unwrap();
            let out = controller(&[
                "run",
                "--dry-run",
                "--scenario",
                file.to_str().unwrap(),
                "--url",
                "http://127.0.0.1:8080",
                "-n",
                "10",
            ]);
            assert!(out.status.success(), "{}: the scenario is refused: {}", block.origin, stderr(&out).trim());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no `toml,scenario` block found");
}

#[test]
fn every_runnable_example_runs_as_written() {
    let path = path_with_binaries();
    for source in sources() {
        let runnable: Vec<(Block, i32)> = blocks(&source)
            .into_iter()
            .filter_map(|b| match kind(&b) {
                Kind::Run { exit } => Some((b, exit)),
                _ => None,
            })
            .collect();
        if runnable.is_empty() {
            continue;
        }
        let dir = workdir(&source);
        for (block, exit) in &runnable {
            eprintln!("running {}", block.origin);
            run_block(block, *exit, &dir, &path);
        }
    }
}

/// The id mdBook gives a heading: lower case, spaces to `-`, only letters,
/// digits, `_` and `-` kept (markup such as backticks dropped).
fn heading_id(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The ids of a Markdown file's headings (outside code blocks).
fn heading_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut in_code = false;
    let mut ids = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            ids.push(heading_id(line.trim_start_matches('#').trim()));
        }
    }
    ids
}

/// The relative link targets of a Markdown file, outside code blocks and
/// code spans.
fn relative_links(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans so `[..](..)` inside backticks is not a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].trim();
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves_to_a_file_and_heading() {
    let book = repo().join("docs/src").canonicalize().unwrap();
    let mut checked = 0;
    for source in sources() {
        let base = source.parent().unwrap();
        for link in relative_links(&source) {
            let (file, fragment) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let target = if file.is_empty() { source.clone() } else { base.join(file) };
            let origin = format!("{}: link {link:?}", name(&source));
            let target = target.canonicalize().unwrap_or_else(|_| panic!("{origin}: no such file"));
            if source.starts_with(repo().join("docs/src")) {
                assert!(target.starts_with(&book), "{origin}: leaves docs/src, so the built book cannot follow it");
            }
            if !fragment.is_empty() {
                assert!(heading_ids(&target).iter().any(|id| id == fragment), "{origin}: no heading #{fragment}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} links found");
}

#[test]
fn every_chapter_is_in_the_summary() {
    let summary = std::fs::read_to_string(repo().join("docs/src/SUMMARY.md")).unwrap();
    for source in sources().into_iter().skip(1) {
        let file = source.file_name().unwrap().to_string_lossy().into_owned();
        if file != "SUMMARY.md" {
            assert!(summary.contains(&format!("]({file})")), "docs/src/{file} is not in SUMMARY.md");
        }
    }
}

#[test]
fn the_address_rewrite_leaves_longer_ports_alone() {
    let mut a = Addresses::default();
    a.map("127.0.0.1:80", "127.0.0.1:41000");
    assert_eq!(
        a.apply("http://127.0.0.1:80/ http://127.0.0.1:8080/ localhost:80"),
        "http://127.0.0.1:41000/ http://127.0.0.1:8080/ localhost:41000"
    );
    assert_eq!(background("agent --listen 0.0.0.0:7070 &").map(|b| b.1), Some("0.0.0.0:7070".into()));
    assert_eq!(background("controller serve &  # comment").map(|b| b.1), Some("127.0.0.1:8089".into()));
    assert_eq!(background("controller run -n 1 && true"), None);
    assert_eq!(background("curl x &"), None);
}

/// The long flags a `--help` text names (`--help` and `--version` aside).
fn long_flags(help: &str) -> Vec<String> {
    let mut flags: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
        .filter(|w| *w != "--help" && *w != "--version")
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn the_flags_chapter_names_every_flag_the_binaries_take() {
    let chapter = std::fs::read_to_string(repo().join("docs/src/flags.md")).unwrap();
    let section = |heading: &str| -> String {
        let start =
            chapter.find(&format!("## `{heading}`")).unwrap_or_else(|| panic!("flags.md: no section {heading}"));
        let rest = &chapter[start + 3..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
    };
    let cases: [(&str, PathBuf, &[&str]); 6] = [
        ("controller run", PathBuf::from(env!("CARGO_BIN_EXE_controller")), &["run", "--help"]),
        ("controller serve", PathBuf::from(env!("CARGO_BIN_EXE_controller")), &["serve", "--help"]),
        ("controller demo", PathBuf::from(env!("CARGO_BIN_EXE_controller")), &["demo", "--help"]),
        ("controller compare", PathBuf::from(env!("CARGO_BIN_EXE_controller")), &["compare", "--help"]),
        ("agent", agent_bin(), &["--help"]),
        ("target-server", target_server_bin(), &["--help"]),
    ];
    for (heading, bin, args) in cases {
        let out = Command::new(bin).args(args).output().expect("run --help");
        assert!(out.status.success(), "{heading} --help failed");
        let flags = long_flags(&String::from_utf8_lossy(&out.stdout));
        assert!(flags.len() >= 4, "{heading}: only {flags:?} found in --help");
        let text = section(heading);
        for flag in flags {
            let named = text
                .match_indices(&flag)
                .any(|(i, _)| !text[i + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-'));
            assert!(named, "flags.md, section `{heading}`: {flag} (from --help) is not described");
        }
    }
}
