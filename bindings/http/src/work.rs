//! What each kind of job does: create a snapshot, restore one, export one as SQL.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::Arc;

use bytes::Bytes;
use phony_core::{Origin, SnapshotName, SnapshotRecord};
use phony_engine::report::{RestoreView, SnapshotView};
use phony_engine::{Cancel, Create, CreateOptions, CreatePhase, Engine};
use phony_postgres::{RestoreOptions, RestoreReport};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

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
        other => Err(Problem::internal(
            "running a job",
            &format!("unknown kind {other}"),
        )),
    }
}

async fn project(app: &AppState, id: &str) -> ApiResult<Project> {
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
    let name = p
        .name
        .as_deref()
        .map(SnapshotName::from_str)
        .transpose()
        .map_err(|e| Problem::invalid("invalid_name", e.to_string()))?;
    let target = project.target(app)?;
    let create = Create {
        name,
        pin: p.pin,
        origin: Origin::Manual,
        labels: p.labels,
        skip_large_objects: false,
    };
    let record = take(engine, &target, create, cancel, progress).await?;
    index(app, &record, &project.id).await;
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
    /// The other database's URL, sealed (hex); absent: the project's own database.
    pub secret: Option<String>,
}

async fn snapshot(engine: &Engine, id: &str) -> ApiResult<SnapshotRecord> {
    let records = engine
        .list(&phony_engine::ListFilter::default())
        .await
        .map_err(|e| problem::engine(e, "reading the snapshot records"))?;
    records
        .into_iter()
        .find(|r| r.id.to_string() == id)
        .ok_or_else(|| Problem::not_found("snapshot"))
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
    let record = snapshot(engine, &p.snapshot_id).await?;
    let root = engine
        .store()
        .root(&record.root)
        .await
        .map_err(|e| problem::engine(e.into(), "reading the snapshot"))?;
    let phases = Arc::clone(progress);
    let opts = RestoreOptions {
        force: p.force,
        dry_run: p.dry_run,
        full: p.full,
        point: record.source.point.clone(),
        progress: Some(byte_progress(progress)),
        phase: Some(Arc::new(move |phase: phony_postgres::Phase| {
            set_phase(&phases, phase.describe());
        })),
        ..RestoreOptions::default()
    };
    let fail = |e: phony_postgres::Error, target: &phony_postgres::ConnectionTarget| {
        problem::database(&e, &format!("restoring {} into {}", record.id, target))
    };
    let (target, created, report, safety) = match &p.secret {
        Some(sealed) => {
            let url = crate::secrets::unhex(sealed)
                .and_then(|s| app.key.open(&s).ok())
                .ok_or_else(|| Problem::internal("reading the job's parameters", &"sealed URL"))?;
            let target = crate::projects::parse_url(&url)?;
            let created = !phony_postgres::database_exists(&target)
                .await
                .map_err(|e| fail(e, &target))?;
            set_phase(progress, "restoring");
            let report = if created && p.dry_run {
                RestoreReport {
                    full_reason: Some("a new database".into()),
                    tables: root.tables.len() as u64,
                    rows: root.rows(),
                    bytes: root.bytes(),
                    sequences: root.sequences.len() as u64,
                    dry_run: true,
                    ..Default::default()
                }
            } else if created {
                phony_postgres::restore_into_new(&target, engine.store(), &root, &opts)
                    .await
                    .map_err(|e| fail(e, &target))?
            } else {
                engine
                    .restore_into(&target, &root, opts, Some(cancel))
                    .await
                    .map_err(|e| restore_error(e, &record, &target))?
            };
            (target, created, report, None)
        }
        None => {
            let target = project.target(app)?;
            // The state before is kept as a safety snapshot (it does not count against
            // the plan and expires after 24 hours), so the restore can be undone.
            let safety = if p.dry_run {
                None
            } else {
                let create = Create {
                    name: None,
                    pin: false,
                    origin: Origin::Safety,
                    labels: [("before_restore_of".to_owned(), record.id.to_string())].into(),
                    skip_large_objects: true,
                };
                let taken = take(engine, &target, create, cancel, progress).await?;
                index(app, &taken, &project.id).await;
                Some(taken)
            };
            set_phase(progress, "restoring");
            match engine
                .restore_into(&target, &root, opts, Some(cancel))
                .await
            {
                Ok(report) => (target, false, report, safety),
                Err(e) => {
                    let committed =
                        matches!(&e, phony_engine::Error::Postgres(p) if p.may_have_committed());
                    if let (Some(s), false) = (&safety, committed) {
                        // Nothing changed: the state before is the database's own.
                        if let Err(d) = engine.store().delete_record(&s.id).await {
                            tracing::warn!("removing safety snapshot {}: {d}", s.id);
                        }
                    }
                    return Err(restore_error(e, &record, &target));
                }
            }
        }
    };
    {
        let mut pr = lock(progress);
        pr.phase = Some("done".into());
        pr.tables = report.tables;
        pr.rows = report.rows;
    }
    let mut view = RestoreView::of(&record, target.dbname(), created, &report);
    view.safety_snapshot = safety.as_ref().map(|s| s.id.to_string());
    serde_json::to_value(view).map_err(|e| Problem::internal("writing the result", &e))
}

fn restore_error(
    e: phony_engine::Error,
    record: &SnapshotRecord,
    target: &phony_postgres::ConnectionTarget,
) -> Problem {
    match e {
        phony_engine::Error::Postgres(p) => {
            problem::database(&p, &format!("restoring {} into {target}", record.id))
        }
        other => problem::engine(other, &format!("restoring {} into {target}", record.id)),
    }
}

#[derive(Debug, Deserialize)]
pub struct ExportParams {
    pub snapshot_id: String,
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
    let record = snapshot(engine, &p.snapshot_id).await?;
    let root = engine
        .store()
        .root(&record.root)
        .await
        .map_err(|e| problem::engine(e.into(), "reading the snapshot"))?;
    let path = export_path(app, &job.id);
    let partial = path.with_extension("sql.partial");
    let io = |e: std::io::Error| Problem::internal("writing the export", &e);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
    set_phase(progress, "exporting");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let store = Arc::clone(engine.store());
    let writer = async {
        while let Some(piece) = rx.recv().await {
            file.write_all(&piece).await?;
            lock(progress).bytes += piece.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await
    };
    let producer = async move {
        let report = phony_postgres::export::export_sql(&store, &record, &root, &tx).await;
        drop(tx);
        report
    };
    let both = async { tokio::join!(producer, writer) };
    let (report, written) = tokio::select! {
        biased;
        () = cancel.cancelled() => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(Problem::conflict("cancelled", "the export was cancelled"));
        }
        both = both => both,
    };
    let report =
        report.map_err(|e| Problem::internal("exporting the snapshot", &problem::chain(&e)));
    if let Err(e) = written
        .map_err(io)
        .and(report.as_ref().map(|_| ()).map_err(Clone::clone))
    {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    let report = report?;
    tokio::fs::rename(&partial, &path).await.map_err(io)?;
    {
        let mut pr = lock(progress);
        pr.phase = Some("done".into());
        pr.tables = report.tables;
        pr.rows = report.rows;
    }
    Ok(json!({
        "format": "sql",
        "snapshot_id": p.snapshot_id,
        "tables": report.tables,
        "rows": report.rows,
        "sequences": report.sequences,
        "bytes": report.bytes,
        "download": format!("/api/v1/jobs/{}/download", job.id),
    }))
}
