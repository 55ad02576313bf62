//! `phony snapshot prune`, `pin` and `unpin`, and the store's own retention policy applied
//! after `snapshot create`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use phony_core::gc::{self, SweepReport};
use phony_core::retention::{KeepReason, PlanEntry};
use phony_core::{PrunePlan, RetentionPolicy, SnapshotId, SnapshotRecord};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::{AppStore, Context};
use crate::output;
use crate::stdout::outln;
use phony_engine::gc::{collect_garbage, GcOutcome};
use phony_engine::report::SnapshotView;

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

/// One snapshot in a prune's output.
#[derive(Debug, Serialize)]
struct PlanView<'a> {
    id: String,
    name: Option<&'a str>,
    created_at: String,
    action: &'static str,
    keep: &'a [KeepReason],
}

fn plan_views<'a>(plan: &'a PrunePlan, records: &'a [SnapshotRecord]) -> Vec<PlanView<'a>> {
    plan.entries
        .iter()
        .map(|e| PlanView {
            id: e.id.to_string(),
            name: records
                .iter()
                .find(|r| r.id == e.id)
                .and_then(|r| r.name.as_ref().map(|n| n.as_str())),
            created_at: e.created_at.format(&Rfc3339).unwrap_or_default(),
            action: if e.removed() { "remove" } else { "keep" },
            keep: &e.keep,
        })
        .collect()
}

fn policy_of(args: &PruneArgs, store: &AppStore) -> Result<RetentionPolicy> {
    if args.keep_last.is_some() || args.expire_after.is_some() {
        return Ok(RetentionPolicy {
            keep_last: args.keep_last,
            expire_after: args.expire_after,
        });
    }
    match store.config().retention {
        Some(p) if !p.is_empty() => Ok(p),
        _ => bail!(
            "no retention policy: pass --keep-last N and/or --expire-after DURATION, or give the store one with `phony store config --keep-last N --expire-after DURATION`"
        ),
    }
}

/// Deletes the records the plan removes, except any pinned since the plan was made and
/// `spare`. Returns the ids deleted.
async fn delete_planned(
    store: &AppStore,
    plan: &PrunePlan,
    spare: Option<SnapshotId>,
) -> Result<Vec<SnapshotId>> {
    let mut deleted = Vec::new();
    for entry in plan.removed() {
        if Some(entry.id) == spare {
            continue;
        }
        // Read it again: someone may have pinned it meanwhile.
        match store.record(&entry.id).await? {
            Some(r) if !r.pinned => {
                phony_engine::names::delete_snapshot(store, &r)
                    .await
                    .with_context(|| format!("deleting snapshot {}", entry.label))?;
                deleted.push(entry.id);
            }
            _ => {}
        }
    }
    Ok(deleted)
}

