//! Looking after a store: verify (and repair) it, measure it.

use phony_core::stats::StoreStats;
use phony_core::verify::VerifyReport;
use serde::Serialize;

use crate::progress::RunOptions;
use crate::{Engine, Error, Result};

/// What `verify` found and, with repair, removed.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    #[serde(flatten)]
    pub report: VerifyReport,
    /// With repair: the keys of the damaged records removed (records of a newer format are
    /// kept: a newer phony reads them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_records: Option<Vec<String>>,
}

impl Verified {
    /// Whether damage is left after the repair (if any): blobs, unrestorable snapshots, or
    /// records that were not removed.
    pub fn damage_left(&self) -> bool {
        let removed = self.removed_records.as_ref().map_or(0, Vec::len);
        !self.report.damaged_blobs.is_empty()
            || !self.report.broken_snapshots.is_empty()
            || self.report.damaged_records.len() > removed
    }
}

impl Engine {
    /// Checks that every snapshot's manifests and blobs exist (with `read_data`, reads each
    /// and checks its hash). With `repair`, removes the snapshot records that cannot be
    /// read, saying each through `run.notify`, so that garbage collection can run again.
    pub async fn verify(&self, read_data: bool, repair: bool, run: RunOptions) -> Result<Verified> {
        let report = phony_core::verify::verify(self.store(), read_data)
            .await
            .map_err(|source| Error::Storage {
                doing: "verifying the store",
                source,
            })?;
        let removed_records = match repair {
            false => None,
            true => {
                let notify = run.notify();
                let mut removed = Vec::new();
                for d in &report.damaged_records {
                    if d.newer_format {
                        notify(&format!(
                            "keeping {}: {} (a newer phony reads it)",
                            d.key, d.reason
                        ));
                        continue;
                    }
                    notify(&format!(
                        "removing the damaged record {} ({})",
                        d.key, d.reason
                    ));
                    self.store()
                        .delete_record_key(&d.key)
                        .await
                        .map_err(|source| Error::Storage {
                            doing: "removing a damaged record",
                            source,
                        })?;
                    removed.push(d.key.clone());
                }
                Some(removed)
            }
        };
        Ok(Verified {
            report,
            removed_records,
        })
    }

    /// Logical against stored bytes, dedup and compression ratios, per-snapshot unique
    /// bytes. Records that cannot be read are left out (told to `run.on_damaged`).
    pub async fn stats(&self, run: RunOptions) -> Result<StoreStats> {
        let scan = self.scan().await?;
        run.damaged(&scan);
        phony_core::stats::store_stats(self.store())
            .await
            .map_err(|source| Error::Storage {
                doing: "measuring the store",
                source,
            })
    }
}
