//! Reading rows from PostgreSQL as row-aligned chunks, and the queries that select them.

use std::collections::VecDeque;
use std::pin::Pin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use phony_core::mask::TableMask;
use phony_core::{Backend, BlobRef, ChunkParams, QualifiedName, RowChunk, RowChunker, Store};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, CopyOutStream};

use crate::error::{pg, Error, Result};
use crate::read::catalog::TableInfo;
use crate::sql::{column_list, literal, qualified};

/// The chunks of a `COPY … TO STDOUT`, as they are cut.
pub(crate) struct ChunkStream {
    stream: Pin<Box<CopyOutStream>>,
    chunker: Option<RowChunker>,
    ready: VecDeque<RowChunk>,
    table: QualifiedName,
    progress: Option<Progress>,
    /// Applied to every row before it is chunked; `partial` holds a row's start until its end
    /// arrives.
    mask: Option<TableMask>,
    partial: Vec<u8>,
    /// Time spent waiting for the server's data, and cutting (and masking) it.
    pub(crate) reading: Duration,
    pub(crate) chunking: Duration,
}

impl ChunkStream {
    /// Starts `sql` (a `COPY … TO STDOUT` of `table`) on `client`.
    pub(crate) async fn open(
        client: &Client,
        sql: &str,
        table: &QualifiedName,
        params: ChunkParams,
        progress: Option<Progress>,
    ) -> Result<Self> {
        let stream = client.copy_out(sql).await.map_err(read_error(table))?;
        Ok(ChunkStream {
            stream: Box::pin(stream),
            chunker: Some(RowChunker::new(params)?),
            ready: VecDeque::new(),
            table: table.clone(),
            progress,
            mask: None,
            partial: Vec::new(),
            reading: Duration::ZERO,
            chunking: Duration::ZERO,
        })
    }

    /// Masks every row with `mask` before it is chunked.
    pub(crate) fn with_mask(mut self, mask: Option<TableMask>) -> Self {
        self.mask = mask;
        self
    }

    /// `buf`'s rows, masked when a mask is set.
    fn push(&mut self, buf: &[u8]) -> Vec<RowChunk> {
        let (Some(chunker), Some(mask)) = (self.chunker.as_mut(), &self.mask) else {
            return match self.chunker.as_mut() {
                Some(chunker) => chunker.push(buf),
                None => Vec::new(),
            };
        };
        self.partial.extend_from_slice(buf);
        let Some(end) = memchr::memrchr(b'\n', &self.partial) else {
            return Vec::new();
        };
        let mut masked = Vec::with_capacity(end + 64);
        for line in self.partial[..end].split(|&b| b == b'\n') {
            mask.apply(line, &mut masked);
            masked.push(b'\n');
        }
        self.partial.drain(..=end);
        chunker.push(&masked)
    }

    /// The next chunk, or `None` at the end of the rows.
    pub(crate) async fn next(&mut self) -> Result<Option<RowChunk>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Ok(Some(chunk));
            }
            if self.chunker.is_none() {
                return Ok(None);
            }
            let waiting = Instant::now();
            let next = self
                .stream
                .try_next()
                .await
                .map_err(read_error(&self.table))?;
            let cutting = Instant::now();
            self.reading += cutting - waiting;
            match next {
                Some(buf) => {
                    if let Some(p) = &self.progress {
                        p(buf.len() as u64);
                    }
                    let chunks = self.push(&buf);
                    self.ready.extend(chunks);
                }
                None => {
                    if let Some(chunker) = self.chunker.take() {
                        self.ready.extend(chunker.finish());
                    }
                }
            }
            self.chunking += cutting.elapsed();
        }
    }
}

/// The error of reading `table`. Text the session's encoding (UTF-8) cannot hold can only
/// come from a `SQL_ASCII` database, which stores any bytes and leaves the check to the
/// output: the server refuses to send it, and the error says what to do.
fn read_error(table: &QualifiedName) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
    move |e| match e.code() {
        Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) => Error::NotUtf8 {
            table: table.to_string(),
        },
        _ => pg(format!("reading table {table}"))(e),
    }
}

