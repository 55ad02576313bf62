//! What a table's rows' ages say, shared by the general scan ([`super`]) and the one for
//! an integer key ([`super::integer`]): the capture's horizon, the verdict per table, and
//! the bound on what a table's changed chunks may hold in memory.

use std::collections::HashMap;

use futures::TryStreamExt;
use phony_core::BlobRef;
use tokio_postgres::Client;

use crate::error::{pg, Result};

/// The capture snapshot's `xmin`, as the 32-bit transaction id rows carry: rows whose
/// `xmin` precedes it are old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Horizon(pub(crate) u32);

impl Horizon {
    /// SQL true when the row version whose `xid`-typed `xmin` is `xmin` was written before
    /// the horizon: it is older by `age()`, which counts back from the current transaction
    /// id modulo 2^32, as PostgreSQL orders ids, and gives the special ids (frozen,
    /// bootstrap) the greatest age. A row more than 2^31 ids older than now reads as new:
    /// compared, never wrongly trusted. (Cheaper than printing `xmin` and parsing it.)
    pub(crate) fn old_sql(self, xmin: &str) -> String {
        format!("pg_catalog.age({xmin}) > pg_catalog.age('{}'::xid)", self.0)
    }

    /// The same test in Rust, `now` being the current transaction id (for tests of the SQL).
    #[cfg(test)]
    pub(crate) fn precedes(self, xmin: u32, now: u32) -> bool {
        let age = |x: u32| {
            if x < 3 {
                i32::MAX
            } else {
                now.wrapping_sub(x) as i32
            }
        };
        age(xmin) > age(self.0)
    }
}

/// What a table's rows' ages say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ages {
    /// Every row is one the capture read, and none is missing: the table is the snapshot's.
    Unchanged,
    /// These chunks (0-based, ascending) may differ; the others hold the live rows. With
    /// `below`, rows sort before the first chunk's first key (they go with chunk 0). `old`:
    /// each chunk's old rows; `integer`: what the scan found for an integer key.
    Chunks {
        flagged: Vec<usize>,
        below: bool,
        old: Vec<u64>,
        integer: Option<Integer>,
    },
    /// Compare the whole table's content.
    Content,
}

impl Ages {
    /// The verdict on a table from its chunks' `old` and `new` rows: the chunks that may
    /// differ are those whose range holds a new row, or not as many old rows as the chunk
    /// has (and chunk 0 when rows sort before it, `below`).
    pub(crate) fn of(
        chunks: &[BlobRef],
        old: Vec<u64>,
        new: &[u64],
        below: bool,
        integer: Option<Integer>,
    ) -> Ages {
        let flagged: Vec<usize> = (0..chunks.len())
            .filter(|&i| (i == 0 && below) || new[i] > 0 || old[i] != chunks[i].rows)
            .collect();
        if flagged.is_empty() {
            Ages::Unchanged
        } else {
            Ages::Chunks {
                flagged,
                below,
                old,
                integer,
            }
        }
    }
}

/// The most a table's changed chunks (snapshot bytes) and the live rows read for them may
/// hold in memory; beyond it the table's content is compared by the streaming path.
pub(crate) const MAX_FLAGGED_BYTES: u64 = 64 << 20;

/// The output of a `COPY … TO STDOUT`, or `None` once it outgrows [`MAX_FLAGGED_BYTES`].
pub(crate) async fn copy_out_bounded(
    reader: &Client,
    sql: &str,
    context: &str,
) -> Result<Option<Vec<u8>>> {
    let stream = reader.copy_out(sql).await.map_err(pg(context))?;
    futures::pin_mut!(stream);
    let mut data = Vec::new();
    while let Some(buf) = stream.try_next().await.map_err(pg(context))? {
        data.extend_from_slice(&buf);
        if data.len() as u64 > MAX_FLAGGED_BYTES {
            return Ok(None);
        }
    }
    Ok(Some(data))
}

/// One line of a changed-rows query (`COPY` text): the number of the chunk or bucket the
/// row falls in, whether the row is older than the capture (`t`), and the rest of its
/// fields. `None` when the line is not of that shape.
pub(crate) fn flagged_line(line: &[u8]) -> Option<(usize, bool, &[u8])> {
    let mut parts = line.splitn(3, |&b| b == phony_core::row::FIELD_SEP);
    let (tag, age, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let i = std::str::from_utf8(tag).ok()?.parse::<usize>().ok()?;
    Some((i, age == b"t", rest))
}

/// Keys are counted and XORed per class of their low bits (`key & (CLASSES - 1)`).
pub(crate) const CLASSES: usize = 16;

/// The old rows of one class of a chunk: how many, and their keys' XOR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub count: u64,
    pub xor: i64,
}

/// What the scan of a table with an integer key found beyond the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Integer {
    /// Per chunk that may differ, per class, its old rows' sums (the other chunks' are
    /// not kept: a table's chunks can be many).
    pub sums: HashMap<usize, [Sums; CLASSES]>,
    /// The new rows: their chunk and tuple id (`ctid` as text).
    pub new: Vec<(usize, String)>,
}
