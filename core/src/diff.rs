//! Differences between two snapshots: schema objects, rows per table, sequences.
//!
//! The cost follows the change, not the database:
//! - a table whose chunk-tree root is equal on both sides (same columns, same key) is
//!   skipped without reading anything below the root manifest;
//! - inside a changed table only the chunks one side holds and the other does not are
//!   read ([`align`]); shared chunks are identical row runs and cancel out;
//! - rows of a keyed table are matched by key run by run, so memory holds one run at a
//!   time; rows of a table without key are counted as a multiset of whole rows, keeping
//!   only the rows whose counts differ ([`rows`]).
//!
//! Schema objects are compared as pg_dump DDL, object by object ([`schema`]).
//!
//! [`plan`] decides what to read from two root manifests alone (pure); [`diff`] does it on
//! a [`Store`].

pub mod align;
pub mod rows;
pub mod schema;
mod table;

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

use crate::error::Result;
use crate::manifest::{QualifiedName, RootManifest, SequenceState, TableEntry};
use crate::store::{Backend, Store};
use table::{compare, empty_diff, one_side};

pub use align::Run;
pub use rows::{ColumnChange, Layout, RowChange, Value};
pub use schema::{ObjectChange, SchemaChange};

/// What to diff and how much to keep.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Only these tables (`schema.name`, or a bare name in any schema); empty: all.
    pub tables: Vec<String>,
    /// Row changes to keep per table (counts are always complete); 0: counts only.
    pub row_limit: usize,
    /// Report tables without changes too.
    pub include_unchanged: bool,
    /// Chunks fetched at once.
    pub concurrency: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            tables: Vec::new(),
            row_limit: 0,
            include_unchanged: false,
            concurrency: 8,
        }
    }
}

impl DiffOptions {
    /// Whether `table` is selected.
    pub fn selects(&self, table: &QualifiedName) -> bool {
        self.tables.is_empty()
            || self
                .tables
                .iter()
                .any(|t| *t == table.to_string() || *t == table.name)
    }
}

/// What happened to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableChange {
    Added,
    Dropped,
    Changed,
    Unchanged,
}

/// The differences of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDiff {
    pub schema: String,
    pub name: String,
    pub change: TableChange,
    /// The columns compared (both sides' common columns), the order of every value list.
    pub columns: Vec<String>,
    /// The columns rows are matched by; empty: rows are compared as a multiset.
    pub key: Vec<String>,
    pub rows_added: u64,
    pub rows_removed: u64,
    pub rows_changed: u64,
    /// Columns only the `from` side has (not compared).
    pub columns_only_in_from: Vec<String>,
    /// Columns only the `to` side has (not compared).
    pub columns_only_in_to: Vec<String>,
    /// Remarks on how the table was compared (column or key changes).
    pub notes: Vec<String>,
    /// The kept row changes (see [`DiffOptions::row_limit`]).
    pub rows: Vec<RowChange>,
    /// More changes were counted than kept.
    pub rows_truncated: bool,
}

impl TableDiff {
    /// The table's name.
    pub fn table(&self) -> QualifiedName {
        QualifiedName::new(&self.schema, &self.name)
    }

    /// Whether anything differs.
    pub fn has_changes(&self) -> bool {
        self.change != TableChange::Unchanged
    }
}

/// A sequence whose state differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceChange {
    pub schema: String,
    pub name: String,
    pub from: Option<SequencePoint>,
    pub to: Option<SequencePoint>,
}

/// A sequence's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SequencePoint {
    pub last_value: i64,
    pub is_called: bool,
}

impl From<&SequenceState> for SequencePoint {
    fn from(s: &SequenceState) -> Self {
        SequencePoint {
            last_value: s.last_value,
            is_called: s.is_called,
        }
    }
}

/// What a diff read, to show that its cost followed the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    /// Tables skipped because their chunk trees are equal.
    pub tables_skipped: u64,
    /// Tables whose chunks were compared.
    pub tables_compared: u64,
    /// Chunks read and decoded.
    pub chunks_read: u64,
    /// Plain bytes of the chunks read.
    pub bytes_read: u64,
    /// Chunks both sides share in the compared tables (not read).
    pub chunks_shared: u64,
}

/// Everything that differs between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub schema: Vec<SchemaChange>,
    pub tables: Vec<TableDiff>,
    pub sequences: Vec<SequenceChange>,
    pub stats: DiffStats,
}

impl Diff {
    /// Whether the two sides are equal (in the selected tables).
    pub fn is_empty(&self) -> bool {
        self.schema.is_empty()
            && self.sequences.is_empty()
            && self.tables.iter().all(|t| !t.has_changes())
    }
}