impl std::fmt::Debug for ChunkStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStream")
            .field("table", &self.table)
            .finish()
    }
}

/// The plain bytes of `chunks` from the store, in order, each checked against its hash and
/// its recorded size; up to `prefetch` are fetched (with the delta bases they need) and
/// decoded (on the blocking pool) ahead.
pub(crate) fn decoded_chunks<B: Backend + 'static>(
    store: &Arc<Store<B>>,
    chunks: Vec<BlobRef>,
    prefetch: usize,
) -> impl Stream<Item = Result<Vec<u8>>> + '_ {
    futures::stream::iter(chunks)
        .map(move |c| {
            let store = store.clone();
            async move {
                let chain = store.get_chain(&c.id, c.bytes).await?;
                tokio::task::spawn_blocking(move || chain.decode_exact(c.bytes))
                    .await
                    .map_err(|e| Error::Internal(format!("decoding a chunk failed: {e}")))?
                    .map_err(Error::from)
            }
        })
        .buffered(prefetch.max(1))
}

/// One end of a key range: the key's values (unescaped, `None` for NULL) and whether the
/// range includes it.
pub(crate) struct Bound<'a> {
    pub values: &'a [Option<String>],
    pub inclusive: bool,
}

/// The query that streams a table's stored columns in a stable order: by primary key, or by
/// the whole row's text for a table without one; with bounds, only the keys between them.
pub(crate) fn copy_out_sql(
    table: &TableInfo,
    types: &[String],
    lower: Option<Bound<'_>>,
    upper: Option<Bound<'_>>,
) -> String {
    let cols = column_list("t", &table.columns);
    let order = if table.key.is_empty() {
        "(t.*)::text COLLATE \"C\"".to_owned()
    } else {
        column_list("t", &table.key)
    };
    let key_row = format!("ROW({order})");
    let value = |vals: &[Option<String>]| {
        let parts: Vec<String> = vals
            .iter()
            .zip(types)
            .map(|(v, ty)| match v {
                Some(v) => format!("{}::{ty}", literal(v)),
                None => format!("NULL::{ty}"),
            })
            .collect();
        format!("ROW({})", parts.join(", "))
    };
    let mut conds = Vec::new();
    if let Some(b) = lower {
        let op = if b.inclusive { ">=" } else { ">" };
        conds.push(format!("{key_row} {op} {}", value(b.values)));
    }
    if let Some(b) = upper {
        let op = if b.inclusive { "<=" } else { "<" };
        conds.push(format!("{key_row} {op} {}", value(b.values)));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    format!(
        "COPY (SELECT {cols} FROM ONLY {} AS t{filter} ORDER BY {order}) TO STDOUT",
        qualified(&table.name)
    )
}

/// Reports progress: plain bytes read so far are added in steps.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_in_key_order_or_by_whole_row() {
        let mut t = TableInfo {
            name: QualifiedName::new("public", "Order Lines"),
            columns: vec!["id".into(), "Größe".into()],
            key: vec!["id".into()],
            bytes: 0,
        };
        assert_eq!(
            copy_out_sql(&t, &[], None, None),
            r#"COPY (SELECT t."id", t."Größe" FROM ONLY "public"."Order Lines" AS t ORDER BY t."id") TO STDOUT"#
        );
        let lo = [Some("7".to_owned())];
        let hi = [Some("it's".to_owned())];
        let sql = copy_out_sql(
            &t,
            &["bigint".into()],
            Some(Bound {
                values: &lo,
                inclusive: true,
            }),
            Some(Bound {
                values: &hi,
                inclusive: false,
            }),
        );
        assert!(
            sql.contains(
                r#"WHERE ROW(t."id") >= ROW('7'::bigint) AND ROW(t."id") < ROW('it''s'::bigint)"#
            ),
            "{sql}"
        );
        t.key.clear();
        assert!(copy_out_sql(&t, &[], None, None)
            .ends_with(r#"ORDER BY (t.*)::text COLLATE "C") TO STDOUT"#));
    }
}
