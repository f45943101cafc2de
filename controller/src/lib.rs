//! The Volley controller: splits a load test across agents, merges their
//! results into one global report.
//!
//! # Layout
//! - [`cli`]: the command line: subcommands, `demo` and `serve` flags.
//! - [`request`]: one run request, both `controller run`'s flags and the
//!   API's JSON body, and its one check into a [`config::RunConfig`].
//! - [`config`]: the checked run the other parts read.
//! - [`discovery`]: `--agents` entries (addresses, `dns:` names) to agent addresses.
//! - [`dry_run`]: `--dry-run`, checking a command line without network activity.
//! - [`coordinator`]: connecting to agents, sending plans, merging snapshots.
//! - [`split`]: proportional, deterministic splitting of quotas and connections.
//! - [`report`]: the global report as text and JSON.
//! - [`series`], [`output`], [`html`], [`threshold`]: the per-second series,
//!   CSV and HDR log outputs, the HTML page, `--fail-if`.
//! - [`progress`]: the live display while a run goes.
//! - [`chart`]: SVG charts (drawn by `plotters`) for the HTML page and the web page.
//! - [`compare`]: `controller compare`, `--baseline`: is a run slower than another?
//! - [`embedded`]: in-process agents for single-machine runs and the demo.
//! - [`serve`]: `controller serve`, the HTTP API and the live web page.
//! - [`metrics`]: `--metrics-listen`, the live figures for Prometheus.
//! - [`error`]: errors, the fields they name, and their exit codes.

pub mod chart;
pub mod cli;
pub mod compare;
pub mod config;
pub mod coordinator;
pub mod discovery;
pub mod dry_run;
pub mod embedded;
pub mod error;
pub mod html;
pub mod latency;
pub mod metrics;
pub mod outcome;
pub mod output;
pub mod progress;
pub mod report;
pub mod request;
pub mod series;
pub mod serve;
pub mod split;
pub mod threshold;

use cli::{Cli, Command, DemoArgs};
use config::{Output, RunConfig};
use embedded::EmbeddedAgent;
use error::Error;
use report::Report;
use request::RunRequest;

/// Runs a checked configuration on its agents and returns what they did.
/// Without agents, one agent runs embedded in this process. `observer` sees
/// the run as it goes; when `cancel` completes the agents are cancelled and
/// the outcome covers what they did. [`Report::build`] makes the report.
pub async fn run_on_agents(
    cfg: &RunConfig,
    observer: &mut dyn outcome::Observer,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<outcome::Outcome, Error> {
    let (addresses, embedded) = if cfg.agents.is_empty() {
        let threads = cfg.threads.map_or_else(agent::default_threads, |t| t as usize);
        let a = EmbeddedAgent::start_with_io(threads, cfg.io).await?;
        (vec![a.address.clone()], Some(a))
    } else {
        (discovery::discover(&cfg.agents, cfg.connections).await?, None)
    };
    let outcome = coordinator::execute(cfg, &addresses, observer, cancel).await;
    if let Some(a) = embedded {
        a.stop().await;
    }
    outcome
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::start("the demo target-server", e))?;
    let server = target_server::start(listener, 1).map_err(|e| Error::start("the demo target-server", e))?;
    let url = format!("http://{}/hello", server.local_addr());
    let a = EmbeddedAgent::start(1).await?;
    let b = EmbeddedAgent::start(1).await?;
    let request = RunRequest {
        agents: Some(format!("{},{}", a.address, b.address)),
        url: Some(url),
        requests: Some(args.requests),
        connections: Some(args.connections),
        threads: Some(1),
        output: args.output,
        quiet: true,
        ..RunRequest::default()
    };
    let result = match request.check() {
        Ok(cfg) => run_on_agents(&cfg, &mut outcome::NoObserver, std::future::pending())
            .await
            .map(|outcome| Report::build(&cfg, &outcome, Vec::new(), Vec::new())),
        Err(e) => Err(e.into()),
    };
    a.stop().await;
    b.stop().await;
    let served = server.stats().count("/hello", 200);
    tokio::task::spawn_blocking(move || server.shutdown()).await.ok();
    Ok(DemoOutcome { report: result?, served })
}

/// Exit code of a run cut short by Ctrl-C (128 + SIGINT, as shells use).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Completes on the first Ctrl-C, after saying (on a line of its own, above
/// the live display) what happens next.
async fn interrupted(live: progress::Live) {
    if tokio::signal::ctrl_c().await.is_ok() {
        live.say("controller: interrupted; cancelling the agents and reporting what they did");
    } else {
        std::future::pending::<()>().await;
    }
}

/// Writes `text` to stdout. A reader that went away (`controller run ... |
/// head`) is no error: what it wanted it has read.
fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => eprintln!("controller: cannot write the report: {e}"),
        _ => {}
    }
}

fn print(report: &Report, output: Output) {
    match output {
        Output::Text => write_stdout(&report.to_text()),
        Output::Json => write_stdout(&format!("{}\n", report.to_json())),
        Output::Csv => write_stdout(&output::csv(&report.series)),
    }
}

/// The error for a `--hdr-log` file that could not be written or encoded.
fn hdr_log_error(e: output::HdrLogError) -> Error {
    match e {
        output::HdrLogError::Create { path, source } | output::HdrLogError::Write { path, source } => {
            Error::Write { flag: "--hdr-log", path, source }
        }
        e @ output::HdrLogError::Second { .. } => Error::Encode { flag: "--hdr-log", source: e.into() },
    }
}

