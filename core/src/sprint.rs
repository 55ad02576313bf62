//! Sprint ends announced by issue trackers: Jira's `sprint_closed` and Linear's cycle
//! completion, verified by their signatures and turned into one [`SprintEnd`].
//!
//! - **Jira** signs the raw body as `X-Hub-Signature: sha256=<hex HMAC-SHA256>`; its
//!   timestamp is not signed, so re-deliveries are recognised by the sprint's id.
//! - **Linear** signs the raw body as `Linear-Signature: <hex HMAC-SHA256>`; the body's
//!   `webhookTimestamp` (ms) must be within 60 s of now. A cycle ends with an update
//!   (`type: "Cycle"`, `action: "update"`) that sets `data.completedAt` and lists
//!   `completedAt` in `updatedFrom`.
//!
//! Nothing here reads a clock or the network: the caller passes the time and the secret.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// How far a Linear delivery's timestamp may be from now.
pub const LINEAR_MAX_SKEW_SECS: i64 = 60;

/// The tracker a delivery comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracker {
    Jira,
    Linear,
}

impl Tracker {
    /// `jira` or `linear`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tracker::Jira => "jira",
            Tracker::Linear => "linear",
        }
    }

    /// The tracker a path segment names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jira" => Some(Tracker::Jira),
            "linear" => Some(Tracker::Linear),
            _ => None,
        }
    }
}

/// A sprint (Jira) or cycle (Linear) that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SprintEnd {
    pub tracker: Tracker,
    /// The sprint's or cycle's id: one snapshot per id, whatever the re-deliveries.
    pub id: String,
    /// Its name (Linear cycles without one are called `Cycle <number>`).
    pub name: String,
    /// The Jira board or the Linear team.
    pub board: Option<String>,
    pub started: Option<String>,
    pub ended: Option<String>,
}

