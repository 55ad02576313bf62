//! Snapshots of a project: create (a job), list, show, rename/pin/label, delete, restore
//! (a job), diff, export (a job).

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use phony_core::{Backend as _, Origin, SnapshotName, SnapshotRecord};
use phony_engine::report::{SnapshotShow, SnapshotView};
use phony_engine::{Engine, ListFilter};
use phony_object_store::StoreLocation;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::{Caller, Scope};
use crate::body::{Body, Query};
use crate::jobs::{self, WaitQuery};
use crate::plans::{self, Feature};
use crate::problem::{self, ApiResult, Problem};
use crate::projects::{self, Project};

/// Every readable record of a store, newest first (ties by id).
pub async fn records(engine: &Engine) -> ApiResult<Vec<SnapshotRecord>> {
    let mut records = engine
        .list(&ListFilter::default())
        .await
        .map_err(|e| problem::engine(e, "reading the snapshot records"))?;
    records.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id.to_string())));
    Ok(records)
}

/// The snapshot `reference` names, with its project, if the caller may see it. A project
/// token may name one by id, unique id prefix or name; an admin token by its full id only:
/// names and prefixes are unique within a project, not across projects, so an admin
/// request by name is answered 404 with a detail that says how to ask instead.
pub async fn find(
    app: &AppState,
    caller: &Caller,
    reference: &str,
) -> ApiResult<(Project, Engine, SnapshotRecord)> {
    let candidates: Vec<String> = match &caller.scope {
        Scope::Project(id) => vec![id.clone()],
        Scope::Admin
            if reference
                .to_ascii_lowercase()
                .parse::<phony_core::SnapshotId>()
                .is_err() =>
        {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "snapshot not found: an admin token names a snapshot by its full id (snap_ and 12 hex digits), and {reference:?} is not one; names and id prefixes resolve within a project: use the project's token, or find the id with GET /api/v1/projects/{{id}}/snapshots"
                ),
            ));
        }
        Scope::Admin => {
            let client = app.pool.get().await?;
            let indexed = client
                .query_opt(
                    "SELECT project_id FROM snapshot_index WHERE snapshot_id = $1",
                    &[&reference.to_ascii_lowercase()],
                )
                .await?;
            match indexed {
                Some(row) => vec![row.get(0)],
                None => projects::all(app)
                    .await?
                    .into_iter()
                    .map(|p| p.id)
                    .collect(),
            }
        }
    };
    for project_id in candidates {
        // A project deleted meanwhile is skipped; the metadata database being away is not
        // a snapshot that does not exist.
        let project = match projects::load(app, caller, &project_id).await {
            Ok(project) => project,
            Err(p) if p.status == StatusCode::NOT_FOUND => continue,
            Err(p) => return Err(p),
        };
        let engine = app.engine(&project.id).await?;
        let records = app.listing(&project.id).await?;
        let found = match caller.scope {
            Scope::Project(_) => match phony_core::resolve::resolve(&records, reference) {
                Ok(r) => Some(r.clone()),
                Err(phony_core::Error::Ambiguous { .. }) => {
                    return Err(Problem::conflict(
                        "ambiguous_id",
                        format!("{reference:?} names several snapshots: give more of the id"),
                    ))
                }
                Err(_) => None,
            },
            Scope::Admin => records
                .iter()
                .find(|r| r.id.to_string().eq_ignore_ascii_case(reference))
                .cloned(),
        };
        if let Some(record) = found {
            return Ok((project, engine, record));
        }
    }
    Err(Problem::not_found("snapshot"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSnapshot {
    pub name: Option<String>,
    #[serde(default)]
    pub pin: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `sync-before` or `sync-after`, for a sync run by a tool of the caller's (absent:
    /// `manual`); other origins are the server's own.
    pub origin: Option<String>,
    /// The external sync's id, kept as the label `sync` (with `origin` only).
    pub sync_id: Option<String>,
}

/// The origin a caller may give a snapshot, with its sync id as a label.
fn external_origin(new: &mut NewSnapshot) -> ApiResult<Option<&'static str>> {
    let bad = |d: String| Problem::new(StatusCode::BAD_REQUEST, "invalid_origin", d);
    let origin = match new.origin.as_deref() {
        None | Some("manual") => None,
        Some("sync-before") => Some("sync-before"),
        Some("sync-after") => Some("sync-after"),
        Some(other) => {
            return Err(bad(format!(
                "origin {other:?} is not one a client gives: use sync-before or sync-after (around a sync of your own), or none"
            )))
        }
    };
    if let Some(id) = &new.sync_id {
        if origin.is_none() {
            return Err(bad(
                "sync_id goes with origin sync-before or sync-after".to_owned()
            ));
        }
        if id.is_empty() || id.chars().count() > 64 {
            return Err(bad("sync_id has 1-64 characters".to_owned()));
        }
        new.labels.insert("sync".to_owned(), id.clone());
    }
    Ok(origin)
}

fn check_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    for (k, v) in labels {
        if k.is_empty() || k.len() > 64 || v.len() > 256 {
            return Err(Problem::invalid(
                "invalid_body",
                "label keys have 1-64 bytes and values at most 256",
            ));
        }
    }
    Ok(())
}

