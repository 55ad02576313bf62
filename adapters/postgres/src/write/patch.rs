//! A SQL patch from a diff: statements that turn a database in the `from` state into the
//! `to` state (data only).
//!
//! The patch is one transaction:
//! - `SET LOCAL session_replication_role = replica`: user triggers and foreign-key checks
//!   do not fire while rows are rewritten (the diff already lists every row each table
//!   ends up with, cascades included), so statements need no foreign-key order, and an
//!   audit trigger does not add rows the `to` state does not have. Setting it needs a
//!   superuser (as `pg_dump --disable-triggers` does). The constraints are those of the
//!   `to` state, so they hold again at commit.
//! - per table, in name order: deletes, then updates, then inserts (a row whose unique
//!   value moves to another row is freed before it is taken); changed rows set only the
//!   columns that changed;
//! - rows of tables with a primary key are found by key (`WHERE key = '…'`); rows of tables
//!   without one by all their values, `LIMIT`ed through `ctid` to the number of copies
//!   to remove (compared on each value's text, `format('%L', col)`, which works for
//!   every type, json included);
//! - values are string literals of the text PostgreSQL printed: an untyped literal takes
//!   the column's type and is read by its input function, exactly as `COPY` read it, so
//!   no type names are needed (the snapshot does not record them per column); a key value
//!   compared with a composite-type column (which an untyped literal cannot be) is read by
//!   the column's type through a row of the table (`json_populate_record`);
//! - sequences that moved are `setval`ed; populated materialized views are refreshed.
//!
//! Schema changes are not turned into DDL: [`patch`] refuses a diff that has any.

use std::fmt::Write as _;

use phony_core::diff::{Diff, RowChange, TableChange, Value};
use phony_core::{QualifiedName, RootManifest};

use crate::error::{Error, Result};
use crate::sql::{ident, literal, qualified};

/// Rows per `INSERT` statement.
const INSERT_BATCH: usize = 100;

