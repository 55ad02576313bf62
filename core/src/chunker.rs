//! Row-aligned content-defined chunking.
//!
//! A table's rows arrive as a byte stream in which every row ends with `\n` (PostgreSQL's
//! text COPY format escapes newlines inside values). [`RowChunker`] finds FastCDC cut
//! points and moves each one forward to the next row end, so a chunk is always a run of
//! whole rows. Cuts depend only on the content, never on how the stream was split into
//! pushes: a cut is decided only once `max` bytes (or the end of the stream) are buffered,
//! and FastCDC never looks further than `max` bytes ahead.

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{self, Normalization};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The byte that ends every row.
pub const ROW_END: u8 = b'\n';

/// Chunking parameters. They are part of the stored format: a store records the
/// parameters it was written with, and every writer of that store uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Smallest chunk FastCDC may cut (before moving to the row end).
    pub min: u32,
    /// Target average chunk size.
    pub avg: u32,
    /// Largest chunk FastCDC may cut (a single row longer than this makes a longer chunk).
    pub max: u32,
    /// FastCDC normalization level (0–3).
    pub normalization: u8,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
            normalization: 1,
        }
    }
}

impl ChunkParams {
    /// Checks the parameters against FastCDC's limits (even sizes, min ≤ avg ≤ max).
    pub fn validate(&self) -> Result<()> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "unsupported chunking parameters {self:?}"
            )))
        }
    }

    fn level(&self) -> Normalization {
        match self.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        }
    }
}

/// A run of whole rows cut from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChunk {
    /// The plain bytes: whole rows, each ending with [`ROW_END`].
    pub data: Bytes,
    /// How many rows `data` holds.
    pub rows: u64,
}

/// A push-style chunker: feed it bytes as they arrive, collect whole-row chunks.
#[derive(Debug)]
pub struct RowChunker {
    params: ChunkParams,
    mask_s: u64,
    mask_l: u64,
    buf: BytesMut,
    /// FastCDC's cut for the chunk at the head of `buf`, once decided.
    cut: Option<usize>,
    /// Where to resume looking for a row end after `cut`.
    scan_from: usize,
}

impl RowChunker {
    /// A chunker with the given (validated) parameters.
    pub fn new(params: ChunkParams) -> Result<Self> {
        params.validate()?;
        let (mask_s, mask_l) = v2020::select_masks(params.avg as usize, params.level());
        Ok(RowChunker {
            params,
            mask_s,
            mask_l,
            buf: BytesMut::with_capacity(params.max as usize * 2),
            cut: None,
            scan_from: 0,
        })
    }

