//! Retention: which snapshots a policy keeps and which it removes.
//!
//! A [`RetentionPolicy`] has up to two rules, and a snapshot stays if **any** rule keeps
//! it: the `keep_last` newest snapshots stay, and so does every snapshot younger than
//! `expire_after`. A pinned snapshot always stays, whatever the rules say. A policy with
//! no rule keeps everything.
//!
//! [`PrunePlan::compute`] decides, purely, from the records, the policy and the current
//! time; the caller then deletes what the plan says (and `--dry-run` prints it instead).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::record::SnapshotRecord;

pub mod safety;

pub use safety::SafetyRetention;

/// Longest `expire_after` accepted (about 1000 years), so that date arithmetic never
/// overflows.
pub const MAX_EXPIRE_AFTER: Duration = Duration::from_secs(1000 * 366 * 24 * 3600);

/// Which snapshots to keep. Stored in `phony-store.json` under `retention` when a store
/// has a policy of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the N newest snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep snapshots younger than this many seconds.
    #[serde(
        default,
        rename = "expire_after_secs",
        with = "secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_after: Option<Duration>,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

impl RetentionPolicy {
    /// Whether the policy has no rule (and so keeps everything).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.expire_after.is_none()
    }

    /// Checks the rules' ranges.
    pub fn validate(&self) -> Result<()> {
        if let Some(d) = self.expire_after {
            if d.is_zero() || d > MAX_EXPIRE_AFTER {
                return Err(Error::Invalid(format!(
                    "expire_after must be between 1 second and {} days, not {} seconds",
                    MAX_EXPIRE_AFTER.as_secs() / 86400,
                    d.as_secs()
                )));
            }
        }
        Ok(())
    }
}

/// Why a snapshot stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum KeepReason {
    /// It is pinned.
    Pinned,
    /// It is among the `keep_last` newest; `rank` 1 is the newest.
    Last { rank: u32 },
    /// It is younger than `expire_after`.
    Recent,
}

/// What the plan does with one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    pub id: SnapshotId,
    /// "name (id)" or the id.
    pub label: String,
    pub created_at: OffsetDateTime,
    /// Empty: the snapshot is removed.
    pub keep: Vec<KeepReason>,
}

impl PlanEntry {
    /// Whether the plan removes this snapshot.
    pub fn removed(&self) -> bool {
        self.keep.is_empty()
    }
}

/// The decision of a prune: every snapshot, newest first, with why it stays or that it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    pub entries: Vec<PlanEntry>,
}