pub async fn prune(ctx: &Context, args: PruneArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let policy = policy_of(&args, &store)?;
    let scan = crate::context::scan_records(&store).await?;
    let records = scan.records;
    let plan = PrunePlan::compute(&records, &policy, OffsetDateTime::now_utc());
    let removing = plan.removed().count();
    if !args.dry_run && !args.yes && removes_every_unpinned(&plan) {
        confirm_removing_all(removing)?;
    }
    let damaged: Vec<String> = scan.damaged.into_iter().map(|d| d.key).collect();

    #[derive(Serialize)]
    struct Pruned<'a> {
        dry_run: bool,
        policy: RetentionPolicy,
        snapshots: Vec<PlanView<'a>>,
        removed: usize,
        kept: usize,
        gc: GcView,
    }
    #[derive(Serialize)]
    #[serde(tag = "status", rename_all = "snake_case")]
    enum GcView {
        /// A dry run: what a run would free.
        WouldFree(SweepReport),
        Swept(SweepReport),
        Postponed {
            creating: usize,
        },
        Refused {
            damaged: Vec<String>,
        },
    }

    let (removed, gc_view) = if args.dry_run && !damaged.is_empty() {
        (removing, GcView::Refused { damaged })
    } else if args.dry_run {
        let kept: Vec<SnapshotRecord> = records
            .iter()
            .filter(|r| !plan.removes(&r.id))
            .cloned()
            .collect();
        let sweep = gc::mark_and_sweep(&store, &kept, false, &mut || Ok(()))
            .await
            .context("finding the blobs a prune would free")?;
        (removing, GcView::WouldFree(sweep))
    } else {
        let deleted = delete_planned(&store, &plan, None).await?;
        let outcome = collect_garbage(&store, args.wait, &crate::context::notify()).await?;
        let view = match outcome {
            GcOutcome::Swept(s) => GcView::Swept(s),
            GcOutcome::Postponed { creating } => GcView::Postponed { creating },
            GcOutcome::Refused { damaged } => GcView::Refused { damaged },
        };
        (deleted.len(), view)
    };

    if ctx.json {
        return output::print_json(&Pruned {
            dry_run: args.dry_run,
            policy,
            snapshots: plan_views(&plan, &records),
            removed,
            kept: records.len() - removed,
            gc: gc_view,
        });
    }
    for e in &plan.entries {
        outln!("{}", plan_line(e, args.dry_run))?;
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let space = match &gc_view {
        GcView::WouldFree(s) => format!(
            "and free {} ({})",
            output::size(s.unreferenced.bytes),
            output::count(s.unreferenced.blobs, "blob", "blobs")
        ),
        GcView::Swept(s) => format!(
            "and freed {} ({})",
            output::size(s.unreferenced.bytes),
            output::count(s.unreferenced.blobs, "blob", "blobs")
        ),
        GcView::Postponed { creating } => format!(
            "; unreferenced blobs stay until the next prune: {} still being created",
            if *creating == 1 {
                "1 snapshot was".to_owned()
            } else {
                format!("{creating} snapshots were")
            }
        ),
        GcView::Refused { damaged } => format!(
            "; unreferenced blobs stay: the damaged record(s) {} may reference them (remove damaged records with `phony store verify --repair`)",
            damaged.join(", ")
        ),
    };
    let all = if removed > 0 && removed == records.len() {
        " (every snapshot)"
    } else {
        ""
    };
    outln!(
        "{verb} {removed} of {}{all} {space}",
        output::count(records.len(), "snapshot", "snapshots")
    )?;
    Ok(())
}

/// Whether the plan removes something and keeps no unpinned snapshot: it would leave
/// nothing to go back to (a restore's safety snapshot included) but pinned ones.
fn removes_every_unpinned(plan: &PrunePlan) -> bool {
    plan.removed().next().is_some()
        && plan
            .kept()
            .all(|e| e.keep.iter().all(|k| *k == KeepReason::Pinned))
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

#[cfg(test)]
mod tests {
    use super::*;
    use phony_core::{BlobId, Origin, SnapshotStats, SourceInfo};

    fn rec(n: u8, pinned: bool) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            tool_version: None,
            id: SnapshotId::from_random([n; 6]),
            name: None,
            created_at: OffsetDateTime::UNIX_EPOCH + time::Duration::hours(i64::from(n)),
            root: BlobId::of(b""),
            pinned,
            origin: Origin::Manual,
            labels: Default::default(),
            source: SourceInfo::default(),
            stats: SnapshotStats::default(),
        }
    }

    #[test]
    fn only_a_plan_that_keeps_no_unpinned_snapshot_needs_confirming() {
        let records = vec![rec(1, true), rec(2, false), rec(3, false)];
        let plan = |keep_last| {
            let policy = RetentionPolicy {
                keep_last: Some(keep_last),
                expire_after: None,
            };
            PrunePlan::compute(&records, &policy, OffsetDateTime::UNIX_EPOCH)
        };
        assert!(removes_every_unpinned(&plan(0)));
        assert!(!removes_every_unpinned(&plan(1)), "the newest stays");
        assert!(!removes_every_unpinned(&plan(3)), "nothing removed");
        let pinned_only = vec![rec(1, true)];
        let policy = RetentionPolicy {
            keep_last: Some(0),
            expire_after: None,
        };
        let plan = PrunePlan::compute(&pinned_only, &policy, OffsetDateTime::UNIX_EPOCH);
        assert!(!removes_every_unpinned(&plan), "nothing to remove");
    }
}
