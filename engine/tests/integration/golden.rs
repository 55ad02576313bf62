//! The JSON of the report types, pinned against committed text: a change to a shape shows
//! up here as a reviewed diff of `tests/golden/*.json`.

use std::time::Duration;

use phony_engine::report::{Deleted, RestoreView, SnapshotList, SnapshotView};
use phony_postgres::{RestorePath, RestoreReport};
use serde::Serialize;

use crate::record;

/// Asserts that `value` prints (as the command line's `--json` does) exactly as `expected`.
fn pinned<T: Serialize>(value: &T, expected: &str) {
    let printed = serde_json::to_string_pretty(value).unwrap();
    assert_eq!(printed, expected.trim_end(), "the JSON shape changed");
}

#[test]
fn a_snapshot() {
    let r = record();
    pinned(
        &SnapshotView::of(&r),
        include_str!("../golden/snapshot.json"),
    );
}

#[test]
fn a_list() {
    let records = [record()];
    pinned(
        &SnapshotList::of(&records),
        include_str!("../golden/list.json"),
    );
}

#[test]
fn a_deletion() {
    pinned(
        &Deleted {
            deleted: "snap_0123456789ab",
        },
        include_str!("../golden/deleted.json"),
    );
}

#[test]
fn a_restore() {
    let r = record();
    let report = RestoreReport {
        path: RestorePath::Full,
        full_reason: Some("the schema differs".into()),
        tables: 2,
        rows: 1200,
        bytes: 65536,
        sequences: 1,
        terminated: 0,
        duration: Duration::from_millis(250),
        ..RestoreReport::default()
    };
    let mut view = RestoreView::of(&r, "app", false, &report);
    view.safety_snapshot = Some("snap_ba9876543210".into());
    pinned(&view, include_str!("../golden/restore.json"));
}