fn snapshot_location(result: &Value) -> Option<String> {
    result["id"]
        .as_str()
        .map(|id| format!("/api/v1/snapshots/{id}"))
}

fn no_location(_: &Value) -> Option<String> {
    None
}

/// Snapshots that count against a plan's limit: all but safety snapshots.
fn counted(records: &[SnapshotRecord]) -> u64 {
    records
        .iter()
        .filter(|r| r.origin != Origin::Safety)
        .count() as u64
}

/// `POST /api/v1/projects/{id}/snapshots`: queues a create job (202; `?wait=` 201 with the
/// snapshot). Over the plan's count: 403 `plan_limit`.
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(q): Query<WaitQuery>,
    Body(mut new): Body<NewSnapshot>,
) -> ApiResult<Response> {
    let project = projects::load(&app, &caller, &project_id).await?;
    let origin = external_origin(&mut new)?;
    if let Some(name) = &new.name {
        SnapshotName::from_str(name)
            .map_err(|e| Problem::invalid("invalid_name", e.to_string()))?;
    }
    check_labels(&new.labels)?;
    let engine = app.engine(&project.id).await?;
    let mut client = app.pool.get().await?;
    let owned = client.transaction().await?;
    let tx: &tokio_postgres::Transaction<'_> = &owned;
    // One create decision at a time per project, so two cannot both take the last place.
    tx.query_opt(
        "SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE",
        &[&project.id],
    )
    .await?;
    let plan = plans::find(tx, &project.plan).await?;
    let records = records(&engine).await?;
    if let Some(name) = &new.name {
        phony_core::resolve::check_name_free(&records, name)
            .map_err(|e| Problem::conflict("name_taken", e.to_string()))?;
    }
    let pending: i64 = tx
        .query_one(
            "SELECT count(*) FROM jobs WHERE project_id = $1 AND kind = 'create'
                AND status IN ('queued', 'running')",
            &[&project.id],
        )
        .await?
        .get(0);
    plan.check_room(counted(&records) + u64::try_from(pending).unwrap_or(0))?;
    let params =
        json!({ "name": new.name, "pin": new.pin, "labels": new.labels, "origin": origin });
    let job = jobs::enqueue(tx, &project.id, "create", &params).await?;
    owned.commit().await?;
    jobs::answer(&app, job, q.wait, StatusCode::CREATED, snapshot_location).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub origin: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Page<'a> {
    pub items: Vec<SnapshotView<'a>>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

fn cursor_of(r: &SnapshotRecord) -> String {
    format!("{}.{}", r.created_at.unix_timestamp_nanos(), r.id)
}

/// `GET /api/v1/projects/{id}/snapshots?limit=&cursor=&origin=`: newest first.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    // A project's own token proves the project exists (its tokens go with it), as of the
    // token's check (`auth::TOKEN_FRESH`): the listing, the hot path, needs no query of
    // its own then. Others load the project (404 for one they may not see).
    let project_id = match &caller.scope {
        Scope::Project(own) if *own == project_id => project_id,
        _ => projects::load(&app, &caller, &project_id).await?.id,
    };
    let bad = |d: &str| Problem::new(StatusCode::BAD_REQUEST, "invalid_query", d.to_owned());
    let origin = q
        .origin
        .as_deref()
        .map(Origin::from_str)
        .transpose()
        .map_err(|_| {
            bad("origin is one of manual, safety, scheduled, sync-before, sync-after, sprint-end")
        })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit is between 1 and 1000"));
    }
    let after = match &q.cursor {
        Some(c) => {
            let (nanos, id) = c
                .split_once('.')
                .ok_or_else(|| bad("cursor is not one this server gave"))?;
            let nanos: i128 = nanos
                .parse()
                .map_err(|_| bad("cursor is not one this server gave"))?;
            Some((nanos, id.to_owned()))
        }
        None => None,
    };
    let records = app.listing(&project_id).await?;
    let kept: Vec<&SnapshotRecord> = records
        .iter()
        .filter(|r| origin.is_none_or(|o| r.origin == o))
        .filter(|r| match &after {
            Some((nanos, id)) => {
                (r.created_at.unix_timestamp_nanos(), r.id.to_string()) < (*nanos, id.clone())
            }
            None => true,
        })
        .take(limit + 1)
        .collect();
    let more = kept.len() > limit;
    let page: Vec<&SnapshotRecord> = kept.into_iter().take(limit).collect();
    let next_cursor = if more {
        page.last().map(|r| cursor_of(r))
    } else {
        None
    };
    let body = Page {
        items: page.iter().map(|r| SnapshotView::of(r)).collect(),
        next_cursor,
    };
    Ok(axum::response::IntoResponse::into_response(Json(body)))
}

