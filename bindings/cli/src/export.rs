//! `phony snapshot export ID|NAME [-o FILE|s3://…|-] [--format sql]`: a snapshot as a plain
//! SQL script (see `phony_postgres::export`), to stdout, a file or an S3 object, compressed
//! when the name ends in `.zst` or `.gz`.
//!
//! The export itself is the engine's ([`phony_engine::Engine::export`]): a failed export
//! leaves nothing under the name. This command parses and renders.

use std::sync::Arc;

use anyhow::Result;
use clap::{Args, ValueEnum};
use phony_engine::{Compression, Engine, ExportOptions, ExportTarget, Exported, RunOptions};

use crate::context::Context;
use crate::output;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A plain SQL script for psql
    Sql,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Snapshot id, unique id prefix, or name
    #[arg(value_name = "ID|NAME")]
    pub snapshot: String,
    /// Where to write: a file, s3://bucket/key, or - for stdout; compressed when the name
    /// ends in .zst or .gz
    #[arg(short, long, value_name = "FILE|s3://…|-", default_value = "-")]
    pub output: String,
    /// The script's format
    #[arg(long, value_enum, default_value = "sql")]
    pub format: ExportFormat,
    /// Replace the file or object if it exists
    #[arg(long)]
    pub force: bool,
}

pub async fn run(ctx: &Context, args: ExportArgs) -> Result<()> {
    let ExportFormat::Sql = args.format;
    let engine = Engine::from_store(ctx.open_store().await?);
    let (target, compression) = if args.output == "-" {
        (
            ExportTarget::Writer(Box::new(std::io::stdout())),
            Compression::None,
        )
    } else {
        (
            ExportTarget::parse(&args.output)?,
            Compression::by_name(&args.output),
        )
    };
    let opts = ExportOptions {
        compression,
        force: args.force,
        ..ExportOptions::default()
    };
    let run = RunOptions {
        on_damaged: Some(Arc::new(crate::context::warn_damaged)),
        ..RunOptions::default()
    };
    let exported = engine.export(&args.snapshot, target, opts, run).await?;
    print(ctx, &args.output, &exported)
}

fn print(ctx: &Context, output: &str, exported: &Exported) -> Result<()> {
    let (record, report) = (&exported.record, &exported.report);
    if ctx.json && output != "-" {
        output::print_json(&serde_json::json!({
            "snapshot": record.id.to_string(),
            "output": output,
            "tables": report.tables,
            "rows": report.rows,
            "sequences": report.sequences,
            "sql_bytes": report.bytes,
        }))?;
    } else if !ctx.json && output != "-" {
        println!(
            "exported {} to {output}: {} table(s), {} row(s), {} of SQL",
            record.id,
            report.tables,
            report.rows,
            output::size(report.bytes)
        );
    }
    Ok(())
}
