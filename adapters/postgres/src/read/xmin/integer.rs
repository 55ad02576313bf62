//! Row ages for a table whose key is one integer column: which of a changed chunk's rows
//! the table lacks, found without reading its old rows back.
//!
//! The scan of [`ages`] gives, per chunk and per class of keys (their low bits, see
//! [`CLASSES`]), the number of old rows and the XOR of their keys, and the tuple ids of the
//! new rows. The old rows' keys of a class are a subset O of the chunk's keys S of that
//! class (see the parent module), so the rows the table lacks are M = S − O, with
//! |M| = |S| − |O|. A new row whose key is in S took the place of one of them (keys are
//! unique among live rows): those keys, U, are in M. The rest, R = M − U, has
//! XOR(R) = XOR(S) ⊕ XOR(O) ⊕ XOR(U): with no key left that XOR must be 0, and with one
//! key left it is that key. Neighbouring keys fall into different classes, so rows
//! deleted together are told apart; a class still holding two or more unknown keys is
//! read key by key ([`class_keys_sql`]).
//!
//! Only the new rows are read whole (by tuple id, a handful of pages). Every step checks
//! what it can — a key that must be in S and is not, counts that do not add up — and gives
//! the table up (`None`) when something disagrees; the caller then compares it otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use phony_core::{row, Backend, BlobRef, Store, TableEntry};
use tokio_postgres::Client;

use super::ages::{copy_out_bounded, Ages, Horizon, Integer, Sums, CLASSES, MAX_FLAGGED_BYTES};
use crate::error::{pg, Result};
use crate::keys::Staged;
use crate::read::chunk_stream::decoded_chunks;
use crate::sql::{column_list, ident, literal, qualified};
use phony_core::merge::parse_int;

/// The most new rows (inserted or updated since the capture) a table may hold for this
/// path; beyond it their tuple ids alone would be a burden, and the content is compared.
const MAX_NEW_ROWS: usize = 1 << 18;

/// The key types whose values XOR as `int8`.
pub(crate) fn is_integer(ty: &str) -> bool {
    matches!(ty, "smallint" | "integer" | "bigint")
}

/// A key's class.
fn class(key: i64) -> usize {
    (key & (CLASSES as i64 - 1)) as usize
}

/// The scan of [`super::ages`] for an integer key, grouping by one `int8`: for an old row,
/// its chunk of the snapshot (bucket of `thresholds`) and class, `bucket * CLASSES +
/// class`, each group giving its old rows' count and XOR; for a new row, a negative number
/// made of its tuple id, a group of its own whose XOR is its key. (One plain integer to
/// group by costs the server half as much per row as the same groups over several
/// columns.) New rows come first, then the old rows' groups in the order of the chunks, so
/// that the sums of a chunk found whole are dropped as soon as its groups have been seen.
///
/// The groups are made in a hash table and only they are sorted: the planner, which
/// expects a group per row, would sort every row first (three fifths of the scan's time
/// on a 2-million-row table, spilling to disk).
pub(crate) async fn ages(
    reader: &Client,
    entry: &TableEntry,
    chunks: &[BlobRef],
    thresholds: &[String],
    ty: &str,
    horizon: Horizon,
) -> Result<Ages> {
    let Some(bounds) = thresholds
        .iter()
        .map(|t| t.parse::<i64>().ok())
        .collect::<Option<Vec<i64>>>()
    else {
        return Ok(Ages::Content);
    };
    let t = qualified(&entry.table);
    let k = format!("t.{}", ident(&entry.key[0]));
    let old_row = horizon.old_sql("t.xmin");
    let sql = format!(
        "WITH g AS MATERIALIZED (SELECT CASE WHEN {old_row} \
           THEN pg_catalog.width_bucket({k}, (SELECT $1::text[]::{ty}[]))::int8 * {CLASSES} \
                + ({k}::int8 & {}) \
           ELSE -1 - (((t.ctid::text::point)[0]::int8 << 16) | (t.ctid::text::point)[1]::int8) \
         END AS g, count(*) AS n, pg_catalog.bit_xor({k}::int8) AS x \
         FROM ONLY {t} AS t GROUP BY 1) \
         SELECT g, n, x FROM g ORDER BY g",
        CLASSES - 1
    );
    let context = || format!("reading the row ages of {}", entry.table);
    let stream = reader
        .query_raw(&sql, [&thresholds])
        .await
        .map_err(pg(context()))?;
    futures::pin_mut!(stream);
    let n = chunks.len();
    let (mut old, mut new_count) = (vec![0u64; n], vec![0u64; n]);
    let mut sums = HashMap::new();
    // The chunk whose groups are being read, with its sums.
    let mut current: Option<(usize, [Sums; CLASSES])> = None;
    let mut keep = |(i, s): (usize, [Sums; CLASSES]), old: &[u64], new: &[u64]| {
        if old[i] != chunks[i].rows || new[i] > 0 {
            sums.insert(i, s);
        }
    };
    let mut new = Vec::new();
    let mut below = false;
    while let Some(r) = stream.try_next().await.map_err(pg(context()))? {
        let (group, count, xor): (Option<i64>, i64, Option<i64>) = (r.get(0), r.get(1), r.get(2));
        // NULL keys: not a primary key as the capture saw it.
        let (Some(group), Some(xor)) = (group, xor) else {
            return Ok(Ages::Content);
        };
        if group < 0 {
            // A new row: the XOR of its group is its key.
            let tid = -1 - group;
            let bucket = bounds.partition_point(|&b| b <= xor);
            let i = bucket.max(1) - 1;
            if count != 1 || i >= n {
                return Ok(Ages::Content);
            }
            below |= bucket == 0;
            new_count[i] += 1;
            new.push((i, format!("({},{})", tid >> 16, tid & 0xFFFF)));
            if new.len() > MAX_NEW_ROWS {
                return Ok(Ages::Content);
            }
            continue;
        }
        let (bucket, class) = (group / CLASSES as i64, (group % CLASSES as i64) as usize);
        // Old rows are the snapshot's: none sorts before its first key.
        if bucket == 0 || bucket as usize > n {
            return Ok(Ages::Content);
        }
        let i = bucket as usize - 1;
        match current {
            Some((at, _)) if at == i => {}
            Some((at, _)) if at > i => return Ok(Ages::Content),
            _ => {
                if let Some(done) = current.take() {
                    keep(done, &old, &new_count);
                }
                current = Some((i, [Sums::default(); CLASSES]));
            }
        }
        old[i] += count as u64;
        if let Some((_, s)) = current.as_mut() {
            s[class] = Sums {
                count: count as u64,
                xor,
            };
        }
    }
    if let Some(done) = current.take() {
        keep(done, &old, &new_count);
    }
    Ok(Ages::of(
        chunks,
        old,
        &new_count,
        below,
        Some(Integer { sums, new }),
    ))
}

