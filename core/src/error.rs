//! The one error type of phony-core.

use crate::id::BlobId;

/// What can go wrong in the model and the store, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A snapshot, blob or store that was asked for does not exist.
    #[error("{what} not found")]
    NotFound { what: String },

    /// No snapshot has this id, id prefix or name.
    #[error("no snapshot is named {reference:?} or has an id starting with it (see `phony snapshot list`)")]
    SnapshotNotFound { reference: String },

    /// What was typed is hex too short to be an id prefix, and no snapshot has it as name.
    #[error("{reference:?} is too short to be an id prefix: give at least {min} hex digits of the id, or the exact name (see `phony snapshot list`)")]
    PrefixTooShort { reference: String, min: usize },

    /// A name is already taken by another snapshot.
    #[error("a snapshot named {name:?} already exists ({id}); pick another name or delete that snapshot first")]
    AlreadyExists { name: String, id: String },

    /// A short id prefix matches more than one snapshot.
    #[error("{prefix:?} is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },

    /// User input that does not have the required form.
    #[error("{0}")]
    Invalid(String),

    /// A stored object does not match its id, or cannot be decoded.
    #[error("blob {id} is corrupt: {reason}")]
    Corrupt { id: BlobId, reason: String },

    /// A delta's base is not in the store, so the delta cannot be decoded.
    #[error("blob {id} is stored as a delta against blob {base}, which is missing (the store is missing data this snapshot needs)")]
    BaseMissing { id: BlobId, base: BlobId },

    /// A stored record or config file cannot be decoded.
    #[error("{what} is corrupt: {reason}")]
    CorruptRecord { what: String, reason: String },

    /// A key of the store holds something phony never writes there: an object larger than
    /// the limit for its kind, a symbolic link, a directory or a device. Nothing larger than
    /// the limit was read.
    #[error("{what} is damaged: {reason}")]
    BadObject { what: String, reason: String },

    /// A snapshot record was written by a newer format than this build reads.
    #[error("{what} uses format {found}, but this phony reads records of formats up to {supported}; upgrade phony to read it")]
    RecordFormat {
        what: String,
        found: u32,
        supported: u32,
    },

    /// Garbage collection needs every snapshot record, and these cannot be read: what they
    /// reference is unknown, so nothing is deleted.
    #[error("the snapshot record(s) {} cannot be read, so the blobs they reference are unknown: no blob is deleted while they remain", keys.join(", "))]
    UnreadableRecords { keys: Vec<String> },

    /// The store was written by a newer format than this build reads.
    #[error("the store uses format {found}, but this phony reads formats up to {supported}; upgrade phony to use it")]
    UnsupportedFormat { found: u32, supported: u32 },

    /// The underlying storage failed.
    #[error("{context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A backend failure with a verb-phrase context ("writing blob abc…").
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The error for an object of `size` bytes read with a limit of `max_len` (see
    /// [`Backend::get`](crate::Backend::get)).
    pub fn too_large(what: impl Into<String>, size: u64, max_len: u64) -> Self {
        Error::BadObject {
            what: what.into(),
            reason: format!(
                "it holds {size} bytes, more than the {max_len} an object of its kind can hold"
            ),
        }
    }

    /// Whether this error says the storage has no room left (a full disk, a quota).
    pub fn is_storage_full(&self) -> bool {
        let Error::Backend { source, .. } = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                );
            }
            cause = e.source();
        }
        false
    }

    /// Whether this error means "the thing is not there".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. } | Error::SnapshotNotFound { .. } | Error::PrefixTooShort { .. }
        )
    }
}

/// Result alias of phony-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_quota_is_storage_full_and_nothing_else_is() {
        let io = |kind| Error::backend("writing blobs/ab/abc", std::io::Error::from(kind));
        assert!(io(std::io::ErrorKind::StorageFull).is_storage_full());
        assert!(io(std::io::ErrorKind::QuotaExceeded).is_storage_full());
        assert!(Error::backend(
            "writing",
            std::io::Error::from_raw_os_error(28) // ENOSPC
        )
        .is_storage_full());
        assert!(!io(std::io::ErrorKind::PermissionDenied).is_storage_full());
        assert!(!Error::Invalid("full".into()).is_storage_full());
    }
}
