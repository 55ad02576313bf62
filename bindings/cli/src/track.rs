//! `phony track on|off|status`

use anyhow::{Context as _, Result};
use phony_postgres::tracking;
use serde::Serialize;

use crate::cli::TrackCommand;
use crate::context::Context;
use crate::output;

pub async fn run(ctx: &Context, cmd: TrackCommand) -> Result<()> {
    let target = ctx.target()?;
    let client = target.connect().await?;
    match cmd {
        TrackCommand::On => {
            client
                .batch_execute("BEGIN")
                .await
                .context("starting a transaction")?;
            tracking::install(&client)
                .await
                .with_context(|| format!("turning tracking on in {}", target.dbname()))?;
            client.batch_execute("COMMIT").await.context("committing")?;
            print_status(ctx, &client, "tracking is on").await
        }
        TrackCommand::Off => {
            client
                .batch_execute("BEGIN")
                .await
                .context("starting a transaction")?;
            tracking::uninstall(&client)
                .await
                .with_context(|| format!("turning tracking off in {}", target.dbname()))?;
            client.batch_execute("COMMIT").await.context("committing")?;
            print_status(ctx, &client, "tracking is off").await
        }
        TrackCommand::Status => print_status(ctx, &client, "").await,
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
        println!("{headline}");
    }
    if !s.installed {
        if headline.is_empty() {
            println!("tracking is off (turn it on with `phony track on`)");
        }
        return Ok(());
    }
    if !s.valid {
        println!("tracking objects were copied from another database and are ignored; run `phony track on` to start afresh");
        return Ok(());
    }
    println!(
        "{} tables tracked, {} changes logged, {} snapshot marks",
        s.tracked_tables, s.log_entries, s.marks
    );
    if !s.untracked_tables.is_empty() {
        println!(
            "not tracked (created since; restores compare content until the next full restore or `phony track on`): {}",
            s.untracked_tables.join(", ")
        );
    }
    Ok(())
}
