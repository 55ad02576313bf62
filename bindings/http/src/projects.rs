//! Projects: a database to protect, under a plan. Its URL's password is encrypted at rest
//! and never returned; the URL is shown without it.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use phony_postgres::{ConnectionTarget, Environment};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::app::AppState;
use crate::auth::{Caller, Scope};
use crate::body::Body;
use crate::plans;
use crate::problem::{ApiResult, Problem};
use crate::secrets::new_id;

/// A project as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub plan: String,
    /// The database's URL without its password.
    pub database_url: String,
    /// The retention chosen, within the plan's (null: the plan's; BUSINESS: kept until
    /// deleted).
    pub retention_days: Option<i32>,
    /// Keep only the last N snapshots (pinned ones are never removed for it).
    pub keep_last: Option<i32>,
    /// The database syncs copy from, without its password.
    pub sync_source: Option<String>,
    /// The masking rules applied to a sync's rows.
    pub masking_rules: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip)]
    secret: Vec<u8>,
    #[serde(skip)]
    sync_secret: Option<Vec<u8>>,
}

impl Project {
    fn of(row: &Row) -> Self {
        Project {
            id: row.get("id"),
            name: row.get("name"),
            plan: row.get("plan"),
            database_url: row.get("database_display"),
            retention_days: row.get("retention_days"),
            keep_last: row.get("keep_last"),
            sync_source: row.get("sync_source_display"),
            masking_rules: row.get("masking_rules"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            secret: row.get("database_secret"),
            sync_secret: row.get("sync_source_secret"),
        }
    }

    /// The database, with its password (decrypted here, never shown).
    pub fn target(&self, app: &AppState) -> ApiResult<ConnectionTarget> {
        let url = app
            .key
            .open(&self.secret)
            .map_err(|e| Problem::internal("reading the project's database URL", &e))?;
        parse_url(&url)
    }

    /// The database syncs copy from, with its password, if one is set.
    pub fn sync_source_target(&self, app: &AppState) -> ApiResult<Option<ConnectionTarget>> {
        let Some(sealed) = &self.sync_secret else {
            return Ok(None);
        };
        let url = app
            .key
            .open(sealed)
            .map_err(|e| Problem::internal("reading the project's sync source URL", &e))?;
        parse_url(&url).map(Some)
    }
}

/// A database URL as a tenant gives it: the server's own PG* variables play no part.
pub fn parse_url(url: &str) -> ApiResult<ConnectionTarget> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Problem::invalid(
            "invalid_database_url",
            "the database URL must start with postgres:// or postgresql://",
        ));
    }
    ConnectionTarget::parse_with(Some(url), Environment::Ignore).map_err(|e| {
        Problem::invalid(
            "invalid_database_url",
            format!("the database URL is not valid: {e}"),
        )
    })
}

/// The project `id`, if the caller may see it (404 otherwise, as if absent).
pub async fn load(app: &AppState, caller: &Caller, id: &str) -> ApiResult<Project> {
    if !caller.sees(id) {
        return Err(Problem::not_found("project"));
    }
    let client = app.pool.get().await?;
    let row = client
        .query_opt("SELECT * FROM projects WHERE id = $1", &[&id])
        .await?;
    row.as_ref()
        .map(Project::of)
        .ok_or_else(|| Problem::not_found("project"))
}

/// Every project (the sweep's view).
pub async fn all(app: &AppState) -> ApiResult<Vec<Project>> {
    let client = app.pool.get().await?;
    let rows = client
        .query("SELECT * FROM projects ORDER BY created_at, id", &[])
        .await?;
    Ok(rows.iter().map(Project::of).collect())
}

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '));
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid(
            "invalid_name",
            "a project name has 1-64 letters, digits, spaces, '.', '_' or '-'",
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    pub database_url: String,
    #[serde(default = "free")]
    pub plan: String,
    #[serde(default)]
    pub retention_days: Option<i32>,
}

