//! The plan of a restore: what it is asked to do, the path it takes (the live schema's
//! verdict decides), and what it reports.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use phony_core::diff::schema::SchemaChange;
use phony_core::{CapturePoint, QualifiedName};

use crate::connect::ConnectionTarget;
use crate::error::{Error, Result};
use crate::read::chunk_stream::Progress;
use crate::read::schema_dump::{normalize, PgDump};

/// How to restore.
#[derive(Clone)]
pub struct RestoreOptions {
    /// How long to wait for other sessions' locks before giving up.
    pub lock_timeout: Duration,
    /// Terminate other sessions connected to the database first.
    pub force: bool,
    /// Sessions with this `application_name` are this caller's own (a safety snapshot
    /// being taken beside the restore): `force` leaves them alone.
    pub spare: Option<String>,
    /// Chunks fetched and decoded ahead of the load.
    pub prefetch: usize,
    /// Called as rows are loaded.
    pub progress: Option<Progress>,
    /// Told the steps of the restore as it reaches them.
    pub phase: Option<crate::PhaseReport>,
    /// Work out and report what would change, then roll back.
    pub dry_run: bool,
    /// Always take the full path (replace every schema), even when the schema is unchanged.
    pub full: bool,
    /// Connections loading a new database in parallel.
    pub parallel: usize,
    /// Sequences are set back with `ALTER SEQUENCE … RESTART`, which the restore's rollback
    /// undoes, but which gives the sequence a new file: its commit then waits for the WAL
    /// flush whatever `synchronous_commit` says (2–5 ms on an ordinary disk). Without,
    /// `setval` sets them near the end of the restore's transaction: a restore that fails
    /// after that leaves its sequences set to the snapshot's values (the rows untouched),
    /// until the next restore. The testkit, which resets again before the next test
    /// anyway, takes that trade; the default keeps restores atomic.
    pub transactional_sequences: bool,
    /// The snapshot's capture point, from its record: without change tracking, rows written
    /// before it need not be compared (see [`RowAges`]).
    pub point: Option<CapturePoint>,
    /// Awaited before the restore drops anything, refreshes materialized views, records its
    /// mark or commits: a snapshot of the state before, taken meanwhile, must be complete
    /// by then (its readers' locks would otherwise wait on those steps, or they on it). An
    /// error rolls the restore back.
    pub gate: Option<Gate>,
    /// Set just before the restore sends its `COMMIT`: until then, stopping the process
    /// (the connection closes) leaves the database as it was; from then on the restore
    /// may have been committed.
    pub committing: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Asked just before [`committing`](Self::committing) is set: `true` rolls the restore
    /// back and answers [`Error::Cancelled`]. A caller that stops the restore from
    /// outside (dropping it) cannot act while the restore runs without yielding, so the
    /// restore asks too, and a stop asked before the commit always wins.
    pub stop: Option<Stop>,
}

/// See [`RestoreOptions::stop`].
pub type Stop = Arc<dyn Fn() -> bool + Send + Sync>;

/// Whether the restore was asked to stop before its commit.
pub(crate) fn stopped(opts: &RestoreOptions) -> bool {
    opts.stop.as_ref().is_some_and(|stop| stop())
}

/// See [`RestoreOptions::gate`]: `Err` says why the restore must not go on.
pub type Gate = Shared<BoxFuture<'static, std::result::Result<(), String>>>;

/// Waits for the gate, if any.
pub(crate) async fn gate_open(opts: &RestoreOptions) -> Result<()> {
    match &opts.gate {
        None => Ok(()),
        Some(gate) => gate.clone().await.map_err(Error::Internal),
    }
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("lock_timeout", &self.lock_timeout)
            .field("force", &self.force)
            .finish()
    }
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            lock_timeout: Duration::from_secs(5),
            force: false,
            spare: None,
            prefetch: 8,
            progress: None,
            phase: None,
            dry_run: false,
            full: false,
            parallel: 2,
            transactional_sequences: true,
            point: None,
            gate: None,
            committing: None,
            stop: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Which way the database was brought to the snapshot's state.
    pub path: RestorePath,
    /// Why the full path was taken, when it was (after a schema change: which object kept
    /// the targeted schema path from undoing it).
    pub full_reason: Option<String>,
    /// Full path: tables loaded. Delta path: tables rewritten.
    pub tables: u64,
    /// Full path: rows loaded. Delta path: rows deleted + inserted + updated.
    pub rows: u64,
    pub bytes: u64,
    pub sequences: u64,
    /// Delta path: what changed, per table that differed.
    pub changes: Vec<TableRewrite>,
    /// Whether the live schema differed from the snapshot's (`None`: not checked, as with
    /// `full`, or the check failed).
    pub schema_changed: Option<bool>,
    /// When it differed: the schema objects the full path drops (`Dropped`), creates
    /// (`Added`) or replaces (`Altered`), from the live schema to the snapshot's.
    pub schema_changes: Vec<SchemaChange>,
    /// The change log said what changed since the database held the snapshot (so the
    /// schema did not change): no schema comparison was needed.
    pub tracked: bool,
    /// Delta path: what rows' ages spared the content comparison; `None` when the snapshot
    /// has no capture point, it could not be trusted here, or no table needed comparing.
    pub row_ages: Option<RowAges>,
    /// Sessions terminated because of `force`.
    pub terminated: u64,
    /// Nothing was changed: the work was rolled back.
    pub dry_run: bool,
    pub duration: Duration,
}

