//! The store's own description, `phony-store.json`: format version and the parameters every
//! writer must use so that equal rows give equal chunks.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkParams;
use crate::error::{Error, Result};

/// The newest store format this build reads and writes.
pub const STORE_FORMAT: u32 = 1;

/// The key of the store config inside a store.
pub const CONFIG_KEY: &str = "phony-store.json";

/// Compression settings for new blobs (reading never depends on them: each blob is tagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Always "zstd" in format 1.
    pub codec: CodecName,
    pub level: i32,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    pub format: u32,
    pub chunking: Chunking,
    pub compression: Compression,
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
                codec: CodecName::Zstd,
                level: 9,
            },
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
        if probe.format > STORE_FORMAT {
            return Err(Error::UnsupportedFormat {
                found: probe.format,
                supported: STORE_FORMAT,
            });
        }
        let config: StoreConfig = serde_json::from_slice(bytes).map_err(corrupt)?;
        config.chunking.params.validate()?;
        if !(1..=19).contains(&config.compression.level) {
            return Err(Error::CorruptRecord {
                what: CONFIG_KEY.to_owned(),
                reason: format!(
                    "zstd level {} is out of range 1..=19",
                    config.compression.level
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
  "format": 1,
  "chunking": {
    "algorithm": "fastcdc-2020-row-aligned",
    "min": 16384,
    "avg": 65536,
    "max": 262144,
    "normalization": 1
  },
  "compression": {
    "codec": "zstd",
    "level": 9
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
    fn newer_and_damaged_configs_are_refused() {
        assert!(matches!(
            StoreConfig::decode(br#"{"format": 2, "whatever": true}"#),
            Err(Error::UnsupportedFormat {
                found: 2,
                supported: 1
            })
        ));
        assert!(StoreConfig::decode(b"not json").is_err());
        let odd = String::from_utf8(StoreConfig::default().encode())
            .unwrap()
            .replace("16384", "16385");
        assert!(StoreConfig::decode(odd.as_bytes()).is_err());
    }
}
