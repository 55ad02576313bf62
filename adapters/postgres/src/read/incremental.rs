//! Incremental capture, row by row ("patching").
//!
//! With change tracking, an incremental capture starts from the newest snapshot this
//! database held. For a table whose log names changed keys and whose key columns are all
//! integers (`smallint`, `integer`, `bigint`: their text parses to numbers whose order is
//! the btree's), only the rows of those keys are read: one query per table, on a reader
//! inside the capture's snapshot, returns every changed key with its live row (or none), in
//! key order and in exactly the COPY text a full read produces. Each base chunk whose key
//! range holds a changed key is then patched in memory (see [`phony_core::merge`]): its old rows of
//! those keys dropped, the live ones merged in, cut again if it outgrew a chunk. Every
//! other chunk is kept as it is, and so is every manifest node that did not change.
//!
//! Each patched chunk (and manifest node) is stored as the successor of the one it
//! replaces: as a delta against that one where the store allows deltas and one pays, so
//! that what a snapshot adds grows with the changed rows, not with the chunks they touch.
//!
//! Tables with other keys take the range path of [`crate::read::capture`]; tables the log
//! marks as rewritten whole, or without a key, are read whole.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use phony_core::codec::{self, Chain};
use phony_core::config::Compression;
use phony_core::manifest::{build_tree, EncodedNode, ManifestNode, FANOUT};
use phony_core::store::MAX_MANIFEST_LEN;
use phony_core::{Backend, BlobId, BlobRef, RowChunk, Store, Stored, TableEntry};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::error::{pg, Error, Result};
use crate::keys::{chunk_ref, key_positions};
use crate::read::capture::options::{lock, CaptureOptions, Tally};
use crate::read::catalog::TableInfo;
use crate::sql::{columns_of, ident, literal, qualified};
use crate::tracking::{self, Logged, Mark};
use phony_core::merge::{chunk_of, parse_key, parse_key_text, Changed, Key, Merge};

/// What the change log says about one table since the base snapshot's mark.
#[derive(Debug, Clone)]
pub(crate) struct TableLog {
    /// The table and its partition ancestors: whose log entries concern it.
    pub relids: Vec<u32>,
    pub logged: Logged,
    /// Log entries naming it (a key changed twice counts twice).
    pub entries: i64,
    /// SQL types of the key columns, in key order, with their collations (see
    /// [`crate::read::catalog::COLUMN_TYPE_OF_A`]).
    pub key_types: Vec<String>,
    /// Whether every key column is an integer the rows can be patched by.
    pub integer_key: bool,
}

/// PostgreSQL's `int2`, `int4` and `int8`.
const INTEGER_TYPES: [u32; 3] = [21, 23, 20];

