//! The report types: one stable JSON shape per object, which the command line's `--json`
//! prints and the REST service returns. Golden tests (`tests/integration/golden.rs`) pin
//! the shapes.

use phony_core::{RootManifest, SequenceState, SnapshotRecord};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

/// A snapshot as every command shows it in JSON.
#[derive(Debug, Serialize)]
pub struct SnapshotView<'a> {
    pub id: String,
    pub name: Option<&'a str>,
    pub created_at: String,
    pub origin: phony_core::Origin,
    pub pinned: bool,
    /// Free labels (key → value), e.g. a sync's number or a wrapped command's exit status.
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub database: &'a str,
    pub server_version: &'a str,
    pub tables: u64,
    pub rows: u64,
    pub sequences: u64,
    /// Plain bytes of all rows.
    pub bytes: u64,
    /// Stored bytes of everything the snapshot references.
    pub stored_bytes: u64,
    /// Stored bytes this snapshot added to the store.
    pub new_bytes: u64,
    pub duration_ms: u64,
    pub root: String,
    /// The version of phony that took it (absent: taken before versions were recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<&'a str>,
}

impl<'a> SnapshotView<'a> {
    pub fn of(r: &'a SnapshotRecord) -> Self {
        SnapshotView {
            id: r.id.to_string(),
            name: r.name.as_ref().map(|n| n.as_str()),
            created_at: r.created_at.format(&Rfc3339).unwrap_or_default(),
            origin: r.origin,
            pinned: r.pinned,
            labels: &r.labels,
            database: &r.source.database,
            server_version: &r.source.server_version,
            tables: r.stats.tables,
            rows: r.stats.rows,
            sequences: r.stats.sequences,
            bytes: r.stats.bytes,
            stored_bytes: r.stats.stored_bytes,
            new_bytes: r.stats.new_bytes,
            duration_ms: r.stats.duration_ms,
            root: r.root.to_hex(),
            tool_version: r.tool_version.as_deref(),
        }
    }
}

/// A table of a snapshot, for `show`.
#[derive(Debug, Serialize)]
pub struct TableView<'a> {
    pub schema: &'a str,
    pub name: &'a str,
    pub rows: u64,
    pub bytes: u64,
    pub key: &'a [String],
}

/// `snapshot list`: every snapshot, newest first.
#[derive(Debug, Serialize)]
pub struct SnapshotList<'a> {
    pub snapshots: Vec<SnapshotView<'a>>,
}

impl<'a> SnapshotList<'a> {
    pub fn of(records: &'a [SnapshotRecord]) -> Self {
        SnapshotList {
            snapshots: records.iter().map(SnapshotView::of).collect(),
        }
    }
}

/// `snapshot show`: a snapshot with its tables and sequences.
#[derive(Debug, Serialize)]
pub struct SnapshotShow<'a> {
    #[serde(flatten)]
    pub snapshot: SnapshotView<'a>,
    pub table_list: Vec<TableView<'a>>,
    pub sequence_list: &'a [SequenceState],
}

impl<'a> SnapshotShow<'a> {
    pub fn of(record: &'a SnapshotRecord, root: &'a RootManifest) -> Self {
        SnapshotShow {
            snapshot: SnapshotView::of(record),
            table_list: root
                .tables
                .iter()
                .map(|t| TableView {
                    schema: &t.table.schema,
                    name: &t.table.name,
                    rows: t.content.rows,
                    bytes: t.content.bytes,
                    key: &t.key,
                })
                .collect(),
            sequence_list: &root.sequences,
        }
    }
}

/// `snapshot delete`: the id (or damaged record's key) removed.
#[derive(Debug, Serialize)]
pub struct Deleted<'a> {
    pub deleted: &'a str,
}

/// What `snapshot restore` reports in JSON.
#[derive(Debug, Serialize)]
pub struct RestoreView<'a> {
    pub id: String,
    pub name: Option<&'a str>,
    pub database: &'a str,
    pub created_database: bool,
    /// "delta" (only differing rows rewritten) or "full" (every schema replaced).
    pub path: &'static str,
    pub full_reason: Option<&'a str>,
    pub dry_run: bool,
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
    pub sequences: u64,
    pub changes: Vec<ChangeView<'a>>,
    /// Full path, when the schema differed: the objects it drops (`dropped`), creates
    /// (`added`) or replaces (`altered`), as `diff` shows them.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub schema_changes: &'a [phony_core::diff::schema::SchemaChange],
    pub terminated_sessions: u64,
    /// Without tracking: the tables and chunks the capture's point in time spared from
    /// comparison (absent when it was not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_ages: Option<RowAgesView>,
    pub duration_ms: u64,
    /// The automatic snapshot of the state before the restore, if one was taken.
    pub safety_snapshot: Option<String>,
}

/// What rows' ages spared a delta restore without tracking.
#[derive(Debug, Serialize)]
pub struct RowAgesView {
    pub tables: u64,
    pub unchanged_tables: u64,
    pub content_tables: u64,
    pub chunks: u64,
    pub compared_chunks: u64,
    pub summed_chunks: u64,
}

/// One table a delta restore rewrote.
#[derive(Debug, Serialize)]
pub struct ChangeView<'a> {
    pub schema: &'a str,
    pub name: &'a str,
    pub deleted: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Why the table was reloaded whole instead of rewritten row by row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reloaded: Option<&'a str>,
}

