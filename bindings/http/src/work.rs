//! What each kind of job does: create a snapshot, restore one, export one as SQL.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::Arc;

use phony_core::{Origin, SnapshotName, SnapshotRecord};
use phony_engine::report::{RestoreView, SnapshotView};
use phony_engine::{
    Cancel, Compression, Create, CreateOptions, CreatePhase, Engine, ExportOptions, ExportTarget,
    Part, ProgressSink, RestoreRequest, RunOptions, Step,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::jobs::{lock, Claimed, SharedProgress};
use crate::problem::{self, ApiResult, Problem};
use crate::projects::Project;

/// Runs `job`; its result, or why it failed.
pub async fn execute(
    app: &AppState,
    job: &Claimed,
    cancel: &Cancel,
    progress: &SharedProgress,
) -> ApiResult<Value> {
    let project = project(app, &job.project_id).await?;
    let engine = app.engine(&project.id).await?;
    match job.kind.as_str() {
        "create" => create(app, &project, &engine, job, cancel, progress).await,
        "restore" => restore(app, &project, &engine, job, cancel, progress).await,
        "export" => export(app, &engine, job, cancel, progress).await,
        "sync" => crate::syncs::run(app, &project, &engine, job, cancel, progress).await,
        other => Err(Problem::internal(
            "running a job",
            &format!("unknown kind {other}"),
        )),
    }
}

pub(crate) async fn project(app: &AppState, id: &str) -> ApiResult<Project> {
    let admin = crate::auth::Caller {
        token_id: String::new(),
        scope: crate::auth::Scope::Admin,
    };
    crate::projects::load(app, &admin, id).await
}

fn params<T: for<'de> Deserialize<'de>>(job: &Claimed) -> ApiResult<T> {
    serde_json::from_value(job.params.clone())
        .map_err(|e| Problem::internal("reading the job's parameters", &e))
}

pub(crate) fn params_of<T: for<'de> Deserialize<'de>>(job: &Claimed) -> ApiResult<T> {
    params(job)
}

fn byte_progress(progress: &SharedProgress) -> phony_postgres::Progress {
    let progress = Arc::clone(progress);
    Arc::new(move |bytes| lock(&progress).bytes += bytes)
}

fn set_phase(progress: &SharedProgress, phase: &str) {
    lock(progress).phase = Some(phase.to_owned());
}

/// Records which project holds a snapshot.
pub async fn index(app: &AppState, record: &SnapshotRecord, project: &str) {
    let done = async {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "INSERT INTO snapshot_index (snapshot_id, project_id) VALUES ($1, $2)
                 ON CONFLICT (snapshot_id) DO UPDATE SET project_id = $2",
                &[&record.id.to_string(), &project],
            )
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = done.await {
        tracing::warn!("indexing snapshot {}: {e}", record.id);
    }
}

#[derive(Debug, Deserialize)]
pub struct CreateParams {
    pub name: Option<String>,
    #[serde(default)]
    pub pin: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `manual` when absent; `scheduled`, `sprint-end`, `sync-before`, `sync-after`.
    #[serde(default)]
    pub origin: Option<String>,
}

/// Names to try for an automatic snapshot whose name may be taken: the name, then
/// `name-2`, `name-3` … (shortened to fit).
fn candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    (1..=50).map(move |i| {
        if i == 1 {
            return base.to_owned();
        }
        let suffix = format!("-{i}");
        let room = phony_core::record::MAX_NAME_CHARS.saturating_sub(suffix.len());
        let stem: String = base.chars().take(room).collect();
        format!("{}{suffix}", stem.trim_end_matches('-'))
    })
}

/// Takes a snapshot of `target` into `engine`'s store.
async fn take(
    engine: &Engine,
    target: &phony_postgres::ConnectionTarget,
    create: Create,
    cancel: &Cancel,
    progress: &SharedProgress,
) -> ApiResult<SnapshotRecord> {
    let phases = Arc::clone(progress);
    let opts = CreateOptions {
        progress: Some(byte_progress(progress)),
        phase: Some(Arc::new(move |p| {
            let phase = match p {
                CreatePhase::Locking => "locking",
                CreatePhase::Capturing => "capturing",
                _ => "recording",
            };
            set_phase(&phases, phase);
        })),
        cancel: Some(cancel.clone()),
        notify: Some(Arc::new(|line: &str| tracing::info!("{line}"))),
        application_name: Some("phony-server".into()),
        ..CreateOptions::default()
    };
    engine
        .create(target, create, opts)
        .await
        .map_err(|e| problem::engine(e, &format!("taking a snapshot of {target}")))
}

