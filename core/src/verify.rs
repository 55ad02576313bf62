//! Store integrity: does every snapshot resolve, and (with `read_data`) does every blob
//! still hash to its id?
//!
//! [`verify`] walks every record's root manifest, schema blobs, manifest trees and chunks.
//! It does not stop at the first problem: it names every damaged object, what is wrong
//! with it, and which snapshots it breaks. Manifests are always read and decoded (their
//! contents say what else to check); chunks and schema blobs are checked for existence,
//! or read and re-hashed with `read_data`. A blob shared by many snapshots is checked once.
//!
//! Delta blobs are checked with their bases: without `read_data`, every base the markers
//! under `bases/` name must exist (transitively); every blob that is read is decoded
//! through its chain, and each delta in the chain must have its marker (without one,
//! garbage collection would not keep the base). A chunk without its marker is only seen
//! with `read_data`: finding it means reading the chunk's header.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::bases::DeltaMap;
use crate::codec::Chain;
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
    /// The object is a delta, and this blob of its chain (its base, or a base further
    /// down) is missing.
    MissingBase(BlobId),
    /// This delta of the object's chain (the object itself or one of its bases) has no
    /// marker: garbage collection would not keep its base.
    MissingMarker(BlobId),
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

pub use crate::store::DamagedRecord;

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
    deltas: DeltaMap,
    /// Whether each delta base checked without reading it exists.
    present: HashMap<BlobId, bool>,
    /// Result of every blob checked so far (None: sound).
    checked: HashMap<BlobId, Option<Problem>>,
    damaged: BTreeMap<BlobId, DamagedBlob>,
    bytes_read: u64,
}