fn free() -> String {
    "FREE".into()
}

/// A retention of the project's own must be within the plan's cap (BUSINESS: any).
fn check_retention(plan: &plans::Plan, days: Option<i32>) -> ApiResult<()> {
    match (days, plan.retention_days) {
        (Some(d), _) if d < 1 => Err(Problem::invalid(
            "invalid_body",
            "retention_days must be at least 1",
        )),
        (Some(d), Some(cap)) if d > cap => Err(Problem::invalid(
            "invalid_body",
            format!(
                "retention_days is at most {cap} on the {} plan (it keeps snapshots {cap} days)",
                plan.name
            ),
        )
        .with("plan", plan.name.clone())
        .with("limit", cap)),
        _ => Ok(()),
    }
}

/// A `keep_last` must be at least 1 and within the plan's count.
fn check_keep_last(plan: &plans::Plan, keep: Option<i32>) -> ApiResult<()> {
    match (keep, plan.snapshots_kept) {
        (Some(k), _) if k < 1 => Err(Problem::invalid(
            "invalid_body",
            "keep_last must be at least 1",
        )),
        (Some(k), Some(cap)) if k > cap => Err(Problem::invalid(
            "invalid_body",
            format!(
                "keep_last is at most {cap} on the {} plan (it keeps {cap} snapshots)",
                plan.name
            ),
        )
        .with("plan", plan.name.clone())
        .with("limit", cap)),
        _ => Ok(()),
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().map(|d| d.code().code()) == Some("23505")
}

/// `POST /api/v1/projects` (admin).
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Body(new): Body<NewProject>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    check_name(&new.name)?;
    let target = parse_url(&new.database_url)?;
    let client = app.pool.get().await?;
    let plan = plans::find(crate::snapshots::pg(&client), &new.plan).await?;
    check_retention(&plan, new.retention_days)?;
    let secret = app
        .key
        .seal(&new.database_url)
        .map_err(|e| Problem::internal("encrypting the database URL", &e))?;
    let id = new_id("prj");
    let row = client
        .query_one(
            "INSERT INTO projects (id, name, plan, database_display, database_secret, retention_days)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            &[&id, &new.name, &plan.name, &target.to_string(), &secret, &new.retention_days],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Problem::conflict("name_taken", format!("a project named {:?} exists", new.name))
            } else {
                e.into()
            }
        })?;
    let project = Project::of(&row);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/projects/{}", project.id))],
        Json(project),
    )
        .into_response())
}

#[derive(Debug, Serialize)]
pub struct ProjectList {
    pub items: Vec<Project>,
}

/// `GET /api/v1/projects`: every project (admin), or the token's own.
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<ProjectList>> {
    let items = match &caller.scope {
        Scope::Admin => all(&app).await?,
        Scope::Project(id) => vec![load(&app, &caller, id).await?],
    };
    Ok(Json(ProjectList { items }))
}

