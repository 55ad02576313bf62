//! The errors of starting and running the server (requests answer [`crate::problem::Problem`]s).

/// What stopped the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or wrong.
    #[error("{0}")]
    Config(String),

    /// The metadata database refused or could not be reached.
    #[error("{doing}")]
    Meta {
        doing: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// A file of the server's own.
    #[error("{doing}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn meta(doing: &'static str, source: tokio_postgres::Error) -> Self {
        Error::Meta { doing, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
