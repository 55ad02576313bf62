//! Capture: one consistent, online read of a database into the store.
//!
//! A coordinator opens a `REPEATABLE READ READ ONLY` transaction and exports its snapshot;
//! pg_dump (schema) and the row readers (one connection each) all read at that snapshot, so
//! the result is one point in time while other sessions keep writing. Each table's rows are
//! read in primary-key order as text COPY, cut into row-aligned chunks, hashed, and
//! compressed and written only when the store does not have them yet: as a delta against
//! the chunk it replaces in an earlier snapshot where one is known (see [`Successors`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use phony_core::manifest::{build_tree, MANIFEST_FORMAT};
use phony_core::{
    codec, row, Backend, BlobId, BlobRef, QualifiedName, RootManifest, RowChunk, SequenceState,
    SnapshotStats, SourceInfo, Store, Stored, TableEntry, Uploads,
};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::connect::ConnectionTarget;
use crate::error::{pg, Error, Result};
use crate::keys::{self, chunk_ref, key_positions};
use crate::read::catalog::{self, TableInfo};
pub use crate::read::chunk_stream::Progress;
use crate::read::chunk_stream::{copy_out_sql, Bound, ChunkStream};
use crate::read::incremental::{
    self, base_tree, encode_successor, read_base, store_tree, BaseTree, PatchJob, TableLog,
};
use crate::read::schema_dump::PgDump;
use crate::read::xmin;
use crate::sql::{literal, qualified};
use crate::tracking;
pub use options::CaptureOptions;
use options::{lock, Stages, Tally};

pub(crate) mod options;
mod successors;

use successors::{pairing, predecessor, Successors};

/// A finished capture: the root manifest is stored; the caller writes the record.
#[derive(Debug, Clone)]
pub struct Captured {
    pub root: BlobId,
    pub manifest: RootManifest,
    pub stats: SnapshotStats,
    pub source: SourceInfo,
    /// How each table's rows were captured.
    pub modes: BTreeMap<QualifiedName, TableMode>,
}

/// How a table's rows came into a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableMode {
    /// Every row was read.
    Full,
    /// Unchanged since the base snapshot: its chunks are the base's.
    Reused,
    /// The key ranges of the base's chunks that hold changed rows were read again.
    Ranges,
    /// Only the changed rows were read, and merged into the base's chunks.
    Patched,
}

/// Captures the database at `target` into `store`.
pub async fn capture<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    opts: &CaptureOptions,
) -> Result<Captured> {
    let target =
        target.with_application_name(opts.application_name.as_deref().unwrap_or("phony capture"));
    // With tracking, the snapshot holds its place among the marks from the moment its point
    // in time is fixed, so that no log entry its mark will need is pruned meanwhile.
    let side = target.connect().await?;
    let pending = match opts.read_only {
        true => None,
        false => tracking::lock_marks(&side).await?,
    };
    let result = capture_holding(&target, &side, pending.as_ref(), store, opts).await;
    if let (Err(_), Some(p)) = (&result, &pending) {
        tracking::release_mark(&side, p).await;
    }
    match result {
        Ok(captured) => Ok(captured),
        Err(e) => Err(crate::locks::explain(&side, e).await),
    }
}

