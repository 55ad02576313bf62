//! `GET /api/v1/snapshots/{id}/diff/{other_id}`: the CLI's `diff --json` document, between
//! two snapshots of one project or (`other_id` = `live`) a snapshot and its database now.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Query;
use crate::plans::{self, Feature};
use crate::problem::{self, ApiResult, Problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// List the rows added, removed or changed (true/false).
    pub rows: Option<String>,
    /// Rows listed per table with `rows` (default 100, at most 10000).
    pub limit: Option<usize>,
}

/// The diff (TEAM and BUSINESS; others answer 403 `plan_required`).
pub async fn diff(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, other)): Path<(String, String)>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<Value>> {
    let (project, engine, from) = crate::snapshots::find(&app, &caller, &id).await?;
    {
        let client = app.pool.get().await?;
        let plan = plans::find(crate::snapshots::pg(&client), &project.plan).await?;
        plans::require(crate::snapshots::pg(&client), &plan, Feature::SnapshotDiff).await?;
    }
    let rows = match q.rows.as_deref() {
        None | Some("false" | "0" | "no") => false,
        Some("true" | "1" | "yes" | "") => true,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "rows is true or false",
            ))
        }
    };
    let limit = q.limit.unwrap_or(100);
    if limit > 10_000 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit is at most 10000",
        ));
    }
    let to = if other == "live" {
        phony_engine::DiffTo::Live(project.target(&app)?)
    } else {
        let (other_project, _, record) = crate::snapshots::find(&app, &caller, &other).await?;
        if other_project.id != project.id {
            // Snapshots of two projects are not compared: as if the other did not exist.
            return Err(Problem::not_found("snapshot"));
        }
        phony_engine::DiffTo::Snapshot(record.id.to_string())
    };
    let notify: phony_engine::lease::Notify = Arc::new(|line: &str| tracing::info!("{line}"));
    let opts = phony_engine::DiffOptions {
        row_limit: if rows { limit } else { 0 },
        run: phony_engine::RunOptions {
            notify: Some(notify),
            ..phony_engine::RunOptions::default()
        },
        ..phony_engine::DiffOptions::default()
    };
    // The comparison's future is not `Send` (the engine's offload is generic over
    // closures), so it runs on a blocking thread that drives it with the runtime's handle.
    let runtime = tokio::runtime::Handle::current();
    let from_id = from.id.to_string();
    let doc = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move { engine.diff(&from_id, to, opts).await })
    })
    .await
    .map_err(|e| Problem::internal("comparing", &e))?
    .map_err(|e| problem::engine(e, "comparing"))?;
    serde_json::to_value(&doc)
        .map(Json)
        .map_err(|e| Problem::internal("writing the diff", &e))
}
