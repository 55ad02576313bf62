//! Snapshot records: the small, last-written object that makes a snapshot exist.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::manifest::MANIFEST_FORMAT;

/// A validated snapshot name: 1–64 characters of letters (any script), digits, `.`, `_`
/// and `-`, starting with a letter or digit, and not shaped like a snapshot id or a prefix
/// of one (so a name never hides an id: see [`crate::resolve`]).
///
/// Parsing ([`FromStr`]) is for new names and applies every rule. Reading a stored record
/// applies the character rules only: stores written before the id-shape rule may hold
/// names such as `4917`, and those still resolve by exact name when no id matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotName(String);

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

impl SnapshotName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name as a stored record holds it: the character rules, not the id-shape rule.
    pub fn stored(s: &str) -> Result<Self> {
        let first_ok = s.chars().next().is_some_and(char::is_alphanumeric);
        let rest_ok = s
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !first_ok || !rest_ok || s.chars().count() > MAX_NAME_CHARS {
            return Err(Error::Invalid(format!(
                "invalid snapshot name {s:?}: use 1-{MAX_NAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit"
            )));
        }
        Ok(SnapshotName(s.to_owned()))
    }

    /// Whether `s` could be read as a snapshot id or an id prefix: 4 or more hex digits
    /// (in either case), or anything starting with `snap_`.
    pub fn looks_like_id(s: &str) -> bool {
        let lower = s.to_ascii_lowercase();
        lower.starts_with(SnapshotId::PREFIX)
            || (s.len() >= crate::resolve::MIN_PREFIX && s.chars().all(|c| c.is_ascii_hexdigit()))
    }
}

impl FromStr for SnapshotName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let name = Self::stored(s)?;
        if Self::looks_like_id(s) {
            return Err(Error::Invalid(format!(
                "invalid snapshot name {s:?}: it could be read as a snapshot id or id prefix ({} hex digits or more, or starting with {:?}); add a letter that is not a hex digit, e.g. \"v{s}\"",
                crate::resolve::MIN_PREFIX,
                SnapshotId::PREFIX
            )));
        }
        Ok(name)
    }
}

impl TryFrom<String> for SnapshotName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::stored(&s)
    }
}

impl From<SnapshotName> for String {
    fn from(n: SnapshotName) -> String {
        n.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a snapshot was taken. Stored as kebab-case text (`sync-before`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Asked for by a person or a script.
    #[default]
    Manual,
    /// Taken automatically before a restore, so the restore can be undone.
    Safety,
    /// Taken by a schedule.
    Scheduled,
    /// Taken before a sync (or a job wrapped by `phony run`) replaced the database's contents.
    SyncBefore,
    /// Taken after a sync (or a wrapped job).
    SyncAfter,
    /// Taken when a sprint or cycle ended.
    SprintEnd,
}

impl Origin {
    /// The stored text: `manual`, `safety`, `scheduled`, `sync-before`, `sync-after`,
    /// `sprint-end`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Manual => "manual",
            Origin::Safety => "safety",
            Origin::Scheduled => "scheduled",
            Origin::SyncBefore => "sync-before",
            Origin::SyncAfter => "sync-after",
            Origin::SprintEnd => "sprint-end",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "manual" => Origin::Manual,
            "safety" => Origin::Safety,
            "scheduled" => Origin::Scheduled,
            "sync-before" => Origin::SyncBefore,
            "sync-after" => Origin::SyncAfter,
            "sprint-end" => Origin::SprintEnd,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown origin {other:?} (manual, safety, scheduled, sync-before, sync-after, sprint-end)"
                )))
            }
        })
    }
}

/// Where a snapshot came from (never a password).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The database name.
    pub database: String,
    /// The server's version string.
    pub server_version: String,
    /// The point in time the capture read, as the server names it; absent when the server
    /// would not say (or the record predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<CapturePoint>,
}

/// The point in time a capture read, in the server's own terms, so that a later restore
/// into the same database can tell which rows were written after it (see the restore's
/// row ages in docs/design.md). Kept in the record, not in the root manifest: a root
/// depends on contents only, and equal contents captured at different times share it.
/// Core does not interpret it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePoint {
    /// The cluster's system identifier (a 64-bit unsigned number, in decimal).
    pub system_id: String,
    /// The timeline the server was writing on.
    pub timeline: u32,
    /// The database's object id.
    pub database_oid: u32,
    /// The capture transaction's snapshot, as the server prints it (`xmin:xmax:xip,…`).
    pub snapshot: String,
    /// A digest of the captured tables' names and object ids: a table renamed in place of
    /// another keeps its rows' ages, so the restore trusts the point only if this matches.
    pub relations: String,
}

/// Sizes of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub tables: u64,
    pub rows: u64,
    pub sequences: u64,
    /// Plain bytes of all rows.
    pub bytes: u64,
    /// Stored (compressed) bytes of every blob the snapshot references, shared or not.
    pub stored_bytes: u64,
    /// Stored bytes this snapshot added to the store (blobs no earlier snapshot had).
    pub new_bytes: u64,
    /// Chunks and manifest nodes referenced.
    pub blobs: u64,
    /// Of those, how many this snapshot added.
    pub new_blobs: u64,
    /// Wall time of the capture, in milliseconds.
    pub duration_ms: u64,
}

