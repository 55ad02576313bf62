//! `/snapshots/{id}/restore`: the confirmation, with what a restore would rewrite measured
//! by a dry run (a restore job with `dry_run`, queued like any other: behind a running job
//! of the project it waits, and the page follows it), then the restore itself as a job.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::app::AppState;
use crate::jobs::WaitQuery;
use crate::snapshots::RestoreBody;
use crate::web::pages::{self, body_of};
use crate::web::session::CsrfForm;
use crate::web::{layout, page, redirect, when, Fail, Session, WebResult};

/// How long the confirmation waits for its dry run before showing its progress instead.
const PREVIEW_WAIT: f64 = 20.0;

fn body(dry_run: bool) -> RestoreBody {
    RestoreBody {
        target_database_url: None,
        force: false,
        dry_run,
        full: false,
        allow_other_database: false,
    }
}

#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    /// The dry-run job already queued for this page.
    preview: Option<String>,
}

/// What the dry run found, as the confirmation shows it.
fn loss(report: &Value) -> Markup {
    let changes = report["changes"].as_array().cloned().unwrap_or_default();
    let schema = report["schema_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let full = report["path"] == "full";
    html! {
        h3 { "What the restore rewrites" }
        @if changes.is_empty() && !full {
            p data-loss="none" { "No row differs: the restore changes nothing but sequences, if any." }
        } @else {
            div.table-wrap {
                table.loss {
                    thead { tr {
                        th scope="col" { "Table" }
                        th scope="col" { "Rows deleted" }
                        th scope="col" { "Rows inserted" }
                        th scope="col" { "Rows updated" }
                    } }
                    tbody {
                        @for c in &changes {
                            tr data-table=(format!("{}.{}", c["schema"].as_str().unwrap_or_default(), c["name"].as_str().unwrap_or_default())) {
                                th scope="row" { (c["schema"].as_str().unwrap_or_default()) "." (c["name"].as_str().unwrap_or_default()) }
                                td.del { (c["deleted"].as_u64().unwrap_or(0)) }
                                td.add { (c["inserted"].as_u64().unwrap_or(0)) }
                                td.chg { (c["updated"].as_u64().unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
        }
        h3 { "The schema" }
        @if full {
            p.notice data-schema="changes" {
                "The schema differs: the restore replaces it"
                @if let Some(reason) = report["full_reason"].as_str() { " (" (reason) ")" }
                ". Every table is reloaded."
            }
            @if !schema.is_empty() {
                ul {
                    @for s in &schema {
                        li { (s["change"].as_str().unwrap_or_default()) ": " (s["kind"].as_str().unwrap_or_default()) " " (s["name"].as_str().unwrap_or_default()) }
                    }
                }
            }
        } @else {
            p data-schema="same" { "The schema is the same: only rows change." }
        }
    }
}

/// `GET /snapshots/{id}/restore`.
pub async fn confirm(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> WebResult {
    let (project, _, record) = crate::snapshots::find(&app, &session.caller, &id).await?;
    let sid = record.id.to_string();
    // The dry run: the job this page queued before, or a new one.
    let (report, pending): (Option<Value>, Option<String>) = match &q.preview {
        Some(job_id) => {
            let job = crate::jobs::load(&app, &session.caller, job_id).await?;
            if job.kind != "restore" || job.params["snapshot_id"] != sid.as_str() {
                return Err(Fail::new(StatusCode::NOT_FOUND, "no such preview"));
            }
            match job.status.as_str() {
                "succeeded" => (job.result, None),
                "queued" | "running" => (None, Some(job.id)),
                _ => {
                    let why = job
                        .error
                        .as_ref()
                        .and_then(|e| e["detail"].as_str())
                        .unwrap_or("it failed");
                    return Err(Fail::new(
                        StatusCode::BAD_GATEWAY,
                        format!("The restore's dry run failed: {why}"),
                    ));
                }
            }
        }
        None => {
            let answer = crate::snapshots::restore(
                State(app.clone()),
                session.caller.clone(),
                Path(sid.clone()),
                crate::body::Query(WaitQuery {
                    wait: Some(PREVIEW_WAIT),
                }),
                crate::body::Body(body(true)),
            )
            .await
            .map_err(|p| {
                Fail::new(
                    p.status,
                    format!("The restore's dry run failed: {}", p.detail),
                )
            })?;
            let (status, value) = body_of(answer).await?;
            if status == 202 {
                let job = value["id"].as_str().unwrap_or_default();
                return Ok(redirect(&format!("/snapshots/{sid}/restore?preview={job}")));
            }
            (Some(value), None)
        }
    };
    let body = html! {
        (pages::header(&project, "timeline"))
        section.card.confirm {
            h2 { "Restore " code { (project.database_url) } " to " (record.label()) "?" }
            p { "Snapshot taken " (when(record.created_at)) "." }
            @if let Some(job) = &pending {
                p.job-status role="status" aria-live="polite" data-poll-job=(format!("/jobs/{job}/status")) data-job-status {
                    "Measuring what the restore would rewrite (a dry run)…"
                }
            }
            @if let Some(report) = &report {
                (loss(report))
                p { "Before the restore, the database as it is now is kept as a " strong { "safety snapshot" }
                    " (24 hours), so the restore can be undone." }
                form method="post" action=(format!("/snapshots/{sid}/restore")) {
                    (session.csrf_field())
                    button.danger type="submit" { "Restore now" }
                    " "
                    a href=(format!("/projects/{}", project.id)) { "Cancel" }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout("Restore", Some(&session), body),
    ))
}

/// `POST /snapshots/{id}/restore`: queues the restore and shows its job.
pub async fn start(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), false)?;
    let answer = crate::snapshots::restore(
        State(app.clone()),
        session.caller.clone(),
        Path(id),
        crate::body::Query(WaitQuery { wait: None }),
        crate::body::Body(body(false)),
    )
    .await?;
    let (_, job) = body_of(answer).await?;
    Ok(redirect(&format!(
        "/jobs/{}",
        job["id"].as_str().unwrap_or_default()
    )))
}
