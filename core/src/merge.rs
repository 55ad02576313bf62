//! Patching one chunk: its rows minus the changed keys, plus the live rows of those keys,
//! in key order; cut again with the chunker when the result outgrows a chunk. Pure: bytes
//! in, bytes out. The PostgreSQL adapter's incremental capture feeds it the rows its change
//! log names.
//!
//! Keys are integer columns only (`smallint`, `integer`, `bigint`), whose text COPY form
//! parses to an `i64` and whose btree order is the order of those numbers; a composite key
//! orders as the tuple does, which is how `ORDER BY k1, k2` orders it.

use std::cmp::Ordering;

use crate::chunker::ROW_END;
use crate::{row, ChunkParams, RowChunk, RowChunker};

/// Why a chunk could not be patched.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The chunker refused its parameters.
    #[error(transparent)]
    Chunker(#[from] crate::Error),
    /// Changed keys were fed out of ascending order (a bug in the caller).
    #[error("changed keys out of order: {key:?} after {last:?}")]
    OutOfOrder { key: Key, last: Option<Key> },
    /// A row of the chunk being patched has no integer key (the chunk is not what it should
    /// be).
    #[error("a stored row has no integer key: {row:?}")]
    NoIntegerKey { row: String },
}

type Result<T> = std::result::Result<T, MergeError>;

/// A key's values, in key order.
pub type Key = Vec<i64>;

/// One changed key and the row that now has it, if any (a line without its `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub key: Key,
    pub row: Option<Vec<u8>>,
}

/// Parses the integer fields at `positions` of a COPY line into `out`, or `None` if one is
/// missing, NULL or not an integer.
pub fn parse_key(line: &[u8], positions: &[usize], out: &mut Key) -> Option<()> {
    out.clear();
    out.resize(positions.len(), 0);
    let last = positions.iter().copied().max()?;
    let mut found = 0;
    for (i, field) in row::fields(line).enumerate().take(last + 1) {
        for (slot, _) in positions.iter().enumerate().filter(|(_, &p)| p == i) {
            out[slot] = parse_int(field)?;
            found += 1;
        }
    }
    (found == positions.len()).then_some(())
}

/// A chunk's first key (key fields joined by tabs, as [`row::key_text`] writes them).
pub fn parse_key_text(text: &str) -> Option<Key> {
    row::fields(text.as_bytes()).map(parse_int).collect()
}

