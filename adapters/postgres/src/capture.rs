//! Capture: one consistent, online read of a database into the store.
//!
//! A coordinator opens a `REPEATABLE READ READ ONLY` transaction and exports its snapshot;
//! pg_dump (schema) and the row readers (one connection each) all read at that snapshot, so
//! the result is one point in time while other sessions keep writing. Each table's rows are
//! read in primary-key order as text COPY, cut into row-aligned chunks, hashed, and
//! compressed and written only when the store does not have them yet.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use phony_core::manifest::{build_tree, MANIFEST_FORMAT};
use phony_core::{
    codec, row, Backend, BlobId, BlobRef, RootManifest, RowChunk, RowChunker, SequenceState,
    SnapshotStats, SourceInfo, Store, Stored, TableEntry,
};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::catalog::{self, TableInfo};
use crate::connect::ConnectionTarget;
use crate::error::{pg, Error, Result};
use crate::schema_dump::{PgDump, Section};
use crate::sql::{ident, literal, qualified};
use crate::tracking;

/// Reports progress: plain bytes read so far are added in steps.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How to capture.
#[derive(Clone)]
pub struct CaptureOptions {
    /// Connections reading rows in parallel.
    pub workers: usize,
    /// Chunks being hashed, compressed or written at once, per reader.
    pub in_flight: usize,
    /// Called as rows are read.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for CaptureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureOptions")
            .field("workers", &self.workers)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Default for CaptureOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        CaptureOptions {
            workers: cores.clamp(2, 4),
            in_flight: cores * 2,
            progress: None,
        }
    }
}

/// A finished capture: the root manifest is stored; the caller writes the record.
#[derive(Debug, Clone)]
pub struct Captured {
    pub root: BlobId,
    pub manifest: RootManifest,
    pub stats: SnapshotStats,
    pub source: SourceInfo,
}

#[derive(Debug, Default)]
struct Tally {
    blobs: u64,
    new_blobs: u64,
    stored_bytes: u64,
    new_bytes: u64,
}

impl Tally {
    fn add(&mut self, s: Stored) {
        self.blobs += 1;
        self.stored_bytes += s.stored_bytes;
        if s.new {
            self.new_blobs += 1;
            self.new_bytes += s.stored_bytes;
        }
    }
}

