//! Garbage collection: removing blobs that no snapshot references, without ever removing
//! one that a snapshot being created is about to reference.
//!
//! # The protocol
//!
//! Writers (anything that writes a snapshot record) and collectors announce themselves
//! with small lock objects under `locks/`, and each checks for the other *after* writing
//! its own:
//!
//! - a **writer** puts `locks/create-<token>.json`, then lists `locks/`; if a fresh
//!   `gc-` lock is there it deletes its own lock, waits and starts over. Only then does it
//!   look at the store's blobs (to skip writing those that exist) and, at the end, write
//!   its record; it deletes its lock after the record is written.
//! - a **collector** puts `locks/gc-<token>.json`, then lists `locks/` and waits until no
//!   fresh `create-` lock is left (or gives up and deletes nothing); then it reads the
//!   records, marks every blob they reach and deletes the blobs not marked.
//!
//! With a linearizable backend (see [`Backend`]), of a writer and a collector that
//! overlap at least one sees the other's lock: if the writer's lock was written before
//! the collector listed, the collector sees it and waits for it to go, which happens only
//! after the record is written, and the collector reads records after that; otherwise the
//! writer listed after the collector's lock existed, and waits until the collector is done
//! deleting. So no blob a writer relied on is deleted while its record is not yet visible.
//!
//! A lock is **fresh** while the time since its last write, measured on the backend's clock
//! (against the `modified` time of the reader's own lock, just written), is at most the
//! store's lease period; live processes rewrite theirs four times a period and stop
//! (a writer before writing its record, a collector before deleting) if they could not
//! for half a period. A lock left by a killed process goes stale and is ignored, and
//! removed by whoever sees it; sooner, when its body shows a holder of the reader's own
//! host, boot and pid namespace whose pid is gone ([`Lock::holder_is_gone`]): a process
//! that has exited neither writes a record nor deletes a blob, so its lock protects nothing.
//!
//! # Delta bases
//!
//! A kept delta needs its base, and the base's base, whether or not a snapshot references
//! them. The collector lists the markers under `bases/` once (see [`crate::bases`]) and
//! marks, with every blob the records reach, every base the markers say it needs. Deltas
//! that are garbage are deleted first, dependents before their bases, and before any other
//! blob: a sweep stopped midway (a lost lock, a crash) never leaves a delta whose base is
//! gone, which a later writer could otherwise find present and reference. A marker is
//! deleted after its blob, or when its blob is absent (a writer died between the two).
//!
//! # Bounded memory
//!
//! Marking keeps one set of blob ids, but only of the ids whose first byte falls in the
//! current range of [`partitions`]: a store with more references than [`MARK_BUDGET`] is
//! marked and swept in several passes (up to 256, one per `blobs/xx/` directory), each
//! walking the manifests again and listing only its own directories. The delta relations
//! are held whole (64 bytes per delta), with the set of the deltas still needed.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bases::DeltaMap;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::record::SnapshotRecord;
use crate::store::{blob_id_of_key, Backend, BlobKind, ListEntry, Store};

/// Where lock objects live.
pub const LOCKS_PREFIX: &str = "locks/";

/// Upper bound on a lock object's size (a lock is a few hundred bytes).
pub const MAX_LOCK_LEN: u64 = 64 << 10;

/// Blob ids held in memory at once while marking (32 bytes each, about 64 MiB with the
/// set's overhead).
pub const MARK_BUDGET: u64 = 1 << 20;

/// What a lock announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// A snapshot record is being written (create, pin, unpin).
    Create,
    /// Blobs are being garbage-collected.
    Gc,
}

impl LockKind {
    fn key_prefix(self) -> &'static str {
        match self {
            LockKind::Create => "locks/create-",
            LockKind::Gc => "locks/gc-",
        }
    }

    /// The kind of the lock at `key`, if it is a lock key.
    pub fn of_key(key: &str) -> Option<LockKind> {
        [LockKind::Create, LockKind::Gc]
            .into_iter()
            .find(|k| key.starts_with(k.key_prefix()) && key.ends_with(".json"))
    }
}

