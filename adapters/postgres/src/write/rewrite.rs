//! Delta restore: rewrite only the rows that differ from the snapshot.
//!
//! The live table is re-read (on a second connection, in the same key order as a capture)
//! and cut into chunks with the store's parameters. Chunks present on both sides hold the
//! same rows, so every difference lies in the chunks present on one side only: the live
//! ones are streamed into a temporary table `l`, the snapshot's into `s`, and three
//! statements turn the table into the snapshot's rows — by primary key (delete, update,
//! insert) or, for a table without one, as a multiset of whole rows.
//!
//! The caller runs this inside the restore transaction, with `session_replication_role =
//! replica` (no user or foreign-key triggers fire: the end state is the snapshot's, which
//! satisfied them) and the tables locked against writers.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use phony_core::{row, Backend, BlobId, BlobRef, ChunkParams, Store, TableEntry};
use tokio_postgres::{Client, CopyInSink};

use crate::error::{pg, Result};
use crate::keys::{affected_chunks, changed_keys_sql, key_types, key_values, Staged};
use crate::read::catalog::TableInfo;
use crate::read::chunk_stream::{copy_out_sql, decoded_chunks, Bound, ChunkStream};
use crate::sql::{column_list, columns_of, ident, ident_list, literal, qualified};
use crate::tracking::{since_mark, Mark};
use crate::write::restore::plan::TableRewrite;

mod apply;
mod from_log;

pub(crate) use apply::copy_in_rows;
use apply::{apply_keyed, apply_located, apply_multiset, key_eq, row_of, LIVE, SNAP};

pub(crate) use from_log::{restore_from_log, Logging};

/// Makes `table` hold the snapshot's rows. Returns `None` when it already does.
/// `log`: the relation id to log the rewritten keys under, when tracking.
pub(crate) async fn restore_table<B: Backend + 'static>(
    client: &Client,
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    params: ChunkParams,
    prefetch: usize,
    log: Option<u32>,
) -> Result<Option<TableRewrite>> {
    if !entry.key.is_empty() {
        if let Some(change) =
            restore_keyed_by_segments(client, reader, store, entry, params, log, prefetch).await?
        {
            return Ok(change);
        }
    }
    restore_table_staged(client, reader, store, entry, params, prefetch, log).await
}

