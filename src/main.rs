//! `unmark`: removes watermarks from images, as a service or from the command line.
//!
//! The binary only wires crates together; see `cli.rs` for the commands.

mod batch;
mod cli;
mod config;
mod embedded;
mod keys;
mod models;
mod plugins;
mod profile;
mod serve;
mod submit;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_tracing();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("unmark: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; `UNMARK_LOG` filters them (default `info`), `UNMARK_LOG_FORMAT=json`
/// makes them JSON lines.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("UNMARK_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
