//! The store's own description, `phony-store.json`: format version and the parameters every
//! writer must use so that equal rows give equal chunks.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkParams;
use crate::error::{Error, Result};
use crate::retention::{RetentionPolicy, SafetyRetention};

/// The newest store format this build reads and writes.
pub const STORE_FORMAT: u32 = 2;

/// The first format whose blobs may be deltas (codec tag 2) with markers under `bases/`.
/// A format-1 store is read and written as before, without deltas, so that older builds
/// (which neither decode deltas nor keep their bases from garbage collection) can still
/// use it; they refuse format 2.
pub const DELTA_FORMAT: u32 = 2;

/// The key of the store config inside a store.
pub const CONFIG_KEY: &str = "phony-store.json";

/// Compression settings for new blobs (reading never depends on them: each blob is tagged).
///
/// The default is zstd's level 7 with a longer minimum match and a shallower search than
/// the level's own (`min_match` 6, `search_log` 1): on the benchmark's rows it stores less
/// than level 9 (83.0 MB against 83.2 MB of zstd frames at scale 1) for 56% of level 9's
/// compression time, and less than `pg_dump -Fc` (85.2 MB) for about a third of the time
/// its zlib takes (see docs/design.md, "Compression levels"). Both fields are absent from
/// stores created before them, which compress at their `level` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Always "zstd" in format 1.
    pub codec: CodecName,
    pub level: i32,
    /// zstd's minimum match length (3–7) in place of the level's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_match: Option<u32>,
    /// zstd's search depth, as a base-2 logarithm (1–9), in place of the level's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_log: Option<u32>,
}

impl Compression {
    /// zstd at `level`, with the level's own parameters.
    pub const fn zstd(level: i32) -> Self {
        Compression {
            codec: CodecName::Zstd,
            level,
            min_match: None,
            search_log: None,
        }
    }
}

impl From<i32> for Compression {
    fn from(level: i32) -> Self {
        Compression::zstd(level)
    }
}

/// Codec names a store config may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodecName {
    Zstd,
}

/// The chunking algorithm; part of the name so that a future change is a new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkAlgorithm {
    /// FastCDC 2020 (fastcdc 5.0.0), cut points moved forward to the next row end.
    #[serde(rename = "fastcdc-2020-row-aligned")]
    FastCdc2020RowAligned,
}

/// `phony-store.json`.
///
/// `retention` and `gc` were added after format 1 was released: both are optional, absent
/// when unset (so a store without them encodes exactly as before) and default when missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    pub format: u32,
    pub chunking: Chunking,
    pub compression: Compression,
    /// The store's own retention policy, applied after every snapshot phony creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPolicy>,
    /// Limits on safety snapshots, applied after every restore that takes one; absent:
    /// [`SafetyRetention::DEFAULT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_retention: Option<SafetyRetention>,
    /// Garbage-collection settings.
    #[serde(default, skip_serializing_if = "GcSettings::is_default")]
    pub gc: GcSettings,
}

/// How writers and garbage collection coordinate (see [`crate::gc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSettings {
    /// A lock not refreshed for this many seconds belongs to a process that died. Live
    /// processes refresh theirs four times per period.
    #[serde(default = "GcSettings::default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
}

impl GcSettings {
    /// The default lease period: two minutes.
    pub const DEFAULT_LEASE_TTL_SECS: u64 = 120;
    /// The longest lease period accepted: a day.
    pub const MAX_LEASE_TTL_SECS: u64 = 86400;

    fn default_lease_ttl_secs() -> u64 {
        Self::DEFAULT_LEASE_TTL_SECS
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The lease period.
    pub fn lease_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_ttl_secs)
    }
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            lease_ttl_secs: Self::DEFAULT_LEASE_TTL_SECS,
        }
    }
}

/// Chunking section of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    pub algorithm: ChunkAlgorithm,
    #[serde(flatten)]
    pub params: ChunkParams,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            format: STORE_FORMAT,
            chunking: Chunking {
                algorithm: ChunkAlgorithm::FastCdc2020RowAligned,
                params: ChunkParams::default(),
            },
            compression: Compression {
                min_match: Some(6),
                search_log: Some(1),
                ..Compression::zstd(7)
            },
            retention: None,
            safety_retention: None,
            gc: GcSettings::default(),
        }
    }
}

