//! Jobs: long work (create, restore, export) as rows of the metadata database.
//!
//! A worker claims the oldest queued job whose project has no job running and no older
//! job waiting, with `FOR UPDATE SKIP LOCKED` on the job and `FOR NO KEY UPDATE SKIP LOCKED`
//! on its project, so two servers never claim one job, nor two jobs of one project at once.
//! Each server holds a session advisory lock on its number on its listener connection
//! (which also `LISTEN`s for new jobs); a running job whose server's lock is free belonged
//! to a server that died, and is marked failed by the sweep ([`crate::sweep`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_postgres::{AsyncMessage, GenericClient, NoTls, Row};

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Query;
use crate::problem::{ApiResult, Problem};
use crate::secrets::new_id;

/// The channel new and finished jobs are announced on.
pub const CHANNEL: &str = "phony_jobs";

/// How often idle workers look for work without being woken.
const POLL: Duration = Duration::from_millis(500);

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub project_id: String,
    pub kind: String,
    /// queued, running, succeeded, failed or cancelled.
    pub status: String,
    /// What was asked (without secrets).
    pub params: Value,
    /// phase, tables, rows, bytes.
    pub progress: Value,
    pub result: Option<Value>,
    /// A problem document.
    pub error: Option<Value>,
    pub cancel_requested: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(skip)]
    pub secret_params: Value,
}

impl JobView {
    pub fn of(row: &Row) -> Self {
        let params: Value = row.get("params");
        let mut public = params.clone();
        if let Value::Object(map) = &mut public {
            map.remove("secret");
        }
        JobView {
            id: row.get("id"),
            project_id: row.get("project_id"),
            kind: row.get("kind"),
            status: row.get("status"),
            params: public,
            progress: row.get("progress"),
            result: row.get("result"),
            error: row.get("error"),
            cancel_requested: row.get("cancel_requested"),
            created_at: row.get("created_at"),
            started_at: row.get("started_at"),
            finished_at: row.get("finished_at"),
            secret_params: params,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }

    pub fn location(&self) -> String {
        format!("/api/v1/jobs/{}", self.id)
    }
}

/// Queues a job (inside the caller's transaction, if it has one); workers are woken at
/// commit.
pub async fn enqueue(
    client: &impl GenericClient,
    project_id: &str,
    kind: &str,
    params: &Value,
) -> Result<JobView, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO jobs (id, project_id, kind, params) VALUES ($1, $2, $3, $4) RETURNING *",
            &[&new_id("job"), &project_id, &kind, params],
        )
        .await?;
    client.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
    Ok(JobView::of(&row))
}

/// The job `id`, if the caller may see it.
pub async fn load(app: &AppState, caller: &Caller, id: &str) -> ApiResult<JobView> {
    let client = app.pool.get().await?;
    let row = client
        .query_opt("SELECT * FROM jobs WHERE id = $1", &[&id])
        .await?;
    match row.map(|r| JobView::of(&r)) {
        Some(job) if caller.sees(&job.project_id) => Ok(job),
        _ => Err(Problem::not_found("job")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Seconds to hold the answer until the job ends (at most 300).
    pub wait: Option<f64>,
}

/// The longest `?wait=` honoured.
const MAX_WAIT: f64 = 300.0;

/// Waits up to `wait` seconds for job `id` to end; the job as it is then.
pub async fn wait_for(app: &AppState, id: &str, wait: Option<f64>) -> ApiResult<JobView> {
    let wait = wait.unwrap_or(0.0);
    if !wait.is_finite() || wait < 0.0 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "wait is a number of seconds, 0 or more",
        ));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(wait.min(MAX_WAIT));
    loop {
        // Woken when a job ends here or (through NOTIFY) on another server; the poll
        // is the fallback.
        let ended = app.wake.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let row = {
            let client = app.pool.get().await?;
            client
                .query_opt("SELECT * FROM jobs WHERE id = $1", &[&id])
                .await?
        };
        let job = row
            .map(|r| JobView::of(&r))
            .ok_or_else(|| Problem::not_found("job"))?;
        if job.is_finished() || Instant::now() >= deadline {
            return Ok(job);
        }
        let pause =
            Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            () = ended => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// The answer to a request that queued a job: 202 with the job and `Location` while it
/// runs; once it ended within `?wait=`, `done` with its result (a failure as its problem
/// document, the job attached).
pub async fn answer(
    app: &AppState,
    job: JobView,
    wait: Option<f64>,
    done: StatusCode,
    result_location: fn(&Value) -> Option<String>,
) -> ApiResult<Response> {
    let job = match wait {
        Some(_) => wait_for(app, &job.id, wait).await?,
        None => job,
    };
    match job.status.as_str() {
        "succeeded" => {
            let result = job.result.clone().unwrap_or(Value::Null);
            let mut response = (done, Json(&result)).into_response();
            if let Some(location) = result_location(&result) {
                if let Ok(v) = location.parse() {
                    response.headers_mut().insert(header::LOCATION, v);
                }
            }
            if let Ok(v) = job.id.parse() {
                response.headers_mut().insert("phony-job", v);
            }
            Ok(response)
        }
        "failed" | "cancelled" => {
            let problem = match &job.error {
                Some(e) => Problem::from_body(e),
                None => Problem::conflict(
                    "cancelled",
                    "the job was cancelled before it changed anything",
                ),
            };
            Err(problem.with("job", json!(job)))
        }
        _ => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, job.location())],
            Json(job),
        )
            .into_response()),
    }
}

