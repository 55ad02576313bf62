//! Restore: make a database's state equal to a snapshot's, in one transaction.
//!
//! The full path replaces every user schema: drop them, run the snapshot's pre-data DDL,
//! load every table (COPY … FREEZE into the tables just created), run the post-data DDL
//! (keys, indexes, foreign keys and triggers after the rows, as pg_restore does), set the
//! sequences, refresh materialized views, commit. If anything fails or the process dies,
//! PostgreSQL rolls the whole transaction back: the database is as it was before.
//! Other sessions stay connected; they wait on the locks until the commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, SinkExt, TryStreamExt};
use phony_core::diff::schema::SchemaChange;
use phony_core::{Backend, CapturePoint, RootManifest, Store, TableEntry};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::catalog::{self, PHONY_SCHEMA};
use crate::chunk_stream::decoded_chunks;
use crate::chunk_stream::Progress;
use crate::connect::ConnectionTarget;
use crate::database;
use crate::delta::{self, TableChange};
use crate::error::{describe, pg, BlockingSession, Error, Result};
use crate::schema_dump::{normalize, with_utf8_client_encoding, PgDump, Section};
use crate::session::Session;
use crate::sql::{ident, ident_list, literal, qualified};
use crate::tracking;
use crate::xmin;

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
}

/// See [`RestoreOptions::gate`]: `Err` says why the restore must not go on.
pub type Gate = Shared<BoxFuture<'static, std::result::Result<(), String>>>;

/// Waits for the gate, if any.
async fn gate_open(opts: &RestoreOptions) -> Result<()> {
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
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Which way the database was brought to the snapshot's state.
    pub path: RestorePath,
    /// Why the full path was taken, when it was.
    pub full_reason: Option<String>,
    /// Full path: tables loaded. Delta path: tables rewritten.
    pub tables: u64,
    /// Full path: rows loaded. Delta path: rows deleted + inserted + updated.
    pub rows: u64,
    pub bytes: u64,
    pub sequences: u64,
    /// Delta path: what changed, per table that differed.
    pub changes: Vec<TableChange>,
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
}

impl RestorePath {
    pub fn as_str(self) -> &'static str {
        match self {
            RestorePath::Full => "full",
            RestorePath::Delta => "delta",
        }
    }
}

/// Creates database `target` if it does not exist; returns whether it did.
pub async fn ensure_database(target: &ConnectionTarget) -> Result<bool> {
    if crate::fresh::database_exists(target).await? {
        return Ok(false);
    }
    crate::fresh::maintenance(target)
        .await?
        .batch_execute(&format!("CREATE DATABASE {}", ident(target.dbname())))
        .await
        .map_err(pg(format!("creating database {}", target.dbname())))?;
    Ok(true)
}

/// Makes the database at `target` hold the snapshot `root`, in one transaction.
///
/// When the live schema equals the snapshot's, only differing rows are rewritten (the delta
/// path); otherwise, or if the delta path fails for any reason, every user schema is
/// replaced (the full path), in the same transaction.
pub async fn restore<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let session = Session::connect(&target.with_application_name("phony restore")).await?;
    let report = restore_in(&session, target, store, root, opts).await?;
    if report.tracked && !opts.dry_run {
        // Best effort: the restore is done.
        if let Err(e) = tracking::tidy(session.client()).await {
            tracing::debug!("tidying the change log: {e}");
        }
    }
    Ok(report)
}

/// [`restore`] through an open session on `target`'s database (not inside a transaction):
/// a caller that restores the same database repeatedly keeps one session, and each restore
/// after the first skips connecting and planning. `opts.force` spares the session itself.
pub async fn restore_in<B: Backend + 'static>(
    session: &Session,
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    match restore_session(session, target, store, root, opts).await {
        Ok(report) => Ok(report),
        Err(e) => Err(crate::locks::explain(session.client(), e).await),
    }
}

