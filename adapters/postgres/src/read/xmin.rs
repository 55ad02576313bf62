//! Row ages: which rows a restore without change tracking has to compare.
//!
//! A capture records its point in time (the server's identity and the capture's
//! `pg_snapshot`, see [`CapturePoint`]). Every row version carries the id of the transaction
//! that wrote it (`xmin`, kept as it was written by freezing, `VACUUM FULL` and `CLUSTER`).
//! A live row whose `xmin` precedes the capture snapshot's `xmin` was committed before the
//! capture began and has not been replaced since (an update or a delete would have ended
//! it), so the capture read it, with these very contents: it is *old*, and the snapshot
//! holds it. Every other live row is *new*, including rows of transactions the capture saw
//! as running or committed (`[xmin, xmax)`: subtransactions are not listed in a snapshot, so
//! that range is not split).
//!
//! Per keyed table, one scan counts the old and the new rows of each snapshot chunk's key
//! range (`width_bucket` over the chunks' first keys). A chunk is unchanged exactly when
//! its range holds as many old rows as the chunk has rows and no new row: old rows have
//! distinct keys, each is one of the chunk's rows, so they are all of them. Only the other
//! chunks are compared. With a one-column integer key, the same scan also sums the old
//! rows' keys and names the new rows, which tells which rows a chunk lacks without reading
//! its old rows back (see [`integer`]); otherwise the new rows of the other chunks' ranges
//! are read whole and their old rows by key alone. Two readers share the tables, and each
//! table's differences are applied while the next tables are read.
//!
//! The point is trusted only in the database that was captured (same system identifier,
//! timeline and database oid), with the same tables under the same names (a digest of the
//! captured tables' oids), once every transaction the capture saw running has ended, and
//! while every transaction id since the capture is less than 2^31 past its `xmin` (so a
//! 32-bit `xmin` compares without ambiguity). Otherwise the restore compares content.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use phony_core::{row, Backend, BlobId, BlobRef, CapturePoint, QualifiedName, Store, TableEntry};
use tokio_postgres::Client;

use crate::error::{pg, Result};
use crate::keys::Staged;
use crate::read::chunk_stream::decoded_chunks;
use crate::sql::{columns_of, ident, literal, qualified};

mod ages;
pub(crate) mod integer;
mod keyless;

use ages::{copy_out_bounded, flagged_line, MAX_FLAGGED_BYTES};
pub(crate) use ages::{Ages, Horizon};

/// The server's identity: system identifier (text), timeline and database oid (int8), each
/// NULL when the role may not read it (or, for the timeline, during recovery). Guarded, so
/// that it never fails a transaction it runs in.
const IDENTITY_SQL: &str = "\
    CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') \
         THEN (pg_catalog.pg_control_system()).system_identifier::text END, \
    CASE WHEN NOT pg_catalog.pg_is_in_recovery() \
          AND pg_catalog.has_function_privilege('pg_catalog.pg_current_wal_lsn()', 'EXECUTE') \
          AND pg_catalog.has_function_privilege('pg_catalog.pg_walfile_name(pg_lsn)', 'EXECUTE') \
         THEN ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END, \
    (SELECT oid::int8 FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())";

/// What the capture's coordinator reads at its point in time: the exported snapshot's name,
/// `pg_current_snapshot()` as text, then the identity columns (see [`point_from_row`]).
pub(crate) fn capture_point_sql() -> String {
    format!(
        "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_current_snapshot()::text, {IDENTITY_SQL}"
    )
}

/// The server's identity as read by [`IDENTITY_SQL`] from columns `at`, `at + 1`, `at + 2`.
fn identity(row: &tokio_postgres::Row, at: usize) -> Option<(String, u32, u32)> {
    let system_id: Option<String> = row.try_get(at).ok()?;
    let timeline: Option<i64> = row.try_get(at + 1).ok()?;
    let oid: Option<i64> = row.try_get(at + 2).ok()?;
    Some((
        system_id?,
        u32::try_from(timeline?).ok()?,
        u32::try_from(oid?).ok()?,
    ))
}

