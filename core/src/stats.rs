//! Where a store's space goes: logical against stored bytes, how much deduplication and
//! compression save, and what each snapshot holds alone (what deleting it would free).
//!
//! A delta base that a referenced blob needs counts as referenced by the snapshots whose
//! blobs need it (with no logical bytes of its own, when no snapshot references it
//! directly): garbage collection keeps it for them.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::bases::DeltaMap;
use crate::error::Result;
use crate::id::{BlobId, SnapshotId};
use crate::store::{Backend, BlobKind, Store};

/// One snapshot's share of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotUsage {
    pub id: SnapshotId,
    pub name: Option<String>,
    /// Plain bytes of its rows.
    pub logical_bytes: u64,
    /// Stored bytes of every blob it references, shared or not.
    pub referenced_bytes: u64,
    /// Stored bytes of the blobs no other snapshot references: what deleting it frees.
    pub unique_bytes: u64,
}

/// The figures of `phony store stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    pub snapshots: u64,
    /// Plain bytes of every snapshot's rows, added up: what the snapshots would take
    /// without deduplication or compression.
    pub logical_bytes: u64,
    /// Plain bytes of the distinct row chunks and schema blobs the snapshots reference.
    pub deduplicated_bytes: u64,
    /// Stored bytes of those chunks and schema blobs, and of the delta bases they need.
    pub compressed_bytes: u64,
    /// Stored bytes of the manifests (roots and chunk trees) and of their delta bases.
    pub manifest_bytes: u64,
    /// Stored bytes of every blob the snapshots reference or need as a delta base.
    pub referenced_bytes: u64,
    /// Distinct blobs the snapshots reference or need as a delta base.
    pub referenced_blobs: u64,
    /// Stored bytes of every blob in the store, referenced or not.
    pub stored_bytes: u64,
    pub stored_blobs: u64,
    /// Blobs no snapshot references or needs (reclaimed by `phony snapshot prune`).
    pub unreferenced_blobs: u64,
    pub unreferenced_bytes: u64,
    /// `logical_bytes / deduplicated_bytes`.
    pub dedup_ratio: f64,
    /// `deduplicated_bytes / compressed_bytes`.
    pub compression_ratio: f64,
    /// `logical_bytes / referenced_bytes`: both savings together.
    pub total_ratio: f64,
    /// Newest first.
    pub per_snapshot: Vec<SnapshotUsage>,
}

#[derive(Debug)]
struct Usage {
    kind: BlobKind,
    plain: u64,
    owners: u32,
    /// Index of the first snapshot that references it.
    owner: usize,
    size: Option<u64>,
    /// Whether a snapshot references it (not only needs it as a delta base).
    direct: bool,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Measures the store. Holds one small entry per distinct referenced blob in memory.
pub async fn store_stats<B: Backend>(store: &Store<B>) -> Result<StoreStats> {
    let records = store.records().await?;
    let deltas = DeltaMap::load(store).await?;
    let mut usage: HashMap<BlobId, Usage> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let mut mine: HashSet<BlobId> = HashSet::new();
        let mut seen_nodes = HashSet::new();
        store
            .walk(&record.root, &mut seen_nodes, &mut |kind, r| {
                let plain = match kind {
                    BlobKind::Chunk | BlobKind::Schema => r.bytes,
                    BlobKind::Root | BlobKind::Manifest => 0,
                };
                let mut count = |id: &BlobId, plain: u64, direct: bool| {
                    if mine.insert(*id) {
                        usage
                            .entry(*id)
                            .and_modify(|u| u.owners += 1)
                            .or_insert(Usage {
                                kind,
                                plain,
                                owners: 1,
                                owner: i,
                                size: None,
                                direct,
                            });
                    }
                    if let Some(u) = usage.get_mut(id).filter(|u| direct && !u.direct) {
                        (u.kind, u.plain, u.direct) = (kind, plain, true);
                    }
                };
                count(&r.id, plain, true);
                deltas.for_each_base(&r.id, |b| count(b, 0, false));
            })
            .await?;
    }

    let mut stored_bytes = 0u64;
    let mut stored_blobs = 0u64;
    let mut unreferenced = (0u64, 0u64);
    for first in 0..=255u8 {
        for entry in store.list_blobs(first).await? {
            let Some(id) = crate::store::blob_id_of_key(&entry.key) else {
                continue;
            };
            stored_blobs += 1;
            stored_bytes += entry.size;
            match usage.get_mut(&id) {
                Some(u) => u.size = Some(entry.size),
                None => {
                    unreferenced.0 += 1;
                    unreferenced.1 += entry.size;
                }
            }
        }
    }

