//! `/jobs/{id}`: a job's live progress (the script polls `/jobs/{id}/status` and shows the
//! finished page when it ends); a restore's page ends with the safety snapshot that undoes
//! it. A job waiting behind another of its project says which.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use maud::html;
use serde_json::json;

use crate::app::AppState;
use crate::jobs::JobView;
use crate::problem::{ApiResult, Problem};
use crate::web::pages;
use crate::web::{bytes, layout, page, when, Fail, Session, WebResult};

/// The job a queued job waits for: the project's running one or an older queued one.
async fn waiting_for(app: &AppState, job: &JobView) -> ApiResult<Option<(String, String)>> {
    if job.status != "queued" {
        return Ok(None);
    }
    let client = app.pool.get().await.map_err(Problem::from)?;
    let row = client
        .query_opt(
            "SELECT id, kind FROM jobs WHERE project_id = $1 AND id <> $2
                AND (status = 'running'
                     OR (status = 'queued' AND seq < (SELECT seq FROM jobs WHERE id = $2)))
             ORDER BY status = 'running' DESC, seq LIMIT 1",
            &[&job.project_id, &job.id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

fn what(job: &JobView) -> &'static str {
    match (job.kind.as_str(), job.params["dry_run"] == true) {
        ("create", _) => "Snapshot",
        ("sync", _) => "Sync",
        ("restore", true) => "Restore preview",
        ("restore", false) => "Restore",
        ("export", _) => "Export",
        _ => "Job",
    }
}

/// One line on how the job is doing.
fn describe(job: &JobView, waits: Option<&(String, String)>) -> String {
    let p = &job.progress;
    match job.status.as_str() {
        "queued" => match waits {
            Some((id, kind)) => {
                format!("Queued: waits for the {kind} job {id} of this project to end.")
            }
            None => "Queued: starting shortly.".to_owned(),
        },
        "running" => format!(
            "Running: {} — {} tables, {} rows, {}.",
            p["phase"].as_str().unwrap_or("starting"),
            p["tables"].as_u64().unwrap_or(0),
            p["rows"].as_u64().unwrap_or(0),
            bytes(p["bytes"].as_u64().unwrap_or(0)),
        ),
        "succeeded" => format!("{} done.", what(job)),
        "cancelled" => "Cancelled before it changed anything.".to_owned(),
        _ => format!(
            "Failed: {}",
            job.error
                .as_ref()
                .and_then(|e| e["detail"].as_str())
                .unwrap_or("see the server's log")
        ),
    }
}

/// `GET /jobs/{id}/status`: what the script shows while it polls.
pub async fn status(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult {
    let json = |p: Problem| Fail::from(p).json(true);
    let job = crate::jobs::load(&app, &session.caller, &id)
        .await
        .map_err(json)?;
    let waits = waiting_for(&app, &job).await.map_err(json)?;
    Ok(Json(json!({
        "status": job.status,
        "finished": job.is_finished(),
        "text": describe(&job, waits.as_ref()),
        "snapshot": job.result.as_ref().and_then(|r| r["id"].as_str()),
    }))
    .into_response())
}

/// `GET /jobs/{id}`.
pub async fn show(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult {
    let job = crate::jobs::load(&app, &session.caller, &id).await?;
    let project = pages::project(&app, &session, &job.project_id).await?;
    let waits = waiting_for(&app, &job).await?;
    let result = job.result.clone().unwrap_or_default();
    let title = what(&job);
    let body = html! {
        (pages::header(&project, "timeline"))
        section.card data-job=(job.id) data-poll-job=[(!job.is_finished()).then(|| format!("/jobs/{}/status", job.id))] {
            h2 { (title) " " span class=(format!("badge status-{}", job.status)) data-status=(job.status) { (job.status) } }
            p.job-status role="status" aria-live="polite" data-job-status { (describe(&job, waits.as_ref())) }
            dl.facts {
                dt { "Job" } dd { code { (job.id) } }
                dt { "Asked" } dd { (when(job.created_at)) }
                @if let Some(t) = job.finished_at { dt { "Ended" } dd { (when(t)) } }
            }
            @if job.status == "succeeded" && job.kind == "create" {
                @if let Some(sid) = result["id"].as_str() {
                    p { "Snapshot " a href=(format!("/snapshots/{sid}")) { code { (sid) } } " is on the timeline." }
                }
            }
            @if job.status == "succeeded" && job.kind == "restore" && result["dry_run"] != true {
                p data-restored {
                    "The database is back at snapshot " code { (result["id"].as_str().unwrap_or_default()) }
                    ": " (result["rows"].as_u64().unwrap_or(0)) " rows in " (result["tables"].as_u64().unwrap_or(0)) " tables were rewritten ("
                    (result["path"].as_str().unwrap_or("delta")) " path)."
                }
                @if let Some(safety) = result["safety_snapshot"].as_str() {
                    p.notice data-safety=(safety) {
                        "The state before the restore was kept as safety snapshot "
                        a href=(format!("/snapshots/{safety}")) { code { (safety) } }
                        " (kept 24 hours). "
                        a href=(format!("/snapshots/{safety}/restore")) { "Undo this restore…" }
                    }
                }
            }
            @if job.status == "succeeded" && job.kind == "sync" {
                p data-synced {
                    "Sync #" (result["number"].as_u64().unwrap_or(0)) ": "
                    (result["rows"].as_u64().unwrap_or(0)) " rows in " (result["tables"].as_u64().unwrap_or(0))
                    " tables copied from " code { (result["source"].as_str().unwrap_or_default()) }
                    ", " (result["masked_columns"].as_u64().unwrap_or(0)) " columns masked."
                }
                @for (side, key) in [("before", "before_snapshot_id"), ("after", "after_snapshot_id")] {
                    @if let Some(sid) = result[key].as_str() {
                        p data-sync-snapshot=(side) {
                            "The snapshot " (side) " it: " a href=(format!("/snapshots/{sid}")) { code { (sid) } } "."
                        }
                    }
                }
            }
            p { a href=(format!("/projects/{}", project.id)) { "Back to the timeline" } }
        }
    };
    Ok(page(StatusCode::OK, layout(title, Some(&session), body)))
}
