//! `GET /api/v1/projects/{id}/usage`: what a project uses of its plan, and what its
//! snapshots cost against its database's size.

use axum::extract::{Path, State};
use axum::Json;
use phony_core::Origin;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Caller;
use crate::plans;
use crate::problem::{self, ApiResult};
use crate::projects;

#[derive(Debug, Serialize)]
pub struct SnapshotCounts {
    /// Counted against the plan (every snapshot but safety ones; pinned ones count).
    pub used: u64,
    /// Null: unlimited.
    pub allowed: Option<i32>,
    pub pinned: u64,
    /// Taken before restores; not counted, expire after 24 hours.
    pub safety: u64,
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub project_id: String,
    pub plan: String,
    pub snapshots: SnapshotCounts,
    /// Days snapshots are kept; null: until deleted.
    pub retention_days: Option<i32>,
    /// Whether retention expires pinned snapshots too (every plan but BUSINESS).
    pub retention_expires_pinned: bool,
    /// Bytes the project's store holds (deduplicated, compressed).
    pub stored_bytes: u64,
    /// Plain bytes of every snapshot's rows, summed (what copies would hold).
    pub logical_bytes: u64,
    /// The database's size now (`pg_database_size`); null when it cannot be reached.
    pub database_bytes: Option<i64>,
    /// stored_bytes / database_bytes: what keeping every snapshot costs against one copy.
    pub stored_share: Option<f64>,
}

/// The usage of project `id`.
pub async fn usage(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Usage>> {
    let project = projects::load(&app, &caller, &id).await?;
    let plan = {
        let client = app.pool.get().await?;
        plans::find(crate::snapshots::pg(&client), &project.plan).await?
    };
    let engine = app.engine(&project.id).await?;
    let records = crate::snapshots::records(&engine).await?;
    let stats = phony_core::stats::store_stats(engine.store())
        .await
        .map_err(|e| problem::engine(e.into(), "measuring the store"))?;
    let target = project.target(&app)?;
    let database_bytes = async {
        let client = target.connect().await.ok()?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .ok()?;
        Some(row.get::<_, i64>(0))
    }
    .await;
    let stored_share = database_bytes
        .filter(|b| *b > 0)
        .map(|b| stats.stored_bytes as f64 / b as f64);
    Ok(Json(Usage {
        project_id: project.id.clone(),
        plan: plan.name.clone(),
        snapshots: SnapshotCounts {
            used: records
                .iter()
                .filter(|r| r.origin != Origin::Safety)
                .count() as u64,
            allowed: plan.snapshots_kept,
            pinned: records.iter().filter(|r| r.pinned).count() as u64,
            safety: records
                .iter()
                .filter(|r| r.origin == Origin::Safety)
                .count() as u64,
        },
        retention_days: crate::retention::days(&plan, &project),
        retention_expires_pinned: plan.retention_expires_pinned,
        stored_bytes: stats.stored_bytes,
        logical_bytes: stats.logical_bytes,
        database_bytes,
        stored_share,
    }))
}
