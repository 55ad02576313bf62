//! The integration tests of phony-object-store, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod hostile;
mod local;
mod requests;
mod s3;
