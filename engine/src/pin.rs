//! Pinning: a pinned snapshot is kept by retention and refused by a plain delete.

use phony_core::resolve::resolve;
use phony_core::SnapshotRecord;

use crate::create::OnDamaged;
use crate::lease::{LockHolder, Notify};
use crate::{Engine, Error, Result};

/// What [`Engine::set_pinned`] did.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The record as it is now.
    pub record: SnapshotRecord,
    /// Whether it was rewritten (false: it already was as asked).
    pub changed: bool,
}

impl Engine {
    /// Pins or unpins the snapshot `reference` names. Rewriting a record is a write like a
    /// create: it holds a create lock, so that a collection running meanwhile sees it.
    pub async fn set_pinned(
        &self,
        reference: &str,
        pinned: bool,
        notify: &Notify,
        on_damaged: Option<&OnDamaged>,
    ) -> Result<Pinned> {
        let store = self.store();
        let lock = LockHolder::acquire_create(store, notify).await?;
        let scan = store
            .scan_records()
            .await
            .map_err(|source| Error::Storage {
                doing: "reading the snapshot records",
                source,
            })?;
        if let Some(f) = on_damaged {
            scan.damaged.iter().for_each(|d| f(d));
        }
        let found = resolve(&scan.records, reference)?;
        let mut record = store
            .record(&found.id)
            .await?
            .ok_or_else(|| Error::Vanished {
                label: found.label(),
            })?;
        let changed = record.pinned != pinned;
        if changed {
            record.pinned = pinned;
            lock.check()?;
            store
                .put_record(&record)
                .await
                .map_err(|source| Error::Rewriting {
                    label: record.label(),
                    source,
                })?;
        }
        lock.release().await;
        Ok(Pinned { record, changed })
    }
}