/// `GET /api/v1/jobs/{id}` (`?wait=SECONDS` holds the answer until it ends).
pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<JobView>> {
    load(&app, &caller, &id).await?;
    Ok(Json(wait_for(&app, &id, q.wait).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobListQuery {
    pub limit: Option<i64>,
    pub status: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct JobList {
    pub items: Vec<JobView>,
}

/// `GET /api/v1/projects/{id}/jobs`: newest first.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    Query(q): Query<JobListQuery>,
) -> ApiResult<Json<JobList>> {
    crate::projects::load(&app, &caller, &project).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let client = app.pool.get().await?;
    let rows = client
        .query(
            "SELECT * FROM jobs WHERE project_id = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY seq DESC LIMIT $3",
            &[&project, &q.status, &limit],
        )
        .await?;
    Ok(Json(JobList {
        items: rows.iter().map(JobView::of).collect(),
    }))
}

/// `POST /api/v1/jobs/{id}/cancel`: a queued job is cancelled at once; a running one stops
/// at its next safe point (a create before its record is written, a restore before its
/// commit: nothing changes). 409 for a job that already ended.
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    load(&app, &caller, &id).await?;
    let client = app.pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE jobs SET
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status = 'queued' THEN clock_timestamp() ELSE finished_at END,
                cancel_requested = true
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING *",
            &[&id],
        )
        .await?;
    match row {
        Some(row) => {
            let job = JobView::of(&row);
            let status = if job.is_finished() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok((status, [(header::LOCATION, job.location())], Json(job)).into_response())
        }
        None => Err(Problem::conflict(
            "job_finished",
            "the job has already ended",
        )),
    }
}

/// A claimed job, as a worker runs it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub project_id: String,
    pub kind: String,
    pub params: Value,
}

/// Claims the next job this server may run, if any.
pub async fn claim(app: &AppState) -> Result<Option<Claimed>, ClaimError> {
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let candidates = tx
        .query(
            "SELECT id, project_id, seq FROM jobs WHERE status = 'queued'
             ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    let mut seen = HashSet::new();
    for c in candidates {
        let (id, project, seq): (String, String, i64) = (c.get(0), c.get(1), c.get(2));
        if !seen.insert(project.clone()) {
            continue;
        }
        let locked = tx
            .query_opt(
                "SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
                &[&project],
            )
            .await?;
        if locked.is_none() {
            continue;
        }
        let busy: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE project_id = $1
                    AND (status = 'running' OR (status = 'queued' AND seq < $2)))",
                &[&project, &seq],
            )
            .await?
            .get(0);
        if busy {
            continue;
        }
        let row = tx
            .query_one(
                "UPDATE jobs SET status = 'running', started_at = clock_timestamp(), server_id = $2,
                    runs = runs + 1
                 WHERE id = $1 RETURNING *",
                &[&id, &app.server_id],
            )
            .await?;
        tx.commit().await?;
        let job = JobView::of(&row);
        return Ok(Some(Claimed {
            id: job.id,
            project_id: job.project_id,
            kind: job.kind,
            params: job.secret_params,
        }));
    }
    tx.commit().await?;
    Ok(None)
}

/// Claiming failed (the metadata database is away).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

/// What a running job reports, written to its row now and then.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Progress {
    pub phase: Option<String>,
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
}

pub type SharedProgress = Arc<Mutex<Progress>>;

