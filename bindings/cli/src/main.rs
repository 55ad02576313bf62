//! `phony`: snapshot a PostgreSQL database and roll it back in seconds.
//!
//! Exit codes: 0 success, 1 operational failure, 2 usage error, 130 interrupted. Errors
//! are one line on stderr; with `--json`, a one-line JSON document (see [`failure`]).

mod cli;
mod context;
mod copy;
mod diff;
mod export;
mod failure;
mod output;
mod progress;
mod prune;
mod run;
mod serve;
mod snapshot;
mod stdout;
mod store_cmd;
mod sync;
mod timeline;
mod track;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

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
    match &cli.command {
        Command::Completions { shell } => return finish_local(completions(*shell), cli.json),
        Command::Man => return finish_local(man_page(), cli.json),
        _ => {}
    }
    let json = cli.json;
    let ctx = Context::new(&cli);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Snapshot(cmd) => snapshot::run(&ctx, cmd).await,
            Command::Track(cmd) => track::run(&ctx, cmd).await,
            Command::Store(cmd) => store_cmd::run(&ctx, cmd).await,
            Command::Sync(args) => sync::run(&ctx, args).await,
            Command::Run(args) => run::run(&ctx, args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Completions { .. } | Command::Man => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure::finish(&e, json),
    }
}

/// Ends a command that needs neither database nor store.
fn finish_local(result: anyhow::Result<()>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure::finish(&e, json),
    }
}

/// `phony completions SHELL`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "phony", &mut script);
    stdout::write(&String::from_utf8_lossy(&script))
}

/// `phony man`: the man page, in roff, on stdout.
fn man_page() -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    stdout::write(&String::from_utf8_lossy(&page))
}

/// A command line clap refused: its own message, or with `--json` a JSON document; exit 2.
/// Help and version go to stdout as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().any(|a| a == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        // Printing help into a closed pipe is no error either.
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    let message = match e.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a subcommand is needed (see `phony --help`)"
        }
        _ => first.strip_prefix("error: ").unwrap_or(first),
    };
    failure::print("usage", message, true);
    ExitCode::from(2)
}
