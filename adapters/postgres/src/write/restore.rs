//! Restore: make a database's state equal to a snapshot's, in one transaction.
//!
//! When the schema differs, the targeted schema path (`schema_path`) rewrites only the
//! objects that differ and what depends on them, and falls back to the full path when it
//! cannot prove that right.
//!
//! The full path replaces every user schema: drop them, run the snapshot's pre-data DDL,
//! load every table (COPY … FREEZE into the tables just created), run the post-data DDL
//! (keys, indexes, foreign keys and triggers after the rows, as pg_restore does), set the
//! sequences, refresh materialized views, commit. If anything fails or the process dies,
//! PostgreSQL rolls the whole transaction back: the database is as it was before.
//! Other sessions stay connected; they wait on the locks until the commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use phony_core::{Backend, RootManifest, Store};
use tokio_postgres::Client;

use crate::connect::ConnectionTarget;
use crate::database;
use crate::error::{pg, BlockingSession, Error, Result};
use crate::read::catalog;
use crate::session::Session;
use crate::sql::{ident, literal};
use crate::tracking;
use crate::write::rewrite;

mod delta_path;
pub(crate) mod full_path;
pub(crate) mod plan;
mod schema_path;

use delta_path::{restore_delta, DeltaError, Tracking};
use full_path::{
    drop_user_schemas, hold_event_triggers_off, load, schema_scripts, script_settings,
    session_settings, DropError, Scripts,
};
use plan::{gate_open, schema_difference};
pub use plan::{Gate, RestoreOptions, RestorePath, RestoreReport, RowAges, Stop, TableRewrite};
use schema_path::SchemaError;

/// Creates database `target` if it does not exist; returns whether it did.
pub async fn ensure_database(target: &ConnectionTarget) -> Result<bool> {
    if crate::database::database_exists(target).await? {
        return Ok(false);
    }
    crate::database::maintenance(target)
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
    let (pre_data, post_data) = schema_scripts(store, root).await?;

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
    // A schema change since the mark: the log still tells the rows of the tables it did
    // not touch.
    let partial = probe.partial.as_ref().filter(|_| !opts.full);
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
            mark: mark.as_ref().or(partial.map(|p| &p.mark)),
            touched: partial.map(|p| &p.touched),
            // Without other marks, nobody needs this restore's rows in the log, except a
            // snapshot being taken meanwhile, whose mark the unlogged entry invalidates.
            // With them, the rewritten rows' images (read anyway, to rewrite only rows
            // that differ) are logged for them.
            logging: match opts.dry_run || probe.other_marks {
                true => rewrite::Logging::Images,
                false => rewrite::Logging::Nothing,
            },
            root: root_id,
        };
        let mut examined = Vec::new();
        let delta = restore_delta(
            &target,
            session,
            store,
            root,
            opts,
            &begin,
            &tracking,
            schema.as_ref(),
            &mut examined,
            &mut report,
        );
        let delta = delta.await;
        // The schema's verdict, when it was compared meanwhile, names the path taken.
        let mut verdict = None;
        let mut differs = None;
        if let (Some(check), Ok(()) | Err(DeltaError::Fallback(_))) = (&schema, &delta) {
            match check.clone().await {
                Ok(None) => report.schema_changed = Some(false),
                Ok(Some(found)) => {
                    report.schema_changed = Some(true);
                    report.schema_changes = found.changes.clone();
                    verdict = Some(found.why.clone());
                    differs = Some(found);
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
                full_reason = Some(reason);
                // A schema that differs: the objects that differ, when that can be undone.
                if let Some(differs) = &differs {
                    let inputs = schema_path::Inputs {
                        differs,
                        pre_data: &pre_data,
                        post_data: &post_data,
                        settings: &settings,
                        tracked,
                        root_id,
                        partial,
                    };
                    let started = Instant::now();
                    match schema_path::restore_schema(
                        &target,
                        session,
                        store,
                        root,
                        opts,
                        &inputs,
                        std::mem::take(&mut examined),
                        &mut report,
                    )
                    .await
                    {
                        Ok(()) => {
                            tracing::debug!("schema path in {:?}", started.elapsed());
                            report.path = RestorePath::Schema;
                            full_reason = None;
                        }
                        Err(SchemaError::Fatal(e)) => {
                            let _ = client.batch_execute("ROLLBACK").await;
                            return Err(e);
                        }
                        Err(SchemaError::Fallback(why)) => full_reason = Some(why),
                    }
                }
                if let Some(reason) = &full_reason {
                    tracing::info!("delta restore not possible, taking the full path: {reason}");
                }
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
    if !opts.dry_run && plan::stopped(opts) {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::Cancelled);
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