async fn capture_holding<B: Backend + 'static>(
    target: &ConnectionTarget,
    side: &Client,
    pending: Option<&tracking::PendingMark>,
    store: &Arc<Store<B>>,
    opts: &CaptureOptions,
) -> Result<Captured> {
    let started = Instant::now();
    let target = target.clone();
    let coordinator = target.connect().await?;
    coordinator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(pg("starting the capture transaction"))?;
    // The point in time, with the server's identity when it says (see `xmin`).
    let row = coordinator
        .query_one(&xmin::capture_point_sql(), &[])
        .await
        .map_err(pg("exporting the capture snapshot"))?;
    let (snapshot, point_in_time): (String, String) = (row.get(0), row.get(1));
    if !opts.skip_large_objects {
        let count: i64 = coordinator
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
                &[],
            )
            .await
            .map_err(pg("counting large objects"))?
            .get(0);
        if count > 0 {
            return Err(Error::LargeObjects { count });
        }
    }
    if let Some(p) = pending {
        tracking::hold_mark(side, p, &point_in_time).await?;
    }
    let tracked = !opts.read_only && tracking::valid(&coordinator).await?;
    let (server_version_num, server_version) = catalog::server_version(&coordinator).await?;
    // With tracking, the newest snapshot this database held since its last schema change is
    // a base: its schema and unchanged tables are reused, changed ranges re-read.
    let base = if tracked && opts.incremental && opts.mask.is_none() {
        incremental_base(&coordinator, store).await?
    } else {
        None
    };
    let dumps = match &base {
        Some(_) => None,
        None => {
            // Both sections from one pg_dump run (its start, reading the catalog and
            // locking every table, is what costs), at the capture's snapshot.
            let pg_dump = PgDump::find(server_version_num / 10000).await?;
            let (target, snapshot) = (target.clone(), snapshot.clone());
            Some(tokio::spawn(async move {
                let started = Instant::now();
                let dumped = pg_dump.dump_sections(&target, Some(&snapshot)).await;
                (dumped, started.elapsed())
            }))
        }
    };

    let tables = catalog::tables(&coordinator).await?;
    let names: Vec<&QualifiedName> = tables.iter().map(|t| &t.name).collect();
    let point = xmin::point_from_row(&row, xmin::relations_digest(&coordinator, &names).await);
    let sequences = read_sequences(&coordinator).await?;
    let database = crate::database::properties(&coordinator).await?;
    let materialized_views = catalog::populated_materialized_views(&coordinator).await?;
    if let Some(fixed) = &opts.on_point_fixed {
        fixed(base.is_some());
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    // Into a store without snapshots, blobs are written without asking first.
    let uploads = Arc::new(Uploads::for_store(store).await?);
    let mut reused = Vec::new();
    let mut jobs = Vec::new();
    match &base {
        Some((manifest, mark)) => {
            let logs = incremental::table_logs(&coordinator, &tables, mark).await?;
            for (info, log) in tables.into_iter().zip(logs) {
                match plan_table(&coordinator, store, manifest, mark, info, log).await? {
                    Plan::Reuse(entry) => reused.push(entry),
                    Plan::Read(job) => jobs.push(job),
                }
            }
        }
        None => {
            // Every row is read; new chunks are stored against the chunks they most
            // likely replace, those of the newest snapshot of this database.
            let predecessor = match opts.incremental && store.deltas_allowed() {
                true => predecessor(store, target.dbname()).await?,
                false => None,
            };
            for info in tables {
                let predecessor = predecessor
                    .as_ref()
                    .and_then(|m| same_table(m, &info))
                    .cloned();
                jobs.push(Job::Full { info, predecessor });
            }
        }
    }
    let read = read_tables(&target, &snapshot, store, &uploads, jobs, opts, &tally).await?;
    let modes: BTreeMap<QualifiedName, TableMode> = read
        .iter()
        .map(|(e, mode)| (e.table.clone(), *mode))
        .chain(reused.iter().map(|e| (e.table.clone(), TableMode::Reused)))
        .collect();
    tracing::debug!("captured tables: {modes:?}");
    let mut entries: Vec<TableEntry> = read.into_iter().map(|(e, _)| e).collect();
    entries.extend(reused);
    entries.sort_by(|a, b| a.table.cmp(&b.table));

    let (pre_data, post_data) = match (dumps, &base) {
        (Some(both), _) => {
            let (dumped, took) = join(both).await?;
            lock(&tally).stages.schema = took;
            let (pre, post) = dumped?;
            (
                put_text(store, &uploads, pre, &tally).await?,
                put_text(store, &uploads, post, &tally).await?,
            )
        }
        (None, Some((manifest, _))) => (manifest.pre_data.clone(), manifest.post_data.clone()),
        (None, None) => return Err(Error::Internal("no schema to record".into())),
    };
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
        database: Some(database),
    };
    let encoded = manifest.encode();
    let (root, stored) = uploads.put_plain(store, &encoded.plain).await?;
    if tracked {
        // The database held this snapshot's state at the capture's point in time.
        tracking::record_mark(&coordinator, &root, &point_in_time, pending).await?;
        // Best effort: the snapshot is taken.
        if let Err(e) = tracking::tidy(&coordinator).await {
            tracing::debug!("tidying the change log: {e}");
        }
    }
    let mut t = lock(&tally);
    t.add(stored);
    tracing::debug!(
        "capture of {} tables in {:.3} s ({} new chunks and nodes); where the time went: {} \
         (busy time summed over tasks: stages that overlap add up to more than the wall time)",
        manifest.tables.len(),
        started.elapsed().as_secs_f64(),
        t.new_blobs,
        t.stages
    );
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
            point,
        },
        modes,
    })
}

