//! The one error type of phony-postgres.

use std::fmt;

/// A session that holds a lock a restore needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingSession {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
}

impl fmt::Display for BlockingSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let app = if self.application_name.is_empty() {
            "-"
        } else {
            &self.application_name
        };
        write!(f, "pid {} ({}, {})", self.pid, app, self.state)
    }
}

/// What can go wrong talking to PostgreSQL, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the login. `code`: the server's
    /// SQLSTATE, when it answered (`28P01` a wrong password, `3D000` no such database).
    #[error("connecting to {target}: {message}")]
    Connect {
        target: String,
        message: String,
        code: Option<String>,
    },

    /// A statement failed; `message` is the server's (or driver's) text, `code` the
    /// server's SQLSTATE (`None`: the failure was not the server's answer).
    #[error("{context}: {message}")]
    Postgres {
        context: String,
        message: String,
        code: Option<String>,
    },

    /// Other sessions hold locks the restore needs.
    #[error(
        "could not lock {database} within {timeout}: blocked by {}",
        sessions.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
    )]
    Locked {
        database: String,
        timeout: String,
        sessions: Vec<BlockingSession>,
    },

    /// The database holds large objects, which a snapshot does not capture.
    #[error(
        "the database holds {count} large object(s) (pg_largeobject), which snapshots do not capture and restores leave as they are"
    )]
    LargeObjects { count: i64 },
    /// A row-level security policy applies to the role on `table`: it would see (and a
    /// snapshot would hold, a restore would rewrite) only the rows the policy shows.
    #[error(
        "{context}: row-level security applies to this role on table {table}, so it cannot read every row; connect as a role with BYPASSRLS or a superuser (or as the table's owner, if the table is not FORCE ROW LEVEL SECURITY)"
    )]
    RowSecurity { context: String, table: String },

    /// A `SQL_ASCII` database holds bytes in `table` that are not UTF-8, which the server
    /// will not send to a UTF-8 session: phony keeps rows as UTF-8 text.
    #[error(
        "table {table} holds text that is not valid UTF-8 (the database's encoding is SQL_ASCII, which stores any bytes); phony keeps rows as UTF-8, so convert that text (or the database) to UTF-8 first"
    )]
    NotUtf8 { table: String },
    /// The server's lock table (shared by all sessions) cannot hold the locks of one
    /// transaction over every relation of the database.
    #[error(
        "the server's lock table is too small for one transaction over this database's {relations} relations: it holds max_locks_per_transaction {per_transaction} × (max_connections {connections} + max_prepared_transactions {prepared}) = {} locks, shared by all sessions; set max_locks_per_transaction = {suggested} in postgresql.conf and restart the server",
        per_transaction * (connections + prepared)
    )]
    LockTable {
        relations: u64,
        per_transaction: u64,
        connections: u64,
        prepared: u64,
        /// A `max_locks_per_transaction` that would do.
        suggested: u64,
    },

    /// pg_dump is missing, too old or failed.
    #[error("{0}")]
    PgDump(String),

    /// The connection string is malformed.
    #[error("invalid connection string: {0}")]
    InvalidTarget(String),

    /// A diff cannot be written as a SQL patch.
    #[error("{0}")]
    Patch(String),

    /// The store failed.
    #[error(transparent)]
    Store(#[from] phony_core::Error),

    /// Masking rules that do not fit the database.
    #[error("{0}")]
    Mask(String),

    /// A background task failed.
    #[error("{0}")]
    Internal(String),

    /// The restore was asked to stop before its commit (see `RestoreOptions::stop`) and
    /// rolled back: nothing changed.
    #[error("stopped before its commit: nothing changed")]
    Cancelled,
}

impl Error {
    /// The server's SQLSTATE for a statement or login it refused (`"23505"`, `"28P01"` …).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Postgres { code, .. } | Error::Connect { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether a restore that failed with this error may nevertheless have committed: the
    /// commit itself failed (the connection may have dropped after the server committed)
    /// or the restore's task died. Every other error of a restore leaves the database as
    /// it was.
    pub fn may_have_committed(&self) -> bool {
        match self {
            Error::Postgres { context, .. } => context == COMMITTING,
            Error::Internal(message) => message.starts_with(TASK_FAILED),
            _ => false,
        }
    }
}

impl From<phony_core::merge::MergeError> for Error {
    fn from(e: phony_core::merge::MergeError) -> Self {
        match e {
            phony_core::merge::MergeError::Chunker(e) => Error::Store(e),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// The context of a failed commit (see [`Error::may_have_committed`]).
pub(crate) const COMMITTING: &str = "committing the restore";

/// How a failed task's error starts (see [`Error::may_have_committed`]).
pub const TASK_FAILED: &str = "the restore task failed";

/// Result alias of phony-postgres.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The readable text of a driver error: the server's message, detail and hint when there
/// is one, the driver's chain of causes otherwise.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = db.message().to_owned();
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" ({})", detail.replace('\n', "; ")));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("; hint: {}", hint.replace('\n', " ")));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The SQLSTATE of a driver error, when the server answered with one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

/// Wraps a driver error with a verb-phrase context.
pub fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |e| match row_security_table(&e) {
        Some(table) => Error::RowSecurity { context, table },
        None => Error::Postgres {
            context,
            message: describe(&e),
            code: sqlstate(&e),
        },
    }
}

/// The table of a "query would be affected by row-level security policy for table …"
/// refusal (what `row_security = off` answers where a policy would filter rows).
fn row_security_table(e: &tokio_postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    if db.code() != &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
        return None;
    }
    let name = db
        .message()
        .strip_prefix("query would be affected by row-level security policy for table ")?;
    Some(name.trim_matches('"').to_owned())
}
