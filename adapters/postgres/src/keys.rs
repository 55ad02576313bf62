//! Keys and chunks, shared by reading and writing: where a table's key columns sit in a
//! row, a chunk's reference and first key, the key columns' SQL types, the chunks the
//! change log's keys fall in, and the rows of a key range that differ.

use std::collections::HashMap;
use std::sync::Arc;

use phony_core::{row, BlobId, BlobRef, QualifiedName, RowChunk, TableEntry};

use crate::error::{pg, Error, Result};
use crate::read::catalog::COLUMN_TYPE_OF_A;
use crate::sql::qualified;
use crate::tracking::{since_mark, Mark};

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

/// A chunk's reference: its id, size, and (for a keyed table) the keys of its first and
/// last rows.
pub(crate) fn chunk_ref(chunk: &RowChunk, key_positions: Option<&[usize]>) -> BlobRef {
    let bounds = key_positions.and_then(|positions| {
        let (first, last) = row::first_and_last(&chunk.data)?;
        Some((
            row::key_text(first, positions),
            row::key_text(last, positions),
        ))
    });
    let (first, last) = bounds.unzip();
    BlobRef {
        id: BlobId::of(&chunk.data),
        rows: chunk.rows,
        bytes: chunk.data.len() as u64,
        first,
        last,
    }
}

/// The chunks (0-based, ascending) whose key ranges hold a key the log names for `relids`
/// since `mark`. Chunk i holds the keys from its first key up to the next chunk's first;
/// the first chunk also holds every smaller key.
pub(crate) async fn affected_chunks(
    client: &impl tokio_postgres::GenericClient,
    entry: &TableEntry,
    chunks: &[BlobRef],
    types: &[String],
    relids: &Vec<u32>,
    mark: &Mark,
) -> Result<Vec<usize>> {
    let n = entry.key.len();
    let mut index: Vec<i32> = Vec::with_capacity(chunks.len());
    let mut bounds: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(chunks.len()); n];
    for (i, c) in chunks.iter().enumerate() {
        let fields = chunk_key(&entry.table, n, c)?;
        index.push(i as i32 + 1);
        for (col, f) in fields.into_iter().enumerate() {
            bounds[col].push(f);
        }
    }
    let changed = changed_keys_sql(entry, types, n + 2, n + 3);
    let k: Vec<String> = (1..=n).map(|i| format!("k{i}")).collect();
    let cols_b: Vec<String> = (0..n)
        .map(|i| format!("b.k{}::{} AS k{}", i + 1, types[i], i + 1))
        .collect();
    let unnest_args: Vec<String> = (0..n).map(|i| format!("${}::text[]", i + 2)).collect();
    let sql = format!(
        "WITH b AS (SELECT i, {cols_b} FROM unnest($1::int4[], {unnest}) AS b(i, {k})),
              c AS ({changed}),
              u AS (SELECT {k}, i FROM b UNION ALL SELECT {k}, NULL FROM c)
         SELECT DISTINCT coalesce(x, 1) FROM (
             SELECT i, max(i) OVER (ORDER BY {k}, i IS NULL ROWS UNBOUNDED PRECEDING) AS x FROM u
         ) z WHERE i IS NULL",
        cols_b = cols_b.join(", "),
        unnest = unnest_args.join(", "),
        k = k.join(", "),
    );
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&index];
    for b in &bounds {
        params.push(b);
    }
    params.push(relids);
    params.push(&mark.snap);
    let rows = client
        .query(&sql, &params)
        .await
        .map_err(pg(format!("finding the changed rows of {}", entry.table)))?;
    let mut wanted: Vec<usize> = rows
        .iter()
        .map(|r| (r.get::<_, i32>(0) as usize).saturating_sub(1))
        .filter(|&i| i < chunks.len())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    Ok(wanted)
}

