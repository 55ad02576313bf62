//! The retention section: keep the last N snapshots and expire them after X days, within
//! the plan's caps (an admin's to change, as in the API).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{Ctx, Shown};
use crate::app::AppState;
use crate::projects::ProjectPatch;
use crate::usage::Usage;
use crate::web::{redirect, Fail, Session, WebResult};

pub fn section(c: &Ctx, usage: &Usage, shown: &Shown) -> Markup {
    let plan = c.plan;
    html! {
        section.card id="retention" {
            h2 { "Retention" }
            (shown.message("retention"))
            p {
                @match usage.retention_days {
                    Some(days) => { "Snapshots are kept " strong { (days) " days" } ", then deleted by the server" }
                    None => { "Snapshots are kept until deleted" }
                }
                @if usage.retention_expires_pinned { " (pinned ones too, on this plan)." } @else { "; pinned ones stay." }
                @if let Some(keep) = c.project.keep_last {
                    " Only the last " strong { (keep) } " are kept (pinned ones are never removed for it)."
                }
                " Safety snapshots, taken before each restore, are kept 24 hours."
            }
            @if c.admin() {
                form method="post" action=(c.action("/retention")) data-retention-form {
                    (c.session.csrf_field())
                    div.row {
                        label for="retention" {
                            "Expire after (days; empty: "
                            @if let Some(cap) = plan.retention_days { "the plan's " (cap) } @else { "until deleted" }
                            ")"
                        }
                        input id="retention" name="days" type="text" inputmode="numeric" pattern="[0-9]*"
                            value=[c.project.retention_days];
                    }
                    div.row {
                        label for="keep-last" {
                            "Keep the last (snapshots; empty: "
                            @if let Some(cap) = plan.snapshots_kept { "the plan's " (cap) } @else { "all" }
                            ")"
                        }
                        input id="keep-last" name="keep" type="text" inputmode="numeric" pattern="[0-9]*"
                            value=[c.project.keep_last];
                    }
                    p.muted {
                        "The " (plan.name) " plan allows "
                        @match plan.retention_days { Some(cap) => { "at most " (cap) " days" } None => "any number of days" }
                        " and "
                        @match plan.snapshots_kept { Some(cap) => { "at most " (cap) " snapshots" } None => "any number of snapshots" }
                        "."
                    }
                    button type="submit" { "Save" }
                }
            } @else {
                p.muted { "An admin token changes the retention (the " (plan.name) " plan's caps apply)." }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RetentionForm {
    csrf: Option<String>,
    days: Option<String>,
    keep: Option<String>,
}

/// A number field: absent, unchanged; empty, cleared; else a whole number, 1 or more.
fn number(given: Option<&str>, what: &str) -> Result<Option<Option<i32>>, Fail> {
    match given.map(str::trim) {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(d) => match d.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(Some(Some(n))),
            _ => Err(Fail::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{d:?} is not {what}: give a whole number, 1 or more (empty: the plan's). Nothing was changed."),
            )),
        },
    }
}

/// `POST /projects/{id}/settings/retention` (admin): as `PATCH /api/v1/projects/{id}` with
/// `retention_days` and `keep_last`.
pub async fn retention(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RetentionForm>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), false)?;
    let parsed = number(form.days.as_deref(), "a number of days").and_then(|days| {
        number(form.keep.as_deref(), "a number of snapshots").map(|keep| (days, keep))
    });
    let saved = match parsed {
        Ok((days, keep)) => crate::projects::update(
            State(app.clone()),
            session.caller.clone(),
            Path(id.clone()),
            crate::body::Body(ProjectPatch {
                name: None,
                database_url: None,
                plan: None,
                retention_days: days,
                keep_last: keep,
                sync_source_url: None,
                masking_rules: None,
            }),
        )
        .await
        .map(|_| ())
        .map_err(Fail::from),
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => Ok(redirect(&format!(
            "/projects/{id}/settings?saved=retention#retention"
        ))),
        Err(fail) => super::refused(&app, &session, &id, "retention", fail).await,
    }
}
