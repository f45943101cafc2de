//! Deployment files cannot drift from the flags: every command line that
//! `deploy/` gives `controller`, `agent` or `target-server` (Kubernetes
//! containers as rendered by `kubectl kustomize`, the Dockerfile's default
//! commands, the systemd unit's `ExecStart`) is run with the real binary plus
//! `--dry-run`, which checks every flag without network activity.
//!
//! Without `kubectl` on the PATH the Kubernetes files are read as written
//! (the base only, no overlay patches); `.ci/run` makes sure kubectl is there.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use volley_testkit::*;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// One command line from a deployment file: where it came from, the program,
/// its arguments.
#[derive(Debug)]
struct CommandLine {
    origin: String,
    program: String,
    args: Vec<String>,
    /// Environment variables the deployment gives the process (values from
    /// Secrets and files stand in as placeholders): agents on a non-loopback
    /// address refuse to start without VOLLEY_TOKEN, so it must be there.
    env: Vec<(String, String)>,
}

/// Every Kubernetes document of the base and the example overlay.
fn kubernetes_documents() -> Vec<(String, Value)> {
    let mut texts = Vec::new();
    let kubectl = Command::new("kubectl").args(["version", "--client"]).output();
    if kubectl.is_ok_and(|o| o.status.success()) {
        for dir in ["k8s", "k8s/overlays/example"] {
            let out = Command::new("kubectl").arg("kustomize").arg(deploy().join(dir)).output().unwrap();
            assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
            texts.push((format!("deploy/{dir} (rendered)"), String::from_utf8(out.stdout).unwrap()));
        }
    } else {
        eprintln!("kubectl not found: reading deploy/k8s/base as written, without the overlay");
        for entry in std::fs::read_dir(deploy().join("k8s/base")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("kustomization.yaml") {
                texts.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut docs = Vec::new();
    for (origin, text) in texts {
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{origin} is not YAML: {e}"));
            docs.push((origin.clone(), value));
        }
    }
    docs
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().expect("a string argument").to_owned()).collect())
        .unwrap_or_default()
}

/// The containers' command lines of every workload document.
fn kubernetes_command_lines() -> Vec<CommandLine> {
    let mut out = Vec::new();
    for (origin, doc) in kubernetes_documents() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let pod = match kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &doc["spec"]["template"]["spec"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "Pod" => &doc["spec"],
            _ => continue,
        };
        for container in
            pod["initContainers"].as_sequence().into_iter().chain(pod["containers"].as_sequence()).flatten()
        {
            let command = strings(&container["command"]);
            let cname = container["name"].as_str().unwrap_or_default();
            assert!(!command.is_empty(), "{origin}: {kind}/{name} container {cname} has no command");
            let mut args = command[1..].to_vec();
            args.extend(strings(&container["args"]));
            let env = container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let name = e["name"].as_str()?.to_owned();
                    let value = e["value"].as_str().unwrap_or("placeholder-from-a-secret").to_owned();
                    Some((name, value))
                })
                .collect();
            out.push(CommandLine {
                origin: format!("{origin}: {kind}/{name} container {cname}"),
                program: command[0].clone(),
                args,
                env,
            });
        }
    }
    out
}

/// The default command line (`ENTRYPOINT` + `CMD`) of each final stage of the Dockerfile.
fn dockerfile_command_lines() -> Vec<CommandLine> {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let mut out: Vec<CommandLine> = Vec::new();
    let mut stage = String::new();
    for line in text.lines() {
        let json = |rest: &str| serde_json::from_str::<Vec<String>>(rest.trim()).expect("exec-form JSON array");
        if let Some(rest) = line.strip_prefix("FROM ") {
            stage = rest.rsplit(' ').next().unwrap_or_default().to_owned();
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            let entry = json(rest);
            out.push(CommandLine {
                origin: format!("deploy/Dockerfile stage {stage}"),
                program: entry[0].clone(),
                args: entry[1..].to_vec(),
                // The images are run with `-e VOLLEY_TOKEN=...` (README).
                env: vec![("VOLLEY_TOKEN".into(), "placeholder-from-docker-run".into())],
            });
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            let last = out.last_mut().expect("CMD after ENTRYPOINT");
            last.args.extend(json(rest));
        }
    }
    out
}

/// The `ExecStart` of every systemd unit in deploy/systemd.
fn systemd_command_lines() -> Vec<CommandLine> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // The unit's EnvironmentFile holds VOLLEY_TOKEN (README).
        let env = if text.lines().any(|l| l.trim_start_matches('-').starts_with("EnvironmentFile=")) {
            vec![("VOLLEY_TOKEN".into(), "placeholder-from-the-environment-file".into())]
        } else {
            Vec::new()
        };
        for line in text.lines().filter_map(|l| l.strip_prefix("ExecStart=")) {
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            out.push(CommandLine {
                origin: path.display().to_string(),
                program: words[0].clone(),
                args: words[1..].to_vec(),
                env: env.clone(),
            });
        }
    }
    out
}

/// Runs `line` with the binary it names plus `--dry-run`; returns which binary it was.
fn check(line: &CommandLine) -> &'static str {
    let name = Path::new(&line.program).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (which, bin): (&'static str, PathBuf) = match name {
        "controller" => ("controller", PathBuf::from(env!("CARGO_BIN_EXE_controller"))),
        "agent" => ("agent", agent_bin()),
        "target-server" => ("target-server", target_server_bin()),
        other => panic!("{}: runs {other:?}, which is none of Volley's binaries", line.origin),
    };
    let out = Command::new(bin)
        .args(&line.args)
        .arg("--dry-run")
        .env_remove("VOLLEY_TOKEN")
        .envs(line.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: `{} {}` is refused by the real binary: {}",
        line.origin,
        line.program,
        line.args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run"), "{}: no dry run happened", line.origin);
    which
}

#[test]
fn every_command_line_in_deploy_is_accepted_by_the_real_binaries() {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for line in kubernetes_command_lines().iter().chain(&dockerfile_command_lines()).chain(&systemd_command_lines()) {
        *seen.entry(check(line)).or_default() += 1;
    }
    // Each binary is deployed somewhere; finding none means the parsing broke.
    for bin in ["controller", "agent", "target-server"] {
        assert!(seen.get(bin).copied().unwrap_or(0) >= 2, "only {seen:?} command lines found");
    }
}

#[test]
fn a_flag_the_binaries_do_not_know_is_caught() {
    // The check above must be able to fail: a manifest with a made-up flag.
    let line = CommandLine {
        origin: "made up".into(),
        program: "/usr/local/bin/agent".into(),
        args: vec!["--tls".into()],
        env: Vec::new(),
    };
    assert!(std::panic::catch_unwind(|| check(&line)).is_err());
}
