//! # phony-postgres
//!
//! phony's PostgreSQL adapter, on tokio-postgres.
//!
//! - [`connect`]: connection strings, libpq's environment defaults (or none), password-free display.
//! - [`tls`]: TLS with libpq's `sslmode` meanings.
//! - [`database`]: the database's encoding, locale and settings, kept with each snapshot.
//! - [`capture`]: one consistent, online read of a database into a phony store.
//! - [`restore`]: an atomic rewrite of a database into a snapshot's state.
//! - [`fingerprint`]: a database's state, comparable regardless of physical row order.
//! - [`schema_dump`]: schema DDL through a matching pg_dump.
//! - [`identity`]: whether a database is the one a snapshot was taken of.
//! - [`session`]: a connection that keeps its prepared statements, for repeated restores.
//! - [`tracking`]: triggers that log changed rows, so restores and snapshots read only those.
//! - [`patch`]: a diff between two snapshots as a SQL patch.
//! - [`export`]: a snapshot as a plain SQL script that psql loads into an empty database.
//!
//! Everything phony installs lives in the schema [`catalog::PHONY_SCHEMA`], which is never
//! captured, restored or fingerprinted.

// Layers, each importing only from the ones above it (no import circles):
// foundation (error, sql, phase, locks), connecting (conninfo, tls, connect, session),
// the database (database, identity), read::catalog and read::schema_dump, tracking, keys,
// read (chunk streams, capture, incremental, row ages), write (rewrite, restore, fresh,
// export, patch), and what reads both (fingerprint, mask).
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
    TableRewrite,
};
pub use session::Session;
