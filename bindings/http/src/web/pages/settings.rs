//! `/projects/{id}/settings`: retention, the plan's usage with bars, and every feature,
//! those outside the plan shown disabled with the plan that unlocks them.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Scope;
use crate::plans::Plan;
use crate::problem::Problem;
use crate::projects::ProjectPatch;
use crate::web::pages;
use crate::web::{bytes, layout, page, redirect, Fail, Session, WebResult};

/// A feature: its name, what it does, and whether a plan has it.
struct Feature {
    name: &'static str,
    what: &'static str,
    has: fn(&Plan) -> bool,
    /// Where it is managed, when this server has no page for it yet.
    managed: Option<&'static str>,
}

const FEATURES: &[Feature] = &[
    Feature {
        name: "Snapshot diff",
        what: "Compare two snapshots, or one with the database now.",
        has: |p| p.snapshot_diff,
        managed: None,
    },
    Feature {
        name: "Scheduled snapshots",
        what: "Snapshots taken on a cron schedule (the next five runs are shown before saving).",
        has: |p| p.scheduled_snapshots,
        managed: Some("Schedules are set through the API once this server has it."),
    },
    Feature {
        name: "Sync source and masking",
        what: "Copy production into this database with masked columns, with snapshots around each sync.",
        has: |p| p.auto_snapshot_on_sync != "none",
        managed: Some("The sync source and the masking file are set through the API once this server has it."),
    },
    Feature {
        name: "Webhook secrets",
        what: "Jira or Linear tell the server when a sprint ends; a snapshot is taken then. Secrets are shown once.",
        has: |_| true,
        managed: Some("Webhook secrets are set through the API once this server has it."),
    },
    Feature {
        name: "Export as SQL",
        what: "A snapshot as one SQL script, downloaded or written to S3.",
        has: |p| p.export,
        managed: Some("Exports run through the API: POST /api/v1/snapshots/{id}/export."),
    },
];

fn bar(label: &str, value: f64, max: f64, text: String) -> Markup {
    html! {
        div.usage {
            span.usage-label { (label) }
            meter min="0" max=(max) value=(value) high=(max * 0.8) optimum="0" aria-label=(label) {}
            span.usage-text { (text) }
        }
    }
}

/// `12 %`, `0.05 %`.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 1.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

#[derive(Debug, Deserialize)]
pub struct Saved {
    saved: Option<String>,
}

/// `GET /projects/{id}/settings`.
pub async fn show(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<Saved>,
) -> WebResult {
    let project = pages::project(&app, &session, &id).await?;
    let axum::Json(usage) = crate::usage::usage(
        State(app.clone()),
        session.caller.clone(),
        Path(project.id.clone()),
    )
    .await?;
    let plans = {
        let client = app.pool.get().await.map_err(Problem::from)?;
        crate::plans::all(crate::snapshots::pg(&client)).await?
    };
    let plan = plans.iter().find(|p| p.name == project.plan);
    let s = &usage.snapshots;
    let body = html! {
        (pages::header(&project, "settings"))
        section.card {
            h2 { "Retention" }
            p {
                @match usage.retention_days {
                    Some(days) => { "Snapshots are kept " strong { (days) " days" } ", then deleted by the server" }
                    None => { "Snapshots are kept until deleted" }
                }
                @if usage.retention_expires_pinned { " (pinned ones too, on this plan)." } @else { "; pinned ones stay." }
                " Safety snapshots, taken before each restore, are kept 24 hours."
            }
            @if q.saved.is_some() {
                p.notice role="status" data-saved { "Saved." }
            }
            @if plan.is_some_and(|p| p.retention_days.is_none()) {
                @if session.caller.scope == Scope::Admin {
                    form method="post" action=(format!("/projects/{}/settings/retention", project.id)) {
                        (session.csrf_field())
                        label for="retention" { "Keep snapshots for (days; empty: until deleted)" }
                        div.row {
                            input id="retention" name="days" type="text" inputmode="numeric" pattern="[0-9]*"
                                value=[usage.retention_days];
                            button type="submit" { "Save" }
                        }
                    }
                } @else {
                    p.muted { (usage.plan) " chooses its retention: an admin token changes it." }
                }
            }
        }
        section.card {
            h2 { "Plan usage " span.badge.plan { (usage.plan) } }
            @match s.allowed {
                Some(limit) => (bar("Snapshots", s.used as f64, f64::from(limit).max(1.0),
                    format!("{} of {} (pinned ones count: {} pinned; {} safety not counted)", s.used, limit, s.pinned, s.safety))),
                None => p { "Snapshots: " (s.used) " (unlimited); " (s.pinned) " pinned, " (s.safety) " safety." },
            }
            @match usage.database_bytes {
                Some(db) if db > 0 => (bar("Stored", usage.stored_bytes as f64, db as f64,
                    format!("{} stored for every snapshot, against {} of database ({})", bytes(usage.stored_bytes), bytes(u64::try_from(db).unwrap_or(0)), percent(usage.stored_share.unwrap_or(0.0))))),
                _ => p { "Stored: " (bytes(usage.stored_bytes)) ". " span.muted data-database-down { "The database's size is unknown: it cannot be reached now." } },
            }
            p.muted { "Without deduplication the snapshots would take " (bytes(usage.logical_bytes)) "." }
        }
        section.card {
            h2 { "Features" }
            @for f in FEATURES {
                @let on = plan.is_some_and(|p| (f.has)(p));
                @let unlock = plans.iter().find(|p| (f.has)(p)).map_or("a higher plan", |p| p.name.as_str());
                fieldset.feature disabled[!on || f.managed.is_some()] data-feature=(f.name) data-enabled=(on) {
                    legend { (f.name) " "
                        @if on { span.badge.on { "in your plan" } }
                        @else { span.badge.off { "needs " (unlock) } }
                    }
                    p { (f.what) }
                    @if !on {
                        p.muted { "Not in the " (usage.plan) " plan: the " strong { (unlock) } " plan unlocks it." }
                    } @else if let Some(m) = f.managed {
                        p.muted { (m) }
                    }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout("Settings", Some(&session), body),
    ))
}

#[derive(Debug, Deserialize)]
pub struct RetentionForm {
    csrf: Option<String>,
    days: Option<String>,
}

/// `POST /projects/{id}/settings/retention` (admin, plans with a custom retention): as
/// `PATCH /api/v1/projects/{id}` with `retention_days`.
pub async fn retention(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RetentionForm>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), false)?;
    let days = match form.days.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => match d.parse::<i32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(Fail::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{d:?} is not a retention: give a whole number of days, 1 or more (empty: keep until deleted). Nothing was changed."),
                ))
            }
        },
    };
    let _saved = crate::projects::update(
        State(app.clone()),
        session.caller.clone(),
        Path(id.clone()),
        crate::body::Body(ProjectPatch {
            name: None,
            database_url: None,
            plan: None,
            retention_days: Some(days),
            keep_last: None,
            sync_source_url: None,
            masking_rules: None,
        }),
    )
    .await?;
    Ok(redirect(&format!("/projects/{id}/settings?saved=1")))
}
