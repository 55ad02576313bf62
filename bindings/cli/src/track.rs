//! `phony track on|off|status`: arguments and output (the engine does the work).

use anyhow::Result;
use phony_engine::tracking::{self, TrackingView};

use crate::cli::TrackCommand;
use crate::context::Context;
use crate::output;
use crate::stdout::outln;

pub async fn run(ctx: &Context, cmd: TrackCommand) -> Result<()> {
    let target = ctx.target()?;
    let (status, headline) = match cmd {
        TrackCommand::On => {
            let done = tracking::on(&target, &crate::context::notify()).await?;
            let headline = match done.changed {
                true => "tracking is on",
                false => "tracking is already on",
            };
            (done.status, headline)
        }
        TrackCommand::Off => {
            let done = tracking::off(&target).await?;
            let headline = match done.changed {
                true => "tracking is off",
                false => "tracking is already off",
            };
            (done.status, headline)
        }
        TrackCommand::Status => (tracking::status(&target).await?, ""),
    };
    print_status(ctx, &status, headline)
}

fn print_status(ctx: &Context, s: &TrackingView, headline: &str) -> Result<()> {
    if ctx.json {
        return output::print_json(s);
    }
    if !headline.is_empty() {
        outln!("{headline}")?;
    }
    if !s.tracking {
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
