//! Copying snapshots from one store to another (any backend to any backend), sending only
//! the blobs the destination lacks.
//!
//! Blobs travel as they are stored (no decompression, no re-compression): their ids are
//! the BLAKE3 of their plain bytes in every store, so a blob the destination holds is
//! skipped whatever it was compressed with. A delta is sent after its base (and the base's
//! base), each through [`Store::put_encoded`], which writes the delta's marker first: the
//! destination never holds a delta without its base and its marker.
//!
//! Records are written last, after every blob of every copied snapshot: a copy killed
//! midway leaves no record, only blobs, which a rerun finds and skips (or garbage
//! collection removes). The caller holds a create lock on the destination for the whole
//! copy (see [`crate::gc`]), and `check` is the lock's lease check, called before records
//! are written.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::codec::{DeltaHeader, MAX_DELTA_DEPTH, MAX_DELTA_LEN};
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::record::SnapshotRecord;
use crate::store::{Backend, Store};
use crate::store::{BlobKind, MAX_MANIFEST_LEN};

/// How many blobs travel at once (each is one read and one or two writes).
pub const COPY_CONCURRENCY: usize = 16;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Snapshots whose record was written to the destination.
    pub copied: Vec<SnapshotId>,
    /// Snapshots the destination already held (nothing sent for them).
    pub present: Vec<SnapshotId>,
    /// Blobs sent, and their stored bytes.
    pub objects_sent: u64,
    pub bytes_sent: u64,
    /// Blobs the destination already held.
    pub objects_skipped: u64,
    pub bytes_skipped: u64,
}

/// Copies `records` (snapshots of `from`) into `to`. A snapshot whose id `to` already
/// holds is left as it is; a name `to` uses for another snapshot is refused before
/// anything is sent.
pub async fn copy_snapshots<S: Backend, D: Backend>(
    from: &Store<S>,
    to: &Store<D>,
    records: &[SnapshotRecord],
    check: &mut (dyn FnMut() -> Result<()> + Send),
) -> Result<CopyReport> {
    let existing = to.records().await?;
    let mut report = CopyReport::default();
    let mut todo = Vec::new();
    for record in records {
        if existing.iter().any(|r| r.id == record.id) {
            report.present.push(record.id);
            continue;
        }
        if let Some(name) = &record.name {
            if let Some(other) = existing.iter().find(|r| r.name.as_ref() == Some(name)) {
                return Err(Error::AlreadyExists {
                    name: name.to_string(),
                    id: other.id.to_string(),
                });
            }
        }
        todo.push(record);
    }

    // Every blob the snapshots reference, each once (shared manifest subtrees are read once).
    let mut seen_nodes = HashSet::new();
    let mut queued = HashSet::new();
    let mut blobs = Vec::new();
    for record in &todo {
        from.walk(&record.root, &mut seen_nodes, &mut |kind, blob| {
            if queued.insert(blob.id) {
                // A chunk is read within the size its manifest records.
                let limit = match kind {
                    BlobKind::Chunk => blob.bytes,
                    _ => MAX_MANIFEST_LEN,
                };
                blobs.push((blob.id, limit));
            }
        })
        .await?;
    }

    let done = Mutex::new(HashSet::new());
    let tallies: Vec<Tally> = futures::stream::iter(blobs)
        .map(|(id, limit)| copy_blob(from, to, id, limit, &done))
        .buffer_unordered(COPY_CONCURRENCY)
        .try_collect()
        .await?;
    for t in tallies {
        report.objects_sent += t.objects_sent;
        report.bytes_sent += t.bytes_sent;
        report.objects_skipped += t.objects_skipped;
        report.bytes_skipped += t.bytes_skipped;
    }

    for record in todo {
        check()?;
        to.put_record(record).await?;
        report.copied.push(record.id);
    }
    Ok(report)
}

#[derive(Debug, Default)]
struct Tally {
    objects_sent: u64,
    bytes_sent: u64,
    objects_skipped: u64,
    bytes_skipped: u64,
}

