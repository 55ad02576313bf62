//! `phony`: snapshot a PostgreSQL database and roll it back in seconds.
//!
//! Exit codes: 0 success, 1 operational failure, 2 usage error, 130 interrupted. Errors
//! are one line on stderr; with `--json`, a one-line JSON document (see [`failure`]).

mod cli;
mod context;
mod diff;
mod failure;
mod gc;
mod lease;
mod output;
mod progress;
mod prune;
mod snapshot;
mod stdout;
mod store_cmd;
mod track;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::context::Context;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
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
    let json = cli.json;
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
        Err(e) => failure::finish(&e, json),
    }
}

/// A command line clap refused: its own message, or with `--json` a JSON document; exit 2.
/// Help and version go to stdout as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().any(|a| a == "--json");
    if !json
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        // Printing help into a closed pipe is no error either.
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    failure::print("usage", message, true);
    ExitCode::from(2)
}
