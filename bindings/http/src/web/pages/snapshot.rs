//! `/snapshots/{id}`: one marker's snapshot, with the ways to restore it or compare it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use maud::html;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::web::pages;
use crate::web::timeline;
use crate::web::{bytes, layout, page, when, Session, WebResult};

/// The page of snapshot `id`.
async fn page_of(app: &AppState, session: &Session, id: &str) -> WebResult {
    let (project, _, record) = crate::snapshots::find(app, &session.caller, id).await?;
    let records = app.listing(&project.id).await?;
    let label = timeline::items(&records, &[], Vec::new(), OffsetDateTime::now_utc())
        .into_iter()
        .find(|i| i.snapshot_id.as_deref() == Some(&record.id.to_string()))
        .map_or_else(|| record.label(), |i| i.label);
    let id = record.id.to_string();
    let gate = pages::diff_gate(app, &project).await?;
    let body = html! {
        (pages::header(&project, "timeline"))
        section.card {
            h2 { (label) @if record.pinned { " " span.badge { "pinned" } } }
            dl.facts {
                dt { "Id" } dd { code { (id) } }
                dt { "Taken" } dd { (when(record.created_at)) }
                dt { "Origin" } dd { (record.origin.as_str()) }
                dt { "Tables" } dd { (record.stats.tables) }
                dt { "Rows" } dd { (record.stats.rows) }
                dt { "Size" } dd { (bytes(record.stats.bytes)) " of rows, " (bytes(record.stats.new_bytes)) " new in the store" }
                @for (k, v) in &record.labels {
                    dt { "Label " (k) } dd { (v) }
                }
            }
            p.actions {
                a.button.primary href=(format!("/snapshots/{id}/restore")) { "Restore to this snapshot…" }
                @if gate.is_none() {
                    a.button href=(format!("/projects/{}/diff?from={id}&to=now", project.id)) { "Compare with now" }
                }
                a href=(format!("/projects/{}", project.id)) { "Back to the timeline" }
            }
        }
    };
    Ok(page(StatusCode::OK, layout(&label, Some(session), body)))
}

/// `GET /snapshots/{id}`.
pub async fn show(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> WebResult {
    page_of(&app, &session, &id).await
}
