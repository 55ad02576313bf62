//! Typed identifiers: content ids of blobs and snapshot ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The id of a stored blob: the BLAKE3 hash of its plain (uncompressed) bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// The id of `plain`, the bytes before compression.
    pub fn of(plain: &[u8]) -> Self {
        BlobId(*blake3::hash(plain).as_bytes())
    }

    /// The id whose raw bytes are `bytes` (as stored in a delta's header).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobId(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The full lowercase hex form (64 characters).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
        s
    }

    /// The first 12 hex characters, for people.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(12);
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0])?;
        let lo = hex_val(pair[1])?;
        out[i] = (hi << 4) | lo;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

impl FromStr for BlobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex::<32>(s)
            .map(BlobId)
            .ok_or_else(|| Error::Invalid(format!("{s:?} is not a blob id (64 lowercase hex)")))
    }
}

impl Serialize for BlobId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A snapshot id: `snap_` followed by 12 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId([u8; 6]);

impl SnapshotId {
    /// The prefix every snapshot id starts with.
    pub const PREFIX: &'static str = "snap_";

    /// A snapshot id from 6 random bytes (the caller supplies the randomness).
    pub fn from_random(bytes: [u8; 6]) -> Self {
        SnapshotId(bytes)
    }

    /// The 12 hex digits after `snap_`.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for SnapshotId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        s.strip_prefix(Self::PREFIX)
            .and_then(parse_hex::<6>)
            .map(SnapshotId)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{s:?} is not a snapshot id (snap_ followed by 12 lowercase hex digits)"
                ))
            })
    }
}

impl Serialize for SnapshotId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SnapshotId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_round_trips_through_hex() {
        let id = BlobId::of(b"hello");
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("ABC".parse::<BlobId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<BlobId>().is_err());
    }

    #[test]
    fn snapshot_id_has_the_documented_shape() {
        let id = SnapshotId::from_random([0x3f, 0x9a, 0x1c, 0x2b, 0x7d, 0x04]);
        assert_eq!(id.to_string(), "snap_3f9a1c2b7d04");
        assert_eq!("snap_3f9a1c2b7d04".parse::<SnapshotId>().unwrap(), id);
        for bad in [
            "snap_3f9a1c2b7d0",
            "snap_3F9A1C2B7D04",
            "3f9a1c2b7d04",
            "snap_3f9a1c2b7d04x",
        ] {
            assert!(bad.parse::<SnapshotId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_serialize_as_strings() {
        let id = BlobId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
