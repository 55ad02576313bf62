//! Rows' ages of a table without a key, chunk by chunk.
//!
//! Such a table's rows were captured in the order of their whole text (`(t.*)::text COLLATE
//! "C"`), so its chunks split that order into ranges as a key's chunks do: each chunk's
//! first row, printed as that text, bounds its range. The rows are read back from the
//! chunks and printed by the server through a temporary table of the same columns, so the
//! bounds are what the capture's sort compared. Identical rows print alike and sort
//! together, in the chunks' COPY text as in the record text, and a run of them may
//! straddle a chunk's end. So a *bucket* is a run of chunks that start with the same row;
//! it holds the copies of that row that end the chunk before it, and not the copies of the
//! next bucket's first row that end its own last chunk. The capture's rows of each bucket
//! are thus known exactly.
//!
//! Rows are bucketed by a prefix of that text ([`Key`]): the first 63 bytes of the whole
//! text or, when the first column alone keeps nearly as many buckets apart, of the text up
//! to the end of the first column, which costs the server a fraction of printing every
//! column (0.42 s against 0.66 s for the benchmark's `audit_log`, 300,000 rows).
//!
//! One scan counts the old and the new rows of each bucket (see [`super`] for old and
//! new). A bucket is unchanged exactly when its live rows are all old and as many as the
//! capture's rows of it: each old row is a row version the capture read, with the same
//! text, in the same bucket, so together they are all of them. The scan also notes where
//! each row lies (its `ctid`), and the live rows of the other buckets are read whole from
//! there (a table too large to keep every place for is scanned again for them instead).
//! They are compared with the capture's as
//! multisets: every old row must be one of the capture's (else the table's content is
//! compared), new rows equal to a capture row the old ones left cancel it, and what is
//! left on either side is staged: the live rows with their `ctid`s, so that they are
//! deleted where they are, not looked for among all the table's rows.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use futures::TryStreamExt;
use phony_core::{row, Backend, BlobRef, Store, TableEntry};
use tokio_postgres::Client;

use super::ages::{copy_out_bounded, flagged_line, Horizon, MAX_FLAGGED_BYTES};
use crate::error::{pg, Result};
use crate::keys::{push_line, Staged};
use crate::read::chunk_stream::decoded_chunks;
use crate::sql::{columns_of, ident, literal, qualified};
use crate::write::rewrite::copy_in_rows;

/// A run of chunks that start with the same row, and the capture's rows of its range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bucket {
    /// The chunks (indexes into the table's chunks).
    chunks: Range<usize>,
    /// Their first row, COPY text.
    first: Vec<u8>,
    /// The capture's row just before it (the last of the bucket before), COPY text.
    before: Option<Vec<u8>>,
    /// Copies of `first` that end the chunk before `chunks` (they belong here).
    lead: u64,
    /// Lines that end the last chunk and equal the next bucket's first row (they belong
    /// there).
    trim: u64,
    /// The capture's rows of the range: the chunks' rows, plus `lead`, less `trim`.
    rows: u64,
}

/// A live row's `ctid` (text) and its COPY text.
type Located<'a> = (&'a [u8], &'a [u8]);

/// What reading a chunk gives the buckets: its first and last line, how many lines at its
/// end equal the last, and the line before those (`None` when they are all of it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ends {
    first: Vec<u8>,
    last: Vec<u8>,
    tail: u64,
    before_tail: Option<Vec<u8>>,
}

impl Ends {
    fn of(plain: &[u8]) -> Option<Ends> {
        let (first, last) = row::first_and_last(plain)?;
        let body = plain.strip_suffix(b"\n").unwrap_or(plain);
        let mut from_end = body.rsplit(|&b| b == b'\n');
        let mut tail = 0;
        let before_tail = loop {
            match from_end.next() {
                Some(line) if line == last => tail += 1,
                other => break other.map(<[u8]>::to_vec),
            }
        };
        Some(Ends {
            first: first.to_vec(),
            last: last.to_vec(),
            tail,
            before_tail,
        })
    }
}

