//! Schedules: a project's snapshots taken on a cron schedule read in an IANA time zone
//! (TEAM and up). When a run is due is [`phony_core::schedule`]'s to say (DST handled, a
//! missed run made up once); firing runs is [`crate::scheduler`]'s.

use std::str::FromStr as _;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use phony_core::schedule::{render_name, Schedule, ScheduleError};
use phony_core::SnapshotName;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Body;
use crate::plans::{self, Feature};
use crate::problem::{ApiResult, Problem};
use crate::projects;
use crate::secrets::new_id;

/// The name template when none is given.
pub const DEFAULT_NAME: &str = "scheduled-{datetime}";

/// How many upcoming runs an answer lists.
const UPCOMING: usize = 5;

/// The most schedules a project may have.
const MAX_PER_PROJECT: i64 = 100;

/// A cron expression and zone, or 400 naming what is wrong.
pub fn parse(cron: &str, zone: &str) -> ApiResult<Schedule> {
    Schedule::parse(cron, zone).map_err(|e| {
        let bad = |code| Problem::new(StatusCode::BAD_REQUEST, code, e.to_string());
        match &e {
            ScheduleError::Zone(_) => bad("invalid_time_zone").with("field", "timezone"),
            ScheduleError::Field { field, .. } => bad("invalid_cron").with("field", *field),
            ScheduleError::Never(_) => bad("invalid_cron").with("field", "never fires"),
            _ => bad("invalid_cron"),
        }
    })
}

/// RFC 3339, as every time in the API.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize)]
pub struct ScheduleView {
    pub id: String,
    pub project_id: String,
    pub cron: String,
    pub timezone: String,
    /// The name template.
    pub name: String,
    pub pin: bool,
    /// The next five runs (RFC 3339, UTC).
    pub next_runs: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_run: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl ScheduleView {
    fn of(row: &Row, now: OffsetDateTime) -> Self {
        let cron: String = row.get("cron");
        let timezone: String = row.get("timezone");
        let next_runs = Schedule::parse(&cron, &timezone)
            .map(|s| s.upcoming(now, UPCOMING))
            .unwrap_or_default()
            .into_iter()
            .map(rfc3339)
            .collect();
        ScheduleView {
            id: row.get("id"),
            project_id: row.get("project_id"),
            cron,
            timezone,
            name: row.get("name"),
            pin: row.get("pin"),
            next_runs,
            last_run: row.get("last_run"),
            created_at: row.get("created_at"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// Five fields (`0 0 * * FRI`), or six with seconds first.
    pub cron: String,
    /// An IANA zone (default UTC).
    #[serde(default = "utc")]
    pub timezone: String,
    /// A name template: `{date}`, `{time}`, `{datetime}`, `{year}`, `{month}`, `{day}`,
    /// `{week}`, `{weekday}` (default `scheduled-{datetime}`).
    pub name: Option<String>,
    #[serde(default)]
    pub pin: bool,
}

fn utc() -> String {
    "UTC".into()
}

/// `POST /api/v1/projects/{id}/schedules` (TEAM and up): 201 with the schedule and its
/// next five runs.
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Body(new): Body<NewSchedule>,
) -> ApiResult<Response> {
    let project = projects::load(&app, &caller, &project_id).await?;
    let client = app.pool.get().await?;
    let plan = plans::find(crate::snapshots::pg(&client), &project.plan).await?;
    plans::require(
        crate::snapshots::pg(&client),
        &plan,
        Feature::ScheduledSnapshots,
    )
    .await?;
    let schedule = parse(&new.cron, &new.timezone)?;
    let now = OffsetDateTime::now_utc();
    let template = new.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_owned());
    let example = render_name(&template, &schedule, now);
    SnapshotName::from_str(&example).map_err(|e| {
        Problem::invalid(
            "invalid_name",
            format!("the name template {template:?} makes {example:?}: {e}"),
        )
    })?;
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM schedules WHERE project_id = $1",
            &[&project.id],
        )
        .await?
        .get(0);
    if count >= MAX_PER_PROJECT {
        return Err(Problem::conflict(
            "plan_limit",
            format!("a project has at most {MAX_PER_PROJECT} schedules"),
        )
        .with("limit", MAX_PER_PROJECT));
    }
    let next = schedule.next_after(now);
    let row = client
        .query_one(
            "INSERT INTO schedules (id, project_id, cron, timezone, name, pin, last_run, next_run)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            &[
                &new_id("sch"),
                &project.id,
                &schedule.expression(),
                &schedule.zone(),
                &template,
                &new.pin,
                &now,
                &next,
            ],
        )
        .await?;
    let view = ScheduleView::of(&row, now);
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/v1/projects/{}/schedules", project.id),
        )],
        Json(view),
    )
        .into_response())
}

/// `GET /api/v1/projects/{id}/schedules`: oldest first.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let project = projects::load(&app, &caller, &project_id).await?;
    let client = app.pool.get().await?;
    let rows = client
        .query(
            "SELECT * FROM schedules WHERE project_id = $1 ORDER BY created_at, id",
            &[&project.id],
        )
        .await?;
    let now = OffsetDateTime::now_utc();
    let items: Vec<ScheduleView> = rows.iter().map(|r| ScheduleView::of(r, now)).collect();
    Ok(Json(json!({ "items": items })))
}

/// `DELETE /api/v1/schedules/{id}`: 204; runs already queued still run.
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let client = app.pool.get().await?;
    let row = client
        .query_opt("SELECT project_id FROM schedules WHERE id = $1", &[&id])
        .await?;
    match row.map(|r| r.get::<_, String>(0)) {
        Some(project) if caller.sees(&project) => {
            client
                .execute("DELETE FROM schedules WHERE id = $1", &[&id])
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(Problem::not_found("schedule")),
    }
}