/// Captures the database at `target` into `store`.
pub async fn capture<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    opts: &CaptureOptions,
) -> Result<Captured> {
    let target = target.with_application_name("phony capture");
    let coordinator = target.connect().await?;
    coordinator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(pg("starting the capture transaction"))?;
    let row = coordinator
        .query_one(
            "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_current_snapshot()::text",
            &[],
        )
        .await
        .map_err(pg("exporting the capture snapshot"))?;
    let (snapshot, point_in_time): (String, String) = (row.get(0), row.get(1));
    let tracked = tracking::valid(&coordinator).await?;
    let (server_version_num, server_version) = catalog::server_version(&coordinator).await?;
    let pg_dump = PgDump::find(server_version_num / 10000).await?;

    let dumps = [Section::PreData, Section::PostData].map(|section| {
        let (pg_dump, target, snapshot) = (pg_dump.clone(), target.clone(), snapshot.clone());
        tokio::spawn(async move { pg_dump.dump(&target, Some(section), Some(&snapshot)).await })
    });

    let tables = catalog::tables(&coordinator).await?;
    let sequences = read_sequences(&coordinator).await?;
    let materialized_views = catalog::populated_materialized_views(&coordinator).await?;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let entries = read_tables(&target, &snapshot, store, tables, opts, &tally).await?;

    let [pre, post] = dumps;
    let pre_data = put_text(store, join(pre).await??, &tally).await?;
    let post_data = put_text(store, join(post).await??, &tally).await?;
    coordinator
        .batch_execute("COMMIT")
        .await
        .map_err(pg("ending the capture transaction"))?;

    let manifest = RootManifest {
        format: MANIFEST_FORMAT,
        server_version_num,
        pre_data,
        post_data,
        tables: entries,
        sequences,
        materialized_views,
    };
    let encoded = manifest.encode();
    let (root, stored) = store.put_plain(&encoded.plain).await?;
    if tracked {
        // The database held this snapshot's state at the capture's point in time.
        tracking::record_mark(&coordinator, &root, &point_in_time).await?;
    }
    let mut t = lock(&tally);
    t.add(stored);
    let stats = SnapshotStats {
        tables: manifest.tables.len() as u64,
        rows: manifest.rows(),
        sequences: manifest.sequences.len() as u64,
        bytes: manifest.bytes(),
        stored_bytes: t.stored_bytes,
        new_bytes: t.new_bytes,
        blobs: t.blobs,
        new_blobs: t.new_blobs,
        duration_ms: 0,
    };
    drop(t);
    Ok(Captured {
        root,
        manifest,
        stats,
        source: SourceInfo {
            database: target.dbname().to_owned(),
            server_version,
        },
    })
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

async fn join<T>(h: JoinHandle<T>) -> Result<T> {
    h.await
        .map_err(|e| Error::Internal(format!("capture task failed: {e}")))
}

async fn put_text<B: Backend>(
    store: &Store<B>,
    text: String,
    tally: &Mutex<Tally>,
) -> Result<BlobRef> {
    let (id, stored) = store.put_plain(text.as_bytes()).await?;
    lock(tally).add(stored);
    Ok(BlobRef::plain(id, 0, text.len() as u64))
}

async fn read_sequences(client: &Client) -> Result<Vec<SequenceState>> {
    let mut out = Vec::new();
    for seq in catalog::sequences(client).await? {
        let row = client
            .query_one(
                &format!("SELECT last_value, is_called FROM {}", qualified(&seq)),
                &[],
            )
            .await
            .map_err(pg(format!("reading sequence {seq}")))?;
        out.push(SequenceState {
            sequence: seq,
            last_value: row.get(0),
            is_called: row.get(1),
        });
    }
    Ok(out)
}

async fn read_tables<B: Backend + 'static>(
    target: &ConnectionTarget,
    snapshot: &str,
    store: &Arc<Store<B>>,
    mut tables: Vec<TableInfo>,
    opts: &CaptureOptions,
    tally: &Arc<Mutex<Tally>>,
) -> Result<Vec<TableEntry>> {
    // Biggest first, so the last table to finish is a small one.
    tables.sort_by_key(|t| std::cmp::Reverse(t.bytes));
    let workers = opts.workers.clamp(1, tables.len().max(1));
    let queue = Arc::new(Mutex::new(VecDeque::from(tables)));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (target, snapshot, store, queue, tally, opts) = (
            target.clone(),
            snapshot.to_owned(),
            store.clone(),
            queue.clone(),
            tally.clone(),
            opts.clone(),
        );
        handles.push(tokio::spawn(async move {
            let client = target.connect().await?;
            client
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                    literal(&snapshot)
                ))
                .await
                .map_err(pg("joining the capture snapshot"))?;
            let mut entries = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(table) = next else { break };
                entries.push(read_table(&client, &store, &table, &opts, &tally).await?);
            }
            client
                .batch_execute("COMMIT")
                .await
                .map_err(pg("ending a reader transaction"))?;
            Ok::<_, Error>(entries)
        }));
    }
    let mut entries = Vec::new();
    let mut first_error = None;
    for h in handles {
        match join(h).await.and_then(|r| r) {
            Ok(e) => entries.extend(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    entries.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(entries)
}

/// The query that streams a table's stored columns in a stable order.
pub fn copy_out_sql(table: &TableInfo) -> String {
    let cols = if table.columns.is_empty() {
        String::new()
    } else {
        table
            .columns
            .iter()
            .map(|c| format!("t.{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let order = if table.key.is_empty() {
        "(t.*)::text COLLATE \"C\"".to_owned()
    } else {
        table
            .key
            .iter()
            .map(|c| format!("t.{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "COPY (SELECT {cols} FROM ONLY {} AS t ORDER BY {order}) TO STDOUT",
        qualified(&table.name)
    )
}

async fn read_table<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    table: &TableInfo,
    opts: &CaptureOptions,
    tally: &Arc<Mutex<Tally>>,
) -> Result<TableEntry> {
    let stream = client
        .copy_out(&copy_out_sql(table))
        .await
        .map_err(pg(format!("reading table {}", table.name)))?;
    futures::pin_mut!(stream);
    let mut chunker = RowChunker::new(store.config().chunking.params)?;
    let key_positions = key_positions(&table.columns, &table.key);
    let mut pending: VecDeque<JoinHandle<Result<(BlobRef, Stored)>>> = VecDeque::new();
    let mut refs = Vec::new();
    let in_flight = opts.in_flight.max(1);
    while let Some(buf) = stream
        .try_next()
        .await
        .map_err(pg(format!("reading table {}", table.name)))?
    {
        if let Some(p) = &opts.progress {
            p(buf.len() as u64);
        }
        for chunk in chunker.push(&buf) {
            pending.push_back(tokio::spawn(store_chunk(
                store.clone(),
                chunk,
                key_positions.clone(),
            )));
            while pending.len() >= in_flight {
                collect(&mut pending, &mut refs, tally).await?;
            }
        }
    }
    for chunk in chunker.finish() {
        pending.push_back(tokio::spawn(store_chunk(
            store.clone(),
            chunk,
            key_positions.clone(),
        )));
    }
    while !pending.is_empty() {
        collect(&mut pending, &mut refs, tally).await?;
    }
    let (content, nodes) = build_tree(&refs);
    for node in nodes {
        let (_, stored) = store.put_plain(&node.plain).await?;
        lock(tally).add(stored);
    }
    Ok(TableEntry {
        table: table.name.clone(),
        columns: table.columns.clone(),
        key: table.key.clone(),
        content,
    })
}

/// Where the key columns sit in a row, or `None` for a table without a (stored) key.
pub(crate) fn key_positions(columns: &[String], key: &[String]) -> Option<Arc<[usize]>> {
    if key.is_empty() {
        return None;
    }
    key.iter()
        .map(|k| columns.iter().position(|c| c == k))
        .collect::<Option<Vec<_>>>()
        .map(Arc::from)
}

async fn collect(
    pending: &mut VecDeque<JoinHandle<Result<(BlobRef, Stored)>>>,
    refs: &mut Vec<BlobRef>,
    tally: &Mutex<Tally>,
) -> Result<()> {
    if let Some(h) = pending.pop_front() {
        let (r, stored) = join(h).await??;
        lock(tally).add(stored);
        refs.push(r);
    }
    Ok(())
}

async fn store_chunk<B: Backend>(
    store: Arc<Store<B>>,
    chunk: RowChunk,
    key_positions: Option<Arc<[usize]>>,
) -> Result<(BlobRef, Stored)> {
    let id = BlobId::of(&chunk.data);
    let bounds = key_positions.as_deref().and_then(|positions| {
        let (first, last) = row::first_and_last(&chunk.data)?;
        Some((
            row::key_text(first, positions),
            row::key_text(last, positions),
        ))
    });
    let (first, last) = bounds.unzip();
    let r = BlobRef {
        id,
        rows: chunk.rows,
        bytes: chunk.data.len() as u64,
        first,
        last,
    };
    if let Some(size) = store.blob_size(&id).await? {
        return Ok((
            r,
            Stored {
                stored_bytes: size,
                new: false,
            },
        ));
    }
    let level = store.config().compression.level;
    let encoded = tokio::task::spawn_blocking(move || codec::encode(&chunk.data, level))
        .await
        .map_err(|e| Error::Internal(format!("compressing a chunk failed: {e}")))?;
    Ok((r, store.put_encoded(&id, encoded).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phony_core::QualifiedName;

    #[test]
    fn rows_are_read_in_key_order_or_by_whole_row() {
        let mut t = TableInfo {
            name: QualifiedName::new("public", "Order Lines"),
            columns: vec!["id".into(), "Größe".into()],
            key: vec!["id".into()],
            bytes: 0,
        };
        assert_eq!(
            copy_out_sql(&t),
            r#"COPY (SELECT t."id", t."Größe" FROM ONLY "public"."Order Lines" AS t ORDER BY t."id") TO STDOUT"#
        );
        t.key.clear();
        assert!(copy_out_sql(&t).ends_with(r#"ORDER BY (t.*)::text COLLATE "C") TO STDOUT"#));
    }
}
