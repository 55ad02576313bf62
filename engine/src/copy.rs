//! Copying snapshots between stores of any kind (`phony store copy`): only the blobs the
//! destination lacks travel, records are written last, under the destination's create lock
//! (so its garbage collection cannot take blobs a copy has sent and not yet recorded).

use phony_core::copy::{copy_snapshots, CopyReport};
use phony_core::{SnapshotRecord, StoreConfig};

use crate::lease::LockHolder;
use crate::{Engine, Result, RunOptions};

impl Engine {
    /// The configuration a new store made to receive this one's snapshots takes: the same
    /// format, chunking and compression (so equal rows make equal chunks in both), not its
    /// retention policy.
    pub fn copy_config(&self) -> StoreConfig {
        StoreConfig {
            retention: None,
            gc: Default::default(),
            ..*self.store().config()
        }
    }

    /// Copies the snapshots `references` name (ids, unique prefixes or names; all of them,
    /// oldest first, when empty) into `to`. A copy that stops half-way leaves no record in
    /// `to`, and the next one resumes: blobs already there are not sent again.
    pub async fn copy(
        &self,
        to: &Engine,
        references: &[String],
        run: &RunOptions,
    ) -> Result<CopyReport> {
        let records = self.scan().await?.records;
        let mut chosen: Vec<SnapshotRecord> = Vec::new();
        if references.is_empty() {
            chosen.extend(records.iter().rev().cloned());
        } else {
            for reference in references {
                let record = phony_core::resolve::resolve(&records, reference)?;
                if !chosen.iter().any(|r| r.id == record.id) {
                    chosen.push(record.clone());
                }
            }
        }
        let lock = LockHolder::acquire_create(to.store(), &run.notify()).await?;
        let mut check = lock.checker();
        let result = copy_snapshots(self.store(), to.store(), &chosen, &mut check).await;
        lock.release().await;
        Ok(result?)
    }
}
