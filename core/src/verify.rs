//! Store integrity: does every snapshot resolve, and (with `read_data`) does every blob
//! still hash to its id?
//!
//! [`verify`] walks every record's root manifest, schema blobs, manifest trees and chunks.
//! It does not stop at the first problem: it names every damaged object, what is wrong
//! with it, and which snapshots it breaks. Manifests are always read and decoded (their
//! contents say what else to check); chunks and schema blobs are checked for existence,
//! or read and re-hashed with `read_data`. A blob shared by many snapshots is checked once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::codec;
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::manifest::{BlobRef, ManifestNode, RootManifest};
use crate::record::SnapshotRecord;
use crate::store::{Backend, BlobKind, Store, MAX_MANIFEST_LEN};

/// What is wrong with a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", content = "reason", rename_all = "snake_case")]
pub enum Problem {
    /// The object does not exist.
    Missing,
    /// The object exists but does not decode or does not match its hash.
    Corrupt(String),
}

/// A damaged blob and the snapshots that need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    #[serde(flatten)]
    pub problem: Problem,
    pub snapshots: BTreeSet<SnapshotId>,
}

/// A snapshot record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedRecord {
    pub key: String,
    pub reason: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether blob contents were read and re-hashed.
    pub read_data: bool,
    /// Snapshot records read.
    pub snapshots: u64,
    /// Distinct blobs checked.
    pub blobs: u64,
    /// Stored bytes read and hashed.
    pub bytes_read: u64,
    /// Damaged blobs, by id.
    pub damaged_blobs: Vec<DamagedBlob>,
    /// Records that cannot be decoded.
    pub damaged_records: Vec<DamagedRecord>,
    /// Snapshots that cannot be restored, sorted.
    pub broken_snapshots: Vec<SnapshotId>,
}

impl VerifyReport {
    /// Whether nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged_blobs.is_empty() && self.damaged_records.is_empty()
    }
}

struct Checker<'a, B> {
    store: &'a Store<B>,
    read_data: bool,
    /// Result of every blob checked so far (None: sound).
    checked: HashMap<BlobId, Option<Problem>>,
    damaged: BTreeMap<BlobId, DamagedBlob>,
    bytes_read: u64,
}

impl<B: Backend> Checker<'_, B> {
    /// Reads and decodes a blob whose contents are needed (manifests).
    async fn read(
        &mut self,
        id: &BlobId,
        limit: u64,
    ) -> Result<std::result::Result<Vec<u8>, Problem>> {
        let stored = match self.store.get_encoded(id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Ok(Err(Problem::Missing)),
            Err(e) => return Err(e),
        };
        self.bytes_read += stored.len() as u64;
        Ok(codec::decode(id, &stored, limit).map_err(|e| Problem::Corrupt(reason(e))))
    }

    /// Checks a blob whose contents are not needed (chunks, schema text).
    async fn check_leaf(&mut self, r: &BlobRef) -> Result<Option<Problem>> {
        if let Some(done) = self.checked.get(&r.id) {
            return Ok(done.clone());
        }
        let problem = if self.read_data {
            self.read(&r.id, r.bytes).await?.err()
        } else {
            match self.store.blob_size(&r.id).await? {
                None => Some(Problem::Missing),
                Some(0) => Some(Problem::Corrupt("empty object".into())),
                Some(_) => None,
            }
        };
        self.checked.insert(r.id, problem.clone());
        Ok(problem)
    }

    fn damage(&mut self, id: BlobId, kind: BlobKind, problem: Problem, snapshot: SnapshotId) {
        self.damaged
            .entry(id)
            .or_insert_with(|| DamagedBlob {
                id,
                kind,
                problem,
                snapshots: BTreeSet::new(),
            })
            .snapshots
            .insert(snapshot);
    }

    /// Checks one snapshot; returns whether it is sound.
    async fn snapshot(&mut self, record: &SnapshotRecord) -> Result<bool> {
        let sid = record.id;
        let before = self.damaged_count_for(sid);
        let root = match self.read(&record.root, MAX_MANIFEST_LEN).await? {
            Ok(plain) => match RootManifest::decode(&record.root, &plain) {
                Ok(root) => root,
                Err(e) => {
                    self.damage(
                        record.root,
                        BlobKind::Root,
                        Problem::Corrupt(reason(e)),
                        sid,
                    );
                    return Ok(false);
                }
            },
            Err(p) => {
                self.damage(record.root, BlobKind::Root, p, sid);
                return Ok(false);
            }
        };
        self.checked.insert(record.root, None);
        for schema in [&root.pre_data, &root.post_data] {
            if let Some(p) = self.check_leaf(schema).await? {
                self.damage(schema.id, BlobKind::Schema, p, sid);
            }
        }
        let mut seen = HashSet::new();
        let mut stack: Vec<BlobId> = root.tables.iter().map(|t| t.content.id).collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let plain = match self.read(&id, MAX_MANIFEST_LEN).await? {
                Ok(p) => p,
                Err(p) => {
                    self.damage(id, BlobKind::Manifest, p, sid);
                    continue;
                }
            };
            match ManifestNode::decode(&id, &plain) {
                Ok(ManifestNode::Branch { children }) => {
                    stack.extend(children.iter().map(|c| c.id));
                }
                Ok(ManifestNode::Leaf { chunks }) => {
                    for c in &chunks {
                        if let Some(p) = self.check_leaf(c).await? {
                            self.damage(c.id, BlobKind::Chunk, p, sid);
                        }
                    }
                }
                Err(e) => self.damage(id, BlobKind::Manifest, Problem::Corrupt(reason(e)), sid),
            }
            self.checked.entry(id).or_insert(None);
        }
        Ok(self.damaged_count_for(sid) == before)
    }

    fn damaged_count_for(&self, sid: SnapshotId) -> usize {
        self.damaged
            .values()
            .filter(|d| d.snapshots.contains(&sid))
            .count()
    }
}

