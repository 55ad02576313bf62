//! How a blob's plain bytes are stored: a one-byte codec tag, then the payload.
//!
//! | tag | payload |
//! |-----|---------|
//! | `0` | the plain bytes |
//! | `1` | one zstd frame of the plain bytes |
//! | `2` | depth (1 byte), base id (32 bytes), one zstd frame of the plain bytes compressed with the base's plain bytes as a raw-content prefix |
//!
//! A blob's id is the BLAKE3 hash of its plain bytes, so [`decode`] can always tell a
//! damaged object from a sound one. A tag-2 blob (a *delta*, see [`delta`]) needs its base's
//! plain bytes to be decoded: a [`Chain`] holds a blob with the stored bytes of every base
//! down to a standalone one (tag 0 or 1), and decodes it.

mod delta;

use std::io::Read;

pub use delta::{encode_delta, Chain, DeltaHeader, DELTA_LEVEL, MAX_DELTA_DEPTH, MAX_DELTA_LEN};

use crate::config::Compression;
use crate::error::{Error, Result};
use crate::id::BlobId;

const TAG_RAW: u8 = 0;
const TAG_ZSTD: u8 = 1;
const TAG_DELTA: u8 = 2;

/// The largest plain blob any decoder accepts: a chunk is at most one PostgreSQL row
/// (≤ 1 GiB of text, escaped) past the chunker's maximum, so this bounds every allocation
/// a damaged object could ask for.
pub const MAX_PLAIN_LEN: u64 = 2 << 30;

/// The largest stored object that can decode to at most `plain_limit` plain bytes, with any
/// codec: a raw object is one byte more than its plain bytes, a zstd frame at most zstd's
/// compression bound, and a delta is kept only when smaller than the standalone encoding.
/// Readers refuse larger objects as corrupt before reading them.
pub fn max_stored_len(plain_limit: u64) -> u64 {
    let n = plain_limit.min(MAX_PLAIN_LEN);
    // zstd's ZSTD_COMPRESSBOUND is n + n/256 + at most 64 bytes more; a header is 34 bytes.
    n + n / 128 + 1024
}

/// Encodes `plain` for storage with zstd as `compression` says (a level, or a store's
/// [`Compression`]), or raw when compression does not help.
pub fn encode(plain: &[u8], compression: impl Into<Compression>) -> Vec<u8> {
    // One-shot compression knows the input size, so zstd sizes its tables to the chunk:
    // less memory per compression in flight, the same ratio.
    if let Ok(frame) = compress(plain, compression.into()) {
        if frame.len() < plain.len() {
            let mut out = Vec::with_capacity(frame.len() + 1);
            out.push(TAG_ZSTD);
            out.extend_from_slice(&frame);
            return out;
        }
    }
    let mut out = Vec::with_capacity(plain.len() + 1);
    out.push(TAG_RAW);
    out.extend_from_slice(plain);
    out
}

fn compress(plain: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(compression.level)?;
    if let Some(min_match) = compression.min_match {
        compressor.set_parameter(CParameter::MinMatch(min_match))?;
    }
    if let Some(search_log) = compression.search_log {
        compressor.set_parameter(CParameter::SearchLog(search_log))?;
    }
    compressor.compress(plain)
}

/// Decodes a standalone stored object (tag 0 or 1) and checks that its plain bytes hash to
/// `id`; a delta (tag 2) needs its bases: decode it through a [`Chain`].
///
/// `limit` bounds the plain size (use the size a manifest recorded when known). A damaged
/// object yields [`Error::Corrupt`], never a panic or an allocation beyond `limit`.
pub fn decode(id: &BlobId, stored: &[u8], limit: u64) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::Corrupt { id: *id, reason };
    let limit = limit.min(MAX_PLAIN_LEN);
    let (&tag, payload) = stored
        .split_first()
        .ok_or_else(|| corrupt("empty object".into()))?;
    let plain = match tag {
        TAG_RAW => {
            if payload.len() as u64 > limit {
                return Err(corrupt(format!("larger than the expected {limit} bytes")));
            }
            payload.to_vec()
        }
        TAG_ZSTD => {
            let decoder = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            let mut plain = Vec::new();
            decoder
                .take(limit + 1)
                .read_to_end(&mut plain)
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            if plain.len() as u64 > limit {
                return Err(corrupt(format!("larger than the expected {limit} bytes")));
            }
            plain
        }
        TAG_DELTA => return Err(needs_base(id, stored)),
        other => return Err(corrupt(format!("unknown codec tag {other}"))),
    };
    if BlobId::of(&plain) != *id {
        return Err(corrupt("content does not match its hash".into()));
    }
    Ok(plain)
}

/// The error for a delta handed to a decoder of standalone blobs.
fn needs_base(id: &BlobId, stored: &[u8]) -> Error {
    match DeltaHeader::parse(id, stored) {
        Ok(Some(h)) => Error::Invalid(format!(
            "blob {id} is a delta against blob {}: decode it through its chain (Store::get_chain)",
            h.base
        )),
        Ok(None) => Error::Invalid(format!("blob {id} is not a delta")),
        Err(e) => e,
    }
}

