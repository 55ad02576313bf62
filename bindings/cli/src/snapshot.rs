//! `phony snapshot …`

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use phony_core::manifest::MANIFEST_FORMAT;
use phony_core::resolve::{check_name_free, resolve};
use phony_core::{Origin, SnapshotId, SnapshotRecord};
use phony_postgres::{CaptureOptions, ConnectionTarget, RestoreOptions};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::{CreateArgs, DeleteArgs, RefArgs, RestoreArgs, SnapshotCommand};
use crate::context::{AppStore, Context};
use crate::output::{self, SnapshotView, TableView};
use crate::progress::Bar;

pub async fn run(ctx: &Context, cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Create(args) => create(ctx, args).await,
        SnapshotCommand::List => list(ctx).await,
        SnapshotCommand::Show(args) => show(ctx, args).await,
        SnapshotCommand::Restore(args) => restore(ctx, args).await,
        SnapshotCommand::Delete(args) => delete(ctx, args).await,
        SnapshotCommand::Prune(args) => crate::prune::prune(ctx, args).await,
        SnapshotCommand::Pin(args) => crate::prune::set_pinned(ctx, &args.snapshot, true).await,
        SnapshotCommand::Unpin(args) => crate::prune::set_pinned(ctx, &args.snapshot, false).await,
        SnapshotCommand::Diff(args) => crate::diff::run(ctx, args).await,
        SnapshotCommand::Export(args) => crate::export::run(ctx, args).await,
    }
}

async fn create(ctx: &Context, args: CreateArgs) -> Result<()> {
    let target = ctx.target()?;
    let store = ctx.open_or_create_store().await?;
    if let Some(name) = &args.name {
        check_name_free(&store.records().await?, name.as_str())?;
    }
    let kept = Kept {
        name: args.name,
        pin: args.pin,
        origin: Origin::Manual,
        labels: Default::default(),
    };
    let record = take_snapshot(ctx, &store, &target, kept, None).await?;
    let retention = crate::prune::after_create(&store, record.id)
        .await
        .with_context(|| {
            format!(
                "snapshot {} was created, but applying the store's retention policy failed",
                record.id
            )
        })?;
    if ctx.json {
        #[derive(Serialize)]
        struct Created<'a> {
            #[serde(flatten)]
            snapshot: SnapshotView<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retention: Option<crate::prune::AutoPruned>,
        }
        output::print_json(&Created {
            snapshot: SnapshotView::of(&record),
            retention,
        })
    } else {
        println!("{}", record.id);
        Ok(())
    }
}

/// What a snapshot's record says of it besides its contents.
struct Kept {
    name: Option<phony_core::SnapshotName>,
    pin: bool,
    origin: Origin,
    labels: std::collections::BTreeMap<String, String>,
}

/// Captures `target` and writes the snapshot's record, under the store's create lock (so no
/// garbage collection deletes a blob the snapshot is about to reference).
/// `on_point_fixed`: see [`CaptureOptions::on_point_fixed`].
async fn take_snapshot(
    ctx: &Context,
    store: &Arc<AppStore>,
    target: &ConnectionTarget,
    kept: Kept,
    on_point_fixed: Option<Arc<dyn Fn(bool) + Send + Sync>>,
) -> Result<SnapshotRecord> {
    let Kept {
        name,
        pin,
        origin,
        labels,
    } = kept;
    let lock = crate::lease::LockHolder::acquire_create(store).await?;
    let started = Instant::now();
    let bar = Bar::new(!ctx.json, &format!("capturing {}", target.dbname()));
    let opts = CaptureOptions {
        progress: bar.callback(),
        on_point_fixed,
        ..CaptureOptions::default()
    };
    let captured = phony_postgres::capture(target, store, &opts)
        .await
        .with_context(|| format!("capturing {target}"))?;
    bar.finish();

    let records = store.records().await?;
    if let Some(name) = &name {
        // Another snapshot may have taken the name while this one was captured.
        check_name_free(&records, name.as_str())?;
    }
    let id = loop {
        let id = SnapshotId::from_random(rand::random());
        if !records.iter().any(|r| r.id == id) {
            break id;
        }
    };
    let mut stats = captured.stats;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let record = SnapshotRecord {
        format: MANIFEST_FORMAT,
        id,
        name,
        created_at: OffsetDateTime::now_utc(),
        root: captured.root,
        pinned: pin,
        origin,
        labels,
        source: captured.source,
        stats,
    };
    lock.check()?;
    store
        .put_record(&record)
        .await
        .context("writing the snapshot record")?;
    lock.release().await;
    Ok(record)
}