/// A chunk's first key, unescaped, one value per key column.
pub(crate) fn chunk_key(
    table: &QualifiedName,
    key_len: usize,
    c: &BlobRef,
) -> Result<Vec<Option<String>>> {
    let first = c
        .first
        .as_deref()
        .ok_or_else(|| Error::Internal(format!("snapshot of {table} has no chunk keys")))?;
    let fields = key_values(first)?;
    if fields.len() != key_len {
        return Err(Error::Internal(format!(
            "snapshot of {table} has malformed chunk keys"
        )));
    }
    Ok(fields)
}

/// The distinct keys the log names for `relids` since a mark, typed, as columns k1…kn.
/// `$relids` and `$snap` are the parameter numbers of the relid array and the mark.
pub(crate) fn changed_keys_sql(
    entry: &TableEntry,
    types: &[String],
    relids: usize,
    snap: usize,
) -> String {
    let cols: Vec<String> = (0..entry.key.len())
        .map(|i| format!("key[{}]::{} AS k{}", i + 1, types[i], i + 1))
        .collect();
    format!(
        "SELECT DISTINCT {} FROM phony.changes WHERE relid = ANY(${relids}::oid[]) \
         AND key IS NOT NULL AND {}",
        cols.join(", "),
        since_mark(&format!("${snap}::text"))
    )
}

/// The SQL types of a table's key columns, in key order, with their collations (see
/// [`COLUMN_TYPE_OF_A`]).
pub(crate) async fn key_types(
    client: &impl tokio_postgres::GenericClient,
    entry: &TableEntry,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for k in &entry.key {
        let row = client
            .query_one(
                &format!(
                    "SELECT {COLUMN_TYPE_OF_A} FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = $1::text::regclass AND a.attname = $2"
                ),
                &[&qualified(&entry.table), k],
            )
            .await
            .map_err(pg(format!("reading the key type of {}", entry.table)))?;
        out.push(row.get(0));
    }
    Ok(out)
}

/// The values of a key text (COPY fields joined by tabs), unescaped; `None` for NULL.
pub(crate) fn key_values(text: &str) -> Result<Vec<Option<String>>> {
    Ok(row::fields(text.as_bytes())
        .map(|f| row::unescape(f).map(|v| String::from_utf8_lossy(&v).into_owned()))
        .collect())
}

/// Rows to stage, COPY text: the live rows that differ from (or are missing in) the
/// snapshot, and the snapshot's rows that differ from (or are missing among) the live ones.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    pub live: Vec<u8>,
    pub snap: Vec<u8>,
    /// Where the `live` rows are (their `ctid`s), when the reader knew: a table without a
    /// key then deletes them there rather than find each one by its text.
    pub live_at: Option<Vec<String>>,
}

impl Staged {
    /// The bytes staged so far.
    pub(crate) fn bytes(&self) -> u64 {
        (self.live.len() + self.snap.len()) as u64
    }

    /// Compares `live` rows with the snapshot's rows of the same key range (`snap_rows`, by
    /// key text at `positions`), taking out each one a live row has: equal rows are left
    /// alone, the others staged.
    pub(crate) fn compare<'a, R: AsRef<[u8]>>(
        &mut self,
        snap_rows: &mut HashMap<String, R>,
        live: impl IntoIterator<Item = &'a [u8]>,
        positions: &[usize],
    ) {
        for line in live {
            match snap_rows.remove(&row::key_text(line, positions)) {
                Some(same) if same.as_ref() == line => {}
                Some(other) => {
                    push_line(&mut self.live, line);
                    push_line(&mut self.snap, other.as_ref());
                }
                None => push_line(&mut self.live, line),
            }
        }
    }

    /// Stages the snapshot's rows that no live row had.
    pub(crate) fn rest<R: AsRef<[u8]>>(&mut self, snap_rows: HashMap<String, R>) {
        for line in snap_rows.into_values() {
            push_line(&mut self.snap, line.as_ref());
        }
    }
}

pub(crate) fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.push(b'\n');
}