/// A lock object: who holds it, for messages. Its freshness is the object's `modified`
/// time, not anything inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub kind: LockKind,
    /// Random, lowercase hex; names the lock object.
    pub token: String,
    pub pid: u32,
    pub host: String,
    /// The holder's clock when it started (informational).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Among which processes `pid` names one: the holder's boot and pid namespace
    /// (`<boot id>/<pid namespace>` on Linux); absent where unknown, and in locks of older
    /// builds. See [`Lock::holder_is_gone`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Lock {
    /// The lock's key in the store.
    pub fn key(&self) -> String {
        format!("{}{}.json", self.kind.key_prefix(), self.token)
    }

    /// Pretty JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes a lock object.
    pub fn decode(what: &str, bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptRecord {
            what: what.to_owned(),
            reason,
        };
        let lock: Lock = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let token_ok = !lock.token.is_empty()
            && lock.token.len() <= 64
            && lock.token.bytes().all(|b| b.is_ascii_hexdigit());
        let scope_ok = lock.scope.as_ref().is_none_or(|s| s.len() <= 255);
        if !token_ok || lock.host.len() > 255 || !scope_ok {
            return Err(corrupt("malformed token or host".into()));
        }
        Ok(lock)
    }

    /// Whether this lock's holder is known to have died, so that its lock protects nothing
    /// and may be removed at once rather than after its lease: it ran on `host` in `scope`
    /// (the reader's own host and scope, see [`Lock::scope`]), where `running(pid)` says
    /// no process has its pid any more. A lock without a scope, or of another host or
    /// scope, is never judged so: only its lease can expire.
    pub fn holder_is_gone(
        &self,
        host: &str,
        scope: Option<&str>,
        running: impl FnOnce(u32) -> bool,
    ) -> bool {
        let same_scope = scope.is_some() && self.scope.as_deref() == scope;
        self.host == host && same_scope && !running(self.pid)
    }

    /// "pid 123 on host" for messages.
    pub fn holder(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }
}

/// The locks in a store, as seen by the holder of one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockScan {
    /// Keys of fresh create locks other than the reader's own.
    pub creates: Vec<String>,
    /// Keys of fresh gc locks other than the reader's own.
    pub gcs: Vec<String>,
    /// Keys of stale locks (of processes that died), safe to delete.
    pub stale: Vec<String>,
}

/// Sorts the `locks/` listing into fresh and stale locks, measuring age against the
/// `modified` time of `own_key` (which must be in the listing: the reader just wrote it)
/// so that only the backend's clock is involved.
pub fn scan_locks(entries: &[ListEntry], own_key: &str, ttl: Duration) -> Result<LockScan> {
    let now = entries
        .iter()
        .find(|e| e.key == own_key)
        .map(|e| e.modified)
        .ok_or_else(|| Error::NotFound {
            what: format!("lock {own_key} just written"),
        })?;
    let mut scan = LockScan::default();
    for e in entries.iter().filter(|e| e.key != own_key) {
        let Some(kind) = LockKind::of_key(&e.key) else {
            continue;
        };
        if is_fresh(e.modified, now, ttl) {
            match kind {
                LockKind::Create => scan.creates.push(e.key.clone()),
                LockKind::Gc => scan.gcs.push(e.key.clone()),
            }
        } else {
            scan.stale.push(e.key.clone());
        }
    }
    Ok(scan)
}

/// Whether a lock last written at `modified` is fresh at `now` (a lock from the future is).
pub fn is_fresh(modified: OffsetDateTime, now: OffsetDateTime, ttl: Duration) -> bool {
    let age = now - modified;
    age.is_negative() || age <= ttl
}