impl StoreConfig {
    /// Pretty JSON, as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes a config, refusing a newer format before looking at anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let corrupt = |e: serde_json::Error| Error::CorruptRecord {
            what: CONFIG_KEY.to_owned(),
            reason: e.to_string(),
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(corrupt)?;
        if probe.format < 1 {
            return Err(Error::CorruptRecord {
                what: CONFIG_KEY.to_owned(),
                reason: format!(
                    "it says format {}, which no phony writes (this phony reads formats 1 to {STORE_FORMAT})",
                    probe.format
                ),
            });
        }
        if probe.format > STORE_FORMAT {
            return Err(Error::UnsupportedFormat {
                found: probe.format,
                supported: STORE_FORMAT,
            });
        }
        let config: StoreConfig = serde_json::from_slice(bytes).map_err(corrupt)?;
        config.chunking.params.validate()?;
        if let Some(policy) = &config.retention {
            policy.validate().map_err(|e| Error::CorruptRecord {
                what: CONFIG_KEY.to_owned(),
                reason: e.to_string(),
            })?;
        }
        if let Some(limits) = &config.safety_retention {
            limits.validate().map_err(|e| Error::CorruptRecord {
                what: CONFIG_KEY.to_owned(),
                reason: e.to_string(),
            })?;
        }
        if !(1..=GcSettings::MAX_LEASE_TTL_SECS).contains(&config.gc.lease_ttl_secs) {
            return Err(Error::CorruptRecord {
                what: CONFIG_KEY.to_owned(),
                reason: format!(
                    "gc.lease_ttl_secs {} is out of range 1..={}",
                    config.gc.lease_ttl_secs,
                    GcSettings::MAX_LEASE_TTL_SECS
                ),
            });
        }
        let compression = config.compression;
        let out_of_range = [
            ("zstd level", Some(compression.level as i64), 1..=19),
            (
                "zstd min_match",
                compression.min_match.map(i64::from),
                3..=7,
            ),
            (
                "zstd search_log",
                compression.search_log.map(i64::from),
                1..=9,
            ),
        ]
        .into_iter()
        .find(|(_, value, range)| value.is_some_and(|v| !range.contains(&v)));
        if let Some((what, Some(value), range)) = out_of_range {
            return Err(Error::CorruptRecord {
                what: CONFIG_KEY.to_owned(),
                reason: format!(
                    "{what} {value} is out of range {}..={}",
                    range.start(),
                    range.end()
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_default_config() {
        let text = String::from_utf8(StoreConfig::default().encode()).unwrap();
        assert_eq!(
            text,
            r#"{
  "format": 2,
  "chunking": {
    "algorithm": "fastcdc-2020-row-aligned",
    "min": 16384,
    "avg": 65536,
    "max": 262144,
    "normalization": 1
  },
  "compression": {
    "codec": "zstd",
    "level": 7,
    "min_match": 6,
    "search_log": 1
  }
}
"#
        );
        assert_eq!(
            StoreConfig::decode(text.as_bytes()).unwrap(),
            StoreConfig::default()
        );
    }

    #[test]
    fn golden_config_with_retention_and_old_configs_still_read() {
        let config = StoreConfig {
            retention: Some(RetentionPolicy {
                keep_last: Some(10),
                expire_after: Some(std::time::Duration::from_secs(30 * 86400)),
            }),
            gc: GcSettings { lease_ttl_secs: 5 },
            ..StoreConfig::default()
        };
        let text = String::from_utf8(config.encode()).unwrap();
        assert!(
            text.ends_with(
                r#"  "retention": {
    "keep_last": 10,
    "expire_after_secs": 2592000
  },
  "gc": {
    "lease_ttl_secs": 5
  }
}
"#
            ),
            "{text}"
        );
        assert_eq!(StoreConfig::decode(text.as_bytes()).unwrap(), config);

        // A config written before retention existed reads with no policy (and format 1:
        // no deltas), and compresses at its level alone.
        let old = br#"{"format":1,"chunking":{"algorithm":"fastcdc-2020-row-aligned","min":16384,"avg":65536,"max":262144,"normalization":1},"compression":{"codec":"zstd","level":3}}"#;
        let decoded = StoreConfig::decode(old).unwrap();
        let expected = StoreConfig {
            format: 1,
            compression: Compression::zstd(3),
            ..StoreConfig::default()
        };
        assert_eq!(decoded, expected);
        assert_eq!(decoded.retention, None);
        assert_eq!(
            decoded.gc.lease_ttl_secs,
            GcSettings::DEFAULT_LEASE_TTL_SECS
        );

        let bad_ttl = text.replace("\"lease_ttl_secs\": 5", "\"lease_ttl_secs\": 0");
        assert!(StoreConfig::decode(bad_ttl.as_bytes()).is_err());
        let bad_expiry = text.replace("2592000", "0");
        assert!(StoreConfig::decode(bad_expiry.as_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = StoreConfig::decode(&bytes);
        }

        #[test]
        fn damaged_configs_never_panic(pos in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = StoreConfig::default().encode();
            let at = pos % bytes.len();
            bytes[at] = byte;
            let _ = StoreConfig::decode(&bytes);
        }
    }

    #[test]
    fn newer_and_damaged_configs_are_refused() {
        assert!(matches!(
            StoreConfig::decode(br#"{"format": 3, "whatever": true}"#),
            Err(Error::UnsupportedFormat {
                found: 3,
                supported: 2
            })
        ));
        assert!(StoreConfig::decode(b"not json").is_err());
        let zero = String::from_utf8(StoreConfig::default().encode())
            .unwrap()
            .replacen(&format!("\"format\": {STORE_FORMAT}"), "\"format\": 0", 1);
        let err = StoreConfig::decode(zero.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("format 0") && err.contains(&format!("formats 1 to {STORE_FORMAT}")),
            "{err}"
        );
        let odd = String::from_utf8(StoreConfig::default().encode())
            .unwrap()
            .replace("16384", "16385");
        assert!(StoreConfig::decode(odd.as_bytes()).is_err());
        let default = String::from_utf8(StoreConfig::default().encode()).unwrap();
        for (from, to, says) in [
            (
                "\"level\": 7",
                "\"level\": 20",
                "zstd level 20 is out of range 1..=19",
            ),
            (
                "\"min_match\": 6",
                "\"min_match\": 2",
                "zstd min_match 2 is out of range 3..=7",
            ),
            (
                "\"search_log\": 1",
                "\"search_log\": 0",
                "zstd search_log 0 is out of range 1..=9",
            ),
        ] {
            let err = StoreConfig::decode(default.replace(from, to).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