/// PostgreSQL's text form of an integer: an optional `-`, then ASCII digits (`None` for
/// anything else, `\N` included).
pub fn parse_int(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated below zero, so that i64::MIN parses too.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// The chunk whose key range holds `key`: the last whose first key is not above it (chunk
/// 0 also holds every smaller key). `firsts` are the chunks' first keys, ascending.
pub fn chunk_of(firsts: &[Key], key: &[i64]) -> usize {
    firsts
        .partition_point(|f| f.as_slice() <= key)
        .saturating_sub(1)
}

/// Where merged rows go: one buffer while they fit in a chunk, the chunker once they don't.
#[derive(Debug)]
enum Output {
    Whole(Vec<u8>),
    Cut {
        chunker: RowChunker,
        pending: Vec<u8>,
    },
}

/// Bytes gathered before they are handed to the chunker.
const PUSH_BYTES: usize = 64 << 10;

/// One chunk being patched: changed keys are fed in ascending order, in as many batches as
/// it takes; the output is the chunk's rows with every fed key's old row dropped and its
/// new row (if any) put in its place.
#[derive(Debug)]
pub struct Merge {
    positions: Vec<usize>,
    params: ChunkParams,
    base: bytes::Bytes,
    /// Start of the first base line not yet copied or dropped.
    pos: usize,
    /// The key of the base line at `pos`, once parsed, and where that line ends.
    head: Option<(Key, usize)>,
    out: Output,
    done: Vec<RowChunk>,
    changed: bool,
    /// The last key fed.
    last: Option<Key>,
}

impl Merge {
    /// Starts patching a chunk whose plain rows are `base` (empty for a table that had
    /// none).
    pub fn new(base: bytes::Bytes, positions: &[usize], params: ChunkParams) -> Self {
        Merge {
            positions: positions.to_vec(),
            params,
            base,
            pos: 0,
            head: None,
            out: Output::Whole(Vec::new()),
            done: Vec::new(),
            changed: false,
            last: None,
        }
    }

    /// Merges the next changed keys (ascending, and above those fed before).
    pub fn feed(&mut self, changes: &[Changed]) -> Result<()> {
        for c in changes {
            if self.last.as_ref().is_some_and(|last| *last >= c.key) {
                return Err(MergeError::OutOfOrder {
                    key: c.key.clone(),
                    last: self.last.clone(),
                });
            }
            self.last = Some(c.key.clone());
            let run_start = self.pos;
            let mut drop_to = None;
            while let Some((key, end)) = self.head()? {
                match key.as_slice().cmp(&c.key) {
                    Ordering::Less => {
                        self.pos = end;
                        self.head = None;
                    }
                    Ordering::Equal => {
                        drop_to = Some(end);
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
            self.copy_base(run_start, self.pos)?;
            if let Some(end) = drop_to {
                self.pos = end;
                self.head = None;
                self.changed = true;
            }
            if let Some(r) = &c.row {
                self.push(r)?;
                self.push(&[ROW_END])?;
                self.changed = true;
            }
        }
        Ok(())
    }

    /// Chunks completed so far (only once the output has outgrown one chunk).
    pub fn take_done(&mut self) -> Vec<RowChunk> {
        std::mem::take(&mut self.done)
    }

    /// The rest of the chunks, and whether anything changed at all (if not, the output is
    /// the base chunk itself and nothing is returned).
    pub fn finish(mut self) -> Result<(Vec<RowChunk>, bool)> {
        if !self.changed {
            return Ok((Vec::new(), false));
        }
        let (from, to) = (self.pos, self.base.len());
        self.copy_base(from, to)?;
        self.cut_if_outgrown()?;
        let mut out = self.done;
        match self.out {
            Output::Whole(data) if data.is_empty() => {}
            Output::Whole(data) => {
                let rows = memchr::memchr_iter(ROW_END, &data).count() as u64;
                out.push(RowChunk {
                    data: data.into(),
                    rows,
                });
            }
            Output::Cut {
                mut chunker,
                pending,
            } => {
                out.extend(chunker.push(&pending));
                out.extend(chunker.finish());
            }
        }
        Ok((out, true))
    }

    /// The key and line end of the base line at `pos`, or `None` past the last.
    fn head(&mut self) -> Result<Option<(Key, usize)>> {
        if self.head.is_none() && self.pos < self.base.len() {
            let rest = &self.base[self.pos..];
            let len = memchr::memchr(ROW_END, rest).unwrap_or(rest.len());
            let mut key = Key::new();
            parse_key(&rest[..len], &self.positions, &mut key).ok_or_else(|| {
                MergeError::NoIntegerKey {
                    row: String::from_utf8_lossy(&rest[..len.min(200)]).into_owned(),
                }
            })?;
            self.head = Some((key, self.pos + (len + 1).min(rest.len())));
        }
        Ok(self.head.clone())
    }

    fn copy_base(&mut self, from: usize, to: usize) -> Result<()> {
        if from < to {
            let base = self.base.clone();
            self.push(&base[from..to])?;
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.out {
            Output::Whole(data) => {
                data.extend_from_slice(bytes);
                self.cut_if_outgrown()?;
            }
            Output::Cut { chunker, pending } => {
                pending.extend_from_slice(bytes);
                if pending.len() >= PUSH_BYTES {
                    self.done.extend(chunker.push(pending));
                    pending.clear();
                }
            }
        }
        Ok(())
    }

    /// Hands the output to the chunker once it is larger than a chunk may be cut, and
    /// changed (an unchanged chunk stays as it is, whatever its size).
    fn cut_if_outgrown(&mut self) -> Result<()> {
        if let Output::Whole(data) = &self.out {
            if self.changed && data.len() > self.params.max as usize {
                let mut chunker = RowChunker::new(self.params)?;
                self.done.extend(chunker.push(data));
                self.out = Output::Cut {
                    chunker,
                    pending: Vec::new(),
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> ChunkParams {
        ChunkParams {
            min: 1024,
            avg: 4096,
            max: 16384,
            normalization: 1,
        }
    }

    fn line(k: i64, v: &str) -> Vec<u8> {
        format!("{v}\t{k}").into_bytes()
    }

    fn rows(keys: impl IntoIterator<Item = (i64, String)>) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in keys {
            out.extend(line(k, &v));
            out.push(b'\n');
        }
        out
    }

    fn joined(chunks: &[RowChunk]) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.data.iter().copied()).collect()
    }

    #[test]
    fn keys_parse_strictly() {
        let mut k = Key::new();
        assert!(parse_key(b"x\t-12\t7", &[2, 1], &mut k).is_some());
        assert_eq!(k, vec![7, -12]);
        assert!(parse_key(b"x\t\\N", &[1], &mut k).is_none());
        assert!(parse_key(b"x\t+1", &[1], &mut k).is_none());
        assert!(parse_key(b"x\t1.5", &[1], &mut k).is_none());
        assert!(parse_key(b"x", &[1], &mut k).is_none());
        assert!(parse_key(b"99999999999999999999", &[0], &mut k).is_none());
        assert!(parse_key(b"-", &[0], &mut k).is_none());
        assert!(parse_key(b"", &[0], &mut k).is_none());
        for v in [i64::MIN, i64::MAX, 0, -1, 1] {
            assert!(parse_key(v.to_string().as_bytes(), &[0], &mut k).is_some());
            assert_eq!(k, vec![v]);
        }
        assert!(parse_key(b"9223372036854775808", &[0], &mut k).is_none());
        assert_eq!(parse_key_text("3\t-4"), Some(vec![3, -4]));
        assert_eq!(parse_key_text("3\tx"), None);
    }

    #[test]
    fn keys_find_their_chunk() {
        let firsts = vec![vec![10], vec![20], vec![30]];
        assert_eq!(chunk_of(&firsts, &[5]), 0);
        assert_eq!(chunk_of(&firsts, &[10]), 0);
        assert_eq!(chunk_of(&firsts, &[19]), 0);
        assert_eq!(chunk_of(&firsts, &[20]), 1);
        assert_eq!(chunk_of(&firsts, &[1000]), 2);
        let pairs = vec![vec![1, 5], vec![2, 0]];
        assert_eq!(chunk_of(&pairs, &[1, 9]), 0);
        assert_eq!(chunk_of(&pairs, &[2, -1]), 0);
        assert_eq!(chunk_of(&pairs, &[2, 0]), 1);
    }

    #[test]
    fn an_unchanged_chunk_is_reported_as_such() {
        let base = rows([1, 3, 5].map(|k| (k, "v".to_owned())));
        let mut m = Merge::new(base.into(), &[1], params());
        // Keys the log names but this chunk never held (another partition's, say).
        let gone = |k| Changed {
            key: vec![k],
            row: None,
        };
        m.feed(&[gone(0), gone(2), gone(9)]).unwrap();
        let (chunks, changed) = m.finish().unwrap();
        assert!(chunks.is_empty());
        assert!(!changed);
    }

    /// The rows of `base` with `changes` applied, by a plain model (a sorted map).
    fn model(base: &[(i64, String)], changes: &[(i64, Option<String>)]) -> Vec<u8> {
        let mut m: std::collections::BTreeMap<i64, String> = base.iter().cloned().collect();
        for (k, v) in changes {
            match v {
                Some(v) => m.insert(*k, v.clone()),
                None => m.remove(k),
            };
        }
        rows(m)
    }

    proptest! {
        #[test]
        fn patching_equals_applying_the_changes(
            base in proptest::collection::btree_map(-50i64..50, "[a-z]{0,8}", 0..40),
            changes in proptest::collection::btree_map(-60i64..60, proptest::option::of("[A-Z]{0,700}"), 0..40),
            split in 1usize..6,
        ) {
            let base: Vec<(i64, String)> = base.into_iter().collect();
            let changes: Vec<(i64, Option<String>)> = changes.into_iter().collect();
            let fed: Vec<Changed> = changes
                .iter()
                .map(|(k, v)| Changed { key: vec![*k], row: v.as_ref().map(|v| line(*k, v)) })
                .collect();
            let mut m = Merge::new(rows(base.clone()).into(), &[1], params());
            let mut out = Vec::new();
            for batch in fed.chunks(split) {
                m.feed(batch).unwrap();
                out.extend(m.take_done());
            }
            let (rest, changed) = m.finish().unwrap();
            out.extend(rest);
            let expected = model(&base, &changes);
            if changed {
                prop_assert_eq!(joined(&out), expected.clone());
                for c in &out {
                    prop_assert!(!c.data.is_empty());
                    prop_assert_eq!(c.rows as usize, memchr::memchr_iter(b'\n', &c.data).count());
                }
            } else {
                prop_assert_eq!(rows(base), expected.clone());
            }
            // Within bounds: only a chunk that grew past `max` is cut, and then as the
            // chunker cuts (no piece past `max` plus one row).
            if expected.len() <= params().max as usize {
                prop_assert!(out.len() <= 1);
            } else if changed {
                let mut c = RowChunker::new(params()).unwrap();
                let mut again = c.push(&expected);
                again.extend(c.finish());
                prop_assert_eq!(out, again);
            }
        }
    }

    #[test]
    fn composite_keys_merge_in_tuple_order() {
        let base = b"1\t1\ta\n1\t3\tb\n2\t0\tc\n".to_vec();
        let mut m = Merge::new(base.into(), &[0, 1], params());
        m.feed(&[
            Changed {
                key: vec![1, 2],
                row: Some(b"1\t2\tnew".to_vec()),
            },
            Changed {
                key: vec![1, 3],
                row: None,
            },
            Changed {
                key: vec![3, -1],
                row: Some(b"3\t-1\tlast".to_vec()),
            },
        ])
        .unwrap();
        let (chunks, changed) = m.finish().unwrap();
        assert!(changed);
        assert_eq!(
            joined(&chunks),
            b"1\t1\ta\n1\t2\tnew\n2\t0\tc\n3\t-1\tlast\n".to_vec()
        );
        assert_eq!(chunks[0].rows, 4);
    }

    #[test]
    fn a_chunk_larger_than_a_cut_stays_whole_until_it_changes() {
        // One row longer than `max` makes a chunk longer than `max`.
        let base = rows([
            (1, "a".repeat(20_000)),
            (3, "b".to_owned()),
            (5, "c".to_owned()),
        ]);
        let gone = |k| Changed {
            key: vec![k],
            row: None,
        };
        let mut m = Merge::new(base.clone().into(), &[1], params());
        m.feed(&[gone(2), gone(4)]).unwrap();
        assert!(m.take_done().is_empty());
        assert_eq!(m.finish().unwrap(), (Vec::new(), false));

        let mut m = Merge::new(base.into(), &[1], params());
        m.feed(&[gone(3)]).unwrap();
        let (chunks, changed) = m.finish().unwrap();
        assert!(changed);
        let expected = rows([(1, "a".repeat(20_000)), (5, "c".to_owned())]);
        assert_eq!(joined(&chunks), expected);
        let mut c = RowChunker::new(params()).unwrap();
        let mut cut = c.push(&expected);
        cut.extend(c.finish());
        assert_eq!(chunks, cut);
    }

    #[test]
    fn a_chunk_that_loses_every_row_is_gone() {
        let base = rows([(1, "a".to_owned()), (2, "b".to_owned())]);
        let mut m = Merge::new(base.into(), &[1], params());
        m.feed(&[
            Changed {
                key: vec![1],
                row: None,
            },
            Changed {
                key: vec![2],
                row: None,
            },
        ])
        .unwrap();
        let (chunks, changed) = m.finish().unwrap();
        assert!(changed);
        assert!(chunks.is_empty());
    }

    #[test]
    fn keys_out_of_order_are_an_error_not_a_guess() {
        let mut m = Merge::new(rows([(1, "a".to_owned())]).into(), &[1], params());
        let gone = |k| Changed {
            key: vec![k],
            row: None,
        };
        m.feed(&[gone(5)]).unwrap();
        assert!(m.feed(&[gone(5)]).is_err());
        assert!(m.feed(&[gone(4)]).is_err());
    }

    #[test]
    fn a_row_without_an_integer_key_is_an_error_not_a_guess() {
        let mut m = Merge::new(b"x\tnope\n".to_vec().into(), &[1], params());
        assert!(m
            .feed(&[Changed {
                key: vec![1],
                row: None
            }])
            .is_err());
    }
}
