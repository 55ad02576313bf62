//! Deltas (codec tag 2): a blob stored as a zstd frame compressed with the plain bytes of
//! another blob, its *base*, as a raw-content prefix (zstd's `refPrefix`: the base is
//! never parsed as a zstd dictionary, whatever its first bytes).
//!
//! ```text
//! [2] [depth: u8] [base id: 32 bytes] [zstd frame]
//! ```
//!
//! `depth` is one more than the base's (a standalone blob has depth 0) and at most
//! [`MAX_DELTA_DEPTH`], so decoding a blob reads at most that many bases. A chain is read
//! top-down into a [`Chain`] (the store fetches each base the previous header names) and
//! decoded bottom-up; every link is checked against its hash.

use bytes::Bytes;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

use super::{decode, decode_exact, encode, TAG_DELTA, TAG_RAW, TAG_ZSTD};
use crate::config::Compression;
use crate::error::{Error, Result};
use crate::id::BlobId;

/// The longest chain of deltas: a blob whose base has this depth is stored standalone.
///
/// Decoding a delta of depth `d` decodes `d + 1` blobs: on a 64 KiB chunk of rows, depth 8
/// costs 2.5–4 times a standalone decode (see `measure_delta_costs` and docs/design.md),
/// and on a remote store each level is one more sequential request.
pub const MAX_DELTA_DEPTH: u8 = 8;

/// The largest plain blob stored as a delta or used as a base (a chunk is at most 256 KiB
/// past one row, a manifest node a few MiB): it bounds the memory decoding a chain takes
/// whatever its headers say, since every base is decoded within it.
pub const MAX_DELTA_LEN: u64 = 16 << 20;

const HEADER_LEN: usize = 2 + 32;

/// A delta is kept without trying the standalone encoding when it is this many times
/// smaller than the plain bytes: a standalone zstd frame of rows is rarely smaller (about
/// a third of the plain size on varied rows), and when it is, both are small.
const CLEARLY_SMALL: usize = 8;

/// The zstd level deltas are compressed at, at most. On a 64 KiB chunk of rows with five
/// rows changed, level 3 makes a 258-byte delta and level 9 a 243-byte one at a third of
/// the speed (a standalone level-9 frame: 21.5 KB, ten times slower
/// still); the bytes saved are below what a stored object costs anyway. See
/// `measure_delta_costs` below and docs/design.md.
pub const DELTA_LEVEL: i32 = 3;

/// What the header of a delta says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaHeader {
    /// 1 + the base's depth.
    pub depth: u8,
    /// The blob whose plain bytes were the prefix.
    pub base: BlobId,
}

impl DeltaHeader {
    /// The header of a stored object: `None` for a standalone one (tag 0 or 1).
    /// [`Error::Corrupt`] for an empty object, an unknown tag or a malformed delta header.
    pub fn parse(id: &BlobId, stored: &[u8]) -> Result<Option<Self>> {
        let corrupt = |reason: String| Error::Corrupt { id: *id, reason };
        match stored.first() {
            None => Err(corrupt("empty object".into())),
            Some(&TAG_RAW | &TAG_ZSTD) => Ok(None),
            Some(&TAG_DELTA) => {
                let Some((&depth, rest)) = stored.get(1..HEADER_LEN).and_then(|h| h.split_first())
                else {
                    return Err(corrupt("delta header is truncated".into()));
                };
                if depth == 0 || depth > MAX_DELTA_DEPTH {
                    return Err(corrupt(format!(
                        "delta depth {depth} is out of range 1..={MAX_DELTA_DEPTH}"
                    )));
                }
                let mut base = [0u8; 32];
                base.copy_from_slice(rest);
                let base = BlobId::from_bytes(base);
                if base == *id {
                    return Err(corrupt("delta against itself".into()));
                }
                Ok(Some(DeltaHeader { depth, base }))
            }
            Some(other) => Err(corrupt(format!("unknown codec tag {other}"))),
        }
    }

