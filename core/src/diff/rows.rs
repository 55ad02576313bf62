//! Matching rows: by key for tables with a primary key, as a multiset of whole rows for
//! tables without one.
//!
//! Rows stay in their raw COPY text until a change is kept for output: two fields are equal
//! exactly when their escaped texts are equal (COPY's escaping is deterministic), so
//! comparing needs no unescaping.

use std::borrow::Cow;
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

/// The lines of a run of rows without their `\n`, as [`row::lines`] gives them, found with
/// `memchr` (the diff splits hundreds of megabytes of rows).
pub fn lines(rows: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(crate::chunker::ROW_END, rows);
    std::iter::from_fn(move || {
        if start >= rows.len() {
            return None;
        }
        let end = ends.next().unwrap_or(rows.len());
        let line = &rows[start..end];
        start = end + 1;
        Some(line)
    })
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

    /// Adds the counts and kept rows of a later run.
    pub fn absorb(&mut self, other: Collector) {
        self.added += other.added;
        self.removed += other.removed;
        self.changed += other.changed;
        self.truncated |= other.truncated;
        for r in other.rows {
            self.keep(|| r);
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
    for (order, line) in to.enumerate() {
        let fields = project(line, &layout.to_positions, &mut scratch);
        let key = join(&layout.key.iter().map(|&k| fields[k]).collect::<Vec<_>>());
        to_rows.insert(key, (order, fields));
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

/// The key of a row whose fields are in stored order: a slice of the line when the key is
/// its leading fields (the usual case), else the key fields joined by tabs.
fn key_of<'a>(line: &'a [u8], key: &[usize]) -> Cow<'a, [u8]> {
    if key.iter().enumerate().all(|(i, &k)| i == k) {
        let mut end = 0;
        for i in 0..key.len() {
            let from = if i == 0 { 0 } else { end + 1 };
            end = match memchr::memchr(FIELD_SEP, line.get(from..).unwrap_or_default()) {
                Some(p) => from + p,
                None => line.len(),
            };
        }
        return Cow::Borrowed(&line[..end.min(line.len())]);
    }
    let fields: Vec<&[u8]> = row::fields(line).collect();
    Cow::Owned(join(
        &key.iter()
            .map(|&k| fields.get(k).copied().unwrap_or(b"\\N"))
            .collect::<Vec<_>>(),
    ))
}

/// The changes between two versions of a keyed row with the same columns.
fn changed_row(layout: &Layout, old: &[u8], new: &[u8]) -> RowChange {
    let old: Vec<&[u8]> = row::fields(old).collect();
    let new: Vec<&[u8]> = row::fields(new).collect();
    let field = |r: &[&'_ [u8]], i: usize| r.get(i).map(|f| value(f)).unwrap_or(None);
    RowChange::Changed {
        key: layout.key.iter().map(|&k| field(&old, k)).collect(),
        changes: (0..layout.columns.len())
            .filter(|&i| old.get(i) != new.get(i))
            .map(|i| ColumnChange {
                column: layout.columns[i].clone(),
                old: field(&old, i),
                new: field(&new, i),
            })
            .collect(),
    }
}

fn whole_row(layout: &Layout, line: &[u8], added: bool, count: u64) -> RowChange {
    let fields: Vec<&[u8]> = row::fields(line).collect();
    let key = layout
        .key
        .iter()
        .map(|&k| fields.get(k).map(|f| value(f)).unwrap_or(None))
        .collect();
    let values = values(&fields);
    if added {
        RowChange::Added { key, values, count }
    } else {
        RowChange::Removed { key, values, count }
    }
}

/// Matches the rows of one aligned run of a keyed table whose two sides have the same
/// columns. The sides are mostly the same rows in the same order, so rows are compared in
/// step as raw lines; only where they differ is a row's key looked up among the rows the
/// other side has shown and not yet matched. Equal rows cost a comparison of bytes.
pub fn keyed_merge(layout: &Layout, from: &[&[u8]], to: &[&[u8]], out: &mut Collector) {
    let mut pending_from: HashMap<Cow<'_, [u8]>, &[u8]> = HashMap::new();
    let mut pending_to: HashMap<Cow<'_, [u8]>, &[u8]> = HashMap::new();
    let (mut i, mut j) = (0, 0);
    let pair = |out: &mut Collector, old: &[u8], new: &[u8]| {
        if old != new {
            out.changed(|| changed_row(layout, old, new));
        }
    };
    while i < from.len() && j < to.len() {
        let (a, b) = (from[i], to[j]);
        if a == b {
            i += 1;
            j += 1;
            continue;
        }
        let (ka, kb) = (key_of(a, &layout.key), key_of(b, &layout.key));
        if ka == kb {
            pair(out, a, b);
            i += 1;
            j += 1;
        } else if let Some(new) = pending_to.remove(&ka) {
            pair(out, a, new);
            i += 1;
        } else if let Some(old) = pending_from.remove(&kb) {
            pair(out, old, b);
            j += 1;
        } else {
            pending_from.insert(ka, a);
            pending_to.insert(kb, b);
            i += 1;
            j += 1;
        }
    }
    for &a in &from[i..] {
        let ka = key_of(a, &layout.key);
        match pending_to.remove(&ka) {
            Some(new) => pair(out, a, new),
            None => {
                pending_from.insert(ka, a);
            }
        }
    }
    for &b in &to[j..] {
        let kb = key_of(b, &layout.key);
        match pending_from.remove(&kb) {
            Some(old) => pair(out, old, b),
            None => {
                pending_to.insert(kb, b);
            }
        }
    }
    // What is left has no partner: keep the table's order within each side.
    let mut removed: Vec<&[u8]> = pending_from.into_values().collect();
    removed.sort_by_key(|l| l.as_ptr() as usize);
    for line in removed {
        out.removed(1, || whole_row(layout, line, false, 1));
    }
    let mut added: Vec<&[u8]> = pending_to.into_values().collect();
    added.sort_by_key(|l| l.as_ptr() as usize);
    for line in added {
        out.added(1, || whole_row(layout, line, true, 1));
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
        self.bump_owned(joined, delta);
    }

    /// Counts one aligned run whose two sides have the same columns, comparing in step:
    /// equal rows cancel without being counted, so only rows that differ are hashed.
    pub fn merge(&mut self, from: &[&[u8]], to: &[&[u8]]) {
        let (mut i, mut j) = (0, 0);
        while i < from.len() && j < to.len() {
            let (a, b) = (from[i], to[j]);
            if a == b {
                i += 1;
                j += 1;
            } else if self.counts.get(a).is_some_and(|n| *n > 0) {
                self.bump(a, -1);
                i += 1;
            } else if self.counts.get(b).is_some_and(|n| *n < 0) {
                self.bump(b, 1);
                j += 1;
            } else {
                self.bump(a, -1);
                self.bump(b, 1);
                i += 1;
                j += 1;
            }
        }
        for a in &from[i..] {
            self.bump(a, -1);
        }
        for b in &to[j..] {
            self.bump(b, 1);
        }
    }

    /// Adds another run's counts.
    pub fn absorb(&mut self, other: Multiset) {
        for (line, n) in other.counts {
            self.bump_owned(line, n);
        }
    }

    fn bump(&mut self, line: &[u8], delta: i64) {
        match self.counts.get_mut(line) {
            Some(n) => {
                *n += delta;
                if *n == 0 {
                    self.counts.remove(line);
                }
            }
            None => {
                self.counts.insert(line.to_vec(), delta);
            }
        }
    }

    fn bump_owned(&mut self, line: Vec<u8>, delta: i64) {
        match self.counts.get_mut(&line) {
            Some(n) => {
                *n += delta;
                if *n == 0 {
                    self.counts.remove(&line);
                }
            }
            None => {
                self.counts.insert(line, delta);
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
    fn in_step_matching_resyncs_after_gaps_on_either_side() {
        let l = Layout::new(
            &cols(&["id", "v"]),
            &cols(&["id"]),
            &cols(&["id", "v"]),
            &cols(&["id"]),
        );
        let from: Vec<&[u8]> = lines("1\ta\n2\tb\n3\tc\n4\td\n5\te\n6\tf\n7\tg\n").collect();
        let to: Vec<&[u8]> = lines("1\ta\n5\tE\n6\tf\n7\tg\n8\th\n9\ti\n").collect();
        let mut merged = Collector::new(100);
        keyed_merge(&l, &from, &to, &mut merged);
        let mut hashed = Collector::new(100);
        keyed_run(&l, from.iter().copied(), to.iter().copied(), &mut hashed);
        assert_eq!((merged.added, merged.removed, merged.changed), (2, 3, 1));
        let mut a = merged.rows.clone();
        let mut b = hashed.rows.clone();
        a.sort_by_key(|r| format!("{r:?}"));
        b.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(a, b);

        let composite = Layout::new(
            &cols(&["v", "id"]),
            &cols(&["id", "v"]),
            &cols(&["v", "id"]),
            &cols(&["id", "v"]),
        );
        assert_eq!(key_of(b"x\t7", &composite.key).as_ref(), b"7\tx");
        assert_eq!(key_of(b"7\tx\ty", &[0, 1]).as_ref(), b"7\tx");
        assert_eq!(key_of(b"7", &[0]).as_ref(), b"7");
    }

    #[test]
    fn lines_agree_with_row_lines() {
        for text in ["", "\n", "a\n", "a\nb\n", "a\n\nb\n", "a\tb\nc", "\n\n"] {
            let fast: Vec<&[u8]> = super::lines(text.as_bytes()).collect();
            let slow: Vec<&[u8]> = row::lines(text.as_bytes()).collect();
            assert_eq!(fast, slow, "{text:?}");
        }
    }

    #[test]
    fn in_step_multiset_counts_equal_the_full_count() {
        let from: Vec<&[u8]> = lines("a\na\nb\nc\nc\nd\n").collect();
        let to: Vec<&[u8]> = lines("a\nb\nb\nc\nc\nc\ne\n").collect();
        let mut m = Multiset::default();
        m.merge(&from, &to);
        let mut out = Collector::new(10);
        m.finish(&mut out);
        assert_eq!((out.added, out.removed), (3, 2));
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