/// The log of every table in `tables` since `mark`, in one query (one scan of the log).
pub(crate) async fn table_logs(
    client: &Client,
    tables: &[TableInfo],
    mark: &Mark,
) -> Result<Vec<TableLog>> {
    let names: Vec<String> = tables.iter().map(|t| qualified(&t.name)).collect();
    let rows = client
        .query(
            &format!(
                "WITH u AS (SELECT u.i, c.oid FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i)
                        JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(u.n)),
                  r AS (SELECT u.i, u.oid, ARRAY[u.oid] || ARRAY(
                            SELECT a.relid::oid FROM pg_catalog.pg_partition_ancestors(u.oid) AS a
                            WHERE a.relid <> u.oid) AS relids
                        FROM u),
                  l AS (SELECT relid, count(*) AS n, bool_or(key IS NULL) AS whole FROM phony.changes
                        WHERE {since}
                        GROUP BY relid)
             SELECT r.i::int8, r.relids,
                    coalesce((SELECT sum(l.n) FROM l WHERE l.relid = ANY(r.relids)), 0)::int8,
                    coalesce((SELECT bool_or(l.whole) FROM l WHERE l.relid = ANY(r.relids)), false),
                    coalesce(k.names, '{{}}'), coalesce(k.oids, '{{}}'), coalesce(k.types, '{{}}')
             FROM r LEFT JOIN LATERAL (
                 SELECT array_agg(a.attname::text ORDER BY k.ord) AS names,
                        array_agg(a.atttypid ORDER BY k.ord) AS oids,
                        array_agg({key_type} ORDER BY k.ord) AS types
                 FROM pg_catalog.pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum = k.attnum
                 WHERE i.indrelid = r.oid AND i.indisprimary) AS k ON true",
                since = tracking::since_mark("$2::text"),
                key_type = crate::read::catalog::COLUMN_TYPE_OF_A,
            ),
            &[&names, &mark.snap],
        )
        .await
        .map_err(pg("reading the change log"))?;
    let mut out: Vec<Option<TableLog>> = vec![None; tables.len()];
    for r in rows {
        let i = (r.get::<_, i64>(0) as usize).wrapping_sub(1);
        let Some((slot, info)) = out.get_mut(i).zip(tables.get(i)) else {
            continue;
        };
        let (entries, whole): (i64, bool) = (r.get(2), r.get(3));
        let names: Vec<String> = r.get(4);
        let oids: Vec<u32> = r.get(5);
        let key_types: Vec<String> = r.get(6);
        *slot = Some(TableLog {
            relids: r.get(1),
            logged: match (entries > 0, whole) {
                (false, _) => Logged::Unchanged,
                (true, true) => Logged::Whole,
                (true, false) => Logged::Keys,
            },
            entries,
            integer_key: !names.is_empty()
                && names == info.key
                && oids.iter().all(|o| INTEGER_TYPES.contains(o)),
            key_types: if names == info.key {
                key_types
            } else {
                Vec::new()
            },
        });
    }
    // A table dropped since it was listed cannot be in this snapshot; read it whole (the
    // read then fails as it would have).
    Ok(out
        .into_iter()
        .map(|l| {
            l.unwrap_or(TableLog {
                relids: Vec::new(),
                logged: Logged::Whole,
                entries: 0,
                key_types: Vec::new(),
                integer_key: false,
            })
        })
        .collect())
}

/// A table to patch: its entry in the base snapshot and where its changes are logged.
#[derive(Debug)]
pub(crate) struct PatchJob {
    pub info: TableInfo,
    pub base: TableEntry,
    pub log: TableLog,
    pub mark: Mark,
}

impl PatchJob {
    /// Roughly the plain bytes it will handle: at most one chunk per log entry.
    pub(crate) fn weight(&self) -> i64 {
        (self.log.entries.saturating_mul(64 << 10)).min(self.base.content.bytes as i64)
    }
}

/// The query returning, in key order, every key the log names since the mark and the live
/// row with that key (all `\N` when there is none): the key's values, a tab, then the row
/// exactly as [`crate::read::chunk_stream::copy_out_sql`] prints it (same columns, same output
/// functions, same session settings).
fn patch_sql(job: &PatchJob) -> String {
    let info = &job.info;
    let n = info.key.len();
    let k: Vec<String> = (1..=n).map(|i| format!("c.k{i}")).collect();
    let logged: Vec<String> = job
        .log
        .key_types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("key[{}]::{ty} AS k{}", i + 1, i + 1))
        .collect();
    let matches: Vec<String> = info
        .key
        .iter()
        .enumerate()
        .map(|(i, col)| format!("t.{} = c.k{}", ident(col), i + 1))
        .collect();
    let cols = columns_of("t", &info.columns);
    let relids: Vec<String> = job.log.relids.iter().map(u32::to_string).collect();
    // LATERAL keeps this a probe of the key's index per changed key, whatever the planner
    // thinks of the log's size.
    format!(
        "COPY (SELECT {k}, {cols} FROM (SELECT DISTINCT {logged} FROM phony.changes \
         WHERE relid = ANY({relids}::oid[]) AND key IS NOT NULL \
         AND {since}) AS c \
         LEFT JOIN LATERAL (SELECT t.* FROM ONLY {table} AS t WHERE {matches}) AS t ON true \
         ORDER BY {k}) TO STDOUT",
        k = k.join(", "),
        cols = cols.join(", "),
        logged = logged.join(", "),
        relids = literal(&format!("{{{}}}", relids.join(","))),
        since = tracking::since_mark(&literal(&job.mark.snap)),
        table = qualified(&info.name),
        matches = matches.join(" AND "),
    )
}

