//! `phony`: snapshot a PostgreSQL database and roll it back in seconds.
//!
//! Exit codes: 0 success, 1 operational failure, 2 usage error. Errors are one line on
//! stderr.

mod cli;
mod context;
mod diff;
mod gc;
mod lease;
mod output;
mod progress;
mod prune;
mod run;
mod snapshot;
mod store_cmd;
mod sync;
mod timeline;
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
            Command::Sync(args) => sync::run(&ctx, args).await,
            Command::Run(args) => run::run(&ctx, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A wrapped command's own status, passed on as it is.
            if let Some(run::ExitWith(code)) = e.downcast_ref::<run::ExitWith>() {
                return ExitCode::from(*code);
            }
            eprintln!("phony: error: {}", one_line(&e));
            if is_usage_error(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A malformed connection string is a usage error (exit 2), like a malformed flag.
fn is_usage_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<phony_postgres::Error>(),
            Some(phony_postgres::Error::InvalidTarget(_))
        )
    })
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
