//! `/`: the projects the session's token sees, with their plan, snapshots against the
//! plan's limit, last snapshot and stored size.

use axum::extract::State;
use axum::http::StatusCode;
use maud::html;
use phony_core::Origin;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Scope;
use crate::problem::Problem;
use crate::web::{bytes, layout, page, when, Session, WebResult};

/// One row of the list.
struct Row {
    id: String,
    name: String,
    plan: String,
    used: u64,
    allowed: Option<i32>,
    last: Option<OffsetDateTime>,
    stored: Option<u64>,
}

/// `GET /`.
pub async fn list(State(app): State<AppState>, session: Session) -> WebResult {
    let projects = match &session.caller.scope {
        Scope::Admin => crate::projects::all(&app).await?,
        Scope::Project(id) => vec![crate::projects::load(&app, &session.caller, id).await?],
    };
    let plans = {
        let client = app.pool.get().await.map_err(Problem::from)?;
        crate::plans::all(crate::snapshots::pg(&client)).await?
    };
    let mut rows = Vec::new();
    for p in projects {
        let records = app.listing(&p.id).await?;
        let stored = match app.engine(&p.id).await {
            Ok(engine) => phony_core::stats::store_stats(engine.store())
                .await
                .ok()
                .map(|s| s.stored_bytes),
            Err(_) => None,
        };
        rows.push(Row {
            used: records
                .iter()
                .filter(|r| r.origin != Origin::Safety)
                .count() as u64,
            allowed: plans
                .iter()
                .find(|pl| pl.name == p.plan)
                .and_then(|pl| pl.snapshots_kept),
            last: records.iter().map(|r| r.created_at).max(),
            stored,
            id: p.id,
            name: p.name,
            plan: p.plan,
        });
    }
    let body = html! {
        h1 { "Projects" }
        @if rows.is_empty() {
            p.card { "No projects yet. An admin registers one with " code { "POST /api/v1/projects" } "." }
        } @else {
            div.table-wrap {
                table.projects {
                    thead { tr {
                        th scope="col" { "Project" }
                        th scope="col" { "Plan" }
                        th scope="col" { "Snapshots" }
                        th scope="col" { "Last snapshot" }
                        th scope="col" { "Stored" }
                    } }
                    tbody {
                        @for r in &rows {
                            tr data-project=(r.id) {
                                th scope="row" { a href=(format!("/projects/{}", r.id)) { (r.name) } }
                                td { span.badge.plan { (r.plan) } }
                                td {
                                    @match r.allowed {
                                        Some(limit) => {
                                            meter min="0" max=(limit) value=(r.used) high=(f64::from(limit) * 0.8) {}
                                            " " (r.used) " of " (limit)
                                        }
                                        None => { (r.used) " (unlimited)" }
                                    }
                                }
                                td { @match r.last { Some(t) => (when(t)), None => span.muted { "none yet" } } }
                                td { @match r.stored { Some(b) => (bytes(b)), None => span.muted { "unknown" } } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout("Projects", Some(&session), body),
    ))
}
