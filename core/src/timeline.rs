//! How a timeline names snapshots, the same on every front-end (`phony snapshot
//! timeline`, the service's timeline, the dashboard): `Before Sync #3` and `Sync #3` for a
//! sync's snapshots (the number from their `sync` label), `Sprint End #2` counted among
//! sprint ends, else the snapshot's name, else its origin.

use std::collections::BTreeMap;

use crate::record::{Origin, SnapshotRecord};

/// `records` (any order) oldest first, each with its label.
pub fn labelled(records: &[SnapshotRecord]) -> Vec<(&SnapshotRecord, String)> {
    let mut sorted: Vec<&SnapshotRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.created_at, r.id.to_string()));
    let mut ordinals: BTreeMap<&'static str, u64> = BTreeMap::new();
    sorted
        .into_iter()
        .map(|r| {
            let n = ordinals.entry(r.origin.as_str()).or_insert(0);
            *n += 1;
            let sync = r
                .labels
                .get("sync")
                .cloned()
                .unwrap_or_else(|| n.to_string());
            let label = match (r.origin, &r.name) {
                (Origin::SyncBefore, _) => format!("Before Sync #{sync}"),
                (Origin::SyncAfter, _) => format!("Sync #{sync}"),
                (Origin::SprintEnd, _) => format!("Sprint End #{n}"),
                (_, Some(name)) => name.to_string(),
                (Origin::Safety, None) => "Safety".to_owned(),
                (Origin::Scheduled, None) => "Scheduled".to_owned(),
                (Origin::Manual, None) => "Snapshot".to_owned(),
            };
            (r, label)
        })
        .collect()
}