/// The general content path: stage every row of the chunks present on one side only.
#[allow(clippy::too_many_arguments)]
async fn restore_table_staged<B: Backend + 'static>(
    client: &Client,
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    params: ChunkParams,
    prefetch: usize,
    log: Option<u32>,
) -> Result<Option<TableRewrite>> {
    let t = qualified(&entry.table);
    let snapshot_chunks = store.table_chunks(entry).await?;
    let mut unmatched = chunk_counts(&snapshot_chunks);

    // Re-read the live rows; stream the chunks the snapshot lacks into the live table.
    let sql = whole_table_sql(entry);
    let mut live = ChunkStream::open(reader, &sql, &entry.table, params, None).await?;
    let mut live_sink: Option<std::pin::Pin<Box<CopyInSink<Bytes>>>> = None;
    while let Some(chunk) = live.next().await? {
        absorb(client, entry, &mut unmatched, &mut live_sink, chunk.data).await?;
    }
    let snapshot_only: Vec<BlobRef> = {
        let mut left = unmatched;
        snapshot_chunks
            .into_iter()
            .filter(|c| match left.get_mut(&c.id) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
            .collect()
    };
    if live_sink.is_none() && snapshot_only.is_empty() {
        return Ok(None);
    }
    match live_sink.take() {
        Some(mut sink) => {
            sink.as_mut()
                .finish()
                .await
                .map_err(pg(format!("staging live rows of {}", entry.table)))?;
        }
        None => create_temp(client, entry, LIVE).await?,
    }

    // Stage the snapshot's rows of the differing chunks.
    create_temp(client, entry, SNAP).await?;
    stage_chunks(client, store, entry, snapshot_only, prefetch, None).await?;
    client
        .batch_execute(&format!("ANALYZE {LIVE}; ANALYZE {SNAP};"))
        .await
        .map_err(pg("analyzing staged rows"))?;

    let reload = copy_all(client, store, entry, prefetch);
    finish(client, entry, &t, log, reload).await.map(Some)
}

/// [`restore_table`] on the restore's own connection, for a table whose locks (taken by the
/// restore's own DDL) no other connection may wait for: the live rows are read first, the
/// chunks the snapshot lacks kept in memory up to `cap` bytes, then staged and applied.
/// Past `cap`, most of the table differs and it is reloaded whole.
pub(crate) async fn restore_table_here<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    params: ChunkParams,
    prefetch: usize,
    cap: usize,
) -> Result<Option<TableRewrite>> {
    let t = qualified(&entry.table);
    let snapshot_chunks = store.table_chunks(entry).await?;
    let mut unmatched = chunk_counts(&snapshot_chunks);
    let sql = whole_table_sql(entry);
    let mut live = ChunkStream::open(client, &sql, &entry.table, params, None).await?;
    let mut live_only: Vec<Bytes> = Vec::new();
    let (mut held, mut overflow) = (0usize, false);
    // Read to the end even past `cap`: a COPY left half-read blocks the connection.
    while let Some(chunk) = live.next().await? {
        let id = BlobId::of(&chunk.data);
        match unmatched.get_mut(&id) {
            Some(n) if *n > 0 => *n -= 1,
            _ if overflow => {}
            _ => {
                held += chunk.data.len();
                overflow = held > cap;
                match overflow {
                    true => live_only.clear(),
                    false => live_only.push(chunk.data),
                }
            }
        }
    }
    drop(live);
    if overflow {
        client
            .batch_execute(&format!("DELETE FROM ONLY {t}"))
            .await
            .map_err(pg(format!("reloading table {}", entry.table)))?;
        copy_all(client, store, entry, prefetch).await?;
        return Ok(Some(TableRewrite {
            table: entry.table.clone(),
            deleted: 0,
            inserted: entry.content.rows,
            updated: 0,
            reloaded: Some(format!(
                "over {cap} bytes of its live rows differ: reloading it costs less"
            )),
        }));
    }
    let snapshot_only: Vec<BlobRef> = snapshot_chunks
        .into_iter()
        .filter(|c| match unmatched.get_mut(&c.id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .collect();
    if live_only.is_empty() && snapshot_only.is_empty() {
        return Ok(None);
    }
    create_temp(client, entry, LIVE).await?;
    if !live_only.is_empty() {
        let context = format!("staging live rows of {}", entry.table);
        let sink = client
            .copy_in::<_, Bytes>(&format!("COPY {LIVE} FROM STDIN"))
            .await
            .map_err(pg(context.clone()))?;
        futures::pin_mut!(sink);
        for data in live_only {
            sink.send(data).await.map_err(pg(context.clone()))?;
        }
        sink.as_mut().finish().await.map_err(pg(context))?;
    }
    create_temp(client, entry, SNAP).await?;
    stage_chunks(client, store, entry, snapshot_only, prefetch, None).await?;
    client
        .batch_execute(&format!("ANALYZE {LIVE}; ANALYZE {SNAP};"))
        .await
        .map_err(pg("analyzing staged rows"))?;
    let reload = copy_all(client, store, entry, prefetch);
    finish(client, entry, &t, None, reload).await.map(Some)
}

/// Applies the staged rows, logs the keys it touched (when tracking), drops the staging.
async fn finish(
    client: &Client,
    entry: &TableEntry,
    t: &str,
    log: Option<u32>,
    // Reloads a table without a key whole (see [`apply_multiset`]); run only for those.
    reload: impl std::future::Future<Output = Result<()>>,
) -> Result<TableRewrite> {
    if let Some(relid) = log {
        // Log what this restore is about to change, as the tracking triggers would have:
        // each differing key with its current row (its image), so other marks stay valid.
        let sql = if entry.key.is_empty() {
            format!("INSERT INTO phony.changes (relid, key) VALUES ({relid}, NULL)")
        } else {
            let keys = ident_list(&entry.key);
            let parts: Vec<String> = entry
                .key
                .iter()
                .map(|k| format!("d.{}::text", ident(k)))
                .collect();
            let (l, s) = (row_of("l", &entry.columns), row_of("s", &entry.columns));
            format!(
                "INSERT INTO phony.changes (relid, key, img) \
                 SELECT {relid}, ARRAY[{}], (SELECT t::text FROM ONLY {t} AS t WHERE {}) FROM ( \
                   SELECT DISTINCT {keys} FROM ( \
                     (SELECT {keys}, {l} FROM {LIVE} l EXCEPT ALL SELECT {keys}, {s} FROM {SNAP} s) \
                     UNION ALL \
                     (SELECT {keys}, {s} FROM {SNAP} s EXCEPT ALL SELECT {keys}, {l} FROM {LIVE} l) \
                   ) x \
                 ) d",
                parts.join(", "),
                key_eq("t", "d", &entry.key)
            )
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(pg("logging the rewritten rows"))?;
    }
    let change = if entry.key.is_empty() {
        apply_multiset(client, entry, t, reload).await?
    } else {
        let in_place = client
            .query_one(
                &format!(
                    "SELECT {}",
                    crate::tracking::in_place_sql(&format!("{}::regclass", literal(t)))
                ),
                &[],
            )
            .await
            .map_err(pg(format!("reading the constraints of {}", entry.table)))?
            .get(0);
        apply_keyed(client, entry, t, in_place).await?
    };
    client
        .batch_execute(&format!("DROP TABLE {LIVE}; DROP TABLE {SNAP};"))
        .await
        .map_err(pg("dropping staged rows"))?;
    Ok(change)
}

/// Copies the rows of `chunks` from the store into the staging table of snapshot rows.
/// With `only`, just the rows whose key (key fields unescaped) is in the set.
async fn stage_chunks<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    chunks: Vec<BlobRef>,
    prefetch: usize,
    only: Option<&KeyFilter>,
) -> Result<()> {
    let context = format!("staging snapshot rows of {}", entry.table);
    let sink = client
        .copy_in::<_, Bytes>(&format!("COPY {SNAP} FROM STDIN"))
        .await
        .map_err(pg(context.clone()))?;
    futures::pin_mut!(sink);
    let blobs = decoded_chunks(store, chunks, prefetch);
    futures::pin_mut!(blobs);
    while let Some(plain) = blobs.try_next().await? {
        let plain = match only {
            Some(filter) => filter.keep(&plain),
            None => plain,
        };
        if !plain.is_empty() {
            sink.send(Bytes::from(plain))
                .await
                .map_err(pg(context.clone()))?;
        }
    }
    sink.as_mut().finish().await.map_err(pg(context))?;
    Ok(())
}

/// Keys to keep when staging snapshot rows, compared as unescaped text.
#[derive(Debug)]
pub(crate) struct KeyFilter {
    positions: Vec<usize>,
    keys: std::collections::HashSet<Vec<Vec<u8>>>,
}

impl KeyFilter {
    /// The rows of `rows` (COPY text) whose key is in the set.
    fn keep(&self, rows: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in row::lines(rows) {
            let fields: Vec<&[u8]> = row::fields(line).collect();
            let key: Option<Vec<Vec<u8>>> = self
                .positions
                .iter()
                .map(|&p| fields.get(p).and_then(|f| row::unescape(f)))
                .collect();
            if key.is_some_and(|k| self.keys.contains(&k)) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        out
    }
}

/// Key types whose `::text` form (what the tracking triggers log) is exactly their COPY
/// text, whatever the session's settings, and whose equal values are spelled the same (a
/// collation of their own, nondeterministic maybe, is part of the type's name here: see
/// [`key_types`]).
fn text_stable(sql_type: &str) -> bool {
    matches!(
        sql_type,
        "smallint" | "integer" | "bigint" | "text" | "uuid" | "oid"
    ) || (sql_type.starts_with("character varying") && !sql_type.contains(" COLLATE "))
}

/// The logged keys of a table since a mark, as a filter, when its key types allow.
async fn key_filter(
    client: &Client,
    entry: &TableEntry,
    types: &[String],
    relids: &[u32],
    mark: &Mark,
) -> Result<Option<KeyFilter>> {
    if !types.iter().all(|t| text_stable(t)) {
        return Ok(None);
    }
    let Some(positions) = crate::keys::key_positions(&entry.columns, &entry.key) else {
        return Ok(None);
    };
    let rows = client
        .query(
            &format!(
                "SELECT DISTINCT key FROM phony.changes WHERE relid = ANY($1::oid[]) \
                 AND key IS NOT NULL AND {}",
                since_mark("$2::text")
            ),
            &[&relids, &mark.snap],
        )
        .await
        .map_err(pg(format!("reading the changed keys of {}", entry.table)))?;
    let keys = rows
        .iter()
        .map(|r| {
            let key: Vec<Option<String>> = r.get(0);
            key.into_iter()
                .map(|k| k.unwrap_or_default().into_bytes())
                .collect()
        })
        .collect();
    Ok(Some(KeyFilter {
        positions: positions.to_vec(),
        keys,
    }))
}

/// Makes a keyed `table` hold the snapshot's rows, reading only the rows whose keys the
/// change log names since `mark` and the snapshot chunks whose key ranges hold them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn restore_table_keys<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    relids: &[u32],
    mark: &Mark,
    prefetch: usize,
    log: Option<u32>,
) -> Result<Option<TableRewrite>> {
    let t = qualified(&entry.table);
    let chunks = store.table_chunks(entry).await?;
    let types = key_types(client, entry).await?;
    let relids = relids.to_vec();
    let wanted = affected_chunks(client, entry, &chunks, &types, &relids, mark).await?;
    let selected: Vec<BlobRef> = wanted
        .iter()
        .filter_map(|&i| chunks.get(i).cloned())
        .collect();

    create_temp(client, entry, SNAP).await?;
    let filter = key_filter(client, entry, &types, &relids, mark).await?;
    stage_chunks(client, store, entry, selected, prefetch, filter.as_ref()).await?;
    // The live rows of every key the log names or the staged chunks hold.
    let keys = ident_list(&entry.key);
    let t_keys = columns_of("t", &entry.key);
    let cols = column_list("t", &entry.columns);
    let changed = changed_keys_sql(entry, &types, 1, 2);
    let k: Vec<String> = (1..=entry.key.len()).map(|i| format!("k{i}")).collect();
    client
        .execute(
            &format!(
                "CREATE TEMP TABLE phony_live AS SELECT {cols} FROM ONLY {t} AS t
                 WHERE ({}) IN (SELECT {k} FROM ({changed}) c UNION SELECT {keys} FROM {SNAP})",
                t_keys.join(", "),
                k = k.join(", "),
            ),
            &[&relids, &mark.snap],
        )
        .await
        .map_err(pg(format!("staging live rows of {}", entry.table)))?;
    client
        .batch_execute(&format!("ANALYZE {LIVE}; ANALYZE {SNAP};"))
        .await
        .map_err(pg("analyzing staged rows"))?;
    finish(client, entry, &t, log, async { Ok(()) })
        .await
        .map(Some)
}

/// Matches one live chunk against the snapshot's; stages it when the snapshot lacks it.
async fn absorb(
    client: &Client,
    entry: &TableEntry,
    unmatched: &mut HashMap<BlobId, usize>,
    sink: &mut Option<std::pin::Pin<Box<CopyInSink<Bytes>>>>,
    data: Bytes,
) -> Result<()> {
    let id = BlobId::of(&data);
    if let Some(n) = unmatched.get_mut(&id) {
        if *n > 0 {
            *n -= 1;
            return Ok(());
        }
    }
    if sink.is_none() {
        create_temp(client, entry, LIVE).await?;
        let s = client
            .copy_in::<_, Bytes>(&format!("COPY {LIVE} FROM STDIN"))
            .await
            .map_err(pg(format!("staging live rows of {}", entry.table)))?;
        *sink = Some(Box::pin(s));
    }
    if let Some(s) = sink.as_mut() {
        s.send(data)
            .await
            .map_err(pg(format!("staging live rows of {}", entry.table)))?;
    }
    Ok(())
}

async fn create_temp(client: &Client, entry: &TableEntry, name: &str) -> Result<()> {
    let cols = if entry.columns.is_empty() {
        String::new()
    } else {
        ident_list(&entry.columns)
    };
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE {} AS SELECT {cols} FROM ONLY {} LIMIT 0",
            name.trim_start_matches("pg_temp."),
            qualified(&entry.table)
        ))
        .await
        .map_err(pg(format!("staging rows of {}", entry.table)))
}