/// `controller run`: runs, prints the report, writes the output files,
/// returns the exit code (0 done, 1 the work could not be done or every
/// request failed, 3 a `--fail-if` threshold failed, 130 interrupted by
/// Ctrl-C). The report is printed before the files are written, so a file
/// that cannot be written at the end never loses the run.
async fn run_and_report(cfg: RunConfig) -> Result<i32, Error> {
    if cfg.target_insecure {
        eprintln!("controller: warning: -k/--target-insecure: the target's TLS certificates are not checked");
    }
    for w in cfg.scenario.as_ref().map(|sc| sc.warnings(cfg.limit)).unwrap_or_default() {
        eprintln!("controller: warning: {w}");
    }
    let goal = Some(cfg.limit);
    let users = cfg.scenario.as_ref().map(|sc| sc.users);
    let live = progress::Live::new(progress::Progress::detect(cfg.quiet), goal, users);
    let mut series =
        series::Series::with_live(live.clone()).with_stages(cfg.stages.as_ref().map(|s| s.ends()).unwrap_or_default());
    let started = std::time::SystemTime::now();
    if let Some(path) = &cfg.hdr_log {
        // Created before the run, so a path that cannot be written stops it
        // before any load is sent; the seconds are written as the run goes.
        let log = output::HdrLog::create(path, started).map_err(hdr_log_error)?;
        series = series.with_hdr_log(log);
    }
    // Bound before the run, so an address that cannot be used stops it
    // before any load is sent.
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let m = metrics::Metrics::new();
            metrics::spawn(metrics::bind(addr).await?, &m);
            Some(m)
        }
        None => None,
    };
    let mut tee = metrics::Tee::new(&mut series, metrics.as_ref().map(|m| m.watch(&cfg, None)));
    let result = run_on_agents(&cfg, &mut tee, interrupted(live)).await;
    tee.finish(result.as_ref().map_or(&[][..], |o| &o.agents[..]));
    let written = series.finish();
    let mut report = Report::build(&cfg, &result?, series.rows(), series.stages());
    report.started_at = report::rfc3339(started);
    if let Some(h) = report.headline.as_ref().filter(|_| cfg.output != Output::Text) {
        eprintln!("controller: {h}");
    }
    if let Some(baseline) = &cfg.baseline {
        for w in compare::warnings(baseline, &compare::Saved::of(&report)) {
            eprintln!("controller: warning: --baseline: not comparable: {w}");
        }
    }
    // Printed before the files are finished, so a file that fails at the end
    // never loses the run.
    print(&report, cfg.output);
    written.map_err(hdr_log_error)?;
    if let Some(path) = &cfg.html {
        std::fs::write(path, html::page(&report)).map_err(|source| Error::Write {
            flag: "--html",
            path: path.clone(),
            source,
        })?;
    }
    if metrics.is_some() && !cfg.metrics_linger.is_zero() {
        // The finished run's figures stay on /metrics for a last scrape.
        let linger = cfg.metrics_linger;
        eprintln!(
            "controller: serving the run's metrics for {} more (Ctrl-C ends it)",
            humantime::format_duration(linger)
        );
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    Ok(if report.cancelled { EXIT_INTERRUPTED } else { report.exit_code() })
}

/// `controller compare`: reads both reports, prints the comparison, writes
/// the page; 3 when a `--fail-if` failed.
fn compare_files(args: &cli::CompareArgs) -> Result<i32, Error> {
    let settings = compare::Settings::new(args.confidence, args.min_change, &args.fail_if)?;
    let baseline = compare::Saved::load(&args.baseline)?;
    let candidate = compare::Saved::load(&args.candidate)?;
    let c = compare::compare(&baseline, &candidate, &settings);
    if let Some(path) = &args.html {
        std::fs::write(path, compare::page::page(&baseline, &candidate, &c)).map_err(|source| Error::Write {
            flag: "--html",
            path: path.clone(),
            source,
        })?;
    }
    match args.output {
        cli::CompareOutput::Json => println!("{}", c.to_json()),
        cli::CompareOutput::Text => print!("{}", c.to_text()),
    }
    Ok(c.exit_code())
}

/// The controller's entry: runs a parsed command line, prints, returns the
/// process exit code (0 done, 1 the demo's counts disagree, 3 a `--fail-if`
/// threshold failed), or the error whose [`Error::exit_code`] the process
/// exits with (1 run or agent error, 2 usage error).
pub fn run_cli(cli: Cli) -> Result<i32, Error> {
    if cli.dry_run {
        write_stdout(&dry_run::describe_command(&cli.command)?);
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::start("the async runtime", e))?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(request) => run_and_report(request.check()?).await,
            Command::Demo(args) => {
                let d = demo(&args).await?;
                print(&d.report, args.output);
                if args.output == Output::Text {
                    write_stdout(&format!(
                        "\ntarget-server counted {} responses to /hello; the report counts {} successful requests\n",
                        d.served, d.report.successful_requests
                    ));
                }
                Ok(if d.served == d.report.successful_requests { 0 } else { 1 })
            }
            Command::Serve(args) => serve::serve(*args).await,
            Command::Compare(args) => compare_files(&args),
        }
    })
}
