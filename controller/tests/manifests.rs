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

/// A rendered workload's pod template: its labels, annotations and containers.
fn pod_templates() -> Vec<(String, Value)> {
    kubernetes_documents()
        .into_iter()
        .filter(|(_, d)| matches!(d["kind"].as_str(), Some("Deployment" | "Job")))
        .map(|(origin, d)| (format!("{origin}: {}", d["metadata"]["name"].as_str().unwrap_or("")), d))
        .collect()
}

#[test]
fn the_pod_monitor_selects_the_pods_that_serve_metrics() {
    let path = deploy().join("k8s/monitoring/podmonitor.yaml");
    let pm: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // kubernetes-validate has no schema for the operator's CRDs: the fields
    // the operator reads are checked here.
    assert_eq!(pm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(pm["kind"].as_str(), Some("PodMonitor"));
    assert_eq!(pm["metadata"]["namespace"].as_str(), Some("volley"));
    assert_eq!(strings(&pm["spec"]["namespaceSelector"]["matchNames"]), ["volley"]);
    let exprs = pm["spec"]["selector"]["matchExpressions"].as_sequence().expect("matchExpressions");
    assert_eq!(exprs.len(), 1);
    assert_eq!(exprs[0]["key"].as_str(), Some("app.kubernetes.io/name"));
    assert_eq!(exprs[0]["operator"].as_str(), Some("In"));
    let names = strings(&exprs[0]["values"]);
    let endpoints = pm["spec"]["podMetricsEndpoints"].as_sequence().expect("podMetricsEndpoints");
    assert_eq!(endpoints.len(), 1);
    let port_name = endpoints[0]["port"].as_str().expect("a named port");
    assert_eq!(endpoints[0]["path"].as_str(), Some("/metrics"));

    let mut selected = Vec::new();
    for (origin, doc) in pod_templates() {
        assert_eq!(doc["metadata"]["namespace"].as_str(), Some("volley"), "{origin}");
        let template = &doc["spec"]["template"];
        let Some(app) = template["metadata"]["labels"]["app.kubernetes.io/name"].as_str() else { continue };
        if !names.iter().any(|n| n == app) {
            continue;
        }
        selected.push(app.to_owned());
        // The named port is the one the process serves /metrics on, and the
        // scrape annotations say the same.
        let container = &template["spec"]["containers"][0];
        let port = container["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str() == Some(port_name))
            .unwrap_or_else(|| panic!("{origin}: no container port named {port_name:?}"))["containerPort"]
            .as_u64()
            .unwrap();
        let args = strings(&container["args"]);
        let listen = args.iter().position(|a| a == "--metrics-listen").map(|i| args[i + 1].clone());
        assert_eq!(
            listen,
            Some(format!("0.0.0.0:{port}")),
            "{origin}: --metrics-listen and the port named {port_name}"
        );
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"), "{origin}");
        assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port.to_string().as_str()), "{origin}");
        assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"), "{origin}");
    }
    selected.sort();
    selected.dedup();
    assert_eq!(selected, ["volley-agent", "volley-controller"], "the PodMonitor selects both");
}

/// The metric families of the book's Prometheus page (its table).
fn documented_families() -> Vec<String> {
    let page = std::fs::read_to_string(deploy().join("../docs/src/prometheus.md")).unwrap();
    let mut out: Vec<String> = page
        .lines()
        .filter(|l| l.starts_with("| `volley_"))
        .flat_map(|l| l.split('|').nth(1).unwrap_or("").split(", ").map(|n| n.trim().trim_matches('`').to_owned()))
        .collect();
    out.sort();
    out
}

#[test]
fn the_grafana_dashboard_has_its_documented_fields() {
    let path = deploy().join("grafana/volley-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // The fields Grafana's dashboard model (and its import) needs.
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name} variable"));
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("run_id")["type"], "query");

    let documented = documented_families();
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = Vec::new();
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("a panel title");
        ids.push(p["id"].as_u64().expect("a panel id"));
        assert!(["timeseries", "stat", "table"].contains(&p["type"].as_str().unwrap_or("")), "{title}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0 && g["y"].is_u64(), "{title}: gridPos {g}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        let mut refs: Vec<&str> = targets.iter().map(|t| t["refId"].as_str().expect("refId")).collect();
        refs.sort();
        refs.dedup();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeat");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr").to_owned();
            // Every series it reads is one the controller exports, as documented.
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("volley_") {
                    let family = word.strip_suffix("_bucket").unwrap_or(word);
                    assert!(documented.iter().any(|f| f == family), "{title}: {family} is not in the book's table");
                }
            }
            exprs.push((title.to_owned(), expr));
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "panel ids repeat");
    // What the issue asks of it: rate, failures, p50/p95/p99, agents up, per name.
    let has = |s: &str| exprs.iter().any(|(_, e)| e.contains(s));
    for needed in [
        "rate(volley_requests_total",
        "outcome=\"failure\"",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "volley_agent_up",
        "volley_name_requests_total",
    ] {
        assert!(has(needed), "no panel queries {needed}");
    }

    // Each query is valid PromQL (Grafana's variables replaced): promtool
    // checks them as recording rules, where it is installed.
    let Ok(promtool) = Command::new("promtool").arg("--version").output() else {
        assert!(std::env::var("VOLLEY_REQUIRE_PROMETHEUS").as_deref() != Ok("1"), "promtool is not installed");
        eprintln!("SKIP: promtool not installed: the dashboard's PromQL is not parsed");
        return;
    };
    assert!(promtool.status.success());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        let e = e.replace("$__rate_interval", "1m").replace("$run_id", ".*");
        rules.push_str(&format!("      - record: volley:dashboard_{i}\n        expr: {}\n", serde_json::json!(e)));
    }
    let file = std::env::temp_dir().join(format!("volley-dashboard-rules-{}.yml", std::process::id()));
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool").args(["check", "rules"]).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