/// Why a keyed table whose differing rows take `staged` bytes (both sides) is cheaper to
/// reload than to rewrite, its snapshot holding `bytes`; `None` when it is not.
fn keyed_reload_reason(staged: u64, bytes: u64) -> Option<String> {
    (staged > 0 && staged >= bytes).then(|| {
        format!(
            "the rows that differ take {staged} bytes staged, against {bytes} in the snapshot: \
             reloading it costs less than rewriting them"
        )
    })
}

/// The rows `staged` deletes, inserts and updates, by key.
fn staged_counts(entry: &TableEntry, staged: &Staged) -> TableRewrite {
    if entry.key.is_empty() {
        return TableRewrite {
            table: entry.table.clone(),
            deleted: row::lines(&staged.live).count() as u64,
            inserted: row::lines(&staged.snap).count() as u64,
            updated: 0,
            reloaded: None,
        };
    }
    let positions = crate::keys::key_positions(&entry.columns, &entry.key).unwrap_or_default();
    let live: std::collections::HashSet<String> = row::lines(&staged.live)
        .map(|l| row::key_text(l, &positions))
        .collect();
    let snap: std::collections::HashSet<String> = row::lines(&staged.snap)
        .map(|l| row::key_text(l, &positions))
        .collect();
    let updated = live.intersection(&snap).count() as u64;
    TableRewrite {
        table: entry.table.clone(),
        deleted: live.len() as u64 - updated,
        inserted: snap.len() as u64 - updated,
        updated,
        reloaded: None,
    }
}

