//! Snapshot records: reading them one by one, so that one that cannot be read is reported
//! by key and does not stop the others from being read.

use bytes::Bytes;
use serde::Serialize;

use super::index::{self, IndexEntry, RecordIndex};
use super::{record_key, Backend, ListEntry, Store, RECORDS_PREFIX};
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::record::SnapshotRecord;

impl<B: Backend> Store<B> {
    /// Reads one snapshot record, or `None` if it does not exist (any more). A record that
    /// cannot be read, or names another snapshot than its key, is an error naming it.
    pub async fn record(&self, id: &SnapshotId) -> Result<Option<SnapshotRecord>> {
        self.record_at(&record_key(id)).await
    }

    /// Reads the record at `key`, checking that it is the record of the snapshot `key`
    /// names (see [`Store::record`]).
    async fn record_at(&self, key: &str) -> Result<Option<SnapshotRecord>> {
        match self.fetch_record(key).await? {
            Some((bytes, _)) => decode_record(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The bytes of the record at `key` and their version tag, or `None` if it does not
    /// exist (any more).
    async fn fetch_record(&self, key: &str) -> Result<Option<(Bytes, Option<String>)>> {
        match self.backend.get_versioned(key, MAX_RECORD_LEN).await {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(Error::BadObject { reason, .. }) => Err(Error::CorruptRecord {
                what: key.to_owned(),
                reason,
            }),
            Err(e) => Err(e),
        }
    }

    /// Every readable snapshot record, newest first; damaged ones are left out (see
    /// [`Store::scan_records`] for them). Not for garbage collection, which must know
    /// about every record.
    pub async fn records(&self) -> Result<Vec<SnapshotRecord>> {
        Ok(self.scan_records().await?.records)
    }

    /// Every snapshot record: the readable ones newest first, and the damaged ones (empty,
    /// truncated, of an unknown format, larger than [`MAX_RECORD_LEN`], or naming another
    /// snapshot than their key) by key. A damaged record does not stop the others from
    /// being read; only a failing backend does.
    ///
    /// Costs one listing of the records, and on a backend that names object versions (S3)
    /// one read of the record index (see [`super::index`]) plus a read of each record the
    /// index does not hold as listed, [`super::RECORD_READS`] at a time; the index is
    /// rewritten when it missed any.
    pub async fn scan_records(&self) -> Result<RecordScan> {
        use futures::StreamExt;
        let listed = self.listed_records().await?;
        let indexed = !listed.is_empty() && listed.iter().all(|e| e.version.is_some());
        let index = match indexed {
            true => RecordIndex::read(&self.backend).await,
            false => RecordIndex::default(),
        };
        let index = &index;
        let read: Vec<(String, Result<Read>)> = futures::stream::iter(listed)
            .map(|entry| async move {
                let got = self.read_listed(index, &entry).await;
                (entry.key, got)
            })
            .buffered(super::RECORD_READS)
            .collect()
            .await;
        let mut scan = RecordScan::default();
        let (mut entries, mut hits, mut misses) = (Vec::new(), 0usize, 0usize);
        for (key, got) in read {
            let got = match got {
                Ok(Read::Indexed(record, entry)) => {
                    hits += 1;
                    entries.push(entry);
                    Ok(Some(record))
                }
                Ok(Read::Fetched(record, entry)) => {
                    misses += 1;
                    entries.extend(entry);
                    Ok(Some(record))
                }
                Ok(Read::Gone) => Ok(None),
                Err(e) => Err(e),
            };
            match got {
                Ok(Some(record)) => scan.records.push(record),
                // Deleted between list and get.
                Ok(None) => {}
                Err(Error::CorruptRecord { reason, .. } | Error::BadObject { reason, .. }) => {
                    scan.damaged.push(DamagedRecord {
                        key,
                        reason,
                        newer_format: false,
                    })
                }
                Err(Error::RecordFormat {
                    found, supported, ..
                }) => scan.damaged.push(DamagedRecord {
                    key,
                    reason: format!(
                        "it is of format {found}, newer than this phony reads (up to {supported}): upgrade phony to read it"
                    ),
                    newer_format: true,
                }),
                Err(e) => return Err(e),
            }
        }
        // Rewritten when it missed a record or holds one no longer listed as it was.
        if indexed && (misses > 0 || index.len() > hits) {
            index::write(&self.backend, entries).await;
        }
        scan.records
            .sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(scan)
    }

    /// One listed record: from the index when it holds the listed version, else read.
    async fn read_listed(&self, index: &RecordIndex, listed: &ListEntry) -> Result<Read> {
        let key = &listed.key;
        if let Some(bytes) = index.cached(listed) {
            if let Ok(record) = decode_record(key, &bytes) {
                if let (Ok(record_text), Some(version)) =
                    (String::from_utf8(bytes.to_vec()), &listed.version)
                {
                    let entry = IndexEntry {
                        key: key.clone(),
                        version: version.clone(),
                        record: record_text,
                    };
                    return Ok(Read::Indexed(record, entry));
                }
            }
        }
        let Some((bytes, version)) = self.fetch_record(key).await? else {
            return Ok(Read::Gone);
        };
        let record = decode_record(key, &bytes)?;
        let entry = match (version, String::from_utf8(bytes.to_vec())) {
            (Some(version), Ok(record_text)) => Some(IndexEntry {
                key: key.clone(),
                version,
                record: record_text,
            }),
            _ => None,
        };
        Ok(Read::Fetched(record, entry))
    }

    /// Removes a damaged record by its key (only keys under `snapshots/` that
    /// [`Store::scan_records`] reported).
    pub async fn delete_record_key(&self, key: &str) -> Result<()> {
        if !key.starts_with(RECORDS_PREFIX) || !key.ends_with(".json") {
            return Err(Error::Invalid(format!(
                "{key} is not a snapshot record's key"
            )));
        }
        self.backend.delete(key).await
    }
}

/// A listed record, as [`Store::scan_records`] read it.
enum Read {
    /// From the index, which held the version listed.
    Indexed(SnapshotRecord, IndexEntry),
    /// Read from its object; with the index entry to keep, when its version is known.
    Fetched(SnapshotRecord, Option<IndexEntry>),
    /// Deleted since it was listed.
    Gone,
}

/// Decodes the record stored at `key`, checking that it is the record of the snapshot
/// `key` names.
fn decode_record(key: &str, bytes: &[u8]) -> Result<SnapshotRecord> {
    if bytes.is_empty() {
        return Err(Error::CorruptRecord {
            what: key.to_owned(),
            reason: "it is empty".into(),
        });
    }
    let record = SnapshotRecord::decode(key, bytes)?;
    if record_key(&record.id) != key {
        return Err(Error::CorruptRecord {
            what: key.to_owned(),
            reason: format!(
                "it is the record of {}, which its file name does not match",
                record.id
            ),
        });
    }
    Ok(record)
}

/// The snapshot records of a store, as [`Store::scan_records`] found them.
#[derive(Debug, Clone, Default)]
pub struct RecordScan {
    /// The readable records, newest first.
    pub records: Vec<SnapshotRecord>,
    /// The records that cannot be read, by key.
    pub damaged: Vec<DamagedRecord>,
}

impl RecordScan {
    /// The damaged records whose file name matches `reference`: a snapshot id, or a prefix
    /// of its hex digits of at least [`crate::resolve::MIN_PREFIX`] (case-insensitive).
    pub fn damaged_matching(&self, reference: &str) -> Vec<&DamagedRecord> {
        let reference = reference.to_ascii_lowercase();
        let hex = reference
            .strip_prefix(SnapshotId::PREFIX)
            .unwrap_or(&reference);
        if hex.len() < crate::resolve::MIN_PREFIX || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Vec::new();
        }
        self.damaged
            .iter()
            .filter(|d| {
                d.key
                    .strip_prefix(RECORDS_PREFIX)
                    .and_then(|name| name.strip_suffix(".json"))
                    .and_then(|name| name.strip_prefix(SnapshotId::PREFIX))
                    .is_some_and(|file_hex| file_hex.starts_with(hex))
            })
            .collect()
    }
}

/// A snapshot record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedRecord {
    /// Its key, `snapshots/….json`.
    pub key: String,
    /// Why it cannot be read.
    pub reason: String,
    /// Whether it is sound as far as this build can tell, but of a newer format (then it
    /// is kept: a newer phony reads it).
    pub newer_format: bool,
}

/// Upper bound on a snapshot record's stored size (a record is a few KiB; labels are
/// bounded well below this).
pub const MAX_RECORD_LEN: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemBackend;
    use crate::StoreConfig;
    use bytes::Bytes;
    use futures::executor::block_on;