async fn join<T>(h: JoinHandle<T>) -> Result<T> {
    h.await
        .map_err(|e| Error::Internal(format!("capture task failed: {e}")))
}

async fn put_text<B: Backend>(
    store: &Store<B>,
    uploads: &Uploads,
    text: String,
    tally: &Mutex<Tally>,
) -> Result<BlobRef> {
    let (id, stored) = uploads.put_plain(store, text.as_bytes()).await?;
    lock(tally).add(stored);
    Ok(BlobRef::plain(id, 0, text.len() as u64))
}

/// Every sequence's state, in one query.
async fn read_sequences(client: &Client) -> Result<Vec<SequenceState>> {
    let sequences = catalog::sequences(client).await?;
    if sequences.is_empty() {
        return Ok(Vec::new());
    }
    let sql = sequences
        .iter()
        .enumerate()
        .map(|(i, seq)| {
            format!(
                "SELECT {i}::int8, last_value, is_called FROM {}",
                qualified(seq)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(pg("reading sequences"))?;
    let mut states = vec![None; sequences.len()];
    for r in rows {
        if let Some(slot) = states.get_mut(r.get::<_, i64>(0) as usize) {
            *slot = Some((r.get(1), r.get(2)));
        }
    }
    sequences
        .into_iter()
        .zip(states)
        .map(|(sequence, state)| match state {
            Some((last_value, is_called)) => Ok(SequenceState {
                sequence,
                last_value,
                is_called,
            }),
            None => Err(Error::Internal(format!("sequence {sequence} was not read"))),
        })
        .collect()
}

async fn read_tables<B: Backend + 'static>(
    target: &ConnectionTarget,
    snapshot: &str,
    store: &Arc<Store<B>>,
    uploads: &Arc<Uploads>,
    mut tables: Vec<Job>,
    opts: &CaptureOptions,
    tally: &Arc<Mutex<Tally>>,
) -> Result<Vec<(TableEntry, TableMode)>> {
    // Biggest first, so the last table to finish is a small one.
    tables.sort_by_key(|t| std::cmp::Reverse(t.weight()));
    let workers = opts.workers.clamp(1, tables.len().max(1));
    let queue = Arc::new(Mutex::new(VecDeque::from(tables)));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (target, snapshot, store, uploads, queue, tally, opts) = (
            target.clone(),
            snapshot.to_owned(),
            store.clone(),
            uploads.clone(),
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
                entries.push(read_job(&client, &store, &uploads, &table, &opts, &tally).await?);
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
    entries.sort_by(|a, b| a.0.table.cmp(&b.0.table));
    Ok(entries)
}

/// The newest snapshot in the store that this database held since its last schema change
/// (tracking is known to be valid).
async fn incremental_base<B: Backend>(
    client: &Client,
    store: &Store<B>,
) -> Result<Option<(RootManifest, tracking::Mark)>> {
    let rows = client
        .query(
            "SELECT root FROM phony.marks ORDER BY marked_at DESC LIMIT 8",
            &[],
        )
        .await
        .map_err(pg("reading snapshot marks"))?;
    for r in rows {
        let Ok(root) = r.get::<_, String>(0).parse::<BlobId>() else {
            continue;
        };
        if store.blob_size(&root).await?.is_none() {
            continue;
        }
        if let Some(mark) = tracking::mark_if_usable(client, &root).await? {
            return Ok(Some((store.root(&root).await?, mark)));
        }
    }
    Ok(None)
}

enum Plan {
    Reuse(TableEntry),
    Read(Job),
}

/// Whether a table can be reused from the base as is, patched, re-read in ranges, or read
/// whole.
async fn plan_table<B: Backend>(
    client: &Client,
    store: &Store<B>,
    base: &RootManifest,
    mark: &tracking::Mark,
    info: TableInfo,
    log: TableLog,
) -> Result<Plan> {
    let Some(entry) = same_table(base, &info) else {
        return Ok(Plan::Read(Job::Full {
            info,
            predecessor: None,
        }));
    };
    let whole = |info| {
        Ok(Plan::Read(Job::Full {
            info,
            predecessor: Some(entry.clone()),
        }))
    };
    match log.logged {
        tracking::Logged::Unchanged => Ok(Plan::Reuse(entry.clone())),
        tracking::Logged::Whole => whole(info),
        tracking::Logged::Keys if info.key.is_empty() => whole(info),
        tracking::Logged::Keys if log.integer_key => {
            Ok(Plan::Read(Job::Patch(Box::new(PatchJob {
                info,
                base: entry.clone(),
                log,
                mark: mark.clone(),
            }))))
        }
        tracking::Logged::Keys => {
            let base = base_tree(store, &entry.content).await?;
            if base.chunks.is_empty() || base.chunks.iter().any(|c| c.first.is_none()) {
                return whole(info);
            }
            let types = if log.key_types.len() == info.key.len() {
                log.key_types
            } else {
                keys::key_types(client, entry).await?
            };
            let wanted =
                keys::affected_chunks(client, entry, &base.chunks, &types, &log.relids, mark)
                    .await?;
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for i in wanted {
                match runs.last_mut() {
                    Some((_, end)) if *end + 1 == i => *end = i,
                    _ => runs.push((i, i)),
                }
            }
            Ok(Plan::Read(Job::Ranges {
                info,
                base,
                runs,
                types,
            }))
        }
    }
}

/// The entry of `manifest` for the table `info` describes, if its columns and key are the
/// same.
fn same_table<'a>(manifest: &'a RootManifest, info: &TableInfo) -> Option<&'a TableEntry> {
    manifest
        .tables
        .iter()
        .find(|e| e.table == info.name && e.columns == info.columns && e.key == info.key)
}

/// What a reader does with one table.
#[derive(Debug)]
enum Job {
    /// Read every row; new chunks and manifest nodes are stored against those of
    /// `predecessor`, the table in an earlier snapshot (see [`Successors`]).
    Full {
        info: TableInfo,
        predecessor: Option<TableEntry>,
    },
    /// Keep the base snapshot's chunks but re-read the key ranges of `runs` (inclusive
    /// chunk index ranges), where the change log names changed rows.
    Ranges {
        info: TableInfo,
        base: BaseTree,
        runs: Vec<(usize, usize)>,
        types: Vec<String>,
    },
    /// Patch the base snapshot's chunks with the rows of the keys the log names (see
    /// [`incremental`]).
    Patch(Box<PatchJob>),
}

impl Job {
    fn weight(&self) -> i64 {
        match self {
            Job::Full { info, .. } => info.bytes,
            Job::Ranges { base, runs, .. } => runs
                .iter()
                .flat_map(|&(a, b)| base.chunks[a..=b].iter())
                .map(|c| c.bytes as i64)
                .sum(),
            Job::Patch(job) => job.weight(),
        }
    }
}

async fn read_job<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    uploads: &Arc<Uploads>,
    job: &Job,
    opts: &CaptureOptions,
    tally: &Arc<Mutex<Tally>>,
) -> Result<(TableEntry, TableMode)> {
    // `levels`: the nodes of the base chunk tree new nodes are stored against, if any.
    let (info, refs, mode, levels) = match job {
        Job::Patch(patch) => {
            if let Some(entry) = incremental::patch_table(client, store, patch, opts, tally).await?
            {
                return Ok((entry, TableMode::Patched));
            }
            let info = &patch.info;
            let sql = copy_out_sql(info, &[], None, None);
            let (successors, levels) = pairing(store, Some(&patch.base)).await;
            (
                info,
                read_chunks(client, store, uploads, &sql, info, opts, tally, successors).await?,
                TableMode::Full,
                levels,
            )
        }
        Job::Full { info, predecessor } => {
            let (successors, levels) = pairing(store, predecessor.as_ref()).await;
            let sql = copy_out_sql(info, &[], None, None);
            (
                info,
                read_chunks(client, store, uploads, &sql, info, opts, tally, successors).await?,
                TableMode::Full,
                levels,
            )
        }
        Job::Ranges {
            info,
            base,
            runs,
            types,
        } => {
            let chunks = &base.chunks;
            let mut refs = Vec::new();
            let mut next = 0;
            for &(a, b) in runs {
                refs.extend_from_slice(&chunks[next..a]);
                let lower = if a > 0 {
                    Some(keys::chunk_key(&info.name, info.key.len(), &chunks[a])?)
                } else {
                    None
                };
                let upper = match chunks.get(b + 1) {
                    Some(c) => Some(keys::chunk_key(&info.name, info.key.len(), c)?),
                    None => None,
                };
                let sql = copy_out_sql(
                    info,
                    types,
                    lower.as_deref().map(|values| Bound {
                        values,
                        inclusive: true,
                    }),
                    upper.as_deref().map(|values| Bound {
                        values,
                        inclusive: false,
                    }),
                );
                let successors = Successors::new(chunks[a..=b].to_vec());
                refs.extend(
                    read_chunks(
                        client,
                        store,
                        uploads,
                        &sql,
                        info,
                        opts,
                        tally,
                        Some(successors),
                    )
                    .await?,
                );
                next = b + 1;
            }
            refs.extend_from_slice(&chunks[next..]);
            (info, refs, TableMode::Ranges, Some(base.levels.clone()))
        }
    };
    let content = match levels {
        Some(levels) => store_tree(store, &refs, &levels, tally).await?,
        None => {
            let (content, nodes) = build_tree(&refs);
            for node in nodes {
                let (_, stored) = uploads.put_plain(store, &node.plain).await?;
                lock(tally).add(stored);
            }
            content
        }
    };
    let entry = TableEntry {
        table: info.name.clone(),
        columns: info.columns.clone(),
        key: info.key.clone(),
        content,
    };
    Ok((entry, mode))
}

