//! Restoring a snapshot: in place (after a safety snapshot of the state before, so the
//! restore can be undone), or into another database (created when missing).
//!
//! Every decision a restore takes lives here, so that every binding takes it alike: which
//! database, whether the snapshot may replace a database it was not taken of, whether a
//! safety snapshot is taken and when it is removed again, and the retention applied to
//! safety snapshots after.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use phony_core::resolve::resolve;
use phony_core::{RootManifest, SnapshotRecord};
use phony_postgres::{ConnectionTarget, RestoreOptions, RestoreReport};

use crate::cancel::{cancelled, Cancel};
use crate::progress::{Part, RunOptions, Step};
use crate::{Engine, Error, Result};

/// What to restore, where and how. The default restores in place, after a safety snapshot.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The snapshot: an id, a unique id prefix, or a name.
    pub snapshot: String,
    /// Another database to restore into (created when missing); `None`: the database
    /// the restore is called with.
    pub into: Option<ConnectionTarget>,
    /// Terminate other sessions connected to the database first (never the restore's own).
    pub force: bool,
    /// Work out and report what would change, then roll back (no safety snapshot).
    pub dry_run: bool,
    /// Replace every schema, even when the schema is unchanged.
    pub full: bool,
    /// Keep the state before as a snapshot (origin `safety`) when restoring into an
    /// existing database.
    pub safety_snapshot: bool,
    /// Restore in place even when the snapshot was taken of another database.
    pub allow_other_database: bool,
    /// How long to wait for other sessions' locks (default: 5 s).
    pub lock_timeout: Option<Duration>,
    /// Extra labels for the safety snapshot (it always has `before_restore_of`).
    pub labels: BTreeMap<String, String>,
}

impl Default for RestoreRequest {
    fn default() -> Self {
        RestoreRequest {
            snapshot: String::new(),
            into: None,
            force: false,
            dry_run: false,
            full: false,
            safety_snapshot: true,
            allow_other_database: false,
            lock_timeout: None,
            labels: BTreeMap::new(),
        }
    }
}

