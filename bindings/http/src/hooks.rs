//! Sprint ends from issue trackers: a project's Jira or Linear integration (its signing
//! secret, sealed like database URLs) and the webhooks they deliver.
//!
//! A delivery carries no bearer token: its signature is the auth. A bad or missing
//! signature (or a Linear timestamp more than 60 s off) answers 401 and does nothing;
//! JSON that is not the tracker's 400; other events 200 and nothing. A verified sprint end
//! queues a create job (origin `sprint-end`, named and labelled after the sprint), and a
//! sync after it when the integration asks for that. Each sprint or cycle is recorded in
//! `hook_deliveries`: a re-delivery takes no second snapshot.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use phony_core::sprint::{self, Delivery, HookError, Tracker};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Body;
use crate::problem::{ApiResult, Problem};
use crate::projects;

fn tracker(name: &str) -> ApiResult<Tracker> {
    Tracker::parse(name).ok_or_else(|| Problem::not_found("integration"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationBody {
    /// The webhook's signing secret (kept sealed, never shown again).
    pub secret: String,
    /// Start a sync after each sprint end's snapshot (default: as it was, else false).
    pub sync_on_sprint_end: Option<bool>,
}

/// `PUT /api/v1/projects/{id}/integrations/{tracker}`: sets the tracker's secret.
pub async fn put(
    State(app): State<AppState>,
    caller: Caller,
    Path((project_id, name)): Path<(String, String)>,
    Body(body): Body<IntegrationBody>,
) -> ApiResult<Json<Value>> {
    let project = projects::load(&app, &caller, &project_id).await?;
    let tracker = tracker(&name)?;
    if body.secret.trim().is_empty() || body.secret.len() > 1024 {
        return Err(Problem::invalid(
            "invalid_body",
            "secret has 1-1024 characters (the webhook's signing secret)",
        ));
    }
    if body.sync_on_sprint_end == Some(true) && project.sync_source.is_none() {
        return Err(Problem::conflict(
            "sync_source_missing",
            "a sync on sprint end needs the project's sync source: set sync_source_url first",
        ));
    }
    let sealed = app
        .key
        .seal(&body.secret)
        .map_err(|e| Problem::internal("encrypting the webhook secret", &e))?;
    let client = app.pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO integrations (project_id, tracker, secret, sync_on_sprint_end)
             VALUES ($1, $2, $3, coalesce($4, false))
             ON CONFLICT (project_id, tracker) DO UPDATE SET secret = $3,
                sync_on_sprint_end = coalesce($4, integrations.sync_on_sprint_end),
                updated_at = now()
             RETURNING sync_on_sprint_end, created_at, updated_at",
            &[
                &project.id,
                &tracker.as_str(),
                &sealed,
                &body.sync_on_sprint_end,
            ],
        )
        .await?;
    let created: OffsetDateTime = row.get(1);
    let updated: OffsetDateTime = row.get(2);
    Ok(Json(json!({
        "project_id": project.id,
        "tracker": tracker.as_str(),
        "sync_on_sprint_end": row.get::<_, bool>(0),
        "hook_url": format!("/api/v1/hooks/{}/{}", tracker.as_str(), project.id),
        "created_at": crate::schedules::rfc3339(created),
        "updated_at": crate::schedules::rfc3339(updated),
    })))
}

/// `POST /api/v1/hooks/jira/{id}` (`id`: the project's).
pub async fn jira(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    deliver(&app, Tracker::Jira, &project_id, &headers, body).await
}

/// `POST /api/v1/hooks/linear/{id}`.
pub async fn linear(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    deliver(&app, Tracker::Linear, &project_id, &headers, body).await
}

/// A delivery that is not the tracker's, signed with the project's secret.
fn unauthorized(detail: String) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

async fn deliver(
    app: &AppState,
    tracker: Tracker,
    project_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(crate::body::too_large())
        }
        Err(e) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_delivery",
                e.body_text(),
            ))
        }
    };
    if body.len() > crate::body::MAX_BODY {
        return Err(crate::body::too_large());
    }
    let header_name = match tracker {
        Tracker::Jira => "x-hub-signature",
        Tracker::Linear => "linear-signature",
    };
    let signature = headers.get(header_name).and_then(|v| v.to_str().ok());
    let client = app.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT secret, sync_on_sprint_end FROM integrations WHERE project_id = $1 AND tracker = $2",
            &[&project_id, &tracker.as_str()],
        )
        .await?;
    drop(client);
    // A project without this integration answers as a wrong signature does: a caller
    // without the secret learns nothing.
    let Some(row) = row else {
        return Err(unauthorized(format!(
            "the delivery's signature does not match (or the project has no {} integration)",
            tracker.as_str()
        )));
    };
    let secret = app
        .key
        .open(&row.get::<_, Vec<u8>>(0))
        .map_err(|e| Problem::internal("reading the webhook secret", &e))?;
    let sync_after: bool = row.get(1);
    sprint::verify(tracker, secret.as_bytes(), &body, signature)
        .map_err(|e| unauthorized(e.to_string()))?;
    let delivery = match sprint::parse(tracker, &body, OffsetDateTime::now_utc()) {
        Ok(d) => d,
        Err(e @ HookError::Stale(_)) => return Err(unauthorized(e.to_string())),
        Err(e) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_delivery",
                e.to_string(),
            ))
        }
    };
    let end = match delivery {
        Delivery::SprintEnd(end) => end,
        Delivery::Ignored(why) => {
            return Ok(Json(json!({ "action": "ignored", "reason": why })).into_response())
        }
    };
    let project = crate::work::project(app, project_id).await?;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let fresh = tx
        .query_opt(
            "INSERT INTO hook_deliveries (project_id, tracker, event_id, sprint)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING event_id",
            &[&project.id, &tracker.as_str(), &end.id, &end.name],
        )
        .await?;
    if fresh.is_none() {
        return Ok(Json(json!({
            "action": "duplicate",
            "reason": format!("sprint {} was delivered before; no second snapshot", end.id),
        }))
        .into_response());
    }
    let params = json!({
        "name": end.snapshot_name(),
        "pin": false,
        "labels": end.labels(),
        "origin": "sprint-end",
    });
    let job = crate::jobs::enqueue(&*tx, &project.id, "create", &params).await?;
    let sync_job = if sync_after {
        let body = crate::syncs::SyncBody::default();
        match crate::syncs::enqueue(app, &tx, &project, &body).await {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!(
                    "{}: no sync after sprint {}: {}",
                    project.id,
                    end.id,
                    e.detail
                );
                None
            }
        }
    } else {
        None
    };
    tx.execute(
        "UPDATE hook_deliveries SET job_id = $4, sync_job_id = $5
         WHERE project_id = $1 AND tracker = $2 AND event_id = $3",
        &[
            &project.id,
            &tracker.as_str(),
            &end.id,
            &job.id,
            &sync_job.as_ref().map(|j| j.id.clone()),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "action": "snapshot",
            "snapshot_name": end.snapshot_name(),
            "job": job,
            "sync_job": sync_job,
        })),
    )
        .into_response())
}