/// `GET /api/v1/snapshots/{id}`: the snapshot with its tables and sequences, and `project_id`.
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (project, engine, record) = find(&app, &caller, &id).await?;
    let root = engine
        .store()
        .root(&record.root)
        .await
        .map_err(|e| problem::engine(e.into(), "reading the snapshot"))?;
    let mut doc = serde_json::to_value(SnapshotShow::of(&record, &root))
        .map_err(|e| Problem::internal("writing the snapshot", &e))?;
    doc["project_id"] = json!(project.id);
    Ok(Json(doc))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPatch {
    /// A new name; `null` removes it.
    #[serde(default, with = "projects::double_option")]
    pub name: Option<Option<String>>,
    pub pin: Option<bool>,
    /// Replaces every label.
    pub labels: Option<BTreeMap<String, String>>,
}

/// `PATCH /api/v1/snapshots/{id}`: rename, pin or unpin, replace labels.
pub async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(patch): Body<SnapshotPatch>,
) -> ApiResult<Json<Value>> {
    let (project, engine, found) = find(&app, &caller, &id).await?;
    let found_project = project.id;
    let new_name = match &patch.name {
        Some(Some(n)) => {
            Some(Some(SnapshotName::from_str(n).map_err(|e| {
                Problem::invalid("invalid_name", e.to_string())
            })?))
        }
        Some(None) => Some(None),
        None => None,
    };
    if let Some(labels) = &patch.labels {
        check_labels(labels)?;
    }
    let store = engine.store();
    let notify: phony_engine::lease::Notify = Arc::new(|line: &str| tracing::info!("{line}"));
    let lock = phony_engine::lease::LockHolder::acquire_create(store, &notify)
        .await
        .map_err(|e| problem::engine(e, "locking the store"))?;
    let result = async {
        let mut record = store
            .record(&found.id)
            .await
            .map_err(|e| problem::engine(e.into(), "reading the snapshot"))?
            .ok_or_else(|| Problem::not_found("snapshot"))?;
        let old_name = record.name.clone();
        if let Some(name) = &new_name {
            if name != &record.name {
                if let Some(n) = name {
                    let claim = phony_engine::names::claim(store, n, record.id)
                        .await
                        .map_err(|e| problem::engine(e, "claiming the name"))?;
                    drop(claim);
                }
                record.name = name.clone();
            }
        }
        if let Some(pin) = patch.pin {
            record.pinned = pin;
        }
        if let Some(labels) = &patch.labels {
            record.labels = labels.clone();
        }
        lock.check()
            .map_err(|e| problem::engine(e.into(), "locking the store"))?;
        store
            .put_record(&record)
            .await
            .map_err(|e| problem::engine(e.into(), "writing the snapshot record"))?;
        if let Some(old) = old_name.filter(|o| record.name.as_ref() != Some(o)) {
            let key = phony_engine::names::claim_key(old.as_str());
            if let Err(e) = store.backend().delete(&key).await {
                tracing::warn!("releasing the old name of {}: {e}", record.id);
            }
        }
        Ok::<_, Problem>(record)
    }
    .await;
    lock.release().await;
    app.forget_listing(&found_project);
    let record = result?;
    serde_json::to_value(SnapshotView::of(&record))
        .map(Json)
        .map_err(|e| Problem::internal("writing the snapshot", &e))
}

/// `DELETE /api/v1/snapshots/{id}`: 204; a pinned snapshot is refused (409): unpin it first.
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (project, engine, record) = find(&app, &caller, &id).await?;
    if record.pinned {
        return Err(Problem::conflict(
            "snapshot_pinned",
            format!(
                "snapshot {} is pinned: unpin it (PATCH {{\"pin\": false}}) to delete it",
                record.label()
            ),
        ));
    }
    engine
        .delete_snapshot(&record)
        .await
        .map_err(|e| problem::engine(e, "deleting the snapshot"))?;
    app.forget_listing(&project.id);
    let client = app.pool.get().await?;
    client
        .execute(
            "DELETE FROM snapshot_index WHERE snapshot_id = $1",
            &[&record.id.to_string()],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// Restore into this database instead (created when it does not exist); no safety
    /// snapshot is taken then.
    pub target_database_url: Option<String>,
    /// End other sessions that hold locks the restore needs.
    #[serde(default)]
    pub force: bool,
    /// Report what would change, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Replace every schema and reload every table.
    #[serde(default)]
    pub full: bool,
    /// Restore in place even when the snapshot was taken of another database (the
    /// project's URL changed since).
    #[serde(default)]
    pub allow_other_database: bool,
}

