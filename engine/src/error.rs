//! The engine's errors: each variant one a caller can act on.

/// What went wrong in a lifecycle operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No store at the location (nothing was created).
    #[error("no phony store at {location}")]
    NoStore { location: String },

    /// An S3 prefix holds objects but no store: one is not mixed into them.
    #[error(
        "{describe} holds objects ({first} …) but no phony store (no {config_key}): point --store at an empty prefix or an existing store"
    )]
    ForeignObjects {
        describe: String,
        first: String,
        config_key: &'static str,
    },

    /// A local directory that holds other things but no store.
    #[error("{describe} is not a phony store (no {config_key}) and is not empty")]
    NotAStore {
        describe: String,
        config_key: &'static str,
    },

    /// A step of the lifecycle could not read or write the store.
    #[error("{doing}")]
    Storage {
        doing: &'static str,
        #[source]
        source: phony_core::Error,
    },

    /// The snapshot was deleted while this operation was working on it.
    #[error("snapshot {label} was deleted meanwhile")]
    Vanished { label: String },

    /// Rewriting a snapshot's record (to pin or unpin it) failed.
    #[error("writing the record of {label}")]
    Rewriting {
        label: String,
        #[source]
        source: phony_core::Error,
    },

    /// Capturing the database failed (`target` is shown without its password).
    #[error("capturing {target}")]
    Capture {
        target: String,
        #[source]
        source: phony_postgres::Error,
    },

    /// Reading the live database (for a comparison) failed.
    #[error("reading {target}")]
    Reading {
        target: String,
        #[source]
        source: phony_postgres::Error,
    },

    /// Reading a snapshot's root manifest failed.
    #[error("reading snapshot {id}")]
    ReadingSnapshot {
        id: phony_core::SnapshotId,
        #[source]
        source: phony_core::Error,
    },

    /// An in-place restore of a snapshot taken of another database (or server), not asked
    /// for (see `RestoreRequest::allow_other_database`).
    #[error("not restoring {snapshot} into {database}: {why}")]
    OtherDatabase {
        snapshot: String,
        database: String,
        why: String,
    },

    /// The safety snapshot before a restore failed; the restore did not happen.
    #[error("taking the safety snapshot")]
    SafetySnapshot {
        #[source]
        source: Box<Error>,
    },

    /// A restore failed. `kept`: it may have been committed, and the state before is kept
    /// as that snapshot; without, nothing changed.
    #[error("restoring {id} into {database}{}", match kept {
        Some(k) => format!(" (it may have been committed: the state before is kept as {k})"),
        None => String::new(),
    })]
    Restore {
        id: phony_core::SnapshotId,
        database: String,
        kept: Option<phony_core::SnapshotId>,
        #[source]
        source: phony_postgres::Error,
    },

    /// The snapshot `id` was taken, but the retention applied after it failed.
    #[error("snapshot {id} was taken, but applying the store's retention policy failed")]
    Retention {
        id: phony_core::SnapshotId,
        #[source]
        source: Box<Error>,
    },

    /// Deleting a snapshot (by retention) failed.
    #[error("deleting snapshot {id}")]
    Deleting {
        id: phony_core::SnapshotId,
        #[source]
        source: Box<Error>,
    },

    /// Stopped by its [`crate::Cancel`] before it changed anything.
    #[error("cancelled, nothing changed")]
    Cancelled,

    /// The store, its records or its objects.
    #[error(transparent)]
    Store(#[from] phony_core::Error),

    /// The database.
    #[error(transparent)]
    Postgres(#[from] phony_postgres::Error),
}

impl Error {
    /// Whether another snapshot already holds the name asked for.
    pub fn is_name_taken(&self) -> bool {
        matches!(self, Error::Store(phony_core::Error::AlreadyExists { .. }))
    }
}

/// The engine's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
