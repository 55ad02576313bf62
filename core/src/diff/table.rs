//! Diffing one table: a table only one side has, or the unshared chunk runs of a table
//! both sides have, fetched, decoded (through an [`Offload`]) and matched.

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::align::{self, Run};
use super::rows::{self, Layout, RowChange};
use super::{DiffOptions, DiffStats, Offload, TableChange, TableDiff};
use crate::codec::Chain;
use crate::error::Result;
use crate::manifest::{BlobRef, TableEntry};
use crate::store::{Backend, Store};

pub(super) fn empty_diff(e: &TableEntry, change: TableChange) -> TableDiff {
    TableDiff {
        schema: e.table.schema.clone(),
        name: e.table.name.clone(),
        change,
        columns: e.columns.clone(),
        key: e.key.clone(),
        rows_added: 0,
        rows_removed: 0,
        rows_changed: 0,
        columns_only_in_from: vec![],
        columns_only_in_to: vec![],
        notes: vec![],
        rows: vec![],
        rows_truncated: false,
    }
}

/// A table only one side has: counts from the manifest; rows read only as far as kept.
pub(super) async fn one_side<B: Backend>(
    store: &Store<B>,
    e: &TableEntry,
    added: bool,
    opts: &DiffOptions,
    stats: &mut DiffStats,
) -> Result<TableDiff> {
    let mut t = empty_diff(
        e,
        if added {
            TableChange::Added
        } else {
            TableChange::Dropped
        },
    );
    if added {
        t.rows_added = e.content.rows;
    } else {
        t.rows_removed = e.content.rows;
    }
    if opts.row_limit > 0 && e.content.rows > 0 {
        let layout = Layout::new(&e.columns, &e.key, &e.columns, &e.key);
        for chunk in store.table_chunks(e).await? {
            if t.rows.len() >= opts.row_limit {
                break;
            }
            let plain = fetch(store, &chunk, stats).await?;
            rows::one_side(
                &layout,
                added,
                rows::lines(&plain),
                &mut t.rows,
                opts.row_limit,
            );
        }
        let kept: u64 = t
            .rows
            .iter()
            .map(|r| match r {
                RowChange::Added { count, .. } | RowChange::Removed { count, .. } => *count,
                RowChange::Changed { .. } => 1,
            })
            .sum();
        t.rows_truncated = kept < e.content.rows;
    }
    Ok(t)
}

async fn fetch<B: Backend>(
    store: &Store<B>,
    c: &BlobRef,
    stats: &mut DiffStats,
) -> Result<Vec<u8>> {
    stats.chunks_read += 1;
    stats.bytes_read += c.bytes;
    store.get_plain(&c.id, c.bytes).await
}

/// A run's chunks as stored, each with the bases it needs: (plain size, chain).
type StoredChunks = Vec<(u64, Chain)>;

async fn fetch_stored<B: Backend>(store: &Store<B>, chunks: &[BlobRef]) -> Result<StoredChunks> {
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        out.push((c.bytes, store.get_chain(&c.id, c.bytes).await?));
    }
    Ok(out)
}

fn decode_all(chunks: &StoredChunks) -> Result<Vec<Vec<u8>>> {
    chunks
        .iter()
        .map(|(bytes, chain)| chain.decode_exact(*bytes))
        .collect()
}

/// What one run contributes.
#[derive(Debug)]
enum RunOutcome {
    Keyed(rows::Collector),
    Multiset(rows::Multiset),
}

/// Plain bytes of runs handed to `offload` at once: small runs are batched so that the
/// hand-over costs little next to the work.
const BATCH_BYTES: u64 = 4 << 20;

