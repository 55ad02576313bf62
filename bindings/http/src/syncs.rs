//! Syncs: a project's database refreshed from its sync source (production, say), masked on
//! the way, with snapshots either side as its plan takes them. A sync is a job (kind
//! `sync`); the work is the engine's ([`phony_engine::Engine::sync`]).
//!
//! The plan decides the snapshots around a sync (`plans.auto_snapshot_on_sync`): FREE
//! none, STARTER after, TEAM and BUSINESS before and after. Each can be switched off per
//! sync (`{"before": false}`); asking for one the plan does not take answers 403
//! `plan_required` naming the lowest plan that takes it.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use phony_core::mask::MaskRules;
use phony_engine::{Cancel, Engine, ErrorKind, SyncRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::{Body, Query};
use crate::jobs::{self, Claimed, SharedProgress, WaitQuery};
use crate::plans::{self, Plan};
use crate::problem::{self, ApiResult, Problem};
use crate::projects::{self, Project};

/// Masking rules as saved on a project: 400 naming the bad line.
pub fn check_rules(text: &str) -> ApiResult<MaskRules> {
    if text.len() > 64 * 1024 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_masking_rules",
            "masking rules have at most 64 KiB",
        ));
    }
    MaskRules::parse(text).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_masking_rules",
            e.to_string(),
        )
    })
}

/// A snapshot beside a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

impl Side {
    fn describe(self) -> &'static str {
        match self {
            Side::Before => "a snapshot before each sync",
            Side::After => "a snapshot after each sync",
        }
    }
}

/// Whether `plan` takes the snapshot on `side` of a sync.
fn takes(plan: &Plan, side: Side) -> bool {
    match side {
        Side::Before => matches!(
            plan.auto_snapshot_on_sync.as_str(),
            "before_and_after" | "configurable"
        ),
        Side::After => plan.auto_snapshot_on_sync != "none",
    }
}

/// The snapshot on `side`: the plan's default, or what was asked (403 for one the plan
/// does not take).
fn choose(plan: &Plan, all: &[Plan], side: Side, asked: Option<bool>) -> ApiResult<bool> {
    match asked {
        None => Ok(takes(plan, side)),
        Some(false) => Ok(false),
        Some(true) if takes(plan, side) => Ok(true),
        Some(true) => {
            let lowest = all
                .iter()
                .find(|p| takes(p, side))
                .map(|p| p.name.clone())
                .unwrap_or_default();
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "plan_required",
                format!(
                    "{} needs the {lowest} plan or higher; the project is on {}",
                    side.describe(),
                    plan.name
                ),
            )
            .with("plan", plan.name.clone())
            .with("required_plan", lowest)
            .with("feature", side.describe()))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    /// Take the snapshot before (default: as the plan takes it).
    pub before: Option<bool>,
    /// Take the snapshot after (default: as the plan takes it).
    pub after: Option<bool>,
}

fn no_location(_: &Value) -> Option<String> {
    None
}

/// Queues a sync of `project` in `tx` (the caller holds no lock on the project row; one is
/// taken here, so two syncs never get one number).
pub async fn enqueue(
    app: &AppState,
    tx: &tokio_postgres::Transaction<'_>,
    project: &Project,
    body: &SyncBody,
) -> ApiResult<jobs::JobView> {
    if project.sync_source.is_none() {
        return Err(Problem::conflict(
            "sync_source_missing",
            "the project has no sync source: set one with PATCH {\"sync_source_url\": \"postgres://…\"}",
        ));
    }
    tx.query_opt(
        "SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE",
        &[&project.id],
    )
    .await?;
    let all = plans::all(tx).await?;
    let plan = all
        .iter()
        .find(|p| p.name == project.plan)
        .cloned()
        .ok_or_else(|| Problem::internal("reading the project's plan", &project.plan))?;
    let before = choose(&plan, &all, Side::Before, body.before)?;
    let after = choose(&plan, &all, Side::After, body.after)?;
    let queued: i64 = tx
        .query_one(
            "SELECT coalesce(max((params->>'number')::bigint), 0) FROM jobs
             WHERE project_id = $1 AND kind = 'sync'",
            &[&project.id],
        )
        .await?
        .get(0);
    let records = app.listing(&project.id).await?;
    let stored = phony_engine::sync::next_sync_number(&records) - 1;
    let number = u64::try_from(queued).unwrap_or(0).max(stored) + 1;
    let params = json!({
        "number": number,
        "before": before,
        "after": after,
        "source": project.sync_source,
    });
    Ok(jobs::enqueue(tx, &project.id, "sync", &params).await?)
}

