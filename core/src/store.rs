//! The store: content-addressed blobs, snapshot records and the config, written through a
//! small [`Backend`] that adapters implement (a local directory, memory, S3 …).
//!
//! Layout inside a backend:
//! ```text
//! phony-store.json        format version, chunking and compression parameters
//! blobs/ab/abcdef…        chunks and manifest nodes, named by the BLAKE3 of their plain bytes
//! snapshots/snap_….json   one record per snapshot, written last
//! ```

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;

use crate::codec;
use crate::config::{StoreConfig, CONFIG_KEY};
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::manifest::{BlobRef, ManifestNode, RootManifest, TableEntry};
use crate::record::SnapshotRecord;

/// An object listed by [`Backend::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, by the backend's clock (the same clock for every
    /// client of one store: a file's mtime, an S3 object's `Last-Modified`).
    pub modified: OffsetDateTime,
}

/// Where a store's objects live. Keys are `/`-separated relative paths.
///
/// Guarantees an implementation must give:
/// - **atomic writes**: no reader ever sees a partial object;
/// - **create-if-absent**: of concurrent [`put_if_absent`](Backend::put_if_absent) calls on
///   one key exactly one writes, the others report that the key exists;
/// - [`get`](Backend::get) of a missing key fails with [`Error::NotFound`];
/// - **linearizable listing**: an object whose write completed before a
///   [`list`](Backend::list) started is listed, one whose delete completed is not
///   (garbage collection's safety rests on this; S3 and local disks give it);
/// - [`ListEntry::modified`] comes from one clock for all clients of the store.
pub trait Backend: Send + Sync {
    /// Writes `bytes` at `key` unless it exists. `Ok(true)`: written; `Ok(false)`: it existed.
    fn put_if_absent(&self, key: &str, bytes: Bytes) -> impl Future<Output = Result<bool>> + Send;
    /// Writes `bytes` at `key`, replacing any previous object atomically.
    fn put(&self, key: &str, bytes: Bytes) -> impl Future<Output = Result<()>> + Send;
    /// Reads a whole object.
    fn get(&self, key: &str) -> impl Future<Output = Result<Bytes>> + Send;
    /// The size of an object, or `None` if it does not exist.
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<u64>>> + Send;
    /// Removes an object; removing a missing object succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// Every object whose key starts with `prefix`.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<ListEntry>>> + Send;
    /// Where this backend points, for messages (never a secret).
    fn describe(&self) -> String;
}

/// The key of a blob.
pub fn blob_key(id: &BlobId) -> String {
    let hex = id.to_hex();
    format!("blobs/{}/{}", &hex[..2], hex)
}

/// The key of a snapshot record.
pub fn record_key(id: &SnapshotId) -> String {
    format!("snapshots/{id}.json")
}

const RECORDS_PREFIX: &str = "snapshots/";

/// The key prefix of blobs whose id starts with the byte `first`.
pub fn blob_prefix(first: u8) -> String {
    format!("blobs/{first:02x}/")
}

/// The id of a blob key (`blobs/ab/ab…`), or `None` for any other key.
pub fn blob_id_of_key(key: &str) -> Option<BlobId> {
    let rest = key.strip_prefix("blobs/")?;
    let (dir, name) = rest.split_once('/')?;
    let id: BlobId = name.parse().ok()?;
    (dir.len() == 2 && name.starts_with(dir)).then_some(id)
}

/// What a blob is to a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    /// The root manifest.
    Root,
    /// Schema DDL text.
    Schema,
    /// A node of a table's chunk tree.
    Manifest,
    /// Rows.
    Chunk,
}

/// How a blob write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Stored (encoded) size of the blob.
    pub stored_bytes: u64,
    /// Whether this call added it (false: it was already there).
    pub new: bool,
}

/// A store opened on a backend.
#[derive(Debug)]
pub struct Store<B> {
    backend: B,
    config: StoreConfig,
}