/// Copies every row of the snapshot's table into the live one (emptied by the caller).
async fn copy_all<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    prefetch: usize,
) -> Result<()> {
    let chunks = store.table_chunks(entry).await?;
    let context = format!("reloading table {}", entry.table);
    let sink = client
        .copy_in::<_, Bytes>(&format!(
            "COPY {} ({}) FROM STDIN",
            qualified(&entry.table),
            ident_list(&entry.columns)
        ))
        .await
        .map_err(pg(context.clone()))?;
    futures::pin_mut!(sink);
    let blobs = decoded_chunks(store, chunks, prefetch);
    futures::pin_mut!(blobs);
    while let Some(plain) = blobs.try_next().await? {
        sink.send(Bytes::from(plain))
            .await
            .map_err(pg(context.clone()))?;
    }
    sink.as_mut().finish().await.map_err(pg(context))?;
    Ok(())
}

/// A live chunk seen by the first pass: its id and the keys of its first and last rows.
#[derive(Debug)]
struct LiveChunk {
    id: BlobId,
    first: String,
    last: String,
}

/// A stretch between two chunks both sides share: the unshared chunks of each side there.
#[derive(Debug)]
struct Segment {
    snap: std::ops::Range<usize>,
    live: std::ops::Range<usize>,
    /// Last key of the shared chunk before, and first key of the one after.
    after: Option<String>,
    before: Option<String>,
}

