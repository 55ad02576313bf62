//! The store: content-addressed blobs, snapshot records and the config, written through a
//! small [`Backend`] that adapters implement (a local directory, memory, S3 …).
//!
//! Layout inside a backend:
//! ```text
//! phony-store.json        format version, chunking and compression parameters
//! blobs/ab/abcdef…        chunks and manifest nodes, named by the BLAKE3 of their plain bytes
//! bases/ab/abcdef….0123…  empty: blob abcdef… is a delta against blob 0123… (format 2)
//! snapshots/snap_….json   one record per snapshot, written last
//! ```
//!
//! A delta blob (codec tag 2, see [`codec`]) needs its base to be decoded. Its marker,
//! whose key alone names the relation, is written before the blob, so garbage collection
//! finds every base a kept blob needs by listing `bases/`, without reading blobs (see
//! [`crate::bases`]).

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;

use crate::codec::{self, Chain, DeltaHeader, MAX_DELTA_LEN};
use crate::config::{StoreConfig, CONFIG_KEY, DELTA_FORMAT};
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::manifest::{BlobRef, ManifestNode, RootManifest, TableEntry};
use crate::record::SnapshotRecord;

mod index;
mod records;
mod uploads;

pub use index::{INDEX_KEY, MAX_INDEX_LEN};
pub use records::{DamagedRecord, RecordScan, MAX_RECORD_LEN};
pub use uploads::Uploads;

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
    /// The object's version tag (S3's `ETag`), where the backend names one: the same tag
    /// for one key means the same bytes. Lets a listing validate the record index.
    pub version: Option<String>,
}