impl<B: Backend> Store<B> {
    /// Opens an existing store; [`Error::NotFound`] if the backend holds none.
    pub async fn open(backend: B) -> Result<Self> {
        let bytes = match backend.get(CONFIG_KEY).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::NotFound {
                    what: format!("phony store at {}", backend.describe()),
                })
            }
            Err(e) => return Err(e),
        };
        let config = StoreConfig::decode(&bytes)?;
        Ok(Store { backend, config })
    }

    /// Opens the store, creating it with `config` if the backend holds none yet. When
    /// several writers race to create it, all end up with the one config that won.
    pub async fn open_or_init(backend: B, config: StoreConfig) -> Result<Self> {
        match Self::open_inner(&backend).await? {
            Some(config) => Ok(Store { backend, config }),
            None => {
                backend
                    .put_if_absent(CONFIG_KEY, Bytes::from(config.encode()))
                    .await?;
                Self::open(backend).await
            }
        }
    }

    async fn open_inner(backend: &B) -> Result<Option<StoreConfig>> {
        match backend.get(CONFIG_KEY).await {
            Ok(bytes) => Ok(Some(StoreConfig::decode(&bytes)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The store's parameters.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Replaces the store's configuration (its retention policy and gc settings; the
    /// chunking and compression parameters of an existing store must not change, or
    /// equal rows would no longer give equal chunks). Takes effect for later openers.
    pub async fn write_config(&self, config: &StoreConfig) -> Result<()> {
        if config.format != self.config.format
            || config.chunking != self.config.chunking
            || config.compression != self.config.compression
        {
            return Err(Error::Invalid(
                "the chunking and compression parameters of a store cannot change".into(),
            ));
        }
        let bytes = config.encode();
        StoreConfig::decode(&bytes)?;
        self.backend.put(CONFIG_KEY, Bytes::from(bytes)).await
    }

    /// The backend underneath.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Where the store lives, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Stored size of a blob, if present.
    pub async fn blob_size(&self, id: &BlobId) -> Result<Option<u64>> {
        self.backend.head(&blob_key(id)).await
    }

    /// Stores an already-encoded blob (see [`codec::encode`]) unless present.
    pub async fn put_encoded(&self, id: &BlobId, encoded: Vec<u8>) -> Result<Stored> {
        let stored_bytes = encoded.len() as u64;
        let new = self
            .backend
            .put_if_absent(&blob_key(id), Bytes::from(encoded))
            .await?;
        Ok(Stored { stored_bytes, new })
    }

    /// Encodes and stores plain bytes unless present (skipping the compression when it is).
    pub async fn put_plain(&self, plain: &[u8]) -> Result<(BlobId, Stored)> {
        let id = BlobId::of(plain);
        if let Some(size) = self.blob_size(&id).await? {
            return Ok((
                id,
                Stored {
                    stored_bytes: size,
                    new: false,
                },
            ));
        }
        let encoded = codec::encode(plain, self.config.compression.level);
        let stored = self.put_encoded(&id, encoded).await?;
        Ok((id, stored))
    }

    /// Reads a blob's stored bytes, without decoding them.
    pub async fn get_encoded(&self, id: &BlobId) -> Result<Bytes> {
        match self.backend.get(&blob_key(id)).await {
            Err(e) if e.is_not_found() => Err(Error::NotFound {
                what: format!("blob {id} (the store is missing data this snapshot needs)"),
            }),
            other => other,
        }
    }

    /// Reads and decodes a blob, checking its hash; `limit` bounds its plain size.
    pub async fn get_plain(&self, id: &BlobId, limit: u64) -> Result<Vec<u8>> {
        let stored = self.get_encoded(id).await?;
        codec::decode(id, &stored, limit)
    }

    /// Reads a root manifest.
    pub async fn root(&self, id: &BlobId) -> Result<RootManifest> {
        let plain = self.get_plain(id, MAX_MANIFEST_LEN).await?;
        RootManifest::decode(id, &plain)
    }

    /// Every chunk of a table, in table order, by walking its manifest tree.
    pub async fn table_chunks(&self, table: &TableEntry) -> Result<Vec<BlobRef>> {
        let mut out = Vec::new();
        let mut stack = vec![table.content.id];
        let mut depth_guard = 0usize;
        while let Some(id) = stack.pop() {
            depth_guard += 1;
            if depth_guard > 1 << 24 {
                return Err(Error::Corrupt {
                    id,
                    reason: "manifest tree does not end".into(),
                });
            }
            let plain = self.get_plain(&id, MAX_MANIFEST_LEN).await?;
            match ManifestNode::decode(&id, &plain)? {
                ManifestNode::Leaf { chunks } => out.extend(chunks),
                ManifestNode::Branch { children } => {
                    stack.extend(children.iter().rev().map(|c| c.id));
                }
            }
        }
        Ok(out)
    }

    /// Every blob id a snapshot's root references: schema blobs, manifest nodes and chunks.
    pub async fn referenced_blobs(&self, root: &RootManifest) -> Result<Vec<BlobRef>> {
        let mut out = vec![root.pre_data.clone(), root.post_data.clone()];
        for table in &root.tables {
            let mut stack = vec![table.content.clone()];
            while let Some(node_ref) = stack.pop() {
                let id = node_ref.id;
                out.push(node_ref);
                let plain = self.get_plain(&id, MAX_MANIFEST_LEN).await?;
                match ManifestNode::decode(&id, &plain)? {
                    ManifestNode::Leaf { chunks } => out.extend(chunks),
                    ManifestNode::Branch { children } => stack.extend(children),
                }
            }
        }
        Ok(out)
    }

    /// Visits every blob a snapshot references: the root, the schema blobs, every manifest
    /// node and every chunk (a chunk as often as the manifests list it). Nodes already in
    /// `seen_nodes` are not read again (with their subtrees), and the ones read are added,
    /// so one set shared across snapshots visits each shared subtree once.
    pub async fn walk(
        &self,
        root: &BlobId,
        seen_nodes: &mut HashSet<BlobId>,
        visit: &mut (dyn FnMut(BlobKind, &BlobRef) + Send),
    ) -> Result<()> {
        visit(BlobKind::Root, &BlobRef::plain(*root, 0, 0));
        let manifest = self.root(root).await?;
        visit(BlobKind::Schema, &manifest.pre_data);
        visit(BlobKind::Schema, &manifest.post_data);
        let mut stack: Vec<BlobRef> = manifest.tables.into_iter().map(|t| t.content).collect();
        while let Some(node_ref) = stack.pop() {
            if !seen_nodes.insert(node_ref.id) {
                continue;
            }
            visit(BlobKind::Manifest, &node_ref);
            let plain = self.get_plain(&node_ref.id, MAX_MANIFEST_LEN).await?;
            match ManifestNode::decode(&node_ref.id, &plain)? {
                ManifestNode::Leaf { chunks } => {
                    for c in &chunks {
                        visit(BlobKind::Chunk, c);
                    }
                }
                ManifestNode::Branch { children } => stack.extend(children),
            }
        }
        Ok(())
    }

    /// Every blob whose id starts with the byte `first`, with sizes and times.
    pub async fn list_blobs(&self, first: u8) -> Result<Vec<ListEntry>> {
        self.backend.list(&blob_prefix(first)).await
    }

    /// Removes a blob. Only garbage collection calls this (see [`crate::gc`]).
    pub async fn delete_blob(&self, id: &BlobId) -> Result<()> {
        self.backend.delete(&blob_key(id)).await
    }

    /// Reads one snapshot record, or `None` if it does not exist (any more).
    pub async fn record(&self, id: &SnapshotId) -> Result<Option<SnapshotRecord>> {
        let key = record_key(id);
        match self.backend.get(&key).await {
            Ok(bytes) => Ok(Some(SnapshotRecord::decode(&key, &bytes)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The keys of every snapshot record, sorted.
    pub async fn record_keys(&self) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .backend
            .list(RECORDS_PREFIX)
            .await?
            .into_iter()
            .map(|e| e.key)
            .filter(|k| k.ends_with(".json"))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Writes a snapshot record. Call only after every blob it names is stored.
    pub async fn put_record(&self, record: &SnapshotRecord) -> Result<()> {
        self.backend
            .put(&record_key(&record.id), Bytes::from(record.encode()))
            .await
    }

    /// Removes a snapshot record (its blobs stay until garbage collection).
    pub async fn delete_record(&self, id: &SnapshotId) -> Result<()> {
        self.backend.delete(&record_key(id)).await
    }

    /// Every snapshot record, newest first.
    pub async fn records(&self) -> Result<Vec<SnapshotRecord>> {
        let mut out = Vec::new();
        for entry in self.backend.list(RECORDS_PREFIX).await? {
            if !entry.key.ends_with(".json") {
                continue;
            }
            let bytes = match self.backend.get(&entry.key).await {
                Ok(b) => b,
                // Deleted between list and get.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            out.push(SnapshotRecord::decode(&entry.key, &bytes)?);
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }
}

/// Upper bound on a manifest node's or root manifest's plain size.
pub const MAX_MANIFEST_LEN: u64 = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_parse_back_and_other_keys_do_not() {
        let id = BlobId::of(b"x");
        assert_eq!(blob_id_of_key(&blob_key(&id)), Some(id));
        let hex = id.to_hex();
        for other in [
            format!("blobs/00/{hex}"),
            format!("blobs/{}/{hex}.tmp", &hex[..2]),
            format!("snapshots/{hex}"),
            "blobs/ab".to_owned(),
            "blobs/".to_owned(),
        ] {
            assert_eq!(blob_id_of_key(&other), None, "{other}");
        }
        assert_eq!(blob_prefix(0xab), "blobs/ab/");
        assert!(blob_key(&id).starts_with(&blob_prefix(id.as_bytes()[0])));
    }

    #[test]
    fn keys_have_the_documented_layout() {
        let id = BlobId::of(b"");
        assert_eq!(
            blob_key(&id),
            "blobs/af/af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let sid = SnapshotId::from_random([0xab; 6]);
        assert_eq!(record_key(&sid), "snapshots/snap_abababababab.json");
    }
}
