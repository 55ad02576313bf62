//! The one error type of phony-testkit.

use std::path::PathBuf;

/// What can go wrong preparing or resetting a test database, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server or the baseline database could not be reached.
    #[error("the baseline database {target} is unreachable")]
    Unreachable {
        target: String,
        #[source]
        source: phony_postgres::Error,
    },

    /// A migration (or the SQL file) failed; nothing after it ran.
    #[error("migration {} failed: {message}", file.display())]
    Migration { file: PathBuf, message: String },

    /// A migrations directory or SQL file could not be read.
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A test changed the schema and the kit was set up with
    /// [`SchemaChanges::Fail`](crate::SchemaChanges::Fail). The database was still reset.
    #[error(
        "the test changed the schema of {database} (the database was reset to the baseline, schema included); \
         tests run under SchemaChanges::Fail must not run DDL"
    )]
    SchemaChanged { database: String },

    /// The database was left in the middle of a test by a process that died, so its state
    /// is not the baseline and no baseline to reset it to is known.
    #[error(
        "{database} was left dirty by a test process that died ({detail}); \
         restore it to its clean state, then run `DELETE FROM phony.testkit_lease`"
    )]
    LeftDirty { database: String, detail: String },

    /// An earlier reset of this database failed, so it is not handed out again.
    #[error("{database} could not be reset after an earlier test: {message}")]
    Poisoned { database: String, message: String },

    /// The throwaway cluster could not be started.
    #[error("starting a throwaway PostgreSQL cluster")]
    Cluster(#[source] std::io::Error),

    /// Capture, restore or a statement failed.
    #[error(transparent)]
    Postgres(#[from] phony_postgres::Error),

    /// The lifecycle API failed (taking the baseline snapshot).
    #[error(transparent)]
    Engine(phony_engine::Error),

    /// The in-memory store failed.
    #[error(transparent)]
    Store(#[from] phony_core::Error),

    /// The setup is invalid (a bad URL, a missing directory …).
    #[error("{0}")]
    Invalid(String),

    /// The background worker that owns the kit's connections is gone.
    #[error("the testkit's background worker failed: {0}")]
    Internal(String),
}

impl Error {
    /// An engine error, with the database's own errors kept as [`Error::Postgres`].
    pub(crate) fn from_engine(e: phony_engine::Error) -> Self {
        match e {
            phony_engine::Error::Capture { source, .. } | phony_engine::Error::Postgres(source) => {
                Error::Postgres(source)
            }
            phony_engine::Error::Store(source) => Error::Store(source),
            e => Error::Engine(e),
        }
    }
}

/// Result alias of phony-testkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn pg(context: &str, e: tokio_postgres::Error) -> Error {
    Error::Postgres(phony_postgres::Error::Postgres {
        context: context.to_owned(),
        message: phony_postgres::error::describe(&e),
        code: phony_postgres::error::sqlstate(&e),
    })
}