/// The buckets of chunks whose ends are `ends` (one per chunk, in order).
fn buckets(chunks: &[BlobRef], ends: &[Ends]) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for (i, e) in ends.iter().enumerate() {
        match out.last_mut() {
            Some(b) if b.first == e.first => b.chunks.end = i + 1,
            _ => {
                let (lead, before) = match i.checked_sub(1).map(|p| &ends[p]) {
                    Some(b) if b.last == e.first => (b.tail, b.before_tail.clone()),
                    Some(b) => (0, Some(b.last.clone())),
                    None => (0, None),
                };
                if let Some(b) = out.last_mut() {
                    b.trim = lead;
                }
                out.push(Bucket {
                    chunks: i..i + 1,
                    first: e.first.clone(),
                    before,
                    lead,
                    trim: 0,
                    rows: 0,
                });
            }
        }
    }
    for b in &mut out {
        let rows: u64 = chunks[b.chunks.clone()].iter().map(|c| c.rows).sum();
        b.rows = (rows + b.lead).saturating_sub(b.trim);
    }
    out
}

/// What a live row is bucketed by: the first bytes (at most 63, whole characters) of the
/// text the capture sorted rows by, or of a prefix of it, as a `name`, whose fixed width
/// lets `width_bucket` search its bounds by halves (over `text` bounds it walks them one by
/// one). Cut at whole characters, a prefix does not quite keep the order: see [`bounded`]
/// for the bounds that make up for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The row's whole text, `(t.*)::text`.
    Whole,
    /// The row's text up to the end of its first column, `(first,`: the first column
    /// printed as a one-column row (so quoted exactly as in the whole text), its `)` made
    /// a `,`. No such text is a prefix of another, so rows sort by it as by their whole
    /// text, ties aside; printing one column costs a fraction of printing all of them.
    First,
}

impl Key {
    /// The key's text for row `t` of `entry`, in SQL. [`Key::First`] only for a table of
    /// more than one column.
    fn text(self, entry: &TableEntry) -> String {
        match (self, entry.columns.first()) {
            (Key::First, Some(first)) => {
                format!("(left(ROW(t.{})::text, -1) || ',')", ident(first))
            }
            _ => "(t.*)::text".to_owned(),
        }
    }

    /// The key for row `t` of `entry` as `width_bucket` compares it, in SQL.
    fn sql(self, entry: &TableEntry) -> String {
        format!("({}::name COLLATE \"C\")", self.text(entry))
    }
}

/// What the ages of a table without a key found.
#[derive(Debug)]
pub(super) enum Found {
    /// The table holds the snapshot's rows.
    Unchanged,
    /// These rows differ, found by comparing `compared` of the table's chunks.
    Staged { staged: Staged, compared: u64 },
}

