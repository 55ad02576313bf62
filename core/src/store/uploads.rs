//! Writing a snapshot's blobs with as few requests as the store allows.
//!
//! A blob write is create-if-absent, so a writer never needs to ask whether a blob is
//! stored for correctness: asking (a `HEAD` on S3) only spares the compression and the
//! upload of a blob that is there. Into a store that holds no snapshot yet nearly every
//! blob is new, and the question doubles the requests for nothing. [`Uploads`] decides,
//! for one writer:
//! - a blob this writer has already stored or found stored costs no request at all;
//! - into a store without snapshot records, the others are compressed and written
//!   create-only without asking first;
//! - once a create-only write finds its blob already there (a rerun after a killed
//!   capture, another writer), or in a store with snapshots, each blob is asked for first.
//!
//! *Why this is as safe as asking.* A writer holds its create lock while it stores blobs
//! (see [`crate::gc`]): from the moment its lock is written and no collector was seen, no
//! blob it finds stored is deleted before its record is written. A create-only write that
//! reports "already exists" finds the blob stored exactly as a `HEAD` does, and a blob
//! this writer stored or found is therefore still there later in the same capture. So an
//! [`Uploads`] serves one writer under one create lock, and is dropped with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{Backend, Store, Stored};
use crate::codec;
use crate::error::Result;
use crate::id::BlobId;

/// How many blobs an [`Uploads`] remembers (~48 bytes each, 12 MiB at most): past that, a
/// blob one capture stores twice costs a request again (a refused write switches the
/// capture to asking first, which is then only slower).
const MAX_REMEMBERED: usize = 1 << 18;

/// What one writer knows about the blobs of a store, to spare requests (see the module
/// docs). Create one per capture, while holding the store's create lock.
#[derive(Debug)]
pub struct Uploads {
    /// Ask whether a blob is stored before compressing and writing it.
    ask_first: AtomicBool,
    /// Blobs this writer stored or found stored, with their stored sizes.
    known: Mutex<HashMap<BlobId, u64>>,
}

impl Uploads {
    /// For a writer into `store`: asks before each write unless the store holds no
    /// snapshot record (one listing of the records).
    pub async fn for_store<B: Backend>(store: &Store<B>) -> Result<Self> {
        let empty = store.record_keys().await?.is_empty();
        Ok(Self::new(!empty))
    }

    /// Asks before each write (`ask_first`) or not, until a write finds its blob there.
    pub fn new(ask_first: bool) -> Self {
        Uploads {
            ask_first: AtomicBool::new(ask_first),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Whether blobs are asked for before they are written.
    pub fn asks_first(&self) -> bool {
        self.ask_first.load(Ordering::Relaxed)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, u64>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, id: &BlobId, size: u64) {
        let mut known = self.known();
        if known.len() < MAX_REMEMBERED {
            known.insert(*id, size);
        }
    }

    /// `Some` when `id` need not be written: this writer stored or found it, or (when it
    /// asks first) the store says it has it. `None`: write it with
    /// [`Uploads::put_encoded`].
    pub async fn stored<B: Backend>(
        &self,
        store: &Store<B>,
        id: &BlobId,
    ) -> Result<Option<Stored>> {
        if let Some(&stored_bytes) = self.known().get(id) {
            return Ok(Some(Stored {
                stored_bytes,
                new: false,
            }));
        }
        if !self.asks_first() {
            return Ok(None);
        }
        Ok(match store.blob_size(id).await? {
            Some(stored_bytes) => {
                self.remember(id, stored_bytes);
                Some(Stored {
                    stored_bytes,
                    new: false,
                })
            }
            None => None,
        })
    }

    /// Writes an encoded blob create-only (see [`Store::put_encoded`]). If it was there
    /// although this writer did not ask, the store holds blobs this writer did not expect:
    /// from now on it asks first, and the size reported is the stored one.
    pub async fn put_encoded<B: Backend>(
        &self,
        store: &Store<B>,
        id: &BlobId,
        encoded: Vec<u8>,
    ) -> Result<Stored> {
        let mut stored = store.put_encoded(id, encoded).await?;
        // Not asked: the size it has is the stored one (another writer may have stored it
        // as a delta). Asked and missing, then written meanwhile: as `put_plain` does.
        if !stored.new && !self.ask_first.swap(true, Ordering::Relaxed) {
            if let Some(size) = store.blob_size(id).await? {
                stored.stored_bytes = size;
            }
        }
        self.remember(id, stored.stored_bytes);
        Ok(stored)
    }

    /// Encodes and stores plain bytes unless this writer knows them stored (see
    /// [`Store::put_plain`], which always asks first).
    pub async fn put_plain<B: Backend>(
        &self,
        store: &Store<B>,
        plain: &[u8],
    ) -> Result<(BlobId, Stored)> {
        let id = BlobId::of(plain);
        if let Some(stored) = self.stored(store, &id).await? {
            return Ok((id, stored));
        }
        let encoded = codec::encode(plain, store.config().compression);
        Ok((id, self.put_encoded(store, &id, encoded).await?))
    }
}
