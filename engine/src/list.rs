//! Which snapshots a listing keeps: by name, origin, label and time.

use phony_core::{Origin, SnapshotRecord};
use time::OffsetDateTime;

/// A listing's filters; the default keeps every snapshot. Each filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only the snapshot with this name.
    pub name: Option<String>,
    /// Only snapshots taken for this reason.
    pub origin: Option<Origin>,
    /// Only snapshots carrying every one of these labels (key, value).
    pub labels: Vec<(String, String)>,
    /// Only snapshots created at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only snapshots created before this time.
    pub until: Option<OffsetDateTime>,
}

impl ListFilter {
    /// Whether `record` passes every filter set.
    pub fn keeps(&self, record: &SnapshotRecord) -> bool {
        let name = self
            .name
            .as_deref()
            .is_none_or(|n| record.name.as_ref().is_some_and(|r| r.as_str() == n));
        let origin = self.origin.is_none_or(|o| record.origin == o);
        let labels = self
            .labels
            .iter()
            .all(|(k, v)| record.labels.get(k) == Some(v));
        let since = self.since.is_none_or(|t| record.created_at >= t);
        let until = self.until.is_none_or(|t| record.created_at < t);
        name && origin && labels && since && until
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::tests::record;

    #[test]
    fn the_default_keeps_everything_and_each_filter_narrows() {
        let r = record();
        assert!(ListFilter::default().keeps(&r));
        let by_name = |n: &str| ListFilter {
            name: Some(n.into()),
            ..Default::default()
        };
        assert!(by_name("clean-state").keeps(&r));
        assert!(!by_name("other").keeps(&r));
        let by_origin = |o| ListFilter {
            origin: Some(o),
            ..Default::default()
        };
        assert!(by_origin(Origin::Manual).keeps(&r));
        assert!(!by_origin(Origin::Safety).keeps(&r));
        let by_label = |k: &str, v: &str| ListFilter {
            labels: vec![(k.into(), v.into())],
            ..Default::default()
        };
        assert!(by_label("team", "billing").keeps(&r));
        assert!(!by_label("team", "search").keeps(&r));
        assert!(!by_label("branch", "main").keeps(&r));
        let at = r.created_at;
        let window = |since, until| ListFilter {
            since,
            until,
            ..Default::default()
        };
        assert!(window(Some(at), None).keeps(&r));
        assert!(!window(None, Some(at)).keeps(&r));
        assert!(window(None, Some(at + time::Duration::SECOND)).keeps(&r));
        assert!(!window(Some(at + time::Duration::SECOND), None).keeps(&r));
    }
}
