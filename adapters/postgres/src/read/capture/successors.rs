//! What a capture stores its new chunks against: the chunks an earlier snapshot of the
//! same database held of the same table, paired with the new ones as they are cut.

use std::collections::HashMap;

use phony_core::{Backend, BlobId, BlobRef, RootManifest, Store, TableEntry};

use crate::error::Result;
use crate::read::incremental::base_tree;

/// The newest snapshot in the store taken of a database named `dbname`, whose chunks new
/// ones are stored against (see [`Successors`]); `None` when there is none.
pub(crate) async fn predecessor<B: Backend>(
    store: &Store<B>,
    dbname: &str,
) -> Result<Option<RootManifest>> {
    let records = store.records().await?;
    let newest = records
        .iter()
        .filter(|r| r.source.database == dbname)
        .max_by_key(|r| r.created_at);
    match newest {
        Some(r) => Ok(Some(store.root(&r.root).await?)),
        None => Ok(None),
    }
}

/// Tables larger than this (plain bytes, ~65,000 chunks) are read without pairing their
/// chunks with an earlier snapshot's: the pairing holds the old chunks' references (a few
/// hundred bytes each) while the table is read, and each reader pairs one table.
pub(crate) const PAIRED_BYTES_MAX: u64 = 4 << 30;

/// What a full read of a table pairs its new chunks and nodes with: the chunk tree of
/// `predecessor`, the table in an earlier snapshot. Nothing for a table over
/// [`PAIRED_BYTES_MAX`], or when that tree cannot be read (a damaged earlier snapshot
/// must not fail this one).
pub(crate) async fn pairing<B: Backend>(
    store: &Store<B>,
    predecessor: Option<&TableEntry>,
) -> (Option<Successors>, Option<Vec<Vec<BlobId>>>) {
    let Some(entry) = predecessor.filter(|e| e.content.bytes <= PAIRED_BYTES_MAX) else {
        return (None, None);
    };
    match base_tree(store, &entry.content).await {
        Ok(base) => (Some(Successors::new(base.chunks)), Some(base.levels)),
        Err(e) => {
            tracing::debug!(
                "{}: stored without an earlier snapshot's chunks: {e}",
                entry.table
            );
            (None, None)
        }
    }
}

/// The chunks an earlier snapshot held of the rows a read covers, in order: each new chunk
/// is stored as a delta against the one it most likely replaces (where the store allows
/// deltas and one pays, see [`phony_core::codec::encode_delta`]), so that what a snapshot of a table
/// with scattered small changes adds grows with the changes, not with the chunks they
/// touch.
///
/// Chunk boundaries are cut by content, so most fall where they fell before: a new chunk
/// that begins with the key an old one began with replaces that one; one that does not
/// (its first row changed) most likely replaces the old chunk after the last one so
/// matched. Without a key, the chunk at the same position.
#[derive(Debug)]
pub(crate) struct Successors {
    chunks: Vec<BlobRef>,
    by_first: HashMap<String, usize>,
    /// The old chunk after the last one matched by its first key.
    next: usize,
    /// New chunks seen so far.
    seen: usize,
}

impl Successors {
    pub(crate) fn new(chunks: Vec<BlobRef>) -> Self {
        let by_first = chunks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.first.clone().map(|k| (k, i)))
            .collect();
        Successors {
            chunks,
            by_first,
            next: 0,
            seen: 0,
        }
    }

    /// The old chunk the next new chunk most likely replaces, given the key of its first
    /// row (`None` without a key).
    pub(crate) fn base_of(&mut self, first: Option<String>) -> Option<BlobRef> {
        let at = self.seen;
        self.seen += 1;
        let i = match first {
            None => at,
            Some(first) => match self.by_first.get(&first) {
                Some(&i) => i,
                None => self.next,
            },
        };
        self.next = i + 1;
        self.chunks.get(i).cloned()
    }
}