/// The most snapshot bytes one segment may hold in memory; past that, stage instead.
const MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// Keyed content path that stages only the rows that differ. A first pass reads the live
/// table and hashes its chunks; chunks shared with the snapshot (in the same order) split
/// both sides into segments, and each segment's rows are compared in memory: the live rows
/// re-read by key range, the snapshot rows from its unshared chunks. Returns `None` when the
/// chunks do not line up or a segment is too big, for the staged path to take over.
async fn restore_keyed_by_segments<B: Backend + 'static>(
    client: &Client,
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    params: ChunkParams,
    log: Option<u32>,
    prefetch: usize,
) -> Result<Option<Option<TableRewrite>>> {
    let Some(positions) = crate::keys::key_positions(&entry.columns, &entry.key) else {
        return Ok(None);
    };
    let snap = store.table_chunks(entry).await?;
    // Pass 1: the live chunks.
    let sql = whole_table_sql(entry);
    let mut stream = ChunkStream::open(reader, &sql, &entry.table, params, None).await?;
    let mut live = Vec::new();
    while let Some(chunk) = stream.next().await? {
        if let Some((first, last)) = row::first_and_last(&chunk.data) {
            live.push(LiveChunk {
                id: BlobId::of(&chunk.data),
                first: row::key_text(first, &positions),
                last: row::key_text(last, &positions),
            });
        }
    }
    let Some(segments) = align(&snap, &live) else {
        return Ok(None);
    };
    if segments.is_empty() {
        return Ok(Some(None));
    }
    if segments
        .iter()
        .any(|s| snap[s.snap.clone()].iter().map(|c| c.bytes).sum::<u64>() > MAX_SEGMENT_BYTES)
    {
        return Ok(None);
    }
    let types = key_types(client, entry).await?;

    // Pass 2: per segment, compare rows in memory; stage only those that differ.
    let mut staged = Staged::default();
    for seg in &segments {
        let mut snap_rows: HashMap<String, Vec<u8>> = HashMap::new();
        for c in &snap[seg.snap.clone()] {
            let plain = store.get_plain(&c.id, c.bytes).await?;
            for line in row::lines(&plain) {
                snap_rows.insert(row::key_text(line, &positions), line.to_vec());
            }
        }
        if !seg.live.is_empty() {
            let after = seg.after.as_deref().map(key_values).transpose()?;
            let before = seg.before.as_deref().map(key_values).transpose()?;
            let sql = copy_out_sql(
                &table_info(entry),
                &types,
                after.as_deref().map(|values| Bound {
                    values,
                    inclusive: false,
                }),
                before.as_deref().map(|values| Bound {
                    values,
                    inclusive: false,
                }),
            );
            let mut stream = ChunkStream::open(reader, &sql, &entry.table, params, None).await?;
            let mut pending = Vec::new();
            while let Some(chunk) = stream.next().await? {
                pending.extend_from_slice(&chunk.data);
            }
            staged.compare(&mut snap_rows, row::lines(&pending), &positions);
        }
        staged.rest(snap_rows);
    }
    apply_staged(client, store, entry, staged, log, prefetch)
        .await
        .map(Some)
}