    /// Adds `data` to the stream and returns the chunks it completes.
    pub fn push(&mut self, data: &[u8]) -> Vec<RowChunk> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(false) {
            out.push(chunk);
        }
        out
    }

    /// Ends the stream and returns the remaining chunks.
    pub fn finish(mut self) -> Vec<RowChunk> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(true) {
            out.push(chunk);
        }
        out
    }

    fn next_chunk(&mut self, at_end: bool) -> Option<RowChunk> {
        if self.buf.is_empty() {
            return None;
        }
        let cut = match self.cut {
            Some(cut) => cut,
            None => {
                if !at_end && self.buf.len() < self.params.max as usize {
                    return None;
                }
                let (_, cut) = self.fastcdc_cut();
                self.cut = Some(cut);
                self.scan_from = cut.saturating_sub(1);
                cut
            }
        };
        debug_assert!(cut >= 1);
        let end = match memchr::memchr(ROW_END, &self.buf[self.scan_from..]) {
            Some(pos) => self.scan_from + pos + 1,
            None if at_end => self.buf.len(),
            None => {
                self.scan_from = self.buf.len();
                return None;
            }
        };
        let data = self.buf.split_to(end).freeze();
        self.cut = None;
        self.scan_from = 0;
        let rows = memchr::memchr_iter(ROW_END, &data).count() as u64;
        Some(RowChunk { data, rows })
    }

    fn fastcdc_cut(&self) -> (u64, usize) {
        let p = &self.params;
        v2020::cut(
            &self.buf,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows(seed: u64, n: usize) -> Vec<u8> {
        // Deterministic rows of varying length, like a COPY stream.
        let mut out = Vec::new();
        let mut x = seed;
        for i in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (x >> 33) % 300;
            out.extend_from_slice(format!("{i}\t").as_bytes());
            for j in 0..len {
                out.push(b'a' + ((x >> (j % 50)) % 26) as u8);
            }
            out.push(ROW_END);
        }
        out
    }

    fn chunk_all(params: ChunkParams, input: &[u8], split: usize) -> Vec<RowChunk> {
        let mut c = RowChunker::new(params).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(split.max(1)) {
            out.extend(c.push(piece));
        }
        out.extend(c.finish());
        out
    }

    fn small() -> ChunkParams {
        ChunkParams {
            min: 1024,
            avg: 4096,
            max: 16384,
            normalization: 1,
        }
    }

    #[test]
    fn chunks_are_whole_rows_and_reassemble() {
        let input = rows(7, 5000);
        let chunks = chunk_all(small(), &input, 1000);
        assert!(chunks.len() > 10);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
        assert_eq!(joined, input);
        for c in &chunks {
            assert_eq!(c.data.last(), Some(&ROW_END));
        }
        assert_eq!(chunks.iter().map(|c| c.rows).sum::<u64>(), 5000);
    }

    #[test]
    fn golden_chunk_boundaries_of_seeded_data() {
        // A change here is a change of the stored format: review it, don't just update it.
        let input = rows(42, 20_000);
        let chunks = chunk_all(ChunkParams::default(), &input, 65536);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.data.len()).collect();
        let ids: Vec<String> = chunks
            .iter()
            .map(|c| crate::BlobId::of(&c.data).short())
            .collect();
        assert_eq!(input.len(), 3_117_219);
        assert_eq!(
            sizes,
            GOLDEN_SIZES.to_vec(),
            "chunk boundaries changed; ids now {ids:?}"
        );
    }

    const GOLDEN_SIZES: &[usize] = &[
        222103, 97029, 103928, 69580, 22771, 71605, 109606, 76654, 68009, 55045, 122569, 22808,
        108109, 63796, 76995, 85428, 110901, 199424, 87475, 47555, 121274, 74729, 262218, 25814,
        85383, 185100, 216317, 191958, 74900, 22935, 35201,
    ];

    #[test]
    fn an_insert_changes_only_nearby_chunks() {
        let input = rows(9, 20_000);
        let mut changed = input.clone();
        let at = input.len() / 2;
        let at = at + memchr::memchr(ROW_END, &input[at..]).unwrap() + 1;
        changed.splice(at..at, b"99999\tinserted row\n".iter().copied());
        let a = chunk_all(small(), &input, 4096);
        let b = chunk_all(small(), &changed, 4096);
        let ids_a: std::collections::HashSet<_> =
            a.iter().map(|c| crate::BlobId::of(&c.data)).collect();
        let new = b
            .iter()
            .filter(|c| !ids_a.contains(&crate::BlobId::of(&c.data)))
            .count();
        assert!(new <= 2, "{new} new chunks");
    }

    #[test]
    fn a_row_longer_than_max_is_one_chunk() {
        let mut input = b"1\tshort\n2\t".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\n3\tshort\n");
        let chunks = chunk_all(small(), &input, 777);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
        assert_eq!(joined, input);
        assert!(chunks.iter().all(|c| c.data.ends_with(b"\n")));
    }

    proptest! {
        #[test]
        fn cuts_do_not_depend_on_how_the_stream_is_split(seed in 0u64..1000, n in 0usize..3000, split in 1usize..70_000) {
            let input = rows(seed, n);
            let whole = chunk_all(small(), &input, input.len().max(1));
            let pieces = chunk_all(small(), &input, split);
            prop_assert_eq!(whole, pieces);
        }
    }
}