/// A chunk being hashed, compressed and written: its reference, what storing it took.
type StoreTask = JoinHandle<Result<(BlobRef, Stored, Stages)>>;

/// Streams the rows `sql` returns into stored chunks, each new one stored against the old
/// chunk it replaces when `successors` knows it.
#[allow(clippy::too_many_arguments)]
async fn read_chunks<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    uploads: &Arc<Uploads>,
    sql: &str,
    table: &TableInfo,
    opts: &CaptureOptions,
    tally: &Arc<Mutex<Tally>>,
    mut successors: Option<Successors>,
) -> Result<Vec<BlobRef>> {
    let params = store.config().chunking.params;
    let mask = match &opts.mask {
        Some(plan) => plan.for_table(table)?,
        None => None,
    };
    let mut chunks = ChunkStream::open(client, sql, &table.name, params, opts.progress.clone())
        .await?
        .with_mask(mask);
    let key_positions = key_positions(&table.columns, &table.key);
    let mut pending: VecDeque<StoreTask> = VecDeque::new();
    let mut refs = Vec::new();
    let in_flight = opts.in_flight.max(1);
    while let Some(chunk) = chunks.next().await? {
        // Hashing and compressing happen on the spawned task; only the first key here.
        let base = successors.as_mut().and_then(|s| {
            let first = key_positions.as_deref().and_then(|positions| {
                row::first_and_last(&chunk.data).map(|(first, _)| row::key_text(first, positions))
            });
            s.base_of(first)
        });
        pending.push_back(tokio::spawn(store_chunk(
            store.clone(),
            uploads.clone(),
            chunk,
            key_positions.clone(),
            base,
        )));
        while pending.len() >= in_flight {
            collect(&mut pending, &mut refs, tally).await?;
        }
    }
    while !pending.is_empty() {
        collect(&mut pending, &mut refs, tally).await?;
    }
    lock(tally).stages.add(Stages {
        reading: chunks.reading,
        chunking: chunks.chunking,
        ..Stages::default()
    });
    Ok(refs)
}

