//! `phony store …`: integrity, space, configuration.

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets, Cell, CellAlignment, Table};
use phony_core::retention::SafetyRetention;
use phony_core::verify::{Problem, VerifyReport};
use phony_core::{RetentionPolicy, SnapshotId};
use phony_engine::{Engine, RunOptions};

use crate::context::Context;
use crate::output;
use crate::prune::{parse_age, parse_count};
use crate::stdout::{out, outln};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check that every snapshot's manifests and blobs exist (and, with --read-data, match their hashes)
    Verify(VerifyArgs),
    /// Logical against stored bytes, dedup and compression ratios, per-snapshot unique bytes
    Stats,
    /// Show the store's configuration, or set its retention policy and lease period
    Config(ConfigArgs),
    /// Copy snapshots to another store (any kind to any kind), sending only what it lacks
    Copy(crate::copy::CopyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Read every blob and check it against its hash (reads the whole store)
    #[arg(long)]
    pub read_data: bool,
    /// Remove the snapshot records that cannot be read (saying which), so that garbage
    /// collection can run again; records of a newer format are kept
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Retention: keep the N newest snapshots (applied after every create and by prune)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_count)]
    pub keep_last: Option<u32>,
    /// Retention: keep snapshots younger than this, e.g. 30d
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_age)]
    pub expire_after: Option<Duration>,
    /// Remove the store's retention policy
    #[arg(long, conflicts_with_all = ["keep_last", "expire_after"])]
    pub no_retention: bool,
    /// Safety snapshots: keep at most the N newest per database [default: 5]
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_count)]
    pub safety_keep_last: Option<u32>,
    /// Safety snapshots: keep none older than this, e.g. 7d [default: 7d]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_age)]
    pub safety_expire_after: Option<Duration>,
    /// Safety snapshots: no limits (they stay until deleted or pruned)
    #[arg(long, conflicts_with_all = ["safety_keep_last", "safety_expire_after"])]
    pub safety_keep_all: bool,
    /// How long a lock of a process that died blocks others, e.g. 2m
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub lease_ttl: Option<Duration>,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} in {s:?} (examples: 2m, 30s)"))?;
    let max = phony_core::config::GcSettings::MAX_LEASE_TTL_SECS;
    if d.as_secs() < 1 || d.as_secs() > max {
        return Err(format!("must be between 1s and {max}s"));
    }
    Ok(d)
}

pub async fn run(ctx: &Context, cmd: StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Verify(args) => verify(ctx, args).await,
        StoreCommand::Stats => stats(ctx).await,
        StoreCommand::Config(args) => config(ctx, args).await,
        StoreCommand::Copy(args) => crate::copy::run(ctx, args).await,
    }
}

async fn verify(ctx: &Context, args: VerifyArgs) -> Result<()> {
    let engine = Engine::from_store(ctx.open_store().await?);
    let run = RunOptions {
        notify: Some(crate::context::notify()),
        ..Default::default()
    };
    let verified = engine.verify(args.read_data, args.repair, run).await?;
    let report = &verified.report;
    if ctx.json {
        output::print_json(&verified)?;
    } else {
        out!("{}", verify_text(report))?;
    }
    if report.is_clean() {
        return Ok(());
    }
    if !verified.damage_left() {
        if !ctx.json {
            let repaired = verified.removed_records.as_ref().map_or(0, Vec::len);
            outln!(
                "removed {}",
                output::count(repaired, "damaged record", "damaged records")
            )?;
        }
        return Ok(());
    }
    Err(crate::failure::Coded {
        code: "corrupt_store",
        message: format!(
            "the store is damaged: {} and {}; {} of {} cannot be restored",
            output::count(report.damaged_blobs.len(), "blob", "blobs"),
            output::count(report.damaged_records.len(), "record", "records"),
            report.broken_snapshots.len(),
            output::count(report.snapshots, "snapshot", "snapshots")
        ),
    }
    .into())
}