async fn list(ctx: &Context) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = store.records().await?;
    if ctx.json {
        #[derive(Serialize)]
        struct List<'a> {
            snapshots: Vec<SnapshotView<'a>>,
        }
        output::print_json(&List {
            snapshots: records.iter().map(SnapshotView::of).collect(),
        })
    } else {
        println!("{}", output::snapshot_list(&records));
        Ok(())
    }
}

async fn show(ctx: &Context, args: RefArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = store.records().await?;
    let record = resolve(&records, &args.snapshot)?;
    let root = store
        .root(&record.root)
        .await
        .with_context(|| format!("reading snapshot {}", record.id))?;
    if ctx.json {
        #[derive(Serialize)]
        struct Show<'a> {
            #[serde(flatten)]
            snapshot: SnapshotView<'a>,
            table_list: Vec<TableView<'a>>,
            sequence_list: &'a [phony_core::SequenceState],
        }
        let table_list = root
            .tables
            .iter()
            .map(|t| TableView {
                schema: &t.table.schema,
                name: &t.table.name,
                rows: t.content.rows,
                bytes: t.content.bytes,
                key: &t.key,
            })
            .collect();
        output::print_json(&Show {
            snapshot: SnapshotView::of(record),
            table_list,
            sequence_list: &root.sequences,
        })
    } else {
        print!("{}", output::snapshot_show(record, &root));
        Ok(())
    }
}

async fn restore(ctx: &Context, args: RestoreArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = store.records().await?;
    let record = resolve(&records, &args.snapshot)?.clone();
    let root = store
        .root(&record.root)
        .await
        .with_context(|| format!("reading snapshot {}", record.id))?;
    let target = match &args.target {
        Some(url) => ConnectionTarget::parse(Some(url))?,
        None => ctx.target()?,
    };
    // A --target that does not exist yet is built beside the source, in parallel.
    let created = match &args.target {
        Some(_) => !phony_postgres::database_exists(&target).await?,
        None => false,
    };
    // The current state is kept first as an automatic snapshot, so this restore can be
    // undone too; the restore then shows its progress from when it starts.
    let safety_first = !(created || args.dry_run || args.no_safety_snapshot);
    let bar = Bar::new(
        !ctx.json && !safety_first,
        &format!("restoring {}", target.dbname()),
    );
    let opts = RestoreOptions {
        lock_timeout: args.lock_timeout,
        force: args.force,
        progress: bar.callback(),
        dry_run: args.dry_run,
        full: args.full,
        // Without tracking, rows written before the capture need no comparison.
        point: record.source.point.clone(),
        ..RestoreOptions::default()
    };
    let mut safety = None;
    let result = match (created, args.dry_run) {
        (true, false) => phony_postgres::restore_into_new(&target, &store, &root, &opts).await,
        (true, true) => Ok(phony_postgres::RestoreReport {
            full_reason: Some("a new database".into()),
            tables: root.tables.len() as u64,
            rows: root.rows(),
            bytes: root.bytes(),
            sequences: root.sequences.len() as u64,
            dry_run: true,
            ..Default::default()
        }),
        // A dry run never takes a safety snapshot.
        (false, _) if !safety_first => phony_postgres::restore(&target, &store, &root, &opts).await,
        (false, _) => {
            let labels = [("before_restore_of".to_owned(), record.id.to_string())].into();
            let (taken, restored) =
                restore_after_safety(ctx, &store, &target, &root, opts, labels).await;
            let taken =
                taken.context("taking the safety snapshot (skip it with --no-safety-snapshot)")?;
            crate::prune::after_create(&store, taken.id).await.with_context(|| {
                format!("safety snapshot {} was taken, but applying the store's retention policy failed", taken.id)
            })?;
            safety = Some(taken);
            restored
        }
    };
    bar.finish();
    let report =
        result.with_context(|| format!("restoring {} into {}", record.id, target.dbname()))?;
    if ctx.json {
        let mut view = output::RestoreView::of(&record, target.dbname(), created, &report);
        view.safety_snapshot = safety.as_ref().map(|s| s.id.to_string());
        output::print_json(&view)
    } else {
        print!(
            "{}",
            output::restore_summary(&record, target.dbname(), created, &report)
        );
        if let Some(s) = &safety {
            println!(
                "the state before is kept as {} (undo with `phony snapshot restore {}`)",
                s.id, s.id
            );
        }
        Ok(())
    }
}

