//! Retention: the store's policy applied after a create, the limits on safety snapshots
//! applied after a restore, and `prune`. The plans are decided in core
//! (`phony_core::retention`); here they are carried out.

use std::time::Duration;

use phony_core::gc::{self, SweepReport};
use phony_core::retention::{KeepReason, SafetyRetention};
use phony_core::{PrunePlan, RetentionPolicy, SnapshotId, SnapshotRecord};
use serde::Serialize;
use time::OffsetDateTime;

use crate::gc::{collect_garbage, GcOutcome};
use crate::lease::Notify;
use crate::progress::RunOptions;
use crate::{Engine, Error, Result};

/// What a policy applied on its own (after a create or a restore) did, when it removed
/// something.
#[derive(Debug, Clone, Serialize)]
pub struct AutoPruned {
    /// The snapshots removed.
    pub removed: Vec<String>,
    /// The garbage collection that followed.
    pub gc: GcOutcome,
}

impl Engine {
    /// Deletes the records `plan` removes, except any pinned since the plan was made and
    /// `spare`. Returns the ids deleted.
    pub(crate) async fn delete_planned(
        &self,
        plan: &PrunePlan,
        spare: Option<SnapshotId>,
    ) -> Result<Vec<SnapshotId>> {
        let mut deleted = Vec::new();
        for entry in plan.removed() {
            if Some(entry.id) == spare {
                continue;
            }
            if self.delete_unless_pinned(entry.id).await? {
                deleted.push(entry.id);
            }
        }
        Ok(deleted)
    }

    /// Deletes the snapshot `id` unless it is pinned (read again: someone may have pinned
    /// it meanwhile) or gone. Returns whether it was deleted.
    async fn delete_unless_pinned(&self, id: SnapshotId) -> Result<bool> {
        match self.store().record(&id).await? {
            Some(r) if !r.pinned => {
                crate::names::delete_snapshot(self.store(), &r)
                    .await
                    .map_err(|e| Error::Deleting {
                        id,
                        source: Box::new(e),
                    })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Applies the store's retention policy, if it has one, sparing `just_created`.
    /// Does not wait for other creates: their blobs are swept by a later prune.
    pub async fn apply_retention(
        &self,
        just_created: SnapshotId,
        notify: &Notify,
    ) -> Result<Option<AutoPruned>> {
        let Some(policy) = self.store().config().retention.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let records = self.store().records().await?;
        let plan = PrunePlan::compute(&records, &policy, OffsetDateTime::now_utc());
        let deleted = self.delete_planned(&plan, Some(just_created)).await?;
        self.collect_after(deleted, notify).await
    }

    /// Applies the store's limits on safety snapshots after a restore took `just_taken`
    /// (see [`SafetyRetention`]): never that one, never a pinned one.
    pub async fn apply_safety_retention(
        &self,
        just_taken: SnapshotId,
        notify: &Notify,
    ) -> Result<Option<AutoPruned>> {
        let limits = self
            .store()
            .config()
            .safety_retention
            .unwrap_or(SafetyRetention::DEFAULT);
        let records = self.store().records().await?;
        let mut deleted = Vec::new();
        for id in limits.to_remove(&records, just_taken, OffsetDateTime::now_utc()) {
            if self.delete_unless_pinned(id).await? {
                deleted.push(id);
            }
        }
        self.collect_after(deleted, notify).await
    }

    async fn collect_after(
        &self,
        deleted: Vec<SnapshotId>,
        notify: &Notify,
    ) -> Result<Option<AutoPruned>> {
        if deleted.is_empty() {
            return Ok(None);
        }
        let gc = collect_garbage(self.store(), Duration::ZERO, notify).await?;
        Ok(Some(AutoPruned {
            removed: deleted.iter().map(|id| id.to_string()).collect(),
            gc,
        }))
    }
}

/// What `prune` is asked.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// The policy to apply; `None`: the store's own ([`Error::NoPolicy`] without one).
    pub policy: Option<RetentionPolicy>,
    /// Work out the plan and the space it would free; change nothing.
    pub dry_run: bool,
    /// Confirms a plan that keeps no unpinned snapshot (the undo of the last restore
    /// included); without, such a plan is refused with [`Error::ConfirmationRequired`].
    pub confirm_all: bool,
    /// How long to wait for snapshots being created before postponing the blob sweep.
    pub wait: Duration,
}

impl Default for PruneRequest {
    fn default() -> Self {
        PruneRequest {
            policy: None,
            dry_run: false,
            confirm_all: false,
            wait: Duration::from_secs(30),
        }
    }
}

/// What happened to the blobs no remaining snapshot references.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PruneGc {
    /// A dry run: what a run would free.
    WouldFree(SweepReport),
    /// Deleted.
    Swept(SweepReport),
    /// Kept until the next prune: snapshots were still being created.
    Postponed { creating: usize },
    /// Kept: these damaged records may reference them.
    Refused { damaged: Vec<String> },
}

/// What `prune` did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct Pruned {
    pub dry_run: bool,
    pub policy: RetentionPolicy,
    /// Every snapshot with the rules that keep it, or none (removed).
    pub plan: PrunePlan,
    /// The records the plan was made of, newest first.
    pub records: Vec<SnapshotRecord>,
    /// Snapshots removed (a dry run: that would be).
    pub removed: usize,
    pub gc: PruneGc,
}

