//! `phony`: snapshot a PostgreSQL database and roll it back in seconds.
//!
//! Exit codes: 0 success, 1 operational failure, 2 usage error. Errors are one line on
//! stderr.

mod cli;
mod context;
mod copy;
mod diff;
mod export;
mod gc;
mod lease;
mod output;
mod progress;
mod prune;
mod snapshot;
mod store_cmd;
mod track;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::context::Context;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PHONY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phony: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Context::new(&cli);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Snapshot(cmd) => snapshot::run(&ctx, cmd).await,
            Command::Track(cmd) => track::run(&ctx, cmd).await,
            Command::Store(cmd) => store_cmd::run(&ctx, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phony: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause its context already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