/// A class of a chunk whose missing keys its sums did not tell: the chunk (an index into
/// the chunks kept), the class, its keys (ascending) and the replaced ones among them.
struct Open {
    read: usize,
    class: usize,
    keys: Vec<i64>,
    replaced: HashSet<i64>,
}

/// A chunk read from the store: its index, rows and the keys found missing so far.
struct Read {
    chunk: usize,
    plain: Vec<u8>,
    rows: Rows,
    gone: HashSet<i64>,
}

/// Stages the differences of the `flagged` chunks (see the module's text). `None` when the
/// live rows contradict what the scan said, or when what is held in memory (chunks kept
/// for a second look, rows staged) outgrows [`MAX_FLAGGED_BYTES`]: the streaming
/// comparison then takes the table.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare<B: Backend + 'static>(
    reader: &Client,
    store: &Arc<Store<B>>,
    entry: &TableEntry,
    chunks: &[BlobRef],
    flagged: &[usize],
    old: &[u64],
    integer: &Integer,
    horizon: Horizon,
    prefetch: usize,
) -> Result<Option<Staged>> {
    let Some(positions) = crate::keys::key_positions(&entry.columns, &entry.key) else {
        return Ok(None);
    };
    let Some(mut news) = read_new(reader, entry, &integer.new).await? else {
        return Ok(None);
    };
    let mut staged = Staged::default();
    // Chunks with every old row in place need no reading: their new rows are extra.
    let mut lacking = Vec::new();
    for &i in flagged {
        match (chunks.get(i), old.get(i)) {
            (Some(c), Some(&o)) if o == c.rows => {
                let live = news.remove(&i).unwrap_or_default();
                stage(
                    &mut staged,
                    b"",
                    &Rows::default(),
                    &HashSet::new(),
                    &live,
                    &positions,
                );
            }
            (Some(c), Some(&o)) if o < c.rows => lacking.push(i),
            _ => return Ok(None),
        }
    }
    let wanted: Vec<BlobRef> = lacking.iter().map(|&i| chunks[i].clone()).collect();
    let blobs = decoded_chunks(store, wanted, prefetch);
    futures::pin_mut!(blobs);
    let mut at = lacking.iter();
    let (mut kept, mut open) = (Vec::new(), Vec::new());
    let mut kept_bytes = 0u64;
    while let Some(plain) = blobs.try_next().await? {
        let Some(&i) = at.next() else { break };
        let Some(rows) = Rows::of(&plain, positions[0]) else {
            return Ok(None);
        };
        if rows.keys.len() as u64 != chunks[i].rows {
            return Ok(None);
        }
        let live = news.get(&i).map(Vec::as_slice).unwrap_or_default();
        let mut gone = HashSet::new();
        for line in live {
            let key = field(line, positions[0]).and_then(parse_int);
            let Some(key) = key else {
                return Ok(None);
            };
            if rows.keys.binary_search(&key).is_ok() {
                gone.insert(key);
            }
        }
        // Per class: the chunk's keys, less the old rows', less the replaced ones.
        let mut unknown = [0i64; CLASSES];
        let mut residual = [0i64; CLASSES];
        for &k in &rows.keys {
            unknown[class(k)] += 1;
            residual[class(k)] ^= k;
        }
        for &k in &gone {
            unknown[class(k)] -= 1;
            residual[class(k)] ^= k;
        }
        let (mut found, mut classes) = (Vec::new(), Vec::new());
        for c in 0..CLASSES {
            let sums = class_sums(&integer.sums, i, c);
            let unknown = unknown[c] - sums.count as i64;
            let candidate =
                |k: i64| class(k) == c && rows.keys.binary_search(&k).is_ok() && !gone.contains(&k);
            match resolve(unknown, residual[c] ^ sums.xor, candidate) {
                Resolved::Known(key) => found.extend(key),
                Resolved::Contradiction => return Ok(None),
                Resolved::Open => classes.push(c),
            }
        }
        gone.extend(found);
        if classes.is_empty() {
            let live = news.remove(&i).unwrap_or_default();
            stage(&mut staged, &plain, &rows, &gone, &live, &positions);
            if staged.bytes() > MAX_FLAGGED_BYTES {
                return Ok(None);
            }
            continue;
        }
        kept_bytes += plain.len() as u64;
        if kept_bytes > MAX_FLAGGED_BYTES {
            return Ok(None);
        }
        for c in classes {
            let keys: Vec<i64> = rows
                .keys
                .iter()
                .filter(|&&k| class(k) == c)
                .copied()
                .collect();
            let replaced = keys.iter().filter(|k| gone.contains(k)).copied().collect();
            open.push(Open {
                read: kept.len(),
                class: c,
                keys,
                replaced,
            });
        }
        kept.push(Read {
            chunk: i,
            plain,
            rows,
            gone,
        });
    }
    if at.next().is_some() {
        return Ok(None);
    }
    if !open.is_empty() {
        tracing::debug!(
            "{}: {} classes of {} chunks read key by key",
            entry.table,
            open.len(),
            kept.len()
        );
        let Some(found) = read_open(reader, entry, horizon, &open, &integer.sums, &kept).await?
        else {
            return Ok(None);
        };
        for (o, gone) in open.iter().zip(found) {
            kept[o.read].gone.extend(gone);
        }
    }
    for r in kept {
        let live = news.remove(&r.chunk).unwrap_or_default();
        stage(&mut staged, &r.plain, &r.rows, &r.gone, &live, &positions);
    }
    if staged.bytes() > MAX_FLAGGED_BYTES {
        return Ok(None);
    }
    if !news.is_empty() {
        return Ok(None);
    }
    Ok(Some(staged))
}