async fn restore_session<B: Backend + 'static>(
    session: &Session,
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    // Read the DDL before touching the database: a store problem must not cost a lock.
    let pre_data = text_blob(store, &root.pre_data).await?;
    let post_data = text_blob(store, &root.post_data).await?;

    let target = target.with_application_name("phony restore");
    let client = session.client();
    let mut report = RestoreReport {
        dry_run: opts.dry_run,
        ..RestoreReport::default()
    };
    if opts.force && !opts.dry_run {
        report.terminated = terminate_others(client, opts.spare.as_deref()).await?;
    }
    let root_id = root.encode().id;
    // pg_dump's scripts (the full path) set session settings: kept to be set back after.
    let names = script_settings(&[&pre_data, &post_data]);
    let (probe, settings, database_settings) = tokio::try_join!(
        tracking::probe(session, &root_id),
        session_settings(session, &names),
        database::settings(session)
    )?;
    let tracked = probe.tracked;
    let mark = if opts.full { None } else { probe.mark.clone() };
    let mut schema = None;
    let full_reason = if opts.full {
        Some("asked for the full path".to_owned())
    } else if mark.is_some() {
        // The change log saw no schema change since the database held this snapshot.
        report.schema_changed = Some(false);
        report.tracked = true;
        None
    } else {
        // Compared while the delta path reads; it writes nothing before the verdict.
        let version = catalog::server_version(client).await.map(|v| v.0);
        let (target, pre_data, post_data) = (&target, &pre_data, &post_data);
        schema = Some(
            async move {
                let compared = Instant::now();
                let difference = match version {
                    Ok(version) => schema_difference(target, version, pre_data, post_data).await,
                    Err(e) => Err(e),
                };
                tracing::debug!("schemas compared in {:?}", compared.elapsed());
                difference.map_err(|e| format!("could not compare schemas: {e}"))
            }
            .boxed()
            .shared(),
        );
        None
    };
    let begin = format!(
        "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL maintenance_work_mem = '256MB'; \
         SET LOCAL phony.quiet = 'on';",
        literal(&format!("{}ms", opts.lock_timeout.as_millis().max(1)))
    );
    let mut full_reason = full_reason;
    // The delta path opens the transaction in its first batch.
    let begun = full_reason.is_none();
    if begun {
        let tracking = Tracking {
            tracked,
            mark: mark.as_ref(),
            // Without other marks, nobody needs this restore's rows in the log, except a
            // snapshot being taken meanwhile, whose mark the unlogged entry invalidates.
            // With them, the rewritten rows' images (read anyway, to rewrite only rows
            // that differ) are logged for them.
            logging: match opts.dry_run || probe.other_marks {
                true => delta::Logging::Images,
                false => delta::Logging::Nothing,
            },
            root: root_id,
        };
        let delta = restore_delta(
            &target,
            session,
            store,
            root,
            opts,
            &begin,
            &tracking,
            schema.as_ref(),
            &mut report,
        );
        let delta = delta.await;
        // The schema's verdict, when it was compared meanwhile, names the path taken.
        let mut verdict = None;
        if let (Some(check), Ok(()) | Err(DeltaError::Fallback(_))) = (&schema, &delta) {
            match check.clone().await {
                Ok(None) => report.schema_changed = Some(false),
                Ok(Some(differs)) => {
                    report.schema_changed = Some(true);
                    report.schema_changes = differs.changes;
                    verdict = Some(differs.why);
                }
                Err(why) => verdict = Some(why),
            }
        }
        match delta {
            Ok(()) => report.path = RestorePath::Delta,
            Err(DeltaError::Locked) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(locked_error(client, &target, opts).await);
            }
            Err(DeltaError::Fatal(e)) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
            Err(DeltaError::Fallback(reason)) => {
                let reason = verdict.unwrap_or(reason);
                tracing::info!("delta restore not possible, taking the full path: {reason}");
                full_reason = Some(reason);
            }
        }
    }
    if let Some(reason) = full_reason {
        report.full_reason = Some(reason);
        report.changes.clear();
        if !begun {
            client
                .batch_execute(&begin)
                .await
                .map_err(pg("starting the restore transaction"))?;
        }
        report.row_ages = None;
        if opts.dry_run {
            let _ = client.batch_execute("ROLLBACK").await;
            report.tables = root.tables.len() as u64;
            report.rows = root.rows();
            report.bytes = root.bytes();
            report.sequences = root.sequences.len() as u64;
            report.duration = started.elapsed();
            return Ok(report);
        }
        if let Err(e) = gate_open(opts).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        if let Err(e) = hold_event_triggers_off(client, true).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        if let Err(e) = drop_user_schemas(client, root.server_version_num, &pre_data).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(match e {
                DropError::Locked => locked_error(client, &target, opts).await,
                DropError::Other(e) => e,
            });
        }
        let mut result = load(
            client,
            store,
            root,
            &Scripts {
                pre_data: &pre_data,
                post_data: &post_data,
                settings: &settings,
            },
            opts,
            &mut report,
        )
        .await;
        if result.is_ok() && tracked {
            result = tracking::reset_after_full_restore(client, &root_id).await;
        }
        if let Err(e) = result {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    }
    // The database's own settings, which no schema comparison or change log sees.
    if let (Some(props), false) = (&root.database, opts.dry_run) {
        if let Err(e) =
            database::restore_settings(client, target.dbname(), &database_settings, props).await
        {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    }
    let end = if opts.dry_run { "ROLLBACK" } else { "COMMIT" };
    if let (Some(flag), false) = (&opts.committing, opts.dry_run) {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    client
        .batch_execute(end)
        .await
        .map_err(pg(crate::error::COMMITTING))?;
    report.duration = started.elapsed();
    Ok(report)
}

async fn locked_error(client: &Client, target: &ConnectionTarget, opts: &RestoreOptions) -> Error {
    Error::Locked {
        database: target.dbname().to_owned(),
        timeout: humanize(opts.lock_timeout),
        sessions: lock_holders(client).await.unwrap_or_default(),
    }
}

/// The comparison of the live schema with the snapshot's, shared by the delta path (which
/// waits for it before its first write) and the caller (which reports it): `Ok(None)`
/// when they are the same, else why not.
type SchemaCheck<'a> = Shared<BoxFuture<'a, std::result::Result<Option<Differs>, String>>>;

/// How the live schema differs from the snapshot's.
#[derive(Debug, Clone)]
struct Differs {
    why: String,
    /// The objects that differ, from the live schema to the snapshot's.
    changes: Vec<SchemaChange>,
}

/// Waits for the schema's verdict, when it is being compared: the delta path writes only
/// once the live schema is known to be the snapshot's.
async fn schema_agrees(schema: Option<&SchemaCheck<'_>>) -> Result<()> {
    match schema {
        None => Ok(()),
        Some(check) => match check.clone().await {
            Ok(None) => Ok(()),
            Ok(Some(Differs { why, .. })) | Err(why) => Err(Error::Internal(why)),
        },
    }
}

/// How the live schema differs from the snapshot's, or `None` when it is the same.
async fn schema_difference(
    target: &ConnectionTarget,
    version: u32,
    pre_data: &str,
    post_data: &str,
) -> Result<Option<Differs>> {
    let pg_dump = PgDump::find(version / 10000).await?;
    let (live_pre, live_post) = tokio::try_join!(
        pg_dump.dump(target, Some(Section::PreData), None),
        pg_dump.dump(target, Some(Section::PostData), None)
    )?;
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
    }))
}