/// Makes a table hold the snapshot's rows given the rows that differ: `live`, the live
/// rows that differ from (or are missing in) the snapshot, and `snap`, the snapshot's rows
/// that differ from (or are missing among) the live ones, both COPY text. `None` when both
/// are empty.
///
/// When the rows that differ are most of the table (their staged bytes, both sides, at
/// least the snapshot's bytes of it: a few huge rows, or most rows changed), staging and
/// rewriting them costs more than deleting every row and copying the snapshot's in: the
/// table is reloaded instead, and the counts are still the rows that differ.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_staged<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    staged: Staged,
    log: Option<u32>,
    prefetch: usize,
) -> Result<Option<TableRewrite>> {
    if staged.live.is_empty() && staged.snap.is_empty() {
        return Ok(None);
    }
    if let Some(why) = keyed_reload_reason(staged.bytes(), entry.content.bytes) {
        let mut change = staged_counts(entry, &staged);
        change.reloaded = Some(why);
        let t = qualified(&entry.table);
        let mut sql = String::new();
        if let Some(relid) = log {
            // The whole table, as a TRUNCATE logs it: other marks compare its content.
            sql += &format!("INSERT INTO phony.changes (relid, key) VALUES ({relid}, NULL); ");
        }
        sql += &format!("DELETE FROM ONLY {t}");
        client
            .batch_execute(&sql)
            .await
            .map_err(pg(format!("reloading table {}", entry.table)))?;
        copy_all(client, store, entry, prefetch).await?;
        return Ok(Some(change));
    }
    let t = qualified(&entry.table);
    if let (true, Some(at)) = (entry.key.is_empty(), &staged.live_at) {
        if let Some(relid) = log {
            // As `finish` logs a table without a key: its content is compared next time.
            client
                .batch_execute(&format!(
                    "INSERT INTO phony.changes (relid, key) VALUES ({relid}, NULL)"
                ))
                .await
                .map_err(pg("logging the rewritten rows"))?;
        }
        return apply_located(client, entry, &t, at, staged.snap)
            .await
            .map(Some);
    }
    for (name, rows) in [(LIVE, staged.live), (SNAP, staged.snap)] {
        create_temp(client, entry, name).await?;
        if !rows.is_empty() {
            let context = format!("staging rows of {}", entry.table);
            copy_in_rows(client, &format!("COPY {name} FROM STDIN"), rows, &context).await?;
        }
    }
    client
        .batch_execute(&format!("ANALYZE {LIVE}; ANALYZE {SNAP};"))
        .await
        .map_err(pg("analyzing staged rows"))?;
    // A table without a key may still be reloaded whole (see [`apply_multiset`]).
    let reload = copy_all(client, store, entry, prefetch);
    finish(client, entry, &t, log, reload).await.map(Some)
}

