//! `phony sync --from URL`: replace the database's contents with another database's
//! current state (masked on the way when asked), with a snapshot on either side.
//!
//! The source is read in one consistent capture into the store (its chunks dedupe against
//! earlier syncs), then restored into the database on the full path in one transaction: a
//! sync killed half-way leaves the database as it was, and other sessions stay connected.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use phony_core::mask::{MaskKey, MaskRules};
use phony_core::{Origin, SnapshotRecord};
use phony_postgres::{CaptureOptions, ConnectionTarget, MaskPlan, RestoreOptions};
use serde::Serialize;

use crate::context::Context;
use crate::output;
use crate::progress::Bar;
use crate::snapshot::take_snapshot;
use crate::stdout::outln;
use phony_engine::Create;

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The database to copy from (its password is never printed or stored)
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Masking rules applied to rows on their way (`schema.table.column rule` a line);
    /// the key is $PHONY_MASK_KEY, else a random one per sync
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
    /// Take no snapshot before or after the sync
    #[arg(long)]
    pub no_snapshots: bool,
    /// Take no snapshot before the sync
    #[arg(long)]
    pub no_before: bool,
    /// Take no snapshot after the sync
    #[arg(long)]
    pub no_after: bool,
    /// How long to wait for locks held by other sessions
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
    pub lock_timeout: Duration,
    /// Terminate other sessions of the database first
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Serialize)]
struct Synced {
    sync: u64,
    database: String,
    source: String,
    masked_columns: usize,
    tables: u64,
    rows: u64,
    bytes: u64,
    before: Option<String>,
    after: Option<String>,
    duration_ms: u64,
}

pub async fn run(ctx: &Context, args: SyncArgs) -> Result<()> {
    let started = Instant::now();
    let target = ctx.target()?;
    let source = ConnectionTarget::parse(Some(&args.from)).context("reading --from")?;
    if source.to_string() == target.to_string() {
        bail!("the source and the database are the same ({target})");
    }
    let rules = match &args.mask {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the masking rules {}", path.display()))?;
            MaskRules::parse(&text).with_context(|| path.display().to_string())?
        }
        None => MaskRules::default(),
    };
    let masked_columns = rules.iter().count();

    // Everything that can be checked is checked before anything is written.
    let source_client = source
        .connect()
        .await
        .with_context(|| format!("connecting to the source {source}"))?;
    let target_client = target.connect().await?;
    let (source_version, source_text) =
        phony_postgres::catalog::server_version(&source_client).await?;
    let (target_version, target_text) =
        phony_postgres::catalog::server_version(&target_client).await?;
    if source_version / 10000 != target_version / 10000 {
        bail!(
            "the source runs PostgreSQL {source_text} and {} runs {target_text}: a sync needs the same major version",
            target.dbname()
        );
    }
    let plan = if rules.is_empty() {
        None
    } else {
        let key = match std::env::var("PHONY_MASK_KEY") {
            Ok(k) if !k.is_empty() => MaskKey::from_passphrase(&k),
            _ => MaskKey::new(rand::random()),
        };
        Some(std::sync::Arc::new(
            MaskPlan::prepare(&source_client, rules, key).await?,
        ))
    };
    drop((source_client, target_client));

    let store = ctx.open_or_create_store().await?;
    let number = next_sync_number(&crate::context::records(&store).await?);
    let labels: BTreeMap<String, String> = [
        ("sync".to_owned(), number.to_string()),
        ("source".to_owned(), source.to_string()),
    ]
    .into();
    let kept = |origin| Create {
        name: None,
        pin: false,
        origin,
        labels: labels.clone(),
        skip_large_objects: false,
    };
    let before = if args.no_snapshots || args.no_before {
        None
    } else {
        Some(
            take_snapshot(ctx, &store, &target, kept(Origin::SyncBefore))
                .await
                .context("taking the snapshot before the sync (skip it with --no-before)")?
                .record,
        )
    };

    // The source's chunks are kept from garbage collection by a create lock until the
    // database holds them.
    let lock =
        phony_engine::lease::LockHolder::acquire_create(&store, &crate::context::notify()).await?;
    let bar = Bar::new(!ctx.json, &format!("reading {}", source.dbname()));
    let captured = phony_postgres::capture(
        &source,
        &store,
        &CaptureOptions {
            incremental: false,
            read_only: true,
            mask: plan,
            progress: bar.callback(),
            ..CaptureOptions::default()
        },
    )
    .await
    .with_context(|| format!("reading the source {source}"))?;
    bar.finish();
    lock.check()?;
    let bar = Bar::new(!ctx.json, &format!("loading into {}", target.dbname()));
    let report = phony_postgres::restore(
        &target,
        &store,
        &captured.manifest,
        &RestoreOptions {
            lock_timeout: args.lock_timeout,
            force: args.force,
            full: true,
            progress: bar.callback(),
            ..RestoreOptions::default()
        },
    )
    .await
    .with_context(|| {
        format!(
            "loading the source into {} (nothing changed)",
            target.dbname()
        )
    })?;
    bar.finish();
    lock.release().await;

    let after = if args.no_snapshots || args.no_after {
        None
    } else {
        Some(
            take_snapshot(ctx, &store, &target, kept(Origin::SyncAfter))
                .await
                .context("the sync is done, but taking the snapshot after it failed")?
                .record,
        )
    };
    let synced = Synced {
        sync: number,
        database: target.dbname().to_owned(),
        source: source.to_string(),
        masked_columns,
        tables: report.tables,
        rows: report.rows,
        bytes: report.bytes,
        before: before.as_ref().map(|r| r.id.to_string()),
        after: after.as_ref().map(|r| r.id.to_string()),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if ctx.json {
        return output::print_json(&synced);
    }
    let masked = match masked_columns {
        0 => String::new(),
        1 => ", 1 column masked".to_owned(),
        n => format!(", {n} columns masked"),
    };
    outln!(
        "synced {} from {} (sync #{}{masked}): {} tables, {} rows in {:.1}s",
        synced.database,
        synced.source,
        number,
        synced.tables,
        synced.rows,
        started.elapsed().as_secs_f64()
    )?;
    if let Some(b) = &synced.before {
        outln!("before: {b} (undo with: phony snapshot restore {b})")?;
    }
    if let Some(a) = &synced.after {
        outln!("after:  {a}")?;
    }
    Ok(())
}

/// One more than the highest sync number any snapshot of `records` carries.
pub(crate) fn next_sync_number(records: &[SnapshotRecord]) -> u64 {
    records
        .iter()
        .filter_map(|r| r.labels.get("sync")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1
}
