//! The schedules section (TEAM and up): the project's schedules with their next runs, a
//! delete button each, and a form to add one that shows the next five run times before
//! saving: the script asks [`preview`] as the user types, a form without it sends
//! "Preview" and gets the page back with them, nothing saved.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Form, Json};
use maud::{html, Markup};
use phony_core::schedule::{render_name, Schedule};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Ctx, Shown};
use crate::app::AppState;
use crate::schedules::NewSchedule;
use crate::web::pages;
use crate::web::{redirect, wants_json, when, Fail, Session, WebResult};

/// The add form as typed, and the run times previewed for it.
#[derive(Debug, Default)]
pub struct Draft {
    pub cron: String,
    pub timezone: String,
    pub name: String,
    pub pin: bool,
    pub runs: Vec<String>,
}

/// `Fri 2026-12-11 00:00 UTC`.
fn utc_time(t: OffsetDateTime) -> String {
    let day = t.weekday().to_string();
    format!("{} {}", &day[..3], when(t))
}

/// A run as the schedule's zone reads it, then in UTC when that differs:
/// `Fri 2026-12-11 00:00 Europe/Paris (Thu 2026-12-10 23:00 UTC)`.
fn run_time(schedule: &Schedule, t: OffsetDateTime) -> String {
    if schedule.zone() == "UTC" {
        return utc_time(t);
    }
    // The name template's fields are the zone's wall clock.
    let local = render_name("{weekday} {date} {time}", schedule, t);
    let mut parts = local.splitn(3, ' ');
    let (day, date, hm) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let day: String = day
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c })
        .collect();
    let hm = format!(
        "{}:{}",
        hm.get(..2).unwrap_or(""),
        hm.get(2..4).unwrap_or("")
    );
    format!("{day} {date} {hm} {} ({})", schedule.zone(), utc_time(t))
}

/// The next five runs of `cron` read in `zone` (empty: UTC), or the API's one line on
/// what is wrong (naming the field).
fn next_five(cron: &str, zone: &str) -> Result<Vec<String>, Fail> {
    let zone = if zone.trim().is_empty() {
        "UTC"
    } else {
        zone.trim()
    };
    let schedule = crate::schedules::parse(cron.trim(), zone)?;
    Ok(schedule
        .upcoming(OffsetDateTime::now_utc(), 5)
        .into_iter()
        .map(|t| run_time(&schedule, t))
        .collect())
}

fn runs_list(runs: &[String]) -> Markup {
    html! {
        @if !runs.is_empty() {
            p { "The next " (runs.len()) " runs:" }
            ol.runs { @for r in runs { li data-run { (r) } } }
        }
    }
}