    /// The depth of a stored object: 0 for a standalone one.
    pub fn depth_of(id: &BlobId, stored: &[u8]) -> Result<u8> {
        Ok(Self::parse(id, stored)?.map_or(0, |h| h.depth))
    }
}

/// Encodes `plain` for storage: as a delta against `base_plain` (the plain bytes of
/// `base_id`, stored at depth `base_depth`) when that is allowed and pays, otherwise
/// standalone with [`encode`] at `level`.
///
/// A delta is allowed below [`MAX_DELTA_DEPTH`] and [`MAX_DELTA_LEN`] when `base_plain`
/// hashes to `base_id`, and compressed at `level` capped at [`DELTA_LEVEL`]. It is kept
/// when it is under 1/8 of the plain size;
/// otherwise the standalone encoding is computed too and the delta kept only if it is at
/// least a quarter smaller (a longer chain costs every reader a request and a decode).
///
/// CPU-bound (~0.1–0.3 ms for a 64 KiB chunk whose base is similar, plus a standalone
/// compression when it is not): async callers run it on a blocking pool.
pub fn encode_delta(
    plain: &[u8],
    compression: impl Into<Compression>,
    base_id: &BlobId,
    base_depth: u8,
    base_plain: &[u8],
) -> Vec<u8> {
    let compression = compression.into();
    let allowed = base_depth < MAX_DELTA_DEPTH
        && plain.len() as u64 <= MAX_DELTA_LEN
        && base_plain.len() as u64 <= MAX_DELTA_LEN
        && plain != base_plain
        // A delta against other bytes than the base's could never be decoded.
        && BlobId::of(base_plain) == *base_id;
    if !allowed {
        return encode(plain, compression);
    }
    let Some(delta) = compress_delta(
        plain,
        compression.level.min(DELTA_LEVEL),
        base_id,
        base_depth,
        base_plain,
    ) else {
        return encode(plain, compression);
    };
    if delta.len() * CLEARLY_SMALL <= plain.len() {
        return delta;
    }
    let standalone = encode(plain, compression);
    if delta.len() * 4 <= standalone.len() * 3 {
        delta
    } else {
        standalone
    }
}

fn compress_delta(
    plain: &[u8],
    level: i32,
    base_id: &BlobId,
    base_depth: u8,
    base_plain: &[u8],
) -> Option<Vec<u8>> {
    let mut cctx = CCtx::try_create()?;
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .ok()?;
    // No long-distance matching: on rows that look alike it finds the base's copy where
    // level 3 settles for the row before (5x smaller deltas on such rows), but on the
    // benchmark's mix it saved 8% of the delta bytes and cost 20% of the snapshot's time.
    cctx.ref_prefix(base_plain).ok()?;
    let mut frame = Vec::with_capacity(zstd_safe::compress_bound(plain.len()));
    cctx.compress2(&mut frame, plain).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + frame.len());
    out.push(TAG_DELTA);
    out.push(base_depth + 1);
    out.extend_from_slice(base_id.as_bytes());
    out.extend_from_slice(&frame);
    Some(out)
}

/// Decodes one delta whose base decoded to `base_plain`, checking its hash; `limit` bounds
/// its plain size.
fn decode_delta(id: &BlobId, stored: &[u8], limit: u64, base_plain: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::Corrupt { id: *id, reason };
    let frame = stored
        .get(HEADER_LEN..)
        .ok_or_else(|| corrupt("delta header is truncated".into()))?;
    let len = match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(len)) => len,
        Ok(None) => return Err(corrupt("delta frame does not record its size".into())),
        Err(_) => return Err(corrupt("delta frame header is damaged".into())),
    };
    if len > limit {
        return Err(corrupt(format!("larger than the expected {limit} bytes")));
    }
    let mut dctx = DCtx::try_create().ok_or_else(|| corrupt("zstd: no memory".into()))?;
    dctx.ref_prefix(base_plain)
        .map_err(|code| corrupt(format!("zstd: {}", zstd_safe::get_error_name(code))))?;
    let mut plain = Vec::with_capacity(len as usize);
    dctx.decompress(&mut plain, frame)
        .map_err(|code| corrupt(format!("zstd: {}", zstd_safe::get_error_name(code))))?;
    if plain.len() as u64 != len {
        return Err(corrupt(format!(
            "{} bytes instead of the {len} its frame records",
            plain.len()
        )));
    }
    if BlobId::of(&plain) != *id {
        return Err(corrupt("content does not match its hash".into()));
    }
    Ok(plain)
}