/// Every snapshot record, for a collection to mark from: [`Error::UnreadableRecords`] when
/// any cannot be read (damaged, or of a newer format), since the blobs it references are
/// then unknown and none may be deleted.
pub async fn all_records<B: Backend>(store: &Store<B>) -> Result<Vec<SnapshotRecord>> {
    let scan = store.scan_records().await?;
    if !scan.damaged.is_empty() {
        return Err(Error::UnreadableRecords {
            keys: scan.damaged.into_iter().map(|d| d.key).collect(),
        });
    }
    Ok(scan.records)
}

/// Splits the blob key space (the first byte of an id) into inclusive ranges, enough that
/// each holds about `budget` of `estimated_refs` references.
pub fn partitions(estimated_refs: u64, budget: u64) -> Vec<(u8, u8)> {
    let n = estimated_refs.div_ceil(budget.max(1)).clamp(1, 256);
    (0..n)
        .map(|i| {
            let lo = i * 256 / n;
            let hi = (i + 1) * 256 / n - 1;
            (lo as u8, hi as u8)
        })
        .collect()
}

/// An upper bound of the references the records hold (shared blobs counted per snapshot).
pub fn estimate_refs(records: &[SnapshotRecord]) -> u64 {
    records
        .iter()
        .map(|r| r.stats.blobs.saturating_add(3))
        .fold(0u64, u64::saturating_add)
}

fn in_range(id: &BlobId, range: (u8, u8)) -> bool {
    (range.0..=range.1).contains(&id.as_bytes()[0])
}

/// Marks every blob that the snapshots rooted at `roots` reference, or that one of those
/// needs as a delta base (per `deltas`), and whose id's first byte is in `range`. With
/// `live_deltas`, also collects every delta so kept, in any range. Fails if any snapshot
/// cannot be walked (a damaged store): then nothing may be deleted, since what it
/// references is unknown.
pub async fn mark<B: Backend>(
    store: &Store<B>,
    roots: &[BlobId],
    range: (u8, u8),
    deltas: &DeltaMap,
    mut live_deltas: Option<&mut HashSet<BlobId>>,
) -> Result<HashSet<BlobId>> {
    let mut marks = HashSet::new();
    let mut seen_nodes = HashSet::new();
    for root in roots {
        store
            .walk(root, &mut seen_nodes, &mut |_kind: BlobKind, r| {
                let mut keep = |id: &BlobId| {
                    if in_range(id, range) {
                        marks.insert(*id);
                    }
                    if let Some(live) = live_deltas.as_deref_mut() {
                        if deltas.is_delta(id) {
                            live.insert(*id);
                        }
                    }
                };
                keep(&r.id);
                deltas.for_each_base(&r.id, keep);
            })
            .await?;
    }
    Ok(marks)
}

/// The blobs of a `blobs/xx/` listing that are not marked. Keys that are not blob keys
/// (anything phony did not write) are never candidates.
pub fn unreferenced(listed: Vec<ListEntry>, marks: &HashSet<BlobId>) -> Vec<(BlobId, ListEntry)> {
    listed
        .into_iter()
        .filter_map(|e| blob_id_of_key(&e.key).map(|id| (id, e)))
        .filter(|(id, _)| !marks.contains(id))
        .collect()
}

/// Blobs and stored bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub blobs: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.blobs += 1;
        self.bytes += bytes;
    }
}

/// What a sweep found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Blobs still referenced.
    pub kept: Tally,
    /// Blobs not referenced: deleted, or that would be with a dry run.
    pub unreferenced: Tally,
}

/// Marks and sweeps the blobs of `roots` in passes of bounded memory. With `delete`
/// false nothing changes (a dry run). `still_safe` is asked before each deletion: the
/// caller's check that its gc lock is still held; an error from it stops the sweep.
pub async fn mark_and_sweep<B: Backend>(
    store: &Store<B>,
    records: &[SnapshotRecord],
    delete: bool,
    still_safe: &mut (dyn FnMut() -> Result<()> + Send),
) -> Result<SweepReport> {
    sweep_in_passes(store, records, delete, still_safe, MARK_BUDGET).await
}