    let mut per_snapshot: Vec<SnapshotUsage> = records
        .iter()
        .map(|r| SnapshotUsage {
            id: r.id,
            name: r.name.as_ref().map(|n| n.to_string()),
            logical_bytes: r.stats.bytes,
            referenced_bytes: 0,
            unique_bytes: 0,
        })
        .collect();
    let (mut dedup, mut compressed, mut manifests, mut referenced) = (0u64, 0u64, 0u64, 0u64);
    for u in usage.values() {
        let size = u.size.unwrap_or(0);
        referenced += size;
        match u.kind {
            BlobKind::Chunk | BlobKind::Schema => {
                dedup += u.plain;
                compressed += size;
            }
            BlobKind::Root | BlobKind::Manifest => manifests += size,
        }
        if u.owners == 1 {
            if let Some(s) = per_snapshot.get_mut(u.owner) {
                s.unique_bytes += size;
            }
        }
    }
    for (s, r) in per_snapshot.iter_mut().zip(&records) {
        s.referenced_bytes = r.stats.stored_bytes;
    }
    let logical: u64 = records.iter().map(|r| r.stats.bytes).sum();
    Ok(StoreStats {
        snapshots: records.len() as u64,
        logical_bytes: logical,
        deduplicated_bytes: dedup,
        compressed_bytes: compressed,
        manifest_bytes: manifests,
        referenced_bytes: referenced,
        referenced_blobs: usage.len() as u64,
        stored_bytes,
        stored_blobs,
        unreferenced_blobs: unreferenced.0,
        unreferenced_bytes: unreferenced.1,
        dedup_ratio: ratio(logical, dedup),
        compression_ratio: ratio(dedup, compressed),
        total_ratio: ratio(logical, referenced),
        per_snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{delta_snapshots, put_snapshot, MemBackend};
    use crate::StoreConfig;
    use futures::executor::block_on;

    #[test]
    fn shared_chunks_count_once_and_unique_bytes_are_per_snapshot() {
        block_on(async {
            let store = Store::open_or_init(MemBackend::default(), StoreConfig::default())
                .await
                .unwrap();
            let shared = b"1\t".repeat(500);
            let only_b = b"2\tb\n".to_vec();
            put_snapshot(&store, &[&shared], 1).await;
            put_snapshot(&store, &[&shared, &only_b], 2).await;
            store.put_plain(b"leftover").await.unwrap();
            let stats = store_stats(&store).await.unwrap();
            assert_eq!(stats.snapshots, 2);
            assert_eq!(stats.logical_bytes, 1000 + 1000 + 4);
            let schema = b"CREATE TABLE t (id int, v text);".len() as u64;
            assert_eq!(stats.deduplicated_bytes, 1000 + 4 + schema);
            assert!(stats.dedup_ratio > 1.5, "{stats:?}");
            assert!(stats.compression_ratio > 1.0, "{stats:?}");
            assert_eq!(stats.unreferenced_blobs, 1);
            assert_eq!(
                stats.stored_bytes,
                stats.referenced_bytes + stats.unreferenced_bytes
            );
            // Newest first: snapshot 2 holds its own chunk, tree and root alone.
            let b = &stats.per_snapshot[0];
            assert_eq!(b.id, SnapshotId::from_random([2; 6]));
            let own = store
                .blob_size(&BlobId::of(&only_b))
                .await
                .unwrap()
                .unwrap();
            assert!(b.unique_bytes > own, "{b:?}");
            assert!(stats.per_snapshot[1].unique_bytes > 0);
        });
    }

    #[test]
    fn bases_that_kept_deltas_need_count_as_referenced() {
        block_on(async {
            let store = Store::open_or_init(MemBackend::default(), StoreConfig::default())
                .await
                .unwrap();
            let (records, ids) = delta_snapshots(&store).await;
            for r in &records[..2] {
                store.delete_record(&r.id).await.unwrap();
            }
            let stats = store_stats(&store).await.unwrap();
            assert_eq!(stats.snapshots, 1);
            // The newest chunk, its two bases, the schema blobs, its leaf and root.
            assert_eq!(stats.referenced_blobs, 3 + 2 + 2);
            let base_bytes = store.blob_size(&ids[0]).await.unwrap().unwrap();
            assert!(stats.compressed_bytes > base_bytes);
            // Exactly what a collection would free is unreferenced.
            let sweep = crate::gc::mark_and_sweep(&store, &records[2..], false, &mut || Ok(()))
                .await
                .unwrap();
            assert_eq!(
                (stats.unreferenced_blobs, stats.unreferenced_bytes),
                (sweep.unreferenced.blobs, sweep.unreferenced.bytes)
            );
            assert_eq!(
                stats.stored_blobs,
                sweep.kept.blobs + sweep.unreferenced.blobs
            );
            assert_eq!(stats.per_snapshot[0].unique_bytes, stats.referenced_bytes);
        });
    }
}