/// Reads the ages of `entry`'s rows against its snapshot `chunks` (more than one) and
/// compares the buckets they flag. `None` when the ages cannot tell: then the table's
/// content is compared.
pub(super) async fn examine<B: Backend + 'static>(
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    chunks: &[BlobRef],
    horizon: Horizon,
    prefetch: usize,
) -> Result<Option<Found>> {
    let t = qualified(&entry.table);
    let context = || format!("reading the row ages of {}", entry.table);
    // The capture's order was the text of all of the table's columns: they must be the
    // stored ones (no generated column, none added or dropped since).
    let columns: Vec<String> = reader
        .query_one(
            "SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') \
             FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&t],
        )
        .await
        .map_err(pg(context()))?
        .get(0);
    if columns.is_empty() || columns != entry.columns {
        return Ok(None);
    }
    let mut ends = Vec::with_capacity(chunks.len());
    let blobs = decoded_chunks(store, chunks.to_vec(), prefetch);
    futures::pin_mut!(blobs);
    while let Some(plain) = blobs.try_next().await? {
        let Some(e) = Ends::of(&plain) else {
            return Ok(None);
        };
        ends.push(e);
    }
    let buckets = buckets(chunks, &ends);
    drop(ends);
    let before = buckets.len();
    let Some((buckets, bounds, key)) = bounded(reader, entry, buckets).await? else {
        return Ok(None);
    };
    tracing::debug!(
        "{}: {} chunks in {before} runs, {} buckets by the first bytes of their rows' {}",
        entry.table,
        chunks.len(),
        buckets.len(),
        match key {
            Key::Whole => "text",
            Key::First => "first column",
        }
    );
    let key = key.sql(entry);
    let old = horizon.old_sql("t.xmin");
    let Some(Scan { counts, places }) = scan(reader, entry, &key, &bounds, &old).await? else {
        return Ok(None);
    };
    let flagged: Vec<usize> = (0..buckets.len())
        .filter(|&i| counts[i].1 > 0 || counts[i].0 != buckets[i].rows)
        .collect();
    if flagged.is_empty() {
        return Ok(Some(Found::Unchanged));
    }
    let compared: usize = flagged.iter().map(|&i| buckets[i].chunks.len()).sum();
    let bytes: u64 = flagged
        .iter()
        .flat_map(|&i| &chunks[buckets[i].chunks.clone()])
        .map(|c| c.bytes)
        .sum();
    if bytes > MAX_FLAGGED_BYTES {
        return Ok(None);
    }
    let rows = match places {
        Some(places) => Rows::At(
            flagged
                .iter()
                .flat_map(|&i| places[i].iter().copied())
                .collect(),
        ),
        None => Rows::Buckets(&flagged),
    };
    let sql = flagged_sql(entry, &key, &bounds, rows, &old);
    let context = format!("reading changed rows of {}", entry.table);
    let Some(live) = copy_out_bounded(reader, &sql, &context).await? else {
        return Ok(None);
    };
    // Per flagged bucket (by its 1-based number): its old and its new live rows.
    let mut olds: HashMap<usize, Vec<&[u8]>> = HashMap::new();
    let mut news: HashMap<usize, Vec<Located<'_>>> = HashMap::new();
    for line in row::lines(&live) {
        let Some((b, is_old, fields)) = flagged_line(line) else {
            return Ok(None);
        };
        let mut fields = fields.splitn(2, |&b| b == row::FIELD_SEP);
        let (Some(at), Some(rest)) = (fields.next(), fields.next()) else {
            return Ok(None);
        };
        if is_old {
            olds.entry(b.max(1)).or_default().push(rest);
        } else {
            news.entry(b.max(1)).or_default().push((at, rest));
        }
    }
    let mut staged = Staged::default();
    let mut live_at = Vec::new();
    let wanted: Vec<BlobRef> = flagged
        .iter()
        .flat_map(|&i| chunks[buckets[i].chunks.clone()].iter().cloned())
        .collect();
    let blobs = decoded_chunks(store, wanted, prefetch);
    futures::pin_mut!(blobs);
    for &i in &flagged {
        let bucket = &buckets[i];
        let mut plain = Vec::new();
        for _ in bucket.chunks.clone() {
            match blobs.try_next().await? {
                Some(p) => plain.extend_from_slice(&p),
                None => return Ok(None),
            }
        }
        let mut lines: Vec<&[u8]> = row::lines(&plain).collect();
        lines.truncate(lines.len().saturating_sub(bucket.trim as usize));
        let mut snap: HashMap<&[u8], i64> = HashMap::new();
        *snap.entry(&bucket.first).or_default() += bucket.lead as i64;
        for line in lines {
            *snap.entry(line).or_default() += 1;
        }
        let old_rows = olds.remove(&(i + 1)).unwrap_or_default();
        if old_rows.len() as u64 != counts[i].0 {
            return Ok(None);
        }
        for line in old_rows {
            match snap.get_mut(line) {
                Some(n) if *n > 0 => *n -= 1,
                _ => return Ok(None),
            }
        }
        for (at, line) in news.remove(&(i + 1)).unwrap_or_default() {
            match snap.get_mut(line) {
                Some(n) if *n > 0 => *n -= 1,
                _ => {
                    push_line(&mut staged.live, line);
                    live_at.push(String::from_utf8_lossy(at).into_owned());
                }
            }
        }
        for (line, n) in snap {
            for _ in 0..n {
                push_line(&mut staged.snap, line);
            }
        }
    }
    if !olds.is_empty() || !news.is_empty() {
        return Ok(None);
    }
    staged.live_at = Some(live_at);
    Ok(Some(Found::Staged {
        staged,
        compared: compared as u64,
    }))
}

