//! The engine's errors: each variant one a caller can act on.

/// What went wrong in a lifecycle operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No store at the location (nothing was created).
    #[error("no phony store at {location}")]
    NoStore { location: String },

    /// An S3 prefix holds objects but no store: one is not mixed into them.
    #[error("{describe} holds objects ({first} …) but no phony store (no {config_key})")]
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
        source: Box<phony_postgres::Error>,
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

    /// Turning change tracking on or off failed.
    #[error("{doing} {database}")]
    Tracking {
        doing: &'static str,
        database: String,
        #[source]
        source: Box<phony_postgres::Error>,
    },

    /// A pinned snapshot, deleted without force.
    #[error("snapshot {label} is pinned")]
    Pinned { label: String },

    /// The reference names only a record that cannot be read: deleting it needs force.
    #[error("the snapshot record {key} cannot be read ({reason})")]
    DamagedRecord { key: String, reason: String },

    /// The reference matches several records that cannot be read.
    #[error("{reference:?} matches several damaged records: {}", keys.join(", "))]
    SeveralDamaged {
        reference: String,
        keys: Vec<String>,
    },

    /// A prune without a policy, of a store without one.
    #[error("no retention policy: the store has none and none was given")]
    NoPolicy,

    /// A prune whose plan keeps no unpinned snapshot, not confirmed.
    #[error("this prune would remove {}, the undo of the last restore included", removing_what(*removing))]
    ConfirmationRequired { removing: usize },

    /// An export's destination exists and replacing it was not asked for.
    #[error("{target} exists")]
    ExportExists { target: String },

    /// Producing an export's script (reading the store) failed.
    #[error("exporting snapshot {id}")]
    Exporting {
        id: phony_core::SnapshotId,
        #[source]
        source: Box<phony_postgres::Error>,
    },

    /// Writing an export to its destination failed; nothing is left under its name
    /// (a file or an S3 object).
    #[error("writing the export to {target}")]
    ExportWriting {
        target: String,
        #[source]
        source: std::io::Error,
    },

    /// Stopped by its [`crate::Cancel`] before it changed anything.
    #[error("cancelled, nothing changed")]
    Cancelled,

    /// A sync that cannot run (the same database, another major version); nothing ran.
    #[error("{why}")]
    SyncRefused { why: String },

    /// A sync's source could not be reached or read (`source_db` without its password);
    /// the database is unchanged.
    #[error("{doing} {source_db}")]
    SyncSource {
        doing: &'static str,
        source_db: String,
        #[source]
        source: phony_postgres::Error,
    },

    /// Loading a sync's source into the database failed: its transaction rolled back.
    #[error("loading the source into {database} (nothing changed)")]
    SyncLoad {
        database: String,
        #[source]
        source: Box<phony_postgres::Error>,
    },

    /// The sync is done, but the snapshot after it failed.
    #[error("the sync is done, but taking the snapshot after it failed")]
    SyncAfter {
        #[source]
        source: Box<Error>,
    },

    /// The store, its records or its objects.
    #[error(transparent)]
    Store(#[from] phony_core::Error),

    /// The database.
    #[error(transparent)]
    Postgres(#[from] phony_postgres::Error),
}

/// What kind of failure an [`Error`] is, for a caller to branch on (a service maps kinds
/// to HTTP statuses, the command line to exit codes and hints). The error itself keeps the
/// message and its causes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No snapshot (or store, or stored object) by that id, prefix or name.
    NotFound,
    /// An id prefix matches several snapshots.
    AmbiguousId,
    /// Another snapshot already has the name.
    NameTaken,
    /// Others hold locks the operation needs: `holders` describes each
    /// (`pid 42 (psql, idle in transaction)`).
    Locked { holders: Vec<String> },
    /// A stored object or record is damaged or missing.
    CorruptStore,
    /// The store (or a record in it) was written by a newer phony.
    NewerFormat,
    /// The store's disk or quota is full.
    StorageFull,
    /// Stopped by its [`crate::Cancel`]; nothing changed.
    Cancelled,
    /// The database could not be reached or refused the login.
    Connection,
    /// A statement failed on the database: `sqlstate` is the server's code when it gave one.
    Database { sqlstate: Option<String> },
    /// The database holds something phony does not snapshot or cannot express (large
    /// objects, rows hidden by row-level security, text that is not UTF-8, a diff that SQL
    /// over rows cannot write).
    SchemaUnsupported,
    /// A restore in place of a snapshot taken of another database, not asked for.
    OtherDatabase,
    /// The request would remove what is normally kept (every unpinned snapshot, a pinned
    /// one, a record that cannot be checked): it must say it means it (force, confirm).
    ConfirmationRequired,
    /// Input that does not have the required form (a name, a URL, a location).
    Invalid,
    /// Anything else (the store could not be read or written, a task failed …).
    Other,
}