    async fn store() -> Store<MemBackend> {
        Store::open_or_init(MemBackend::default(), StoreConfig::default())
            .await
            .unwrap()
    }

    #[test]
    fn damaged_records_are_reported_by_key_and_the_others_still_read() {
        block_on(async {
            let store = store().await;
            let good = crate::testing::put_snapshot(&store, &[b"1\ta\n"], 7).await;
            let other = crate::testing::put_snapshot(&store, &[b"1\tb\n"], 8).await;
            let encoded = String::from_utf8(other.encode()).unwrap();
            let put =
                |key: &'static str, bytes: Vec<u8>| store.backend().put(key, Bytes::from(bytes));
            put("snapshots/snap_000000000001.json", Vec::new())
                .await
                .unwrap();
            put(
                "snapshots/snap_000000000002.json",
                encoded.as_bytes()[..40].to_vec(),
            )
            .await
            .unwrap();
            let newer = encoded.replacen("\"format\": 1", "\"format\": 99", 1);
            put("snapshots/snap_000000000003.json", newer.into_bytes())
                .await
                .unwrap();
            // The record of `other`, under another snapshot's name.
            let misnamed = "snapshots/snap_000000000004.json";
            put(misnamed, encoded.clone().into_bytes()).await.unwrap();

            let scan = store.scan_records().await.unwrap();
            let ids: Vec<SnapshotId> = scan.records.iter().map(|r| r.id).collect();
            assert_eq!(ids.len(), 2, "{scan:?}");
            assert!(ids.contains(&good.id) && ids.contains(&other.id));
            let keys: Vec<&str> = scan.damaged.iter().map(|d| d.key.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "snapshots/snap_000000000001.json",
                    "snapshots/snap_000000000002.json",
                    "snapshots/snap_000000000003.json",
                    misnamed
                ]
            );
            let newer: Vec<bool> = scan.damaged.iter().map(|d| d.newer_format).collect();
            assert_eq!(newer, [false, false, true, false]);
            assert!(
                scan.damaged[3].reason.contains(&other.id.to_string()),
                "{scan:?}"
            );
            assert_eq!(store.records().await.unwrap().len(), 2);

            // Asked for by its id, a misnamed record is an error, not another snapshot.
            let id: SnapshotId = "snap_000000000004".parse().unwrap();
            let err = store.record(&id).await.unwrap_err();
            assert!(err.to_string().contains(misnamed), "{err}");

            assert_eq!(scan.damaged_matching("0000").len(), 4);
            assert_eq!(scan.damaged_matching("SNAP_000000000004").len(), 1);
            assert_eq!(scan.damaged_matching("000").len(), 0, "too short");
            assert_eq!(scan.damaged_matching(&good.id.to_string()).len(), 0);

            // Garbage collection refuses to mark from an incomplete set of records.
            match crate::gc::all_records(&store).await {
                Err(Error::UnreadableRecords { keys: got }) => assert_eq!(got, keys),
                other => panic!("{other:?}"),
            }
            for key in &keys {
                store.delete_record_key(key).await.unwrap();
            }
            assert_eq!(crate::gc::all_records(&store).await.unwrap().len(), 2);
            assert!(store.delete_record_key("blobs/ab/cd").await.is_err());
        });
    }
}