/// Decodes a standalone stored object whose plain size is known exactly (a chunk, from the size its
/// manifest entry recorded): one pass into one allocation of `len` bytes, with a zstd
/// decoder reused per thread, for readers that decode many chunks (diffs). Same checks as
/// [`decode`]: an object that does not decode to exactly `len` bytes hashing to `id` is
/// [`Error::Corrupt`].
pub fn decode_exact(id: &BlobId, stored: &[u8], len: u64) -> Result<Vec<u8>> {
    thread_local! {
        static DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let corrupt = |reason: String| Error::Corrupt { id: *id, reason };
    if len > MAX_PLAIN_LEN {
        return Err(corrupt(format!(
            "larger than the largest blob ({MAX_PLAIN_LEN} bytes)"
        )));
    }
    let (&tag, payload) = stored
        .split_first()
        .ok_or_else(|| corrupt("empty object".into()))?;
    let plain = match tag {
        TAG_RAW => payload.to_vec(),
        TAG_ZSTD => {
            let mut plain = Vec::with_capacity(len as usize);
            DECODER
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(zstd::bulk::Decompressor::new()?);
                    }
                    match slot.as_mut() {
                        Some(d) => d.decompress_to_buffer(payload, &mut plain),
                        None => Ok(0),
                    }
                })
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            plain
        }
        TAG_DELTA => return Err(needs_base(id, stored)),
        other => return Err(corrupt(format!("unknown codec tag {other}"))),
    };
    if plain.len() as u64 != len {
        return Err(corrupt(format!(
            "{} bytes instead of the expected {len}",
            plain.len()
        )));
    }
    if BlobId::of(&plain) != *id {
        return Err(corrupt("content does not match its hash".into()));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_compressible_and_incompressible_bytes() {
        let text = b"abcabcabcabcabcabcabcabcabcabc".repeat(1000);
        let enc = encode(&text, 3);
        assert_eq!(enc[0], TAG_ZSTD);
        assert!(enc.len() < text.len() / 10);
        assert_eq!(decode(&BlobId::of(&text), &enc, u64::MAX).unwrap(), text);

        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let enc = encode(&noise, 3);
        assert_eq!(decode(&BlobId::of(&noise), &enc, 4096).unwrap(), noise);
    }

    #[test]
    fn a_flipped_bit_is_reported_as_corrupt() {
        let text = b"hello world, hello world".repeat(100);
        let id = BlobId::of(&text);
        let mut enc = encode(&text, 3);
        let last = enc.len() - 1;
        enc[last] ^= 0x10;
        assert!(matches!(
            decode(&id, &enc, u64::MAX),
            Err(Error::Corrupt { .. })
        ));
        let mut raw = vec![TAG_RAW];
        raw.extend_from_slice(b"other");
        assert!(matches!(
            decode(&id, &raw, u64::MAX),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn the_limit_bounds_decoding() {
        let big = vec![0u8; 1 << 20];
        let enc = encode(&big, 3);
        assert!(matches!(
            decode(&BlobId::of(&big), &enc, 1000),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn exact_decoding_agrees_and_checks_the_size() {
        let text = b"row\tvalue\n".repeat(5000);
        let id = BlobId::of(&text);
        for level in [1, 3] {
            let enc = encode(&text, level);
            assert_eq!(decode_exact(&id, &enc, text.len() as u64).unwrap(), text);
            assert!(matches!(
                decode_exact(&id, &enc, text.len() as u64 - 1),
                Err(Error::Corrupt { .. })
            ));
            assert!(matches!(
                decode_exact(&id, &enc, text.len() as u64 + 1),
                Err(Error::Corrupt { .. })
            ));
        }
        let raw = encode(b"ab", 3);
        assert_eq!(decode_exact(&BlobId::of(b"ab"), &raw, 2).unwrap(), b"ab");
        assert!(decode_exact(&id, &[], 1).is_err());
    }

    /// Tags 0 and 1, pinned: these bytes must always decode.
    #[test]
    fn golden_standalone_layouts() {
        let plain = b"1\thello\n".repeat(4);
        let id = BlobId::of(&plain);
        let mut raw = vec![TAG_RAW];
        raw.extend_from_slice(&plain);
        assert_eq!(decode(&id, &raw, 64).unwrap(), plain);
        let zstd = [
            TAG_ZSTD, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x20, 0x75, 0x00, 0x00, 0x40, 0x31, 0x09, 0x68,
            0x65, 0x6c, 0x6c, 0x6f, 0x0a, 0x01, 0x00, 0x03, 0x0b, 0x17,
        ];
        assert_eq!(decode(&id, &zstd, 64).unwrap(), plain);
        assert_eq!(decode_exact(&id, &zstd, 32).unwrap(), plain);
        assert_eq!(encode(&plain, 9)[0], TAG_ZSTD);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_exact(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode_exact(&BlobId::of(b"x"), &bytes, 1 << 16);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode(&BlobId::of(b"x"), &bytes, 1 << 20);
        }

        #[test]
        fn encode_then_decode_is_identity(bytes in proptest::collection::vec(any::<u8>(), 0..5000), level in 1i32..4) {
            let enc = encode(&bytes, level);
            prop_assert_eq!(decode(&BlobId::of(&bytes), &enc, bytes.len() as u64).unwrap(), bytes);
        }
    }
}