/// Whether the plan removes something and keeps no unpinned snapshot: it would leave
/// nothing to go back to (a restore's safety snapshot included) but pinned ones.
pub fn removes_every_unpinned(plan: &PrunePlan) -> bool {
    plan.removed().next().is_some()
        && plan
            .kept()
            .all(|e| e.keep.iter().all(|k| *k == KeepReason::Pinned))
}

impl Engine {
    /// Applies a retention policy: deletes the snapshots it does not keep (re-reading each
    /// just before, so one pinned meanwhile stays), then collects the blobs nothing
    /// references any more.
    pub async fn prune(&self, request: PruneRequest, run: RunOptions) -> Result<Pruned> {
        let policy = match request.policy {
            Some(p) => p,
            None => match self.store().config().retention {
                Some(p) if !p.is_empty() => p,
                _ => return Err(Error::NoPolicy),
            },
        };
        let scan = self.scan().await?;
        run.damaged(&scan);
        let records = scan.records;
        let plan = PrunePlan::compute(&records, &policy, OffsetDateTime::now_utc());
        let removing = plan.removed().count();
        if !request.dry_run && !request.confirm_all && removes_every_unpinned(&plan) {
            return Err(Error::ConfirmationRequired { removing });
        }
        let damaged: Vec<String> = scan.damaged.into_iter().map(|d| d.key).collect();
        let (removed, gc) = if request.dry_run && !damaged.is_empty() {
            (removing, PruneGc::Refused { damaged })
        } else if request.dry_run {
            let kept: Vec<SnapshotRecord> = records
                .iter()
                .filter(|r| !plan.removes(&r.id))
                .cloned()
                .collect();
            let sweep = gc::mark_and_sweep(self.store(), &kept, false, &mut || Ok(()))
                .await
                .map_err(|source| Error::Storage {
                    doing: "finding the blobs a prune would free",
                    source,
                })?;
            (removing, PruneGc::WouldFree(sweep))
        } else {
            let deleted = self.delete_planned(&plan, None).await?;
            let gc = match collect_garbage(self.store(), request.wait, &run.notify()).await? {
                GcOutcome::Swept(s) => PruneGc::Swept(s),
                GcOutcome::Postponed { creating } => PruneGc::Postponed { creating },
                GcOutcome::Refused { damaged } => PruneGc::Refused { damaged },
            };
            (deleted.len(), gc)
        };
        Ok(Pruned {
            dry_run: request.dry_run,
            policy,
            plan,
            records,
            removed,
            gc,
        })
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
