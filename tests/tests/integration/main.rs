//! Cross-crate tests against the real PostgreSQL: capture and restore are exact, atomic,
//! consistent under concurrent writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod consistency;
mod diff;
mod roundtrip;
mod tracking;