/// What change tracking knows, for the delta path.
struct Tracking<'a> {
    /// Tracking is installed and this database's own: log what the restore rewrites.
    tracked: bool,
    /// The database held the snapshot at this mark; the log says what changed since.
    mark: Option<&'a tracking::Mark>,
    /// What rows put back from the log leave in the log, for other snapshots' marks.
    logging: delta::Logging,
    root: phony_core::BlobId,
}

enum DeltaError {
    /// Another session holds a lock the restore needs.
    Locked,
    /// The store cannot give what the snapshot needs: no path can succeed.
    Fatal(Error),
    /// The delta path cannot be taken; the full path will run instead.
    Fallback(String),
}

/// The delta path, in the transaction `begin` opens (sent with its first statements). On
/// `Fallback` the transaction is back at its state after `begin`; on the other errors the
/// caller rolls it back.
#[allow(clippy::too_many_arguments)]
async fn restore_delta<B: Backend + 'static>(
    target: &ConnectionTarget,
    session: &Session,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
    begin: &str,
    tracking: &Tracking<'_>,
    schema: Option<&SchemaCheck<'_>>,
    report: &mut RestoreReport,
) -> Result<(), DeltaError> {
    let fallback = |e: Error| match e {
        Error::Store(_) => DeltaError::Fatal(e),
        other => DeltaError::Fallback(other.to_string()),
    };
    let client = session.client();
    // Writers wait; readers go on. Triggers and foreign keys stay quiet: the end state is
    // the snapshot's, which satisfied them.
    let lock = if root.tables.is_empty() {
        String::new()
    } else {
        let tables: Vec<String> = root.tables.iter().map(|t| qualified(&t.table)).collect();
        format!("LOCK TABLE {} IN EXCLUSIVE MODE;", tables.join(", "))
    };
    // The log's reads cover a few thousand entries: launching parallel workers for them
    // (which stale statistics of a grown log invite) costs more than the whole read.
    let serial = match tracking.mark {
        Some(_) => "SET LOCAL max_parallel_workers_per_gather = 0;",
        None => "",
    };
    // A session that holds triggers off already keeps them so: switching the role (here,
    // and back below) would flush its cached plans.
    let quiet = match session.triggers_held_off() {
        true => "",
        false => "SET LOCAL session_replication_role = replica;",
    };
    if let Err(e) = client
        .batch_execute(&format!(
            "{begin} SAVEPOINT phony_delta; {lock} {quiet} {serial} {}",
            tracking::IMAGE_SETTINGS
        ))
        .await
    {
        let locked = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        // Back to the savepoint if it was made; the caller rolls back the rest.
        let _ = client
            .batch_execute("ROLLBACK TO SAVEPOINT phony_delta")
            .await;
        return Err(match locked {
            true => DeltaError::Locked,
            false => fallback(pg("starting the delta restore")(e)),
        });
    }
    let result = async {
        // With a usable mark: relations whose changed rows the log's images put back.
        let mut from_log = std::collections::HashSet::new();
        let mut logged_rels = std::collections::HashSet::new();
        let mut unlogged = false;
        let mut sequences_set = false;
        if let Some(mark) = tracking.mark {
            let rels = tracking::logged_relations(session, mark)
                .await
                .map_err(fallback)?;
            // Tables without a primary key, truncated ones, partition trees with entries at
            // several levels, and tables whose log has rows without images (see
            // `delta::UNKNOWN_IMAGE`) are compared below, against the snapshot.
            let simple: Vec<_> = rels
                .iter()
                .filter(|r| !r.whole && r.tree.is_empty() && !r.key.is_empty() && !r.unknown)
                .collect();
            logged_rels.extend(rels.iter().map(|r| r.relid));
            // One call per relation, all on this session: their statements pipeline, and
            // the sequences' with them.
            let (changes, sequences) = tokio::join!(
                futures::future::join_all(simple.iter().map(|rel| delta::restore_from_log(
                    session,
                    rel,
                    mark,
                    tracking.logging
                )),),
                set_sequences_in(session, root, opts.transactional_sequences)
            );
            let changes = pipelined(changes).map_err(fallback)?;
            report.sequences = sequences.map_err(fallback)?;
            sequences_set = true;
            for (rel, change) in simple.iter().zip(changes) {
                from_log.insert(rel.relid);
                if change.deleted + change.inserted + change.updated > 0 {
                    unlogged |= tracking.logging == delta::Logging::Nothing;
                    report.tables += 1;
                    report.rows += change.deleted + change.inserted + change.updated;
                    report.changes.push(change);
                }
            }
        }
        let all_relids = if !tracking.tracked {
            vec![Vec::new(); root.tables.len()]
        } else if tracking.mark.is_some() && logged_rels.iter().all(|r| from_log.contains(r)) {
            // Every logged relation was put back above: no table needs its relids.
            vec![Vec::new(); root.tables.len()]
        } else {
            let names: Vec<_> = root.tables.iter().map(|t| t.table.clone()).collect();
            tracking::relids_of(client, &names)
                .await
                .map_err(fallback)?
        };
        // Tables whose live content is compared with the snapshot's (no usable log).
        let mut content: Vec<(&TableEntry, Option<u32>)> = Vec::new();
        for (entry, relids) in root.tables.iter().zip(all_relids) {
            let log = relids.first().copied();
            if tracking.mark.is_some()
                && relids
                    .iter()
                    .filter(|r| logged_rels.contains(*r))
                    .all(|r| from_log.contains(r))
            {
                // Untouched since the mark, or put back from the log above.
                continue;
            }
            let logged = match tracking.mark {
                Some(mark) => tracking::logged(client, &relids, mark)
                    .await
                    .map_err(fallback)?,
                None => tracking::Logged::Whole,
            };
            match (logged, tracking.mark) {
                (tracking::Logged::Unchanged, _) => {}
                (tracking::Logged::Keys, Some(mark)) if !entry.key.is_empty() => {
                    let change = delta::restore_table_keys(
                        client,
                        store,
                        entry,
                        &relids,
                        mark,
                        opts.prefetch,
                        log,
                    )
                    .await
                    .map_err(fallback)?;
                    count_change(report, change);
                }
                _ => content.push((entry, log)),
            }
        }
        if !content.is_empty() {
            compare_content(target, client, store, &content, opts, schema, report)
                .await
                .map_err(fallback)?;
        }
        schema_agrees(schema).await.map_err(fallback)?;
        if !sequences_set {
            crate::phase::reached(&opts.phase, crate::Phase::Sequences);
            report.sequences = set_sequences_in(session, root, opts.transactional_sequences)
                .await
                .map_err(fallback)?;
        }
        gate_open(opts).await.map_err(DeltaError::Fatal)?;
        if !report.changes.is_empty() {
            refresh_materialized_views(client, root)
                .await
                .map_err(fallback)?;
        }
        // Pipelined: one round trip.
        let (origin, marked) = tokio::join!(
            async {
                match session.triggers_held_off() {
                    true => Ok(()),
                    false => {
                        client
                            .batch_execute("SET LOCAL session_replication_role = origin")
                            .await
                    }
                }
            },
            async {
                match tracking.tracked {
                    true => tracking::mark_after_commit(session, &tracking.root, unlogged).await,
                    false => Ok(()),
                }
            }
        );
        origin.map_err(|e| fallback(pg("re-enabling triggers")(e)))?;
        marked.map_err(fallback)?;
        Ok(())
    }
    .await;
    if result.is_err() {
        report.tables = 0;
        report.rows = 0;
        report.sequences = 0;
        if let Err(e) = client
            .batch_execute("ROLLBACK TO SAVEPOINT phony_delta")
            .await
        {
            return Err(fallback(pg("undoing the delta restore")(e)));
        }
    }
    result
}

