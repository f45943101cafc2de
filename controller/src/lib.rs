//! The Volley controller: splits a load test across agents, merges their
//! results into one global report.
//!
//! # Layout
//! - [`cli`]: flags and their checks (`controller run`, `controller demo`).
//! - [`discovery`]: `--agents` entries (addresses, `dns:` names) to agent addresses.
//! - [`dry_run`]: `--dry-run`, checking a command line without network activity.
//! - [`coordinator`]: connecting to agents, sending plans, merging snapshots.
//! - [`outcome`]: what a run produced, per agent and merged, and its observer.
//! - [`split`]: proportional, deterministic splitting of quotas and connections.
//! - [`report`]: the global report as text and JSON.
//! - [`series`], [`output`], [`html`], [`threshold`]: the per-second series and
//!   progress, CSV and HDR log outputs, the HTML page, `--fail-if`.
//! - [`embedded`]: in-process agents for single-machine runs and the demo.
//! - [`serve`]: `controller serve`, the HTTP API and the live web page.
//! - [`error`]: errors and their exit codes.

pub mod cli;
pub mod coordinator;
pub mod discovery;
pub mod dry_run;
pub mod embedded;
pub mod error;
pub mod html;
pub mod outcome;
pub mod output;
pub mod report;
pub mod series;
pub mod serve;
pub mod split;
pub mod threshold;

use cli::{Cli, Command, DemoArgs, Output, RunConfig};
use embedded::EmbeddedAgent;
use error::Error;
use report::Report;

/// Runs a checked configuration and returns its global report. Without
/// agents, one agent runs embedded in this process. `observer` sees the run as
/// it goes; when `cancel` completes the agents are cancelled and the report
/// covers what they did.
pub async fn run(
    cfg: &RunConfig,
    observer: &mut dyn outcome::Observer,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Report, Error> {
    let (addresses, embedded) = if cfg.agents.is_empty() {
        let threads = cfg.threads.map_or_else(agent::default_threads, |t| t as usize);
        let a = EmbeddedAgent::start(threads).await?;
        (vec![a.address.clone()], Some(a))
    } else {
        (discovery::discover(&cfg.agents, cfg.connections).await?, None)
    };
    let outcome = coordinator::execute(cfg, &addresses, observer, cancel).await;
    if let Some(a) = embedded {
        a.stop().await;
    }
    let mut report = Report::new(&cfg.url, &cfg.method, cfg.connections, cfg.rate, cfg.ramp_up, &outcome?);
    report.scenario = cfg.scenario.as_ref().map(|sc| report::ScenarioInfo {
        users: sc.users,
        spawn_rate: sc.spawn_rate,
        user_types: sc
            .scenario
            .users
            .iter()
            .zip(&sc.per_type)
            .map(|(u, &n)| report::UserTypeRow { name: u.name.clone(), users: n })
            .collect(),
    });
    Ok(report)
}

/// Adds what the run's observer gathered (the per-second series) and the
/// verdicts of `thresholds` to its report.
pub fn complete(mut report: Report, series: &series::Series, thresholds: &[threshold::Threshold]) -> Report {
    report.series = series.rows();
    report.thresholds = thresholds.iter().map(|t| t.check(&report)).collect();
    report
}

/// What the demo did: the report, and what the target-server itself counted.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The global report.
    pub report: Report,
    /// `/hello` responses the target-server says it served.
    pub served: u64,
}

/// Starts a target-server and two agents in-process on free loopback ports and
/// loads the target's `/hello` through them.
pub async fn demo(args: &DemoArgs) -> Result<DemoOutcome, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Other(format!("cannot start the demo target-server: {e}")))?;
    let server = target_server::start(listener, 1)
        .map_err(|e| Error::Other(format!("cannot start the demo target-server: {e}")))?;
    let url = format!("http://{}/hello", server.local_addr());
    let a = EmbeddedAgent::start(1).await?;
    let b = EmbeddedAgent::start(1).await?;
    let run_args = cli::RunArgs {
        agents: Some(format!("{},{}", a.address, b.address)),
        url: Some(url),
        scenario: None,
        scenario_text: None,
        users: None,
        spawn_rate: None,
        tags: Vec::new(),
        exclude_tags: Vec::new(),
        target_ca: None,
        target_insecure: false,
        requests: Some(args.requests),
        duration: None,
        connections: args.connections,
        threads: Some(1),
        method: "GET".into(),
        headers: Vec::new(),
        body: None,
        timeout: std::time::Duration::from_secs(30),
        success_status: Vec::new(),
        output: args.output,
        rate: None,
        ramp_up: None,
        min_agents: None,
        link: cli::AgentLink::default(),
        fail_if: Vec::new(),
        hdr_log: None,
        html: None,
        quiet: true,
    };
    let result = match run_args.check() {
        Ok(cfg) => run(&cfg, &mut outcome::NoObserver, std::future::pending()).await,
        Err(e) => Err(e),
    };
    a.stop().await;
    b.stop().await;
    let served = server.stats().count("/hello", 200);
    tokio::task::spawn_blocking(move || server.shutdown()).await.ok();
    Ok(DemoOutcome { report: result?, served })
}

/// Completes on the first Ctrl-C, after saying what happens next.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("controller: interrupted; cancelling the agents and reporting what they did");
    } else {
        std::future::pending::<()>().await;
    }
}

fn print(report: &Report, output: Output) {
    match output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", report.to_json()),
        Output::Csv => print!("{}", output::csv(&report.series)),
    }
}

/// `controller run`: runs, writes the outputs, returns the exit code (0 done,
/// 1 the work could not be done, 3 a `--fail-if` threshold failed).
async fn run_command(cfg: RunConfig) -> Result<i32, Error> {
    if cfg.target_insecure {
        eprintln!("controller: warning: -k/--target-insecure: the target's TLS certificates are not checked");
    }
    let mut series = series::Series::new(series::Progress::detect(cfg.quiet));
    let started = std::time::SystemTime::now();
    let result = run(&cfg, &mut series, interrupted()).await;
    series.finish();
    let report = complete(result?, &series, &cfg.thresholds);
    if let Some(path) = &cfg.hdr_log {
        let bytes = output::hdr_log(series.seconds(), started).map_err(|e| Error::Other(format!("--hdr-log: {e}")))?;
        std::fs::write(path, bytes)
            .map_err(|e| Error::Other(format!("--hdr-log: cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &cfg.html {
        std::fs::write(path, html::page(&report))
            .map_err(|e| Error::Other(format!("--html: cannot write {}: {e}", path.display())))?;
    }
    print(&report, cfg.output);
    Ok(report.exit_code())
}

/// The controller's entry: runs a parsed command line, prints, returns the
/// process exit code (0 done, 1 run or agent error, 2 usage error, 3 a
/// `--fail-if` threshold failed).
pub fn main(cli: Cli) -> i32 {
    if cli.dry_run {
        return dry_run::main(&cli.command);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("controller: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result: Result<i32, Error> = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let cfg = args.check()?;
                run_command(cfg).await
            }
            Command::Demo(args) => {
                let d = demo(&args).await?;
                print(&d.report, args.output);
                if args.output == Output::Text {
                    println!();
                    println!(
                        "target-server counted {} responses to /hello; the report counts {} successful requests",
                        d.served, d.report.successful_requests
                    );
                }
                Ok(if d.served == d.report.successful_requests { 0 } else { 1 })
            }
            Command::Serve(args) => serve::main(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("controller: {e}");
            e.exit_code()
        }
    }
}