/// Changes handed to a chunk's task at once; a chunk with more changes gets them in
/// batches, so memory stays bounded whatever one key range receives.
const BATCH_BYTES: usize = 1 << 20;

/// A table's base chunk tree: its chunks in order, and its nodes' ids level by level
/// (leaves first), in the order [`build_tree`] makes them.
#[derive(Debug)]
pub(crate) struct BaseTree {
    pub(crate) chunks: Vec<BlobRef>,
    pub(crate) levels: Vec<Vec<BlobId>>,
}

/// Reads a table's chunk tree, each level's nodes in parallel.
pub(crate) async fn base_tree<B: Backend>(store: &Store<B>, root: &BlobRef) -> Result<BaseTree> {
    let mut levels = Vec::new();
    let mut level = vec![root.id];
    loop {
        if levels.len() > 16 {
            return Err(phony_core::Error::Corrupt {
                id: root.id,
                reason: "manifest tree does not end".into(),
            }
            .into());
        }
        let nodes: Vec<ManifestNode> = futures::stream::iter(level.iter().copied())
            .map(|id| async move {
                let plain = store.get_plain(&id, MAX_MANIFEST_LEN).await?;
                ManifestNode::decode(&id, &plain)
            })
            .buffered(8)
            .try_collect()
            .await?;
        levels.push(level);
        let mut chunks = Vec::new();
        let mut children = Vec::new();
        for node in nodes {
            match node {
                ManifestNode::Leaf { chunks: c } => chunks.extend(c),
                ManifestNode::Branch { children: c } => children.extend(c.iter().map(|c| c.id)),
            }
        }
        match (chunks.is_empty(), children.is_empty()) {
            (_, true) => {
                levels.reverse();
                return Ok(BaseTree { chunks, levels });
            }
            (true, false) => level = children,
            (false, false) => {
                return Err(phony_core::Error::Corrupt {
                    id: root.id,
                    reason: "manifest tree mixes leaves and branches on one level".into(),
                }
                .into())
            }
        }
    }
}

/// What one chunk task needs besides its chunk.
#[derive(Debug)]
struct ChunkContext<B> {
    store: Arc<Store<B>>,
    positions: Arc<[usize]>,
    tally: Arc<Mutex<Tally>>,
}