fn count_change(report: &mut RestoreReport, change: Option<TableChange>) {
    if let Some(c) = change.filter(|c| c.deleted + c.inserted + c.updated > 0) {
        report.tables += 1;
        report.rows += c.deleted + c.inserted + c.updated;
        report.changes.push(c);
    }
}

/// Makes the `tables` (each with the relation id to log its rewrites under, when tracking)
/// hold the snapshot's rows by comparing content, inside the restore transaction. With a
/// trusted capture point, rows' ages say which tables and chunks to compare (`xmin`),
/// read on two connections at once; the others are re-read whole.
async fn compare_content<B: Backend + 'static>(
    target: &ConnectionTarget,
    client: &Client,
    store: &Arc<Store<B>>,
    tables: &[(&TableEntry, Option<u32>)],
    opts: &RestoreOptions,
    schema: Option<&SchemaCheck<'_>>,
    report: &mut RestoreReport,
) -> Result<()> {
    let params = store.config().chunking.params;
    let reader = connect_reader(target).await?;
    let trusted = match &opts.point {
        Some(point) => {
            let names: Vec<&phony_core::QualifiedName> =
                tables.iter().map(|(e, _)| &e.table).collect();
            match xmin::trust(&reader, point, &names).await {
                xmin::Trust::Trusted(h) => Some(h),
                xmin::Trust::Untrusted(why) => {
                    tracing::info!("comparing every table's content: {why}");
                    None
                }
            }
        }
        None => None,
    };
    let Some(horizon) = trusted else {
        schema_agrees(schema).await?;
        for (entry, log) in tables {
            let change =
                delta::restore_table(client, &reader, store, entry, params, opts.prefetch, *log)
                    .await?;
            count_change(report, change);
        }
        return Ok(());
    };
    let second = if tables.len() > 1 {
        Some(connect_reader(target).await?)
    } else {
        None
    };
    let readers: Vec<&Client> = std::iter::once(&reader).chain(second.as_ref()).collect();
    let entries: Vec<&TableEntry> = tables.iter().map(|(e, _)| *e).collect();
    let started = Instant::now();
    // The readers examine the tables while this session applies what they found.
    let (done, mut found) = tokio::sync::mpsc::channel(1);
    let examine = xmin::examine(&readers, store, &entries, horizon, opts.prefetch, done);
    let apply = async {
        schema_agrees(schema).await?;
        let mut ages = RowAges::default();
        let mut changes = Vec::new();
        let mut content = Vec::new();
        while let Some((i, outcome)) = found.recv().await {
            let (entry, log) = tables[i];
            ages.tables += 1;
            match outcome {
                xmin::Outcome::Unchanged { chunks } => {
                    ages.unchanged_tables += 1;
                    ages.chunks += chunks;
                }
                xmin::Outcome::Staged {
                    staged,
                    chunks,
                    compared,
                    summed,
                } => {
                    ages.chunks += chunks;
                    ages.compared_chunks += compared;
                    if summed {
                        ages.summed_chunks += compared;
                    }
                    let change =
                        delta::apply_staged(client, store, entry, staged, log, opts.prefetch)
                            .await?;
                    tracing::debug!("{}: applied at {:?}", entry.table, started.elapsed());
                    changes.push((i, change));
                }
                xmin::Outcome::Content => content.push(i),
            }
        }
        Ok::<_, Error>((ages, changes, content))
    };
    let ((), (mut ages, mut changes, content)) = futures::try_join!(examine, apply)?;
    drop(second);
    // The content comparisons read on `reader`, free now.
    for i in content {
        let (entry, log) = tables[i];
        ages.content_tables += 1;
        let change =
            delta::restore_table(client, &reader, store, entry, params, opts.prefetch, log).await?;
        changes.push((i, change));
    }
    changes.sort_by_key(|(i, _)| *i);
    for (_, change) in changes {
        count_change(report, change);
    }
    tracing::debug!(
        "tables compared by row ages in {:?}: {ages:?}",
        started.elapsed()
    );
    report.row_ages = Some(ages);
    Ok(())
}