impl<B: Backend> Checker<'_, B> {
    /// Reads and decodes a blob (through its delta chain) whose contents are needed
    /// (manifests), or that is checked with `read_data`.
    async fn read(
        &mut self,
        id: &BlobId,
        limit: u64,
    ) -> Result<std::result::Result<Vec<u8>, Problem>> {
        let stored = match self.store.get_encoded(id, limit).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Ok(Err(Problem::Missing)),
            // Larger than it can be, or not a file.
            Err(e @ Error::Corrupt { .. }) => return Ok(Err(Problem::Corrupt(reason(id, e)))),
            Err(e) => return Err(e),
        };
        self.bytes_read += stored.len() as u64;
        let top = stored.len() as u64;
        let chain = match Chain::new(*id, stored) {
            Ok(chain) => self.store.complete_chain(chain).await,
            Err(e) => Err(e),
        };
        let chain = match chain {
            Ok(chain) => chain,
            Err(Error::BaseMissing { base, .. }) => return Ok(Err(Problem::MissingBase(base))),
            Err(e @ Error::Corrupt { .. }) => return Ok(Err(Problem::Corrupt(reason(id, e)))),
            Err(e) => return Err(e),
        };
        self.bytes_read += chain.stored_len() - top;
        let plain = match chain.decode(limit) {
            Ok(plain) => plain,
            Err(e) => return Ok(Err(Problem::Corrupt(reason(id, e)))),
        };
        if let Some((delta, _)) = chain.links().find(|(d, b)| !self.deltas.contains(d, b)) {
            return Ok(Err(Problem::MissingMarker(delta)));
        }
        Ok(Ok(plain))
    }

    /// Checks a blob whose contents are not needed (chunks, schema text).
    async fn check_leaf(&mut self, r: &BlobRef) -> Result<Option<Problem>> {
        if let Some(done) = self.checked.get(&r.id) {
            return Ok(done.clone());
        }
        let problem = if self.read_data {
            self.read(&r.id, r.bytes).await?.err()
        } else {
            match self.store.blob_size(&r.id).await {
                Ok(None) => Some(Problem::Missing),
                Ok(Some(0)) => Some(Problem::Corrupt("empty object".into())),
                Ok(Some(_)) => self.missing_base(&r.id).await?.map(Problem::MissingBase),
                Err(e @ Error::Corrupt { .. }) => Some(Problem::Corrupt(reason(&r.id, e))),
                Err(e) => return Err(e),
            }
        };
        self.checked.insert(r.id, problem.clone());
        Ok(problem)
    }

    /// The first base the markers say `id` needs that does not exist, if any.
    async fn missing_base(&mut self, id: &BlobId) -> Result<Option<BlobId>> {
        let mut bases = Vec::new();
        self.deltas.for_each_base(id, |b| bases.push(*b));
        for base in bases {
            let exists = match self.present.get(&base) {
                Some(exists) => *exists,
                None => {
                    let exists = match self.store.blob_size(&base).await {
                        Ok(size) => size.is_some(),
                        // Not a blob: as good as missing for the deltas on it.
                        Err(Error::Corrupt { .. }) => false,
                        Err(e) => return Err(e),
                    };
                    self.present.insert(base, exists);
                    exists
                }
            };
            if !exists {
                return Ok(Some(base));
            }
        }
        Ok(None)
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
                        Problem::Corrupt(reason(&record.root, e)),
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
                Err(e) => self.damage(
                    id,
                    BlobKind::Manifest,
                    Problem::Corrupt(reason(&id, e)),
                    sid,
                ),
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

/// What is wrong with `id`, from an error decoding it (or a base of its chain).
fn reason(id: &BlobId, e: Error) -> String {
    match e {
        Error::Corrupt { id: at, reason } if at == *id => reason,
        Error::Corrupt { id: at, reason } => format!("its delta base {at} is corrupt: {reason}"),
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
        deltas: DeltaMap::load(store).await?,
        present: HashMap::new(),
        checked: HashMap::new(),
        damaged: BTreeMap::new(),
        bytes_read: 0,
    };
    let mut broken = Vec::new();
    let scan = store.scan_records().await?;
    report.damaged_records = scan.damaged;
    for record in scan.records {
        report.snapshots += 1;
        if !checker.snapshot(&record).await? {
            broken.push(record.id);
        }
    }
    broken.sort();
    report.broken_snapshots = broken;
    let bases_only = checker
        .present
        .keys()
        .filter(|id| !checker.checked.contains_key(id))
        .count();
    report.blobs = (checker.checked.len() + bases_only) as u64;
    report.bytes_read = checker.bytes_read;
    report.damaged_blobs = checker.damaged.into_values().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob_key;
    use crate::testing::{delta_snapshots, put_snapshot, MemBackend};
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
            let mut bytes = store.get_encoded(&id, 1 << 20).await.unwrap().to_vec();
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

    #[test]
    fn deltas_are_checked_with_their_bases_and_markers() {
        block_on(async {
            let store = Store::open_or_init(MemBackend::default(), StoreConfig::default())
                .await
                .unwrap();
            let (records, ids) = delta_snapshots(&store).await;
            for read_data in [false, true] {
                let report = verify(&store, read_data).await.unwrap();
                assert!(report.is_clean(), "{report:?}");
                assert!(report.blobs >= 3 + 3 * 2);
            }

            // The first chunk is lost: the two deltas above it cannot be decoded.
            let first = store.get_encoded(&ids[0], 1 << 20).await.unwrap();
            store.delete_blob(&ids[0]).await.unwrap();
            for read_data in [false, true] {
                let report = verify(&store, read_data).await.unwrap();
                let problems: Vec<(BlobId, Problem)> = report
                    .damaged_blobs
                    .iter()
                    .map(|d| (d.id, d.problem.clone()))
                    .collect();
                assert_eq!(problems.len(), 3, "read_data {read_data}: {problems:?}");
                assert!(problems.contains(&(ids[0], Problem::Missing)));
                assert!(problems.contains(&(ids[1], Problem::MissingBase(ids[0]))));
                assert!(problems.contains(&(ids[2], Problem::MissingBase(ids[0]))));
                let mut all: Vec<SnapshotId> = records.iter().map(|r| r.id).collect();
                all.sort();
                assert_eq!(report.broken_snapshots, all);
            }
            store.backend().replace(&blob_key(&ids[0]), &first);

            // A delta without its marker: garbage collection would lose its base. Seen
            // when the chunk is read.
            store
                .backend()
                .delete(&crate::store::marker_key(&ids[2], &ids[1]))
                .await
                .unwrap();
            assert!(verify(&store, false).await.unwrap().is_clean());
            let report = verify(&store, true).await.unwrap();
            assert_eq!(report.damaged_blobs.len(), 1, "{report:?}");
            assert_eq!(report.damaged_blobs[0].id, ids[2]);
            assert_eq!(
                report.damaged_blobs[0].problem,
                Problem::MissingMarker(ids[2])
            );
            assert_eq!(report.broken_snapshots, [records[2].id]);

            // A damaged base is named in the reason of the delta that needs it.
            let mut bytes = first.to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            store.backend().replace(&blob_key(&ids[0]), &bytes);
            let report = verify(&store, true).await.unwrap();
            let d = report
                .damaged_blobs
                .iter()
                .find(|d| d.id == ids[1])
                .unwrap();
            assert!(
                matches!(&d.problem, Problem::Corrupt(r) if r.contains(&ids[0].to_hex())),
                "{d:?}"
            );
        });
    }
}