/// `GET /api/v1/projects/{id}`.
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Project>> {
    Ok(Json(load(&app, &caller, &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub database_url: Option<String>,
    pub plan: Option<String>,
    /// `null` clears it (the plan's; BUSINESS: kept until deleted).
    #[serde(default, with = "double_option")]
    pub retention_days: Option<Option<i32>>,
    /// Keep only the last N snapshots; `null` clears it.
    #[serde(default, with = "double_option")]
    pub keep_last: Option<Option<i32>>,
    /// The database syncs copy from; `null` removes it.
    #[serde(default, with = "double_option")]
    pub sync_source_url: Option<Option<String>>,
    /// Masking rules for syncs (`schema.table.column rule` a line); `null` removes them.
    #[serde(default, with = "double_option")]
    pub masking_rules: Option<Option<String>>,
}

/// `PATCH /api/v1/projects/{id}`: rename, a new database URL (e.g. a rotated password);
/// the plan and the retention need an admin token.
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(patch): Body<ProjectPatch>,
) -> ApiResult<Json<Project>> {
    let project = load(&app, &caller, &id).await?;
    if patch.plan.is_some() || patch.retention_days.is_some() || patch.keep_last.is_some() {
        caller.require_admin()?;
    }
    let client = app.pool.get().await?;
    let plan = match &patch.plan {
        Some(p) => plans::find(crate::snapshots::pg(&client), p).await?,
        None => plans::find(crate::snapshots::pg(&client), &project.plan).await?,
    };
    // A value of the project's own over a new plan's cap is dropped (the plan's applies).
    let retention = match patch.retention_days {
        Some(days) => days,
        None => project
            .retention_days
            .filter(|d| plan.retention_days.is_none_or(|cap| *d <= cap)),
    };
    check_retention(&plan, patch.retention_days.flatten())?;
    let keep_last = match patch.keep_last {
        Some(keep) => keep,
        None => project
            .keep_last
            .filter(|k| plan.snapshots_kept.is_none_or(|cap| *k <= cap)),
    };
    check_keep_last(&plan, patch.keep_last.flatten())?;
    let masking_rules = match &patch.masking_rules {
        Some(Some(text)) => {
            crate::syncs::check_rules(text)?;
            Some(text.clone())
        }
        Some(None) => None,
        None => project.masking_rules.clone(),
    };
    let (sync_display, sync_secret) = match &patch.sync_source_url {
        Some(Some(url)) => {
            let target = parse_url(url)?;
            let sealed = app
                .key
                .seal(url)
                .map_err(|e| Problem::internal("encrypting the sync source URL", &e))?;
            (Some(target.to_string()), Some(sealed))
        }
        Some(None) => (None, None),
        None => (project.sync_source.clone(), project.sync_secret.clone()),
    };
    let name = match &patch.name {
        Some(n) => {
            check_name(n)?;
            n.clone()
        }
        None => project.name.clone(),
    };
    let (display, secret) = match &patch.database_url {
        Some(url) => {
            let target = parse_url(url)?;
            let sealed = app
                .key
                .seal(url)
                .map_err(|e| Problem::internal("encrypting the database URL", &e))?;
            (target.to_string(), sealed)
        }
        None => (project.database_url.clone(), project.secret.clone()),
    };
    let row = client
        .query_opt(
            "UPDATE projects SET name = $2, plan = $3, database_display = $4, database_secret = $5,
                retention_days = $6, keep_last = $7, masking_rules = $8,
                sync_source_display = $9, sync_source_secret = $10, updated_at = now()
             WHERE id = $1 RETURNING *",
            &[
                &id,
                &name,
                &plan.name,
                &display,
                &secret,
                &retention,
                &keep_last,
                &masking_rules,
                &sync_display,
                &sync_secret,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Problem::conflict("name_taken", format!("a project named {name:?} exists"))
            } else {
                e.into()
            }
        })?;
    row.as_ref()
        .map(|r| Json(Project::of(r)))
        .ok_or_else(|| Problem::not_found("project"))
}

/// `DELETE /api/v1/projects/{id}` (admin): its tokens, jobs and metadata go; its store is
/// left where it is (an ordinary phony store). Refused while one of its jobs runs.
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    load(&app, &caller, &id).await?;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    tx.query_opt("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", &[&id])
        .await?;
    let running: i64 = tx
        .query_one(
            "SELECT count(*) FROM jobs WHERE project_id = $1 AND status = 'running'",
            &[&id],
        )
        .await?
        .get(0);
    if running > 0 {
        return Err(Problem::conflict(
            "project_busy",
            "a job of this project is running: cancel it or wait for it, then delete the project",
        ));
    }
    tx.execute("DELETE FROM projects WHERE id = $1", &[&id])
        .await?;
    tx.commit().await?;
    app.forget_engine(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// `Option<Option<T>>` from a field that may be absent, null or set.
pub mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}