/// A connection that reads live rows beside the restore transaction. Its queries scan whole
/// tables once; compiling them (JIT) costs more than it saves, and two readers already
/// keep two cores busy (no parallel workers).
async fn connect_reader(target: &ConnectionTarget) -> Result<Client> {
    let reader = target.connect().await?;
    reader
        .batch_execute("SET jit = off; SET max_parallel_workers_per_gather = 0")
        .await
        .map_err(pg("setting up a reader"))?;
    Ok(reader)
}

/// The results of statements pipelined in one transaction, or the error that failed it: once
/// one statement fails, the later ones fail only because the transaction is aborted, so
/// any other error is the one to report.
fn pipelined<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let aborted = |e: &Error| matches!(e, Error::Postgres { message, .. } if message.contains("current transaction is aborted"));
    let mut out = Vec::with_capacity(results.len());
    let mut error: Option<Error> = None;
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                if error
                    .as_ref()
                    .is_none_or(|seen| aborted(seen) && !aborted(&e))
                {
                    error = Some(e);
                }
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The full path's DDL, and the session settings to set back after running it.
struct Scripts<'a> {
    pre_data: &'a str,
    post_data: &'a str,
    settings: &'a [(String, String)],
}

async fn load<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    scripts: &Scripts<'_>,
    opts: &RestoreOptions,
    report: &mut RestoreReport,
) -> Result<()> {
    client
        .batch_execute(scripts.pre_data)
        .await
        .map_err(pg("recreating the schema"))?;
    let loading = crate::Phase::Loading {
        bytes: root.bytes(),
    };
    crate::phase::reached(&opts.phase, loading);
    for table in &root.tables {
        load_table(client, store, table, opts).await?;
        report.tables += 1;
        report.rows += table.content.rows;
        report.bytes += table.content.bytes;
    }
    crate::phase::reached(&opts.phase, crate::Phase::IndexesAndConstraints);
    client
        .batch_execute(scripts.post_data)
        .await
        .map_err(pg("recreating keys, indexes and triggers"))?;
    restore_session_settings(client, scripts.settings).await?;
    crate::phase::reached(&opts.phase, crate::Phase::Sequences);
    set_sequences(client, root, report).await?;
    refresh_materialized_views(client, root).await
}

