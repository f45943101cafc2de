//! The demo target for Volley: a small, fast HTTP/1.1 and HTTP/2 server that
//! counts exactly what it serves, so a load test's report can be checked
//! against it.
//!
//! # Routes
//!
//! | request              | answer                                              |
//! |----------------------|-----------------------------------------------------|
//! | `GET /hello`         | 200 `Hello World!` (the hot path)                   |
//! | `GET /cast/<secs>`   | 200 `ok` after `secs` seconds (fractions allowed)   |
//! | `GET /delay/<ms>`    | 200 `ok` after `ms` milliseconds                    |
//! | `GET /status/<code>` | that status, for codes 200..=599                    |
//! | `POST /echo`         | the request body, with its content type             |
//! | `GET /stats`         | [`Stats`] as JSON (not itself counted)              |
//! | `POST /login`        | demo API: `{"token"}` for password `secret`, else 401 |
//! | `GET /items`         | demo API: the items, with a token, else 401          |
//! | `POST /items`        | demo API: 201 with the new item, with a token        |
//!
//! Anything else is 404; a known path with the wrong method is 405; a bad
//! parameter is 400. Every answer but `/stats` is counted by path and status,
//! and by method, path and status.
//!
//! # Layout
//!
//! - [`server`]: threads, accept loops, graceful shutdown ([`start`], [`ServerHandle`]).
//! - `routes`: which request gets which answer.
//! - `demo`: the demo API for scenarios (login, items).
//! - [`stats`]: the lock-free-on-the-hot-path counters and their [`Stats`] snapshot.
//! - This file: the command line ([`Args`], [`run`]) that `src/main.rs` wraps.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

mod demo;
mod routes;
pub mod server;
pub mod stats;

pub use server::{ServerHandle, bind, start, start_tls, tls_config};
pub use stats::Stats;

/// Serve Volley's demo target: a fast HTTP/1.1 server that counts what it answers.
#[derive(Debug, Clone, Parser)]
#[command(name = "target-server", version, about)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Server threads, each with its own event loop.
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Check the flags, print what the server would do, and exit without listening.
    #[arg(long)]
    pub dry_run: bool,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds, serves until SIGTERM or Ctrl-C, then shuts down gracefully.
///
/// Prints `listening on http://ADDR` (or `https://`) to stdout once bound, so whoever started
/// the process can learn the real port when it asked for port 0.
pub fn run(args: Args) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |flag: &str, p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("{flag}: cannot read {}", p.display()))
            };
            let config = tls_config(&read("--tls-cert", cert)?, &read("--tls-key", key)?)
                .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?;
            Some(config)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if args.dry_run {
        // Lets deployment files be checked against the real flags.
        println!("target-server dry run: would listen on {scheme}://{} with {} threads", args.listen, args.threads);
        return Ok(());
    }
    // The handlers are installed before the ready line goes out: a SIGTERM
    // sent as soon as the line is read must stop us gracefully, not kill us.
    // The server runs on its own threads; a small runtime drives the
    // handlers (SIGTERM, how deployments stop us, and Ctrl-C).
    let signals =
        tokio::runtime::Builder::new_current_thread().enable_io().build().context("cannot start a runtime")?;
    let shutdown = {
        let _guard = signals.enter();
        volley_common::shutdown_signal().context("cannot install signal handlers")?
    };
    let listener = bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let server = match tls {
        Some(tls) => start_tls(listener, args.threads, tls),
        None => start(listener, args.threads),
    }
    .context("cannot start the server")?;
    let addr = server.local_addr();

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {scheme}://{addr}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    drop(stdout);
    tracing::info!(%addr, threads = args.threads, "serving");

    signals.block_on(shutdown);
    tracing::info!("shutting down");
    let stats = server.stats();
    server.shutdown();
    tracing::info!(served = stats.total, "stopped");
    Ok(())
}
