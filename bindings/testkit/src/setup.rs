//! How a kit finds or builds its baseline, and how it shares it between tests.

use std::path::PathBuf;
use std::time::Duration;

/// Where the baseline comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// An existing database; its state when the kit starts is the baseline.
    Database(String),
    /// A database the kit creates and fills with this SQL text.
    Sql(String),
    /// A database the kit creates and fills from one SQL file.
    SqlFile(PathBuf),
    /// A database the kit creates and migrates with every `*.sql` file in a directory.
    Migrations(PathBuf),
}

/// How tests share the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One database; tests take turns on it and each is reset before the next one gets
    /// it. Nothing to copy up front; tests of the binary that use the kit run one at a
    /// time, and so do other processes using the same database.
    Serial,
    /// Up to `size` copies of the baseline (`CREATE DATABASE … TEMPLATE`, made as tests
    /// need them), each handed to one test at a time and reset after it in the
    /// background, while the next test runs on another copy. Costs one copy of the
    /// database per slot, made once per process.
    Pool { size: usize },
}

impl Strategy {
    /// A pool as large as the number of tests cargo runs at once (`RUST_TEST_THREADS`, or
    /// the number of CPUs).
    pub fn pool() -> Self {
        let threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(2);
        Strategy::Pool {
            size: threads.max(1),
        }
    }
}

/// What to do when a test changed the schema (ran DDL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChanges {
    /// Reset schema and data together, by phony's full path: correct, but it costs a
    /// reload of the whole database rather than of what the test changed.
    Restore,
    /// Reset by the full path all the same (so later tests are unaffected), then fail the
    /// test that changed the schema: [`TestDatabase::finish`](crate::TestDatabase::finish)
    /// returns [`Error::SchemaChanged`](crate::Error::SchemaChanged), and dropping the
    /// guard panics with that message (unless the test is already panicking).
    Fail,
    /// Do not look (saves one catalog query per test). The reset is still exact: phony's
    /// restore compares schemas itself.
    Ignore,
}

/// The recipe of a [`Testkit`](crate::Testkit): where the baseline comes from, which server
/// to use, and how tests share it.
#[derive(Debug, Clone)]
pub struct Setup {
    pub(crate) source: Source,
    pub(crate) server: Option<String>,
    pub(crate) strategy: Strategy,
    pub(crate) schema_changes: SchemaChanges,
    pub(crate) terminate_sessions: bool,
    pub(crate) lock_timeout: Duration,
    pub(crate) tracking: bool,
}

impl Setup {
    fn with(source: Source) -> Self {
        Setup {
            source,
            server: None,
            strategy: Strategy::pool(),
            schema_changes: SchemaChanges::Restore,
            terminate_sessions: true,
            lock_timeout: Duration::from_secs(5),
            tracking: true,
        }
    }

    /// An existing database (a URL or key/value connection string): its state when the
    /// first test starts is the baseline, and every test gets that state.
    pub fn database(url: impl Into<String>) -> Self {
        Self::with(Source::Database(url.into()))
    }

    /// Turn phony's change tracking on in the test databases (the default), so that a reset
    /// rewrites just the rows a test changed, from the change log, without reading the
    /// database: milliseconds whatever its size. It needs a superuser (it installs event
    /// triggers) and costs writes a statement-level trigger; without it (or when the role
    /// may not install it), a reset compares the whole database with the baseline.
    pub fn tracking(mut self, on: bool) -> Self {
        self.tracking = on;
        self
    }

    /// A new database filled with `sql` (one or more statements, run in one transaction).
    pub fn sql(sql: impl Into<String>) -> Self {
        Self::with(Source::Sql(sql.into()))
    }

    /// A new database filled by the SQL file at `path`.
    pub fn sql_file(path: impl Into<PathBuf>) -> Self {
        Self::with(Source::SqlFile(path.into()))
    }

    /// A new database migrated with every `*.sql` file of `dir` (not `*.down.sql`), in the
    /// order of their leading number (`0001_init.sql`, `20240102_users.up.sql`), each in
    /// its own transaction.
    pub fn migrations(dir: impl Into<PathBuf>) -> Self {
        Self::with(Source::Migrations(dir.into()))
    }

    /// The server on which to create the database of [`sql`](Self::sql),
    /// [`sql_file`](Self::sql_file) and [`migrations`](Self::migrations). Default:
    /// [`default_server_url`](crate::default_server_url) (`$PHONY_TEST_DATABASE_URL`, the
    /// local server, or a throwaway cluster).
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// How tests share the baseline (default: [`Strategy::pool`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// What to do about a test that ran DDL (default: [`SchemaChanges::Restore`]).
    pub fn schema_changes(mut self, policy: SchemaChanges) -> Self {
        self.schema_changes = policy;
        self
    }

    /// Whether a reset first terminates sessions still connected to the test's database
    /// (default: yes). The test is over, so these are its leftovers (a pool's idle
    /// connections, a transaction a panic left open); without this, a reset waits up to the
    /// lock timeout for them.
    pub fn terminate_sessions(mut self, yes: bool) -> Self {
        self.terminate_sessions = yes;
        self
    }

    /// How long a reset waits for locks held by other sessions (default 5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
}