impl Error {
    /// Whether another snapshot already holds the name asked for.
    pub fn is_name_taken(&self) -> bool {
        self.kind() == ErrorKind::NameTaken
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoStore { .. } | Error::Vanished { .. } => ErrorKind::NotFound,
            Error::ForeignObjects { .. } | Error::NotAStore { .. } => ErrorKind::Invalid,
            Error::Storage { source, .. }
            | Error::Rewriting { source, .. }
            | Error::ReadingSnapshot { source, .. }
            | Error::Store(source) => core_kind(source),
            Error::Capture { source, .. }
            | Error::Reading { source, .. }
            | Error::Postgres(source) => postgres_kind(source),
            Error::Restore { source, .. }
            | Error::Tracking { source, .. }
            | Error::SyncLoad { source, .. }
            | Error::Exporting { source, .. } => postgres_kind(source),
            Error::SyncSource { source, .. } => postgres_kind(source),
            Error::SyncRefused { .. } => ErrorKind::Invalid,
            Error::SyncAfter { source } => source.kind(),
            Error::OtherDatabase { .. } => ErrorKind::OtherDatabase,
            Error::ExportExists { .. } => ErrorKind::ConfirmationRequired,
            Error::ExportWriting { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                ErrorKind::StorageFull
            }
            Error::ExportWriting { .. } => ErrorKind::Other,
            Error::SafetySnapshot { source }
            | Error::Retention { source, .. }
            | Error::Deleting { source, .. } => source.kind(),
            Error::Cancelled => ErrorKind::Cancelled,
            Error::NoPolicy => ErrorKind::Invalid,
            Error::Pinned { .. } | Error::DamagedRecord { .. } => ErrorKind::ConfirmationRequired,
            Error::SeveralDamaged { .. } => ErrorKind::AmbiguousId,
            Error::ConfirmationRequired { .. } => ErrorKind::ConfirmationRequired,
        }
    }

    /// The server's SQLSTATE, when the failure is a statement or login the server refused.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Capture { source, .. }
            | Error::Reading { source, .. }
            | Error::Postgres(source) => source.sqlstate(),
            Error::Restore { source, .. }
            | Error::Tracking { source, .. }
            | Error::SyncLoad { source, .. } => source.sqlstate(),
            Error::SyncSource { source, .. } => source.sqlstate(),
            Error::SafetySnapshot { source }
            | Error::SyncAfter { source }
            | Error::Retention { source, .. }
            | Error::Deleting { source, .. } => source.sqlstate(),
            _ => None,
        }
    }
}

fn core_kind(e: &phony_core::Error) -> ErrorKind {
    use phony_core::Error as C;
    match e {
        C::NotFound { .. } | C::SnapshotNotFound { .. } | C::PrefixTooShort { .. } => {
            ErrorKind::NotFound
        }
        C::AlreadyExists { .. } => ErrorKind::NameTaken,
        C::Ambiguous { .. } => ErrorKind::AmbiguousId,
        C::Invalid(_) => ErrorKind::Invalid,
        C::Corrupt { .. }
        | C::BaseMissing { .. }
        | C::CorruptRecord { .. }
        | C::BadObject { .. }
        | C::UnreadableRecords { .. } => ErrorKind::CorruptStore,
        C::UnsupportedFormat { .. } | C::RecordFormat { .. } => ErrorKind::NewerFormat,
        C::Backend { .. } if e.is_storage_full() => ErrorKind::StorageFull,
        _ => ErrorKind::Other,
    }
}

fn postgres_kind(e: &phony_postgres::Error) -> ErrorKind {
    use phony_postgres::Error as P;
    match e {
        P::Connect { .. } => ErrorKind::Connection,
        P::Postgres { code, .. } => ErrorKind::Database {
            sqlstate: code.clone(),
        },
        P::Locked { sessions, .. } => ErrorKind::Locked {
            holders: sessions.iter().map(|s| s.to_string()).collect(),
        },
        P::LargeObjects { .. } | P::RowSecurity { .. } | P::NotUtf8 { .. } | P::Patch(_) => {
            ErrorKind::SchemaUnsupported
        }
        P::InvalidTarget(_) | P::Mask(_) => ErrorKind::Invalid,
        P::Store(e) => core_kind(e),
        P::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Other,
    }
}

fn removing_what(removing: usize) -> String {
    if removing == 1 {
        "the only snapshot that is not pinned".to_owned()
    } else {
        format!("all {removing} snapshots that are not pinned")
    }
}

/// The engine's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_stays_small_enough_to_return() {
        // clippy's result_large_err warns callers from 128 bytes on.
        assert!(std::mem::size_of::<super::Error>() < 128);
    }
}