/// The capture's point, from the row of [`capture_point_sql`] and the digest of its tables;
/// `None` when the server would not say who it is.
pub(crate) fn point_from_row(
    row: &tokio_postgres::Row,
    relations: Option<String>,
) -> Option<CapturePoint> {
    let snapshot: String = row.try_get(1).ok()?;
    parse_snapshot(&snapshot)?;
    let (system_id, timeline, database_oid) = identity(row, 2)?;
    Some(CapturePoint {
        system_id,
        timeline,
        database_oid,
        snapshot,
        relations: relations?,
    })
}

/// A digest of `tables`' names and object ids, as this session sees them (`None` when one
/// cannot be read: then nothing is recorded or trusted).
pub(crate) async fn relations_digest(client: &Client, tables: &[&QualifiedName]) -> Option<String> {
    let mut names: Vec<String> = tables.iter().map(|t| qualified(t)).collect();
    names.sort();
    let rows = client
        .query(
            "SELECT pg_catalog.to_regclass(n)::oid::int8 FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i",
            &[&names],
        )
        .await
        .ok()?;
    let mut text = String::new();
    for (name, r) in names.iter().zip(&rows) {
        let oid: Option<i64> = r.try_get(0).ok()?;
        text += &format!("{name}\t{}\n", oid?);
    }
    Some(BlobId::of(text.as_bytes()).to_hex())
}

/// The `xmin` and `xmax` of a `pg_snapshot`'s text (`xmin:xmax:xip,…`).
pub(crate) fn parse_snapshot(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split(':');
    let xmin = parts.next()?.parse().ok()?;
    let xmax = parts.next()?.parse().ok()?;
    parts.next()?;
    (xmin <= xmax).then_some((xmin, xmax))
}

/// Why the point cannot be trusted here, or the horizon when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    Trusted(Horizon),
    Untrusted(String),
}

/// Decides whether rows' ages may be read against `point`, after the restore has locked
/// every table (no writer is left that could commit a row later). Errors read as "no".
pub(crate) async fn trust(
    client: &Client,
    point: &CapturePoint,
    tables: &[&QualifiedName],
) -> Trust {
    let sql = format!(
        "SELECT {IDENTITY_SQL}, pg_catalog.pg_snapshot_xmin(s)::text::int8, pg_catalog.pg_snapshot_xmax(s)::text::int8 \
         FROM pg_catalog.pg_current_snapshot() AS s"
    );
    let row = match client.query_one(&sql, &[]).await {
        Ok(row) => row,
        Err(e) => return Trust::Untrusted(format!("the server's identity is unreadable: {e}")),
    };
    let now = (|| {
        let xmin: i64 = row.try_get(3).ok()?;
        let xmax: i64 = row.try_get(4).ok()?;
        Some((u64::try_from(xmin).ok()?, u64::try_from(xmax).ok()?))
    })();
    let digest = relations_digest(client, tables).await;
    decide(point, identity(&row, 0), now, digest.as_deref())
}

/// [`trust`]'s decision, from what the server said: its identity, its current snapshot's
/// `(xmin, xmax)` and the digest of the tables.
fn decide(
    point: &CapturePoint,
    identity: Option<(String, u32, u32)>,
    now: Option<(u64, u64)>,
    relations: Option<&str>,
) -> Trust {
    let untrusted = |why: &str| Trust::Untrusted(why.to_owned());
    let Some((cap_xmin, cap_xmax)) = parse_snapshot(&point.snapshot) else {
        return untrusted("the recorded point is malformed");
    };
    let Some((system_id, timeline, oid)) = identity else {
        return untrusted("the server's identity is unreadable");
    };
    if system_id != point.system_id || timeline != point.timeline {
        return untrusted("another server or timeline than the capture's");
    }
    if oid != point.database_oid {
        return untrusted("another database than the one captured");
    }
    if relations != Some(point.relations.as_str()) {
        return untrusted("the tables are not the ones captured");
    }
    let Some((xmin, xmax)) = now else {
        return untrusted("the current snapshot is unreadable");
    };
    if xmin < cap_xmax {
        return untrusted("transactions the capture saw running may still run");
    }
    // Every row version visible now was written by a transaction below `xmax`; all of
    // them must lie within 2^31 of the capture's xmin for the 32-bit comparison to hold.
    if xmax < cap_xmin || xmax - cap_xmin >= 1 << 31 {
        return untrusted("too many transactions since the capture");
    }
    Trust::Trusted(Horizon((cap_xmin & 0xFFFF_FFFF) as u32))
}

