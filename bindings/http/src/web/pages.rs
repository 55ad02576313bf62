//! The dashboard's pages, one module each, and what they share: loading a project as the
//! session's token sees it, its recent jobs, its header, and reading the answer of an API
//! handler called in-process.

pub mod diff;
pub mod job;
pub mod project;
pub mod projects;
pub mod restore;
pub mod settings;
pub mod snapshot;

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::Value;

use crate::app::AppState;
use crate::jobs::JobView;
use crate::problem::{ApiResult, Problem};
use crate::projects::Project;
use crate::web::{redirect, Fail, Session, WebResult};

/// Project `id`, if the session's token sees it (404 otherwise, as in the API).
pub async fn project(app: &AppState, session: &Session, id: &str) -> ApiResult<Project> {
    crate::projects::load(app, &session.caller, id).await
}

/// A project's latest jobs, newest first.
pub async fn jobs(app: &AppState, project_id: &str, limit: i64) -> ApiResult<Vec<JobView>> {
    let client = app.pool.get().await?;
    let rows = client
        .query(
            "SELECT * FROM jobs WHERE project_id = $1 ORDER BY seq DESC LIMIT $2",
            &[&project_id, &limit],
        )
        .await?;
    Ok(rows.iter().map(JobView::of).collect())
}

/// Whether the project's database answers now: `Err` says why not. Bounded, so that a
/// database that is down never holds the page.
pub async fn reachable(app: &AppState, project: &Project) -> Result<(), String> {
    let target = project.target(app).map_err(|p| p.detail)?;
    match tokio::time::timeout(Duration::from_secs(3), target.connect()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::problem::chain(&e)),
        Err(_) => Err(format!("{target} did not answer within 3 seconds")),
    }
}

/// Whether the project's plan compares snapshots: `None` when it does, else the lowest
/// plan that does (the pages show the way to compare disabled, naming it).
pub async fn diff_gate(app: &AppState, project: &Project) -> ApiResult<Option<String>> {
    let client = app.pool.get().await?;
    let plans = crate::plans::all(crate::snapshots::pg(&client)).await?;
    let has = |p: &crate::plans::Plan| p.has(crate::plans::Feature::SnapshotDiff);
    if plans.iter().any(|p| p.name == project.plan && has(p)) {
        return Ok(None);
    }
    Ok(Some(plans.iter().find(|p| has(p)).map_or_else(
        || "a higher plan".to_owned(),
        |p| p.name.clone(),
    )))
}

/// The JSON body of an API handler's answer (called in-process).
pub async fn body_of(response: Response) -> ApiResult<(u16, Value)> {
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), crate::body::MAX_BODY)
        .await
        .map_err(|e| Problem::internal("reading an answer", &e))?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

/// Where a form that queued a job goes, from the API's answer: the script (`json`) gets
/// the job and the address of its status to follow in place, a form without it the job's
/// page.
pub async fn follow_job(answer: Response, json: bool) -> WebResult {
    let (_, job) = body_of(answer)
        .await
        .map_err(|p| Fail::from(p).json(json))?;
    let job_id = job["id"].as_str().unwrap_or_default().to_owned();
    if json {
        return Ok(Json(serde_json::json!({
            "job": job_id,
            "status": format!("/jobs/{job_id}/status"),
        }))
        .into_response());
    }
    Ok(redirect(&format!("/jobs/{job_id}")))
}

/// The project's heading and its tabs.
pub fn header(project: &Project, active: &str) -> Markup {
    let tabs = [
        ("timeline", "Timeline", format!("/projects/{}", project.id)),
        ("diff", "Compare", format!("/projects/{}/diff", project.id)),
        (
            "settings",
            "Settings",
            format!("/projects/{}/settings", project.id),
        ),
    ];
    html! {
        div.project-head {
            h1 { (project.name) " " span.badge.plan { (project.plan) } }
            p.muted { code { (project.database_url) } }
        }
        nav.tabs aria-label="Project" {
            @for (key, title, href) in tabs {
                @if key == active {
                    a href=(href) aria-current="page" { (title) }
                } @else {
                    a href=(href) { (title) }
                }
            }
        }
    }
}

/// A banner saying the project's database cannot be reached.
pub fn down_banner(why: &str) -> Markup {
    html! {
        p.notice.down role="alert" data-database-down {
            strong { "The database is unreachable. " }
            "Snapshots and their history are shown; taking or restoring a snapshot fails until it is back. "
            span.muted { (why) }
        }
    }
}
