//! Matching rows: by key for tables with a primary key, as a multiset of whole rows for
//! tables without one.
//!
//! Rows stay in their raw COPY text until a change is kept for output: two fields are equal
//! exactly when their escaped texts are equal (COPY's escaping is deterministic), so
//! comparing needs no unescaping.

use std::collections::HashMap;

use serde::Serialize;

use crate::row::{self, FIELD_SEP};

/// A value as PostgreSQL prints it (unescaped COPY text); `None` is SQL NULL.
pub type Value = Option<String>;

/// One column of a changed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnChange {
    pub column: String,
    pub old: Value,
    pub new: Value,
}

/// One row-level difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum RowChange {
    /// A row only the `to` side has (`count` copies of it, for a table without key).
    Added {
        key: Vec<Value>,
        values: Vec<Value>,
        count: u64,
    },
    /// A row only the `from` side has.
    Removed {
        key: Vec<Value>,
        values: Vec<Value>,
        count: u64,
    },
    /// A row whose key both sides have, with different values.
    Changed {
        key: Vec<Value>,
        changes: Vec<ColumnChange>,
    },
}

/// How the rows of the two sides are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The compared columns (those both sides have), in the `from` side's order.
    pub columns: Vec<String>,
    /// Where the compared columns sit in a `from` row.
    pub from_positions: Vec<usize>,
    /// Where the compared columns sit in a `to` row.
    pub to_positions: Vec<usize>,
    /// The key's positions among the compared columns; empty: rows are a multiset.
    pub key: Vec<usize>,
}

impl Layout {
    /// The layout for two column lists and keys: compare the common columns; match by key
    /// when both sides have the same key and it is among the common columns.
    pub fn new(
        from_columns: &[String],
        from_key: &[String],
        to_columns: &[String],
        to_key: &[String],
    ) -> Self {
        let mut columns = Vec::new();
        let mut from_positions = Vec::new();
        let mut to_positions = Vec::new();
        for (i, c) in from_columns.iter().enumerate() {
            if let Some(j) = to_columns.iter().position(|t| t == c) {
                columns.push(c.clone());
                from_positions.push(i);
                to_positions.push(j);
            }
        }
        let key = if from_key == to_key && !from_key.is_empty() {
            from_key
                .iter()
                .map(|k| columns.iter().position(|c| c == k))
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Layout {
            columns,
            from_positions,
            to_positions,
            key,
        }
    }

    /// Whether rows are matched by key.
    pub fn keyed(&self) -> bool {
        !self.key.is_empty()
    }

    /// The key column names.
    pub fn key_columns(&self) -> Vec<String> {
        self.key.iter().map(|&k| self.columns[k].clone()).collect()
    }
}

/// The compared fields of a row, in [`Layout::columns`] order.
fn project<'a>(line: &'a [u8], positions: &[usize], scratch: &mut Vec<&'a [u8]>) -> Vec<&'a [u8]> {
    scratch.clear();
    scratch.extend(row::fields(line));
    positions
        .iter()
        .map(|&p| scratch.get(p).copied().unwrap_or(b"\\N"))
        .collect()
}

fn values(fields: &[&[u8]]) -> Vec<Value> {
    fields.iter().map(|f| value(f)).collect()
}

/// A raw COPY field as a [`Value`].
pub fn value(field: &[u8]) -> Value {
    row::unescape(field).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn join(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(FIELD_SEP);
        }
        out.extend_from_slice(f);
    }
    out
}

/// Counts every change and keeps the first `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collector {
    pub limit: usize,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub rows: Vec<RowChange>,
    /// Some changes were counted but not kept.
    pub truncated: bool,
}

impl Collector {
    pub fn new(limit: usize) -> Self {
        Collector {
            limit,
            ..Collector::default()
        }
    }

    fn keep(&mut self, make: impl FnOnce() -> RowChange) {
        if self.rows.len() < self.limit {
            self.rows.push(make());
        } else {
            self.truncated = true;
        }
    }

    fn added(&mut self, count: u64, make: impl FnOnce() -> RowChange) {
        self.added += count;
        self.keep(make);
    }

    fn removed(&mut self, count: u64, make: impl FnOnce() -> RowChange) {
        self.removed += count;
        self.keep(make);
    }

    fn changed(&mut self, make: impl FnOnce() -> RowChange) {
        self.changed += 1;
        self.keep(make);
    }
}

