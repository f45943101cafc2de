//! The `agent` binary: parse flags, set up logging, serve.

use clap::Parser;

/// jemalloc rather than the system allocator: the HTTP/2 path's `h2` crate
/// allocates for every stream, and glibc's malloc and free were a tenth of
/// its CPU per request (docs/src/http2.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args = agent::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = agent::run(args) {
        eprintln!("agent: {e:#}");
        std::process::exit(if e.downcast_ref::<agent::UsageError>().is_some() { 2 } else { 1 });
    }
}
