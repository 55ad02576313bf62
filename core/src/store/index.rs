//! An index of the snapshot records, so that listing a store on S3 costs a few requests,
//! not one per snapshot.
//!
//! `index/records.json` holds a copy of each record's bytes with the version tag (S3's
//! `ETag`) of the object they were read from. A listing of `snapshots/` names each record's
//! current version; a record whose listed version and size match its index entry is taken
//! from the index, any other is read (and the index rewritten after). So the index is only
//! ever a cache:
//! - a record added, rewritten (pinned, unpinned) or deleted by any writer shows in the
//!   listing, which is what is trusted; a missing, stale or damaged index costs reads,
//!   never a wrong answer;
//! - an entry is written only with the version its bytes were read with, so a record
//!   rewritten while it was read is read again next time;
//! - writers need no coordination: the index is replaced whole, and the last writer wins
//!   with a version as good as any other.
//!
//! Backends that name no versions (a local directory, where reading a thousand records
//! takes milliseconds) neither read nor write it.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Backend, ListEntry};

/// Where the index lives.
pub const INDEX_KEY: &str = "index/records.json";

/// The index's own format; an index of another format is ignored (and replaced).
const INDEX_FORMAT: u32 = 1;

/// Upper bound on the index's size: past it, it is neither read nor written.
pub const MAX_INDEX_LEN: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    format: u32,
    records: Vec<IndexEntry>,
}

/// One record as it was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IndexEntry {
    pub(super) key: String,
    /// The version tag of the object `record` was read from.
    pub(super) version: String,
    /// The record's bytes (a record is UTF-8 JSON).
    pub(super) record: String,
}

/// The index as read: entries by key.
#[derive(Debug, Default)]
pub(super) struct RecordIndex {
    entries: HashMap<String, IndexEntry>,
}

impl RecordIndex {
    /// Reads the index; a missing, unreadable or damaged one is an empty index.
    pub(super) async fn read<B: Backend>(backend: &B) -> Self {
        let Ok(bytes) = backend.get(INDEX_KEY, MAX_INDEX_LEN).await else {
            return Self::default();
        };
        Self::decode(&bytes)
    }

    fn decode(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<IndexFile>(bytes) {
            Ok(file) if file.format == INDEX_FORMAT => RecordIndex {
                entries: file
                    .records
                    .into_iter()
                    .map(|e| (e.key.clone(), e))
                    .collect(),
            },
            _ => Self::default(),
        }
    }

    /// The bytes of the record `listed` names, if the index holds the version listed.
    pub(super) fn cached(&self, listed: &ListEntry) -> Option<Bytes> {
        let entry = self.entries.get(&listed.key)?;
        (Some(&entry.version) == listed.version.as_ref()
            && entry.record.len() as u64 == listed.size)
            .then(|| Bytes::from(entry.record.clone()))
    }

    /// How many entries it holds.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Replaces the index with `entries`. Best effort: a store that cannot be written (read-only
/// credentials, a full disk) is listed as before, only slower.
pub(super) async fn write<B: Backend>(backend: &B, records: Vec<IndexEntry>) {
    let file = IndexFile {
        format: INDEX_FORMAT,
        records,
    };
    let Ok(bytes) = serde_json::to_vec(&file) else {
        return;
    };
    if bytes.len() as u64 <= MAX_INDEX_LEN {
        // Ignored on failure: see above.
        let _ = backend.put(INDEX_KEY, Bytes::from(bytes)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn listed(key: &str, version: Option<&str>, size: u64) -> ListEntry {
        ListEntry {
            key: key.into(),
            size,
            modified: OffsetDateTime::UNIX_EPOCH,
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn an_entry_serves_only_the_version_and_size_it_was_read_with() {
        let file = IndexFile {
            format: INDEX_FORMAT,
            records: vec![IndexEntry {
                key: "snapshots/a.json".into(),
                version: "\"v1\"".into(),
                record: "{}".into(),
            }],
        };
        let index = RecordIndex::decode(&serde_json::to_vec(&file).unwrap());
        assert_eq!(index.len(), 1);
        let key = "snapshots/a.json";
        assert_eq!(
            index.cached(&listed(key, Some("\"v1\""), 2)).as_deref(),
            Some(&b"{}"[..])
        );
        assert!(index.cached(&listed(key, Some("\"v2\""), 2)).is_none());
        assert!(index.cached(&listed(key, Some("\"v1\""), 3)).is_none());
        assert!(index.cached(&listed(key, None, 2)).is_none());
        assert!(index
            .cached(&listed("snapshots/b.json", Some("\"v1\""), 2))
            .is_none());
    }

    #[test]
    fn a_damaged_or_newer_index_is_empty() {
        for bytes in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"format": 2, "records": []}"#,
            br#"{"format": 1, "records": [{"key": 1}]}"#,
        ] {
            assert_eq!(RecordIndex::decode(bytes).len(), 0, "{bytes:?}");
        }
    }
}