fn reason(e: Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Checks every snapshot of the store. Damage is reported in the result; an `Err` means
/// the check itself could not run (the backend failed).
pub async fn verify<B: Backend>(store: &Store<B>, read_data: bool) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        read_data,
        ..VerifyReport::default()
    };
    let mut checker = Checker {
        store,
        read_data,
        checked: HashMap::new(),
        damaged: BTreeMap::new(),
        bytes_read: 0,
    };
    let mut broken = Vec::new();
    for key in store.record_keys().await? {
        let bytes = match store.backend().get(&key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let record = match SnapshotRecord::decode(&key, &bytes) {
            Ok(r) => r,
            Err(e) => {
                report.damaged_records.push(DamagedRecord {
                    key,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        report.snapshots += 1;
        if !checker.snapshot(&record).await? {
            broken.push(record.id);
        }
    }
    broken.sort();
    report.broken_snapshots = broken;
    report.blobs = checker.checked.len() as u64;
    report.bytes_read = checker.bytes_read;
    report.damaged_blobs = checker.damaged.into_values().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob_key;
    use crate::testing::{put_snapshot, MemBackend};
    use crate::StoreConfig;
    use futures::executor::block_on;

    #[test]
    fn a_sound_store_verifies_clean() {
        block_on(async {
            let store = Store::open_or_init(MemBackend::default(), StoreConfig::default())
                .await
                .unwrap();
            put_snapshot(&store, &[b"1\ta\n", b"2\tb\n"], 1).await;
            put_snapshot(&store, &[b"2\tb\n"], 2).await;
            for read_data in [false, true] {
                let report = verify(&store, read_data).await.unwrap();
                assert!(report.is_clean(), "{report:?}");
                assert_eq!(report.snapshots, 2);
                assert!(report.broken_snapshots.is_empty());
                assert!(report.blobs >= 6);
            }
        });
    }

    #[test]
    fn missing_and_flipped_blobs_are_named_with_the_snapshots_they_break() {
        block_on(async {
            let store = Store::open_or_init(MemBackend::default(), StoreConfig::default())
                .await
                .unwrap();
            let shared: &[u8] = b"2\tshared row, long enough to be worth compressing\n";
            let a = put_snapshot(&store, &[b"1\ta\n", shared], 1).await;
            let b = put_snapshot(&store, &[shared], 2).await;
            let c = put_snapshot(&store, &[b"3\tc\n"], 3).await;

            // A bit flipped in the shared chunk: only --read-data sees it.
            let id = BlobId::of(shared);
            let mut bytes = store.get_encoded(&id).await.unwrap().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
            store.backend().replace(&blob_key(&id), &bytes);
            assert!(verify(&store, false).await.unwrap().is_clean());
            let report = verify(&store, true).await.unwrap();
            assert_eq!(report.damaged_blobs.len(), 1);
            let d = &report.damaged_blobs[0];
            assert_eq!((d.id, d.kind), (id, BlobKind::Chunk));
            assert!(matches!(d.problem, Problem::Corrupt(_)));
            assert_eq!(d.snapshots, BTreeSet::from([a.id, b.id]));
            assert_eq!(report.broken_snapshots, [a.id, b.id]);

            // A missing chunk: seen without reading data.
            store.delete_blob(&BlobId::of(b"3\tc\n")).await.unwrap();
            let report = verify(&store, false).await.unwrap();
            assert_eq!(report.damaged_blobs.len(), 1);
            assert_eq!(report.damaged_blobs[0].problem, Problem::Missing);
            assert_eq!(report.broken_snapshots, [c.id]);

            // A missing root and an unreadable record.
            store.delete_blob(&a.root).await.unwrap();
            store
                .backend()
                .replace("snapshots/snap_ffffffffffff.json", b"{ not json");
            let report = verify(&store, false).await.unwrap();
            assert_eq!(report.damaged_records.len(), 1);
            assert!(report
                .damaged_blobs
                .iter()
                .any(|d| d.id == a.root && d.kind == BlobKind::Root));
            assert!(!report.is_clean());
        });
    }
}
