//! `phony snapshot …`

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use phony_core::resolve::{check_name_free, resolve};
use phony_core::{Origin, SnapshotId, SnapshotRecord};
use phony_postgres::{ConnectionTarget, RestoreOptions};
use serde::Serialize;

use crate::cli::{CreateArgs, DeleteArgs, RefArgs, RestoreArgs, SnapshotCommand};
use crate::context::{AppStore, Context};
use crate::output;
use crate::progress::Bar;
use crate::stdout::{out, outln};
use phony_engine::report::{Deleted, RestoreView, SnapshotList, SnapshotShow, SnapshotView};

pub async fn run(ctx: &Context, cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Create(args) => interruptible(create(ctx, args)).await,
        SnapshotCommand::List => list(ctx).await,
        SnapshotCommand::Show(args) => show(ctx, args).await,
        SnapshotCommand::Restore(args) => interruptible(restore(ctx, args)).await,
        SnapshotCommand::Delete(args) => delete(ctx, args).await,
        SnapshotCommand::Prune(args) => crate::prune::prune(ctx, args).await,
        SnapshotCommand::Pin(args) => crate::prune::set_pinned(ctx, &args.snapshot, true).await,
        SnapshotCommand::Unpin(args) => crate::prune::set_pinned(ctx, &args.snapshot, false).await,
        SnapshotCommand::Diff(args) => crate::diff::run(ctx, args).await,
        SnapshotCommand::Timeline(args) => crate::timeline::run(ctx, args).await,
        SnapshotCommand::Export(args) => crate::export::run(ctx, args).await,
    }
}

/// Runs `work` until it ends or Ctrl-C stops it. Stopped, the work is dropped before it
/// commits anything: a restore's transaction rolls back as its connection closes, and a
/// capture's snapshot is never listed (its record is written last). The command then says
/// "interrupted, nothing changed" and exits 130.
async fn interruptible(work: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        // A restore beside its safety snapshot answers Ctrl-C itself (it removes that
        // snapshot): it must not be dropped halfway through.
        if SAFETY_ANSWERS_CTRL_C.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        done = work => done,
        () = interrupted => Err(crate::failure::Cancelled::INTERRUPTED.into()),
    }
}

/// Set once a restore's own Ctrl-C handling (see [`interrupted`]) is in place.
static SAFETY_ANSWERS_CTRL_C: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

async fn create(ctx: &Context, args: CreateArgs) -> Result<()> {
    let target = ctx.target()?;
    let store = match ctx.open_existing_store().await? {
        Some(store) => store,
        // A new store is made only once the database answers: a command that fails
        // leaves nothing behind.
        None => {
            drop(
                target
                    .connect()
                    .await
                    .with_context(|| format!("capturing {target}"))?,
            );
            ctx.open_or_create_store().await?
        }
    };
    if let Some(name) = &args.name {
        check_name_free(&crate::context::records(&store).await?, name.as_str())?;
    }
    let kept = Kept {
        name: args.name,
        pin: args.pin,
        origin: Origin::Manual,
        labels: Default::default(),
        skip_large_objects: args.skip_large_objects,
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
        outln!("{}", record.id)?;
        Ok(())
    }
}

/// What a snapshot's record says of it besides its contents.
pub(crate) struct Kept {
    pub(crate) name: Option<phony_core::SnapshotName>,
    pub(crate) pin: bool,
    pub(crate) origin: Origin,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    /// See [`CaptureOptions::skip_large_objects`].
    pub(crate) skip_large_objects: bool,
}

/// The id a safety snapshot's record is written under, once chosen.
type SafetyId = Arc<std::sync::Mutex<Option<SnapshotId>>>;

/// A snapshot taken beside a restore of the same database.
pub(crate) struct Beside {
    /// See [`CaptureOptions::on_point_fixed`].
    on_point_fixed: Arc<dyn Fn(bool) + Send + Sync>,
    /// This run's own name for the capture's connections, which the restore's `--force`
    /// spares (see [`RestoreOptions::spare`]).
    application_name: String,
    /// Where the snapshot's id is kept just before its record is written.
    chosen: SafetyId,
}

