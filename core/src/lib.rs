//! # phony-core
//!
//! The model and the algorithms of phony, free of any I/O runtime: this crate names no
//! database, no filesystem and no network, and reads no clock. Time, randomness and storage
//! come in through arguments and the small [`Backend`] trait.
//!
//! - [`chunker`]: a table's row stream → row-aligned content-defined chunks (FastCDC).
//! - [`codec`]: plain bytes ↔ stored bytes (zstd, or a zstd delta against another blob,
//!   tagged), verified against the BLAKE3 id.
//! - [`manifest`]: chunk trees per table and the root manifest of a snapshot.
//! - [`mask`]: masking rules applied to rows as they stream (syncs from production).
//! - [`merge`]: a chunk patched with changed rows by integer key (incremental capture).
//! - [`record`]: the snapshot record that makes a snapshot listed, written last.
//! - [`config`]: the store's self-description and format version.
//! - [`store`]: the store on top of a [`Backend`].
//! - [`bases`]: which base each delta blob needs, from the markers written beside them.
//! - [`resolve`]: ids, prefixes and names → one snapshot.
//! - [`row`]: rows in PostgreSQL's text COPY format: fields, keys, unescaping.
//! - [`schedule`]: when a scheduled snapshot is due (cron in an IANA zone, DST-safe).
//! - [`sprint`]: sprint ends from Jira and Linear webhooks, verified by their signatures.
//! - [`retention`]: which snapshots a policy keeps ([`PrunePlan`]).
//! - [`gc`]: garbage collection of unreferenced blobs, safe against concurrent writers.
//! - [`verify`]: store integrity, naming what is damaged and what it breaks.
//! - [`stats`]: logical against stored bytes, per snapshot.
//! - [`diff`]: what differs between two snapshots, reading only the chunks that differ.

pub mod bases;
pub mod chunker;
pub mod codec;
pub mod config;
pub mod copy;
pub mod diff;
pub mod error;
pub mod gc;
pub mod id;
pub mod manifest;
pub mod mask;
pub mod merge;
pub mod record;
pub mod resolve;
pub mod retention;
pub mod row;
pub mod schedule;
pub mod sprint;
pub mod stats;
pub mod store;
#[cfg(test)]
mod testing;
pub mod timeline;
pub mod verify;

pub use chunker::{ChunkParams, RowChunk, RowChunker};
pub use config::StoreConfig;
pub use error::{Error, Result};
pub use id::{BlobId, SnapshotId};
pub use manifest::{
    BlobRef, DatabaseProperties, QualifiedName, RootManifest, SequenceState, TableEntry,
};
pub use record::{CapturePoint, Origin, SnapshotName, SnapshotRecord, SnapshotStats, SourceInfo};
pub use retention::{PrunePlan, RetentionPolicy};
pub use store::{Backend, BlobKind, ListEntry, Store, Stored, Uploads, INDEX_KEY, MAX_INDEX_LEN};