impl PrunePlan {
    /// Applies `policy` to `records` at time `now`. Pure: same input, same plan.
    pub fn compute(
        records: &[SnapshotRecord],
        policy: &RetentionPolicy,
        now: OffsetDateTime,
    ) -> Self {
        let mut sorted: Vec<&SnapshotRecord> = records.iter().collect();
        sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let entries = sorted
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let mut keep = Vec::new();
                if r.pinned {
                    keep.push(KeepReason::Pinned);
                }
                if policy.is_empty() {
                    keep.push(KeepReason::Recent);
                }
                let rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
                if policy.keep_last.is_some_and(|n| rank <= n) {
                    keep.push(KeepReason::Last { rank });
                }
                if let Some(max_age) = policy.expire_after {
                    // A snapshot from the future (clock skew) is young.
                    let age = now - r.created_at;
                    if age.is_negative() || age < max_age {
                        keep.push(KeepReason::Recent);
                    }
                }
                PlanEntry {
                    id: r.id,
                    label: r.label(),
                    created_at: r.created_at,
                    keep,
                }
            })
            .collect();
        PrunePlan { entries }
    }

    /// The snapshots the plan removes, newest first.
    pub fn removed(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| e.removed())
    }

    /// The snapshots the plan keeps, newest first.
    pub fn kept(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| !e.removed())
    }

    /// Whether `id` is removed by this plan.
    pub fn removes(&self, id: &SnapshotId) -> bool {
        self.removed().any(|e| e.id == *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use crate::record::{Origin, SnapshotStats, SourceInfo};
    use proptest::prelude::*;

    const DAY: i64 = 86400;

    fn rec(n: u8, age_days: i64, pinned: bool, now: OffsetDateTime) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            tool_version: None,
            id: SnapshotId::from_random([n; 6]),
            name: None,
            created_at: now - time::Duration::seconds(age_days * DAY),
            root: BlobId::of(b""),
            pinned,
            origin: Origin::Manual,
            labels: Default::default(),
            source: SourceInfo::default(),
            stats: SnapshotStats::default(),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn removed_ids(plan: &PrunePlan) -> Vec<u8> {
        plan.removed()
            .map(|e| e.id.hex()[..2].parse::<u8>().unwrap_or(0))
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let now = now();
        let records: Vec<_> = (1..=5).map(|i| rec(i, i as i64, false, now)).collect();
        let policy = RetentionPolicy {
            keep_last: Some(2),
            expire_after: None,
        };
        let plan = PrunePlan::compute(&records, &policy, now);
        assert_eq!(removed_ids(&plan), [3, 4, 5]);
        assert_eq!(plan.entries[0].keep, [KeepReason::Last { rank: 1 }]);
    }

    #[test]
    fn rules_combine_so_that_any_rule_keeps() {
        let now = now();
        let records: Vec<_> = (1..=6).map(|i| rec(i, i as i64 * 10, false, now)).collect();
        // Ages 10..60 days: the newest 1 by count, and those younger than 35 days.
        let policy = RetentionPolicy {
            keep_last: Some(1),
            expire_after: Some(Duration::from_secs(35 * DAY as u64)),
        };
        let plan = PrunePlan::compute(&records, &policy, now);
        assert_eq!(removed_ids(&plan), [4, 5, 6]);
        assert_eq!(
            plan.entries[0].keep,
            [KeepReason::Last { rank: 1 }, KeepReason::Recent]
        );
        assert_eq!(plan.entries[2].keep, [KeepReason::Recent]);
    }

    #[test]
    fn pinned_snapshots_always_stay() {
        let now = now();
        let records = vec![rec(1, 1, false, now), rec(2, 400, true, now)];
        let policy = RetentionPolicy {
            keep_last: Some(0),
            expire_after: Some(Duration::from_secs(2 * DAY as u64)),
        };
        let plan = PrunePlan::compute(&records, &policy, now);
        assert_eq!(removed_ids(&plan), Vec::<u8>::new());
        assert_eq!(plan.entries[1].keep, [KeepReason::Pinned]);
        let policy = RetentionPolicy {
            keep_last: Some(0),
            expire_after: None,
        };
        assert_eq!(
            removed_ids(&PrunePlan::compute(&records, &policy, now)),
            [1],
            "a policy may remove every unpinned snapshot"
        );
    }

    #[test]
    fn an_empty_policy_keeps_everything_and_future_snapshots_are_young() {
        let now = now();
        let records = vec![rec(1, 1000, false, now), rec(2, -3, false, now)];
        assert_eq!(
            PrunePlan::compute(&records, &RetentionPolicy::default(), now)
                .removed()
                .count(),
            0
        );
        let policy = RetentionPolicy {
            keep_last: None,
            expire_after: Some(Duration::from_secs(DAY as u64)),
        };
        assert_eq!(
            removed_ids(&PrunePlan::compute(&records, &policy, now)),
            [1]
        );
    }

    #[test]
    fn validation_and_golden_encoding() {
        let policy = RetentionPolicy {
            keep_last: Some(10),
            expire_after: Some(Duration::from_secs(30 * DAY as u64)),
        };
        assert_eq!(
            serde_json::to_string(&policy).unwrap(),
            r#"{"keep_last":10,"expire_after_secs":2592000}"#
        );
        assert_eq!(
            serde_json::from_str::<RetentionPolicy>(
                r#"{"keep_last":10,"expire_after_secs":2592000}"#
            )
            .unwrap(),
            policy
        );
        assert_eq!(
            serde_json::from_str::<RetentionPolicy>("{}").unwrap(),
            RetentionPolicy::default()
        );
        assert!(policy.validate().is_ok());
        let zero = RetentionPolicy {
            keep_last: None,
            expire_after: Some(Duration::ZERO),
        };
        assert!(zero.validate().is_err());
        let huge = RetentionPolicy {
            keep_last: None,
            expire_after: Some(Duration::from_secs(u64::MAX)),
        };
        assert!(huge.validate().is_err());
    }

    proptest! {
        /// The laws of a plan: pinned never removed; the N newest never removed; nothing
        /// younger than the expiry removed; everything else removed.
        #[test]
        fn plans_obey_the_rules(
            ages in proptest::collection::vec((0i64..100, any::<bool>()), 0..40),
            keep_last in proptest::option::of(0u32..10),
            expire_days in proptest::option::of(1u64..60),
        ) {
            let now = now();
            let records: Vec<_> = ages
                .iter()
                .enumerate()
                .map(|(i, (age, pinned))| {
                    let mut r = rec(0, *age, *pinned, now);
                    r.id = SnapshotId::from_random([0, 0, 0, 0, 0, i as u8]);
                    r
                })
                .collect();
            let policy = RetentionPolicy {
                keep_last,
                expire_after: expire_days.map(|d| Duration::from_secs(d * DAY as u64)),
            };
            let plan = PrunePlan::compute(&records, &policy, now);
            prop_assert_eq!(plan.entries.len(), records.len());
            for (rank, e) in plan.entries.iter().enumerate() {
                let r = records.iter().find(|r| r.id == e.id).unwrap();
                let young = policy.expire_after.is_some_and(|d| (now - r.created_at) < d);
                let recent_rank = policy.keep_last.is_some_and(|n| (rank as u32) < n);
                let stays = r.pinned || young || recent_rank || policy.is_empty();
                prop_assert_eq!(!e.removed(), stays);
            }
        }
    }
}
