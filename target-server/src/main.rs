//! The `target-server` binary: parses flags, sets up logging and hands over to
//! [`target_server::run`].

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let args = target_server::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        // stdout carries the `listening on` line that tools parse; logs go elsewhere.
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(err) = target_server::run(args) {
        eprintln!("target-server: {err:#}");
        std::process::exit(1);
    }
}