/// Cuts runs into batches of about [`BATCH_BYTES`].
fn batches(runs: &[Run]) -> Vec<&[Run]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in runs.iter().enumerate() {
        bytes += r.bytes();
        if bytes >= BATCH_BYTES {
            out.push(&runs[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < runs.len() {
        out.push(&runs[start..]);
    }
    out
}

/// Fetches a batch of runs, then decodes and matches them through `offload`.
async fn process_batch<B: Backend, O: Offload>(
    store: &Store<B>,
    batch: &[Run],
    layout: &Arc<Layout>,
    limit: usize,
    offload: &O,
) -> Result<Vec<RunOutcome>> {
    let mut fetched = Vec::with_capacity(batch.len());
    for run in batch {
        fetched.push((
            fetch_stored(store, &run.from).await?,
            fetch_stored(store, &run.to).await?,
        ));
    }
    let layout = layout.clone();
    offload
        .run(move || {
            let mut out = Vec::with_capacity(fetched.len());
            for (from, to) in &fetched {
                let from = decode_all(from)?;
                let to = decode_all(to)?;
                let from: Vec<&[u8]> = from.iter().flat_map(|c| rows::lines(c)).collect();
                let to: Vec<&[u8]> = to.iter().flat_map(|c| rows::lines(c)).collect();
                out.push(if layout.keyed() {
                    let mut c = rows::Collector::new(limit);
                    rows::keyed_merge(&layout, &from, &to, &mut c);
                    RunOutcome::Keyed(c)
                } else {
                    let mut m = rows::Multiset::default();
                    m.merge(&from, &to);
                    RunOutcome::Multiset(m)
                });
            }
            Ok(out)
        })
        .await
}

/// A table both sides have.
pub(super) async fn compare<B: Backend, O: Offload>(
    store: &Store<B>,
    a: &TableEntry,
    b: &TableEntry,
    opts: &DiffOptions,
    offload: &O,
    stats: &mut DiffStats,
) -> Result<TableDiff> {
    let layout = Layout::new(&a.columns, &a.key, &b.columns, &b.key);
    let mut t = empty_diff(a, TableChange::Changed);
    t.columns = layout.columns.clone();
    t.key = layout.key_columns();
    t.columns_only_in_from = a
        .columns
        .iter()
        .filter(|c| !b.columns.contains(c))
        .cloned()
        .collect();
    t.columns_only_in_to = b
        .columns
        .iter()
        .filter(|c| !a.columns.contains(c))
        .cloned()
        .collect();
    let same_columns = a.columns == b.columns;
    if !same_columns {
        t.notes.push(format!(
            "columns differ: compared on the {} common column(s)",
            layout.columns.len()
        ));
    }
    if a.key != b.key {
        t.notes.push(format!(
            "primary key differs ({} → {}): rows compared as a multiset",
            show_key(&a.key),
            show_key(&b.key)
        ));
    } else if !a.key.is_empty() && !layout.keyed() {
        t.notes
            .push("key columns are not common to both sides: rows compared as a multiset".into());
    }

    let from_chunks = store.table_chunks(a).await?;
    let to_chunks = store.table_chunks(b).await?;
    let mut collector = rows::Collector::new(opts.row_limit);
    if same_columns {
        // Shared chunks cancel out; unshared ones are matched run by run, in step. With
        // the same key on both sides a keyed row never leaves its run; without one (or
        // with a changed key) the runs' leftover counts are summed.
        let runs = align::runs(&from_chunks, &to_chunks);
        let unshared: usize = runs.iter().map(Run::chunks).sum();
        stats.chunks_shared += ((from_chunks.len() + to_chunks.len() - unshared) / 2) as u64;
        for run in &runs {
            stats.chunks_read += run.chunks() as u64;
            stats.bytes_read += run.bytes();
        }
        let layout = Arc::new(layout);
        let mut multiset = rows::Multiset::default();
        let mut outcomes = stream::iter(
            batches(&runs)
                .into_iter()
                .map(|b| process_batch(store, b, &layout, opts.row_limit, offload)),
        )
        .buffered(opts.concurrency.max(1))
        .into_stream();
        while let Some(batch) = outcomes.try_next().await? {
            for outcome in batch {
                match outcome {
                    RunOutcome::Keyed(c) => collector.absorb(c),
                    RunOutcome::Multiset(m) => multiset.absorb(m),
                }
            }
        }
        if !layout.keyed() {
            multiset.finish(&mut collector);
        }
    } else {
        // Equal chunks no longer mean equal compared values: read everything.
        let mut from = Vec::new();
        for c in &from_chunks {
            from.push(fetch(store, c, stats).await?);
        }
        let mut to = Vec::new();
        for c in &to_chunks {
            to.push(fetch(store, c, stats).await?);
        }
        let from_lines = from.iter().flat_map(|c| rows::lines(c));
        let to_lines = to.iter().flat_map(|c| rows::lines(c));
        if layout.keyed() {
            rows::keyed_run(&layout, from_lines, to_lines, &mut collector);
        } else {
            let mut multiset = rows::Multiset::default();
            for line in from_lines {
                multiset.from_row(&layout, line);
            }
            for line in to_lines {
                multiset.to_row(&layout, line);
            }
            multiset.finish(&mut collector);
        }
    }
    t.rows_added = collector.added;
    t.rows_removed = collector.removed;
    t.rows_changed = collector.changed;
    t.rows = collector.rows;
    t.rows_truncated = collector.truncated;
    if t.rows_added + t.rows_removed + t.rows_changed == 0 && same_columns && a.key == b.key {
        t.change = TableChange::Unchanged;
    }
    Ok(t)
}

fn show_key(key: &[String]) -> String {
    if key.is_empty() {
        "none".into()
    } else {
        format!("({})", key.join(", "))
    }
}