/// Reads the ages of `entry`'s live rows, against the snapshot's `chunks`. `types`: the
/// SQL types of the key columns; `bit_xor`: whether the server has that aggregate (then an
/// integer key's scan also reads what [`integer`] needs). Runs outside the restore
/// transaction (on a reader), so that a failure only costs this table the content path.
pub(crate) async fn ages(
    reader: &Client,
    entry: &TableEntry,
    chunks: &[BlobRef],
    types: &[String],
    horizon: Horizon,
    bit_xor: bool,
) -> Result<Ages> {
    let t = qualified(&entry.table);
    let old = horizon.old_sql("t.xmin");
    let context = || format!("reading the row ages of {}", entry.table);
    let per_chunk = entry.key.len() == 1 && types.len() == 1 && !chunks.is_empty();
    if !per_chunk {
        let row = reader
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE {old}), count(*) FILTER (WHERE NOT ({old})) \
                     FROM ONLY {t} AS t"
                ),
                &[],
            )
            .await
            .map_err(pg(context()))?;
        let (old, new): (i64, i64) = (row.get(0), row.get(1));
        return Ok(if new == 0 && old as u64 == entry.content.rows {
            Ages::Unchanged
        } else {
            Ages::Content
        });
    }
    let Some(thresholds) = thresholds(&entry.table, chunks)? else {
        return Ok(Ages::Content);
    };
    let ty = &types[0];
    let array = crate::read::catalog::array_type(ty);
    // The thresholds must read back as they were printed, in ascending order: otherwise the
    // key type's text or order is not what the capture saw.
    let ok: bool = reader
        .query_one(
            &format!(
                "SELECT ($1::text[]::{array})::text[] = $1::text[] AND coalesce((
                   SELECT bool_and(x < y) FROM (SELECT $1::text[]::{array} AS a) AS th,
                     unnest(th.a[1:pg_catalog.cardinality(th.a) - 1], th.a[2:]) AS u(x, y)), true)"
            ),
            &[&thresholds],
        )
        .await
        .map_err(pg(context()))?
        .get(0);
    if !ok {
        return Ok(Ages::Content);
    }
    let k = format!("t.{}", ident(&entry.key[0]));
    if bit_xor && integer::is_integer(ty) {
        return integer::ages(reader, entry, chunks, &thresholds, ty, horizon).await;
    }
    let rows = reader
        .query(
            &format!(
                "SELECT pg_catalog.width_bucket({k}, (SELECT $1::text[]::{array})), \
                 count(*) FILTER (WHERE {old}), count(*) FILTER (WHERE NOT ({old})) \
                 FROM ONLY {t} AS t GROUP BY 1"
            ),
            &[&thresholds],
        )
        .await
        .map_err(pg(context()))?;
    let mut old = vec![0u64; chunks.len()];
    let mut new = vec![0u64; chunks.len()];
    let mut below = false;
    for r in &rows {
        let (bucket, o, n): (Option<i32>, i64, i64) = (r.get(0), r.get(1), r.get(2));
        match bucket {
            // NULL keys: not a primary key as the capture saw it.
            None => return Ok(Ages::Content),
            Some(0) => below = true,
            Some(b) => {
                let i = b as usize - 1;
                if let (Some(o_i), Some(n_i)) = (old.get_mut(i), new.get_mut(i)) {
                    *o_i = o as u64;
                    *n_i = n as u64;
                }
            }
        }
    }
    Ok(Ages::of(chunks, old, &new, below, None))
}

