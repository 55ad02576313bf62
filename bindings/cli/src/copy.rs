//! `phony store copy FROM TO [SNAPSHOT…]`: copy snapshots between stores of any kind,
//! sending only the blobs the destination lacks (see `phony_core::copy`).

use anyhow::{Context as _, Result};
use clap::Args;
use phony_core::copy::{copy_snapshots, CopyReport};
use phony_core::resolve::resolve;
use phony_core::StoreConfig;
use serde::Serialize;

use crate::context::{open_or_create_store_at, open_store_at, Context};
use crate::output;
use phony_engine::lease::LockHolder;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The store to copy from: a directory, file:///path or s3://bucket/prefix
    #[arg(value_name = "FROM_STORE")]
    pub from: String,
    /// The store to copy into (created if missing, with the source's parameters)
    #[arg(value_name = "TO_STORE")]
    pub to: String,
    /// Snapshots to copy (id, unique id prefix or name) [default: all of them]
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CopyOutput<'a> {
    from: String,
    to: String,
    #[serde(flatten)]
    report: &'a CopyReport,
}

pub async fn run(ctx: &Context, args: CopyArgs) -> Result<()> {
    let from = open_store_at(&args.from).await?;
    let records = from
        .records()
        .await
        .with_context(|| format!("reading the snapshots of {}", from.describe()))?;
    let mut chosen = Vec::new();
    if args.snapshots.is_empty() {
        // Oldest first, as they were taken.
        chosen.extend(records.iter().rev().cloned());
    } else {
        for reference in &args.snapshots {
            let record = resolve(&records, reference)?;
            if !chosen
                .iter()
                .any(|r: &phony_core::SnapshotRecord| r.id == record.id)
            {
                chosen.push(record.clone());
            }
        }
    }
    // A new destination gets the source's format, chunking and compression (so equal rows
    // give equal chunks in both), not its retention policy.
    let config = StoreConfig {
        retention: None,
        gc: Default::default(),
        ..*from.config()
    };
    let to = open_or_create_store_at(&args.to, config).await?;
    let lock = LockHolder::acquire_create(&to, &crate::context::notify()).await?;
    let mut check = lock.checker();
    let result = copy_snapshots(&from, &to, &chosen, &mut check).await;
    lock.release().await;
    let report = result.with_context(|| {
        format!(
            "copying snapshots from {} to {}",
            from.describe(),
            to.describe()
        )
    })?;
    if ctx.json {
        output::print_json(&CopyOutput {
            from: from.describe(),
            to: to.describe(),
            report: &report,
        })?;
    } else {
        println!(
            "copied {} snapshot(s) to {}{}: sent {} object(s) ({}), skipped {} already there ({})",
            report.copied.len(),
            to.describe(),
            if report.present.is_empty() {
                String::new()
            } else {
                format!(", {} already there", report.present.len())
            },
            report.objects_sent,
            output::size(report.bytes_sent),
            report.objects_skipped,
            output::size(report.bytes_skipped),
        );
    }
    Ok(())
}