/// The work a diff of one table needs, decided from the manifests alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TablePlan {
    /// Equal roots, columns and key: nothing to read.
    Unchanged,
    /// Only the `to` side has the table.
    Added(TableEntry),
    /// Only the `from` side has the table.
    Dropped(TableEntry),
    /// Both have it; compare their chunks.
    Compare(TableEntry, TableEntry),
}

/// Pairs the tables of two root manifests by name (in name order), for the selected ones.
pub fn plan(
    from: &RootManifest,
    to: &RootManifest,
    opts: &DiffOptions,
) -> Vec<(QualifiedName, TablePlan)> {
    let mut pairs: BTreeMap<QualifiedName, (Option<&TableEntry>, Option<&TableEntry>)> =
        BTreeMap::new();
    for t in from.tables.iter().filter(|t| opts.selects(&t.table)) {
        pairs.entry(t.table.clone()).or_default().0 = Some(t);
    }
    for t in to.tables.iter().filter(|t| opts.selects(&t.table)) {
        pairs.entry(t.table.clone()).or_default().1 = Some(t);
    }
    pairs
        .into_iter()
        .filter_map(|(name, pair)| {
            let p = match pair {
                (Some(a), Some(b))
                    if a.content.id == b.content.id && a.columns == b.columns && a.key == b.key =>
                {
                    TablePlan::Unchanged
                }
                (Some(a), Some(b)) => TablePlan::Compare(a.clone(), b.clone()),
                (None, Some(b)) => TablePlan::Added(b.clone()),
                (Some(a), None) => TablePlan::Dropped(a.clone()),
                (None, None) => return None,
            };
            Some((name, p))
        })
        .collect()
}

/// The sequences whose states differ.
pub fn sequences(from: &RootManifest, to: &RootManifest) -> Vec<SequenceChange> {
    let mut pairs: BTreeMap<&QualifiedName, (Option<&SequenceState>, Option<&SequenceState>)> =
        BTreeMap::new();
    for s in &from.sequences {
        pairs.entry(&s.sequence).or_default().0 = Some(s);
    }
    for s in &to.sequences {
        pairs.entry(&s.sequence).or_default().1 = Some(s);
    }
    pairs
        .into_iter()
        .filter(|(_, (a, b))| a.map(SequencePoint::from) != b.map(SequencePoint::from))
        .map(|(name, (a, b))| SequenceChange {
            schema: name.schema.clone(),
            name: name.name.clone(),
            from: a.map(SequencePoint::from),
            to: b.map(SequencePoint::from),
        })
        .collect()
}

/// Where CPU-heavy work (decoding and matching a run's chunks) runs: on the task that
/// drives the diff ([`Inline`]), or on a pool of threads the caller provides, so that runs
/// are decoded on all cores. Core itself starts no threads.
pub trait Offload: Send + Sync {
    /// Runs `work` and yields its result.
    fn run<T, F>(&self, work: F) -> impl Future<Output = Result<T>> + Send
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static;
}

/// Runs work where the diff runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Offload for Inline {
    fn run<T, F>(&self, work: F) -> impl Future<Output = Result<T>> + Send
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        std::future::ready(work())
    }
}

/// Diffs two snapshots stored in `store`, decoding on the calling task.
pub async fn diff<B: Backend>(
    store: &Store<B>,
    from: &RootManifest,
    to: &RootManifest,
    opts: &DiffOptions,
) -> Result<Diff> {
    diff_with(store, from, to, opts, &Inline).await
}

/// Diffs two snapshots stored in `store`, decoding and matching chunk runs through
/// `offload`.
pub async fn diff_with<B: Backend, O: Offload>(
    store: &Store<B>,
    from: &RootManifest,
    to: &RootManifest,
    opts: &DiffOptions,
    offload: &O,
) -> Result<Diff> {
    let mut out = Diff {
        sequences: sequences(from, to),
        ..Diff::default()
    };
    if from.pre_data.id != to.pre_data.id || from.post_data.id != to.post_data.id {
        let from_text = schema_text(store, from).await?;
        let to_text = schema_text(store, to).await?;
        out.schema = schema::diff(&from_text, &to_text);
    }
    for (name, p) in plan(from, to, opts) {
        let t = match p {
            TablePlan::Unchanged => {
                out.stats.tables_skipped += 1;
                if !opts.include_unchanged {
                    continue;
                }
                let Some(e) = from.tables.iter().find(|t| t.table == name) else {
                    continue;
                };
                empty_diff(e, TableChange::Unchanged)
            }
            TablePlan::Added(e) => one_side(store, &e, true, opts, &mut out.stats).await?,
            TablePlan::Dropped(e) => one_side(store, &e, false, opts, &mut out.stats).await?,
            TablePlan::Compare(a, b) => {
                out.stats.tables_compared += 1;
                let t = compare(store, &a, &b, opts, offload, &mut out.stats).await?;
                if !t.has_changes() && !opts.include_unchanged {
                    continue;
                }
                t
            }
        };
        out.tables.push(t);
    }
    Ok(out)
}

