//! Retention of safety snapshots: the automatic snapshots a restore takes of the state it
//! replaces, so that it can be undone. Without a limit they pile up, one per restore.
//!
//! Unlike a [`super::RetentionPolicy`], whose rules each keep a snapshot, both limits here
//! apply: of each database's safety snapshots, at most the `keep_last` newest stay, and none
//! older than `expire_after`. Pinned snapshots and the one just taken always stay, and
//! snapshots of other origins are not looked at. The default keeps the last 5 per database,
//! none older than 7 days.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Result;
use crate::id::SnapshotId;
use crate::record::{Origin, SnapshotRecord};

/// Limits on safety snapshots. Stored in `phony-store.json` under `safety_retention` when a
/// store has limits other than the default; a limit that is `None` does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyRetention {
    /// At most this many safety snapshots per database (the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// None older than this.
    #[serde(
        default,
        rename = "expire_after_secs",
        with = "super::secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_after: Option<Duration>,
}

impl SafetyRetention {
    /// The default limits: the last 5 per database, none older than 7 days.
    pub const DEFAULT: SafetyRetention = SafetyRetention {
        keep_last: Some(5),
        expire_after: Some(Duration::from_secs(7 * 24 * 3600)),
    };

    /// No limit: every safety snapshot stays until removed by hand or by a prune.
    pub const KEEP_ALL: SafetyRetention = SafetyRetention {
        keep_last: None,
        expire_after: None,
    };

    /// Checks the limits' ranges.
    pub fn validate(&self) -> Result<()> {
        super::RetentionPolicy {
            keep_last: None,
            expire_after: self.expire_after,
        }
        .validate()
    }

    /// The safety snapshots to remove at `now`, oldest last; never `just_taken`, never a
    /// pinned one. Pure: same input, same answer.
    pub fn to_remove(
        &self,
        records: &[SnapshotRecord],
        just_taken: SnapshotId,
        now: OffsetDateTime,
    ) -> Vec<SnapshotId> {
        let mut by_database: BTreeMap<&str, Vec<&SnapshotRecord>> = BTreeMap::new();
        for r in records.iter().filter(|r| r.origin == Origin::Safety) {
            by_database
                .entry(r.source.database.as_str())
                .or_default()
                .push(r);
        }
        let mut removed = Vec::new();
        for mut group in by_database.into_values() {
            group.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            for (i, r) in group.into_iter().enumerate() {
                if r.pinned || r.id == just_taken {
                    continue;
                }
                let over_count = self.keep_last.is_some_and(|n| i >= n as usize);
                // A snapshot from the future (clock skew) is young.
                let too_old = self.expire_after.is_some_and(|max| {
                    let age = now - r.created_at;
                    !age.is_negative() && age >= max
                });
                if over_count || too_old {
                    removed.push(r.id);
                }
            }
        }
        removed
    }
}

impl Default for SafetyRetention {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use crate::record::{SnapshotStats, SourceInfo};

    const HOUR: i64 = 3600;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn rec(n: u8, age_hours: i64, origin: Origin, db: &str) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            tool_version: None,
            id: SnapshotId::from_random([n; 6]),
            name: None,
            created_at: now() - time::Duration::seconds(age_hours * HOUR),
            root: BlobId::of(b""),
            pinned: false,
            origin,
            labels: Default::default(),
            source: SourceInfo {
                database: db.into(),
                ..SourceInfo::default()
            },
            stats: SnapshotStats::default(),
        }
    }

    fn ns(ids: &[SnapshotId]) -> Vec<u8> {
        let mut v: Vec<u8> = ids
            .iter()
            .map(|id| u8::from_str_radix(&id.hex()[..2], 16).unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_default_keeps_the_last_five_per_database_and_nothing_older_than_a_week() {
        let mut records: Vec<_> = (1..=8)
            .map(|i| rec(i, i64::from(i), Origin::Safety, "app"))
            .collect();
        records.push(rec(20, 1, Origin::Manual, "app"));
        records.push(rec(21, 500, Origin::Manual, "app"));
        records.push(rec(30, 2, Origin::Safety, "other"));
        records.push(rec(31, 200, Origin::Safety, "other"));
        let just = records[0].id;
        let removed = SafetyRetention::DEFAULT.to_remove(&records, just, now());
        // app: 1..5 stay, 6..8 go; other: the one 200 h old goes; manual ones stay.
        assert_eq!(ns(&removed), [6, 7, 8, 31]);
    }

    #[test]
    fn never_the_one_just_taken_nor_a_pinned_one() {
        let mut records = vec![
            rec(1, 1, Origin::Safety, "app"),
            rec(2, 2, Origin::Safety, "app"),
            rec(3, 300, Origin::Safety, "app"),
        ];
        records[1].pinned = true;
        let limits = SafetyRetention {
            keep_last: Some(0),
            expire_after: Some(Duration::from_secs(3600)),
        };
        // The newest is "just taken" even if the clock says it is old.
        let removed = limits.to_remove(&records, records[2].id, now());
        assert_eq!(ns(&removed), [1]);
        assert!(SafetyRetention::KEEP_ALL
            .to_remove(&records, records[0].id, now())
            .is_empty());
    }

    #[test]
    fn a_config_without_limits_reads_as_the_default_and_round_trips() {
        let custom = SafetyRetention {
            keep_last: Some(2),
            expire_after: None,
        };
        let text = serde_json::to_string(&custom).unwrap();
        assert_eq!(text, r#"{"keep_last":2}"#);
        assert_eq!(
            serde_json::from_str::<SafetyRetention>(&text).unwrap(),
            custom
        );
        assert_eq!(
            serde_json::to_string(&SafetyRetention::DEFAULT).unwrap(),
            r#"{"keep_last":5,"expire_after_secs":604800}"#
        );
    }
}