async fn sweep_in_passes<B: Backend>(
    store: &Store<B>,
    records: &[SnapshotRecord],
    delete: bool,
    still_safe: &mut (dyn FnMut() -> Result<()> + Send),
    budget: u64,
) -> Result<SweepReport> {
    let roots: Vec<BlobId> = records.iter().map(|r| r.root).collect();
    let deltas = DeltaMap::load(store).await?;
    let estimated = estimate_refs(records).saturating_add(deltas.len() as u64);
    let mut report = SweepReport::default();
    for (pass, range) in partitions(estimated, budget).into_iter().enumerate() {
        let mut live = HashSet::new();
        let first_pass = pass == 0;
        let marks = mark(
            store,
            &roots,
            range,
            &deltas,
            first_pass.then_some(&mut live),
        )
        .await?;
        if first_pass && delete {
            let dead = deltas.deltas().filter(|d| !live.contains(d)).collect();
            drop(live);
            for id in deltas.dependents_first(dead) {
                // An absent blob is a writer's leftover marker, removed with its range.
                if let Some(size) = store.blob_size(&id).await? {
                    still_safe()?;
                    store.delete_blob(&id).await?;
                    report.unreferenced.add(size);
                }
            }
        }
        for first in range.0..=range.1 {
            let listed = store.list_blobs(first).await?;
            let markers = deltas.with_first_byte(first);
            // The blobs of this range that stay, against which markers are checked.
            let mut present: HashSet<BlobId> = if delete && !markers.is_empty() {
                listed
                    .iter()
                    .filter_map(|e| blob_id_of_key(&e.key))
                    .collect()
            } else {
                HashSet::new()
            };
            let total = listed.len() as u64;
            let listed_bytes: u64 = listed.iter().map(|e| e.size).sum();
            let garbage = unreferenced(listed, &marks);
            let garbage_bytes: u64 = garbage.iter().map(|(_, e)| e.size).sum();
            report.kept.blobs += total - garbage.len() as u64;
            report.kept.bytes += listed_bytes - garbage_bytes;
            for (id, entry) in garbage {
                if delete {
                    still_safe()?;
                    store.delete_blob(&id).await?;
                    present.remove(&id);
                }
                report.unreferenced.add(entry.size);
            }
            if delete {
                // Markers go after their blobs: those of blobs swept now or before.
                for (id, base) in markers {
                    if !present.contains(id) {
                        still_safe()?;
                        store.delete_marker(id, base).await?;
                    }
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{delta_snapshots, rows, MemBackend};
    use crate::StoreConfig;
    use futures::executor::block_on;
    use proptest::prelude::*;

    fn entry(key: &str, modified: i64) -> ListEntry {
        ListEntry {
            key: key.to_owned(),
            size: 10,
            modified: OffsetDateTime::from_unix_timestamp(modified).unwrap(),
            version: None,
        }
    }

    #[test]
    fn locks_are_fresh_by_the_backend_clock() {
        let ttl = Duration::from_secs(60);
        let entries = vec![
            entry("locks/gc-aa.json", 1000),
            entry("locks/create-bb.json", 1000),
            entry("locks/create-cc.json", 900),
            entry("locks/gc-dd.json", 1100),
            entry("locks/create-ee.json", 1050),
            entry("locks/README", 0),
        ];
        let scan = scan_locks(&entries, "locks/gc-aa.json", ttl).unwrap();
        assert_eq!(
            scan.creates,
            ["locks/create-bb.json", "locks/create-ee.json"]
        );
        assert_eq!(
            scan.gcs,
            ["locks/gc-dd.json"],
            "a lock from the future is fresh"
        );
        assert_eq!(scan.stale, ["locks/create-cc.json"]);
        assert!(scan_locks(&entries, "locks/gc-zz.json", ttl).is_err());
        assert!(is_fresh(
            OffsetDateTime::from_unix_timestamp(940).unwrap(),
            OffsetDateTime::from_unix_timestamp(1000).unwrap(),
            ttl
        ));
    }

    #[test]
    fn lock_golden_encoding_and_keys() {
        let lock = Lock {
            kind: LockKind::Gc,
            token: "0123abcd".into(),
            pid: 42,
            host: "ci-runner".into(),
            started_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            scope: None,
        };
        assert_eq!(lock.key(), "locks/gc-0123abcd.json");
        assert_eq!(LockKind::of_key(&lock.key()), Some(LockKind::Gc));
        assert_eq!(
            LockKind::of_key("locks/create-1.json"),
            Some(LockKind::Create)
        );
        assert_eq!(LockKind::of_key("locks/other.json"), None);
        let text = String::from_utf8(lock.encode()).unwrap();
        assert_eq!(
            text,
            r#"{
  "kind": "gc",
  "token": "0123abcd",
  "pid": 42,
  "host": "ci-runner",
  "started_at": "2027-01-15T08:00:00Z"
}
"#
        );
        assert_eq!(Lock::decode("l", text.as_bytes()).unwrap(), lock);
        let bad = text.replace("0123abcd", "../../x");
        assert!(Lock::decode("l", bad.as_bytes()).is_err());
        let scoped = Lock {
            scope: Some("b00t/pid:[4026531836]".into()),
            ..lock
        };
        assert_eq!(Lock::decode("l", &scoped.encode()).unwrap(), scoped);
    }

    #[test]
    fn a_lock_is_known_dead_only_in_the_same_host_and_scope_with_its_pid_gone() {
        let lock = Lock {
            kind: LockKind::Create,
            token: "01".into(),
            pid: 4242,
            host: "box".into(),
            started_at: OffsetDateTime::UNIX_EPOCH,
            scope: Some("boot/ns".into()),
        };
        let gone = |_| false;
        let running = |_| true;
        assert!(lock.holder_is_gone("box", Some("boot/ns"), gone));
        assert!(!lock.holder_is_gone("box", Some("boot/ns"), running));
        assert!(!lock.holder_is_gone("other", Some("boot/ns"), gone));
        assert!(!lock.holder_is_gone("box", Some("boot/other-ns"), gone));
        assert!(!lock.holder_is_gone("box", None, gone));
        let unscoped = Lock {
            scope: None,
            ..lock
        };
        assert!(!unscoped.holder_is_gone("box", None, gone));
        assert!(!unscoped.holder_is_gone("box", Some("boot/ns"), gone));
    }

    #[test]
    fn partitions_cover_every_prefix_once() {
        assert_eq!(partitions(0, MARK_BUDGET), [(0, 255)]);
        assert_eq!(partitions(10, 4), [(0, 84), (85, 169), (170, 255)]);
        assert_eq!(partitions(u64::MAX, 1).len(), 256);
        for n in [1u64, 2, 3, 7, 100, 255, 256, 1000] {
            let parts = partitions(n, 1);
            let mut next = 0u32;
            for (lo, hi) in &parts {
                assert_eq!(*lo as u32, next);
                assert!(hi >= lo);
                next = *hi as u32 + 1;
            }
            assert_eq!(next, 256, "{n}");
        }
    }

    /// A store with two snapshots sharing a chunk, and some garbage.
    async fn two_snapshots(
        backend: MemBackend,
    ) -> (Store<MemBackend>, Vec<SnapshotRecord>, Vec<BlobId>) {
        let store = Store::open_or_init(backend, StoreConfig::default())
            .await
            .unwrap();
        let a = crate::testing::put_snapshot(&store, &[b"1\ta\n", b"2\tshared\n"], 1).await;
        let b = crate::testing::put_snapshot(&store, &[b"2\tshared\n", b"3\tb\n"], 2).await;
        let (g1, _) = store.put_plain(b"garbage one").await.unwrap();
        let (g2, _) = store.put_plain(b"garbage two").await.unwrap();
        (store, vec![a, b], vec![g1, g2])
    }

    #[test]
    fn sweeps_exactly_the_unreferenced_blobs_in_any_number_of_passes() {
        block_on(async {
            let (store, records, garbage) = two_snapshots(MemBackend::default()).await;
            let before = store.backend().keys();
            let dry = mark_and_sweep(&store, &records, false, &mut || Ok(()))
                .await
                .unwrap();
            assert_eq!(dry.unreferenced.blobs, 2);
            assert_eq!(store.backend().keys(), before, "a dry run changes nothing");

            // Only the second snapshot stays: its blobs stay, the first's own go.
            let real = mark_and_sweep(&store, &records[1..], true, &mut || Ok(()))
                .await
                .unwrap();
            for g in &garbage {
                assert_eq!(store.blob_size(g).await.unwrap(), None);
            }
            let mut seen = HashSet::new();
            let mut needed = Vec::new();
            store
                .walk(&records[1].root, &mut seen, &mut |_, r| needed.push(r.id))
                .await
                .unwrap();
            for id in &needed {
                assert!(store.blob_size(id).await.unwrap().is_some());
            }
            assert!(real.unreferenced.blobs > 2);
            // Same result when marking in many passes.
            let none = DeltaMap::default();
            let marks_all = mark(&store, &[records[1].root], (0, 255), &none, None)
                .await
                .unwrap();
            let mut union = HashSet::new();
            for range in partitions(100, 1) {
                union.extend(
                    mark(&store, &[records[1].root], range, &none, None)
                        .await
                        .unwrap(),
                );
            }
            assert_eq!(marks_all, union);
        });
    }

    #[test]
    fn many_small_passes_sweep_the_same_as_one() {
        block_on(async {
            let (one, records, _) = two_snapshots(MemBackend::default()).await;
            let (many, _, _) = two_snapshots(MemBackend::default()).await;
            let a = sweep_in_passes(&one, &records[1..], true, &mut || Ok(()), MARK_BUDGET)
                .await
                .unwrap();
            // A budget of one reference: a pass per estimated reference (nine here).
            let b = sweep_in_passes(&many, &records[1..], true, &mut || Ok(()), 1)
                .await
                .unwrap();
            assert_eq!(a, b);
            assert_eq!(one.backend().keys(), many.backend().keys());
        });
    }

    #[test]
    fn a_lost_lock_stops_the_sweep_and_a_damaged_store_sweeps_nothing() {
        block_on(async {
            let (store, records, garbage) = two_snapshots(MemBackend::default()).await;
            let err = mark_and_sweep(&store, &records, true, &mut || {
                Err(Error::Invalid("lock lost".into()))
            })
            .await
            .unwrap_err();
            assert!(err.to_string().contains("lock lost"));
            for g in &garbage {
                assert!(store.blob_size(g).await.unwrap().is_some());
            }
            // A missing manifest: marking fails, nothing is deleted.
            let root = store.root(&records[0].root).await.unwrap();
            store.delete_blob(&root.tables[0].content.id).await.unwrap();
            assert!(mark_and_sweep(&store, &records, true, &mut || Ok(()))
                .await
                .is_err());
            for g in &garbage {
                assert!(store.blob_size(g).await.unwrap().is_some());
            }
        });
    }

    async fn a_chain_of_snapshots() -> (Store<MemBackend>, Vec<SnapshotRecord>, Vec<BlobId>) {
        let store = Store::open_or_init(MemBackend::default(), StoreConfig::default())
            .await
            .unwrap();
        let (records, ids) = delta_snapshots(&store).await;
        store.put_plain(b"garbage").await.unwrap();
        (store, records, ids)
    }

    fn keys_under(store: &Store<MemBackend>, prefix: &str) -> Vec<String> {
        let mut keys = store.backend().keys();
        keys.retain(|k| k.starts_with(prefix));
        keys
    }

    #[test]
    fn a_kept_delta_keeps_its_bases_and_unreferenced_chains_go_whole() {
        block_on(async {
            for budget in [MARK_BUDGET, 1] {
                let (store, records, ids) = a_chain_of_snapshots().await;
                assert_eq!(keys_under(&store, "bases/").len(), 2);
                // Only the newest snapshot stays: its chunk needs both older chunks.
                for r in &records[..2] {
                    store.delete_record(&r.id).await.unwrap();
                }
                let report = sweep_in_passes(&store, &records[2..], true, &mut || Ok(()), budget)
                    .await
                    .unwrap();
                assert!(report.unreferenced.blobs >= 5, "{report:?}");
                for id in &ids {
                    assert!(store.blob_size(id).await.unwrap().is_some(), "{budget}");
                }
                assert_eq!(keys_under(&store, "bases/").len(), 2);
                assert_eq!(store.get_plain(&ids[2], 1 << 20).await.unwrap().len(), {
                    rows(800, 4, &[200, 700]).len()
                });
                let v = crate::verify::verify(&store, true).await.unwrap();
                assert!(v.is_clean(), "{v:?}");

                // Nothing referenced: every blob and marker goes.
                sweep_in_passes(&store, &[], true, &mut || Ok(()), budget)
                    .await
                    .unwrap();
                assert_eq!(keys_under(&store, "blobs/"), Vec::<String>::new());
                assert_eq!(keys_under(&store, "bases/"), Vec::<String>::new());
            }
        });
    }

    #[test]
    fn a_base_needed_only_by_a_delta_is_not_garbage_in_a_dry_run() {
        block_on(async {
            let (store, records, ids) = a_chain_of_snapshots().await;
            let before = store.backend().keys();
            let dry = mark_and_sweep(&store, &records[1..2], false, &mut || Ok(()))
                .await
                .unwrap();
            let real = mark_and_sweep(&store, &records[1..2], true, &mut || Ok(()))
                .await
                .unwrap();
            assert_eq!(dry, real);
            assert!(store.blob_size(&ids[0]).await.unwrap().is_some());
            assert!(store.blob_size(&ids[2]).await.unwrap().is_none());
            assert!(before.len() > store.backend().keys().len());
            assert_eq!(keys_under(&store, "bases/").len(), 1);
        });
    }

    #[test]
    fn orphan_markers_are_swept_and_protect_nothing() {
        block_on(async {
            let (store, records, ids) = a_chain_of_snapshots().await;
            // A writer died between a marker and its blob, whose base is garbage.
            let (lonely, _) = store.put_plain(b"garbage base").await.unwrap();
            let never = BlobId::of(b"never written");
            store
                .backend()
                .replace(&crate::store::marker_key(&never, &lonely), b"");
            mark_and_sweep(&store, &records, true, &mut || Ok(()))
                .await
                .unwrap();
            assert_eq!(store.blob_size(&lonely).await.unwrap(), None);
            assert_eq!(keys_under(&store, "bases/").len(), 2);
            for id in &ids {
                assert!(store.blob_size(id).await.unwrap().is_some());
            }
        });
    }

    #[test]
    fn a_sweep_stopped_anywhere_leaves_no_delta_without_its_base() {
        block_on(async {
            let mut k = 0;
            loop {
                let (store, _, ids) = a_chain_of_snapshots().await;
                let mut allowed = k;
                let result = mark_and_sweep(&store, &[], true, &mut || {
                    if allowed == 0 {
                        return Err(Error::Invalid("lock lost".into()));
                    }
                    allowed -= 1;
                    Ok(())
                })
                .await;
                for id in &ids {
                    if store.blob_size(id).await.unwrap().is_some() {
                        assert!(store.get_plain(id, 1 << 20).await.is_ok(), "after {k}");
                    }
                }
                if result.is_ok() {
                    break;
                }
                k += 1;
            }
            assert!(k > 10, "{k} deletions");
        });
    }

    proptest! {
        #[test]
        fn lock_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Lock::decode("l", &bytes);
        }
    }
}