/// Takes the safety snapshot of `target`, and restores `root` into it once that snapshot's
/// point in time is fixed: while an incremental snapshot (a quick one) is being completed,
/// the restore already runs, and it commits only after the snapshot is stored (see
/// [`RestoreOptions::gate`]); a snapshot that reads every table is completed first, so that
/// the restore's locks do not wait for it. Returns the snapshot, and the restore's result
/// (an error, never run, when the snapshot failed).
async fn restore_after_safety(
    ctx: &Context,
    store: &Arc<AppStore>,
    target: &ConnectionTarget,
    root: &phony_core::RootManifest,
    opts: RestoreOptions,
    labels: std::collections::BTreeMap<String, String>,
) -> (
    Result<SnapshotRecord>,
    phony_postgres::Result<phony_postgres::RestoreReport>,
) {
    use futures::FutureExt as _;
    let (fixed_tx, fixed_rx) = tokio::sync::oneshot::channel::<bool>();
    let fixed_tx = std::sync::Mutex::new(Some(fixed_tx));
    let on_point_fixed: Arc<dyn Fn(bool) + Send + Sync> = Arc::new(move |incremental| {
        if let Some(tx) = fixed_tx.lock().ok().and_then(|mut tx| tx.take()) {
            tracing::debug!("the safety snapshot fixed its point (incremental: {incremental})");
            let _ = tx.send(incremental);
        }
    });
    // The snapshot's outcome, once known.
    let (done_tx, done_rx) = tokio::sync::watch::channel(None::<Result<(), String>>);
    let capture = async {
        let kept = Kept {
            name: None,
            pin: false,
            origin: Origin::Safety,
            labels,
        };
        let taken = take_snapshot(ctx, store, target, kept, Some(on_point_fixed)).await;
        let _ = done_tx.send(Some(
            taken
                .as_ref()
                .map(|_| ())
                .map_err(|e| format!("the safety snapshot failed: {e:#}")),
        ));
        taken
    };
    // A task of its own: the capture's work in this task does not hold it up.
    let restore = {
        let (target, store, root, json) =
            (target.clone(), Arc::clone(store), root.clone(), ctx.json);
        tokio::spawn(async move {
            let mut done = done_rx;
            let outcome = async move {
                match done.wait_for(Option::is_some).await {
                    Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
                    Err(_) => Err("the safety snapshot was abandoned".to_owned()),
                }
            }
            .boxed()
            .shared();
            let not_run = |why: String| Err(phony_postgres::Error::Internal(why));
            match fixed_rx.await {
                // The snapshot failed before it fixed its point: no restore.
                Err(_) => return not_run("the safety snapshot failed".to_owned()),
                Ok(true) => {}
                Ok(false) => {
                    if let Err(why) = outcome.clone().await {
                        return not_run(why);
                    }
                }
            }
            tracing::debug!("restoring beside the safety snapshot");
            let bar = Bar::new(!json, &format!("restoring {}", target.dbname()));
            let opts = RestoreOptions {
                gate: Some(outcome),
                progress: bar.callback(),
                ..opts
            };
            let restored = phony_postgres::restore(&target, &store, &root, &opts).await;
            bar.finish();
            restored
        })
    };
    let (taken, restored) = tokio::join!(capture, restore);
    let restored = restored.unwrap_or_else(|e| {
        Err(phony_postgres::Error::Internal(format!(
            "the restore task failed: {e}"
        )))
    });
    (taken, restored)
}

async fn delete(ctx: &Context, args: DeleteArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = store.records().await?;
    let record = resolve(&records, &args.snapshot)?;
    if record.pinned && !args.force {
        bail!(
            "snapshot {} is pinned; unpin it or pass --force to delete it anyway",
            record.label()
        );
    }
    store.delete_record(&record.id).await?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "deleted": record.id.to_string() }))
    } else {
        println!("deleted {}", record.label());
        Ok(())
    }
}