/// Splits both chunk lists at the chunks they share, in order. `None` when shared chunks
/// do not appear in the same order on both sides (then the staged path runs).
fn align(snap: &[BlobRef], live: &[LiveChunk]) -> Option<Vec<Segment>> {
    // Shared chunks, matched in order: a longest run of equal ids walking both lists.
    let mut positions: HashMap<BlobId, Vec<usize>> = HashMap::new();
    for (i, c) in snap.iter().enumerate() {
        positions.entry(c.id).or_default().push(i);
    }
    let mut anchors: Vec<(usize, usize)> = Vec::new();
    let mut next_snap = 0;
    for (j, l) in live.iter().enumerate() {
        if let Some(list) = positions.get(&l.id) {
            if let Some(&i) = list.iter().find(|&&i| i >= next_snap) {
                anchors.push((i, j));
                next_snap = i + 1;
            }
        }
    }
    let mut segments = Vec::new();
    let (mut s0, mut l0) = (0usize, 0usize);
    let mut after: Option<String> = None;
    for &(i, j) in anchors
        .iter()
        .chain(std::iter::once(&(snap.len(), live.len())))
    {
        if i < s0 || j < l0 {
            return None;
        }
        if i > s0 || j > l0 {
            let before = live.get(j).map(|c| c.first.clone());
            segments.push(Segment {
                snap: s0..i,
                live: l0..j,
                after: after.clone(),
                before,
            });
        }
        after = live.get(j).map(|c| c.last.clone());
        s0 = i + 1;
        l0 = j + 1;
    }
    Some(segments)
}

/// `COPY` of every row of the table `entry` records, in its key order: the live side of
/// a comparison with the snapshot's chunks.
fn whole_table_sql(entry: &TableEntry) -> String {
    copy_out_sql(&table_info(entry), &[], None, None)
}

/// The table `entry` records, as a `COPY` query names it.
fn table_info(entry: &TableEntry) -> TableInfo {
    TableInfo {
        name: entry.table.clone(),
        columns: entry.columns.clone(),
        key: entry.key.clone(),
        bytes: 0,
    }
}

/// How many times each chunk occurs in `chunks` (a table may repeat one).
fn chunk_counts(chunks: &[BlobRef]) -> HashMap<BlobId, usize> {
    let mut counts: HashMap<BlobId, usize> = HashMap::new();
    for c in chunks {
        *counts.entry(c.id).or_default() += 1;
    }
    counts
}
