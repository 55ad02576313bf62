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