/// `POST /api/v1/snapshots/{id}/restore`: queues a restore job (202; `?wait=` 200 with the
/// report). In place, the state before is kept as a safety snapshot first.
pub async fn restore(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    Body(body): Body<RestoreBody>,
) -> ApiResult<Response> {
    let (project, _, record) = find(&app, &caller, &id).await?;
    let mut params = json!({
        "snapshot_id": record.id.to_string(),
        "force": body.force,
        "dry_run": body.dry_run,
        "full": body.full,
        "allow_other_database": body.allow_other_database,
        "target_database_url": null,
    });
    if let Some(url) = &body.target_database_url {
        let target = projects::parse_url(url)?;
        let sealed = app
            .key
            .seal(url)
            .map_err(|e| Problem::internal("encrypting the database URL", &e))?;
        params["target_database_url"] = json!(target.to_string());
        params["secret"] = json!(crate::secrets::hex(&sealed));
    }
    let client = app.pool.get().await?;
    let job = jobs::enqueue(pg(&client), &project.id, "restore", &params).await?;
    drop(client);
    jobs::answer(&app, job, q.wait, StatusCode::OK, no_location).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    pub format: String,
    /// `s3://bucket/key` (compressed when the key ends in `.zst` or `.gz`); absent: a file
    /// downloaded from the finished job.
    pub destination: Option<String>,
    /// Replace an existing object at `destination`.
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/v1/snapshots/{id}/export` (BUSINESS): queues an export job; the SQL file is
/// uploaded to `destination` (an S3 object) or downloadable from the finished job.
pub async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    Body(body): Body<ExportBody>,
) -> ApiResult<Response> {
    let (project, _, record) = find(&app, &caller, &id).await?;
    let client = app.pool.get().await?;
    let plan = plans::find(pg(&client), &project.plan).await?;
    plans::require(pg(&client), &plan, Feature::Export).await?;
    if body.format != "sql" {
        return Err(Problem::invalid("invalid_body", "format must be \"sql\""));
    }
    if let Some(url) = &body.destination {
        check_destination(&app, url)?;
    }
    let params = json!({
        "snapshot_id": record.id.to_string(),
        "format": "sql",
        "destination": body.destination,
        "force": body.force,
    });
    let job = jobs::enqueue(pg(&client), &project.id, "export", &params).await?;
    drop(client);
    jobs::answer(&app, job, q.wait, StatusCode::OK, |r| {
        r["download"].as_str().map(str::to_owned)
    })
    .await
}

/// An export destination the server writes to: an S3 object (`s3://bucket/key`) outside
/// its own stores. A path on the server's disk is refused: a tenant naming the files a
/// server writes could replace its key file, its stores or anything its user may write
/// (see docs/server.md).
fn check_destination(app: &AppState, url: &str) -> ApiResult<()> {
    let refuse = |detail: String| Problem::invalid("invalid_destination", detail);
    if !url.starts_with("s3://") {
        return Err(refuse(
            "the server exports only to an S3 object (s3://bucket/key), never to a path on its own disk: omit destination and download the file from the finished job".into(),
        ));
    }
    let (bucket, key) = match url.parse::<StoreLocation>() {
        Ok(StoreLocation::S3 { bucket, prefix }) => (bucket, prefix),
        Ok(_) => return Err(refuse(format!("{url} is not an s3://bucket/key URL"))),
        Err(e) => return Err(refuse(e.to_string())),
    };
    if key.is_empty() {
        return Err(refuse(format!(
            "{url} names no object: write s3://{bucket}/KEY"
        )));
    }
    if let Ok(StoreLocation::S3 {
        bucket: own,
        prefix,
    }) = app.config.store_root.parse::<StoreLocation>()
    {
        let inside = prefix.is_empty() || key == prefix || key.starts_with(&format!("{prefix}/"));
        if own == bucket && inside {
            return Err(refuse(format!(
                "{url} is inside the server's own stores: export to another prefix or bucket"
            )));
        }
    }
    Ok(())
}

/// The driver's client behind a pooled one.
pub fn pg(client: &deadpool_postgres::Object) -> &tokio_postgres::Client {
    client
}