impl RestoreRequest {
    /// An in-place restore of `snapshot`, with a safety snapshot.
    pub fn of(snapshot: impl Into<String>) -> Self {
        RestoreRequest {
            snapshot: snapshot.into(),
            ..Self::default()
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The snapshot restored.
    pub record: SnapshotRecord,
    /// What the restore changed (or, in a dry run, would change).
    pub report: RestoreReport,
    /// Whether the database was created by the restore.
    pub created: bool,
    /// The snapshot of the state before, which undoes the restore.
    pub safety: Option<SnapshotRecord>,
}

impl Engine {
    /// Restores the snapshot `request.snapshot` names into `database` (or into
    /// `request.into`), in one transaction.
    ///
    /// In place, the snapshot must have been taken of this database (same name, same
    /// server) unless `allow_other_database`. Into an existing database the state before is
    /// first kept as a safety snapshot, which is removed again when the restore fails
    /// without committing; the store's limits on safety snapshots are applied after.
    ///
    /// `run.cancel` before the commit is sent stops the restore: its transaction rolls
    /// back, its safety snapshot is removed (or never written), and the result is
    /// [`Error::Cancelled`]. Once the commit is sent, the restore runs to its end.
    pub async fn restore(
        &self,
        database: &ConnectionTarget,
        request: RestoreRequest,
        run: RunOptions,
    ) -> Result<Restored> {
        if run.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let scan = self.scan().await?;
        run.damaged(&scan);
        let record = resolve(&scan.records, &request.snapshot)?.clone();
        let root =
            self.store()
                .root(&record.root)
                .await
                .map_err(|source| Error::ReadingSnapshot {
                    id: record.id,
                    source,
                })?;
        let target = request.into.clone().unwrap_or_else(|| database.clone());
        let created = match &request.into {
            Some(into) => !phony_postgres::database_exists(into).await?,
            None => false,
        };
        if request.into.is_none() && !request.allow_other_database {
            if let Some(why) = phony_postgres::other_database(&target, &record.source).await? {
                return Err(Error::OtherDatabase {
                    snapshot: record.label(),
                    database: target.dbname().to_owned(),
                    why,
                });
            }
        }
        let opts = RestoreOptions {
            lock_timeout: request
                .lock_timeout
                .unwrap_or(RestoreOptions::default().lock_timeout),
            force: request.force,
            dry_run: request.dry_run,
            full: request.full,
            progress: run.bytes_fn(Part::Restore),
            phase: run.restore_phase_fn(),
            // Without tracking, rows written before the capture need no comparison.
            point: record.source.point.clone(),
            ..RestoreOptions::default()
        };
        let failed = |source| Error::Restore {
            id: record.id,
            database: target.dbname().to_owned(),
            kept: None,
            source: Box::new(source),
        };
        let safety_first = !(created || request.dry_run || !request.safety_snapshot);
        let (report, safety) = match (created, request.dry_run) {
            (true, true) => (
                RestoreReport {
                    full_reason: Some("a new database".into()),
                    tables: root.tables.len() as u64,
                    rows: root.rows(),
                    bytes: root.bytes(),
                    sequences: root.sequences.len() as u64,
                    dry_run: true,
                    ..Default::default()
                },
                None,
            ),
            (true, false) => {
                started(&run, &root);
                let report = cancellable(opts, run.cancel.as_ref(), |opts| {
                    let (target, root) = (&target, &root);
                    async move {
                        phony_postgres::restore_into_new(target, self.store(), root, &opts).await
                    }
                })
                .await;
                run.done(Part::Restore);
                (report?.map_err(failed)?, None)
            }
            (false, _) if !safety_first => {
                started(&run, &root);
                let report = cancellable(opts, run.cancel.as_ref(), |opts| {
                    let (target, root) = (&target, &root);
                    async move { phony_postgres::restore(target, self.store(), root, &opts).await }
                })
                .await;
                run.done(Part::Restore);
                (report?.map_err(failed)?, None)
            }
            (false, _) => {
                let mut labels = request.labels.clone();
                labels.insert("before_restore_of".to_owned(), record.id.to_string());
                let (report, taken) = self
                    .restore_beside_safety(&target, &record, &root, opts, labels, &run)
                    .await?;
                (report, Some(taken))
            }
        };
        if let Some(taken) = &safety {
            let notify = run.notify();
            let retention = async {
                self.apply_retention(taken.id, &notify).await?;
                self.apply_safety_retention(taken.id, &notify).await
            };
            retention.await.map_err(|e| Error::Retention {
                id: taken.id,
                source: Box::new(e),
            })?;
        }
        Ok(Restored {
            record,
            report,
            created,
            safety,
        })
    }

    /// Restores `root` into the existing database `target`, in one transaction, without a
    /// safety snapshot. A `cancel` before the commit is sent drops the restore: its
    /// connection closes, the transaction rolls back and the database is unchanged
    /// ([`Error::Cancelled`]); once the commit is sent, the restore runs to its end.
    pub async fn restore_into(
        &self,
        target: &ConnectionTarget,
        root: &RootManifest,
        opts: RestoreOptions,
        cancel: Option<&Cancel>,
    ) -> Result<RestoreReport> {
        let done = cancellable(opts, cancel, |opts| async move {
            phony_postgres::restore(target, self.store(), root, &opts).await
        })
        .await?;
        Ok(done?)
    }
}

/// Tells the sink a restore of `root` began.
pub(crate) fn started(run: &RunOptions, root: &RootManifest) {
    run.step(
        Part::Restore,
        Step::Restoring {
            tables: root.tables.len() as u64,
            rows: root.rows(),
            bytes: root.bytes(),
        },
    );
}

/// Runs the restore `work` makes of `opts` until it ends, or until `cancel` while its
/// commit is not sent yet: then it is dropped (its connection closes and its transaction
/// rolls back) and the result is [`Error::Cancelled`].
pub(crate) async fn cancellable<F, Fut>(
    opts: RestoreOptions,
    cancel: Option<&Cancel>,
    work: F,
) -> Result<phony_postgres::Result<RestoreReport>>
where
    F: FnOnce(RestoreOptions) -> Fut,
    Fut: Future<Output = phony_postgres::Result<RestoreReport>>,
{
    if cancel.is_some_and(Cancel::is_cancelled) {
        return Err(Error::Cancelled);
    }
    let committing = opts
        .committing
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    // The restore asks too, just before its commit: a cancel that arrives while it runs
    // without yielding (so this task cannot drop it) still wins.
    let stop = cancel.map(|c| {
        let c = c.clone();
        Arc::new(move || c.is_cancelled()) as phony_postgres::Stop
    });
    let opts = RestoreOptions {
        committing: Some(Arc::clone(&committing)),
        stop: stop.or(opts.stop.clone()),
        ..opts
    };
    let work = work(opts);
    tokio::pin!(work);
    let done = tokio::select! {
        biased;
        () = cancelled(cancel) => {
            if !committing.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            // Sent: whether it commits is the server's to say.
            work.await
        }
        done = &mut work => done,
    };
    match done {
        Err(phony_postgres::Error::Cancelled) => Err(Error::Cancelled),
        done => Ok(done),
    }
}
