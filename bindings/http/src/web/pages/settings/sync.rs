//! The sync section: the source database (shown without its password, which is never
//! shown back), the masking rules (a bad line named), and "Sync now" with the snapshots
//! around it that the plan takes (the others disabled, naming the plan that takes them).
//! A sync is a job: the script follows it in place as "Snapshot now" does, a form without
//! it lands on the job's page.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{Ctx, Shown};
use crate::app::AppState;
use crate::jobs::WaitQuery;
use crate::plans::Plan;
use crate::projects::ProjectPatch;
use crate::syncs::SyncBody;
use crate::web::pages;
use crate::web::{redirect, wants_json, when, Fail, Session, WebResult};

/// Whether `plan` takes the snapshot before a sync (as `crate::syncs` decides).
fn takes_before(p: &Plan) -> bool {
    matches!(
        p.auto_snapshot_on_sync.as_str(),
        "before_and_after" | "configurable"
    )
}

/// Whether `plan` takes the snapshot after a sync.
fn takes_after(p: &Plan) -> bool {
    p.auto_snapshot_on_sync != "none"
}

pub async fn section(app: &AppState, c: &Ctx<'_>, shown: &Shown) -> Result<Markup, Fail> {
    let project = c.project;
    let rules = shown
        .rules
        .clone()
        .or_else(|| project.masking_rules.clone())
        .unwrap_or_default();
    let syncs: Vec<_> = pages::jobs(app, &project.id, 100)
        .await?
        .into_iter()
        .filter(|j| j.kind == "sync")
        .take(5)
        .collect();
    let sides = [
        (
            "before",
            "A snapshot before the sync",
            takes_before(c.plan),
            c.unlock(takes_before),
        ),
        (
            "after",
            "A snapshot after the sync",
            takes_after(c.plan),
            c.unlock(takes_after),
        ),
    ];
    Ok(html! {
        section.card id="sync" {
            h2 { "Sync source and masking" }
            (shown.message("sync"))
            p {
                @match &project.sync_source {
                    Some(source) => { "Syncs copy from " code data-sync-source { (source) } " (its password is kept encrypted and never shown)." }
                    None => { "No sync source yet: syncs copy a source database (production, say) into this one, masked on the way." }
                }
            }
            form method="post" action=(c.action("/sync")) data-sync-form {
                (c.session.csrf_field())
                label for="sync-source" { "Source database URL" }
                input id="sync-source" name="source_url" type="text" autocomplete="off" spellcheck="false"
                    placeholder="postgres://user:password@host:5432/database";
                p.muted {
                    @if project.sync_source.is_some() { "Empty: the source stays as it is." }
                    @else { "Empty: no source." }
                }
                @if project.sync_source.is_some() {
                    div.row { label { input type="checkbox" name="remove" value="1"; " Remove the sync source" } }
                }
                label for="masking-rules" { "Masking rules" }
                textarea id="masking-rules" name="masking_rules" rows="6" spellcheck="false"
                    placeholder="public.users.email  email" { (rules) }
                p.muted { "One rule a line: " code { "schema.table.column" } " then " code { "null" } ", " code { "fixed 'value'" } ", " code { "hash" } ", " code { "email" } ", " code { "name" } " or " code { "phone" } "; " code { "#" } " starts a comment." }
                button type="submit" { "Save" }
            }
            form.sync-now method="post" action=(c.action("/sync/run")) data-job-form {
                (c.session.csrf_field())
                h3 { "Sync now" }
                @for (name, what, on, needs) in sides {
                    div.row data-side=(name) {
                        label {
                            input type="checkbox" name=(name) value="1" checked[on] disabled[!on];
                            " " (what)
                        }
                        @if !on { " " span.badge.off { "needs " (needs) } }
                    }
                }
                div.row {
                    button.primary type="submit" disabled[project.sync_source.is_none()] { "Sync now" }
                }
                p.job-status role="status" aria-live="polite" data-job-status {}
            }
            @if !syncs.is_empty() {
                h3 { "Recent syncs" }
                ul.syncs {
                    @for j in &syncs {
                        li data-sync-job=(j.id) {
                            a href=(format!("/jobs/{}", j.id)) { "Sync #" (j.params["number"].as_u64().unwrap_or_default()) }
                            " · " span class=(format!("status-{}", j.status)) { (j.status) }
                            " · " (when(j.created_at))
                        }
                    }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct SourceForm {
    csrf: Option<String>,
    source_url: Option<String>,
    remove: Option<String>,
    masking_rules: Option<String>,
}

/// `POST /projects/{id}/settings/sync`: `PATCH /api/v1/projects/{id}` with
/// `sync_source_url` (when one is typed, or removed) and `masking_rules` (empty: none).
pub async fn sync_source(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<SourceForm>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), false)?;
    let url = form.source_url.unwrap_or_default().trim().to_owned();
    let rules = form.masking_rules.unwrap_or_default().replace("\r\n", "\n");
    let source = if form.remove.is_some() {
        Some(None)
    } else if url.is_empty() {
        None
    } else {
        Some(Some(url))
    };
    let masking = if rules.trim().is_empty() {
        Some(None)
    } else {
        Some(Some(rules.clone()))
    };
    let saved = crate::projects::update(
        State(app.clone()),
        session.caller.clone(),
        Path(id.clone()),
        crate::body::Body(ProjectPatch {
            name: None,
            database_url: None,
            plan: None,
            retention_days: None,
            keep_last: None,
            sync_source_url: source,
            masking_rules: masking,
        }),
    )
    .await;
    match saved {
        Ok(_) => Ok(redirect(&format!(
            "/projects/{id}/settings?saved=sync#sync"
        ))),
        Err(p) => {
            // What was typed stays, but for the URL: it may hold a password.
            let fail = Fail::from(p);
            let status = fail.status;
            let mut shown = Shown::failed("sync", &fail);
            shown.rules = Some(rules);
            super::render(&app, &session, &id, shown, status).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SyncForm {
    csrf: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

/// `POST /projects/{id}/settings/sync/run`: `POST /api/v1/projects/{id}/syncs` with the
/// snapshots ticked; the script gets the job to follow, a form without it the job's page.
pub async fn sync_now(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<SyncForm>,
) -> WebResult {
    let json = wants_json(&headers);
    session.check_csrf(form.csrf.as_deref(), json)?;
    let queued = crate::syncs::create(
        State(app.clone()),
        session.caller.clone(),
        Path(id.clone()),
        crate::body::Query(WaitQuery { wait: None }),
        crate::body::Body(SyncBody {
            before: Some(form.before.is_some()),
            after: Some(form.after.is_some()),
        }),
    )
    .await;
    let answer = match queued {
        Ok(a) => a,
        Err(p) if json => return Err(Fail::from(p).json(true)),
        Err(p) => return super::refused(&app, &session, &id, "sync", Fail::from(p)).await,
    };
    pages::follow_job(answer, json).await
}