/// What reading a table's rows' ages found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The table holds the snapshot's rows; it has this many chunks.
    Unchanged { chunks: u64 },
    /// These rows differ, found by comparing `compared` of the table's `chunks`; with
    /// `summed`, from the sums of their keys (see [`integer`]).
    Staged {
        staged: Staged,
        chunks: u64,
        compared: u64,
        summed: bool,
    },
    /// The ages could not tell: compare the table's content.
    Content,
}

/// Reads the ages of every table's rows and compares the chunks they flag, the tables
/// shared among `readers` (each takes its share, most rows first, one table at a time) and
/// each table's outcome sent to `done` (by index) as soon as it is known, so that applying
/// it overlaps the reading of the others. A store failure is an error; any other failure
/// makes a table's outcome [`Outcome::Content`].
pub(crate) async fn examine<B: Backend + 'static>(
    readers: &[&Client],
    store: &Arc<Store<B>>,
    tables: &[&TableEntry],
    horizon: Horizon,
    prefetch: usize,
    done: tokio::sync::mpsc::Sender<(usize, Outcome)>,
) -> Result<()> {
    // `bit_xor` came with PostgreSQL 14; a server that will not say takes the general path.
    let bit_xor = match readers.first() {
        Some(reader) => crate::read::catalog::server_version(*reader)
            .await
            .is_ok_and(|(version, _)| version >= 140_000),
        None => false,
    };
    // Most work first; each reader takes the next table when it is done with one, so that
    // a table whose rows cost more than their count says (wide ones, say) does not leave
    // the other reader idle. A table without a key has each row printed whole, which
    // costs several times (about 5 on the benchmark's tables) reading a key's age.
    let mut order: Vec<usize> = (0..tables.len()).collect();
    let work = |t: &TableEntry| t.content.rows * if t.key.is_empty() { 4 } else { 1 };
    order.sort_by_key(|&i| std::cmp::Reverse(work(tables[i])));
    let next = std::sync::Mutex::new(order.into_iter());
    // A poisoned lock still holds a valid iterator: no table may go unexamined.
    let take = || next.lock().unwrap_or_else(|e| e.into_inner()).next();
    let work = readers.iter().map(|reader| {
        let done = done.clone();
        async move {
            while let Some(i) = take() {
                let started = std::time::Instant::now();
                let outcome =
                    examine_one(reader, store, tables[i], horizon, bit_xor, prefetch).await?;
                tracing::debug!("{}: examined in {:?}", tables[i].table, started.elapsed());
                // The receiver is gone only when the restore failed; it reports why.
                let _ = done.send((i, outcome)).await;
            }
            Ok::<_, crate::error::Error>(())
        }
    });
    futures::future::try_join_all(work).await?;
    Ok(())
}

async fn examine_one<B: Backend + 'static>(
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    horizon: Horizon,
    bit_xor: bool,
    prefetch: usize,
) -> Result<Outcome> {
    let chunks = store.table_chunks(entry).await?;
    let read = async {
        let types = crate::keys::key_types(reader, entry).await?;
        let started = std::time::Instant::now();
        let ages = ages(reader, entry, &chunks, &types, horizon, bit_xor).await?;
        tracing::debug!("{}: ages read in {:?}", entry.table, started.elapsed());
        let (flagged, below, old, integer) = match ages {
            Ages::Unchanged => {
                return Ok(Outcome::Unchanged {
                    chunks: chunks.len() as u64,
                })
            }
            // A table without a key is first counted whole (no row printed): only when that
            // finds it changed are its chunks bounded.
            Ages::Content if entry.key.is_empty() && chunks.len() > 1 => {
                let started = std::time::Instant::now();
                let found =
                    keyless::examine(reader, store, entry, &chunks, horizon, prefetch).await?;
                tracing::debug!(
                    "{}: ages read by chunk in {:?}",
                    entry.table,
                    started.elapsed()
                );
                let chunks = chunks.len() as u64;
                return Ok(match found {
                    Some(keyless::Found::Unchanged) => Outcome::Unchanged { chunks },
                    Some(keyless::Found::Staged { staged, compared }) => Outcome::Staged {
                        staged,
                        chunks,
                        compared,
                        summed: false,
                    },
                    None => Outcome::Content,
                });
            }
            Ages::Content => return Ok(Outcome::Content),
            Ages::Chunks {
                flagged,
                below,
                old,
                integer,
            } => (flagged, below, old, integer),
        };
        let mut staged = None;
        if let Some(integer) = &integer {
            staged = integer::compare(
                reader, store, entry, &chunks, &flagged, &old, integer, horizon, prefetch,
            )
            .await?;
            if staged.is_none() {
                tracing::info!(
                    "{}: the sums of its keys disagree with its rows; comparing them",
                    entry.table
                );
            }
        }
        let summed = staged.is_some();
        if staged.is_none() {
            staged = compare_flagged(
                reader, store, entry, &chunks, &flagged, below, &old, &types, horizon, prefetch,
            )
            .await?;
        }
        Ok::<_, crate::error::Error>(match staged {
            Some(staged) => Outcome::Staged {
                staged,
                chunks: chunks.len() as u64,
                compared: flagged.len() as u64,
                summed,
            },
            None => Outcome::Content,
        })
    };
    match read.await {
        Err(e @ crate::error::Error::Store(_)) => Err(e),
        Err(e) => {
            tracing::info!("comparing the content of {}: {e}", entry.table);
            Ok(Outcome::Content)
        }
        ok => ok,
    }
}

