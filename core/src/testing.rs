//! Test support: an in-memory [`Backend`] with a clock that ticks once per write, and a
//! helper that stores a small snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::manifest::{build_tree, BlobRef, QualifiedName, RootManifest, TableEntry};
use crate::record::{Origin, SnapshotRecord, SnapshotStats, SourceInfo};
use crate::store::{Backend, ListEntry, Store};

#[derive(Debug, Default)]
pub struct MemBackend {
    objects: Mutex<BTreeMap<String, (Bytes, OffsetDateTime)>>,
    clock: Mutex<i64>,
    /// Each write (`put <key>`) and each [`Backend::sync`] (`sync`), in order.
    journal: Mutex<Vec<String>>,
}

impl MemBackend {
    fn tick(&self, key: &str) -> OffsetDateTime {
        self.journal.lock().unwrap().push(format!("put {key}"));
        let mut c = self.clock.lock().unwrap();
        *c += 1;
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + *c).unwrap()
    }

    /// Every write and sync so far, in order (see [`MemBackend::journal`]'s field).
    pub fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    pub fn replace(&self, key: &str, bytes: &[u8]) {
        let now = self.tick(key);
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_owned(), (Bytes::copy_from_slice(bytes), now));
    }
}

impl Backend for MemBackend {
    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let now = self.tick(key);
        let mut o = self.objects.lock().unwrap();
        if o.contains_key(key) {
            return Ok(false);
        }
        o.insert(key.to_owned(), (bytes, now));
        Ok(true)
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let now = self.tick(key);
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_owned(), (bytes, now));
        Ok(())
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        let bytes = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| Error::NotFound { what: key.into() })?;
        if bytes.len() as u64 > max_len {
            return Err(Error::too_large(key, bytes.len() as u64, max_len));
        }
        Ok(bytes)
    }

    async fn get_versioned(&self, key: &str, max_len: u64) -> Result<(Bytes, Option<String>)> {
        let (bytes, modified) = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound { what: key.into() })?;
        if bytes.len() as u64 > max_len {
            return Err(Error::too_large(key, bytes.len() as u64, max_len));
        }
        Ok((bytes, Some(modified.unix_timestamp().to_string())))
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, _)| b.len() as u64))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, m))| ListEntry {
                key: k.clone(),
                size: b.len() as u64,
                modified: *m,
                version: Some(m.unix_timestamp().to_string()),
            })
            .collect())
    }

    fn describe(&self) -> String {
        "test memory".into()
    }

    async fn sync(&self) -> Result<()> {
        self.journal.lock().unwrap().push("sync".into());
        Ok(())
    }
}

/// Stores a snapshot of one table whose chunks are `chunks`, and its record.
pub async fn put_snapshot<B: Backend>(store: &Store<B>, chunks: &[&[u8]], n: u8) -> SnapshotRecord {
    let mut refs = Vec::new();
    for c in chunks {
        let (id, _) = store.put_plain(c).await.unwrap();
        refs.push(BlobRef::plain(id, 1, c.len() as u64));
    }
    let (content, nodes) = build_tree(&refs);
    for node in nodes {
        store.put_plain(&node.plain).await.unwrap();
    }
    let pre = b"CREATE TABLE t (id int, v text);";
    let (pre_id, _) = store.put_plain(pre).await.unwrap();
    let (post_id, _) = store.put_plain(b"").await.unwrap();
    let root = RootManifest {
        format: 1,
        server_version_num: 150000,
        pre_data: BlobRef::plain(pre_id, 0, pre.len() as u64),
        post_data: BlobRef::plain(post_id, 0, 0),
        tables: vec![TableEntry {
            table: QualifiedName::new("public", "t"),
            columns: vec!["id".into(), "v".into()],
            key: vec![],
            content,
        }],
        sequences: vec![],
        materialized_views: vec![],
        database: None,
    };
    let (root_id, _) = store.put_plain(&root.encode().plain).await.unwrap();
    let record = SnapshotRecord {
        format: 1,
        tool_version: None,
        id: SnapshotId::from_random([n; 6]),
        name: None,
        created_at: OffsetDateTime::from_unix_timestamp(1_800_000_000 + n as i64).unwrap(),
        root: root_id,
        pinned: false,
        origin: Origin::Manual,
        labels: Default::default(),
        source: SourceInfo::default(),
        stats: SnapshotStats {
            tables: 1,
            rows: chunks.len() as u64,
            bytes: chunks.iter().map(|c| c.len() as u64).sum(),
            blobs: chunks.len() as u64 + 4,
            ..SnapshotStats::default()
        },
    };
    store.put_record(&record).await.unwrap();
    record
}

/// `n` rows of table text, the same for the same `seed`, with the rows at `changed`
/// rewritten: a chunk and the chunk that replaces it.
pub fn rows(n: usize, seed: u64, changed: &[usize]) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    for i in 0..n {
        let (a, b, c) = (next() % 100_000, next() % 1000, next() % 28 + 1);
        let v = if changed.contains(&i) {
            "changed"
        } else {
            "kept"
        };
        out.extend_from_slice(
            format!("{i}\tuser{a}\tuser{a}.{b}@example.com\t2024-03-{c:02}\t{v}\n").as_bytes(),
        );
    }
    out
}

/// Three snapshots of one table whose one chunk changes a little each time, stored as a
/// chain of deltas c1 ← c2 ← c3; returns the records and the chunks' ids.
pub async fn delta_snapshots<B: Backend>(store: &Store<B>) -> (Vec<SnapshotRecord>, Vec<BlobId>) {
    let chunks: Vec<Vec<u8>> = (0..3).map(|v| rows(800, 4, &[v * 100, 700])).collect();
    let ids: Vec<BlobId> = chunks.iter().map(|c| BlobId::of(c)).collect();
    let mut records = Vec::new();
    for (v, chunk) in chunks.iter().enumerate() {
        if v > 0 {
            let stored = store
                .put_delta(&ids[v], chunk, &ids[v - 1], &chunks[v - 1])
                .await
                .unwrap();
            assert!(stored.stored_bytes < 500, "a delta");
        }
        records.push(put_snapshot(store, &[chunk], v as u8 + 1).await);
    }
    (records, ids)
}