async fn create(
    app: &AppState,
    project: &Project,
    engine: &Engine,
    job: &Claimed,
    cancel: &Cancel,
    progress: &SharedProgress,
) -> ApiResult<Value> {
    let p: CreateParams = params(job)?;
    let origin = match p.origin.as_deref() {
        Some(o) => Origin::from_str(o)
            .map_err(|_| Problem::internal("reading the job's parameters", &"origin"))?,
        None => Origin::Manual,
    };
    let automatic = crate::retention::is_automatic(origin);
    let target = project.target(app)?;
    // A scheduled or sprint-end snapshot whose name is taken gets a suffix: it never fails
    // for its name.
    let names: Vec<Option<String>> = match (&p.name, origin) {
        (Some(n), Origin::Scheduled | Origin::SprintEnd) => {
            let records = crate::snapshots::records(engine).await?;
            candidates(n)
                .filter(|c| phony_core::resolve::check_name_free(&records, c).is_ok())
                .map(Some)
                .collect()
        }
        (name, _) => vec![name.clone()],
    };
    let mut taken = None;
    for (i, name) in names.iter().enumerate() {
        let name = name
            .as_deref()
            .map(SnapshotName::from_str)
            .transpose()
            .map_err(|e| Problem::invalid("invalid_name", e.to_string()))?;
        let create = Create {
            name,
            pin: p.pin,
            origin,
            labels: p.labels.clone(),
            skip_large_objects: false,
        };
        match take(engine, &target, create, cancel, progress).await {
            Err(e) if e.code == "name_taken" && i + 1 < names.len() => continue,
            other => {
                taken = Some(other?);
                break;
            }
        }
    }
    let record = taken.ok_or_else(|| {
        Problem::conflict(
            "name_taken",
            format!(
                "every name tried from {:?} is taken",
                p.name.as_deref().unwrap_or_default()
            ),
        )
    })?;
    index(app, &record, &project.id).await;
    if automatic {
        app.forget_listing(&project.id);
        crate::retention::after_automatic(app, project).await;
    }
    {
        let mut p = lock(progress);
        p.phase = Some("done".into());
        p.tables = record.stats.tables;
        p.rows = record.stats.rows;
    }
    serde_json::to_value(SnapshotView::of(&record))
        .map_err(|e| Problem::internal("writing the result", &e))
}

#[derive(Debug, Deserialize)]
pub struct RestoreParams {
    pub snapshot_id: String,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub allow_other_database: bool,
    /// The other database's URL, sealed (hex); absent: the project's own database.
    pub secret: Option<String>,
}

/// A job's progress, as the engine reports it.
pub(crate) struct Sink(pub(crate) SharedProgress);

impl ProgressSink for Sink {
    fn step(&self, part: Part, step: Step) {
        let mut p = lock(&self.0);
        let who = match part {
            Part::SafetySnapshot => "safety snapshot: ",
            Part::SyncSource => "source: ",
            _ => "",
        };
        match step {
            Step::Restoring { tables, rows, .. } => {
                p.tables = tables;
                p.rows = rows;
                p.phase = Some("restoring".into());
            }
            Step::Restore(phase) => p.phase = Some(phase.describe().to_owned()),
            Step::Exporting { tables, rows, .. } => {
                p.tables = tables;
                p.rows = rows;
                p.phase = Some("exporting".into());
            }
            Step::Create(CreatePhase::Locking) => p.phase = Some(format!("{who}locking")),
            Step::Create(CreatePhase::Capturing) => p.phase = Some(format!("{who}capturing")),
            _ => p.phase = Some(format!("{who}recording")),
        }
    }

    fn bytes(&self, _part: Part, bytes: u64) {
        lock(&self.0).bytes += bytes;
    }
}