/// The buckets, with those whose first row cannot be told from the row before it by
/// the first bytes of their text merged into the bucket before, and the remaining buckets'
/// bounds: their first rows' first bytes.
///
/// A row's prefix (see [`Key`]) keeps at most 63 bytes of whole characters, so it does
/// not keep the order in every case: of two rows alike in their first 62 bytes, one with
/// a one-byte character next keeps 63 bytes, one with a two-byte character keeps 62 and
/// sorts first even if the row sorts after. A bound therefore keeps at most 60 bytes
/// (whole characters; no character is longer than 4): a row that sorts at or after a
/// bucket's first row keeps at least 60 bytes, those of the bound among them or bytes
/// that sort after them, so its prefix is at or after the bound. A row of the buckets
/// before sorts at or before the row just before the bucket, whose prefix is less than
/// the bound (else the bucket was merged); the two rows share their first 60 bytes or
/// differ within them, where the bound is decided, so that row's prefix is less too. So
/// the bounds put every row of the capture in its bucket. `None` when the rows do not
/// read back as they should.
async fn bounded(
    reader: &Client,
    entry: &TableEntry,
    buckets: Vec<Bucket>,
) -> Result<Option<(Vec<Bucket>, Vec<String>, Key)>> {
    let firsts: Vec<&[u8]> = buckets.iter().map(|b| b.first.as_slice()).collect();
    let befores: Vec<&[u8]> = buckets.iter().filter_map(|b| b.before.as_deref()).collect();
    let Some(printed) = printed(reader, entry, firsts.iter().chain(&befores).copied()).await?
    else {
        return Ok(None);
    };
    let (firsts, mut rest) = printed.split_at(buckets.len());
    let befores: Vec<Option<&Printed>> = buckets
        .iter()
        .map(|b| {
            let (text, after) = match (&b.before, rest.split_first()) {
                (Some(_), Some((text, after))) => (Some(text), after),
                _ => (None, rest),
            };
            rest = after;
            text
        })
        .collect();
    let texts = |key: Key| -> (Vec<Option<&str>>, Vec<Option<&str>>) {
        (
            firsts.iter().map(|p| p.key(key)).collect(),
            befores.iter().map(|b| b.and_then(|p| p.key(key))).collect(),
        )
    };
    let (f, p) = texts(Key::Whole);
    let Some(whole) = merged(reader, entry, buckets.clone(), &f, &p).await? else {
        return Ok(None);
    };
    // By the first column when that keeps nearly as many buckets (a first column of few
    // values keeps few).
    let first = match entry.columns.len() > 1 {
        true => {
            let (f, p) = texts(Key::First);
            merged(reader, entry, buckets, &f, &p).await?
        }
        false => None,
    };
    Ok(Some(match first {
        Some((b, bounds)) if b.len() * 10 >= whole.0.len() * 9 => (b, bounds, Key::First),
        _ => (whole.0, whole.1, Key::Whole),
    }))
}

/// `buckets` merged by the keys of their first rows (`firsts`) and of the rows before them
/// (`befores`), as [`bounded`] says, with their bounds; `None` when a key is missing or
/// the bounds do not ascend as the server compares them.
async fn merged(
    reader: &Client,
    entry: &TableEntry,
    buckets: Vec<Bucket>,
    firsts: &[Option<&str>],
    befores: &[Option<&str>],
) -> Result<Option<(Vec<Bucket>, Vec<String>)>> {
    let count = buckets.len();
    if firsts.iter().any(Option::is_none) {
        return Ok(None);
    }
    let context = || format!("reading the chunk bounds of {}", entry.table);
    let rows = reader
        .query(
            "SELECT b.bound, coalesce(u.p::name COLLATE \"C\" < b.bound::name COLLATE \"C\", false) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(f, p, i), \
               LATERAL (SELECT left(u.f, max(n)) AS bound FROM generate_series(0, 60) AS n \
                        WHERE octet_length(left(u.f, n)) <= 60) AS b \
             ORDER BY u.i",
            &[&firsts, &befores],
        )
        .await
        .map_err(pg(context()))?;
    if rows.len() != count {
        return Ok(None);
    }
    let mut merged: Vec<Bucket> = Vec::new();
    let mut bounds: Vec<String> = Vec::new();
    for (b, r) in buckets.into_iter().zip(&rows) {
        let (bound, apart): (String, bool) = (r.get(0), r.get(1));
        match merged.last_mut() {
            Some(last) if !apart => {
                last.chunks.end = b.chunks.end;
                last.trim = b.trim;
                last.rows += b.rows;
            }
            _ => {
                merged.push(b);
                bounds.push(bound);
            }
        }
    }
    // They ascend as the server compares them, or the buckets would mean nothing.
    let ascending: bool = reader
        .query_one(
            "SELECT coalesce(( \
               SELECT bool_and(x < y) FROM (SELECT $1::name[] AS a) AS th, \
                 unnest(th.a[1:pg_catalog.cardinality(th.a) - 1], th.a[2:]) AS u(x, y)), true)",
            &[&bounds],
        )
        .await
        .map_err(pg(context()))?
        .get(0);
    Ok(ascending.then_some((merged, bounds)))
}