/// The chunks' first keys, unescaped (`None` when one is NULL or missing).
pub(crate) fn thresholds(table: &QualifiedName, chunks: &[BlobRef]) -> Result<Option<Vec<String>>> {
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        match crate::keys::chunk_key(table, 1, c)?.pop().flatten() {
            Some(v) => out.push(v),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Compares the `flagged` chunks with the live rows of their key ranges, in one query: new
/// rows are read whole, old rows by key only (they are the snapshot's). `None` when the
/// live rows contradict their ages (an old row the chunk lacks, or counts that differ
/// from `old`): then the table's content is compared instead.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare_flagged<B: Backend + 'static>(
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    chunks: &[BlobRef],
    flagged: &[usize],
    below: bool,
    old: &[u64],
    types: &[String],
    horizon: Horizon,
    prefetch: usize,
) -> Result<Option<Staged>> {
    let Some(positions) = crate::keys::key_positions(&entry.columns, &entry.key) else {
        return Ok(None);
    };
    let Some(thresholds) = thresholds(&entry.table, chunks)? else {
        return Ok(None);
    };
    // Everything below is held in memory: beyond a bound, the streaming content path.
    let flagged_bytes: u64 = flagged
        .iter()
        .filter_map(|&i| chunks.get(i))
        .map(|c| c.bytes)
        .sum();
    if flagged_bytes > MAX_FLAGGED_BYTES {
        return Ok(None);
    }
    let sql = flagged_sql(entry, &types[0], &thresholds, flagged, below, horizon);
    tracing::trace!("{sql}");
    // New rows are read whole: many inserted in one range can outgrow the chunks.
    let context = format!("reading changed rows of {}", entry.table);
    let Some(data) = copy_out_bounded(reader, &sql, &context).await? else {
        return Ok(None);
    };
    // Per flagged chunk: the keys of its old rows and its new rows.
    let mut olds: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut news: HashMap<usize, Vec<&[u8]>> = HashMap::new();
    for line in row::lines(&data) {
        let Some((i, is_old, rest)) = flagged_line(line) else {
            return Ok(None);
        };
        if is_old {
            olds.entry(i)
                .or_default()
                .insert(row::key_text(rest, &positions));
        } else {
            news.entry(i).or_default().push(rest);
        }
    }
    let mut staged = Staged::default();
    let wanted: Vec<BlobRef> = flagged.iter().map(|&i| chunks[i].clone()).collect();
    let blobs = decoded_chunks(store, wanted, prefetch);
    futures::pin_mut!(blobs);
    let mut at = flagged.iter();
    while let Some(plain) = blobs.try_next().await? {
        let Some(&i) = at.next() else { break };
        let old_keys = olds.remove(&i).unwrap_or_default();
        if old_keys.len() as u64 != old.get(i).copied().unwrap_or(0) && !(i == 0 && below) {
            return Ok(None);
        }
        let mut snap_rows: HashMap<String, &[u8]> = HashMap::new();
        for line in row::lines(&plain) {
            snap_rows.insert(row::key_text(line, &positions), line);
        }
        for key in &old_keys {
            if snap_rows.remove(key).is_none() {
                return Ok(None);
            }
        }
        staged.compare(
            &mut snap_rows,
            news.remove(&i).unwrap_or_default(),
            &positions,
        );
        staged.rest(snap_rows);
    }
    if at.next().is_some() || !olds.is_empty() || !news.is_empty() {
        return Ok(None);
    }
    Ok(Some(staged))
}

/// `COPY` of the live rows in the key ranges of the `flagged` chunks: per row the chunk's
/// index, `t` for an old row (then only its key columns, the others NULL) or `f`, and the
/// stored columns. Chunk i's range runs from its first key (or, for chunk 0 with `below`,
/// from the start) up to the next chunk's first key (or the end); one index range scan each.
fn flagged_sql(
    entry: &TableEntry,
    ty: &str,
    thresholds: &[String],
    flagged: &[usize],
    below: bool,
    horizon: Horizon,
) -> String {
    let t = qualified(&entry.table);
    let k = format!("t.{}", ident(&entry.key[0]));
    let old = horizon.old_sql("t.xmin");
    let inner = columns_of("t", &entry.columns);
    let outer: Vec<String> = entry
        .columns
        .iter()
        .map(|c| {
            if entry.key.contains(c) {
                format!("x.{}", ident(c))
            } else {
                format!(
                    "CASE WHEN x.\"phony old\" THEN NULL ELSE x.{} END",
                    ident(c)
                )
            }
        })
        .collect();
    let (inner, outer) = (inner.join(", "), outer.join(", "));
    let select =
        |tag: &str, from: &str| format!("SELECT {tag}, x.\"phony old\", {outer} FROM {from}");
    let scan = |cond: &str| {
        format!("(SELECT {old} AS \"phony old\", {inner} FROM ONLY {t} AS t{cond}) AS x")
    };
    let value = |i: usize| format!("{}::{ty}", literal(&thresholds[i]));
    let last = thresholds.len() - 1;
    let mut branches = Vec::new();
    let mut middle = Vec::new();
    for &i in flagged {
        let lower = (!(i == 0 && below)).then(|| value(i));
        let upper = (i < last).then(|| value(i + 1));
        match (lower, upper) {
            (Some(lo), Some(hi)) => middle.push((i, lo, hi)),
            (lo, hi) => {
                let mut conds = Vec::new();
                if let Some(lo) = lo {
                    conds.push(format!("{k} >= {lo}"));
                }
                if let Some(hi) = hi {
                    conds.push(format!("{k} < {hi}"));
                }
                let cond = if conds.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conds.join(" AND "))
                };
                branches.push(select(&i.to_string(), &scan(&cond)));
            }
        }
    }
    if !middle.is_empty() {
        let array = crate::read::catalog::array_type(ty);
        let list = |f: &dyn Fn(&(usize, String, String)) -> String| {
            middle.iter().map(f).collect::<Vec<_>>().join(", ")
        };
        let ranges = format!(
            "unnest(ARRAY[{}]::int4[], ARRAY[{}]::{array}, ARRAY[{}]::{array}) AS r(i, lo, hi)",
            list(&|m| m.0.to_string()),
            list(&|m| m.1.clone()),
            list(&|m| m.2.clone()),
        );
        let lateral = format!(
            "{ranges} CROSS JOIN LATERAL {}",
            scan(&format!(" WHERE {k} >= r.lo AND {k} < r.hi"))
        );
        branches.push(select("r.i", &lateral));
    }
    format!("COPY ({}) TO STDOUT", branches.join(" UNION ALL "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> CapturePoint {
        CapturePoint {
            system_id: "7712631706761902213".into(),
            timeline: 1,
            database_oid: 16384,
            snapshot: "1000:1010:1003,1005".into(),
            relations: "digest".into(),
        }
    }

    fn me() -> Option<(String, u32, u32)> {
        Some(("7712631706761902213".into(), 1, 16384))
    }

    #[test]
    fn snapshots_parse() {
        assert_eq!(parse_snapshot("870:870:"), Some((870, 870)));
        assert_eq!(parse_snapshot("1000:1010:1003,1005"), Some((1000, 1010)));
        assert_eq!(parse_snapshot("1000:999:"), None);
        assert_eq!(parse_snapshot("1000"), None);
        assert_eq!(parse_snapshot("x:1:"), None);
    }

    #[test]
    fn the_point_is_trusted_only_in_the_same_place_and_horizon() {
        let p = point();
        let ok = Some((1010, 1020));
        assert_eq!(
            decide(&p, me(), ok, Some("digest")),
            Trust::Trusted(Horizon(1000))
        );
        let untrusted = |t: Trust| matches!(t, Trust::Untrusted(_));
        assert!(untrusted(decide(
            &p,
            Some(("1".into(), 1, 16384)),
            ok,
            Some("digest")
        )));
        assert!(untrusted(decide(
            &p,
            Some(("7712631706761902213".into(), 2, 16384)),
            ok,
            Some("digest")
        )));
        assert!(untrusted(decide(
            &p,
            Some(("7712631706761902213".into(), 1, 16385)),
            ok,
            Some("digest")
        )));
        assert!(untrusted(decide(&p, None, ok, Some("digest"))));
        assert!(untrusted(decide(&p, me(), ok, Some("other"))));
        assert!(untrusted(decide(&p, me(), ok, None)));
        assert!(untrusted(decide(&p, me(), None, Some("digest"))));
        // A transaction the capture saw running may still be running.
        assert!(untrusted(decide(
            &p,
            me(),
            Some((1009, 1020)),
            Some("digest")
        )));
        // Transaction ids must stay within 2^31 of the capture's xmin.
        let far = 1000 + (1u64 << 31);
        assert!(untrusted(decide(
            &p,
            me(),
            Some((1010, far)),
            Some("digest")
        )));
        assert_eq!(
            decide(&p, me(), Some((1010, far - 1)), Some("digest")),
            Trust::Trusted(Horizon(1000))
        );
        let mut bad = point();
        bad.snapshot = "garbage".into();
        assert!(untrusted(decide(&bad, me(), ok, Some("digest"))));
        // 64-bit ids past the first wraparound keep their low 32 bits.
        let mut wrapped = point();
        wrapped.snapshot = format!("{}:{}:", (5u64 << 32) + 7, (5u64 << 32) + 9);
        assert_eq!(
            decide(
                &wrapped,
                me(),
                Some(((5u64 << 32) + 9, (5u64 << 32) + 20)),
                Some("digest")
            ),
            Trust::Trusted(Horizon(7))
        );
    }

    #[test]
    fn old_rows_precede_the_horizon_modulo_2_to_the_32() {
        let h = Horizon(1000);
        let now = 1500;
        assert!(h.precedes(999, now));
        assert!(h.precedes(3, now));
        assert!(h.precedes(2, now)); // frozen (pre-9.4), long before any capture
        assert!(!h.precedes(1000, now)); // the capture's own xmin: it may have been running
        assert!(!h.precedes(1001, now));
        assert!(!h.precedes(1499, now));
        // More than 2^31 older than now reads as new: compared, never wrongly trusted.
        assert!(h.precedes(now.wrapping_sub((1 << 31) - 1), now));
        assert!(!h.precedes(now.wrapping_sub(1 << 31), now));
        let near_wrap = Horizon(u32::MAX - 5);
        assert!(near_wrap.precedes(u32::MAX - 6, 10));
        assert!(!near_wrap.precedes(u32::MAX, 10));
        assert!(!near_wrap.precedes(3, 10)); // after the wraparound: new
        assert!(!near_wrap.precedes(9, 10));
        assert_eq!(
            h.old_sql("t.xmin"),
            "pg_catalog.age(t.xmin) > pg_catalog.age('1000'::xid)"
        );
    }
}
