//! `phony store copy FROM TO [SNAPSHOT…]`: copy snapshots between stores of any kind,
//! sending only the blobs the destination lacks (see `phony_core::copy`).

use anyhow::{Context as _, Result};
use clap::Args;
use phony_core::copy::CopyReport;
use phony_engine::{Engine, RunOptions};
use serde::Serialize;

use crate::context::{open_or_create_store_at, open_store_at, Context};
use crate::output;

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
    let from = Engine::from_store(open_store_at(&args.from).await?);
    let to = Engine::from_store(open_or_create_store_at(&args.to, from.copy_config()).await?);
    let (from, to) = (&from, &to);
    let report = from
        .copy(
            to,
            &args.snapshots,
            &RunOptions {
                notify: Some(crate::context::notify()),
                ..RunOptions::default()
            },
        )
        .await
        .with_context(|| {
            format!(
                "copying snapshots from {} to {}",
                from.store().describe(),
                to.store().describe()
            )
        })?;
    let (from, to) = (from.store(), to.store());
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