/// A stored blob and the stored bytes of every base its decoding needs, top first.
///
/// Built with [`Chain::new`] and completed with [`Chain::push`] while
/// [`next_base`](Chain::next_base) names a base (the store does this in
/// `Store::get_chain`). Each link's depth must be one less than the previous one's, so a
/// chain has at most [`MAX_DELTA_DEPTH`] + 1 links whatever the headers say.
#[derive(Debug, Clone)]
pub struct Chain {
    links: Vec<Link>,
}

#[derive(Debug, Clone)]
struct Link {
    id: BlobId,
    stored: Bytes,
    header: Option<DeltaHeader>,
}

impl Chain {
    /// A chain starting at the blob `id`, stored as `stored`.
    pub fn new(id: BlobId, stored: Bytes) -> Result<Self> {
        let header = DeltaHeader::parse(&id, &stored)?;
        Ok(Chain {
            links: vec![Link { id, stored, header }],
        })
    }

    /// The blob this chain decodes.
    pub fn id(&self) -> BlobId {
        self.links[0].id
    }

    /// The blob's own header: `None` when it is standalone.
    pub fn header(&self) -> Option<DeltaHeader> {
        self.links[0].header
    }

    /// The base whose stored bytes are needed next, or `None` once the chain is complete.
    pub fn next_base(&self) -> Option<BlobId> {
        self.last().header.map(|h| h.base)
    }