/// The sums of class `c` of chunk `i` (zero when it has no old row).
fn class_sums(sums: &HashMap<usize, [Sums; CLASSES]>, i: usize, c: usize) -> Sums {
    sums.get(&i).map(|s| s[c]).unwrap_or_default()
}

/// What the sums of a class say of the keys missing from the table beyond those known.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    /// None (`None`) or this one.
    Known(Option<i64>),
    /// Two or more.
    Open,
    /// The sums cannot come from the class's keys.
    Contradiction,
}

/// `unknown` keys are missing beyond those known, and XOR to `residual`; `candidate` says
/// whether a key may be one of them.
fn resolve(unknown: i64, residual: i64, candidate: impl Fn(i64) -> bool) -> Resolved {
    match unknown {
        0 if residual == 0 => Resolved::Known(None),
        1 if candidate(residual) => Resolved::Known(Some(residual)),
        2.. => Resolved::Open,
        _ => Resolved::Contradiction,
    }
}

/// The missing keys of each `open` class, from the keys of its old rows, read from the
/// table; `None` on a contradiction.
async fn read_open(
    reader: &Client,
    entry: &TableEntry,
    horizon: Horizon,
    open: &[Open],
    sums: &HashMap<usize, [Sums; CLASSES]>,
    kept: &[Read],
) -> Result<Option<Vec<HashSet<i64>>>> {
    // One scan per chunk, for all its open classes (a bit mask): its opens are adjacent.
    let (mut lo, mut hi, mut masks) = (Vec::new(), Vec::new(), Vec::new());
    let mut which: HashMap<(usize, usize), usize> = HashMap::with_capacity(open.len());
    let mut last_read = None;
    for (j, o) in open.iter().enumerate() {
        if last_read != Some(o.read) {
            let keys = &kept[o.read].rows.keys;
            let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
                return Ok(None);
            };
            // Old keys are among the chunk's: its first and last key bound them.
            lo.push(first);
            hi.push(last);
            masks.push(0i64);
            last_read = Some(o.read);
        }
        if let Some(mask) = masks.last_mut() {
            *mask |= 1 << o.class;
        }
        which.insert((masks.len() - 1, o.class), j);
    }
    let rows = reader
        .query(&class_keys_sql(entry, horizon), &[&lo, &hi, &masks])
        .await
        .map_err(pg(format!("reading changed keys of {}", entry.table)))?;
    let mut present: Vec<HashSet<i64>> = vec![HashSet::new(); open.len()];
    for r in &rows {
        let (i, key): (i64, i64) = (r.get(0), r.get(1));
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|g| which.get(&(g, class(key))))
            .and_then(|&j| present.get_mut(j));
        match slot {
            Some(p) => {
                p.insert(key);
            }
            None => return Ok(None),
        }
    }
    let mut out = Vec::with_capacity(open.len());
    for (o, present) in open.iter().zip(present) {
        let expected = class_sums(sums, kept[o.read].chunk, o.class).count;
        if present.len() as u64 != expected || present.iter().any(|k| o.replaced.contains(k)) {
            return Ok(None);
        }
        let gone: HashSet<i64> = o
            .keys
            .iter()
            .filter(|k| !present.contains(k))
            .copied()
            .collect();
        if o.keys.len() - gone.len() != present.len() {
            return Ok(None);
        }
        out.push(gone);
    }
    Ok(Some(out))
}