async fn collect(
    pending: &mut VecDeque<StoreTask>,
    refs: &mut Vec<BlobRef>,
    tally: &Mutex<Tally>,
) -> Result<()> {
    if let Some(h) = pending.pop_front() {
        let (r, stored, stages) = join(h).await??;
        let mut t = lock(tally);
        t.add(stored);
        t.stages.add(stages);
        refs.push(r);
    }
    Ok(())
}

/// Stores `chunk` unless the store has it (asking first or not, see [`Uploads`]): as a delta against `base` where the store
/// allows deltas and one pays, else on its own. A base that cannot be read (damaged, say)
/// only costs the delta.
async fn store_chunk<B: Backend>(
    store: Arc<Store<B>>,
    uploads: Arc<Uploads>,
    chunk: RowChunk,
    key_positions: Option<Arc<[usize]>>,
    base: Option<BlobRef>,
) -> Result<(BlobRef, Stored, Stages)> {
    let mut stages = Stages::default();
    let started = Instant::now();
    let r = chunk_ref(&chunk, key_positions.as_deref());
    let id = r.id;
    let asking = Instant::now();
    stages.hashing = asking - started;
    if let Some(stored) = uploads.stored(&store, &id).await? {
        stages.writing = asking.elapsed();
        return Ok((r, stored, stages));
    }
    let base = match base.filter(|b| store.deltas_allowed() && b.bytes <= codec::MAX_DELTA_LEN) {
        Some(b) => match read_base(&store, b.id, b.bytes, codec::Chain::decode_exact).await {
            Ok(base) => Some(base),
            Err(e) => {
                tracing::debug!("chunk {} stored on its own: its base: {e}", id);
                None
            }
        },
        None => None,
    };
    let compression = store.config().compression;
    let compressing = Instant::now();
    stages.writing = compressing - asking;
    let (encoded, busy) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let encoded = encode_successor(&chunk.data, compression, base.as_ref());
        (encoded, started.elapsed())
    })
    .await
    .map_err(|e| Error::Internal(format!("compressing a chunk failed: {e}")))?;
    stages.compressing = busy;
    let writing = Instant::now();
    let stored = uploads.put_encoded(&store, &id, encoded).await?;
    stages.writing += writing.elapsed();
    Ok((r, stored, stages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8, first: Option<&str>) -> BlobRef {
        BlobRef {
            id: BlobId::of(&[n]),
            rows: 1,
            bytes: 1,
            first: first.map(str::to_owned),
            last: first.map(str::to_owned),
        }
    }

    #[test]
    fn a_new_chunk_replaces_the_old_one_it_begins_like_or_the_one_after_the_last_match() {
        let old = vec![
            chunk(0, Some("1")),
            chunk(1, Some("100")),
            chunk(2, Some("200")),
            chunk(3, Some("300")),
        ];
        let mut s = Successors::new(old.clone());
        let mut next = |first: &str| s.base_of(Some(first.to_owned())).map(|c| c.id);
        assert_eq!(next("1"), Some(old[0].id));
        // Its first row changed: the chunk after the last match.
        assert_eq!(next("101"), Some(old[1].id));
        // A chunk split in two: the second half has no old chunk of its own.
        assert_eq!(next("150"), Some(old[2].id));
        assert_eq!(next("200"), Some(old[2].id));
        assert_eq!(next("300"), Some(old[3].id));
        assert_eq!(next("400"), None, "nothing after the last");

        // Without a key: by position.
        let mut s = Successors::new(vec![chunk(0, None), chunk(1, None)]);
        assert_eq!(s.base_of(None).map(|c| c.id), Some(BlobId::of(&[0])));
        assert_eq!(s.base_of(None).map(|c| c.id), Some(BlobId::of(&[1])));
        assert_eq!(s.base_of(None), None);
    }
}