impl<'a> RestoreView<'a> {
    pub fn of(
        r: &'a SnapshotRecord,
        database: &'a str,
        created: bool,
        report: &'a phony_postgres::RestoreReport,
    ) -> Self {
        RestoreView {
            id: r.id.to_string(),
            name: r.name.as_ref().map(|n| n.as_str()),
            database,
            created_database: created,
            path: report.path.as_str(),
            full_reason: report.full_reason.as_deref(),
            dry_run: report.dry_run,
            tables: report.tables,
            rows: report.rows,
            bytes: report.bytes,
            sequences: report.sequences,
            changes: report
                .changes
                .iter()
                .map(|c| ChangeView {
                    schema: &c.table.schema,
                    name: &c.table.name,
                    deleted: c.deleted,
                    inserted: c.inserted,
                    updated: c.updated,
                    reloaded: c.reloaded.as_deref(),
                })
                .collect(),
            schema_changes: &report.schema_changes,
            terminated_sessions: report.terminated,
            row_ages: report.row_ages.map(|a| RowAgesView {
                tables: a.tables,
                unchanged_tables: a.unchanged_tables,
                content_tables: a.content_tables,
                chunks: a.chunks,
                compared_chunks: a.compared_chunks,
                summed_chunks: a.summed_chunks,
            }),
            duration_ms: report.duration.as_millis() as u64,
            safety_snapshot: None,
        }
    }
}

/// `snapshot prune`: the plan, what was removed, and what became of the blobs.
#[derive(Debug, Serialize)]
pub struct PruneView<'a> {
    pub dry_run: bool,
    pub policy: phony_core::RetentionPolicy,
    pub snapshots: Vec<PlanView<'a>>,
    pub removed: usize,
    pub kept: usize,
    pub gc: &'a crate::PruneGc,
}

/// One snapshot in a prune's plan.
#[derive(Debug, Serialize)]
pub struct PlanView<'a> {
    pub id: String,
    pub name: Option<&'a str>,
    pub created_at: String,
    /// "remove" or "keep".
    pub action: &'static str,
    /// Why it is kept (empty: removed).
    pub keep: &'a [phony_core::retention::KeepReason],
}

impl<'a> PruneView<'a> {
    pub fn of(p: &'a crate::Pruned) -> Self {
        PruneView {
            dry_run: p.dry_run,
            policy: p.policy,
            snapshots: p
                .plan
                .entries
                .iter()
                .map(|e| PlanView {
                    id: e.id.to_string(),
                    name: p
                        .records
                        .iter()
                        .find(|r| r.id == e.id)
                        .and_then(|r| r.name.as_ref().map(|n| n.as_str())),
                    created_at: e.created_at.format(&Rfc3339).unwrap_or_default(),
                    action: if e.removed() { "remove" } else { "keep" },
                    keep: &e.keep,
                })
                .collect(),
            removed: p.removed,
            kept: p.records.len().saturating_sub(p.removed),
            gc: &p.gc,
        }
    }
}

/// One side of a diff, as JSON shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DiffSide {
    Snapshot { id: String, name: Option<String> },
    Database { database: String, live: bool },
}

impl DiffSide {
    pub fn of(r: &SnapshotRecord) -> Self {
        DiffSide::Snapshot {
            id: r.id.to_string(),
            name: r.name.as_ref().map(|n| n.as_str().to_owned()),
        }
    }

    /// For people: "snap_… (name)", or "database app (now)".
    pub fn label(&self) -> String {
        match self {
            DiffSide::Snapshot { id, name: Some(n) } => format!("{id} ({n})"),
            DiffSide::Snapshot { id, name: None } => id.clone(),
            DiffSide::Database { database, .. } => format!("database {database} (now)"),
        }
    }
}

/// `snapshot diff`: what changed from one side to the other.
#[derive(Debug, Serialize)]
pub struct DiffDocument {
    pub from: DiffSide,
    pub to: DiffSide,
    pub identical: bool,
    #[serde(flatten)]
    pub diff: phony_core::diff::Diff,
    /// The `to` side's manifest, for the SQL patch.
    #[serde(skip)]
    pub(crate) to_manifest: RootManifest,
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A fixed record, as a store holds it.
    pub(crate) const RECORD: &str = r#"{
  "format": 1,
  "id": "snap_0123456789ab",
  "name": "clean-state",
  "created_at": "2026-11-02T09:30:00Z",
  "root": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
  "pinned": true,
  "origin": "manual",
  "labels": { "team": "billing" },
  "source": { "database": "app", "server_version": "15.14" },
  "stats": {
    "tables": 2, "rows": 1200, "sequences": 1, "bytes": 65536,
    "stored_bytes": 20480, "new_bytes": 4096, "blobs": 5, "new_blobs": 2,
    "duration_ms": 321
  }
}"#;

    pub(crate) fn record() -> SnapshotRecord {
        SnapshotRecord::decode("test", RECORD.as_bytes()).unwrap()
    }

    #[test]
    fn a_snapshot_shows_its_id_name_time_and_sizes() {
        let r = record();
        let v = serde_json::to_value(SnapshotView::of(&r)).unwrap();
        assert_eq!(v["id"], "snap_0123456789ab");
        assert_eq!(v["name"], "clean-state");
        assert_eq!(v["created_at"], "2026-11-02T09:30:00Z");
        assert_eq!(v["origin"], "manual");
        assert_eq!(v["stored_bytes"], 20480);
    }
}