/// Captures `target` and writes the snapshot's record (see [`phony_engine::Engine::create`]),
/// showing its progress.
/// `beside`: see [`Beside`].
pub(crate) async fn take_snapshot(
    ctx: &Context,
    store: &Arc<AppStore>,
    target: &ConnectionTarget,
    kept: Kept,
    beside: Option<Beside>,
) -> Result<SnapshotRecord> {
    let Kept {
        name,
        pin,
        origin,
        labels,
        skip_large_objects,
    } = kept;
    let what = match origin {
        Origin::Safety => format!("safety snapshot: reading {}", target.dbname()),
        _ => format!("reading {}", target.dbname()),
    };
    let bar = Bar::new(!ctx.json, &what);
    let (on_point_fixed, application_name, chosen) = match beside {
        Some(b) => (
            Some(b.on_point_fixed),
            Some(b.application_name),
            Some(b.chosen),
        ),
        None => (None, None, None),
    };
    let create = phony_engine::Create {
        name,
        pin,
        origin,
        labels,
        skip_large_objects,
    };
    let opts = phony_engine::CreateOptions {
        progress: bar.callback(),
        notify: Some(crate::context::notify()),
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
        on_point_fixed,
        application_name,
        chosen,
        ..Default::default()
    };
    let record = phony_engine::Engine::from_store(Arc::clone(store))
        .create(target, create, opts)
        .await?;
    bar.finish();
    Ok(record)
}

async fn list(ctx: &Context) -> Result<()> {
    // No store yet: no snapshots yet (and nothing is created).
    let records = match ctx.open_existing_store().await? {
        Some(store) => crate::context::records(&store).await?,
        None => Vec::new(),
    };
    if ctx.json {
        output::print_json(&SnapshotList::of(&records))
    } else {
        outln!("{}", output::snapshot_list(&records))?;
        Ok(())
    }
}

async fn show(ctx: &Context, args: RefArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = crate::context::records(&store).await?;
    let record = resolve(&records, &args.snapshot)?;
    let root = store
        .root(&record.root)
        .await
        .with_context(|| format!("reading snapshot {}", record.id))?;
    if ctx.json {
        output::print_json(&SnapshotShow::of(record, &root))
    } else {
        out!("{}", output::snapshot_show(record, &root))?;
        Ok(())
    }
}

async fn restore(ctx: &Context, args: RestoreArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let records = crate::context::records(&store).await?;
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
    // In place, the database must be the snapshot's own (--target names its database).
    if args.target.is_none() && !args.allow_other_database {
        if let Some(why) = phony_postgres::other_database(&target, &record.source).await? {
            bail!(
                "not restoring {} into {}: {why}; pass --allow-other-database to replace {} anyway",
                record.label(),
                target.dbname(),
                target.dbname()
            );
        }
    }
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
        phase: bar.phase_callback(),
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
            let committing = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let opts = RestoreOptions {
                committing: Some(Arc::clone(&committing)),
                ..opts
            };
            let chosen = SafetyId::default();
            let both =
                restore_after_safety(ctx, &store, &target, &root, opts, labels, chosen.clone());
            SAFETY_ANSWERS_CTRL_C.store(true, std::sync::atomic::Ordering::SeqCst);
            let (taken, restored) = tokio::select! {
                both = both => both,
                _ = tokio::signal::ctrl_c() => {
                    bar.finish();
                    interrupted(&store, &chosen, &committing).await
                }
            };
            let taken =
                taken.context("taking the safety snapshot (skip it with --no-safety-snapshot)")?;
            if let Err(e) = restored {
                if !e.may_have_committed() {
                    // Nothing changed: the state before is still the database's own.
                    if let Err(d) = store.delete_record(&taken.id).await {
                        tracing::warn!("removing safety snapshot {}: {d}", taken.id);
                    }
                    return Err(anyhow::Error::new(e).context(format!(
                        "restoring {} into {}",
                        record.id,
                        target.dbname()
                    )));
                }
                return Err(anyhow::Error::new(e).context(format!(
                    "restoring {} into {} (it may have been committed: the state before is kept as {})",
                    record.id,
                    target.dbname(),
                    taken.id
                )));
            }
            crate::prune::after_create(&store, taken.id).await.with_context(|| {
                format!("safety snapshot {} was taken, but applying the store's retention policy failed", taken.id)
            })?;
            crate::prune::after_safety(&store, taken.id)
                .await
                .with_context(|| {
                    format!(
                        "safety snapshot {} was taken, but removing older safety snapshots failed",
                        taken.id
                    )
                })?;
            safety = Some(taken);
            restored
        }
    };
    bar.finish();
    let report =
        result.with_context(|| format!("restoring {} into {}", record.id, target.dbname()))?;
    if ctx.json {
        let mut view = RestoreView::of(&record, target.dbname(), created, &report);
        view.safety_snapshot = safety.as_ref().map(|s| s.id.to_string());
        output::print_json(&view)
    } else {
        out!(
            "{}",
            output::restore_summary(&record, target.dbname(), created, &report)
        )?;
        if let Some(hint) = undo_hint(&args, &target, created, safety.as_ref()) {
            outln!("{hint}")?;
        }
        Ok(())
    }
}

