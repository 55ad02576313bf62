//! `phony snapshot prune`, `pin` and `unpin`: arguments and output (the engine prunes).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use phony_core::retention::{KeepReason, PlanEntry};
use phony_core::RetentionPolicy;
use phony_engine::report::{PruneView, SnapshotView};
use phony_engine::{Engine, PruneGc, PruneRequest, RunOptions};

use crate::context::Context;
use crate::output;
use crate::stdout::outln;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep the N newest snapshots [default: the store's policy]
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_count)]
    pub keep_last: Option<u32>,
    /// Keep snapshots younger than this, e.g. 30d, 12h, 90m [default: the store's policy]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_age)]
    pub expire_after: Option<Duration>,
    /// Print what would be removed and the space it would free; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Confirm a prune that would remove every snapshot that is not pinned (asked on a
    /// terminal; required otherwise)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for snapshots being created before postponing the blob sweep
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_wait)]
    pub wait: Duration,
}

/// A count: a whole number, zero or more.
pub fn parse_count(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| format!("expected a whole number of snapshots, 0 or more, not {s:?}"))
}

/// An age: `30d`, `12h`, `90m`, `1w` … greater than zero.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} in {s:?} (examples: 30d, 12h, 90m, 2w)"))?;
    let policy = RetentionPolicy {
        keep_last: None,
        expire_after: Some(d),
    };
    policy.validate().map_err(|e| e.to_string())?;
    Ok(d)
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} in {s:?} (examples: 30s, 2m, 0s)"))
}

pub async fn prune(ctx: &Context, args: PruneArgs) -> Result<()> {
    let engine = Engine::from_store(ctx.open_store().await?);
    let policy = if args.keep_last.is_some() || args.expire_after.is_some() {
        Some(RetentionPolicy {
            keep_last: args.keep_last,
            expire_after: args.expire_after,
        })
    } else {
        None
    };
    let request = |confirm_all| PruneRequest {
        policy,
        dry_run: args.dry_run,
        confirm_all: confirm_all || args.yes,
        wait: args.wait,
    };
    let run = || RunOptions {
        notify: Some(crate::context::notify()),
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
        ..Default::default()
    };
    let pruned = match engine.prune(request(false), run()).await {
        Err(phony_engine::Error::ConfirmationRequired { removing }) => {
            confirm_removing_all(removing)?;
            engine.prune(request(true), run()).await?
        }
        done => done?,
    };
    if ctx.json {
        return output::print_json(&PruneView::of(&pruned));
    }
    for e in &pruned.plan.entries {
        outln!("{}", plan_line(e, args.dry_run))?;
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let space = match &pruned.gc {
        PruneGc::WouldFree(s) => format!(
            "and free {} ({})",
            output::size(s.unreferenced.bytes),
            output::count(s.unreferenced.blobs, "blob", "blobs")
        ),
        PruneGc::Swept(s) => format!(
            "and freed {} ({})",
            output::size(s.unreferenced.bytes),
            output::count(s.unreferenced.blobs, "blob", "blobs")
        ),
        PruneGc::Postponed { creating } => format!(
            "; unreferenced blobs stay until the next prune: {} still being created",
            if *creating == 1 {
                "1 snapshot was".to_owned()
            } else {
                format!("{creating} snapshots were")
            }
        ),
        PruneGc::Refused { damaged } => format!(
            "; unreferenced blobs stay: the damaged record(s) {} may reference them (remove damaged records with `phony store verify --repair`)",
            damaged.join(", ")
        ),
    };
    let (removed, total) = (pruned.removed, pruned.records.len());
    let all = if removed > 0 && removed == total {
        " (every snapshot)"
    } else {
        ""
    };
    outln!(
        "{verb} {removed} of {}{all} {space}",
        output::count(total, "snapshot", "snapshots")
    )?;
    Ok(())
}

/// Asks on a terminal before a prune removes every unpinned snapshot; without a terminal,
/// refuses unless `--yes` was given.
fn confirm_removing_all(removing: usize) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let what = if removing == 1 {
        "the only snapshot that is not pinned".to_owned()
    } else {
        format!("all {removing} snapshots that are not pinned")
    };
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(crate::failure::Usage {
            code: "confirmation_required",
            message: format!(
                "this prune would remove {what}, the undo of the last restore included; pass --yes to confirm, or see the plan with --dry-run"
            ),
        }
        .into());
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "this prune would remove {what}. Remove them? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(crate::failure::Cancelled::DECLINED.into())
    }
}

fn plan_line(e: &PlanEntry, dry_run: bool) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let when = e.created_at.format(&f).unwrap_or_default();
    if e.removed() {
        let verb = if dry_run { "would remove" } else { "remove" };
        format!("{verb:<13}{:<40}{when}", e.label)
    } else {
        let why: Vec<String> = e
            .keep
            .iter()
            .map(|k| match k {
                KeepReason::Pinned => "pinned".to_owned(),
                KeepReason::Last { rank } => format!("last {rank}"),
                KeepReason::Recent => "recent".to_owned(),
            })
            .collect();
        format!("{:<13}{:<40}{when}  ({})", "keep", e.label, why.join(", "))
    }
}

/// `phony snapshot pin|unpin`.
pub async fn set_pinned(ctx: &Context, reference: &str, pinned: bool) -> Result<()> {
    let store = ctx.open_store().await?;
    let on_damaged: phony_engine::create::OnDamaged = Arc::new(crate::context::warn_damaged);
    let phony_engine::Pinned { record, changed } = phony_engine::Engine::from_store(store)
        .set_pinned(
            reference,
            pinned,
            &crate::context::notify(),
            Some(&on_damaged),
        )
        .await?;
    if ctx.json {
        output::print_json(&SnapshotView::of(&record))
    } else {
        let what = if pinned { "pinned" } else { "unpinned" };
        let note = if changed { "" } else { " (already)" };
        outln!("{what} {}{note}", record.label())?;
        Ok(())
    }
}