async fn schema_text<B: Backend>(store: &Store<B>, root: &RootManifest) -> Result<String> {
    let mut text = String::new();
    for part in [&root.pre_data, &root.post_data] {
        let plain = store.get_plain(&part.id, part.bytes).await?;
        text.push_str(&String::from_utf8_lossy(&plain));
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::chunker::{ChunkParams, RowChunker};
    use crate::config::StoreConfig;
    use crate::error::Error;
    use crate::manifest::{build_tree, BlobRef, MANIFEST_FORMAT};
    use crate::row;
    use crate::store::ListEntry;

    /// An in-memory backend that counts reads.
    #[derive(Debug, Default)]
    struct Mem {
        objects: Mutex<HashMap<String, Bytes>>,
        gets: AtomicU64,
    }

    impl Backend for Mem {
        async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
            let mut o = self.objects.lock().unwrap();
            if o.contains_key(key) {
                return Ok(false);
            }
            o.insert(key.to_owned(), bytes);
            Ok(true)
        }
        async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
            self.objects.lock().unwrap().insert(key.to_owned(), bytes);
            Ok(())
        }
        async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.objects
                .lock()
                .unwrap()
                .get(key)
                .cloned()
                .ok_or_else(|| Error::NotFound { what: key.into() })
                .and_then(|b| match b.len() as u64 {
                    n if n > max_len => Err(Error::too_large(key, n, max_len)),
                    _ => Ok(b),
                })
        }
        async fn head(&self, key: &str) -> Result<Option<u64>> {
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(key)
                .map(|b| b.len() as u64))
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.objects.lock().unwrap().remove(key);
            Ok(())
        }
        async fn list(&self, _prefix: &str) -> Result<Vec<ListEntry>> {
            Ok(vec![])
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    type Rows = Vec<Vec<Value>>;

    /// A table's rows and shape.
    #[derive(Debug, Clone)]
    struct Table {
        columns: Vec<String>,
        keyed: bool,
        rows: Rows,
    }

    fn escape(v: &Value) -> String {
        match v {
            None => "\\N".into(),
            Some(s) => s
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\t', "\\t")
                .replace('\r', "\\r"),
        }
    }

    fn small_params() -> ChunkParams {
        ChunkParams {
            min: 64,
            avg: 256,
            max: 1024,
            normalization: 1,
        }
    }

    fn store() -> Store<Mem> {
        futures::executor::block_on(Store::open_or_init(Mem::default(), StoreConfig::default()))
            .unwrap()
    }

    /// Stores a table as capture would: rows in key order (or by text), row-aligned chunks.
    fn put_table(store: &Store<Mem>, t: &Table) -> TableEntry {
        let mut lines: Vec<(i64, String)> = t
            .rows
            .iter()
            .map(|r| {
                let key = r[0].as_deref().and_then(|k| k.parse().ok()).unwrap_or(0);
                let line = r.iter().map(escape).collect::<Vec<_>>().join("\t");
                (key, line)
            })
            .collect();
        if t.keyed {
            lines.sort_by_key(|(k, _)| *k);
        } else {
            lines.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
        }
        let mut chunker = RowChunker::new(small_params()).unwrap();
        let mut chunks = Vec::new();
        for (_, l) in &lines {
            chunks.extend(chunker.push(format!("{l}\n").as_bytes()));
        }
        chunks.extend(chunker.finish());
        let refs: Vec<BlobRef> = chunks
            .iter()
            .map(|c| {
                let (id, _) = futures::executor::block_on(store.put_plain(&c.data)).unwrap();
                let bounds = row::first_and_last(&c.data)
                    .filter(|_| t.keyed)
                    .map(|(f, l)| (row::key_text(f, &[0]), row::key_text(l, &[0])));
                let (first, last) = bounds.unzip();
                BlobRef {
                    id,
                    rows: c.rows,
                    bytes: c.data.len() as u64,
                    first,
                    last,
                }
            })
            .collect();
        let (content, nodes) = build_tree(&refs);
        for n in nodes {
            futures::executor::block_on(store.put_plain(&n.plain)).unwrap();
        }
        TableEntry {
            table: QualifiedName::new("public", "t"),
            columns: t.columns.clone(),
            key: if t.keyed {
                vec![t.columns[0].clone()]
            } else {
                vec![]
            },
            content,
        }
    }

    fn root(tables: Vec<TableEntry>) -> RootManifest {
        let b = BlobRef::plain(crate::id::BlobId::of(b"schema"), 0, 0);
        RootManifest {
            format: MANIFEST_FORMAT,
            server_version_num: 150000,
            pre_data: b.clone(),
            post_data: b,
            tables,
            sequences: vec![],
            materialized_views: vec![],
            database: None,
        }
    }

    fn run_diff(store: &Store<Mem>, x: &Table, y: &Table, limit: usize) -> Diff {
        let (a, b) = (
            root(vec![put_table(store, x)]),
            root(vec![put_table(store, y)]),
        );
        let opts = DiffOptions {
            row_limit: limit,
            ..DiffOptions::default()
        };
        futures::executor::block_on(diff(store, &a, &b, &opts)).unwrap()
    }

    /// Applies a table's diff to `x`'s rows (projected on the compared columns).
    fn apply(x: &Table, t: &TableDiff) -> Rows {
        let pos: Vec<usize> = t
            .columns
            .iter()
            .map(|c| x.columns.iter().position(|xc| xc == c).unwrap())
            .collect();
        let mut rows: Rows = x
            .rows
            .iter()
            .map(|r| pos.iter().map(|&p| r[p].clone()).collect())
            .collect();
        let key_pos: Vec<usize> = t
            .key
            .iter()
            .map(|k| t.columns.iter().position(|c| c == k).unwrap())
            .collect();
        let key_of = |r: &Vec<Value>| key_pos.iter().map(|&p| r[p].clone()).collect::<Vec<_>>();
        for change in &t.rows {
            match change {
                RowChange::Removed { key, values, count } => {
                    for _ in 0..*count {
                        let i = if key.is_empty() {
                            rows.iter().position(|r| r == values)
                        } else {
                            rows.iter().position(|r| &key_of(r) == key)
                        };
                        rows.remove(i.expect("a removed row exists"));
                    }
                }
                RowChange::Added { values, count, .. } => {
                    for _ in 0..*count {
                        rows.push(values.clone());
                    }
                }
                RowChange::Changed { key, changes } => {
                    let r = rows.iter_mut().find(|r| &key_of(r) == key).unwrap();
                    for c in changes {
                        let p = t.columns.iter().position(|col| *col == c.column).unwrap();
                        assert_eq!(r[p], c.old);
                        r[p] = c.new.clone();
                    }
                }
            }
        }
        rows.sort();
        rows
    }

    fn project(y: &Table, columns: &[String]) -> Rows {
        let pos: Vec<usize> = columns
            .iter()
            .map(|c| y.columns.iter().position(|yc| yc == c).unwrap())
            .collect();
        let mut rows: Rows = y
            .rows
            .iter()
            .map(|r| pos.iter().map(|&p| r[p].clone()).collect())
            .collect();
        rows.sort();
        rows
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(None),
            6 => "[a-c]{0,3}".prop_map(Some),
            1 => prop::sample::select(vec!["tab\there", "line\nbreak", "back\\slash", "\\N", ""])
                .prop_map(|s| Some(s.to_owned())),
        ]
    }

    /// A random table X and a random Y derived from it (deletes, updates, inserts, and
    /// sometimes a dropped or added column).
    fn tables() -> impl Strategy<Value = (Table, Table)> {
        (1usize..4, any::<bool>(), 0usize..300, any::<u64>())
            .prop_flat_map(|(ncols, keyed, nrows, seed)| {
                (
                    prop::collection::vec(prop::collection::vec(value(), ncols), nrows),
                    prop::collection::vec(prop::collection::vec(value(), ncols), 0..40),
                    prop::collection::vec(any::<u8>(), nrows),
                    Just((ncols, keyed, seed)),
                )
            })
            .prop_map(|(mut rows, extra, ops, (ncols, keyed, seed))| {
                let columns: Vec<String> = (0..ncols).map(|i| format!("c{i}")).collect();
                if keyed {
                    for (i, r) in rows.iter_mut().enumerate() {
                        r[0] = Some((i * 3).to_string());
                    }
                }
                let x = Table {
                    columns: columns.clone(),
                    keyed,
                    rows: rows.clone(),
                };
                let mut y_rows = Vec::new();
                for (r, op) in rows.iter().zip(&ops) {
                    match op % 8 {
                        0 => {}
                        1 if ncols > 1 => {
                            let mut r = r.clone();
                            r[ncols - 1] = Some(format!("u{op}"));
                            y_rows.push(r);
                        }
                        2 if !keyed => {
                            y_rows.push(r.clone());
                            y_rows.push(r.clone());
                        }
                        _ => y_rows.push(r.clone()),
                    }
                }
                for (i, mut r) in extra.into_iter().enumerate() {
                    if keyed {
                        r[0] = Some((1 + 3 * i * 7).to_string());
                    }
                    y_rows.push(r);
                }
                let mut y = Table {
                    columns,
                    keyed,
                    rows: y_rows,
                };
                match seed % 5 {
                    0 if ncols > 1 => {
                        // Y lost its last column.
                        y.columns.pop();
                        for r in &mut y.rows {
                            r.pop();
                        }
                    }
                    1 => {
                        y.columns.push("added".into());
                        for r in &mut y.rows {
                            r.push(Some("z".into()));
                        }
                    }
                    _ => {}
                }
                (x, y)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn applying_diff_x_y_to_x_gives_y((x, y) in tables()) {
            let store = store();
            let d = run_diff(&store, &x, &y, usize::MAX);
            let t = match d.tables.first() {
                Some(t) => t.clone(),
                None => {
                    prop_assert_eq!(project(&x, &x.columns), project(&y, &x.columns));
                    return Ok(());
                }
            };
            prop_assert!(!t.rows_truncated);
            prop_assert_eq!(
                t.rows_added + t.rows_removed + t.rows_changed,
                t.rows.iter().map(|r| match r {
                    RowChange::Added { count, .. } | RowChange::Removed { count, .. } => *count,
                    RowChange::Changed { .. } => 1,
                }).sum::<u64>()
            );
            prop_assert_eq!(apply(&x, &t), project(&y, &t.columns));
        }

        #[test]
        fn diff_x_x_is_empty_and_reads_no_chunk((x, _) in tables()) {
            let store = store();
            let a = root(vec![put_table(&store, &x)]);
            let before = store.backend().gets.load(Ordering::SeqCst);
            let d = futures::executor::block_on(diff(&store, &a, &a.clone(), &DiffOptions {
                row_limit: usize::MAX,
                ..DiffOptions::default()
            })).unwrap();
            prop_assert!(d.is_empty());
            prop_assert!(d.tables.is_empty());
            prop_assert_eq!(d.stats.chunks_read, 0);
            prop_assert_eq!(store.backend().gets.load(Ordering::SeqCst), before);
        }
    }

    #[test]
    fn one_changed_row_reads_a_few_chunks() {
        let store = store();
        let rows: Rows = (0..3000)
            .map(|i| vec![Some(i.to_string()), Some(format!("value number {i}"))])
            .collect();
        let x = Table {
            columns: vec!["id".into(), "v".into()],
            keyed: true,
            rows,
        };
        let mut y = x.clone();
        y.rows[1500][1] = Some("changed".into());
        let d = run_diff(&store, &x, &y, 10);
        let t = &d.tables[0];
        assert_eq!((t.rows_added, t.rows_removed, t.rows_changed), (0, 0, 1));
        assert!(d.stats.chunks_read <= 4, "{:?}", d.stats);
        assert!(d.stats.chunks_shared > 50, "{:?}", d.stats);
        assert_eq!(
            t.rows,
            vec![RowChange::Changed {
                key: vec![Some("1500".into())],
                changes: vec![ColumnChange {
                    column: "v".into(),
                    old: Some("value number 1500".into()),
                    new: Some("changed".into()),
                }],
            }]
        );
    }

    #[test]
    fn added_and_dropped_tables_are_counted_from_the_manifest() {
        let store = store();
        let x = Table {
            columns: vec!["id".into()],
            keyed: true,
            rows: (0..500).map(|i| vec![Some(i.to_string())]).collect(),
        };
        let a = root(vec![]);
        let b = root(vec![put_table(&store, &x)]);
        let before = store.backend().gets.load(Ordering::SeqCst);
        let d = futures::executor::block_on(diff(&store, &a, &b, &DiffOptions::default())).unwrap();
        assert_eq!(store.backend().gets.load(Ordering::SeqCst), before);
        assert_eq!(d.tables[0].change, TableChange::Added);
        assert_eq!(d.tables[0].rows_added, 500);
        let d = futures::executor::block_on(diff(
            &store,
            &b,
            &a,
            &DiffOptions {
                row_limit: 3,
                ..DiffOptions::default()
            },
        ))
        .unwrap();
        assert_eq!(d.tables[0].change, TableChange::Dropped);
        assert_eq!(d.tables[0].rows.len(), 3);
        assert!(d.tables[0].rows_truncated);
    }
}