async fn restore(
    app: &AppState,
    project: &Project,
    engine: &Engine,
    job: &Claimed,
    cancel: &Cancel,
    progress: &SharedProgress,
) -> ApiResult<Value> {
    let p: RestoreParams = params(job)?;
    let into = match &p.secret {
        Some(sealed) => {
            let url = crate::secrets::unhex(sealed)
                .and_then(|s| app.key.open(&s).ok())
                .ok_or_else(|| Problem::internal("reading the job's parameters", &"sealed URL"))?;
            Some(crate::projects::parse_url(&url)?)
        }
        None => None,
    };
    let database = project.target(app)?;
    let target = into.clone().unwrap_or_else(|| database.clone());
    let request = RestoreRequest {
        snapshot: p.snapshot_id.clone(),
        into,
        force: p.force,
        dry_run: p.dry_run,
        full: p.full,
        safety_snapshot: true,
        allow_other_database: p.allow_other_database,
        ..RestoreRequest::default()
    };
    let run = run_options(cancel, progress);
    let restored = engine
        .restore(&database, request, run)
        .await
        .map_err(|e| problem::engine(e, &format!("restoring {} into {target}", p.snapshot_id)))?;
    if let Some(s) = &restored.safety {
        index(app, s, &project.id).await;
    }
    {
        let mut pr = lock(progress);
        pr.phase = Some("done".into());
        pr.tables = restored.report.tables;
        pr.rows = restored.report.rows;
    }
    let mut view = RestoreView::of(
        &restored.record,
        target.dbname(),
        restored.created,
        &restored.report,
    );
    view.safety_snapshot = restored.safety.as_ref().map(|s| s.id.to_string());
    serde_json::to_value(view).map_err(|e| Problem::internal("writing the result", &e))
}

/// How a job runs an engine operation: progress into the job's row, the job's cancel,
/// the engine's notices into the log.
pub fn run_options(cancel: &Cancel, progress: &SharedProgress) -> RunOptions {
    RunOptions {
        progress: Some(Arc::new(Sink(Arc::clone(progress)))),
        cancel: Some(cancel.clone()),
        notify: Some(Arc::new(|line: &str| tracing::info!("{line}"))),
        ..RunOptions::default()
    }
}

#[derive(Debug, Deserialize)]
pub struct ExportParams {
    pub snapshot_id: String,
    /// `s3://bucket/key`; absent: a file on this server, downloaded from the job.
    pub destination: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// Where a finished export's file is kept.
pub fn export_path(app: &AppState, job_id: &str) -> std::path::PathBuf {
    app.config
        .data_dir
        .join("exports")
        .join(format!("{job_id}.sql"))
}

async fn export(
    app: &AppState,
    engine: &Engine,
    job: &Claimed,
    cancel: &Cancel,
    progress: &SharedProgress,
) -> ApiResult<Value> {
    let p: ExportParams = params(job)?;
    let (target, compression) = match &p.destination {
        Some(url) => (ExportTarget::S3(url.clone()), Compression::by_name(url)),
        None => {
            let path = export_path(app, &job.id);
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| Problem::internal("creating the exports directory", &e))?;
            }
            (ExportTarget::File(path), Compression::None)
        }
    };
    let opts = ExportOptions {
        compression,
        // The server's own file is new for each job; a destination only when asked.
        force: p.force || p.destination.is_none(),
        ..ExportOptions::default()
    };
    let run = run_options(cancel, progress);
    let exported = engine
        .export(&p.snapshot_id, target, opts, run)
        .await
        .map_err(|e| export_problem(e, p.destination.as_deref()))?;
    let report = &exported.report;
    {
        let mut pr = lock(progress);
        pr.phase = Some("done".into());
        pr.tables = report.tables;
        pr.rows = report.rows;
    }
    let mut result = json!({
        "format": "sql",
        "snapshot_id": p.snapshot_id,
        "tables": report.tables,
        "rows": report.rows,
        "sequences": report.sequences,
        "bytes": report.bytes,
        "written_bytes": exported.written,
    });
    match &p.destination {
        Some(url) => result["destination"] = json!(url),
        None => result["download"] = json!(format!("/api/v1/jobs/{}/download", job.id)),
    }
    Ok(result)
}

/// An export's failure as its answer: a destination that exists is 409
/// `destination_exists`; one that cannot be written 502 `destination_failed` (the cause,
/// which names no secret, in the detail).
fn export_problem(e: phony_engine::Error, destination: Option<&str>) -> Problem {
    use phony_engine::Error as E;
    match (&e, destination) {
        (E::ExportExists { target }, _) => Problem::conflict(
            "destination_exists",
            format!("{target} exists: send \"force\": true to replace it"),
        ),
        (E::ExportWriting { .. }, Some(_)) => Problem::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "destination_failed",
            problem::chain(&e),
        ),
        (E::Store(phony_core::Error::Invalid(_)), Some(_)) => {
            Problem::invalid("invalid_destination", problem::chain(&e))
        }
        _ => problem::engine(e, "exporting the snapshot"),
    }
}
