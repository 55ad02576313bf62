//! `/projects/{id}/settings`: retention, schedules, the sync source with its masking rules,
//! the webhook secrets, the plan's usage with bars, and the features outside the plan
//! shown disabled with the plan that unlocks them. One module per section; each form
//! carries the session's CSRF token and calls the API's own handler, so plan gates and
//! errors are the API's, shown as one line beside the form with what was typed kept.

mod retention;
mod schedules;
mod sync;
mod webhooks;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Scope;
use crate::plans::Plan;
use crate::problem::Problem;
use crate::projects::Project;
use crate::web::pages;
use crate::web::{bytes, layout, page, Fail, Session, WebResult};

pub use retention::retention;
pub use schedules::{add_schedule, delete_schedule, preview};
pub use sync::{sync_now, sync_source};
pub use webhooks::webhook;

/// A feature the settings do not manage: its name, what it does, whether a plan has it.
struct Feature {
    name: &'static str,
    what: &'static str,
    has: fn(&Plan) -> bool,
    /// Where it is used.
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
        name: "Export as SQL",
        what: "A snapshot as one SQL script, downloaded or written to S3.",
        has: |p| p.export,
        managed: Some("Exports run through the API: POST /api/v1/snapshots/{id}/export."),
    },
];

/// What the sections read: the project, its plan and every plan (to name the one that
/// unlocks a feature), and who is signed in.
pub struct Ctx<'a> {
    pub session: &'a Session,
    pub project: &'a Project,
    pub plan: &'a Plan,
    pub plans: &'a [Plan],
}

impl Ctx<'_> {
    /// The lowest plan for which `has` holds.
    pub fn unlock(&self, has: impl Fn(&Plan) -> bool) -> &str {
        self.plans
            .iter()
            .find(|p| has(p))
            .map_or("a higher plan", |p| p.name.as_str())
    }

    pub fn admin(&self) -> bool {
        self.session.caller.scope == Scope::Admin
    }

    /// `/projects/{id}/settings` followed by `rest`.
    pub fn action(&self, rest: &str) -> String {
        format!("/projects/{}/settings{rest}", self.project.id)
    }
}

/// What a form leaves on the page it answers with: the section it belongs to, its error
/// or confirmation, and what was typed (a password never: the sync source is not kept).
#[derive(Debug, Default)]
pub struct Shown {
    pub section: &'static str,
    pub error: Option<String>,
    pub saved: Option<String>,
    pub schedule: schedules::Draft,
    /// The masking rules as typed.
    pub rules: Option<String>,
    /// A webhook secret just set, shown this once.
    pub secret: Option<webhooks::Revealed>,
}

impl Shown {
    /// A refusal of the form of `section`.
    pub fn failed(section: &'static str, fail: &Fail) -> Self {
        Shown {
            section,
            error: Some(fail.message.clone()),
            ..Shown::default()
        }
    }

    /// The line under the heading of `section`: the error, or what was saved.
    pub fn message(&self, section: &str) -> Markup {
        html! {
            @if self.section == section {
                @if let Some(e) = &self.error {
                    p.notice.down role="alert" data-error=(section) { (e) }
                } @else if let Some(s) = &self.saved {
                    p.notice role="status" data-saved=(section) { (s) }
                }
            }
        }
    }
}

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

/// `GET /projects/{id}/settings` (`?saved=SECTION` after a form).
pub async fn show(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<Saved>,
) -> WebResult {
    let mut shown = Shown::default();
    if let Some(section) = q.saved.as_deref() {
        shown.section = match section {
            "schedules" => "schedules",
            "sync" => "sync",
            "schedule-deleted" => "schedules",
            _ => "retention",
        };
        shown.saved = Some(if section == "schedule-deleted" {
            "The schedule was deleted.".to_owned()
        } else {
            "Saved.".to_owned()
        });
    }
    render(&app, &session, &id, shown, StatusCode::OK).await
}

/// The settings page again, `section` saying why `fail` refused what was sent, with its
/// status.
pub async fn refused(
    app: &AppState,
    session: &Session,
    id: &str,
    section: &'static str,
    fail: Fail,
) -> WebResult {
    let status = fail.status;
    render(app, session, id, Shown::failed(section, &fail), status).await
}

/// The settings page of project `id`, with what a form left on it.
pub async fn render(
    app: &AppState,
    session: &Session,
    id: &str,
    shown: Shown,
    status: StatusCode,
) -> WebResult {
    let project = pages::project(app, session, id).await?;
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
    let plan = plans
        .iter()
        .find(|p| p.name == project.plan)
        .ok_or_else(|| {
            Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the project's plan is unknown",
            )
        })?;
    let c = Ctx {
        session,
        project: &project,
        plan,
        plans: &plans,
    };
    let schedules = schedules::section(app, &c, &shown).await?;
    let sync = sync::section(app, &c, &shown).await?;
    let webhooks = webhooks::section(app, &c, &shown).await?;
    let s = &usage.snapshots;
    let body = html! {
        (pages::header(&project, "settings"))
        (retention::section(&c, &usage, &shown))
        (schedules)
        (sync)
        (webhooks)
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
                @let on = (f.has)(plan);
                @let unlock = c.unlock(f.has);
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
    Ok(page(status, layout("Settings", Some(session), body)))
}

/// A section's heading with the plan's verdict: nothing when the plan has it, else a
/// badge naming the plan that unlocks it.
pub fn heading(title: &str, needs: Option<&str>) -> Markup {
    html! {
        h2 { (title) @if let Some(plan) = needs { " " span.badge.off { "needs " (plan) } } }
    }
}

/// The line saying a section is outside the plan.
pub fn plan_note(c: &Ctx, what: &str, needs: &str) -> Markup {
    html! {
        p.muted data-plan-required=(needs) {
            (what) " " strong { (needs) } " plan; the project is on " (c.project.plan) "."
        }
    }
}