/// Ctrl-C during a restore with a safety snapshot: the process ends with exit code 130.
/// Before the restore sent its commit, closing its connection rolls it back, so the safety
/// snapshot of this run (if already written) is removed; after, both are kept.
async fn interrupted(
    store: &Arc<AppStore>,
    chosen: &SafetyId,
    committing: &std::sync::atomic::AtomicBool,
) -> ! {
    if committing.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!(
            "phony: interrupted while committing: the restore may have been committed; \
             the state before is kept as a safety snapshot"
        );
        std::process::exit(130);
    }
    let id = *chosen.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = id {
        // Written, or about to be: its write, already handed to the store, may land a moment
        // after this (on a local disk it finishes on a thread of its own). The record is
        // removed once it exists; a write that failed leaves nothing to remove.
        for _ in 0..50 {
            match store.record(&id).await {
                Ok(Some(_)) => {
                    let _ = store.delete_record(&id).await;
                    break;
                }
                Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(_) => break,
            }
        }
    }
    eprintln!("phony: interrupted, nothing changed");
    std::process::exit(130);
}

/// The line that tells how to undo a restore into `target`: restore its safety snapshot
/// into that same database, or drop the database the restore created.
fn undo_hint(
    args: &RestoreArgs,
    target: &ConnectionTarget,
    created: bool,
    safety: Option<&SnapshotRecord>,
) -> Option<String> {
    if args.dry_run {
        return None;
    }
    if created {
        return Some(format!(
            "{} was created (undo with `dropdb --maintenance-db {} {}`)",
            target.dbname(),
            shell_word(&target.with_dbname("postgres").to_string()),
            shell_word(target.dbname())
        ));
    }
    let s = safety?;
    // The password-free URL: the undo must name the database restored, not the source.
    let database = match &args.target {
        Some(_) => format!("--database {} ", shell_word(&target.to_string())),
        None => String::new(),
    };
    Some(format!(
        "the state before is kept as {} (undo with `phony {database}snapshot restore {}`)",
        s.id, s.id
    ))
}

/// `word`, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    match plain {
        true => word.to_owned(),
        false => format!("'{}'", word.replace('\'', "'\\''")),
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
    chosen: SafetyId,
) -> (
    Result<SnapshotRecord>,
    phony_postgres::Result<phony_postgres::RestoreReport>,
) {
    use futures::FutureExt as _;
    // Unique to this run: `--force` ends every other session, this snapshot's excepted.
    let application_name = format!("phony safety snapshot {:08x}", rand::random::<u32>());
    let opts = RestoreOptions {
        spare: Some(application_name.clone()),
        ..opts
    };
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
            // A restore leaves large objects as they are: its safety snapshot needs none.
            skip_large_objects: true,
        };
        let beside = Beside {
            on_point_fixed,
            application_name,
            chosen,
        };
        let taken = take_snapshot(ctx, store, target, kept, Some(beside)).await;
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
                phase: bar.phase_callback(),
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
            "{}: {e}",
            phony_postgres::error::TASK_FAILED
        )))
    });
    (taken, restored)
}

async fn delete(ctx: &Context, args: DeleteArgs) -> Result<()> {
    let store = ctx.open_store().await?;
    let scan = crate::context::scan_records(&store).await?;
    let record = match resolve(&scan.records, &args.snapshot) {
        Ok(record) => record,
        Err(e @ phony_core::Error::SnapshotNotFound { .. }) => {
            return match scan.damaged_matching(&args.snapshot).as_slice() {
                [] => Err(e.into()),
                [one] => delete_damaged(ctx, &store, one, args.force).await,
                many => bail!(
                    "{:?} matches several damaged records: {}",
                    args.snapshot,
                    many.iter()
                        .map(|d| d.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        Err(e) => return Err(e.into()),
    };
    if record.pinned && !args.force {
        bail!(
            "snapshot {} is pinned; unpin it or pass --force to delete it anyway",
            record.label()
        );
    }
    phony_engine::names::delete_snapshot(&store, record).await?;
    if ctx.json {
        output::print_json(&Deleted {
            deleted: &record.id.to_string(),
        })
    } else {
        outln!("deleted {}", record.label())?;
        Ok(())
    }
}

/// Removes a record that cannot be read, with `--force` (nothing about it can be checked,
/// not even whether it is pinned).
async fn delete_damaged(
    ctx: &Context,
    store: &AppStore,
    damaged: &phony_core::store::DamagedRecord,
    force: bool,
) -> Result<()> {
    if !force {
        bail!(
            "the snapshot record {} cannot be read ({}); pass --force to delete it",
            damaged.key,
            damaged.reason
        );
    }
    store
        .delete_record_key(&damaged.key)
        .await
        .with_context(|| format!("deleting the damaged record {}", damaged.key))?;
    if ctx.json {
        output::print_json(&Deleted {
            deleted: &damaged.key,
        })
    } else {
        println!("deleted the damaged record {}", damaged.key);
        Ok(())
    }
}
