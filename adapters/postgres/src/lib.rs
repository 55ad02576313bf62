//! # phony-postgres
//!
//! phony's PostgreSQL adapter, on tokio-postgres.
//!
//! ## Layout
//!
//! In dependency order: a module imports only from modules listed before it, so no two
//! modules import each other, directly or around a circle. Reading lives under `read/`,
//! writing under `write/`; their public modules are re-exported here.
//!
//! Foundation and connecting:
//! - [`error`]: the adapter's error type; `sql`: quoting; `phase`: the steps reported to a
//!   caller; `locks`: who holds the locks a statement waits for.
//! - [`conninfo`]: libpq connection strings and URLs, parsed; [`tls`]: TLS with libpq's
//!   `sslmode` meanings; [`connect`]: connection targets, libpq's environment defaults (or
//!   none), password-free display; [`session`]: a connection that keeps its prepared
//!   statements, for repeated restores.
//! - [`database`]: the database's encoding, locale and settings, kept with each snapshot,
//!   and whether it exists; [`identity`]: whether a database is the one a snapshot was
//!   taken of.
//!
//! The catalog and the shared helpers:
//! - [`catalog`] (`read/`): tables, columns, keys, sequences, from the system catalogs;
//!   [`schema_dump`] (`read/`): schema DDL through a matching pg_dump; [`mask`]: masking
//!   rules checked against the catalog.
//! - [`tracking`]: triggers that log changed rows, so restores and snapshots read only those.
//! - `keys`: where a table's key sits in a row, a chunk's reference and first key, the
//!   chunks the log's keys fall in, the rows of a key range that differ.
//!
//! Reading (`read/`):
//! - `chunk_stream`: a table's rows as a stream of chunks, and a snapshot's chunks decoded.
//! - `capture::options`: what a capture is asked to do, and what it has stored so far.
//! - `incremental`: the rows the change log names, merged into the base snapshot's chunks
//!   (the merge itself is [`phony_core::merge`]).
//! - `xmin`: row ages, which rows a restore without change tracking has to compare.
//! - [`capture`]: one consistent, online read of a database into a phony store.
//!
//! Writing (`write/`):
//! - `restore::plan`: what a restore is asked to do, what it reports, the schema's verdict.
//! - `rewrite`: one table rewritten to the snapshot's rows, only those that differ.
//! - `restore::full_path` (every schema replaced), `restore::delta_path` (only the rows
//!   that differ), `restore::schema_path` (after a migration: only the schema objects that
//!   differ, and the rows), and [`restore`]: an atomic rewrite of a database into a
//!   snapshot's state.
//! - [`fresh`]: a restore into a database that does not exist yet.
//! - [`export`]: a snapshot as a plain SQL script that psql loads into an empty database.
//! - [`patch`]: a diff between two snapshots as a SQL patch.
//!
//! Reading the result:
//! - [`fingerprint`]: a database's state, comparable regardless of physical row order.
//!
//! Everything phony installs lives in the schema [`catalog::PHONY_SCHEMA`], which is never
//! captured, restored or fingerprinted.

pub mod connect;
pub mod conninfo;
pub mod database;
pub mod error;
pub mod fingerprint;
pub mod identity;
mod keys;
mod locks;
pub mod mask;
mod phase;
mod read;
pub mod session;
mod sql;
pub mod tls;
pub mod tracking;
mod write;

pub use read::{capture, catalog, schema_dump};
pub use write::{export, fresh, patch, restore};

pub use capture::{capture, CaptureOptions, Captured, Progress, TableMode};
pub use connect::{ConnectionTarget, Environment};
pub use conninfo::SslMode;
pub use error::{BlockingSession, Error, Result};
pub use fingerprint::Fingerprint;
pub use fresh::{database_exists, restore_into_new};
pub use identity::other_database;
pub use mask::MaskPlan;
pub use phase::{Phase, PhaseReport};
pub use restore::{
    ensure_database, restore, restore_in, RestoreOptions, RestorePath, RestoreReport, RowAges,
    Stop, TableRewrite,
};
pub use session::Session;