/// `POST /api/v1/projects/{id}/syncs`: queues a sync (202; `?wait=` 200 with its report).
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(q): Query<WaitQuery>,
    Body(body): Body<SyncBody>,
) -> ApiResult<Response> {
    let project = projects::load(&app, &caller, &project_id).await?;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let job = enqueue(&app, &tx, &project, &body).await?;
    tx.commit().await?;
    drop(client);
    jobs::answer(&app, job, q.wait, StatusCode::OK, no_location).await
}

/// A sync as listed.
#[derive(Debug, Serialize)]
pub struct SyncView {
    pub number: Option<u64>,
    pub job_id: String,
    pub status: String,
    /// The source, without its password.
    pub source: Option<String>,
    pub before_snapshot_id: Option<String>,
    pub after_snapshot_id: Option<String>,
    /// A problem document, when it failed.
    pub error: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

impl SyncView {
    pub fn of(job: &jobs::JobView) -> Self {
        let result = job.result.clone().unwrap_or(Value::Null);
        SyncView {
            number: job.params["number"].as_u64(),
            job_id: job.id.clone(),
            status: job.status.clone(),
            source: job.params["source"].as_str().map(str::to_owned),
            before_snapshot_id: result["before_snapshot_id"].as_str().map(str::to_owned),
            after_snapshot_id: result["after_snapshot_id"].as_str().map(str::to_owned),
            error: job.error.clone(),
            created_at: job.created_at,
            finished_at: job.finished_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncListQuery {
    pub limit: Option<i64>,
}

/// `GET /api/v1/projects/{id}/syncs`: newest first.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(q): Query<SyncListQuery>,
) -> ApiResult<Json<Value>> {
    projects::load(&app, &caller, &project_id).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let client = app.pool.get().await?;
    let rows = client
        .query(
            "SELECT * FROM jobs WHERE project_id = $1 AND kind = 'sync' ORDER BY seq DESC LIMIT $2",
            &[&project_id, &limit],
        )
        .await?;
    let items: Vec<SyncView> = rows
        .iter()
        .map(|r| SyncView::of(&jobs::JobView::of(r)))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
struct SyncParams {
    number: u64,
    before: bool,
    after: bool,
}

/// Runs a sync job.
pub async fn run(
    app: &AppState,
    project: &Project,
    engine: &Engine,
    job: &Claimed,
    cancel: &Cancel,
    progress: &SharedProgress,
) -> ApiResult<Value> {
    let p: SyncParams = crate::work::params_of(job)?;
    let source = project.sync_source_target(app)?.ok_or_else(|| {
        Problem::conflict(
            "sync_source_missing",
            "the project's sync source was removed before the sync ran",
        )
    })?;
    let rules = match &project.masking_rules {
        Some(text) => check_rules(text)?,
        None => MaskRules::default(),
    };
    let target = project.target(app)?;
    let request = SyncRequest {
        rules,
        before: p.before,
        after: p.after,
        number: Some(p.number),
        labels: BTreeMap::from([("sync_job".to_owned(), job.id.clone())]),
        ..SyncRequest::from(source.clone())
    };
    let run = crate::work::run_options(cancel, progress);
    let synced = engine.sync(&target, request, run).await;
    app.forget_listing(&project.id);
    let synced = synced.map_err(|e| {
        let doing = format!("syncing {} from {source}", target.dbname());
        match e.kind() {
            ErrorKind::Invalid => {
                Problem::invalid("sync_refused", format!("{doing}: {}", problem::chain(&e)))
            }
            _ => problem::engine(e, &doing),
        }
    })?;
    for r in synced.before.iter().chain(&synced.after) {
        crate::work::index(app, r, &project.id).await;
    }
    crate::retention::after_automatic(app, project).await;
    {
        let mut pr = jobs::lock(progress);
        pr.phase = Some("done".into());
        pr.tables = synced.report.tables;
        pr.rows = synced.report.rows;
    }
    Ok(json!({
        "number": synced.number,
        "source": synced.source,
        "database": target.dbname(),
        "masked_columns": synced.masked_columns,
        "tables": synced.report.tables,
        "rows": synced.report.rows,
        "bytes": synced.report.bytes,
        "before_snapshot_id": synced.before.as_ref().map(|r| r.id.to_string()),
        "after_snapshot_id": synced.after.as_ref().map(|r| r.id.to_string()),
    }))
}