/// Patches one table from its base snapshot; `None` when the base cannot be patched (its
/// chunks do not record integer keys), and the table must be read whole.
pub(crate) async fn patch_table<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    job: &PatchJob,
    opts: &CaptureOptions,
    tally: &Arc<Mutex<Tally>>,
) -> Result<Option<TableEntry>> {
    let info = &job.info;
    let Some(positions) = key_positions(&info.columns, &info.key) else {
        return Ok(None);
    };
    let base = base_tree(store, &job.base.content).await?;
    let Some(firsts) = base
        .chunks
        .iter()
        .map(|c| c.first.as_deref().and_then(parse_key_text))
        .collect::<Option<Vec<Key>>>()
        .filter(|f| f.iter().all(|k| k.len() == info.key.len()))
    else {
        return Ok(None);
    };

    let context = format!("reading the changed rows of {}", info.name);
    let stream = client
        .copy_out(&patch_sql(job))
        .await
        .map_err(pg(context.clone()))?;
    let mut stream = Box::pin(stream);
    let mut dispatch = Dispatch {
        ctx: Arc::new(ChunkContext {
            store: store.clone(),
            positions: positions.clone(),
            tally: tally.clone(),
        }),
        base: &base.chunks,
        firsts,
        in_flight: opts.in_flight.max(1),
        pending: VecDeque::new(),
        patched: Vec::new(),
        open: None,
    };
    let mut carry: Vec<u8> = Vec::new();
    let mut key = Key::new();
    let head: Vec<usize> = (0..info.key.len()).collect();
    while let Some(buf) = stream.try_next().await.map_err(pg(context.clone()))? {
        if let Some(p) = &opts.progress {
            p(buf.len() as u64);
        }
        // PostgreSQL sends a row per message; a row split across messages is put together.
        let complete = if carry.is_empty() && buf.ends_with(b"\n") {
            buf
        } else {
            carry.extend_from_slice(&buf);
            let Some(end) = memchr::memrchr(b'\n', &carry) else {
                continue;
            };
            Bytes::from(carry.drain(..=end).collect::<Vec<u8>>())
        };
        for line in phony_core::row::lines(&complete) {
            let changed = parse_changed(line, &head, &positions, &mut key)
                .ok_or_else(|| Error::Internal(format!("{context}: unexpected row")))?;
            dispatch.add(changed).await?;
        }
    }
    if !carry.is_empty() {
        return Err(Error::Internal(format!(
            "{context}: the last row is cut off"
        )));
    }
    let patched = dispatch.finish().await?;

    let mut refs = Vec::with_capacity(base.chunks.len() + patched.len());
    let mut next = 0;
    for (index, out) in patched {
        refs.extend_from_slice(base.chunks.get(next..index).unwrap_or(&[]));
        refs.extend(out);
        next = index + 1;
    }
    refs.extend_from_slice(base.chunks.get(next..).unwrap_or(&[]));
    let content = store_tree(store, &refs, &base.levels, tally).await?;
    Ok(Some(TableEntry {
        table: info.name.clone(),
        columns: info.columns.clone(),
        key: info.key.clone(),
        content,
    }))
}

/// Hands changed keys, in key order, to one task per base chunk they fall in; at most
/// `in_flight` tasks at once.
struct Dispatch<'a, B> {
    ctx: Arc<ChunkContext<B>>,
    base: &'a [BlobRef],
    firsts: Vec<Key>,
    in_flight: usize,
    pending: VecDeque<(usize, JoinHandle<Result<Vec<BlobRef>>>)>,
    /// What replaces each patched chunk, by chunk index, ascending.
    patched: Vec<(usize, Vec<BlobRef>)>,
    open: Option<Open>,
}

/// Changes for a chunk task, and whether they are the last.
struct Batch {
    changes: Vec<Changed>,
    last: bool,
}

/// The chunk task receiving changes now, and the batch it gets next.
struct Open {
    index: usize,
    tx: mpsc::Sender<Batch>,
    batch: Vec<Changed>,
    bytes: usize,
}

