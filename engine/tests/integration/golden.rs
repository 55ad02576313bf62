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

/// A record written with the tool's version shows it; one written before versions were
/// recorded (the golden record has none) reads unchanged and shows none.
#[test]
fn a_snapshot_with_the_version_that_took_it() {
    let old = record();
    assert_eq!(old.tool_version, None);
    assert!(!crate::RECORD.contains("tool_version"));
    let mut r = old.clone();
    r.tool_version = Some("0.1.0".into());
    pinned(
        &SnapshotView::of(&r),
        include_str!("../golden/snapshot-versioned.json"),
    );
    let written = String::from_utf8(r.encode()).unwrap();
    assert!(written.contains("\"tool_version\": \"0.1.0\""), "{written}");
    let read = phony_core::SnapshotRecord::decode("r", written.as_bytes()).unwrap();
    assert_eq!(read, r);
    // Written back without a version, an old record stays as it was.
    assert!(!String::from_utf8(old.encode())
        .unwrap()
        .contains("tool_version"));
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