/// A row's text as the capture sorted by it, and up to the end of its first column (see
/// [`Key::First`]; `None` for a table of one column).
struct Printed {
    whole: String,
    first: Option<String>,
}

impl Printed {
    fn key(&self, key: Key) -> Option<&str> {
        match key {
            Key::Whole => Some(&self.whole),
            Key::First => self.first.as_deref(),
        }
    }
}

/// `rows` (COPY text lines) as the record text the capture sorted by (and its first
/// column's part), read back through a
/// temporary table with the table's columns; `None` when they do not read back one for
/// one, or do not print back as they were.
async fn printed<'a>(
    reader: &Client,
    entry: &TableEntry,
    rows: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<Vec<Printed>>> {
    let t = qualified(&entry.table);
    const TEMP: &str = "pg_temp.\"phony bounds\"";
    let context = format!("reading the chunk bounds of {}", entry.table);
    reader
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {TEMP}; CREATE TEMP TABLE \"phony bounds\" (LIKE {t})"
        ))
        .await
        .map_err(pg(context.clone()))?;
    let mut text = Vec::new();
    let mut count = 0;
    for line in rows {
        push_line(&mut text, line);
        count += 1;
    }
    let read = async {
        let cols = crate::sql::ident_list(&entry.columns);
        copy_in_rows(
            reader,
            &format!("COPY {TEMP} ({cols}) FROM STDIN"),
            text.clone(),
            &context,
        )
        .await?;
        // Rows COPY wrote into a new table lie in the order they came. They must print as
        // the capture printed them: else this session's settings print some values
        // otherwise (`lc_monetary` for `money`, say), and so may sort rows otherwise.
        let again = format!("COPY (SELECT {cols} FROM {TEMP} ORDER BY ctid) TO STDOUT");
        if copy_out_bounded(reader, &again, &context).await?.as_ref() != Some(&text) {
            return Ok(Vec::new());
        }
        let first = match entry.columns.len() > 1 {
            true => Key::First.text(entry),
            false => "NULL::text".to_owned(),
        };
        let printed = reader
            .query(
                &format!(
                    "SELECT {}, {first} FROM {TEMP} AS t ORDER BY t.ctid",
                    Key::Whole.text(entry)
                ),
                &[],
            )
            .await
            .map_err(pg(context.clone()))?;
        Ok::<_, crate::error::Error>(
            printed
                .iter()
                .map(|r| Printed {
                    whole: r.get(0),
                    first: r.get(1),
                })
                .collect::<Vec<Printed>>(),
        )
    };
    let printed = read.await;
    reader
        .batch_execute(&format!("DROP TABLE IF EXISTS {TEMP}"))
        .await
        .map_err(pg(context))?;
    let printed = printed?;
    Ok((printed.len() == count).then_some(printed))
}

/// Which live rows [`flagged_sql`] reads: those of some buckets (0-based), found by
/// scanning the table, or those at these places (packed as [`Scan`] keeps them).
enum Rows<'a> {
    Buckets(&'a [usize]),
    At(Vec<u64>),
}

/// `COPY` of some live rows: per row its bucket's number (1-based; the rows before the
/// first bucket's bound are numbered 0 and go with it), `t` for an old row or `f`, its
/// `ctid` and the stored columns.
fn flagged_sql(
    entry: &TableEntry,
    key: &str,
    bounds: &[String],
    rows: Rows<'_>,
    old: &str,
) -> String {
    let t = qualified(&entry.table);
    let cols = columns_of("t", &entry.columns).join(", ");
    let (inner, outer) = match rows {
        Rows::Buckets(flagged) => {
            let mut numbers: Vec<String> = flagged.iter().map(|i| (i + 1).to_string()).collect();
            if flagged.first() == Some(&0) {
                numbers.push("0".into());
            }
            let numbers = numbers.join(", ");
            (
                String::new(),
                format!(" WHERE x.\"phony bucket\" = ANY(ARRAY[{numbers}]::int4[])"),
            )
        }
        Rows::At(places) => {
            let tids: Vec<String> = places.iter().map(|&p| format!("'{}'", tid(p))).collect();
            (
                format!(" WHERE t.ctid = ANY(ARRAY[{}]::tid[])", tids.join(", ")),
                String::new(),
            )
        }
    };
    format!(
        "COPY (SELECT * FROM (SELECT pg_catalog.width_bucket({key}, {}) \
         AS \"phony bucket\", {old} AS \"phony old\", t.ctid AS \"phony at\", {cols} \
         FROM ONLY {t} AS t{inner}) x{outer}) TO STDOUT",
        name_array(bounds),
    )
}