/// The SQL patch that turns the `from` state of `diff` into `to` (`to` is the root
/// manifest of the `to` side, for its materialized views). `diff` must hold every row
/// change (no row limit).
pub fn patch(diff: &Diff, to: &RootManifest) -> Result<String> {
    if !diff.schema.is_empty() {
        let shown: Vec<String> = diff.schema.iter().take(3).map(|c| c.title()).collect();
        return Err(Error::Patch(format!(
            "the schemas differ ({} object(s): {}{}); a SQL patch writes data changes only: restore the `from` snapshot's schema first, or diff two snapshots with the same schema",
            diff.schema.len(),
            shown.join(", "),
            if diff.schema.len() > 3 { ", …" } else { "" }
        )));
    }
    for t in &diff.tables {
        if t.change == TableChange::Added || t.change == TableChange::Dropped {
            return Err(Error::Patch(format!(
                "table {}.{} was {}; a SQL patch writes data changes only",
                t.schema,
                t.name,
                if t.change == TableChange::Added {
                    "added"
                } else {
                    "dropped"
                }
            )));
        }
        if !t.columns_only_in_from.is_empty() || !t.columns_only_in_to.is_empty() {
            return Err(Error::Patch(format!(
                "the columns of {}.{} differ; a SQL patch writes data changes only",
                t.schema, t.name
            )));
        }
        if t.rows_truncated {
            return Err(Error::Patch(format!(
                "the diff of {}.{} holds only some of its rows; a patch needs them all",
                t.schema, t.name
            )));
        }
    }
    let mut out = String::new();
    out.push_str("-- phony patch: data changes from one snapshot state to another.\n");
    out.push_str(
        "-- Apply to a database in the `from` state, as a superuser (triggers and foreign keys\n",
    );
    out.push_str("-- are held off with session_replication_role while rows are rewritten).\n");
    out.push_str("BEGIN;\n");
    out.push_str("SET LOCAL session_replication_role = replica;\n");
    out.push_str("SET LOCAL standard_conforming_strings = on;\n");
    let mut any_rows = false;
    for t in diff.tables.iter().filter(|t| t.has_changes()) {
        let name = qualified(&t.table());
        let _ = writeln!(
            out,
            "\n-- {}: {} added, {} removed, {} changed",
            t.table(),
            t.rows_added,
            t.rows_removed,
            t.rows_changed
        );
        let keyed = !t.key.is_empty();
        let all_cols: Vec<String> = t.columns.iter().map(|c| ident(c)).collect();
        for r in &t.rows {
            if let RowChange::Removed { key, values, count } = r {
                any_rows = true;
                if keyed {
                    let _ = writeln!(
                        out,
                        "DELETE FROM ONLY {name} WHERE {};",
                        key_match(&name, &t.key, key)
                    );
                } else {
                    let cond = if all_cols.is_empty() {
                        "true".to_owned()
                    } else {
                        all_cols
                            .iter()
                            .zip(values)
                            .map(|(c, v)| {
                                format!("pg_catalog.format('%L', {c}) = {}", quoted_text(v))
                            })
                            .collect::<Vec<_>>()
                            .join(" AND ")
                    };
                    let _ = writeln!(
                        out,
                        "DELETE FROM ONLY {name} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ONLY {name} WHERE {cond} LIMIT {count}));"
                    );
                }
            }
        }
        for r in &t.rows {
            if let RowChange::Changed { key, changes } = r {
                any_rows = true;
                let sets: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{} = {}", ident(&c.column), lit(&c.new)))
                    .collect();
                let _ = writeln!(
                    out,
                    "UPDATE ONLY {name} SET {} WHERE {};",
                    sets.join(", "),
                    key_match(&name, &t.key, key)
                );
            }
        }
        let mut inserts: Vec<&[Value]> = Vec::new();
        for r in &t.rows {
            if let RowChange::Added { values, count, .. } = r {
                any_rows = true;
                for _ in 0..*count {
                    inserts.push(values);
                }
            }
        }
        if all_cols.is_empty() {
            for _ in &inserts {
                let _ = writeln!(out, "INSERT INTO {name} DEFAULT VALUES;");
            }
        } else {
            for batch in inserts.chunks(INSERT_BATCH) {
                let _ = writeln!(
                    out,
                    "INSERT INTO {name} ({}) OVERRIDING SYSTEM VALUE VALUES",
                    all_cols.join(", ")
                );
                for (i, values) in batch.iter().enumerate() {
                    let row: Vec<String> = values.iter().map(lit).collect();
                    let _ = writeln!(
                        out,
                        "  ({}){}",
                        row.join(", "),
                        if i + 1 == batch.len() { ";" } else { "," }
                    );
                }
            }
        }
    }
    if !diff.sequences.is_empty() {
        out.push('\n');
    }
    for s in &diff.sequences {
        if let Some(p) = &s.to {
            let seq = qualified(&QualifiedName::new(&s.schema, &s.name));
            let _ = writeln!(
                out,
                "SELECT pg_catalog.setval({}, {}, {});",
                literal(&seq),
                p.last_value,
                p.is_called
            );
        }
    }
    if any_rows && !to.materialized_views.is_empty() {
        out.push('\n');
        for mv in &to.materialized_views {
            let _ = writeln!(out, "REFRESH MATERIALIZED VIEW {};", qualified(mv));
        }
    }
    out.push_str("COMMIT;\n");
    Ok(out)
}