/// The keys of the old rows of some classes of a key range (`$1` lowest, `$2` highest key,
/// `$3` the classes as a bit mask, all `int8[]`): `(ordinal, key)`, one index range scan
/// each (`OFFSET 0` keeps the planner from joining them to a scan of the whole table).
fn class_keys_sql(entry: &TableEntry, horizon: Horizon) -> String {
    let t = qualified(&entry.table);
    let k = format!("t.{}", ident(&entry.key[0]));
    format!(
        "SELECT r.i, x.k FROM unnest($1::int8[], $2::int8[], $3::int8[]) \
         WITH ORDINALITY AS r(lo, hi, m, i) \
         CROSS JOIN LATERAL (SELECT {k}::int8 AS k FROM ONLY {t} AS t \
         WHERE {k} >= r.lo AND {k} <= r.hi AND (r.m >> ({k}::int8 & {})::int4) & 1 = 1 \
         AND {} OFFSET 0) AS x",
        CLASSES - 1,
        horizon.old_sql("t.xmin")
    )
}

/// The new rows by tuple id, as COPY text, per chunk; `None` when they are not all there
/// or outgrow [`MAX_FLAGGED_BYTES`].
async fn read_new(
    reader: &Client,
    entry: &TableEntry,
    new: &[(usize, String)],
) -> Result<Option<HashMap<usize, Vec<Vec<u8>>>>> {
    let mut out: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    if new.is_empty() {
        return Ok(Some(out));
    }
    let chunk_of: HashMap<&str, usize> = new.iter().map(|(i, t)| (t.as_str(), *i)).collect();
    let tids = new
        .iter()
        .map(|(_, t)| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(",");
    let cols = column_list("t", &entry.columns);
    let sql = format!(
        "COPY (SELECT t.ctid, {cols} FROM ONLY {} AS t WHERE t.ctid = ANY({}::tid[])) TO STDOUT",
        qualified(&entry.table),
        literal(&format!("{{{tids}}}"))
    );
    let context = format!("reading the new rows of {}", entry.table);
    let Some(data) = copy_out_bounded(reader, &sql, &context).await? else {
        return Ok(None);
    };
    let mut read = 0;
    for line in row::lines(&data) {
        let Some(tab) = memchr::memchr(row::FIELD_SEP, line) else {
            return Ok(None);
        };
        let Some(&i) = std::str::from_utf8(&line[..tab])
            .ok()
            .and_then(|t| chunk_of.get(t))
        else {
            return Ok(None);
        };
        out.entry(i).or_default().push(line[tab + 1..].to_vec());
        read += 1;
    }
    Ok((read == new.len()).then_some(out))
}

/// Stages one chunk: its rows (`plain`, read into `rows`) whose keys are `gone` against
/// the `live` new rows of its range.
fn stage(
    staged: &mut Staged,
    plain: &[u8],
    rows: &Rows,
    gone: &HashSet<i64>,
    live: &[Vec<u8>],
    positions: &[usize],
) {
    let mut snap_rows: HashMap<String, &[u8]> = HashMap::with_capacity(gone.len());
    for key in gone {
        if let Ok(at) = rows.keys.binary_search(key) {
            let line = rows.line(plain, at);
            snap_rows.insert(row::key_text(line, positions), line);
        }
    }
    staged.compare(&mut snap_rows, live.iter().map(Vec::as_slice), positions);
    staged.rest(snap_rows);
}

/// A chunk's rows by integer key: the keys (ascending) and where each line starts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Rows {
    keys: Vec<i64>,
    /// Per row, the offset of its line; one more, the end.
    starts: Vec<usize>,
}

