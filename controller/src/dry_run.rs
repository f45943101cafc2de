//! `--dry-run`: check a command line and say what it would do, with no network
//! activity (no name is resolved, no agent contacted, no port bound).
//!
//! Deployment files run the real binaries with their arguments plus
//! `--dry-run` in tests (`tests/manifests.rs`), so a manifest cannot drift
//! from the flags the controller accepts.

use std::fmt::Write as _;

use crate::cli::Command;
use crate::config::{Limit, RunConfig};
use crate::discovery::AgentSource;
use crate::error::Error;

/// Checks `command` and says what it would do.
pub fn describe_command(command: &Command) -> Result<String, Error> {
    Ok(match command {
        Command::Run(request) => describe(&request.check()?),
        Command::Demo(args) => format!(
            "controller dry run: would start a target-server and two agents in this process and send {} \
             requests over {} connections\n",
            args.requests, args.connections
        ),
        Command::Compare(args) => {
            crate::compare::Settings::new(args.confidence, args.min_change, &args.fail_if)?;
            format!(
                "controller dry run: would compare {} (candidate) with {} (baseline)\n",
                args.candidate.display(),
                args.baseline.display()
            )
        }
        Command::Serve(args) => {
            crate::serve::check_serve_args(args)?;
            format!(
                "controller dry run: would serve the API and the web page on http://{} (runs use {})\n",
                args.listen,
                args.agents.as_deref().unwrap_or("an embedded agent each")
            )
        }
    })
}

/// What a checked `controller run` would do, one fact per line.
pub fn describe(cfg: &RunConfig) -> String {
    let mut out = String::new();
    let limit = match cfg.limit {
        Limit::Requests(n) => format!("{n} requests"),
        Limit::Duration(d) => format!("for {}", humantime::format_duration(d)),
    };
    // Writing to a String cannot fail.
    match &cfg.scenario {
        Some(sc) => {
            let types: Vec<String> =
                sc.scenario.users.iter().zip(&sc.per_type).map(|(u, n)| format!("{n} {}", u.name)).collect();
            let _ = writeln!(
                out,
                "controller dry run: would run the scenario against {} {limit} with {} users ({}), started {}",
                cfg.url,
                sc.users,
                types.join(", "),
                sc.spawn_rate.map_or_else(|| "all at once".to_owned(), |r| format!("{r} per second"))
            );
        }
        None => {
            let _ = writeln!(
                out,
                "controller dry run: would send {} {} {limit} over {} connections",
                cfg.method, cfg.url, cfg.connections
            );
        }
    }
    // The URL was checked before we got here; only an https one needs the line.
    if volley_proto::target::parse_url(&cfg.url).is_ok_and(|t| t.tls) {
        let trust = if cfg.target_insecure {
            "any certificate (-k/--target-insecure: not checked)"
        } else if cfg.target_ca_pem.is_empty() {
            "certificates from the web's roots"
        } else {
            "certificates from the web's roots or the --target-ca file (sent to the agents)"
        };
        let _ = writeln!(out, "target TLS: trusting {trust}");
    }
    if cfg.agents.is_empty() {
        let _ = writeln!(out, "agents: one embedded in this process");
    }
    for a in &cfg.agents {
        let _ = match a {
            AgentSource::Address(addr) => writeln!(out, "agent: {addr}"),
            AgentSource::Dns { name, port } => {
                writeln!(out, "agents: every address of {name} (resolved at run time), port {port}")
            }
        };
    }
    for pin in &cfg.connect_to {
        let _ = writeln!(out, "connect-to: {pin} (the Host header and TLS name stay the URL's)");
    }
    if cfg.scenario.is_none() && cfg.resolve_each != crate::request::DEFAULT_RESOLVE_EACH {
        let _ = if cfg.resolve_each.is_zero() {
            writeln!(out, "target addresses: resolved once, at the start")
        } else {
            writeln!(out, "target addresses: resolved again every {}", humantime::format_duration(cfg.resolve_each))
        };
    }
    if let Some(t) = cfg.threads {
        let _ = writeln!(out, "threads per agent: {t}");
    }
    if let Some(r) = cfg.rate {
        let _ = writeln!(out, "open model: {r} requests per second in total, latency from the intended send time");
    }
    if !cfg.ramp_up.is_zero() {
        let _ = writeln!(out, "ramp-up: {}", humantime::format_duration(cfg.ramp_up));
    }
    if let Some(k) = cfg.min_agents {
        let _ = writeln!(out, "at least {k} agents must answer");
    }
    if let Some(addr) = cfg.metrics_listen {
        let linger = humantime::format_duration(cfg.metrics_linger);
        let _ = writeln!(out, "metrics: live figures on http://{addr}/metrics, kept {linger} after the report");
    }
    let _ = writeln!(out, "output: {:?}", cfg.output);
    out
}