    /// Every `(delta, base)` link read so far.
    pub fn links(&self) -> impl Iterator<Item = (BlobId, BlobId)> + '_ {
        self.links
            .iter()
            .filter_map(|l| l.header.map(|h| (l.id, h.base)))
    }

    /// Stored bytes of every link.
    pub fn stored_len(&self) -> u64 {
        self.links.iter().map(|l| l.stored.len() as u64).sum()
    }

    fn last(&self) -> &Link {
        // `links` is never empty: `new` puts one in and nothing removes any.
        &self.links[self.links.len() - 1]
    }

    /// Adds the stored bytes of the base [`next_base`](Chain::next_base) named.
    /// [`Error::Corrupt`] (naming the delta) if its depth is not one less.
    pub fn push(&mut self, id: BlobId, stored: Bytes) -> Result<()> {
        let parent = self.last();
        let Some(expected) = parent.header else {
            return Err(Error::Invalid(format!(
                "blob {} is standalone: its chain needs no base",
                parent.id
            )));
        };
        if id != expected.base {
            return Err(Error::Invalid(format!(
                "blob {} is a delta against {}, not {id}",
                parent.id, expected.base
            )));
        }
        let header = DeltaHeader::parse(&id, &stored)?;
        let depth = header.map_or(0, |h| h.depth);
        if depth + 1 != expected.depth {
            return Err(Error::Corrupt {
                id: parent.id,
                reason: format!(
                    "its header says depth {}, but its base {id} has depth {depth}",
                    expected.depth
                ),
            });
        }
        self.links.push(Link { id, stored, header });
        Ok(())
    }

    /// Decodes the blob, checking every link against its hash. `limit` bounds the blob's
    /// plain size (and [`MAX_DELTA_LEN`] every base's, when it is a delta).
    pub fn decode(&self, limit: u64) -> Result<Vec<u8>> {
        let last = self.last();
        if let Some(h) = last.header {
            return Err(Error::Invalid(format!(
                "the chain of blob {} is incomplete: base {} was not read",
                self.id(),
                h.base
            )));
        }
        if self.links.len() == 1 {
            return decode(&last.id, &last.stored, limit);
        }
        let mut plain = decode(&last.id, &last.stored, MAX_DELTA_LEN)?;
        for (i, link) in self.links.iter().enumerate().rev().skip(1) {
            let limit = if i == 0 {
                limit.min(MAX_DELTA_LEN)
            } else {
                MAX_DELTA_LEN
            };
            plain = decode_delta(&link.id, &link.stored, limit, &plain)?;
        }
        Ok(plain)
    }

    /// Decodes a blob whose plain size is known exactly (see [`decode_exact`]).
    pub fn decode_exact(&self, len: u64) -> Result<Vec<u8>> {
        if self.links.len() == 1 && self.header().is_none() {
            let link = &self.links[0];
            return decode_exact(&link.id, &link.stored, len);
        }
        let plain = self.decode(len)?;
        if plain.len() as u64 != len {
            return Err(Error::Corrupt {
                id: self.id(),
                reason: format!("{} bytes instead of the expected {len}", plain.len()),
            });
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rows;
    use proptest::prelude::*;

    /// Resolves a chain from a list of stored blobs, as the store does.
    fn chain(id: BlobId, blobs: &[(BlobId, Vec<u8>)]) -> Result<Chain> {
        let find = |id: &BlobId| blobs.iter().find(|(i, _)| i == id).map(|(_, s)| s.clone());
        let mut chain = Chain::new(id, Bytes::from(find(&id).unwrap()))?;
        while let Some(base) = chain.next_base() {
            let stored = find(&base).ok_or(Error::BaseMissing { id, base })?;
            chain.push(base, Bytes::from(stored))?;
        }
        Ok(chain)
    }

    /// Versions of a chunk, each with a few more rows changed than the last.
    fn versions(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|v| {
                rows(
                    800,
                    7,
                    &(0..v * 5).map(|k| k * 37 % 800).collect::<Vec<_>>(),
                )
            })
            .collect()
    }

    #[test]
    fn chains_round_trip_up_to_the_maximum_depth_and_then_start_over() {
        let versions = versions(MAX_DELTA_DEPTH as usize + 3);
        let mut blobs: Vec<(BlobId, Vec<u8>)> = Vec::new();
        let mut depth = 0u8;
        for (v, plain) in versions.iter().enumerate() {
            let id = BlobId::of(plain);
            let stored = if v == 0 {
                encode(plain, 9)
            } else {
                let base = &versions[v - 1];
                encode_delta(plain, 9, &BlobId::of(base), depth, base)
            };
            depth = DeltaHeader::depth_of(&id, &stored).unwrap();
            let expected = if v == 0 {
                0
            } else {
                (v % (MAX_DELTA_DEPTH as usize + 1)) as u8
            };
            assert_eq!(depth, expected, "version {v}");
            if depth > 0 {
                assert_eq!(stored[0], TAG_DELTA);
                assert!(stored.len() < plain.len() / 20, "{} bytes", stored.len());
            }
            blobs.push((id, stored));
            let chain = chain(id, &blobs).unwrap();
            assert_eq!(chain.links().count(), depth as usize);
            assert_eq!(chain.decode(plain.len() as u64).unwrap(), *plain);
            assert_eq!(chain.decode_exact(plain.len() as u64).unwrap(), *plain);
            assert!(matches!(
                chain.decode(plain.len() as u64 - 1),
                Err(Error::Corrupt { .. })
            ));
            assert!(chain.decode_exact(plain.len() as u64 + 1).is_err());
        }
    }

    #[test]
    fn a_base_that_looks_like_a_zstd_dictionary_is_raw_content() {
        // The magic number of a zstd dictionary, then bytes that are no dictionary.
        let mut base = vec![0x37, 0xa4, 0x30, 0xec, 1, 0, 0, 0];
        base.extend(rows(500, 3, &[]));
        let mut plain = base.clone();
        plain.extend_from_slice(b"one more row\n");
        let stored = encode_delta(&plain, 9, &BlobId::of(&base), 0, &base);
        assert_eq!(stored[0], TAG_DELTA);
        assert!(stored.len() < 200, "{}", stored.len());
        let id = BlobId::of(&plain);
        let blobs = vec![(BlobId::of(&base), encode(&base, 9)), (id, stored)];
        assert_eq!(chain(id, &blobs).unwrap().decode(1 << 20).unwrap(), plain);
    }

    #[test]
    fn deltas_only_where_they_are_allowed_and_pay() {
        let base = rows(800, 1, &[]);
        let plain = rows(800, 1, &[3, 400]);
        let base_id = BlobId::of(&base);
        let tag = |stored: Vec<u8>| stored[0];
        assert_eq!(tag(encode_delta(&plain, 9, &base_id, 0, &base)), TAG_DELTA);
        assert_eq!(
            tag(encode_delta(
                &plain,
                9,
                &base_id,
                MAX_DELTA_DEPTH - 1,
                &base
            )),
            TAG_DELTA
        );
        assert_ne!(
            tag(encode_delta(&plain, 9, &base_id, MAX_DELTA_DEPTH, &base)),
            TAG_DELTA,
            "past the maximum depth"
        );
        assert_ne!(
            tag(encode_delta(&plain, 9, &BlobId::of(b"other"), 0, &base)),
            TAG_DELTA,
            "base bytes that are not the base's"
        );
        assert_ne!(
            tag(encode_delta(&base, 9, &base_id, 0, &base)),
            TAG_DELTA,
            "a delta against itself"
        );
        // Unrelated contents: the standalone encoding is smaller.
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_ne!(
            tag(encode_delta(&plain, 9, &BlobId::of(&noise), 0, &noise)),
            TAG_DELTA
        );
    }

    #[test]
    fn damaged_headers_bases_and_frames_are_corrupt() {
        let base = rows(400, 5, &[]);
        let plain = rows(400, 5, &[10]);
        let (base_id, id) = (BlobId::of(&base), BlobId::of(&plain));
        let good = encode_delta(&plain, 9, &base_id, 0, &base);
        assert_eq!(good[0], TAG_DELTA);
        let blobs = |top: Vec<u8>| vec![(base_id, encode(&base, 9)), (id, top)];
        let corrupt = |top: Vec<u8>| match chain(id, &blobs(top)).and_then(|c| c.decode(1 << 20)) {
            Err(Error::Corrupt { id: at, reason }) => (at, reason),
            other => panic!("{other:?}"),
        };

        for depth in [0u8, MAX_DELTA_DEPTH + 1, 255] {
            let mut bad = good.clone();
            bad[1] = depth;
            assert_eq!(corrupt(bad).0, id);
        }
        let mut deeper = good.clone();
        deeper[1] = 2;
        assert!(corrupt(deeper).1.contains("depth"));
        for len in [1, 2, 20, HEADER_LEN, HEADER_LEN + 3] {
            assert_eq!(corrupt(good[..len].to_vec()).0, id, "truncated to {len}");
        }
        let mut to_itself = good.clone();
        to_itself[2..HEADER_LEN].copy_from_slice(id.as_bytes());
        assert_eq!(corrupt(to_itself).0, id);
        for at in [
            HEADER_LEN + 6,
            (HEADER_LEN + good.len()) / 2,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert_eq!(corrupt(bad).0, id, "byte {at} flipped");
        }
        // A damaged base id names a blob that is not stored: missing, as the store says.
        let mut other_base = good.clone();
        other_base[5] ^= 1;
        assert!(matches!(
            chain(id, &blobs(other_base)),
            Err(Error::BaseMissing { .. })
        ));
        // A base that does not hash to its id is corrupt, and named.
        let mut blobs = blobs(good);
        blobs[0].1 = encode(b"something else", 9);
        assert!(matches!(
            chain(id, &blobs).unwrap().decode(1 << 20),
            Err(Error::Corrupt { id: at, .. }) if at == base_id
        ));
        // A delta handed to the standalone decoders is refused, not misread.
        let stored = &blobs[1].1;
        assert!(matches!(
            super::super::decode(&id, stored, 1 << 20),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            decode_exact(&id, stored, plain.len() as u64),
            Err(Error::Invalid(_))
        ));
    }

    /// The layout of a tag-2 blob, pinned: these bytes must always decode, and new deltas
    /// must keep the header (zstd may compress differently in a later version; what the
    /// bytes mean may not change).
    #[test]
    fn golden_delta_layout() {
        let base = b"1\talice\talice@example.com\n2\tbob\tbob@example.com\n".to_vec();
        let plain = b"1\talice\talice@example.com\n2\tbob\tbob@example.org\n".to_vec();
        let (base_id, id) = (BlobId::of(&base), BlobId::of(&plain));
        let golden: Vec<u8> = (0..GOLDEN.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN[i..i + 2], 16).unwrap())
            .collect();
        // [2] [depth 5] [base id] [zstd frame, magic 28 b5 2f fd]
        assert_eq!(golden[..2], [TAG_DELTA, 5]);
        assert_eq!(golden[2..HEADER_LEN], *base_id.as_bytes());
        assert_eq!(golden[HEADER_LEN..HEADER_LEN + 4], [0x28, 0xb5, 0x2f, 0xfd]);
        // Its base at depth 4, faked by a standalone base: only the top is decoded here.
        assert_eq!(decode_delta(&id, &golden, 1 << 10, &base).unwrap(), plain);

        let fresh = compress_delta(&plain, 3, &base_id, 4, &base).unwrap();
        assert_eq!(fresh[..HEADER_LEN], golden[..HEADER_LEN]);
        assert_eq!(decode_delta(&id, &fresh, 1 << 10, &base).unwrap(), plain);
    }

    const GOLDEN: &str = "02056fe2421a645a13e54b2834689b5df748999b2b5c3f87b0d4a8478517c978\
                          eb5728b52ffd20305d0000206f72670a01004d530101";

    /// The figures in docs/design.md (Chunks): sizes and speeds of standalone and delta
    /// encodings of a 64 KiB chunk, and the cost of decoding chains by depth. Run with
    /// `cargo test -p phony-core --release -- --ignored --nocapture measure_delta_costs`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_delta_costs() {
        use std::time::Instant;
        let per_op = |n: u32, f: &mut dyn FnMut() -> usize| {
            let start = Instant::now();
            let mut size = 0;
            for _ in 0..n {
                size = f();
            }
            (size, start.elapsed().as_secs_f64() / f64::from(n))
        };
        let report = |what: &str, plain: usize, (size, secs): (usize, f64)| {
            let mbs = plain as f64 / secs / 1e6;
            println!(
                "{what:<52} {size:>6} B {mbs:>7.0} MB/s {:>7.3} ms",
                secs * 1e3
            );
        };
        let without_ldm = |base: &[u8], plain: &[u8], level: i32| {
            let mut cctx = CCtx::create();
            cctx.set_parameter(CParameter::CompressionLevel(level))
                .unwrap();
            cctx.ref_prefix(base).unwrap();
            let mut frame = Vec::with_capacity(zstd_safe::compress_bound(plain.len()));
            cctx.compress2(&mut frame, plain).unwrap();
            HEADER_LEN + frame.len()
        };
        // Rows of random-looking values, and rows that look alike.
        // 855 rows of a customers table, ~64 KiB; a changed row gets new values.
        let random = |changed: &[usize]| -> Vec<u8> {
            const NAMES: [&str; 8] = [
                "alice", "bob", "carol", "dave", "erin", "frank", "grace", "ivan",
            ];
            let mut out = String::new();
            for i in 0..855u64 {
                let salt = if changed.contains(&(i as usize)) {
                    0x5bd1
                } else {
                    0
                };
                let h = blake3::hash(&(i ^ salt << 32).to_le_bytes());
                let b = |k: usize| u64::from(h.as_bytes()[k]);
                let name = NAMES[(b(0) % 8) as usize];
                out += &format!(
                    "{i}\t{name}{}\t{name}.{}@example.com\t2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00\t{}.{:02}\t{}\n",
                    b(1) * 4 + b(2) % 4,
                    b(3) * 256 + b(4),
                    1 + b(5) % 12,
                    1 + b(6) % 28,
                    b(7) % 24,
                    b(8) % 60,
                    b(9) % 60,
                    (b(10) << 16 | b(11) << 8 | b(12)) % 1_000_000,
                    b(13) * 256 + b(14),
                    b(15) % 100,
                    if b(16) % 2 == 0 { "t" } else { "f" },
                );
            }
            out.into_bytes()
        };
        let alike = |changed: &[usize]| -> Vec<u8> {
            (0..3600)
                .map(|i| {
                    let v = if changed.contains(&i) {
                        "changed"
                    } else {
                        "kept"
                    };
                    format!("{i}\tcustomer {i}\t{v}\n")
                })
                .collect::<String>()
                .into_bytes()
        };
        let spread = |n: usize, len: usize| (0..n).map(|k| k * 7919 % len).collect::<Vec<_>>();
        for (name, base, plain) in [
            (
                "random rows, 5 changed",
                random(&[]),
                random(&spread(5, 860)),
            ),
            (
                "random rows, 50 changed",
                random(&[]),
                random(&spread(50, 860)),
            ),
            ("alike rows, 5 changed", alike(&[]), alike(&spread(5, 3600))),
        ] {
            println!("{name}: {} bytes", plain.len());
            let id = BlobId::of(&base);
            for level in [3, 9] {
                let n = 300;
                report(&format!("  standalone, level {level}"), plain.len(), {
                    per_op(n, &mut || encode(&plain, level).len())
                });
                report(&format!("  delta, level {level}"), plain.len(), {
                    per_op(n, &mut || without_ldm(&base, &plain, level))
                });
                report(
                    &format!("  delta, level {level}, long-distance matching"),
                    plain.len(),
                    per_op(n, &mut || {
                        compress_delta(&plain, level, &id, 0, &base).unwrap().len()
                    }),
                );
            }
        }
        // Chains: each version changes five more rows of the last.
        let versions: Vec<Vec<u8>> = (0..=MAX_DELTA_DEPTH as usize)
            .map(|v| random(&spread(5 * v, 855)))
            .collect();
        let mut blobs = vec![(BlobId::of(&versions[0]), encode(&versions[0], 9))];
        for v in 1..versions.len() {
            let base = &versions[v - 1];
            let stored = encode_delta(&versions[v], 9, &BlobId::of(base), v as u8 - 1, base);
            blobs.push((BlobId::of(&versions[v]), stored));
        }
        for (depth, (id, stored)) in blobs.iter().enumerate() {
            let len = versions[depth].len();
            let decode = per_op(300, &mut || {
                chain(*id, &blobs)
                    .unwrap()
                    .decode_exact(len as u64)
                    .unwrap()
                    .len()
            });
            report(
                &format!("decode at depth {depth} ({} B stored)", stored.len()),
                len,
                decode,
            );
        }
    }

    proptest! {
        #[test]
        fn damaged_deltas_never_panic(at in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
            let base = rows(60, 9, &[]);
            let plain = rows(60, 9, &[2]);
            let base_id = BlobId::of(&base);
            let mut stored = compress_delta(&plain, 3, &base_id, 0, &base).unwrap();
            let at = at % stored.len();
            stored[at] = byte;
            stored.truncate(stored.len() - cut.min(stored.len() - 1));
            let id = BlobId::of(&plain);
            let blobs = vec![(base_id, encode(&base, 3)), (id, stored)];
            if let Ok(c) = chain(id, &blobs) {
                let _ = c.decode(1 << 20);
                let _ = c.decode_exact(plain.len() as u64);
            }
        }

        #[test]
        fn arbitrary_tops_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let base = rows(20, 9, &[]);
            let base_id = BlobId::of(&base);
            let mut top = vec![TAG_DELTA, 1];
            top.extend_from_slice(base_id.as_bytes());
            top.extend_from_slice(&bytes);
            let id = BlobId::of(b"x");
            let blobs = vec![(base_id, encode(&base, 3)), (id, top)];
            if let Ok(c) = chain(id, &blobs) {
                let _ = c.decode(1 << 20);
            }
        }
    }
}