/// The settings pg_dump's scripts set for the session (`SET name = …;`, `set_config('name'`),
/// by name: a restore must leave the caller's session as it found it.
fn script_settings(scripts: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in scripts.iter().flat_map(|s| s.lines()) {
        let name = if let Some(rest) = line.strip_prefix("SET ") {
            rest.split([' ', '=']).next()
        } else if let Some((_, rest)) = line.split_once("set_config('") {
            rest.split('\'').next()
        } else {
            None
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// The session's values of `names` (outside any transaction: no local settings).
async fn session_settings(session: &Session, names: &[String]) -> Result<Vec<(String, String)>> {
    let context = "reading the session's settings";
    let statement = session
        .prepared("SELECT n, pg_catalog.current_setting(n, true) FROM unnest($1::text[]) AS n")
        .await
        .map_err(pg(context))?;
    let rows = session
        .client()
        .query(&statement, &[&names])
        .await
        .map_err(pg(context))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get(0), r.get::<_, Option<String>>(1)?)))
        .collect())
}

/// Sets `settings` back for the session, in the open transaction (they stick at commit).
async fn restore_session_settings(client: &Client, settings: &[(String, String)]) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> = settings
        .iter()
        .map(|(name, value)| {
            format!(
                "pg_catalog.set_config({}, {}, false)",
                literal(name),
                literal(value)
            )
        })
        .collect();
    client
        .batch_execute(&format!("SELECT {}", calls.join(", ")))
        .await
        .map_err(pg("restoring the session's settings"))
}

/// Sets every sequence to the snapshot's state, transactionally: `setval` alone is not
/// rolled back with the transaction, but after `ALTER SEQUENCE … RESTART` (which gives the
/// sequence new storage in this transaction) it is. Sequences already in that state are
/// left alone.
pub(crate) async fn set_sequences(
    client: &Client,
    root: &RootManifest,
    report: &mut RestoreReport,
) -> Result<()> {
    let Some(sql) = current_sequences_sql(root) else {
        return Ok(());
    };
    report.sequences += apply_sequences(client, sql.as_str(), root, true).await?;
    Ok(())
}

/// [`set_sequences`] with the reading statement prepared once per session.
/// Returns the number of sequences. `transactional`: see [`RestoreOptions`].
async fn set_sequences_in(
    session: &Session,
    root: &RootManifest,
    transactional: bool,
) -> Result<u64> {
    let Some(sql) = current_sequences_sql(root) else {
        return Ok(0);
    };
    let statement = session
        .prepared(&sql)
        .await
        .map_err(pg("reading sequences"))?;
    apply_sequences(session.client(), &statement, root, transactional).await
}

/// One query for the state of every sequence of the snapshot: (index, last_value, is_called).
fn current_sequences_sql(root: &RootManifest) -> Option<String> {
    if root.sequences.is_empty() {
        return None;
    }
    let current: Vec<String> = root
        .sequences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "SELECT {i}::int8, last_value, is_called FROM {}",
                qualified(&s.sequence)
            )
        })
        .collect();
    Some(current.join(" UNION ALL "))
}

