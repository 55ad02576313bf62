//! Retention that runs itself: a project's policy (keep the last N, expire after X days)
//! within its plan's caps, applied after every automatic snapshot (scheduled, sync,
//! sprint end) and by the periodic sweep.
//!
//! What goes is decided purely ([`to_remove`]), then done ([`apply`]):
//! 1. safety snapshots older than 24 hours;
//! 2. snapshots older than the retention (the project's, at most the plan's), pinned ones
//!    too unless the plan keeps them (BUSINESS);
//! 3. beyond the last `keep_last`, unpinned ones;
//! 4. while more are kept than the plan allows, the oldest unpinned automatic one: an
//!    automatic snapshot never fails for want of room, it pushes out an older one (manual
//!    creates over the count are refused before they run, 403 `plan_limit`).

use std::time::Duration;

use phony_core::{Origin, SnapshotId, SnapshotRecord};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::plans::Plan;
use crate::problem::{ApiResult, Problem};
use crate::projects::Project;

/// How long safety snapshots are kept.
pub const SAFETY_KEPT: time::Duration = time::Duration::hours(24);

/// The retention in days that applies to `project`: its own, at most its plan's.
pub fn days(plan: &Plan, project: &Project) -> Option<i32> {
    match (project.retention_days, plan.retention_days) {
        (Some(own), Some(cap)) => Some(own.min(cap)),
        (own, cap) => own.or(cap),
    }
}

/// Whether a snapshot was taken without anyone asking for it then.
pub fn is_automatic(origin: Origin) -> bool {
    matches!(
        origin,
        Origin::Scheduled | Origin::SyncBefore | Origin::SyncAfter | Origin::SprintEnd
    )
}

/// A project's own policy, as it applies under its plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Days a snapshot is kept (already capped by the plan).
    pub retention_days: Option<i32>,
    /// Keep only the newest N.
    pub keep_last: Option<i32>,
}

impl Policy {
    pub fn of(plan: &Plan, project: &Project) -> Self {
        Policy {
            retention_days: days(plan, project),
            keep_last: project.keep_last,
        }
    }
}

/// The snapshots of `records` the policy removes at `now`, each with why.
pub fn to_remove(
    records: &[SnapshotRecord],
    plan: &Plan,
    policy: Policy,
    now: OffsetDateTime,
) -> Vec<(SnapshotId, &'static str)> {
    let mut gone: Vec<(SnapshotId, &'static str)> = Vec::new();
    let retention = policy
        .retention_days
        .map(|d| time::Duration::days(i64::from(d)));
    let mut kept: Vec<&SnapshotRecord> = Vec::new();
    for r in records {
        let age = now - r.created_at;
        match r.origin {
            Origin::Safety if age > SAFETY_KEPT => {
                gone.push((r.id, "a safety snapshot past 24 hours"))
            }
            Origin::Safety => {}
            _ if retention.is_some_and(|keep| age > keep)
                && (!r.pinned || plan.retention_expires_pinned) =>
            {
                gone.push((r.id, "past the retention"))
            }
            _ => kept.push(r),
        }
    }
    // Newest first.
    kept.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id.to_string())));
    if let Some(n) = policy.keep_last.and_then(|n| usize::try_from(n).ok()) {
        let mut left = Vec::new();
        for (i, r) in kept.into_iter().enumerate() {
            if i >= n && !r.pinned {
                gone.push((r.id, "beyond keep_last"));
            } else {
                left.push(r);
            }
        }
        kept = left;
    }
    if let Some(limit) = plan.snapshots_kept.and_then(|n| usize::try_from(n).ok()) {
        let mut over = kept.len().saturating_sub(limit);
        for r in kept.iter().rev() {
            if over == 0 {
                break;
            }
            if is_automatic(r.origin) && !r.pinned {
                gone.push((
                    r.id,
                    "pushed out by a newer automatic snapshot (the plan's count)",
                ));
                over -= 1;
            }
        }
    }
    gone
}

