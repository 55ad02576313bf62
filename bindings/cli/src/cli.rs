//! The command line, as scripts and the HTTP service rely on it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use phony_core::SnapshotName;

/// Snapshot a PostgreSQL database and roll it back in seconds.
#[derive(Debug, Parser)]
#[command(name = "phony", version, about, propagate_version = true)]
pub struct Cli {
    /// Database to snapshot or restore [default: $PHONY_DATABASE_URL, $DATABASE_URL, then libpq's PG* variables]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "PHONY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database: Option<String>,

    /// Where snapshots are stored: a directory, file:///path or s3://bucket/prefix (credentials from AWS_*)
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "PHONY_STORE",
        default_value = ".phony"
    )]
    pub store: String,

    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect, restore and delete snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Check the store's integrity, measure it, configure it
    #[command(subcommand)]
    Store(crate::store_cmd::StoreCommand),
    /// Change tracking: log which rows change, so restores read only those
    #[command(subcommand)]
    Track(TrackCommand),
    /// Replace the database's contents with another database's (masked), with snapshots before and after
    Sync(crate::sync::SyncArgs),
    /// Snapshot, run a command, snapshot again, and exit with the command's status
    Run(crate::run::RunArgs),
    /// Print a shell completion script, e.g. `phony completions bash > ~/.local/share/bash-completion/completions/phony`
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `phony man > ~/.local/share/man/man1/phony.1`
    Man,
    /// Run the REST service: projects, API tokens, plan limits and jobs over HTTP
    Serve(crate::serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum TrackCommand {
    /// Install tracking (triggers, and a schema named `phony`; needs a superuser)
    On,
    /// Remove tracking and everything it installed
    Off,
    /// Show whether tracking is on, what it covers and how much it has logged
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of the database; prints its id
    Create(CreateArgs),
    /// List snapshots, newest first
    List,
    /// Show one snapshot: its tables, rows and sizes
    Show(RefArgs),
    /// Make the database (or --target) exactly as it was at a snapshot
    Restore(RestoreArgs),
    /// Delete a snapshot record (its data is shared and stays until garbage collection)
    Delete(DeleteArgs),
    /// Remove snapshots by a retention policy, then the data no snapshot needs any more
    Prune(crate::prune::PruneArgs),
    /// Keep a snapshot whatever a retention policy says
    Pin(RefArgs),
    /// Let retention policies remove a snapshot again
    Unpin(RefArgs),
    /// Draw the snapshots on a time axis, oldest first, up to the database as it is now
    Timeline(crate::timeline::TimelineArgs),
    /// Show what changed between two snapshots, or from a snapshot to the database now
    Diff(crate::diff::DiffArgs),
    /// Write a snapshot as a plain SQL script that psql loads into an empty database
    Export(crate::export::ExportArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A unique name to refer to the snapshot by (letters, digits, '.', '_', '-')
    #[arg(long)]
    pub name: Option<SnapshotName>,
    /// Keep this snapshot whatever a retention policy says
    #[arg(long)]
    pub pin: bool,
    /// Snapshot a database that holds large objects (pg_largeobject), without them:
    /// snapshots never hold large objects, and restores leave them as they are
    #[arg(long)]
    pub skip_large_objects: bool,
}

#[derive(Debug, Args)]
pub struct RefArgs {
    /// Snapshot id, unique id prefix, or name
    #[arg(value_name = "ID|NAME")]
    pub snapshot: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique id prefix, or name
    #[arg(value_name = "ID|NAME")]
    pub snapshot: String,
    /// Restore into this database instead (created if missing); the source is untouched
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Terminate other sessions connected to the database first
    #[arg(long)]
    pub force: bool,
    /// How long to wait for other sessions' locks, e.g. 5s, 500ms, 1m
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Show what would change (tables; rows to delete, insert, update) without changing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Replace every schema from the snapshot even when only rows changed
    #[arg(long)]
    pub full: bool,
    /// Do not first keep the database's current state as an automatic snapshot
    #[arg(long)]
    pub no_safety_snapshot: bool,
    /// Restore even when the database is not the one the snapshot was taken of
    #[arg(long)]
    pub allow_other_database: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Snapshot id, unique id prefix, or name
    #[arg(value_name = "ID|NAME")]
    pub snapshot: String,
    /// Delete even a pinned snapshot
    #[arg(long)]
    pub force: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5s, 500ms, 2m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}
