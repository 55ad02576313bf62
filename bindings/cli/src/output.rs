//! What commands print: one stable JSON shape per object, and tables for people.

use comfy_table::{presets, Cell, CellAlignment, Table};
use humansize::{format_size, BINARY};
use phony_core::{RootManifest, SnapshotRecord};
use serde::Serialize;

use crate::stdout::outln;

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// "1 row", "2 rows": a count and its noun, singular or plural.
pub fn count<N: TryInto<u64>>(n: N, one: &str, many: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(0);
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn size(bytes: u64) -> String {
    format_size(bytes, BINARY)
}

fn when(r: &SnapshotRecord) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    r.created_at.format(&f).unwrap_or_default()
}

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().map(Cell::new));
    t
}

pub fn snapshot_list(records: &[SnapshotRecord]) -> String {
    if records.is_empty() {
        return "no snapshots yet (take one with `phony snapshot create`)".into();
    }
    let mut t = new_table(&[
        "ID",
        "NAME",
        "DATABASE",
        "CREATED (UTC)",
        "TABLES",
        "ROWS",
        "SIZE",
        "NEW",
        "",
    ]);
    for r in records {
        t.add_row(vec![
            Cell::new(r.id),
            Cell::new(r.name.as_ref().map(|n| n.as_str()).unwrap_or("-")),
            Cell::new(&r.source.database),
            Cell::new(when(r)),
            Cell::new(r.stats.tables).set_alignment(CellAlignment::Right),
            Cell::new(r.stats.rows).set_alignment(CellAlignment::Right),
            Cell::new(size(r.stats.bytes)).set_alignment(CellAlignment::Right),
            Cell::new(size(r.stats.new_bytes)).set_alignment(CellAlignment::Right),
            Cell::new(flags(r)),
        ]);
    }
    t.to_string()
}

fn flags(r: &SnapshotRecord) -> String {
    let mut f = Vec::new();
    if r.pinned {
        f.push("pinned");
    }
    if r.origin != phony_core::Origin::Manual {
        f.push(r.origin.as_str());
    }
    f.join(",")
}

pub fn snapshot_show(r: &SnapshotRecord, root: &RootManifest) -> String {
    let mut out = String::new();
    let line = |k: &str, v: String| format!("{k:<14}{v}\n");
    out += &line("id", r.id.to_string());
    out += &line(
        "name",
        r.name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    out += &line("created", format!("{} UTC", when(r)));
    out += &line("origin", r.origin.to_string());
    out += &line("pinned", if r.pinned { "yes".into() } else { "no".into() });
    out += &line(
        "taken by",
        match &r.tool_version {
            Some(v) => format!("phony {v}"),
            None => "an older phony (no version recorded)".into(),
        },
    );
    out += &line(
        "database",
        format!(
            "{} (PostgreSQL {})",
            r.source.database, r.source.server_version
        ),
    );
    out += &line(
        "contents",
        format!(
            "{}, {}, {}",
            count(r.stats.tables, "table", "tables"),
            count(r.stats.rows, "row", "rows"),
            count(r.stats.sequences, "sequence", "sequences")
        ),
    );
    out += &line(
        "size",
        format!(
            "{} of rows, {} stored, {} new in this snapshot",
            size(r.stats.bytes),
            size(r.stats.stored_bytes),
            size(r.stats.new_bytes)
        ),
    );
    out += &line(
        "took",
        format!("{:.2}s", r.stats.duration_ms as f64 / 1000.0),
    );
    out.push('\n');
    let mut t = new_table(&["TABLE", "ROWS", "SIZE", "KEY"]);
    for e in &root.tables {
        t.add_row(vec![
            Cell::new(&e.table),
            Cell::new(e.content.rows).set_alignment(CellAlignment::Right),
            Cell::new(size(e.content.bytes)).set_alignment(CellAlignment::Right),
            Cell::new(if e.key.is_empty() {
                "(none: whole rows)".into()
            } else {
                e.key.join(", ")
            }),
        ]);
    }
    out += &t.to_string();
    out
}

/// What `snapshot restore` prints for people.
pub fn restore_summary(
    r: &SnapshotRecord,
    database: &str,
    created: bool,
    report: &phony_postgres::RestoreReport,
) -> String {
    use phony_postgres::RestorePath;
    let verb = if report.dry_run {
        "would restore"
    } else {
        "restored"
    };
    let into = format!("{database}{}", if created { " (created)" } else { "" });
    // A dry run's time is what working out the plan took, not an estimate of the restore.
    let secs = report.duration.as_secs_f64();
    let took = match report.dry_run {
        true => format!("planned in {secs:.2}s"),
        false => format!("in {secs:.2}s"),
    };
    let mut out = match report.path {
        RestorePath::Delta if report.changes.is_empty() => format!(
            "{verb} {} into {into}: no rows differ; {} set, {took}\n",
            r.label(),
            count(report.sequences, "sequence", "sequences")
        ),
        RestorePath::Delta => {
            let (d, i, u) = report.changes.iter().fold((0, 0, 0), |(d, i, u), c| {
                (d + c.deleted, i + c.inserted, u + c.updated)
            });
            format!(
                "{verb} {} into {into} by rewriting {} of {} ({} deleted, {i} inserted, {u} updated), {}, {took}\n",
                r.label(),
                report.changes.len(),
                count(r.stats.tables, "table", "tables"),
                count(d, "row", "rows"),
                count(report.sequences, "sequence", "sequences")
            )
        }
        RestorePath::Full => format!(
            "{verb} {} into {into}{}: {}, {}, {}, {took}\n",
            r.label(),
            report
                .full_reason
                .as_deref()
                .map(|why| format!(" (full path: {why})"))
                .unwrap_or_default(),
            count(report.tables, "table", "tables"),
            count(report.rows, "row", "rows"),
            count(report.sequences, "sequence", "sequences")
        ),
    };
    if report.dry_run && report.path == RestorePath::Delta {
        out += match report.tracked {
            true => "delta path: the change log names the rows changed since the database held this snapshot, and its schema did not change\n",
            false => "delta path: the schema is the snapshot's, so only rows that differ are rewritten\n",
        };
    }
    if report.dry_run && !report.changes.is_empty() {
        let mut t = new_table(&["TABLE", "DELETE", "INSERT", "UPDATE"]);
        for c in &report.changes {
            t.add_row(vec![
                Cell::new(&c.table),
                Cell::new(c.deleted).set_alignment(CellAlignment::Right),
                Cell::new(c.inserted).set_alignment(CellAlignment::Right),
                Cell::new(c.updated).set_alignment(CellAlignment::Right),
            ]);
        }
        out += &t.to_string();
        out.push('\n');
        for c in &report.changes {
            if let Some(why) = &c.reloaded {
                out += &format!("{} would be reloaded whole: {why}\n", c.table);
            }
        }
    }
    if report.dry_run && !report.schema_changes.is_empty() {
        use phony_core::diff::schema::ObjectChange;
        let mut t = new_table(&["WOULD", "OBJECT"]);
        for c in &report.schema_changes {
            let would = match c.change {
                ObjectChange::Dropped => "drop",
                ObjectChange::Added => "create",
                ObjectChange::Altered => "replace",
            };
            t.add_row(vec![Cell::new(would), Cell::new(c.title())]);
        }
        out += &t.to_string();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one_only() {
        assert_eq!(count(1u64, "row", "rows"), "1 row");
        assert_eq!(count(0usize, "row", "rows"), "0 rows");
        assert_eq!(count(2i64, "snapshot", "snapshots"), "2 snapshots");
    }
}
