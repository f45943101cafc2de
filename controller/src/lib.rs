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
//! - [`series`], [`output`], [`html`], [`threshold`]: the per-second series and
//!   progress, CSV and HDR log outputs, the HTML page, `--fail-if`.
//! - [`embedded`]: in-process agents for single-machine runs and the demo.
//! - [`serve`]: `controller serve`, the HTTP API and the live web page.
//! - [`error`]: errors, the fields they name, and their exit codes.

pub mod cli;
pub mod config;
pub mod coordinator;
pub mod discovery;
pub mod dry_run;
pub mod embedded;
pub mod error;
pub mod html;
pub mod outcome;
pub mod output;
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
        let a = EmbeddedAgent::start(threads).await?;
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
            .map(|outcome| Report::build(&cfg, &outcome, Vec::new())),
        Err(e) => Err(e.into()),
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

/// The error for a `--hdr-log` file that could not be written or encoded.
fn hdr_log_error(e: output::HdrLogError) -> Error {
    match e {
        output::HdrLogError::Create { path, source } | output::HdrLogError::Write { path, source } => {
            Error::Write { flag: "--hdr-log", path, source }
        }
        e @ output::HdrLogError::Second { .. } => Error::Encode { flag: "--hdr-log", source: e.into() },
    }
}

/// `controller run`: runs, writes the outputs, returns the exit code (0 done,
/// 1 the work could not be done, 3 a `--fail-if` threshold failed).
async fn run_and_report(cfg: RunConfig) -> Result<i32, Error> {
    if cfg.target_insecure {
        eprintln!("controller: warning: -k/--target-insecure: the target's TLS certificates are not checked");
    }
    let mut series = series::Series::new(series::Progress::detect(cfg.quiet));
    if let Some(path) = &cfg.hdr_log {
        // Created before the run, so a path that cannot be written stops it
        // before any load is sent; the seconds are written as the run goes.
        let log = output::HdrLog::create(path, std::time::SystemTime::now()).map_err(hdr_log_error)?;
        series = series.with_hdr_log(log);
    }
    let result = run_on_agents(&cfg, &mut series, interrupted()).await;
    let written = series.finish();
    let report = Report::build(&cfg, &result?, series.rows());
    written.map_err(hdr_log_error)?;
    if let Some(path) = &cfg.html {
        std::fs::write(path, html::page(&report)).map_err(|source| Error::Write {
            flag: "--html",
            path: path.clone(),
            source,
        })?;
    }
    print(&report, cfg.output);
    Ok(report.exit_code())
}

/// The controller's entry: runs a parsed command line, prints, returns the
/// process exit code (0 done, 1 the demo's counts disagree, 3 a `--fail-if`
/// threshold failed), or the error whose [`Error::exit_code`] the process
/// exits with (1 run or agent error, 2 usage error).
pub fn run_cli(cli: Cli) -> Result<i32, Error> {
    if cli.dry_run {
        print!("{}", dry_run::describe_command(&cli.command)?);
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
                    println!();
                    println!(
                        "target-server counted {} responses to /hello; the report counts {} successful requests",
                        d.served, d.report.successful_requests
                    );
                }
                Ok(if d.served == d.report.successful_requests { 0 } else { 1 })
            }
            Command::Serve(args) => serve::serve(*args).await,
        }
    })
}