/// `bounds` as an SQL `name[]`.
fn name_array(bounds: &[String]) -> String {
    let bounds: Vec<String> = bounds.iter().map(|b| literal(b)).collect();
    format!("ARRAY[{}]::name[]", bounds.join(", "))
}

/// What the counting scan found: per bucket (0-based) its old and new live rows, and
/// while they are at most [`MAX_PLACES`], where each row is (see [`place`]).
struct Scan {
    counts: Vec<(u64, u64)>,
    places: Option<Vec<Vec<u64>>>,
}

/// The most rows whose places the counting scan keeps (8 bytes each): past it, the rows
/// of the buckets that differ are found by a second scan of the table instead.
const MAX_PLACES: usize = 4 << 20;

/// Counts the old and new live rows of each of the buckets `bounds` delimit, keeping
/// their places while they are few enough. `None` when a row contradicts the capture's
/// order (an old row before the first bound) or the output is not what was asked for.
async fn scan(
    reader: &Client,
    entry: &TableEntry,
    key: &str,
    bounds: &[String],
    old: &str,
) -> Result<Option<Scan>> {
    let t = qualified(&entry.table);
    let sql = format!(
        "COPY (SELECT pg_catalog.width_bucket({key}, {}), {old}, t.ctid FROM ONLY {t} AS t) TO STDOUT",
        name_array(bounds)
    );
    let context = format!("reading the row ages of {}", entry.table);
    let stream = reader.copy_out(&sql).await.map_err(pg(&context))?;
    futures::pin_mut!(stream);
    let mut counts = vec![(0u64, 0u64); bounds.len()];
    let mut places = Some(vec![Vec::new(); bounds.len()]);
    let mut kept = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    while let Some(data) = stream.try_next().await.map_err(pg(&context))? {
        pending.extend_from_slice(&data);
        let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        for line in row::lines(&pending[..=end]) {
            let Some((b, is_old, Some(at))) =
                flagged_line(line).map(|(b, is_old, at)| (b, is_old, place(at)))
            else {
                return Ok(None);
            };
            // Rows sorting before the first bound are new ones of the first bucket; an old
            // one there contradicts the capture's order.
            if b == 0 && is_old {
                return Ok(None);
            }
            let i = b.max(1) - 1;
            let Some(c) = counts.get_mut(i) else {
                return Ok(None);
            };
            match is_old {
                true => c.0 += 1,
                false => c.1 += 1,
            }
            kept += 1;
            if kept > MAX_PLACES {
                places = None;
            }
            if let Some(p) = places.as_mut() {
                p[i].push(at);
            }
        }
        pending.drain(..=end);
    }
    if !pending.is_empty() {
        return Ok(None);
    }
    Ok(Some(Scan { counts, places }))
}

/// A `ctid`'s text, `(block,offset)`, packed as `block << 16 | offset`.
fn place(text: &[u8]) -> Option<u64> {
    let inner = text.strip_prefix(b"(")?.strip_suffix(b")")?;
    let inner = std::str::from_utf8(inner).ok()?;
    let (block, offset) = inner.split_once(',')?;
    Some(u64::from(block.parse::<u32>().ok()?) << 16 | u64::from(offset.parse::<u16>().ok()?))
}

