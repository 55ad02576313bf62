//! `phony sync --from URL`: replace the database's contents with another database's
//! current state (masked on the way when asked), with a snapshot on either side.
//!
//! The work is the engine's ([`phony_engine::Engine::sync`]): every check before anything
//! is written, one consistent capture of the source, one transaction into the database.
//! Here the arguments are read and the outcome shown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use phony_core::mask::{MaskKey, MaskRules};
use phony_core::SnapshotRecord;
use phony_engine::{Engine, RunOptions, SyncRequest};
use phony_postgres::ConnectionTarget;
use serde::Serialize;

use crate::context::Context;
use crate::output;
use crate::progress::Bars;
use crate::snapshot::CtrlC;
use crate::stdout::outln;

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
    let rules = match &args.mask {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the masking rules {}", path.display()))?;
            MaskRules::parse(&text).with_context(|| path.display().to_string())?
        }
        None => MaskRules::default(),
    };
    let key = match std::env::var("PHONY_MASK_KEY") {
        Ok(k) if !k.is_empty() => Some(MaskKey::from_passphrase(&k)),
        _ => None,
    };
    let request = SyncRequest {
        rules,
        key,
        before: !(args.no_snapshots || args.no_before),
        after: !(args.no_snapshots || args.no_after),
        lock_timeout: Some(args.lock_timeout),
        force: args.force,
        ..SyncRequest::from(source)
    };
    let store = ctx.open_or_create_store().await?;
    let bars = Bars::new(!ctx.json, target.dbname());
    let ctrl_c = CtrlC::listen();
    let run = RunOptions {
        progress: Some(Arc::clone(&bars) as Arc<dyn phony_engine::ProgressSink>),
        cancel: Some(ctrl_c.cancel.clone()),
        notify: Some(crate::context::notify()),
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
    };
    let done = Engine::from_store(Arc::clone(&store))
        .sync(&target, request, run)
        .await;
    drop(bars);
    let done = done?;
    let synced = Synced {
        sync: done.number,
        database: target.dbname().to_owned(),
        source: done.source.clone(),
        masked_columns: done.masked_columns,
        tables: done.report.tables,
        rows: done.report.rows,
        bytes: done.report.bytes,
        before: done.before.as_ref().map(|r| r.id.to_string()),
        after: done.after.as_ref().map(|r| r.id.to_string()),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if ctx.json {
        return output::print_json(&synced);
    }
    let masked = match synced.masked_columns {
        0 => String::new(),
        1 => ", 1 column masked".to_owned(),
        n => format!(", {n} columns masked"),
    };
    outln!(
        "synced {} from {} (sync #{}{masked}): {} tables, {} rows in {:.1}s",
        synced.database,
        synced.source,
        synced.sync,
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
    phony_engine::sync::next_sync_number(records)
}