impl<B: Backend + 'static> Dispatch<'_, B> {
    async fn add(&mut self, changed: Changed) -> Result<()> {
        let index = chunk_of(&self.firsts, &changed.key);
        let open = match self.open.take() {
            Some(o) if o.index == index => o,
            other => {
                if let Some(o) = other {
                    if o.index > index {
                        return Err(Error::Internal("changed keys out of key order".into()));
                    }
                    o.close().await;
                }
                while self.pending.len() >= self.in_flight {
                    self.collect().await?;
                }
                let (tx, rx) = mpsc::channel(1);
                let base = self.base.get(index).cloned();
                let task = tokio::spawn(patch_chunk(self.ctx.clone(), base, rx));
                self.pending.push_back((index, task));
                Open {
                    index,
                    tx,
                    batch: Vec::new(),
                    bytes: 0,
                }
            }
        };
        let open = self.open.insert(open);
        open.bytes += changed.row.as_ref().map_or(0, Vec::len) + 8 * changed.key.len();
        open.batch.push(changed);
        if open.bytes >= BATCH_BYTES {
            open.send(false).await;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<(usize, Vec<BlobRef>)>> {
        if let Some(o) = self.open.take() {
            o.close().await;
        }
        while !self.pending.is_empty() {
            self.collect().await?;
        }
        Ok(self.patched)
    }

    async fn collect(&mut self) -> Result<()> {
        if let Some((index, task)) = self.pending.pop_front() {
            let refs = task
                .await
                .map_err(|e| Error::Internal(format!("patching a chunk failed: {e}")))??;
            self.patched.push((index, refs));
        }
        Ok(())
    }
}

impl Open {
    async fn send(&mut self, last: bool) {
        let changes = std::mem::take(&mut self.batch);
        self.bytes = 0;
        // A closed channel means the task failed; its error is reported when it is joined.
        let _ = self.tx.send(Batch { changes, last }).await;
    }

    /// Sends what is left; the task then finishes its chunk.
    async fn close(mut self) {
        self.send(true).await;
    }
}

/// One line of [`patch_sql`]'s output: the changed key (its fields at `head`, which is
/// `0..n`), then the row (its key at `positions`) or `\N`s.
fn parse_changed(
    line: &[u8],
    head: &[usize],
    positions: &[usize],
    key: &mut Key,
) -> Option<Changed> {
    let split = memchr::memchr_iter(b'\t', line).nth(head.len().checked_sub(1)?)?;
    let (changed, row) = (&line[..split], &line[split + 1..]);
    parse_key(changed, head, key)?;
    let changed_key = key.clone();
    let present = parse_key(row, positions, key).is_some();
    if present && *key != changed_key {
        return None;
    }
    Some(Changed {
        key: changed_key,
        row: present.then(|| row.to_vec()),
    })
}

/// Patches one chunk (`None`: the table had no rows) with the changes received, stores the
/// result and returns what replaces the chunk: itself if nothing changed, else zero or
/// more new chunks.
///
/// The CPU work (decoding the base, merging, hashing, compressing the delta) runs on this
/// task, a fraction of a millisecond at a time: handing each piece to the blocking pool
/// cost more in thread wake-ups than the work itself (after the benchmark's mix, the
/// incremental snapshot took 0.50 s with the hand-offs, 0.33 s without). Chunks are
/// patched by several tasks at once, so both cores work.
async fn patch_chunk<B: Backend + 'static>(
    ctx: Arc<ChunkContext<B>>,
    base: Option<BlobRef>,
    mut rx: mpsc::Receiver<Batch>,
) -> Result<Vec<BlobRef>> {
    let store = &ctx.store;
    let params = store.config().chunking.params;
    let stored_base = match &base {
        Some(b) => Some(read_base(store, b.id, b.bytes, Chain::decode_exact).await?),
        None => None,
    };
    let plain = stored_base
        .as_ref()
        .map_or_else(Bytes::new, |b| b.plain.clone());
    let mut merge = Merge::new(plain, &ctx.positions, params);
    let mut out = Vec::new();
    loop {
        // The dispatcher ends with a last batch; a channel closed before that means it
        // failed, and reports why itself.
        let Some(batch) = rx.recv().await else {
            return Err(Error::Internal(
                "patching a chunk: its changes ended early".into(),
            ));
        };
        // Merge, cut and hash on this task (see `patch_chunk`).
        merge.feed(&batch.changes)?;
        let mut pieces = merge.take_done();
        let (next, changed) = if batch.last {
            let (rest, changed) = merge.finish()?;
            pieces.extend(rest);
            (None, changed)
        } else {
            (Some(merge), true)
        };
        let pieces: Vec<(BlobRef, RowChunk)> = pieces
            .into_iter()
            .map(|c| (chunk_ref(&c, Some(&ctx.positions)), c))
            .collect();
        if !changed {
            return Ok(base.into_iter().collect());
        }
        for (r, chunk) in pieces {
            let stored = put_successor(store, &r.id, chunk.data, stored_base.as_ref()).await?;
            lock(&ctx.tally).add(stored);
            out.push(r);
        }
        match next {
            Some(m) => merge = m,
            None => return Ok(out),
        }
    }
}

/// A stored blob that new blobs are stored against: its plain bytes, and its depth in a
/// chain of deltas.
#[derive(Debug)]
pub(crate) struct Base {
    pub(crate) id: BlobId,
    pub(crate) depth: u8,
    pub(crate) plain: Bytes,
}

/// Reads the blob `id` and its delta chain, and decodes it with `decode` (given `len`: the
/// exact size, or a bound).
pub(crate) async fn read_base<B: Backend>(
    store: &Store<B>,
    id: BlobId,
    len: u64,
    decode: fn(&Chain, u64) -> phony_core::Result<Vec<u8>>,
) -> Result<Base> {
    let chain = store.get_chain(&id, len).await?;
    let depth = chain.header().map_or(0, |h| h.depth);
    let plain = decode(&chain, len)?;
    Ok(Base {
        id,
        depth,
        plain: plain.into(),
    })
}

/// Stores `plain` (whose id is `id`) unless the store has it: as a delta against `base`,
/// the blob it replaces, where the store allows deltas and one pays (see
/// [`codec::encode_delta`]), else on its own. This is [`Store::put_delta`] with the base's
/// depth known from reading it (no second read).
async fn put_successor<B: Backend>(
    store: &Store<B>,
    id: &BlobId,
    plain: Bytes,
    base: Option<&Base>,
) -> Result<Stored> {
    if let Some(size) = store.blob_size(id).await? {
        return Ok(Stored {
            stored_bytes: size,
            new: false,
        });
    }
    let compression = store.config().compression;
    let encoded = encode_successor(&plain, compression, base.filter(|_| store.deltas_allowed()));
    Ok(store.put_encoded(id, encoded).await?)
}

/// The stored form of `plain`: a delta against `base`, the blob it replaces, where one
/// pays (see [`codec::encode_delta`]), else standalone as `compression` says. The caller
/// passes a base only to a store that allows deltas.
pub(crate) fn encode_successor(
    plain: &[u8],
    compression: Compression,
    base: Option<&Base>,
) -> Vec<u8> {
    match base {
        Some(b) => codec::encode_delta(plain, compression, &b.id, b.depth, &b.plain),
        None => codec::encode(plain, compression),
    }
}

/// Builds the chunk tree of `chunks` and pairs every node with the node at the same place
/// (level and position) of a base tree whose nodes are `base_levels` (leaves first), which
/// it most likely replaces; nodes are in [`build_tree`]'s order.
pub(crate) fn paired_tree(
    chunks: &[BlobRef],
    base_levels: &[Vec<BlobId>],
) -> (BlobRef, Vec<(EncodedNode, Option<BlobId>)>) {
    let (root, nodes) = build_tree(chunks);
    // build_tree makes the leaves (at least one), then each level above, left to right.
    let mut places = Vec::with_capacity(nodes.len());
    let mut width = chunks.len().div_ceil(FANOUT).max(1);
    let mut level = 0;
    loop {
        places.extend((0..width).map(|i| (level, i)));
        if width == 1 {
            break;
        }
        width = width.div_ceil(FANOUT);
        level += 1;
    }
    let paired = nodes
        .into_iter()
        .zip(places)
        .map(|(node, (level, i))| {
            let base = base_levels
                .get(level)
                .and_then(|l| l.get(i))
                .copied()
                .filter(|b| *b != node.id);
            (node, base)
        })
        .collect();
    (root, paired)
}

/// Stores the chunk tree of `chunks`, each new node as the successor of the base node it
/// replaces; returns its root.
pub(crate) async fn store_tree<B: Backend + 'static>(
    store: &Store<B>,
    chunks: &[BlobRef],
    base_levels: &[Vec<BlobId>],
    tally: &Mutex<Tally>,
) -> Result<BlobRef> {
    let (root, nodes) = paired_tree(chunks, base_levels);
    for (node, base) in nodes {
        let stored = match (store.blob_size(&node.id).await?, base) {
            (Some(size), _) => Stored {
                stored_bytes: size,
                new: false,
            },
            (None, base) => {
                let base = match base {
                    Some(id) => Some(read_base(store, id, MAX_MANIFEST_LEN, Chain::decode).await?),
                    None => None,
                };
                put_successor(store, &node.id, node.plain.into(), base.as_ref()).await?
            }
        };
        lock(tally).add(stored);
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phony_core::QualifiedName;

    fn chunk(i: u64) -> BlobRef {
        BlobRef {
            id: BlobId::of(&i.to_le_bytes()),
            rows: 1,
            bytes: 1,
            first: Some(i.to_string()),
            last: Some(i.to_string()),
        }
    }

    #[test]
    fn tree_nodes_pair_with_the_nodes_they_replace() {
        let n = FANOUT * 2 + 3;
        let base: Vec<BlobRef> = (0..n as u64).map(chunk).collect();
        let (_, base_nodes) = build_tree(&base);
        let base_levels = vec![
            base_nodes[..3].iter().map(|n| n.id).collect(),
            vec![base_nodes[3].id],
        ];
        // One chunk in the second leaf changes: that leaf and the branch are new.
        let mut changed = base.clone();
        changed[FANOUT + 5] = chunk(u64::MAX);
        let (root, nodes) = paired_tree(&changed, &base_levels);
        assert_eq!(nodes.len(), 4);
        assert_eq!(root.id, nodes[3].0.id);
        assert_eq!(nodes[0].1, None, "unchanged nodes need no base");
        assert_eq!(nodes[1].1, Some(base_levels[0][1]));
        assert_eq!(nodes[2].1, None);
        assert_eq!(nodes[3].1, Some(base_levels[1][0]));
        // A tree that grew a level pairs what it can.
        let (_, nodes) = paired_tree(&changed, &base_levels[..1]);
        assert_eq!(nodes[3].1, None);
        let (_, nodes) = paired_tree(&[], &base_levels);
        assert_eq!(nodes[0].1, Some(base_levels[0][0]));
    }

    #[test]
    fn changed_rows_are_read_in_key_order_with_the_full_read_columns() {
        let job = PatchJob {
            info: TableInfo {
                name: QualifiedName::new("public", "Order Lines"),
                columns: vec!["id".into(), "part".into(), "v".into()],
                key: vec!["part".into(), "id".into()],
                bytes: 0,
            },
            base: TableEntry {
                table: QualifiedName::new("public", "Order Lines"),
                columns: vec![],
                key: vec![],
                content: chunk(0),
            },
            log: TableLog {
                relids: vec![16384, 16390],
                logged: Logged::Keys,
                entries: 2,
                key_types: vec!["integer".into(), "bigint".into()],
                integer_key: true,
            },
            mark: Mark {
                snap: "10:12:10".into(),
            },
        };
        assert_eq!(
            patch_sql(&job),
            "COPY (SELECT c.k1, c.k2, t.\"id\", t.\"part\", t.\"v\" FROM (SELECT DISTINCT \
             key[1]::integer AS k1, key[2]::bigint AS k2 FROM phony.changes \
             WHERE relid = ANY('{16384,16390}'::oid[]) AND key IS NOT NULL \
             AND xid >= pg_catalog.pg_snapshot_xmin('10:12:10'::pg_catalog.pg_snapshot) \
             AND NOT pg_catalog.pg_visible_in_snapshot(xid, '10:12:10'::pg_catalog.pg_snapshot)) AS c \
             LEFT JOIN LATERAL (SELECT t.* FROM ONLY \"public\".\"Order Lines\" AS t \
             WHERE t.\"part\" = c.k1 AND t.\"id\" = c.k2) AS t ON true \
             ORDER BY c.k1, c.k2) TO STDOUT"
        );
        let mut key = Key::new();
        let c = parse_changed(b"7\t-2\t-2\t7\tx", &[0, 1], &[1, 0], &mut key).unwrap();
        assert_eq!(c.key, vec![7, -2]);
        assert_eq!(c.row.as_deref(), Some(&b"-2\t7\tx"[..]));
        let gone = parse_changed(b"7\t3\t\\N\t\\N\t\\N", &[0, 1], &[1, 0], &mut key).unwrap();
        assert_eq!(gone.row, None);
        assert!(parse_changed(b"7\t3\t4\t7\tx", &[0, 1], &[1, 0], &mut key).is_none());
    }
}
