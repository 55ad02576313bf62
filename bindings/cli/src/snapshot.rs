//! `phony snapshot …`

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use phony_core::manifest::MANIFEST_FORMAT;
use phony_core::resolve::{check_name_free, resolve};
use phony_core::{Origin, SnapshotId, SnapshotRecord};
use phony_postgres::{CaptureOptions, ConnectionTarget, RestoreOptions};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::{CreateArgs, DeleteArgs, RefArgs, RestoreArgs, SnapshotCommand};
use crate::context::Context;
use crate::output::{self, SnapshotView, TableView};
use crate::progress::Bar;

pub async fn run(ctx: &Context, cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Create(args) => create(ctx, args).await,
        SnapshotCommand::List => list(ctx).await,
        SnapshotCommand::Show(args) => show(ctx, args).await,
        SnapshotCommand::Restore(args) => restore(ctx, args).await,
        SnapshotCommand::Delete(args) => delete(ctx, args).await,
        SnapshotCommand::Diff(args) => crate::diff::run(ctx, args).await,
    }
}

async fn create(ctx: &Context, args: CreateArgs) -> Result<()> {
    let target = ctx.target()?;
    let store = ctx.open_or_create_store().await?;
    if let Some(name) = &args.name {
        check_name_free(&store.records().await?, name.as_str())?;
    }
    let started = Instant::now();
    let bar = Bar::new(!ctx.json, &format!("capturing {}", target.dbname()));
    let opts = CaptureOptions {
        progress: bar.callback(),
        ..CaptureOptions::default()
    };
    let captured = phony_postgres::capture(&target, &store, &opts)
        .await
        .with_context(|| format!("capturing {target}"))?;
    bar.finish();

    let records = store.records().await?;
    if let Some(name) = &args.name {
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
        name: args.name,
        created_at: OffsetDateTime::now_utc(),
        root: captured.root,
        pinned: args.pin,
        origin: Origin::Manual,
        labels: Default::default(),
        source: captured.source,
        stats,
    };
    store
        .put_record(&record)
        .await
        .context("writing the snapshot record")?;
    if ctx.json {
        output::print_json(&SnapshotView::of(&record))
    } else {
        println!("{}", record.id);
        Ok(())
    }
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
    let created = match &args.target {
        Some(_) => phony_postgres::ensure_database(&target).await?,
        None => false,
    };
    let bar = Bar::new(!ctx.json, &format!("restoring {}", target.dbname()));
    let opts = RestoreOptions {
        lock_timeout: args.lock_timeout,
        force: args.force,
        progress: bar.callback(),
        ..RestoreOptions::default()
    };
    let result = phony_postgres::restore(&target, &store, &root, &opts).await;
    bar.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if created {
                if let Err(drop_err) = phony_postgres::restore::drop_database(&target).await {
                    tracing::warn!("could not drop {}: {drop_err}", target.dbname());
                }
            }
            return Err(anyhow::Error::new(e).context(format!(
                "restoring {} into {}",
                record.id,
                target.dbname()
            )));
        }
    };
    if ctx.json {
        #[derive(Serialize)]
        struct Restored<'a> {
            id: String,
            name: Option<&'a str>,
            database: &'a str,
            created_database: bool,
            tables: u64,
            rows: u64,
            bytes: u64,
            sequences: u64,
            terminated_sessions: u64,
            duration_ms: u64,
        }
        output::print_json(&Restored {
            id: record.id.to_string(),
            name: record.name.as_ref().map(|n| n.as_str()),
            database: target.dbname(),
            created_database: created,
            tables: report.tables,
            rows: report.rows,
            bytes: report.bytes,
            sequences: report.sequences,
            terminated_sessions: report.terminated,
            duration_ms: report.duration.as_millis() as u64,
        })
    } else {
        println!(
            "restored {} into {}{}: {} tables, {} rows, {} sequences in {:.2}s",
            record.label(),
            target.dbname(),
            if created { " (created)" } else { "" },
            report.tables,
            report.rows,
            report.sequences,
            report.duration.as_secs_f64()
        );
        Ok(())
    }
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
