//! Retention: the store's policy applied after a create, the limits on safety snapshots
//! applied after a restore, and `prune`. The plans are decided in core
//! (`phony_core::retention`); here they are carried out.

use std::time::Duration;

use phony_core::retention::SafetyRetention;
use phony_core::{PrunePlan, SnapshotId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::gc::{collect_garbage, GcOutcome};
use crate::lease::Notify;
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
