//! # phony-testkit
//!
//! Clean PostgreSQL databases for tests.
//!
//! - [`TempCluster`]: a throwaway PostgreSQL server from the installed binaries (initdb +
//!   pg_ctl on a temporary directory and a free port), for suites that have no server.

pub mod cluster;

pub use cluster::{ClusterOptions, TempCluster};