/// Sends blob `id` unless `to` has it, with the bases it is a delta against first.
async fn copy_blob<S: Backend, D: Backend>(
    from: &Store<S>,
    to: &Store<D>,
    id: BlobId,
    plain_limit: u64,
    done: &Mutex<HashSet<BlobId>>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    // The chain to send, the delta first and its deepest missing base last.
    let mut chain = Vec::new();
    let mut current = id;
    loop {
        let already = done.lock().is_ok_and(|d| d.contains(&current));
        if already {
            break;
        }
        if let Some(size) = to.blob_size(&current).await? {
            if current == id {
                tally.objects_skipped = 1;
                tally.bytes_skipped = size;
            }
            break;
        }
        let limit = if current == id {
            plain_limit
        } else {
            MAX_DELTA_LEN
        };
        let stored = from.get_encoded(&current, limit).await?;
        let base = DeltaHeader::parse(&current, &stored)?.map(|h| h.base);
        chain.push((current, stored));
        match base {
            Some(_) if chain.len() > usize::from(MAX_DELTA_DEPTH) + 1 => {
                return Err(Error::Corrupt {
                    id,
                    reason: "its chain of delta bases does not end".into(),
                })
            }
            Some(base) => current = base,
            None => break,
        }
    }
    for (blob, stored) in chain.into_iter().rev() {
        let sent = to.put_encoded(&blob, stored.to_vec()).await?;
        if sent.new {
            tally.objects_sent += 1;
            tally.bytes_sent += sent.stored_bytes;
        }
        if let Ok(mut d) = done.lock() {
            d.insert(blob);
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::config::StoreConfig;
    use crate::testing::{delta_snapshots, put_snapshot, MemBackend};

    fn store() -> Store<MemBackend> {
        block_on(Store::open_or_init(
            MemBackend::default(),
            StoreConfig::default(),
        ))
        .unwrap()
    }

    fn copy(
        from: &Store<MemBackend>,
        to: &Store<MemBackend>,
        records: &[SnapshotRecord],
    ) -> CopyReport {
        block_on(copy_snapshots(from, to, records, &mut || Ok(()))).unwrap()
    }

    #[test]
    fn a_copy_sends_what_is_missing_once_and_records_last() {
        let (from, to) = (store(), store());
        let a = block_on(put_snapshot(&from, &[b"1\ta\n", b"2\tb\n"], 1));
        let b = block_on(put_snapshot(&from, &[b"1\ta\n", b"3\tc\n"], 2));

        let first = copy(&from, &to, std::slice::from_ref(&a));
        assert_eq!(first.copied, [a.id]);
        assert!(
            first.objects_sent > 0 && first.objects_skipped == 0,
            "{first:?}"
        );
        // The record is the last write.
        let journal = to.backend().journal();
        assert!(journal
            .iter()
            .rev()
            .find(|j| j.starts_with("put "))
            .unwrap()
            .contains(&a.id.to_string()));

        // Again: nothing travels.
        let again = copy(&from, &to, std::slice::from_ref(&a));
        assert_eq!(
            (
                again.present.as_slice(),
                again.objects_sent,
                again.bytes_sent
            ),
            ([a.id].as_slice(), 0, 0)
        );

        // A second snapshot sharing a chunk: the shared chunk is skipped.
        let second = copy(&from, &to, &[a.clone(), b.clone()]);
        assert_eq!(second.copied, [b.id]);
        assert!(
            second.objects_skipped >= 1 && second.objects_sent < first.objects_sent + 2,
            "{second:?}"
        );
        for r in [&a, &b] {
            let copied = block_on(to.record(&r.id)).unwrap().unwrap();
            assert_eq!(&copied, r);
        }
        assert!(block_on(crate::verify::verify(&to, true))
            .unwrap()
            .is_clean());
    }

    #[test]
    fn deltas_travel_after_their_bases_with_their_markers() {
        let (from, to) = (store(), store());
        let (records, ids) = block_on(delta_snapshots(&from));
        // Only the newest: its chunk is a delta on a delta, so both bases travel too.
        let report = copy(&from, &to, &records[2..]);
        assert_eq!(report.copied, [records[2].id]);
        for id in &ids {
            assert!(block_on(to.blob_size(id)).unwrap().is_some());
        }
        let deltas = block_on(crate::bases::DeltaMap::load(&to)).unwrap();
        assert!(deltas.contains(&ids[2], &ids[1]) && deltas.contains(&ids[1], &ids[0]));
        // Stored bytes as they were: still deltas.
        assert_eq!(
            block_on(to.get_encoded(&ids[2], MAX_MANIFEST_LEN)).unwrap(),
            block_on(from.get_encoded(&ids[2], MAX_MANIFEST_LEN)).unwrap()
        );
        assert!(block_on(crate::verify::verify(&to, true))
            .unwrap()
            .is_clean());
    }

    #[test]
    fn a_name_taken_by_another_snapshot_is_refused_before_anything_is_sent() {
        let (from, to) = (store(), store());
        let mut a = block_on(put_snapshot(&from, &[b"1\ta\n"], 1));
        let mut other = block_on(put_snapshot(&to, &[b"9\tz\n"], 2));
        a.name = Some("clean".parse().unwrap());
        other.name = a.name.clone();
        block_on(to.put_record(&other)).unwrap();
        // Nothing is sent (reading the records may leave their index, a cache).
        let keys = || {
            let mut keys = to.backend().keys();
            keys.retain(|k| k != crate::store::INDEX_KEY);
            keys
        };
        let before = keys();
        let err = block_on(copy_snapshots(&from, &to, &[a], &mut || Ok(()))).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(keys(), before);
    }

    #[test]
    fn a_failed_lease_check_writes_no_record() {
        let (from, to) = (store(), store());
        let a = block_on(put_snapshot(&from, &[b"1\ta\n"], 1));
        let err = block_on(copy_snapshots(
            &from,
            &to,
            std::slice::from_ref(&a),
            &mut || Err(Error::Invalid("lock lost".into())),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("lock lost"));
        assert!(block_on(to.record(&a.id)).unwrap().is_none());
    }
}
