//! `phony snapshot …`

use std::sync::Arc;

use anyhow::{Context as _, Result};
use phony_core::resolve::resolve;
use phony_core::{Origin, SnapshotRecord};
use phony_engine::{
    Cancel, Create, Engine, Part, ProgressSink as _, RestoreRequest, Restored, RunOptions,
};
use phony_postgres::ConnectionTarget;
use serde::Serialize;

use crate::cli::{CreateArgs, DeleteArgs, RefArgs, RestoreArgs, SnapshotCommand};
use crate::context::{AppStore, Context};
use crate::output;
use crate::progress::Bars;
use crate::stdout::{out, outln};
use phony_engine::report::{Deleted, RestoreView, SnapshotList, SnapshotShow, SnapshotView};

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
        SnapshotCommand::Timeline(args) => crate::timeline::run(ctx, args).await,
        SnapshotCommand::Export(args) => crate::export::run(ctx, args).await,
    }
}

/// A cancellation handle that Ctrl-C triggers while it lives. The engine stops at its
/// next safe point (a create before its record, a restore before its commit), and the
/// command says "interrupted, nothing changed" and exits 130 (see [`crate::failure`]).
pub(crate) struct CtrlC {
    pub(crate) cancel: Cancel,
    task: tokio::task::JoinHandle<()>,
}

impl CtrlC {
    pub(crate) fn listen() -> Self {
        let cancel = Cancel::new();
        let task = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    cancel.cancel();
                }
            })
        };
        CtrlC { cancel, task }
    }
}

impl Drop for CtrlC {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
    let create = Create {
        name: args.name,
        pin: args.pin,
        origin: Origin::Manual,
        labels: Default::default(),
        skip_large_objects: args.skip_large_objects,
    };
    let created = take_snapshot(ctx, &store, &target, create).await?;
    if ctx.json {
        #[derive(Serialize)]
        struct Created<'a> {
            #[serde(flatten)]
            snapshot: SnapshotView<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retention: Option<&'a phony_engine::AutoPruned>,
        }
        output::print_json(&Created {
            snapshot: SnapshotView::of(&created.record),
            retention: created.retention.as_ref(),
        })
    } else {
        outln!("{}", created.record.id)?;
        Ok(())
    }
}

/// Captures `target` and writes the snapshot's record, then applies the store's retention
/// policy (see [`phony_engine::Engine::create_with_retention`]), showing its progress;
/// Ctrl-C before the record stops it.
pub(crate) async fn take_snapshot(
    ctx: &Context,
    store: &Arc<AppStore>,
    target: &ConnectionTarget,
    create: Create,
) -> Result<phony_engine::Created> {
    let bars = Bars::new(!ctx.json, target.dbname());
    let ctrl_c = CtrlC::listen();
    let opts = phony_engine::CreateOptions {
        progress: Some({
            let bars = Arc::clone(&bars);
            Arc::new(move |n| bars.bytes(Part::Snapshot, n))
        }),
        cancel: Some(ctrl_c.cancel.clone()),
        notify: Some(crate::context::notify()),
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
        ..Default::default()
    };
    let created = Engine::from_store(Arc::clone(store))
        .create_with_retention(target, create, opts)
        .await;
    bars.done(Part::Snapshot);
    Ok(created?)
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
    let engine = Engine::from_store(ctx.open_store().await?);
    let database = ctx.target()?;
    let into = match &args.target {
        Some(url) => Some(ConnectionTarget::parse(Some(url))?),
        None => None,
    };
    let target = into.clone().unwrap_or_else(|| database.clone());
    let request = RestoreRequest {
        snapshot: args.snapshot.clone(),
        into,
        force: args.force,
        dry_run: args.dry_run,
        full: args.full,
        safety_snapshot: !args.no_safety_snapshot,
        allow_other_database: args.allow_other_database,
        lock_timeout: Some(args.lock_timeout),
        labels: Default::default(),
    };
    let bars = Bars::new(!ctx.json, target.dbname());
    let ctrl_c = CtrlC::listen();
    let run = RunOptions {
        progress: Some(bars.clone()),
        cancel: Some(ctrl_c.cancel.clone()),
        notify: Some(crate::context::notify()),
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
    };
    let restored = engine.restore(&database, request, run).await;
    drop(bars);
    let Restored {
        record,
        report,
        created,
        safety,
    } = restored?;
    if ctx.json {
        let mut view = RestoreView::of(&record, target.dbname(), created, &report);
        view.safety_snapshot = safety.as_ref().map(|s| s.id.to_string());
        output::print_json(&view)?;
    } else {
        out!(
            "{}",
            output::restore_summary(&record, target.dbname(), created, &report)
        )?;
        if let Some(hint) = undo_hint(&args, &target, created, safety.as_ref()) {
            outln!("{hint}")?;
        }
    }
    // Ctrl-C came once the commit was sent: the restore ran to its end.
    if ctrl_c.cancel.is_cancelled() {
        return Err(crate::failure::Cancelled::AFTER_COMMIT.into());
    }
    Ok(())
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

async fn delete(ctx: &Context, args: DeleteArgs) -> Result<()> {
    let engine = Engine::from_store(ctx.open_store().await?);
    let run = RunOptions {
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
        ..Default::default()
    };
    let removed = engine.delete(&args.snapshot, args.force, run).await?;
    if ctx.json {
        return output::print_json(&Deleted {
            deleted: &removed.deleted(),
        });
    }
    match removed {
        phony_engine::Removed::Snapshot(record) => outln!("deleted {}", record.label())?,
        phony_engine::Removed::DamagedRecord { key } => outln!("deleted the damaged record {key}")?,
    }
    Ok(())
}