/// Matches the rows of one aligned run of a keyed table: rows are `(from, to)` lines.
/// Changes come in `from` order (removed and changed rows), then added rows in `to` order.
pub fn keyed_run<'a>(
    layout: &Layout,
    from: impl Iterator<Item = &'a [u8]>,
    to: impl Iterator<Item = &'a [u8]>,
    out: &mut Collector,
) {
    let mut scratch = Vec::new();
    let mut to_rows: HashMap<Vec<u8>, (usize, Vec<&'a [u8]>)> = HashMap::new();
    let mut order = 0usize;
    for line in to {
        let fields = project(line, &layout.to_positions, &mut scratch);
        let key = join(&layout.key.iter().map(|&k| fields[k]).collect::<Vec<_>>());
        to_rows.insert(key, (order, fields));
        order += 1;
    }
    for line in from {
        let old = project(line, &layout.from_positions, &mut scratch);
        let key_fields: Vec<&[u8]> = layout.key.iter().map(|&k| old[k]).collect();
        match to_rows.remove(&join(&key_fields)) {
            Some((_, new)) => {
                if new != old {
                    out.changed(|| RowChange::Changed {
                        key: values(&key_fields),
                        changes: old
                            .iter()
                            .zip(&new)
                            .enumerate()
                            .filter(|(_, (o, n))| o != n)
                            .map(|(i, (o, n))| ColumnChange {
                                column: layout.columns[i].clone(),
                                old: value(o),
                                new: value(n),
                            })
                            .collect(),
                    });
                }
            }
            None => out.removed(1, || RowChange::Removed {
                key: values(&key_fields),
                values: values(&old),
                count: 1,
            }),
        }
    }
    let mut added: Vec<(usize, Vec<&[u8]>)> = to_rows.into_values().collect();
    added.sort_by_key(|(i, _)| *i);
    for (_, new) in added {
        out.added(1, || RowChange::Added {
            key: layout.key.iter().map(|&k| value(new[k])).collect(),
            values: values(&new),
            count: 1,
        });
    }
}

/// Signed counts of whole rows over any number of runs, for tables matched as multisets.
#[derive(Debug, Default)]
pub struct Multiset {
    counts: HashMap<Vec<u8>, i64>,
}

impl Multiset {
    /// Counts a `from` row (−1).
    pub fn from_row(&mut self, layout: &Layout, line: &[u8]) {
        self.add(line, &layout.from_positions, -1);
    }

    /// Counts a `to` row (+1).
    pub fn to_row(&mut self, layout: &Layout, line: &[u8]) {
        self.add(line, &layout.to_positions, 1);
    }

    fn add(&mut self, line: &[u8], positions: &[usize], delta: i64) {
        let mut scratch = Vec::new();
        let joined = join(&project(line, positions, &mut scratch));
        // Rows that cancel out are dropped, so memory holds only rows that still differ.
        match self.counts.get_mut(&joined) {
            Some(n) => {
                *n += delta;
                if *n == 0 {
                    self.counts.remove(&joined);
                }
            }
            None => {
                self.counts.insert(joined, delta);
            }
        }
    }

    /// Reports the rows whose counts differ, in byte order of their text (the order
    /// PostgreSQL's `COLLATE "C"` gives).
    pub fn finish(self, out: &mut Collector) {
        let mut rows: Vec<(Vec<u8>, i64)> = self.counts.into_iter().collect();
        rows.sort();
        for (line, n) in rows {
            let fields: Vec<&[u8]> = row::fields(&line).collect();
            let count = n.unsigned_abs();
            if n > 0 {
                out.added(count, || RowChange::Added {
                    key: vec![],
                    values: values(&fields),
                    count,
                });
            } else {
                out.removed(count, || RowChange::Removed {
                    key: vec![],
                    values: values(&fields),
                    count,
                });
            }
        }
    }
}

/// Reports rows of a table one side does not have at all, grouping adjacent equal rows
/// of a keyless table (its rows are sorted, so duplicates are adjacent). Stops keeping rows
/// at the limit; counts come from the manifest.
pub fn one_side<'a>(
    layout: &Layout,
    added: bool,
    lines: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<RowChange>,
    limit: usize,
) {
    let positions = if added {
        &layout.to_positions
    } else {
        &layout.from_positions
    };
    let mut scratch = Vec::new();
    let mut pending: Option<(Vec<&[u8]>, u64)> = None;
    let make = |fields: &[&[u8]], count: u64| {
        let key = layout.key.iter().map(|&k| value(fields[k])).collect();
        let values = values(fields);
        if added {
            RowChange::Added { key, values, count }
        } else {
            RowChange::Removed { key, values, count }
        }
    };
    for line in lines {
        let fields = project(line, positions, &mut scratch);
        match &mut pending {
            Some((prev, n)) if !layout.keyed() && *prev == fields => *n += 1,
            _ => {
                if let Some((prev, n)) = pending.take() {
                    if out.len() >= limit {
                        return;
                    }
                    out.push(make(&prev, n));
                }
                pending = Some((fields, 1));
            }
        }
    }
    if let Some((prev, n)) = pending {
        if out.len() < limit {
            out.push(make(&prev, n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn lines(s: &str) -> impl Iterator<Item = &[u8]> {
        row::lines(s.as_bytes())
    }

    #[test]
    fn keyed_rows_are_matched_by_key() {
        let l = Layout::new(
            &cols(&["id", "v"]),
            &cols(&["id"]),
            &cols(&["id", "v"]),
            &cols(&["id"]),
        );
        let mut out = Collector::new(10);
        keyed_run(
            &l,
            lines("1\ta\n2\tb\n3\t\\N\n"),
            lines("2\tb\n3\tc\\td\n4\td\n"),
            &mut out,
        );
        assert_eq!((out.added, out.removed, out.changed), (1, 1, 1));
        assert_eq!(
            out.rows,
            vec![
                RowChange::Removed {
                    key: vec![Some("1".into())],
                    values: vec![Some("1".into()), Some("a".into())],
                    count: 1
                },
                RowChange::Changed {
                    key: vec![Some("3".into())],
                    changes: vec![ColumnChange {
                        column: "v".into(),
                        old: None,
                        new: Some("c\td".into())
                    }]
                },
                RowChange::Added {
                    key: vec![Some("4".into())],
                    values: vec![Some("4".into()), Some("d".into())],
                    count: 1
                },
            ]
        );
    }

    #[test]
    fn the_limit_keeps_counts_exact() {
        let l = Layout::new(
            &cols(&["id"]),
            &cols(&["id"]),
            &cols(&["id"]),
            &cols(&["id"]),
        );
        let mut out = Collector::new(1);
        keyed_run(&l, lines(""), lines("1\n2\n3\n"), &mut out);
        assert_eq!(out.added, 3);
        assert_eq!(out.rows.len(), 1);
        assert!(out.truncated);
    }

    #[test]
    fn keyless_rows_are_counted_as_a_multiset() {
        let l = Layout::new(&cols(&["a", "b"]), &[], &cols(&["a", "b"]), &[]);
        let mut m = Multiset::default();
        for line in lines("x\t1\nx\t1\nx\t1\ny\t2\n") {
            m.from_row(&l, line);
        }
        for line in lines("x\t1\nz\t3\nz\t3\n") {
            m.to_row(&l, line);
        }
        let mut out = Collector::new(10);
        m.finish(&mut out);
        assert_eq!((out.added, out.removed, out.changed), (2, 3, 0));
        assert_eq!(out.rows.len(), 3);
        assert!(matches!(&out.rows[0], RowChange::Removed { count: 2, .. }));
    }

    #[test]
    fn common_columns_are_compared_and_a_different_key_means_multiset() {
        let l = Layout::new(
            &cols(&["id", "gone", "v"]),
            &cols(&["id"]),
            &cols(&["v", "id", "new"]),
            &cols(&["id"]),
        );
        assert_eq!(l.columns, cols(&["id", "v"]));
        assert_eq!(l.to_positions, vec![1, 0]);
        assert!(l.keyed());
        let mut out = Collector::new(10);
        keyed_run(&l, lines("1\tx\ta\n"), lines("a\t1\ty\n"), &mut out);
        assert_eq!((out.added, out.removed, out.changed), (0, 0, 0));

        let l = Layout::new(
            &cols(&["a", "b"]),
            &cols(&["a"]),
            &cols(&["a", "b"]),
            &cols(&["b"]),
        );
        assert!(!l.keyed());
        let l = Layout::new(
            &cols(&["a", "b"]),
            &cols(&["b"]),
            &cols(&["a"]),
            &cols(&["b"]),
        );
        assert!(!l.keyed(), "the key column is not common");
    }
}
