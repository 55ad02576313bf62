//! `phony track on|off|status`

use std::time::Duration;

use anyhow::{Context as _, Result};
use phony_postgres::tracking;
use serde::Serialize;

use crate::cli::TrackCommand;
use crate::context::Context;
use crate::output;
use crate::stdout::outln;

pub async fn run(ctx: &Context, cmd: TrackCommand) -> Result<()> {
    let target = ctx.target()?;
    let client = target.connect().await?;
    match cmd {
        TrackCommand::On => {
            let before = tracking::status(&client).await?;
            let already = before.installed && before.valid && before.untracked_tables.is_empty();
            client
                .batch_execute("BEGIN")
                .await
                .context("starting a transaction")?;
            let install = async {
                tracking::install(&client)
                    .await
                    .with_context(|| format!("turning tracking on in {}", target.dbname()))
            };
            say_while_blocked(&target, &client, install).await?;
            client.batch_execute("COMMIT").await.context("committing")?;
            let headline = if already {
                "tracking is already on"
            } else {
                "tracking is on"
            };
            print_status(ctx, &client, headline).await
        }
        TrackCommand::Off => {
            let was_on = tracking::installed(&client).await?;
            client
                .batch_execute("BEGIN")
                .await
                .context("starting a transaction")?;
            tracking::uninstall(&client)
                .await
                .with_context(|| format!("turning tracking off in {}", target.dbname()))?;
            client.batch_execute("COMMIT").await.context("committing")?;
            let headline = if was_on {
                "tracking is off"
            } else {
                "tracking is already off"
            };
            print_status(ctx, &client, headline).await
        }
        TrackCommand::Status => print_status(ctx, &client, "").await,
    }
}

/// Runs `work` on `client`'s session; if that session waits for others (installing a
/// table's trigger waits for the transactions writing to it), says so once on stderr,
/// naming them, instead of sitting silent.
async fn say_while_blocked<T>(
    target: &phony_postgres::ConnectionTarget,
    client: &tokio_postgres::Client,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let pid: i32 = client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .context("asking for the session's id")?
        .get(0);
    let watch = async {
        // A second session, only to look; if it cannot be had, stay silent.
        let Ok(observer) = target.connect().await else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let blockers: Vec<i32> = match observer
                .query_one("SELECT pg_catalog.pg_blocking_pids($1)", &[&pid])
                .await
            {
                Ok(row) => row.get(0),
                Err(_) => return std::future::pending().await,
            };
            if !blockers.is_empty() {
                let pids: Vec<String> = blockers.iter().map(i32::to_string).collect();
                eprintln!(
                    "phony: waiting for {} writing to {} to finish (pid {}): a table's trigger can only be added between writes",
                    output::count(blockers.len(), "transaction", "transactions"),
                    target.dbname(),
                    pids.join(", ")
                );
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        done = work => done,
        never = watch => never,
    }
}

#[derive(Serialize)]
struct StatusView {
    tracking: bool,
    valid: bool,
    tracked_tables: i64,
    untracked_tables: Vec<String>,
    log_entries: i64,
    marks: i64,
}

async fn print_status(
    ctx: &Context,
    client: &tokio_postgres::Client,
    headline: &str,
) -> Result<()> {
    let s = tracking::status(client).await?;
    if ctx.json {
        return output::print_json(&StatusView {
            tracking: s.installed,
            valid: s.valid,
            tracked_tables: s.tracked_tables,
            untracked_tables: s.untracked_tables,
            log_entries: s.log_entries,
            marks: s.marks,
        });
    }
    if !headline.is_empty() {
        outln!("{headline}")?;
    }
    if !s.installed {
        if headline.is_empty() {
            outln!("tracking is off (turn it on with `phony track on`)")?;
        }
        return Ok(());
    }
    if !s.valid {
        outln!("tracking objects were copied from another database and are ignored; run `phony track on` to start afresh")?;
        return Ok(());
    }
    outln!(
        "{} tracked, {} logged, {}",
        output::count(s.tracked_tables, "table", "tables"),
        output::count(s.log_entries, "change", "changes"),
        output::count(s.marks, "snapshot mark", "snapshot marks")
    )?;
    if !s.untracked_tables.is_empty() {
        outln!(
            "not tracked (created since; restores compare content until the next full restore or `phony track on`): {}",
            s.untracked_tables.join(", ")
        )?;
    }
    Ok(())
}