impl SprintEnd {
    /// The snapshot name: `sprint-end-` and the name made safe (letters, digits, `.`, `_`,
    /// `-`), at most 64 characters.
    pub fn snapshot_name(&self) -> String {
        let mut slug = String::new();
        for c in self.name.chars() {
            if c.is_alphanumeric() || matches!(c, '.' | '_') {
                slug.push(c.to_lowercase().next().unwrap_or(c));
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_matches('-');
        let slug = if slug.is_empty() {
            self.id.as_str()
        } else {
            slug
        };
        let name = format!("sprint-end-{slug}");
        name.chars()
            .take(crate::record::MAX_NAME_CHARS)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    }

    /// Labels for its snapshot: the tracker, the id, the board or team, the dates.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("tracker".to_owned(), self.tracker.as_str().to_owned()),
            ("sprint_id".to_owned(), self.id.clone()),
            ("sprint".to_owned(), self.name.clone()),
        ]);
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                labels.insert(k.to_owned(), v.clone());
            }
        };
        put("board", &self.board);
        put("started", &self.started);
        put("ended", &self.ended);
        labels
    }
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A sprint or cycle ended.
    SprintEnd(SprintEnd),
    /// Something else (another event, an update that completes nothing): nothing to do.
    Ignored(String),
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    #[error("the delivery carries no {0} header")]
    MissingSignature(&'static str),
    #[error("the delivery's signature does not match")]
    BadSignature,
    #[error("the delivery's timestamp is {0} s from now (more than {LINEAR_MAX_SKEW_SECS} s)")]
    Stale(i64),
    #[error("the delivery is not a {0} webhook body: {1}")]
    Malformed(&'static str, String),
}

/// Checks `body`'s signature from the header the tracker signs with (its value as received,
/// or `None` when absent).
pub fn verify(
    tracker: Tracker,
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), HookError> {
    let (name, prefix) = match tracker {
        Tracker::Jira => ("X-Hub-Signature", "sha256="),
        Tracker::Linear => ("Linear-Signature", ""),
    };
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(HookError::MissingSignature(name))?;
    let hex_sig = header.strip_prefix(prefix).ok_or(HookError::BadSignature)?;
    let given = hex::decode(hex_sig.trim()).map_err(|_| HookError::BadSignature)?;
    let expected = sign(secret, body);
    if expected.as_slice().ct_eq(&given).into() {
        Ok(())
    } else {
        Err(HookError::BadSignature)
    }
}

/// The HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Reads a verified delivery's body.
pub fn parse(tracker: Tracker, body: &[u8], now: OffsetDateTime) -> Result<Delivery, HookError> {
    let what = match tracker {
        Tracker::Jira => "Jira",
        Tracker::Linear => "Linear",
    };
    let v: Value =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(what, e.to_string()))?;
    if !v.is_object() {
        return Err(HookError::Malformed(what, "not a JSON object".into()));
    }
    match tracker {
        Tracker::Jira => parse_jira(&v),
        Tracker::Linear => parse_linear(&v, now),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_jira(v: &Value) -> Result<Delivery, HookError> {
    let event = v
        .get("webhookEvent")
        .and_then(Value::as_str)
        .ok_or_else(|| HookError::Malformed("Jira", "no webhookEvent".into()))?;
    if event != "sprint_closed" {
        return Ok(Delivery::Ignored(format!("event {event}")));
    }
    let sprint = v
        .get("sprint")
        .filter(|s| s.is_object())
        .ok_or_else(|| HookError::Malformed("Jira", "sprint_closed without a sprint".into()))?;
    let id = sprint
        .get("id")
        .and_then(text)
        .ok_or_else(|| HookError::Malformed("Jira", "a sprint without an id".into()))?;
    let name = sprint
        .get("name")
        .and_then(text)
        .unwrap_or_else(|| format!("Sprint {id}"));
    Ok(Delivery::SprintEnd(SprintEnd {
        tracker: Tracker::Jira,
        id,
        name,
        board: sprint.get("originBoardId").and_then(text),
        started: sprint.get("startDate").and_then(text),
        ended: sprint
            .get("completeDate")
            .and_then(text)
            .or_else(|| sprint.get("endDate").and_then(text)),
    }))
}

fn parse_linear(v: &Value, now: OffsetDateTime) -> Result<Delivery, HookError> {
    let stamp = v
        .get("webhookTimestamp")
        .and_then(Value::as_i64)
        .ok_or_else(|| HookError::Malformed("Linear", "no webhookTimestamp".into()))?;
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let skew = (now_ms - stamp) / 1000;
    if skew.abs() > LINEAR_MAX_SKEW_SECS {
        return Err(HookError::Stale(skew));
    }
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let action = v.get("action").and_then(Value::as_str).unwrap_or_default();
    if kind != "Cycle" || action != "update" {
        return Ok(Delivery::Ignored(format!("{kind} {action}")));
    }
    let data = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| HookError::Malformed("Linear", "a Cycle update without data".into()))?;
    let completed = data.get("completedAt").and_then(text);
    let just_now = v
        .get("updatedFrom")
        .and_then(Value::as_object)
        .is_some_and(|u| u.contains_key("completedAt"));
    let Some(completed) = completed.filter(|_| just_now) else {
        return Ok(Delivery::Ignored(
            "a cycle update that completes nothing".into(),
        ));
    };
    let id = data
        .get("id")
        .and_then(text)
        .ok_or_else(|| HookError::Malformed("Linear", "a cycle without an id".into()))?;
    let name = data.get("name").and_then(text).unwrap_or_else(|| {
        match data.get("number").and_then(text) {
            Some(n) => format!("Cycle {n}"),
            None => format!("Cycle {id}"),
        }
    });
    Ok(Delivery::SprintEnd(SprintEnd {
        tracker: Tracker::Linear,
        id,
        name,
        board: data
            .get("team")
            .and_then(|t| t.get("key").or_else(|| t.get("name")))
            .and_then(text)
            .or_else(|| data.get("teamId").and_then(text)),
        started: data.get("startsAt").and_then(text),
        ended: Some(completed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-07 14:00 UTC);

    fn jira_body(event: &str) -> Vec<u8> {
        serde_json::json!({
            "timestamp": 1_765_115_000_000_i64,
            "webhookEvent": event,
            "sprint": {
                "id": 37, "self": "https://example.atlassian.net/rest/agile/1.0/sprint/37",
                "state": "closed", "name": "Sprint 12: Payments / Q4",
                "startDate": "2026-11-23T09:00:00.000Z", "endDate": "2026-12-07T09:00:00.000Z",
                "completeDate": "2026-12-07T13:59:00.000Z", "originBoardId": 4, "goal": "ship"
            }
        })
        .to_string()
        .into_bytes()
    }

    fn linear_body(ts: OffsetDateTime, completes: bool) -> Vec<u8> {
        let mut v = serde_json::json!({
            "action": "update", "type": "Cycle",
            "webhookTimestamp": (ts.unix_timestamp_nanos() / 1_000_000) as i64,
            "data": {
                "id": "c0ffee00-1111-2222-3333-444455556666", "number": 8, "name": null,
                "startsAt": "2026-11-23T00:00:00.000Z", "completedAt": "2026-12-07T13:59:30.000Z",
                "team": {"id": "t1", "key": "ENG", "name": "Engineering"}
            },
            "updatedFrom": {"completedAt": null}
        });
        if !completes {
            v["updatedFrom"] = serde_json::json!({"name": "old"});
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn a_signed_jira_sprint_close_is_a_sprint_end() {
        let body = jira_body("sprint_closed");
        let sig = format!("sha256={}", hex::encode(sign(b"s3cret", &body)));
        verify(Tracker::Jira, b"s3cret", &body, Some(&sig)).unwrap();
        let Delivery::SprintEnd(end) = parse(Tracker::Jira, &body, NOW).unwrap() else {
            panic!("not a sprint end")
        };
        assert_eq!(end.id, "37");
        assert_eq!(end.board.as_deref(), Some("4"));
        assert_eq!(end.snapshot_name(), "sprint-end-sprint-12-payments-q4");
        assert_eq!(end.labels()["sprint_id"], "37");
        assert!(matches!(
            parse(Tracker::Jira, &jira_body("sprint_started"), NOW),
            Ok(Delivery::Ignored(_))
        ));
    }

    #[test]
    fn bad_signatures_are_refused() {
        let body = jira_body("sprint_closed");
        let good = hex::encode(sign(b"s3cret", &body));
        assert_eq!(
            verify(Tracker::Jira, b"s3cret", &body, None),
            Err(HookError::MissingSignature("X-Hub-Signature"))
        );
        assert_eq!(
            verify(
                Tracker::Jira,
                b"other",
                &body,
                Some(&format!("sha256={good}"))
            ),
            Err(HookError::BadSignature)
        );
        // Without its prefix, or not hex, or of a changed body.
        assert!(verify(Tracker::Jira, b"s3cret", &body, Some(&good)).is_err());
        assert!(verify(Tracker::Jira, b"s3cret", &body, Some("sha256=zz")).is_err());
        let mut changed = body.clone();
        changed.push(b' ');
        assert!(verify(
            Tracker::Jira,
            b"s3cret",
            &changed,
            Some(&format!("sha256={good}"))
        )
        .is_err());
        let lin = linear_body(NOW, true);
        let sig = hex::encode(sign(b"lin", &lin));
        verify(Tracker::Linear, b"lin", &lin, Some(&sig)).unwrap();
        assert!(verify(
            Tracker::Linear,
            b"lin",
            &lin,
            Some(&format!("sha256={sig}"))
        )
        .is_err());
    }

    #[test]
    fn linear_cycle_completion_within_a_minute() {
        let Delivery::SprintEnd(end) =
            parse(Tracker::Linear, &linear_body(NOW, true), NOW).unwrap()
        else {
            panic!("not a sprint end")
        };
        assert_eq!(end.name, "Cycle 8");
        assert_eq!(end.board.as_deref(), Some("ENG"));
        assert_eq!(end.snapshot_name(), "sprint-end-cycle-8");
        assert!(matches!(
            parse(Tracker::Linear, &linear_body(NOW, false), NOW),
            Ok(Delivery::Ignored(_))
        ));
        let old = NOW - time::Duration::seconds(61);
        assert_eq!(
            parse(Tracker::Linear, &linear_body(old, true), NOW),
            Err(HookError::Stale(61))
        );
    }

    #[test]
    fn bodies_that_are_not_the_tracker_s() {
        for body in [
            &b"not json"[..],
            b"[1,2]",
            b"{}",
            b"{\"webhookEvent\":\"sprint_closed\"}",
        ] {
            assert!(matches!(
                parse(Tracker::Jira, body, NOW),
                Err(HookError::Malformed("Jira", _))
            ));
        }
        assert!(matches!(
            parse(Tracker::Linear, b"{\"type\":\"Cycle\"}", NOW),
            Err(HookError::Malformed("Linear", _))
        ));
    }

    #[test]
    fn names_stay_valid_snapshot_names() {
        let end = SprintEnd {
            tracker: Tracker::Jira,
            id: "9".into(),
            name: "  ;; DROP TABLE x; -- émoji 🚀 ".repeat(5),
            board: None,
            started: None,
            ended: None,
        };
        let name = end.snapshot_name();
        assert!(name.parse::<crate::SnapshotName>().is_ok(), "{name}");
        let blank = SprintEnd {
            name: "🚀".into(),
            ..end
        };
        assert_eq!(blank.snapshot_name(), "sprint-end-9");
    }
}