/// The record that lists a snapshot. Written only after every blob it names is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub format: u32,
    /// The version of phony that created the snapshot ("0.1.0"); absent in records written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    pub id: SnapshotId,
    pub name: Option<SnapshotName>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub root: BlobId,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub origin: Origin,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub source: SourceInfo,
    pub stats: SnapshotStats,
}

impl SnapshotRecord {
    /// The canonical encoding (pretty JSON, so a store can be read by people too).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Decodes a record, refusing formats newer than this build.
    pub fn decode(what: &str, bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let corrupt = |e: serde_json::Error| Error::CorruptRecord {
            what: what.to_owned(),
            reason: e.to_string(),
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(corrupt)?;
        if probe.format > MANIFEST_FORMAT {
            return Err(Error::RecordFormat {
                what: what.to_owned(),
                found: probe.format,
                supported: MANIFEST_FORMAT,
            });
        }
        serde_json::from_slice(bytes).map_err(corrupt)
    }

    /// "name (id)" or just the id.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.id),
            None => self.id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in [
            "clean-state",
            "before-migration",
            "v1.2_rc",
            "A",
            "día",
            "é",
            "日本",
            "abc",
            "4917x",
            "cafe-1",
            &"é".repeat(64),
        ] {
            assert!(good.parse::<SnapshotName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "has space",
            "tab\tx",
            "new\nline",
            "a/b",
            "nul\0",
            &"x".repeat(65),
        ] {
            let e = bad.parse::<SnapshotName>().unwrap_err().to_string();
            assert!(e.contains("letters, digits"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_that_read_as_ids_or_prefixes_are_refused_but_still_read_from_records() {
        for bad in [
            "4917",
            "abcd",
            "ABCD",
            "4917e011aee7",
            "snap_abc",
            "SNAP_x",
            "snap_4917e011aee7",
        ] {
            let e = bad.parse::<SnapshotName>().unwrap_err().to_string();
            assert!(e.contains("snapshot id or id prefix"), "{bad}: {e}");
            if bad.chars().all(|c| c.is_ascii_hexdigit()) {
                // A store written before this rule keeps them readable.
                let stored: SnapshotName = serde_json::from_str(&format!("{bad:?}")).unwrap();
                assert_eq!(stored.as_str(), bad);
            }
        }
    }

    #[test]
    fn records_round_trip_and_newer_formats_are_refused() {
        let rec = SnapshotRecord {
            format: MANIFEST_FORMAT,
            tool_version: None,
            id: SnapshotId::from_random([1, 2, 3, 4, 5, 6]),
            name: Some("clean-state".parse().unwrap()),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            root: BlobId::of(b"root"),
            pinned: true,
            origin: Origin::Manual,
            labels: BTreeMap::new(),
            source: SourceInfo {
                database: "app".into(),
                server_version: "15.4".into(),
                point: Some(CapturePoint {
                    system_id: "7712631706761902213".into(),
                    timeline: 1,
                    database_oid: 16384,
                    snapshot: "870:873:871".into(),
                    relations: "ab12".into(),
                }),
            },
            stats: SnapshotStats::default(),
        };
        let bytes = rec.encode();
        assert_eq!(SnapshotRecord::decode("r", &bytes).unwrap(), rec);
        let newer = String::from_utf8(bytes)
            .unwrap()
            .replace("\"format\": 1", "\"format\": 7");
        let err = SnapshotRecord::decode("snapshots/snap_abababababab.json", newer.as_bytes())
            .unwrap_err();
        assert!(
            matches!(err, Error::RecordFormat { found: 7, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("snapshots/snap_abababababab.json uses format 7"),
            "the message names the record, not the store: {err}"
        );
        assert!(matches!(
            SnapshotRecord::decode("r", b"{"),
            Err(Error::CorruptRecord { .. })
        ));
    }

    #[test]
    fn records_without_a_capture_point_still_read_and_write_none() {
        let rec = SnapshotRecord {
            format: MANIFEST_FORMAT,
            tool_version: None,
            id: SnapshotId::from_random([9; 6]),
            name: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            root: BlobId::of(b"root"),
            pinned: false,
            origin: Origin::Manual,
            labels: BTreeMap::new(),
            source: SourceInfo {
                database: "app".into(),
                server_version: "15.4".into(),
                point: None,
            },
            stats: SnapshotStats::default(),
        };
        let text = String::from_utf8(rec.encode()).unwrap();
        assert!(!text.contains("point"), "{text}");
        // What builds before the point existed wrote.
        assert_eq!(SnapshotRecord::decode("r", text.as_bytes()).unwrap(), rec);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..800)) {
            let _ = SnapshotRecord::decode("r", &bytes);
        }

        #[test]
        fn damaged_records_never_panic(pos in 0usize..2000, byte in proptest::prelude::any::<u8>()) {
            let rec = SnapshotRecord {
                format: MANIFEST_FORMAT,
                tool_version: None,
                id: SnapshotId::from_random([7; 6]),
                name: Some("n".parse().unwrap()),
                created_at: OffsetDateTime::UNIX_EPOCH,
                root: BlobId::of(b"root"),
                pinned: false,
                origin: Origin::Safety,
                labels: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                source: SourceInfo::default(),
                stats: SnapshotStats::default(),
            };
            let mut bytes = rec.encode();
            let at = pos % bytes.len();
            bytes[at] = byte;
            let _ = SnapshotRecord::decode("r", &bytes);
        }
    }
}