/// Where a store's objects live. Keys are `/`-separated relative paths.
///
/// Guarantees an implementation must give:
/// - **atomic writes**: no reader ever sees a partial object;
/// - **create-if-absent**: of concurrent [`put_if_absent`](Backend::put_if_absent) calls on
///   one key exactly one writes, the others report that the key exists;
/// - [`get`](Backend::get) of a missing key fails with [`Error::NotFound`]; of an object
///   larger than the caller's limit, with [`Error::BadObject`] before reading more than the
///   limit (a damaged or hostile store must not make a reader allocate what it says);
/// - a key never resolves outside the store: a backend on a file system refuses symbolic
///   links, directories and devices where an object should be ([`Error::BadObject`]), and
///   never reads, writes or deletes through a symbolic link;
/// - **linearizable listing**: an object whose write completed before a
///   [`list`](Backend::list) started is listed, one whose delete completed is not
///   (garbage collection's safety rests on this; S3 and local disks give it);
/// - [`ListEntry::modified`] comes from one clock for all clients of the store;
/// - [`sync`](Backend::sync) makes every write completed before it durable.
pub trait Backend: Send + Sync {
    /// Writes `bytes` at `key` unless it exists. `Ok(true)`: written; `Ok(false)`: it existed.
    fn put_if_absent(&self, key: &str, bytes: Bytes) -> impl Future<Output = Result<bool>> + Send;
    /// Writes `bytes` at `key`, replacing any previous object atomically.
    fn put(&self, key: &str, bytes: Bytes) -> impl Future<Output = Result<()>> + Send;
    /// Reads a whole object of at most `max_len` bytes: a larger one is
    /// [`Error::BadObject`], found before more than `max_len` bytes are read.
    fn get(&self, key: &str, max_len: u64) -> impl Future<Output = Result<Bytes>> + Send;
    /// Reads a whole object as [`get`](Backend::get) does, with the version tag its
    /// listing would show ([`ListEntry::version`]), where the backend names one.
    fn get_versioned(
        &self,
        key: &str,
        max_len: u64,
    ) -> impl Future<Output = Result<(Bytes, Option<String>)>> + Send {
        async move { Ok((self.get(key, max_len).await?, None)) }
    }
    /// The size of an object, or `None` if it does not exist.
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<u64>>> + Send;
    /// Removes an object; removing a missing object succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// Every object whose key starts with `prefix`.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<ListEntry>>> + Send;
    /// Where this backend points, for messages (never a secret).
    fn describe(&self) -> String;
    /// Makes every write completed so far survive a power loss or an operating-system
    /// crash. The store calls it before a snapshot record is written (so a record never
    /// names a blob that a crash could empty) and after (so a snapshot reported as taken
    /// stays taken). Backends whose writes are durable once acknowledged (S3, memory) need
    /// nothing: the default does nothing.
    fn sync(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
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

/// Where delta markers live.
pub const MARKERS_PREFIX: &str = "bases/";

/// The key of the marker saying that blob `id` is a delta against blob `base`:
/// `bases/<first byte of id>/<id>.<base>`, so markers are listed in the same 256 ranges
/// as blobs.
pub fn marker_key(id: &BlobId, base: &BlobId) -> String {
    let hex = id.to_hex();
    format!("{MARKERS_PREFIX}{}/{hex}.{base}", &hex[..2])
}

/// The key prefix of the markers of blobs whose id starts with the byte `first`.
pub fn marker_prefix(first: u8) -> String {
    format!("{MARKERS_PREFIX}{first:02x}/")
}

/// The `(delta, base)` a marker key names, or `None` for any other key.
pub fn marker_of_key(key: &str) -> Option<(BlobId, BlobId)> {
    let rest = key.strip_prefix(MARKERS_PREFIX)?;
    let (dir, name) = rest.split_once('/')?;
    let (id, base) = name.split_once('.')?;
    let id: BlobId = id.parse().ok()?;
    let base: BlobId = base.parse().ok()?;
    (dir.len() == 2 && name.starts_with(dir) && id != base).then_some((id, base))
}

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
        let bytes = match backend.get(CONFIG_KEY, MAX_CONFIG_LEN).await {
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
                backend.sync().await?;
                Self::open(backend).await
            }
        }
    }

    async fn open_inner(backend: &B) -> Result<Option<StoreConfig>> {
        match backend.get(CONFIG_KEY, MAX_CONFIG_LEN).await {
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
        self.backend.put(CONFIG_KEY, Bytes::from(bytes)).await?;
        self.backend.sync().await
    }

    /// The backend underneath.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Where the store lives, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Stored size of a blob, if present; [`Error::Corrupt`] if its key holds something
    /// else than an object (a symbolic link, a directory).
    pub async fn blob_size(&self, id: &BlobId) -> Result<Option<u64>> {
        match self.backend.head(&blob_key(id)).await {
            Err(Error::BadObject { reason, .. }) => Err(Error::Corrupt { id: *id, reason }),
            other => other,
        }
    }

    /// Whether blobs may be stored as deltas: stores of format 2 and newer (builds that
    /// read only format 1 neither decode deltas nor keep their bases, and refuse newer
    /// stores).
    pub fn deltas_allowed(&self) -> bool {
        self.config.format >= DELTA_FORMAT
    }

    /// Stores an already-encoded blob (see [`codec::encode`], [`codec::encode_delta`])
    /// unless present. A delta's marker is written first, so that no delta is ever stored
    /// without the marker that keeps its base from garbage collection; the caller must
    /// know its base is stored (see [`Store::delta_base_depth`]).
    pub async fn put_encoded(&self, id: &BlobId, encoded: Vec<u8>) -> Result<Stored> {
        if let Some(h) = DeltaHeader::parse(id, &encoded)? {
            if !self.deltas_allowed() {
                return Err(Error::Invalid(format!(
                    "blob {id} is a delta, which a store of format {} cannot hold",
                    self.config.format
                )));
            }
            self.backend
                .put_if_absent(&marker_key(id, &h.base), Bytes::new())
                .await?;
        }
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
        let encoded = codec::encode(plain, self.config.compression);
        let stored = self.put_encoded(&id, encoded).await?;
        Ok((id, stored))
    }

    /// Stores `plain`, whose id is `id`, unless present: as a delta against `base` (whose
    /// plain bytes are `base_plain`) when the store allows deltas, `base` is stored, its
    /// chain is short enough and the delta pays (see [`codec::encode_delta`]); otherwise
    /// standalone. `base` must stay referenced until the record naming `id` is written,
    /// as any blob a writer relies on (the writer holds its create lock, see [`crate::gc`]).
    ///
    /// Compresses on the calling task (~0.1–0.3 ms for a 64 KiB chunk against a similar
    /// base, a standalone compression more otherwise). A caller that must not block its
    /// runtime does the same in three steps: [`Store::delta_base_depth`], [`codec::encode_delta`]
    /// on a blocking pool, [`Store::put_encoded`].
    pub async fn put_delta(
        &self,
        id: &BlobId,
        plain: &[u8],
        base: &BlobId,
        base_plain: &[u8],
    ) -> Result<Stored> {
        if let Some(size) = self.blob_size(id).await? {
            return Ok(Stored {
                stored_bytes: size,
                new: false,
            });
        }
        let compression = self.config.compression;
        let encoded = match self.delta_base_depth(base).await? {
            Some(depth) => codec::encode_delta(plain, compression, base, depth, base_plain),
            None => codec::encode(plain, compression),
        };
        self.put_encoded(id, encoded).await
    }

    /// The chain depth of `base` when a delta may be stored against it: `None` when the
    /// store does not allow deltas, or `base` is missing or its header is damaged.
    pub async fn delta_base_depth(&self, base: &BlobId) -> Result<Option<u8>> {
        if !self.deltas_allowed() {
            return Ok(None);
        }
        match self
            .backend
            .get(&blob_key(base), codec::max_stored_len(MAX_DELTA_LEN))
            .await
        {
            Ok(stored) => Ok(DeltaHeader::depth_of(base, &stored).ok()),
            // Missing, or too large (or not a file) to serve as a base.
            Err(Error::NotFound { .. } | Error::BadObject { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a blob's stored bytes, without decoding them. `plain_limit` bounds its plain
    /// size (the size its manifest entry recorded, or [`MAX_MANIFEST_LEN`] for a manifest):
    /// a stored object larger than any encoding of that many bytes is [`Error::Corrupt`],
    /// found without reading it.
    pub async fn get_encoded(&self, id: &BlobId, plain_limit: u64) -> Result<Bytes> {
        self.get_blob(id, codec::max_stored_len(plain_limit))
            .await
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::NotFound {
                    what: format!("blob {id} (the store is missing data this snapshot needs)"),
                },
                other => other,
            })
    }

    /// Reads a stored blob of at most `max_len` bytes; a larger one (or a key that is not an
    /// object) is [`Error::Corrupt`].
    async fn get_blob(&self, id: &BlobId, max_len: u64) -> Result<Bytes> {
        match self.backend.get(&blob_key(id), max_len).await {
            Err(Error::BadObject { reason, .. }) => Err(Error::Corrupt { id: *id, reason }),
            other => other,
        }
    }

    /// Reads a blob's stored bytes and those of every base its decoding needs:
    /// [`Error::BaseMissing`] if one is missing. Reads at most
    /// [`codec::MAX_DELTA_DEPTH`] bases, whatever the headers say. Decode the result with
    /// [`Chain::decode`] (CPU-bound: on a blocking pool, for async callers that care).
    /// `plain_limit` bounds the blob's plain size, as for [`Store::get_encoded`]; every
    /// base's is bounded by [`codec::MAX_DELTA_LEN`].
    pub async fn get_chain(&self, id: &BlobId, plain_limit: u64) -> Result<Chain> {
        let stored = self.get_encoded(id, plain_limit).await?;
        self.complete_chain(Chain::new(*id, stored)?).await
    }

    /// Reads the bases a chain still needs (see [`Store::get_chain`]).
    pub async fn complete_chain(&self, mut chain: Chain) -> Result<Chain> {
        while let Some(base) = chain.next_base() {
            let stored = match self
                .get_blob(&base, codec::max_stored_len(MAX_DELTA_LEN))
                .await
            {
                Ok(s) => s,
                Err(e) if e.is_not_found() => {
                    return Err(Error::BaseMissing {
                        id: chain.id(),
                        base,
                    })
                }
                Err(e) => return Err(e),
            };
            chain.push(base, stored)?;
        }
        Ok(chain)
    }

    /// Reads and decodes a blob (through its delta chain), checking its hash; `limit`
    /// bounds its plain size.
    pub async fn get_plain(&self, id: &BlobId, limit: u64) -> Result<Vec<u8>> {
        self.get_chain(id, limit).await?.decode(limit)
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

    /// The markers of the delta blobs whose id starts with the byte `first`.
    pub async fn list_markers(&self, first: u8) -> Result<Vec<ListEntry>> {
        self.backend.list(&marker_prefix(first)).await
    }

    /// Removes a marker. Only garbage collection calls this, after its blob is gone.
    pub async fn delete_marker(&self, id: &BlobId, base: &BlobId) -> Result<()> {
        self.backend.delete(&marker_key(id, base)).await
    }

    /// The keys of every snapshot record, sorted.
    pub async fn record_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .listed_records()
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    /// Every snapshot record's listing entry, sorted by key.
    async fn listed_records(&self) -> Result<Vec<ListEntry>> {
        let mut listed: Vec<ListEntry> = self
            .backend
            .list(RECORDS_PREFIX)
            .await?
            .into_iter()
            .filter(|e| e.key.ends_with(".json"))
            .collect();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Writes a snapshot record. Call only after every blob it names is stored: the blobs
    /// are made durable before the record is written, and the record before this returns.
    pub async fn put_record(&self, record: &SnapshotRecord) -> Result<()> {
        self.backend.sync().await?;
        self.backend
            .put(&record_key(&record.id), Bytes::from(record.encode()))
            .await?;
        self.backend.sync().await
    }

    /// Removes a snapshot record (its blobs stay until garbage collection).
    pub async fn delete_record(&self, id: &SnapshotId) -> Result<()> {
        self.backend.delete(&record_key(id)).await
    }
}

/// Upper bound on `phony-store.json`'s size.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// How many snapshot records [`Store::scan_records`] reads at once, so that listing a
/// store on S3 costs a few round trips, not one per snapshot.
pub const RECORD_READS: usize = 32;

/// Upper bound on a manifest node's or root manifest's plain size.
pub const MAX_MANIFEST_LEN: u64 = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MAX_DELTA_DEPTH;
    use crate::testing::{rows, MemBackend};
    use futures::executor::block_on;

    async fn store() -> Store<MemBackend> {
        Store::open_or_init(MemBackend::default(), StoreConfig::default())
            .await
            .unwrap()
    }

    async fn depth(store: &Store<MemBackend>, id: &BlobId) -> u8 {
        let stored = store.get_encoded(id, 1 << 20).await.unwrap();
        DeltaHeader::depth_of(id, &stored).unwrap()
    }

    #[test]
    fn a_record_is_written_between_two_syncs_and_a_new_store_is_synced() {
        block_on(async {
            let store = store().await;
            assert_eq!(
                store.backend().journal(),
                [format!("put {CONFIG_KEY}"), "sync".into()]
            );
            let record = crate::testing::put_snapshot(&store, &[b"1\ta\n"], 7).await;
            let journal = store.backend().journal();
            let tail = &journal[journal.len() - 3..];
            assert_eq!(
                tail,
                [
                    "sync".into(),
                    format!("put {}", record_key(&record.id)),
                    "sync".into()
                ],
                "the blobs are durable before the record is written, the record before it returns"
            );
            assert_eq!(journal.iter().filter(|e| *e == "sync").count(), 3);
        });
    }

    #[test]
    fn put_delta_stores_a_delta_with_its_marker_when_the_base_is_there() {
        block_on(async {
            let store = store().await;
            let base = rows(800, 1, &[]);
            let (base_id, _) = store.put_plain(&base).await.unwrap();
            let plain = rows(800, 1, &[5, 500]);
            let id = BlobId::of(&plain);
            let stored = store.put_delta(&id, &plain, &base_id, &base).await.unwrap();
            assert!(stored.new);
            assert!(stored.stored_bytes < 300, "{stored:?}");
            assert_eq!(depth(&store, &id).await, 1);
            let keys = store.backend().keys();
            assert!(keys.contains(&marker_key(&id, &base_id)), "{keys:?}");
            // The marker was written before the blob (the backend's clock ticks per write).
            let listed = store.backend().list("").await.unwrap();
            let written = |key: String| listed.iter().find(|e| e.key == key).unwrap().modified;
            assert!(written(marker_key(&id, &base_id)) < written(blob_key(&id)));
            assert_eq!(
                store.get_plain(&id, plain.len() as u64).await.unwrap(),
                plain
            );

            // Present: nothing is written.
            let again = store.put_delta(&id, &plain, &base_id, &base).await.unwrap();
            assert_eq!(
                (again.new, again.stored_bytes),
                (false, stored.stored_bytes)
            );
            assert_eq!(store.backend().keys(), keys);
            let other = rows(800, 1, &[7]);
            let before_plain = store.put_plain(&other).await.unwrap();
            let (other_id, _) = before_plain;
            let present = store
                .put_delta(&other_id, &other, &base_id, &base)
                .await
                .unwrap();
            assert!(!present.new);
            assert_eq!(depth(&store, &other_id).await, 0);
        });
    }

    #[test]
    fn put_delta_stores_standalone_without_a_base_or_on_a_format_1_store() {
        block_on(async {
            let base = rows(800, 2, &[]);
            let plain = rows(800, 2, &[9]);
            let (base_id, id) = (BlobId::of(&base), BlobId::of(&plain));

            let store = store().await;
            let stored = store.put_delta(&id, &plain, &base_id, &base).await.unwrap();
            assert!(stored.new && stored.stored_bytes > 1000);
            assert_eq!(depth(&store, &id).await, 0);
            assert!(!store
                .backend()
                .keys()
                .iter()
                .any(|k| k.starts_with(MARKERS_PREFIX)));

            let old = StoreConfig {
                format: 1,
                ..StoreConfig::default()
            };
            let store = Store::open_or_init(MemBackend::default(), old)
                .await
                .unwrap();
            assert!(!store.deltas_allowed());
            store.put_plain(&base).await.unwrap();
            store.put_delta(&id, &plain, &base_id, &base).await.unwrap();
            assert_eq!(depth(&store, &id).await, 0);
            let delta = codec::encode_delta(&plain, 3, &base_id, 0, &base);
            assert!(matches!(
                store.put_encoded(&BlobId::of(b"x"), delta).await,
                Err(Error::Invalid(_))
            ));
        });
    }

    #[test]
    fn chains_grow_to_the_maximum_depth_then_start_over_and_a_lost_base_is_named() {
        block_on(async {
            let store = store().await;
            let version =
                |v: usize| rows(800, 3, &(0..v).map(|k| k * 53 % 800).collect::<Vec<_>>());
            let (mut base_id, _) = store.put_plain(&version(0)).await.unwrap();
            let mut ids = vec![base_id];
            for v in 1..=MAX_DELTA_DEPTH as usize + 2 {
                let plain = version(v);
                let id = BlobId::of(&plain);
                store
                    .put_delta(&id, &plain, &base_id, &version(v - 1))
                    .await
                    .unwrap();
                assert_eq!(
                    depth(&store, &id).await as usize,
                    v % (MAX_DELTA_DEPTH as usize + 1)
                );
                assert_eq!(store.get_plain(&id, 1 << 20).await.unwrap(), plain);
                base_id = id;
                ids.push(id);
            }
            // The middle of a chain is lost: every delta above it is missing its base.
            store.delete_blob(&ids[3]).await.unwrap();
            match store.get_plain(&ids[5], 1 << 20).await {
                Err(Error::BaseMissing { id, base }) => assert_eq!((id, base), (ids[5], ids[3])),
                other => panic!("{other:?}"),
            }
            let err = store.get_plain(&ids[4], 1 << 20).await.unwrap_err();
            assert!(err.to_string().contains("missing"), "{err}");
            assert_eq!(store.get_plain(&ids[2], 1 << 20).await.unwrap(), version(2));
        });
    }

    #[test]
    fn marker_keys_parse_back_and_other_keys_do_not() {
        let (id, base) = (BlobId::of(b"x"), BlobId::of(b"y"));
        let key = marker_key(&id, &base);
        assert_eq!(
            key,
            format!(
                "bases/{}/{}.{}",
                &id.to_hex()[..2],
                id.to_hex(),
                base.to_hex()
            )
        );
        assert!(key.starts_with(&marker_prefix(id.as_bytes()[0])));
        assert_eq!(marker_of_key(&key), Some((id, base)));
        let (i, b) = (id.to_hex(), base.to_hex());
        for other in [
            format!("bases/00/{i}.{b}"),
            format!("bases/{}/{i}", &i[..2]),
            format!("bases/{}/{i}.{i}", &i[..2]),
            format!("bases/{}/{i}.{b}.tmp", &i[..2]),
            format!("blobs/{}/{i}", &i[..2]),
        ] {
            assert_eq!(marker_of_key(&other), None, "{other}");
        }
    }

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