/// The `ctid` text of a place packed by [`place`].
fn tid(place: u64) -> String {
    format!("({},{})", place >> 16, place & 0xFFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phony_core::BlobId;

    fn chunk(rows: u64) -> BlobRef {
        BlobRef::plain(BlobId::of(&rows.to_le_bytes()), rows, 0)
    }

    #[test]
    fn changed_rows_are_read_by_bucket_or_by_place() {
        let entry = TableEntry {
            table: phony_core::QualifiedName::new("public", "a \"b\""),
            columns: vec!["x".into(), "y z".into()],
            key: vec![],
            content: chunk(3),
        };
        let bounds = ["(a,1)".to_owned(), "(it's,2)".to_owned()];
        let whole = Key::Whole.sql(&entry);
        let scan = flagged_sql(&entry, &whole, &bounds, Rows::Buckets(&[0, 1]), "o");
        assert_eq!(
            scan,
            "COPY (SELECT * FROM (SELECT pg_catalog.width_bucket(((t.*)::text::name COLLATE \"C\"), \
             ARRAY['(a,1)', '(it''s,2)']::name[]) AS \"phony bucket\", o AS \"phony old\", \
             t.ctid AS \"phony at\", t.\"x\", t.\"y z\" FROM ONLY \"public\".\"a \"\"b\"\"\" AS t) x \
             WHERE x.\"phony bucket\" = ANY(ARRAY[1, 2, 0]::int4[])) TO STDOUT"
        );
        let at = flagged_sql(
            &entry,
            &whole,
            &bounds,
            Rows::At(vec![(7 << 16) | 3, 1]),
            "o",
        );
        assert!(
            at.ends_with(
                "FROM ONLY \"public\".\"a \"\"b\"\"\" AS t WHERE t.ctid = ANY(ARRAY['(7,3)', '(0,1)']::tid[])) x) TO STDOUT"
            ),
            "{at}"
        );
        // The rows before the first bound go with the first bucket only when it is read.
        let later = flagged_sql(&entry, &whole, &bounds, Rows::Buckets(&[1]), "o");
        assert!(later.contains("ANY(ARRAY[2]::int4[])"), "{later}");
        // By the first column: printed as a row of one column, its `)` made a `,`.
        assert_eq!(
            Key::First.sql(&entry),
            "((left(ROW(t.\"x\")::text, -1) || ',')::name COLLATE \"C\")"
        );
    }

    #[test]
    fn places_pack_and_unpack() {
        for text in ["(0,1)", "(4294967295,65535)", "(123,45)"] {
            assert_eq!(tid(place(text.as_bytes()).unwrap()), text);
        }
        for bad in ["", "(1,2", "1,2)", "(x,2)", "(1,65536)", "(-1,2)"] {
            assert_eq!(place(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_chunk_knows_its_ends_and_the_run_that_closes_it() {
        let e = Ends::of(b"a\nb\nc\nc\n").unwrap();
        assert_eq!(
            (e.first.as_slice(), e.last.as_slice(), e.tail),
            (&b"a"[..], &b"c"[..], 2)
        );
        let e = Ends::of(b"x\n").unwrap();
        assert_eq!(
            (e.first.as_slice(), e.last.as_slice(), e.tail),
            (&b"x"[..], &b"x"[..], 1)
        );
        assert_eq!(Ends::of(b""), None);
    }

    #[test]
    fn runs_of_identical_rows_across_chunk_ends_belong_to_the_bucket_they_open() {
        // Sorted rows: a b c c | c c d d | d e | e e e | e f
        let plain: [&[u8]; 5] = [
            b"a\nb\nc\nc\n",
            b"c\nc\nd\nd\n",
            b"d\ne\n",
            b"e\ne\ne\n",
            b"e\nf\n",
        ];
        let chunks: Vec<BlobRef> = plain
            .iter()
            .map(|p| chunk(row::lines(p).count() as u64))
            .collect();
        let ends: Vec<Ends> = plain.iter().map(|p| Ends::of(p).unwrap()).collect();
        let b = buckets(&chunks, &ends);
        type Summary<'a> = (Range<usize>, &'a [u8], u64, u64, u64);
        let summary: Vec<Summary<'_>> = b
            .iter()
            .map(|b| (b.chunks.clone(), b.first.as_slice(), b.lead, b.trim, b.rows))
            .collect();
        assert_eq!(
            summary,
            vec![
                // a b, not the two c that start the next bucket
                (0..1, &b"a"[..], 0, 2, 2),
                // the two c before it and its own two, not the two d that start the next
                (1..2, &b"c"[..], 2, 2, 4),
                // the two d before it and its own, not the e that starts the next
                (2..3, &b"d"[..], 2, 1, 3),
                // the e before it, then two chunks that start with e: e e e e e f
                (3..5, &b"e"[..], 1, 0, 6),
            ]
        );
        let befores: Vec<Option<&[u8]>> = b.iter().map(|b| b.before.as_deref()).collect();
        assert_eq!(befores, [None, Some(&b"b"[..]), Some(b"c"), Some(b"d")]);
        // Every row is in exactly one bucket.
        let total: u64 = chunks.iter().map(|c| c.rows).sum();
        assert_eq!(b.iter().map(|b| b.rows).sum::<u64>(), total);
    }
}