/// Reads the sequences with `current` (see [`current_sequences_sql`]) and sets those that
/// differ from the snapshot's state (`transactional`: see [`RestoreOptions`]). Returns the
/// number of the snapshot's sequences.
async fn apply_sequences<T: tokio_postgres::ToStatement + ?Sized + Sync>(
    client: &Client,
    current: &T,
    root: &RootManifest,
    transactional: bool,
) -> Result<u64> {
    let rows = client
        .query(current, &[])
        .await
        .map_err(pg("reading sequences"))?;
    let mut same = vec![false; root.sequences.len()];
    for r in &rows {
        let i = r.get::<_, i64>(0) as usize;
        if let Some(seq) = root.sequences.get(i) {
            same[i] = r.get::<_, i64>(1) == seq.last_value && r.get::<_, bool>(2) == seq.is_called;
        }
    }
    let mut sql = String::new();
    let mut called = Vec::new();
    for (seq, same) in root.sequences.iter().zip(same) {
        if same {
            continue;
        }
        let q = qualified(&seq.sequence);
        if !transactional {
            called.push(format!(
                "pg_catalog.setval({}::regclass, {}, {})",
                literal(&q),
                seq.last_value,
                seq.is_called
            ));
            continue;
        }
        // A new file for the sequence, which a rollback drops: setval on it is undone too.
        sql += &format!("ALTER SEQUENCE {q} RESTART WITH {};\n", seq.last_value);
        if seq.is_called {
            called.push(format!(
                "pg_catalog.setval({}::regclass, {}, true)",
                literal(&q),
                seq.last_value
            ));
        }
    }
    if !called.is_empty() {
        sql += &format!("SELECT {};", called.join(", "));
    }
    if !sql.is_empty() {
        client
            .batch_execute(&sql)
            .await
            .map_err(pg("setting sequences"))?;
    }
    Ok(root.sequences.len() as u64)
}

pub(crate) async fn refresh_materialized_views(client: &Client, root: &RootManifest) -> Result<()> {
    if root.materialized_views.is_empty() {
        return Ok(());
    }
    for mv in catalog::materialized_views_in_creation_order(client)
        .await?
        .iter()
        .filter(|mv| root.materialized_views.contains(mv))
    {
        client
            .batch_execute(&format!("REFRESH MATERIALIZED VIEW {}", qualified(mv)))
            .await
            .map_err(pg(format!("refreshing materialized view {mv}")))?;
    }
    Ok(())
}

/// A stored schema script, to run on a UTF-8 session (see [`with_utf8_client_encoding`]).
pub(crate) async fn text_blob<B: Backend>(
    store: &Store<B>,
    r: &phony_core::BlobRef,
) -> Result<String> {
    let plain = store.get_plain(&r.id, r.bytes).await?;
    String::from_utf8(plain)
        .map(with_utf8_client_encoding)
        .map_err(|_| {
            Error::Store(phony_core::Error::Corrupt {
                id: r.id,
                reason: "schema text is not UTF-8".into(),
            })
        })
}

/// Streams a table's chunks from the store into `COPY … FROM STDIN`, fetching and
/// decoding ahead of the load.
pub(crate) async fn load_table<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    table: &TableEntry,
    opts: &RestoreOptions,
) -> Result<()> {
    let chunks = store.table_chunks(table).await?;
    let cols = if table.columns.is_empty() {
        String::new()
    } else {
        format!(" ({})", ident_list(&table.columns))
    };
    let sql = format!(
        "COPY {}{cols} FROM STDIN WITH (FREEZE)",
        qualified(&table.table)
    );
    let sink = client
        .copy_in::<_, Bytes>(&sql)
        .await
        .map_err(pg(format!("loading table {}", table.table)))?;
    futures::pin_mut!(sink);
    let blobs = decoded_chunks(store, chunks, opts.prefetch);
    futures::pin_mut!(blobs);
    while let Some(plain) = blobs.try_next().await? {
        if let Some(p) = &opts.progress {
            p(plain.len() as u64);
        }
        sink.send(Bytes::from(plain))
            .await
            .map_err(pg(format!("loading table {}", table.table)))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(pg(format!("loading table {}", table.table)))?;
    Ok(())
}

/// For the rest of the transaction (`local`) or session, a superuser's DDL fires no event trigger but those
/// enabled `ALWAYS` (`session_replication_role = replica`): the user's event triggers must
/// not see the restore drop and recreate their objects, nor log it in tables it restores.
/// Only a superuser may create event triggers, and only one may hold them off.
pub(crate) async fn hold_event_triggers_off(client: &Client, local: bool) -> Result<()> {
    client
        .execute(
            "SELECT pg_catalog.set_config('session_replication_role', 'replica', $1)
             FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper",
            &[&local],
        )
        .await
        .map(drop)
        .map_err(pg("holding event triggers off"))
}

enum DropError {
    Locked,
    Other(Error),
}

/// Drops every user schema (not phony's own) and recreates `public` as PostgreSQL makes
/// it, unless the snapshot's DDL creates it itself.
async fn drop_user_schemas(
    client: &Client,
    server_version_num: u32,
    pre_data: &str,
) -> Result<(), DropError> {
    // Publications, foreign servers (with their user mappings) and foreign data wrappers
    // belong to the database, not to a schema; the snapshot's DDL recreates those it holds.
    // Wrappers of extensions go with their extension.
    let database_objects = client
        .query(
            "SELECT 'PUBLICATION', pubname::text FROM pg_catalog.pg_publication
             UNION ALL
             SELECT 'SERVER', srvname::text FROM pg_catalog.pg_foreign_server
             UNION ALL
             SELECT 'FOREIGN DATA WRAPPER', w.fdwname::text FROM pg_catalog.pg_foreign_data_wrapper w
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_foreign_data_wrapper'::regclass
                   AND d.objid = w.oid AND d.deptype = 'e')",
            &[],
        )
        .await
        .map_err(|e| DropError::Other(pg("reading publications and foreign servers")(e)))?;
    for row in database_objects {
        let (kind, name): (String, String) = (row.get(0), row.get(1));
        let sql = format!("DROP {kind} IF EXISTS {} CASCADE", ident(&name));
        if let Err(e) = client.batch_execute(&sql).await {
            if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(DropError::Locked);
            }
            return Err(DropError::Other(pg(format!(
                "dropping {} {name}",
                kind.to_lowercase()
            ))(e)));
        }
    }
    let schemas = catalog::user_schemas(client)
        .await
        .map_err(DropError::Other)?;
    for schema in schemas.iter().filter(|s| *s != PHONY_SCHEMA) {
        let sql = format!("DROP SCHEMA {} CASCADE", ident(schema));
        if let Err(e) = client.batch_execute(&sql).await {
            if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(DropError::Locked);
            }
            return Err(DropError::Other(Error::Postgres {
                context: format!("replacing schema {schema}"),
                message: describe(&e),
            }));
        }
    }
    let creates_public = pre_data
        .lines()
        .any(|l| l.starts_with("CREATE SCHEMA public"));
    if !creates_public {
        // The state initdb gives `public`; pg_dump writes only what differs from it.
        let sql = if server_version_num >= 150000 {
            "CREATE SCHEMA public AUTHORIZATION pg_database_owner; \
             GRANT USAGE ON SCHEMA public TO PUBLIC; \
             COMMENT ON SCHEMA public IS 'standard public schema';"
                .to_owned()
        } else {
            let owner: String = client
                .query_one(
                    "SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = 10",
                    &[],
                )
                .await
                .map_err(|e| DropError::Other(pg("reading the bootstrap role")(e)))?
                .get(0);
            format!(
                "CREATE SCHEMA public AUTHORIZATION {}; GRANT ALL ON SCHEMA public TO PUBLIC; \
                 COMMENT ON SCHEMA public IS 'standard public schema';",
                ident(&owner)
            )
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| DropError::Other(pg("recreating schema public")(e)))?;
    }
    Ok(())
}

