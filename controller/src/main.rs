//! The `controller` binary: parse flags, set up logging, run, exit with the
//! code the library chose.

use clap::Parser;

/// jemalloc rather than the system allocator: the HTTP/2 path's `h2` crate
/// allocates for every stream, and glibc's malloc and free were a tenth of
/// its CPU per request (docs/src/http2.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = match controller::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(e.kind(), DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                std::process::exit(if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
            }
            // One line: clap's message naming the flag and the problem, and
            // its tips ("a similar argument exists: '--connections'"), without
            // the usage summary.
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .map(|l| l.trim_start_matches("error: "))
                .collect();
            eprintln!("controller: {} (see --help)", first.join("; "));
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Embedded agents' connections and links to many agents need
    // descriptors: take all the hard limit allows (embedded agents refuse
    // plans beyond it, see embedded.rs).
    agent::listen::raise_open_files();
    let code = match controller::run_cli(cli) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain of causes, on one line.
            eprintln!("controller: {}", controller::error::chain(&e));
            e.exit_code()
        }
    };
    std::process::exit(code);
}
