//! The store: content-addressed blobs, snapshot records and the config, written through a
//! small [`Backend`] that adapters implement (a local directory, memory, S3 …).
//!
//! Layout inside a backend:
//! ```text
//! phony-store.json        format version, chunking and compression parameters
//! blobs/ab/abcdef…        chunks and manifest nodes, named by the BLAKE3 of their plain bytes
//! snapshots/snap_….json   one record per snapshot, written last
//! ```

use std::future::Future;

use bytes::Bytes;

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
}

/// Where a store's objects live. Keys are `/`-separated relative paths.
///
/// Guarantees an implementation must give:
/// - **atomic writes**: no reader ever sees a partial object;
/// - **create-if-absent**: of concurrent [`put_if_absent`](Backend::put_if_absent) calls on
///   one key exactly one writes, the others report that the key exists;
/// - [`get`](Backend::get) of a missing key fails with [`Error::NotFound`].
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
