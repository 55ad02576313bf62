#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - [`Testkit`], [`Setup`], [`Strategy`], [`SchemaChanges`]: the kit and its recipe.
//! - [`TestDatabase`]: the guard a test holds; [`ResetReport`]: what a reset did.
//! - [`cluster`]: [`TempCluster`], a throwaway server from the installed binaries.
//! - [`server`]: which server a suite uses ([`default_server_url`]).
//! - [`migrate`]: the order in which migration files apply.

pub mod cluster;
mod error;
mod guard;
mod kit;
pub mod migrate;
mod runtime;
mod schema;
pub mod server;
mod setup;
mod slot;

pub use cluster::{ClusterOptions, ServerTls, TempCluster};
pub use error::{Error, Result};
pub use guard::TestDatabase;
pub use kit::{ResetReport, Testkit};
pub use server::{default_server_url, shared_cluster};
pub use setup::{SchemaChanges, Setup, Strategy};