fn verify_text(r: &VerifyReport) -> String {
    let mut out = String::new();
    for d in &r.damaged_blobs {
        let what = match &d.problem {
            Problem::Missing => "missing".to_owned(),
            Problem::Corrupt(reason) => format!("corrupt ({reason})"),
            Problem::MissingBase(base) => format!("undecodable (its delta base {base} is missing)"),
            Problem::MissingMarker(delta) => format!(
                "at risk (delta {delta} has no marker: garbage collection would not keep its base)"
            ),
        };
        let kind = serde_json::to_value(d.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let snaps: Vec<String> = d.snapshots.iter().map(SnapshotId::to_string).collect();
        out += &format!(
            "damaged {kind} blob {} is {what}; needed by {}\n",
            d.id,
            snaps.join(", ")
        );
    }
    for d in &r.damaged_records {
        out += &format!("damaged record {}: {}\n", d.key, d.reason);
    }
    let read = if r.read_data {
        format!(", read and re-hashed {}", output::size(r.bytes_read))
    } else {
        String::new()
    };
    out += &format!(
        "checked {}, {}{read}: {}\n",
        output::count(r.snapshots, "snapshot", "snapshots"),
        output::count(r.blobs, "blob", "blobs"),
        if r.is_clean() {
            "no damage".to_owned()
        } else {
            format!(
                "{} broken",
                output::count(r.broken_snapshots.len(), "snapshot", "snapshots")
            )
        }
    );
    out
}

async fn stats(ctx: &Context) -> Result<()> {
    let engine = Engine::from_store(ctx.open_store().await?);
    // Counted without the records that cannot be read: say which.
    let run = RunOptions {
        on_damaged: Some(std::sync::Arc::new(crate::context::warn_damaged)),
        ..Default::default()
    };
    let s = engine
        .stats(run)
        .await
        .context("if a snapshot is damaged, see `phony store verify`")?;
    if ctx.json {
        return output::print_json(&s);
    }
    let mut text = String::new();
    let mut line = |k: &str, v: String| text += &format!("{k:<22}{v}\n");
    line("snapshots", s.snapshots.to_string());
    line("logical", output::size(s.logical_bytes));
    line(
        "after dedup",
        format!(
            "{} (ratio {:.2})",
            output::size(s.deduplicated_bytes),
            s.dedup_ratio
        ),
    );
    line(
        "after compression",
        format!(
            "{} (ratio {:.2})",
            output::size(s.compressed_bytes),
            s.compression_ratio
        ),
    );
    line("manifests", output::size(s.manifest_bytes));
    line(
        "referenced",
        format!(
            "{} in {} (overall ratio {:.2})",
            output::size(s.referenced_bytes),
            output::count(s.referenced_blobs, "blob", "blobs"),
            s.total_ratio
        ),
    );
    line(
        "stored",
        format!(
            "{} in {}",
            output::size(s.stored_bytes),
            output::count(s.stored_blobs, "blob", "blobs")
        ),
    );
    line(
        "unreferenced",
        format!(
            "{} in {} (freed by `phony snapshot prune`)",
            output::size(s.unreferenced_bytes),
            output::count(s.unreferenced_blobs, "blob", "blobs")
        ),
    );
    if !s.per_snapshot.is_empty() {
        text.push('\n');
        let mut t = Table::new();
        t.load_style(presets::NOTHING);
        t.set_header(["ID", "NAME", "LOGICAL", "REFERENCED", "UNIQUE"].map(Cell::new));
        for u in &s.per_snapshot {
            t.add_row(vec![
                Cell::new(u.id),
                Cell::new(u.name.as_deref().unwrap_or("-")),
                Cell::new(output::size(u.logical_bytes)).set_alignment(CellAlignment::Right),
                Cell::new(output::size(u.referenced_bytes)).set_alignment(CellAlignment::Right),
                Cell::new(output::size(u.unique_bytes)).set_alignment(CellAlignment::Right),
            ]);
        }
        text += &format!("{t}\n");
    }
    out!("{text}")
}

async fn config(ctx: &Context, args: ConfigArgs) -> Result<()> {
    let changing = args.keep_last.is_some()
        || args.expire_after.is_some()
        || args.no_retention
        || args.lease_ttl.is_some()
        || args.safety_keep_last.is_some()
        || args.safety_expire_after.is_some()
        || args.safety_keep_all;
    let store = if changing {
        ctx.open_or_create_store().await?
    } else {
        ctx.open_store().await?
    };
    let mut config = *store.config();
    if changing {
        if args.no_retention {
            config.retention = None;
        }
        if args.keep_last.is_some() || args.expire_after.is_some() {
            let mut policy = config.retention.unwrap_or_default();
            if args.keep_last.is_some() {
                policy.keep_last = args.keep_last;
            }
            if args.expire_after.is_some() {
                policy.expire_after = args.expire_after;
            }
            config.retention = Some(policy);
        }
        if let Some(ttl) = args.lease_ttl {
            config.gc.lease_ttl_secs = ttl.as_secs();
        }
        if args.safety_keep_all {
            config.safety_retention = Some(SafetyRetention::KEEP_ALL);
        }
        if args.safety_keep_last.is_some() || args.safety_expire_after.is_some() {
            let mut limits = config.safety_retention.unwrap_or_default();
            if args.safety_keep_last.is_some() {
                limits.keep_last = args.safety_keep_last;
            }
            if args.safety_expire_after.is_some() {
                limits.expire_after = args.safety_expire_after;
            }
            config.safety_retention = Some(limits);
        }
        store
            .write_config(&config)
            .await
            .context("writing the store's configuration")?;
    }
    if ctx.json {
        return output::print_json(&config);
    }
    outln!("{:<22}{}", "format", config.format)?;
    outln!(
        "{:<22}{}",
        "retention",
        describe_policy(config.retention.as_ref())
    )?;
    outln!(
        "{:<22}{}",
        "safety snapshots",
        describe_safety(&config.safety_retention.unwrap_or_default())
    )?;
    outln!("{:<22}{}s", "lease period", config.gc.lease_ttl_secs)?;
    Ok(())
}

fn describe_safety(limits: &SafetyRetention) -> String {
    let mut rules = Vec::new();
    if let Some(n) = limits.keep_last {
        rules.push(format!("keep the last {n} per database"));
    }
    if let Some(d) = limits.expire_after {
        rules.push(format!("none older than {}", humantime::format_duration(d)));
    }
    if rules.is_empty() {
        return "keep all".into();
    }
    format!("{} (after each restore)", rules.join(", "))
}

fn describe_policy(p: Option<&RetentionPolicy>) -> String {
    let Some(p) = p.filter(|p| !p.is_empty()) else {
        return "none (prune needs --keep-last or --expire-after)".into();
    };
    let mut rules = Vec::new();
    if let Some(n) = p.keep_last {
        rules.push(format!("keep the last {n}"));
    }
    if let Some(d) = p.expire_after {
        rules.push(format!(
            "keep those younger than {}",
            humantime::format_duration(d)
        ));
    }
    rules.join(", ")
}
