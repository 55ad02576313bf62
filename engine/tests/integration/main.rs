//! phony-engine against real stores (a directory on disk).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cancel;
mod diff;
mod errors;
mod golden;
mod live;
mod maintenance;
mod names;
mod pin;
mod prune;
mod restore;
mod sync;

use phony_core::SnapshotRecord;

/// A fixed record, as a store holds it.
pub const RECORD: &str = include_str!("../golden/record.json");

pub fn record() -> SnapshotRecord {
    SnapshotRecord::decode("record.json", RECORD.as_bytes()).unwrap()
}
