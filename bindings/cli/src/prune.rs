//! `phony snapshot prune`, `pin` and `unpin`, and the store's own retention policy applied
//! after `snapshot create`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use phony_core::gc::{self, SweepReport};
use phony_core::resolve::resolve;
use phony_core::retention::{KeepReason, PlanEntry};
use phony_core::{PrunePlan, RetentionPolicy, SnapshotId, SnapshotRecord};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::{AppStore, Context};
use crate::gc::{collect_garbage, GcOutcome};
use crate::lease::LockHolder;
use crate::output::{self, SnapshotView};

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
                store
                    .delete_record(&entry.id)
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
        let outcome = collect_garbage(&store, args.wait).await?;
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
        println!("{}", plan_line(e, args.dry_run));
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let space = match &gc_view {
        GcView::WouldFree(s) => format!(
            "and free {} ({} blobs)",
            output::size(s.unreferenced.bytes),
            s.unreferenced.blobs
        ),
        GcView::Swept(s) => format!(
            "and freed {} ({} blobs)",
            output::size(s.unreferenced.bytes),
            s.unreferenced.blobs
        ),
        GcView::Postponed { creating } => format!(
            "; unreferenced blobs stay until the next prune: {creating} snapshot(s) were still being created"
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
    println!(
        "{verb} {removed} of {} snapshots{all} {space}",
        records.len()
    );
    Ok(())
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

/// What the store's policy did after a create (only shown when it removed something).
#[derive(Debug, Serialize)]
pub struct AutoPruned {
    pub removed: Vec<String>,
    pub gc: GcOutcome,
}

/// Applies the store's retention policy, if it has one, sparing `just_created`.
/// Does not wait for other creates: their blobs are swept by a later prune.
pub async fn after_create(
    store: &Arc<AppStore>,
    just_created: SnapshotId,
) -> Result<Option<AutoPruned>> {
    let Some(policy) = store.config().retention.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let records = crate::context::records(store).await?;
    let plan = PrunePlan::compute(&records, &policy, OffsetDateTime::now_utc());
    let deleted = delete_planned(store, &plan, Some(just_created)).await?;
    if deleted.is_empty() {
        return Ok(None);
    }
    let gc = collect_garbage(store, Duration::ZERO).await?;
    Ok(Some(AutoPruned {
        removed: deleted.iter().map(|id| id.to_string()).collect(),
        gc,
    }))
}

/// `phony snapshot pin|unpin`.
pub async fn set_pinned(ctx: &Context, reference: &str, pinned: bool) -> Result<()> {
    let store = ctx.open_store().await?;
    // Rewriting a record is a write like a create: hold a create lock, so that a
    // collection running meanwhile sees the record.
    let lock = LockHolder::acquire_create(&store).await?;
    let records = crate::context::records(&store).await?;
    let found = resolve(&records, reference)?;
    let mut record = store
        .record(&found.id)
        .await?
        .with_context(|| format!("snapshot {} was deleted meanwhile", found.label()))?;
    let changed = record.pinned != pinned;
    if changed {
        record.pinned = pinned;
        lock.check()?;
        store
            .put_record(&record)
            .await
            .with_context(|| format!("writing the record of {}", record.label()))?;
    }
    lock.release().await;
    if ctx.json {
        output::print_json(&SnapshotView::of(&record))
    } else {
        let what = if pinned { "pinned" } else { "unpinned" };
        let note = if changed { "" } else { " (already)" };
        println!("{what} {}{note}", record.label());
        Ok(())
    }
}