/// Sessions on this database that hold locks on user relations (after a lock timeout).
async fn lock_holders(client: &Client) -> Result<Vec<BlockingSession>> {
    let rows = client
        .query(
            "SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.state, '')
             FROM pg_catalog.pg_stat_activity a
             JOIN pg_catalog.pg_locks l ON l.pid = a.pid
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
               AND l.locktype = 'relation' AND l.granted
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(pg("listing blocking sessions"))?;
    Ok(rows
        .iter()
        .map(|r| BlockingSession {
            pid: r.get(0),
            application_name: r.get(1),
            state: r.get(2),
        })
        .collect())
}

/// Terminates the other client sessions on this database, except those named `spare`.
async fn terminate_others(client: &Client, spare: Option<&str>) -> Result<u64> {
    let rows = client
        .query(
            "SELECT pg_catalog.pg_terminate_backend(pid)
             FROM pg_catalog.pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND backend_type = 'client backend'
               AND application_name IS DISTINCT FROM $1",
            &[&spare],
        )
        .await
        .map_err(pg("terminating other sessions"))?;
    Ok(rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64)
}

fn humanize(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_statements_report_the_error_that_aborted_them() {
        let error = |message: &str| Error::Postgres {
            context: "rewriting rows".into(),
            message: message.into(),
        };
        let results: Vec<Result<u8>> = vec![
            Ok(1),
            Err(error("current transaction is aborted, commands ignored")),
            Err(error("duplicate key value violates unique constraint")),
            Err(error("current transaction is aborted, commands ignored")),
        ];
        let e = pipelined(results).unwrap_err();
        assert!(e.to_string().contains("duplicate key"), "{e}");
        assert_eq!(pipelined(vec![Ok(1), Ok(2)]).unwrap(), [1, 2]);
    }

    #[test]
    fn the_settings_of_pg_dump_scripts_are_found() {
        let pre = "SET statement_timeout = 0;\nSET lock_timeout = 0;\n\
                   SELECT pg_catalog.set_config('search_path', '', false);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\n  SET x = 1;\n$$;\n\
                   SET default_tablespace = '';\n";
        let post = "SET lock_timeout = 0;\nSET client_min_messages TO warning;\n";
        assert_eq!(
            script_settings(&[pre, post]),
            [
                "statement_timeout",
                "lock_timeout",
                "search_path",
                "default_tablespace",
                "client_min_messages"
            ]
        );
    }
}