/// `"a" = '1' AND "b" = 'x'`.
fn key_match(table: &str, cols: &[String], key: &[Value]) -> String {
    cols.iter()
        .zip(key)
        .map(|(c, v)| match v {
            Some(v) => format!("{} = {}", ident(c), key_value(table, c, v)),
            None => format!("{} IS NULL", ident(c)),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A key value to compare column `col` of `table` with. An untyped literal takes the
/// column's type, except against a composite type, which PostgreSQL cannot read from an
/// untyped literal ("input of anonymous composite types is not implemented"): the text of
/// a composite (and only that, among key types, starts with `(` besides a range's, which
/// this reads the same way) is read by the column's own type, through a row of the table
/// (`json_populate_record` reads each field with its type's input function; the row gives
/// the other fields values, so their domains are not checked against NULLs). The patch
/// does not know column types; this needs none.
fn key_value(table: &str, col: &str, v: &str) -> String {
    if !v.starts_with('(') {
        return literal(v);
    }
    format!(
        "(SELECT (pg_catalog.json_populate_record(r.*, pg_catalog.json_build_object({}, {}::text))).{} FROM ONLY {table} AS r LIMIT 1)",
        literal(col),
        literal(v),
        ident(col)
    )
}

/// A value as an untyped literal, or `NULL`.
fn lit(v: &Value) -> String {
    match v {
        Some(v) => literal(v),
        None => "NULL".to_owned(),
    }
}

/// What `format('%L', col)` gives for a column holding `v`.
fn quoted_text(v: &Value) -> String {
    match v {
        Some(v) => format!("pg_catalog.quote_literal({}::text)", literal(v)),
        None => "'NULL'".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phony_core::diff::{ColumnChange, SequenceChange, SequencePoint, TableDiff};
    use phony_core::{BlobId, BlobRef};

    fn root() -> RootManifest {
        let b = BlobRef::plain(BlobId::of(b""), 0, 0);
        RootManifest {
            format: 1,
            server_version_num: 150000,
            pre_data: b.clone(),
            post_data: b,
            tables: vec![],
            sequences: vec![],
            materialized_views: vec![QualifiedName::new("public", "mv")],
            database: None,
        }
    }

    fn table(key: &[&str], rows: Vec<RowChange>) -> TableDiff {
        TableDiff {
            schema: "public".into(),
            name: "t".into(),
            change: TableChange::Changed,
            columns: vec!["id".into(), "v".into()],
            key: key.iter().map(|s| s.to_string()).collect(),
            rows_added: 0,
            rows_removed: 0,
            rows_changed: 0,
            columns_only_in_from: vec![],
            columns_only_in_to: vec![],
            notes: vec![],
            rows,
            rows_truncated: false,
        }
    }

    fn s(v: &str) -> Value {
        Some(v.to_owned())
    }

    #[test]
    fn golden_patch_of_a_keyed_table() {
        let diff = Diff {
            tables: vec![table(
                &["id"],
                vec![
                    RowChange::Removed {
                        key: vec![s("1")],
                        values: vec![s("1"), s("a")],
                        count: 1,
                    },
                    RowChange::Changed {
                        key: vec![s("2")],
                        changes: vec![ColumnChange {
                            column: "v".into(),
                            old: s("b"),
                            new: s("it's\\"),
                        }],
                    },
                    RowChange::Added {
                        key: vec![s("3")],
                        values: vec![s("3"), None],
                        count: 1,
                    },
                ],
            )],
            sequences: vec![SequenceChange {
                schema: "public".into(),
                name: "t_id_seq".into(),
                from: Some(SequencePoint {
                    last_value: 2,
                    is_called: true,
                }),
                to: Some(SequencePoint {
                    last_value: 3,
                    is_called: true,
                }),
            }],
            ..Diff::default()
        };
        let sql = patch(&diff, &root()).unwrap();
        let body: Vec<&str> = sql
            .lines()
            .filter(|l| !l.starts_with("--") && !l.is_empty())
            .collect();
        assert_eq!(
            body,
            vec![
                "BEGIN;",
                "SET LOCAL session_replication_role = replica;",
                "SET LOCAL standard_conforming_strings = on;",
                r#"DELETE FROM ONLY "public"."t" WHERE "id" = '1';"#,
                r#"UPDATE ONLY "public"."t" SET "v" = 'it''s\' WHERE "id" = '2';"#,
                r#"INSERT INTO "public"."t" ("id", "v") OVERRIDING SYSTEM VALUE VALUES"#,
                "  ('3', NULL);",
                r#"SELECT pg_catalog.setval('"public"."t_id_seq"', 3, true);"#,
                r#"REFRESH MATERIALIZED VIEW "public"."mv";"#,
                "COMMIT;",
            ]
        );
    }

    #[test]
    fn keyless_rows_are_removed_by_value_and_count() {
        let diff = Diff {
            tables: vec![table(
                &[],
                vec![RowChange::Removed {
                    key: vec![],
                    values: vec![s("x"), None],
                    count: 2,
                }],
            )],
            ..Diff::default()
        };
        let sql = patch(&diff, &root()).unwrap();
        assert!(sql.contains(
            r#"DELETE FROM ONLY "public"."t" WHERE ctid = ANY (ARRAY(SELECT ctid FROM ONLY "public"."t" WHERE pg_catalog.format('%L', "id") = pg_catalog.quote_literal('x'::text) AND pg_catalog.format('%L', "v") = 'NULL' LIMIT 2));"#
        ), "{sql}");
    }

    #[test]
    fn schema_changes_are_refused() {
        let diff = Diff {
            schema: phony_core::diff::schema::diff(
                "-- Name: t; Type: TABLE; Schema: public; Owner: x\nCREATE TABLE t ();\n",
                "",
            ),
            ..Diff::default()
        };
        let err = patch(&diff, &root()).unwrap_err().to_string();
        assert!(
            err.contains("schemas differ") && err.contains("TABLE public.t"),
            "{err}"
        );
    }
}