/// Applies `project`'s policy to its store now; how many snapshots it removed.
pub async fn apply(app: &AppState, project: &Project) -> ApiResult<usize> {
    let plan = {
        let client = app.pool.get().await?;
        crate::plans::find(crate::snapshots::pg(&client), &project.plan).await?
    };
    let engine = app.engine(&project.id).await?;
    let records = crate::snapshots::records(&engine).await?;
    let plan_out = to_remove(
        &records,
        &plan,
        Policy::of(&plan, project),
        OffsetDateTime::now_utc(),
    );
    let mut deleted = Vec::new();
    for (id, why) in plan_out {
        let Some(r) = records.iter().find(|r| r.id == id) else {
            continue;
        };
        match engine.delete_snapshot(r).await {
            Ok(()) => {
                tracing::info!("{}: removed snapshot {} ({why})", project.id, r.label());
                deleted.push(id.to_string());
            }
            Err(e) => tracing::warn!("{}: removing {}: {e}", project.id, r.label()),
        }
    }
    if deleted.is_empty() {
        return Ok(0);
    }
    app.forget_listing(&project.id);
    let client = app.pool.get().await?;
    client
        .execute(
            "DELETE FROM snapshot_index WHERE snapshot_id = ANY($1)",
            &[&deleted],
        )
        .await?;
    drop(client);
    let notify: phony_engine::lease::Notify = std::sync::Arc::new(|l: &str| tracing::info!("{l}"));
    if let Err(e) =
        phony_engine::gc::collect_garbage(engine.store(), Duration::from_secs(5), &notify).await
    {
        tracing::warn!("{}: collecting garbage: {e}", project.id);
    }
    Ok(deleted.len())
}

/// [`apply`], after an automatic snapshot: a failure is logged, not the job's.
pub async fn after_automatic(app: &AppState, project: &Project) {
    if let Err(e) = apply(app, project).await {
        let e: Problem = e;
        tracing::warn!("{}: applying retention: {}", project.id, e.detail);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan(kept: Option<i32>, days: Option<i32>) -> Plan {
        Plan {
            name: "TEST".into(),
            snapshots_kept: kept,
            retention_days: days,
            retention_expires_pinned: true,
            auto_snapshot_on_sync: "before_and_after".into(),
            scheduled_snapshots: true,
            snapshot_diff: true,
            export: false,
        }
    }

    fn record(n: u8, origin: Origin, pinned: bool, age_hours: i64) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            tool_version: None,
            id: SnapshotId::from_random([n; 6]),
            name: None,
            created_at: now() - time::Duration::hours(age_hours),
            root: phony_core::BlobId::of(b""),
            pinned,
            origin,
            labels: Default::default(),
            source: phony_core::SourceInfo::default(),
            stats: phony_core::SnapshotStats::default(),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000)
    }

    #[test]
    fn automatic_snapshots_over_the_count_push_out_the_oldest_unpinned_automatic_one() {
        let records = vec![
            record(1, Origin::Scheduled, true, 50),
            record(2, Origin::Manual, false, 40),
            record(3, Origin::Scheduled, false, 30),
            record(4, Origin::SyncAfter, false, 20),
            record(5, Origin::Scheduled, false, 10),
            record(6, Origin::Safety, false, 1),
        ];
        let gone = to_remove(&records, &plan(Some(3), None), Policy::default(), now());
        let ids: Vec<_> = gone.iter().map(|g| g.0).collect();
        // Five count (not the safety one); the two oldest unpinned automatic ones go.
        assert_eq!(ids, vec![records[2].id, records[3].id]);
    }

    #[test]
    fn keep_last_and_days_remove_old_unpinned_ones() {
        let records = vec![
            record(1, Origin::Manual, false, 24 * 10),
            record(2, Origin::Manual, true, 30),
            record(3, Origin::Manual, false, 20),
            record(4, Origin::Manual, false, 10),
            record(5, Origin::Safety, false, 25),
        ];
        let policy = Policy {
            retention_days: Some(7),
            keep_last: Some(1),
        };
        let mut ids: Vec<_> = to_remove(&records, &plan(None, None), policy, now())
            .into_iter()
            .map(|g| g.0)
            .collect();
        ids.sort();
        let mut want = vec![records[0].id, records[2].id, records[4].id];
        want.sort();
        assert_eq!(ids, want);
    }
}
