//! `GET /api/v1/projects/{id}/timeline`: a project's history as the dashboard draws it:
//! snapshots, syncs, restores, schedule fires and sprint ends, newest first, a page at a
//! time.
//!
//! Snapshots come from the store (the source of truth), the rest from the metadata (jobs
//! and recorded deliveries). Snapshot labels are the command line's
//! (`phony snapshot timeline`): `Before Sync #1`, `Sync #1`, `Sprint End #2`, the name.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use phony_core::SnapshotRecord;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Query;
use crate::jobs::JobView;
use crate::problem::{ApiResult, Problem};
use crate::projects;
use crate::schedules::rfc3339;

/// One point of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// When it happened (RFC 3339).
    pub at: String,
    /// snapshot, sync, restore, schedule or sprint.
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    /// A job's status (syncs, restores, schedule fires, sprint ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Orders items: (time in ns, a key unique among items).
    #[serde(skip)]
    order: (i128, String),
}

impl Item {
    fn new(at: OffsetDateTime, kind: &'static str, key: String, label: String) -> Self {
        Item {
            at: rfc3339(at),
            kind,
            label,
            snapshot_id: None,
            job_id: None,
            origin: None,
            pinned: None,
            status: None,
            order: (at.unix_timestamp_nanos(), key),
        }
    }

    fn cursor(&self) -> String {
        format!("{}.{}", self.order.0, self.order.1)
    }
}

/// The snapshots' points, labelled as the command line labels them.
pub fn snapshot_items(records: &[SnapshotRecord]) -> Vec<Item> {
    phony_core::timeline::labelled(records)
        .into_iter()
        .map(|(r, label)| {
            let mut item = Item::new(r.created_at, "snapshot", format!("s:{}", r.id), label);
            item.snapshot_id = Some(r.id.to_string());
            item.origin = Some(r.origin.to_string());
            item.pinned = Some(r.pinned);
            item
        })
        .collect()
}

/// A job's point (syncs, restores, schedule fires), if it has one.
fn job_item(job: &JobView) -> Option<Item> {
    let key = format!("j:{}", job.id);
    let result = job.result.clone().unwrap_or(Value::Null);
    let str_of = |v: &Value| v.as_str().map(str::to_owned);
    let mut item = match job.kind.as_str() {
        "sync" => {
            let n = job.params["number"].as_u64().unwrap_or_default();
            let mut item = Item::new(job.created_at, "sync", key, format!("Sync #{n}"));
            item.snapshot_id = str_of(&result["after_snapshot_id"]);
            item
        }
        "restore" => {
            let of = str_of(&job.params["snapshot_id"]).unwrap_or_default();
            let mut item = Item::new(job.created_at, "restore", key, format!("Restore of {of}"));
            item.snapshot_id = Some(of);
            item
        }
        "create" if job.params["schedule_id"].is_string() => {
            let name = str_of(&job.params["name"]).unwrap_or_else(|| "Scheduled".into());
            let mut item = Item::new(job.created_at, "schedule", key, name);
            item.snapshot_id = str_of(&result["id"]);
            item.origin = Some("scheduled".into());
            item
        }
        _ => return None,
    };
    item.job_id = Some(job.id.clone());
    item.status = Some(job.status.clone());
    Some(item)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// `GET /api/v1/projects/{id}/timeline?limit=&cursor=`: newest first.
pub async fn timeline(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> ApiResult<Json<Value>> {
    let project = projects::load(&app, &caller, &project_id).await?;
    let bad = |d: &str| Problem::new(StatusCode::BAD_REQUEST, "invalid_query", d.to_owned());
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit is between 1 and 1000"));
    }
    let after = match &q.cursor {
        Some(c) => {
            let (nanos, key) = c
                .split_once('.')
                .ok_or_else(|| bad("cursor is not one this server gave"))?;
            let nanos: i128 = nanos
                .parse()
                .map_err(|_| bad("cursor is not one this server gave"))?;
            Some((nanos, key.to_owned()))
        }
        None => None,
    };
    let records = app.listing(&project.id).await?;
    let mut items = snapshot_items(&records);
    let client = app.pool.get().await?;
    let jobs = client
        .query(
            "SELECT * FROM jobs WHERE project_id = $1
               AND (kind IN ('sync', 'restore') OR params ? 'schedule_id')",
            &[&project.id],
        )
        .await?;
    items.extend(jobs.iter().filter_map(|r| job_item(&JobView::of(r))));
    let sprints = client
        .query(
            "SELECT d.*, j.status FROM hook_deliveries d LEFT JOIN jobs j ON j.id = d.job_id
             WHERE d.project_id = $1",
            &[&project.id],
        )
        .await?;
    for r in &sprints {
        let tracker: String = r.get("tracker");
        let event: String = r.get("event_id");
        let sprint: String = r.get("sprint");
        let mut item = Item::new(
            r.get("received_at"),
            "sprint",
            format!("p:{tracker}:{event}"),
            format!("Sprint end: {sprint}"),
        );
        item.job_id = r.get("job_id");
        item.status = r.get("status");
        item.origin = Some("sprint-end".into());
        items.push(item);
    }
    items.sort_by(|a, b| b.order.cmp(&a.order));
    let mut page: Vec<Item> = items
        .into_iter()
        .filter(|i| after.as_ref().is_none_or(|a| i.order < *a))
        .take(limit + 1)
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = if more {
        page.last().map(Item::cursor)
    } else {
        None
    };
    Ok(Json(json!({ "items": page, "next_cursor": next_cursor })))
}