impl Rows {
    /// The rows of `plain` with their key at field `position`; `None` unless every key is
    /// an integer and they ascend strictly.
    fn of(plain: &[u8], position: usize) -> Option<Rows> {
        let mut rows = Rows::default();
        let mut start = 0;
        // Every row ends with a newline (the last one too).
        for end in memchr::memchr_iter(b'\n', plain) {
            let key = parse_int(field(&plain[start..end], position)?)?;
            if rows.keys.last().is_some_and(|&last| last >= key) {
                return None;
            }
            rows.keys.push(key);
            rows.starts.push(start);
            start = end + 1;
        }
        if start != plain.len() {
            return None;
        }
        rows.starts.push(start);
        Some(rows)
    }

    /// Row `at`'s line, without its newline.
    fn line<'a>(&self, plain: &'a [u8], at: usize) -> &'a [u8] {
        &plain[self.starts[at]..self.starts[at + 1] - 1]
    }
}

/// Field `position` of a line, still escaped.
fn field(line: &[u8], position: usize) -> Option<&[u8]> {
    let mut rest = line;
    for _ in 0..position {
        rest = &rest[memchr::memchr(row::FIELD_SEP, rest)? + 1..];
    }
    Some(match memchr::memchr(row::FIELD_SEP, rest) {
        Some(end) => &rest[..end],
        None => rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unknown_key_is_the_residual_and_none_leaves_it_zero() {
        let keys = [3i64, 5, 8, 13, 21];
        let candidate = |k: i64| keys.contains(&k);
        assert_eq!(resolve(1, 8, candidate), Resolved::Known(Some(8)));
        assert_eq!(resolve(0, 0, candidate), Resolved::Known(None));
        assert_eq!(resolve(2, 8 ^ 13, candidate), Resolved::Open);
    }

    #[test]
    fn sums_that_cannot_be_are_contradictions() {
        let keys = [3i64, 5, 8, 13, 21];
        let candidate = |k: i64| keys.contains(&k);
        // A residual that is no candidate.
        assert_eq!(resolve(1, 4, candidate), Resolved::Contradiction);
        // Nothing unknown, yet the XOR is not 0.
        assert_eq!(resolve(0, 8, candidate), Resolved::Contradiction);
        // More old rows than keys.
        assert_eq!(resolve(-1, 0, candidate), Resolved::Contradiction);
    }

    #[test]
    fn rows_must_have_integer_keys_in_ascending_order() {
        let plain = b"1\ta\n2\tb\n10\tc\n";
        let rows = Rows::of(plain, 0).unwrap();
        assert_eq!(rows.keys, vec![1, 2, 10]);
        assert_eq!(rows.line(plain, 1), b"2\tb");
        assert_eq!(rows.line(plain, 2), b"10\tc");
        assert_eq!(Rows::of(b"a\t-7\nb\t4\n", 1).unwrap().keys, vec![-7, 4]);
        assert_eq!(Rows::of(b"2\ta\n1\tb\n", 0), None);
        assert_eq!(Rows::of(b"1\ta\n1\tb\n", 0), None);
        assert_eq!(Rows::of(b"\\N\ta\n", 0), None);
        assert_eq!(Rows::of(b"1\ta\n", 2), None);
        assert_eq!(
            Rows::of(b"", 0),
            Some(Rows {
                keys: vec![],
                starts: vec![0]
            })
        );
    }

    #[test]
    fn integer_keys_parse_exactly() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-42"), Some(-42));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"1.5"), None);
        assert_eq!(parse_int(b"\\N"), None);
    }
}