pub async fn section(app: &AppState, c: &Ctx<'_>, shown: &Shown) -> Result<Markup, Fail> {
    let on = c.plan.scheduled_snapshots;
    let needs = c.unlock(|p| p.scheduled_snapshots).to_owned();
    let Json(listed) = crate::schedules::list(
        State(app.clone()),
        c.session.caller.clone(),
        Path(c.project.id.clone()),
    )
    .await?;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    let d = &shown.schedule;
    let next = |v: &Value| -> Vec<String> {
        let schedule = Schedule::parse(
            v["cron"].as_str().unwrap_or_default(),
            v["timezone"].as_str().unwrap_or("UTC"),
        );
        v["next_runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| OffsetDateTime::parse(t.as_str()?, &Rfc3339).ok())
            .map(|t| match &schedule {
                Ok(s) => run_time(s, t),
                Err(_) => utc_time(t),
            })
            .collect()
    };
    Ok(html! {
        section.card id="schedules" data-enabled=(on) {
            (super::heading("Schedules", (!on).then_some(needs.as_str())))
            (shown.message("schedules"))
            @if !on {
                (super::plan_note(c, "Scheduled snapshots need the", &needs))
            }
            @if items.is_empty() {
                p.muted { "No schedules." }
            } @else {
                div.table-wrap {
                    table.schedules {
                        thead { tr { th { "Cron" } th { "Zone" } th { "Name" } th { "Next runs" } th { span.sr-only { "Delete" } } } }
                        tbody {
                            @for s in &items {
                                @let id = s["id"].as_str().unwrap_or_default();
                                @let runs = next(s);
                                tr data-schedule=(id) {
                                    td { code { (s["cron"].as_str().unwrap_or_default()) } }
                                    td { (s["timezone"].as_str().unwrap_or_default()) }
                                    td { (s["name"].as_str().unwrap_or_default()) @if s["pin"] == true { " " span.badge { "pinned" } } }
                                    td {
                                        @if let Some(first) = runs.first() {
                                            details { summary { (first) } ol.runs { @for r in &runs { li { (r) } } } }
                                        } @else { "never again" }
                                    }
                                    td {
                                        form.inline method="post" action=(c.action(&format!("/schedules/{id}/delete"))) {
                                            (c.session.csrf_field())
                                            button.link type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.schedule method="post" action=(c.action("/schedules")) data-schedule-form
                data-preview=(c.action("/schedules/preview")) {
                (c.session.csrf_field())
                h3 { "Add a schedule" }
                fieldset.plain disabled[!on] {
                    div.row {
                        label for="cron" { "Cron" }
                        input id="cron" name="cron" type="text" required placeholder="0 0 * * FRI"
                            autocomplete="off" spellcheck="false" value=(d.cron);
                    }
                    div.row {
                        label for="timezone" { "Time zone" }
                        input id="timezone" name="timezone" type="text" placeholder="UTC"
                            autocomplete="off" spellcheck="false"
                            value=(if d.timezone.is_empty() { "UTC" } else { d.timezone.as_str() });
                    }
                    div.row {
                        label for="schedule-name" { "Name" }
                        input id="schedule-name" name="name" type="text" placeholder=(crate::schedules::DEFAULT_NAME)
                            autocomplete="off" value=(d.name);
                    }
                    div.row {
                        label { input type="checkbox" name="pin" value="1" checked[d.pin]; " Pin its snapshots" }
                    }
                    p.muted { "Five fields (minute hour day-of-month month day-of-week), or six with seconds first. Names may use {date}, {time}, {datetime}, {week} …" }
                    div.preview aria-live="polite" data-schedule-preview { (runs_list(&d.runs)) }
                    div.row {
                        button type="submit" name="action" value="preview" { "Preview" }
                        button.primary type="submit" name="action" value="save" { "Save schedule" }
                    }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    cron: Option<String>,
    timezone: Option<String>,
}

/// `GET /projects/{id}/settings/schedules/preview?cron=&timezone=`: the next five runs for
/// the script (`{"runs": […]}`, or `{"error": …}` with 400); nothing is saved.
pub async fn preview(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> WebResult {
    pages::project(&app, &session, &id)
        .await
        .map_err(|p| Fail::from(p).json(true))?;
    let runs = next_five(
        q.cron.as_deref().unwrap_or_default(),
        q.timezone.as_deref().unwrap_or_default(),
    )
    .map_err(|f| f.json(true))?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ScheduleForm {
    csrf: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    name: Option<String>,
    pin: Option<String>,
    action: Option<String>,
}

/// `POST /projects/{id}/settings/schedules`: "Preview" shows the next five runs (nothing
/// saved); "Save schedule" is `POST /api/v1/projects/{id}/schedules`.
pub async fn add_schedule(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ScheduleForm>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), false)?;
    let mut draft = Draft {
        cron: form.cron.unwrap_or_default().trim().to_owned(),
        timezone: form.timezone.unwrap_or_default().trim().to_owned(),
        name: form.name.unwrap_or_default().trim().to_owned(),
        pin: form.pin.is_some(),
        runs: Vec::new(),
    };
    let outcome = if form.action.as_deref() == Some("preview") {
        next_five(&draft.cron, &draft.timezone).map(Some)
    } else {
        crate::schedules::create(
            State(app.clone()),
            session.caller.clone(),
            Path(id.clone()),
            crate::body::Body(NewSchedule {
                cron: draft.cron.clone(),
                timezone: if draft.timezone.is_empty() {
                    "UTC".to_owned()
                } else {
                    draft.timezone.clone()
                },
                name: (!draft.name.is_empty()).then(|| draft.name.clone()),
                pin: draft.pin,
            }),
        )
        .await
        .map(|_| None)
        .map_err(Fail::from)
    };
    match outcome {
        Ok(None) => Ok(redirect(&format!(
            "/projects/{id}/settings?saved=schedules#schedules"
        ))),
        Ok(Some(runs)) => {
            draft.runs = runs;
            let shown = Shown {
                section: "schedules",
                schedule: draft,
                ..Shown::default()
            };
            super::render(&app, &session, &id, shown, StatusCode::OK).await
        }
        Err(fail) => {
            let status = fail.status;
            let mut shown = Shown::failed("schedules", &fail);
            shown.schedule = draft;
            super::render(&app, &session, &id, shown, status).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

/// `POST /projects/{id}/settings/schedules/{schedule}/delete`: `DELETE /api/v1/schedules/{id}`.
pub async fn delete_schedule(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path((id, schedule)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), wants_json(&headers))?;
    let project = pages::project(&app, &session, &id).await?;
    // Only a schedule of this page's project (an admin sees every project's).
    let Json(listed) = crate::schedules::list(
        State(app.clone()),
        session.caller.clone(),
        Path(project.id.clone()),
    )
    .await?;
    let ours = listed["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|s| s["id"] == schedule.as_str()));
    let deleted = if ours {
        crate::schedules::delete(State(app.clone()), session.caller.clone(), Path(schedule))
            .await
            .map(|_| ())
    } else {
        Err(crate::problem::Problem::not_found("schedule"))
    };
    if let Err(p) = deleted {
        return super::refused(&app, &session, &id, "schedules", Fail::from(p)).await;
    }
    Ok(redirect(&format!(
        "/projects/{id}/settings?saved=schedule-deleted#schedules"
    )))
}
