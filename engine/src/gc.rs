//! Running a garbage collection: the collector's side of the protocol in
//! `phony_core::gc`, with the waiting that needs a clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use phony_core::gc::{self, SweepReport};
use serde::Serialize;

use crate::lease::{LockHolder, Notify};
use crate::{EngineStore as AppStore, Error, Result};

/// How often a collector waiting for creates to finish looks again.
const POLL: Duration = Duration::from_millis(100);

/// What a garbage collection did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GcOutcome {
    /// Unreferenced blobs were deleted.
    Swept(SweepReport),
    /// Nothing was deleted: snapshots were still being created when `wait` ran out.
    Postponed { creating: usize },
    /// Nothing was deleted: these snapshot records cannot be read, so what they reference
    /// is unknown (see `phony store verify --repair`).
    Refused { damaged: Vec<String> },
}

/// Deletes every blob no snapshot references. Waits up to `wait` for snapshots being
/// created to finish (new ones wait for this collection meanwhile), and postpones the
/// sweep if they do not.
/// Notices about others' stale locks go to `notify`.
pub async fn collect_garbage(
    store: &Arc<AppStore>,
    wait: Duration,
    notify: &Notify,
) -> Result<GcOutcome> {
    let holder = LockHolder::acquire_gc(store, notify).await?;
    let deadline = Instant::now() + wait;
    loop {
        let scan = holder.scan().await?;
        if scan.creates.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            holder.release().await;
            return Ok(GcOutcome::Postponed {
                creating: scan.creates.len(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    // Records are read only now, after every create that started before our lock was
    // seen has written its record (or died).
    let result = async {
        let records = match gc::all_records(store).await {
            Ok(records) => records,
            Err(phony_core::Error::UnreadableRecords { keys }) => {
                return Ok(GcOutcome::Refused { damaged: keys })
            }
            Err(source) => {
                return Err(Error::Storage {
                    doing: "reading the snapshot records",
                    source,
                })
            }
        };
        let mut check = holder.checker();
        gc::mark_and_sweep(store, &records, true, &mut check)
            .await
            .map(GcOutcome::Swept)
            .map_err(|source| Error::Storage {
                doing: "collecting unreferenced blobs (nothing referenced was deleted)",
                source,
            })
    }
    .await;
    holder.release().await;
    result
}
