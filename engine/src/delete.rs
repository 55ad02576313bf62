//! Deleting a snapshot by reference, or a record that cannot be read.

use phony_core::resolve::resolve;
use phony_core::SnapshotRecord;

use crate::progress::RunOptions;
use crate::{Engine, Error, Result};

/// What [`Engine::delete`] removed.
#[derive(Debug, Clone)]
pub enum Removed {
    /// A snapshot, with its name's claim.
    Snapshot(Box<SnapshotRecord>),
    /// A record that could not be read, by its key (`snapshots/….json`).
    DamagedRecord { key: String },
}

impl Removed {
    /// The id, or the damaged record's key, as `snapshot delete` prints it.
    pub fn deleted(&self) -> String {
        match self {
            Removed::Snapshot(r) => r.id.to_string(),
            Removed::DamagedRecord { key } => key.clone(),
        }
    }
}

impl Engine {
    /// Deletes the snapshot `reference` names (its blobs stay until garbage collection).
    /// A pinned snapshot needs `force` ([`Error::Pinned`]). A reference that matches no
    /// readable snapshot but one record that cannot be read removes that record, with
    /// `force` only (nothing about it can be checked, not even whether it is pinned).
    pub async fn delete(&self, reference: &str, force: bool, run: RunOptions) -> Result<Removed> {
        let scan = self.scan().await?;
        run.damaged(&scan);
        let record = match resolve(&scan.records, reference) {
            Ok(record) => record,
            Err(e @ phony_core::Error::SnapshotNotFound { .. }) => {
                return match scan.damaged_matching(reference).as_slice() {
                    [] => Err(e.into()),
                    [one] if !force => Err(Error::DamagedRecord {
                        key: one.key.clone(),
                        reason: one.reason.clone(),
                    }),
                    [one] => {
                        self.store()
                            .delete_record_key(&one.key)
                            .await
                            .map_err(|source| Error::Storage {
                                doing: "deleting the damaged record",
                                source,
                            })?;
                        Ok(Removed::DamagedRecord {
                            key: one.key.clone(),
                        })
                    }
                    many => Err(Error::SeveralDamaged {
                        reference: reference.to_owned(),
                        keys: many.iter().map(|d| d.key.clone()).collect(),
                    }),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if record.pinned && !force {
            return Err(Error::Pinned {
                label: record.label(),
            });
        }
        crate::names::delete_snapshot(self.store(), record).await?;
        Ok(Removed::Snapshot(Box::new(record.clone())))
    }
}
