//! Names that stay unique when two processes create snapshots at once.
//!
//! Before a named snapshot's record is written, a claim object `names/<hex of the name>`
//! is written create-if-absent (atomic on a local disk and on S3): of two creates racing
//! for one name, exactly one writes it, and the other fails with "already exists" before
//! writing anything. The claim names the snapshot's id; deleting the snapshot removes it.
//!
//! A claim whose snapshot has no record is left by a create that stopped between the
//! claim and the record, or by a delete from a phony without claims: it is taken over
//! once older than [`STALE_AFTER`] (a create writes its record right after its claim).
//! Stores written before claims existed keep working: their names are checked against
//! the records too.

use bytes::Bytes;
use phony_core::{Backend, SnapshotId, SnapshotName, SnapshotRecord, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Engine, Result};

/// Where the claims live in a store.
pub const CLAIM_PREFIX: &str = "names/";

/// How old a claim without a record must be before another create takes it over.
pub const STALE_AFTER: time::Duration = time::Duration::minutes(10);

/// Upper bound on a claim's size.
const MAX_CLAIM_LEN: u64 = 4096;

/// The object that holds `name` for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClaimBody {
    id: SnapshotId,
    #[serde(with = "time::serde::rfc3339")]
    claimed_at: OffsetDateTime,
}

/// A name this process holds for a snapshot whose record is not written yet.
#[derive(Debug)]
#[must_use = "release the claim if the record is not written"]
pub struct NameClaim {
    key: String,
    id: SnapshotId,
}

/// The key of `name`'s claim: its UTF-8 bytes in hex, so that names differing only in
/// case stay apart on case-insensitive disks.
pub fn claim_key(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{CLAIM_PREFIX}{hex}.json")
}

impl Engine {
    /// See [`claim`].
    pub async fn claim_name(&self, name: &SnapshotName, id: SnapshotId) -> Result<NameClaim> {
        claim(self.store(), name, id).await
    }

    /// See [`release`].
    pub async fn release_claim(&self, claim: NameClaim) -> Result<()> {
        release(self.store(), claim).await
    }

    /// See [`delete_snapshot`].
    pub async fn delete_snapshot(&self, record: &SnapshotRecord) -> Result<()> {
        delete_snapshot(self.store(), record).await
    }
}

/// Claims `name` for the snapshot `id` (whose record is written next), or fails with
/// [`phony_core::Error::AlreadyExists`] naming the snapshot that holds it.
pub async fn claim<B: Backend>(
    store: &Store<B>,
    name: &SnapshotName,
    id: SnapshotId,
) -> Result<NameClaim> {
    let backend = store.backend();
    let key = claim_key(name.as_str());
    let body = ClaimBody {
        id,
        claimed_at: OffsetDateTime::now_utc(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    // A second try only after a stale claim was removed.
    for _ in 0..2 {
        if backend.put_if_absent(&key, bytes.clone()).await? {
            return Ok(NameClaim { key, id });
        }
        let held = match backend.get(&key, MAX_CLAIM_LEN).await {
            Ok(held) => serde_json::from_slice::<ClaimBody>(&held).ok(),
            // Removed since: try again.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(held) = held else {
            // Unreadable: not ours to judge, and the name is not free.
            return Err(taken(name, "an unreadable claim"));
        };
        let has_record = backend
            .head(&phony_core::store::record_key(&held.id))
            .await?
            .is_some();
        if has_record || OffsetDateTime::now_utc() - held.claimed_at < STALE_AFTER {
            return Err(taken(name, &held.id.to_string()));
        }
        backend.delete(&key).await?;
    }
    Err(taken(name, "another snapshot being created"))
}

/// Gives a claim up: the record it was for will not be written.
pub async fn release<B: Backend>(store: &Store<B>, claim: NameClaim) -> Result<()> {
    forget(store, &claim.key, &claim.id).await
}

/// Deletes a snapshot's record, then its name's claim.
pub async fn delete_snapshot<B: Backend>(store: &Store<B>, record: &SnapshotRecord) -> Result<()> {
    store.delete_record(&record.id).await?;
    match &record.name {
        Some(name) => forget(store, &claim_key(name.as_str()), &record.id).await,
        None => Ok(()),
    }
}

/// Removes the claim at `key` if it is `id`'s (another snapshot's is left alone).
async fn forget<B: Backend>(store: &Store<B>, key: &str, id: &SnapshotId) -> Result<()> {
    let backend = store.backend();
    let held = match backend.get(key, MAX_CLAIM_LEN).await {
        Ok(held) => serde_json::from_slice::<ClaimBody>(&held).ok(),
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if held.is_some_and(|h| h.id == *id) {
        backend.delete(key).await?;
    }
    Ok(())
}

fn taken(name: &SnapshotName, by: &str) -> crate::Error {
    phony_core::Error::AlreadyExists {
        name: name.as_str().to_owned(),
        id: by.to_owned(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_keys_are_hex_and_keep_case_apart() {
        assert_eq!(claim_key("v1"), "names/7631.json");
        assert_ne!(claim_key("Clean"), claim_key("clean"));
    }
}
