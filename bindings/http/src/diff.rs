//! `GET /api/v1/snapshots/{id}/diff/{other_id}`: the CLI's `diff --json` document, between
//! two snapshots of one project or (`other_id` = `live`) a snapshot and its database now.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use phony_core::diff::{Diff, DiffOptions, Offload};
use phony_core::SnapshotRecord;
use phony_postgres::CaptureOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Query;
use crate::plans::{self, Feature};
use crate::problem::{self, ApiResult, Problem};

/// Decodes and matches chunk runs on tokio's blocking pool.
#[derive(Debug, Clone, Copy)]
struct BlockingPool;

impl Offload for BlockingPool {
    async fn run<T, F>(&self, work: F) -> phony_core::Result<T>
    where
        F: FnOnce() -> phony_core::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| phony_core::Error::backend("decoding chunks", e))?
    }
}

/// One side of a diff, as the CLI's JSON shows it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Side<'a> {
    Snapshot { id: String, name: Option<&'a str> },
    Database { database: String, live: bool },
}

fn side(r: &SnapshotRecord) -> Side<'_> {
    Side::Snapshot {
        id: r.id.to_string(),
        name: r.name.as_ref().map(|n| n.as_str()),
    }
}

#[derive(Debug, Serialize)]
struct Doc<'a> {
    from: &'a Side<'a>,
    to: &'a Side<'a>,
    identical: bool,
    #[serde(flatten)]
    diff: &'a Diff,
}

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
    let store = engine.store();
    let read = |e: phony_core::Error| problem::engine(e.into(), "reading the snapshot");
    let from_root = store.root(&from.root).await.map_err(read)?;
    let mut live = None;
    let to_record;
    let (to_side, to_root) = if other == "live" {
        let target = project.target(&app)?;
        let opts = CaptureOptions {
            skip_large_objects: true,
            application_name: Some("phony-server diff".into()),
            ..CaptureOptions::default()
        };
        let notify: phony_engine::lease::Notify = Arc::new(|line: &str| tracing::info!("{line}"));
        let captured = engine
            .capture_live(&target, &opts, &notify)
            .await
            .map_err(|e| problem::engine(e, &format!("reading {target}")))?;
        let manifest = captured.manifest.clone();
        live = Some(captured);
        (
            Side::Database {
                database: target.dbname().to_owned(),
                live: true,
            },
            manifest,
        )
    } else {
        let (other_project, _, record) = crate::snapshots::find(&app, &caller, &other).await?;
        if other_project.id != project.id {
            // Snapshots of two projects are not compared: as if the other did not exist.
            return Err(Problem::not_found("snapshot"));
        }
        to_record = record;
        let root = store.root(&to_record.root).await.map_err(read)?;
        (side(&to_record), root)
    };
    let opts = DiffOptions {
        row_limit: if rows { limit } else { 0 },
        ..DiffOptions::default()
    };
    // The comparison's future is not `Send` (its offload is generic over closures), so it
    // runs on a blocking thread that drives it with the runtime's handle.
    let runtime = tokio::runtime::Handle::current();
    let shared = Arc::clone(store);
    let diff = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            phony_core::diff::diff_with(&shared, &from_root, &to_root, &opts, &BlockingPool).await
        })
    })
    .await
    .map_err(|e| Problem::internal("comparing the snapshots", &e))?;
    if let Some(live) = live {
        live.release().await;
    }
    let diff = diff.map_err(|e| problem::engine(e.into(), "comparing the snapshots"))?;
    let from_side = side(&from);
    let doc = Doc {
        from: &from_side,
        to: &to_side,
        identical: diff.is_empty(),
        diff: &diff,
    };
    serde_json::to_value(&doc)
        .map(Json)
        .map_err(|e| Problem::internal("writing the diff", &e))
}