/// A worker: claims and runs jobs until the server stops.
pub async fn worker(app: AppState) {
    let mut stopping = app.stopping.clone();
    loop {
        if app.is_stopping() {
            return;
        }
        let wake = app.wake.notified();
        match claim(&app).await {
            Ok(Some(job)) => {
                run(&app, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("claiming a job: {e}"),
        }
        tokio::select! {
            () = wake => {}
            () = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// Runs a claimed job to its end and records how it ended.
async fn run(app: &AppState, job: Claimed) {
    let started = Instant::now();
    let cancel = phony_engine::Cancel::new();
    let progress: SharedProgress = Arc::default();
    let stopped_by_shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch(
        Arc::clone(app),
        job.id.clone(),
        cancel.clone(),
        Arc::clone(&progress),
        Arc::clone(&stopped_by_shutdown),
    ));
    tracing::info!(
        "job {} ({}) of {} started",
        job.id,
        job.kind,
        job.project_id
    );
    let outcome = crate::work::execute(app, &job, &cancel, &progress).await;
    watcher.abort();
    app.forget_listing(&job.project_id);
    let shutdown = stopped_by_shutdown.load(std::sync::atomic::Ordering::SeqCst);
    let (status, result, error) = match outcome {
        Ok(result) => ("succeeded", Some(result), None),
        Err(p) if p.code == "cancelled" && shutdown => (
            "failed",
            None,
            Some(
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_stopped",
                    "the server stopped before the job finished; it was rolled back, nothing changed",
                )
                .body(),
            ),
        ),
        Err(p) if p.code == "cancelled" => ("cancelled", None, Some(p.body())),
        Err(p) => ("failed", None, Some(p.body())),
    };
    let progress = serde_json::to_value(lock(&progress).clone()).unwrap_or_default();
    app.metrics
        .job_finished(&job.kind, status, started.elapsed());
    tracing::info!("job {} {status} after {:?}", job.id, started.elapsed());
    // The metadata database may be restarting: the outcome is worth a few tries.
    for attempt in 0..30 {
        match finish(app, &job.id, status, &result, &error, &progress).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("recording the end of job {} (try {attempt}): {e}", job.id);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    app.wake.notify_waiters();
}

async fn finish(
    app: &AppState,
    id: &str,
    status: &str,
    result: &Option<Value>,
    error: &Option<Value>,
    progress: &Value,
) -> Result<(), ClaimError> {
    let client = app.pool.get().await?;
    client
        .execute(
            "UPDATE jobs SET status = $2, result = $3, error = $4, progress = $5, finished_at = clock_timestamp()
             WHERE id = $1 AND status = 'running' AND server_id = $6",
            &[&id, &status, result, error, progress, &app.server_id],
        )
        .await?;
    client.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
    Ok(())
}

pub fn lock(p: &SharedProgress) -> std::sync::MutexGuard<'_, Progress> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// While a job runs: writes its progress, passes on a cancel asked through the API, and
/// cancels it once the server has been stopping for longer than its grace period.
async fn watch(
    app: AppState,
    id: String,
    cancel: phony_engine::Cancel,
    progress: SharedProgress,
    stopped_by_shutdown: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut last = Value::Null;
    let mut stopping_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if app.is_stopping() {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= app.config.shutdown_grace && !cancel.is_cancelled() {
                tracing::warn!("stopping: cancelling job {id} (it rolls back)");
                stopped_by_shutdown.store(true, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel();
            }
        }
        let now = serde_json::to_value(lock(&progress).clone()).unwrap_or_default();
        let Ok(client) = app.pool.get().await else {
            continue;
        };
        let changed = now != last;
        let row = client
            .query_opt(
                "UPDATE jobs SET progress = CASE WHEN $2 THEN $3 ELSE progress END
                 WHERE id = $1 RETURNING cancel_requested",
                &[&id, &changed, &now],
            )
            .await;
        if let Ok(Some(row)) = row {
            last = now;
            if row.get::<_, bool>(0) && !cancel.is_cancelled() {
                tracing::info!("job {id}: cancel asked");
                cancel.cancel();
            }
        }
    }
}

/// Holds this server's advisory lock and listens for new jobs, reconnecting when the
/// metadata database goes away; runs until aborted.
pub async fn listen(
    app: AppState,
    url: String,
    mut locked: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let Ok(config) = crate::meta::config(&url) else {
        return;
    };
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let wake = Arc::clone(&app.wake);
                let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => wake.notify_waiters(),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("job listener: {e}");
                                break;
                            }
                        }
                    }
                    let _ = ended_tx.send(());
                });
                let setup = async {
                    client
                        .execute("SELECT pg_advisory_lock($1)", &[&app.server_id])
                        .await?;
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await
                };
                match setup.await {
                    Ok(()) => {
                        if let Some(tx) = locked.take() {
                            let _ = tx.send(());
                        }
                        app.wake.notify_waiters();
                        let _ = ended_rx.await;
                    }
                    Err(e) => tracing::warn!("job listener: {e}"),
                }
                driver.abort();
                drop(client);
            }
            Err(e) => tracing::warn!("job listener: connecting: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `GET /api/v1/jobs/{id}/download`: a finished export's SQL file.
pub async fn download(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = load(&app, &caller, &id).await?;
    if job.kind != "export" {
        return Err(Problem::not_found("export file"));
    }
    if job.status != "succeeded" {
        return Err(Problem::conflict(
            "export_not_ready",
            format!(
                "the export is {}: its file is there once it succeeded",
                job.status
            ),
        ));
    }
    let path = crate::work::export_path(&app, &id);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Problem::not_found("export file"))
        }
        Err(e) => return Err(Problem::internal("reading the export", &e)),
    };
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/sql".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.sql\""),
            ),
        ],
        body,
    )
        .into_response())
}