/// How the capture's point in time narrowed a content comparison: rows written before it
/// are the snapshot's, so only tables and chunks holding newer rows (or missing some) are
/// compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowAges {
    /// Tables whose rows' ages were read.
    pub tables: u64,
    /// Of those, tables found equal to the snapshot without comparing any row.
    pub unchanged_tables: u64,
    /// Tables whose whole content was compared instead (no usable key, or ages that could
    /// not be read).
    pub content_tables: u64,
    /// Snapshot chunks of the tables decided by ages.
    pub chunks: u64,
    /// Of those, chunks whose rows were compared.
    pub compared_chunks: u64,
    /// Of those, chunks compared without reading their unchanged rows back: a table with
    /// an integer key is told which rows it lacks by the counts and XORs of its keys.
    pub summed_chunks: u64,
}

/// How a restore reached the snapshot's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestorePath {
    /// Every user schema replaced from the snapshot.
    #[default]
    Full,
    /// Only differing rows rewritten (the schema was unchanged).
    Delta,
    /// Only the schema objects that differ (and what depends on them) rewritten, the
    /// tables re-created among them reloaded, every other table's differing rows rewritten.
    Schema,
}

impl RestorePath {
    pub fn as_str(self) -> &'static str {
        match self {
            RestorePath::Full => "full",
            RestorePath::Delta => "delta",
            RestorePath::Schema => "schema",
        }
    }
}

/// The comparison of the live schema with the snapshot's, shared by the delta path (which
/// waits for it before its first write) and the caller (which reports it): `Ok(None)`
/// when they are the same, else why not.
pub(crate) type SchemaCheck<'a> =
    Shared<BoxFuture<'a, std::result::Result<Option<Differs>, String>>>;

/// How the live schema differs from the snapshot's.
#[derive(Debug, Clone)]
pub(crate) struct Differs {
    pub(crate) why: String,
    /// The objects that differ, from the live schema to the snapshot's.
    pub(crate) changes: Vec<SchemaChange>,
    /// The live schema's pre-data and post-data DDL (the targeted schema path's input).
    pub(crate) live_pre: String,
    pub(crate) live_post: String,
}

/// Waits for the schema's verdict, when it is being compared: the delta path writes only
/// once the live schema is known to be the snapshot's.
pub(crate) async fn schema_agrees(schema: Option<&SchemaCheck<'_>>) -> Result<()> {
    match schema {
        None => Ok(()),
        Some(check) => match check.clone().await {
            Ok(None) => Ok(()),
            Ok(Some(Differs { why, .. })) | Err(why) => Err(Error::Internal(why)),
        },
    }
}

/// How the live schema differs from the snapshot's, or `None` when it is the same.
pub(crate) async fn schema_difference(
    target: &ConnectionTarget,
    version: u32,
    pre_data: &str,
    post_data: &str,
) -> Result<Option<Differs>> {
    let pg_dump = PgDump::find(version / 10000).await?;
    let (live_pre, live_post) = pg_dump.dump_sections(target, None).await?;
    let why = if normalize(&live_pre) != normalize(pre_data) {
        "the schema changed since the snapshot"
    } else if normalize(&live_post) != normalize(post_data) {
        "keys, indexes or triggers changed since the snapshot"
    } else {
        return Ok(None);
    };
    // Object by object, as `diff` shows them (pg_dump's headers name the objects; its
    // `\restrict` lines are not SQL).
    let script = |pre: &str, post: &str| -> String {
        pre.lines()
            .chain(post.lines())
            .filter(|l| !l.starts_with('\\'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let live = script(&live_pre, &live_post);
    let snapshot = script(pre_data, post_data);
    Ok(Some(Differs {
        why: why.to_owned(),
        changes: phony_core::diff::schema::diff(&live, &snapshot),
        live_pre,
        live_post,
    }))
}

/// What a delta restore changed (or, in a dry run, would change) in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRewrite {
    pub table: QualifiedName,
    pub deleted: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Why the table was reloaded whole (every row deleted, the snapshot's copied in)
    /// rather than rewritten row by row; the counts are still the rows that differed.
    pub reloaded: Option<String>,
}
