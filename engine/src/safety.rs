//! A restore beside its safety snapshot: the state before is captured while the restore
//! already runs, and the restore commits only once that snapshot is stored.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use phony_core::{Origin, RootManifest, SnapshotRecord};
use phony_postgres::{ConnectionTarget, RestoreOptions, RestoreReport};

use crate::create::{Create, CreateOptions};
use crate::progress::{Part, RunOptions};
use crate::restore::{cancellable, started};
use crate::{Engine, Error, Result};

impl Engine {
    /// Takes the safety snapshot of `target`, and restores `root` into it once that
    /// snapshot's point in time is fixed: while an incremental snapshot (a quick one) is
    /// being completed, the restore already runs, and it commits only after the snapshot is
    /// stored (see [`RestoreOptions::gate`]); a snapshot that reads every table is completed
    /// first, so that the restore's locks do not wait for it.
    ///
    /// A restore that fails without committing, or is cancelled before its commit, removes
    /// the safety snapshot again: the state before is still the database's own.
    pub(crate) async fn restore_beside_safety(
        &self,
        target: &ConnectionTarget,
        record: &SnapshotRecord,
        root: &RootManifest,
        opts: RestoreOptions,
        labels: BTreeMap<String, String>,
        run: &RunOptions,
    ) -> Result<(RestoreReport, SnapshotRecord)> {
        // Unique to this run: `force` ends every other session, this snapshot's excepted.
        let application_name = format!("phony safety snapshot {:08x}", rand::random::<u32>());
        let committing = Arc::new(AtomicBool::new(false));
        let opts = RestoreOptions {
            spare: Some(application_name.clone()),
            committing: Some(Arc::clone(&committing)),
            ..opts
        };
        let (fixed_tx, fixed_rx) = tokio::sync::oneshot::channel::<bool>();
        let fixed_tx = Mutex::new(Some(fixed_tx));
        let on_point_fixed: Arc<dyn Fn(bool) + Send + Sync> = Arc::new(move |incremental| {
            if let Some(tx) = fixed_tx.lock().ok().and_then(|mut tx| tx.take()) {
                tracing::debug!("the safety snapshot fixed its point (incremental: {incremental})");
                let _ = tx.send(incremental);
            }
        });
        // The snapshot's outcome, once known.
        let (done_tx, done_rx) = tokio::sync::watch::channel(None::<Result<(), String>>);
        let capture = async {
            let create = Create {
                name: None,
                pin: false,
                origin: Origin::Safety,
                labels,
                // A restore leaves large objects as they are: its safety snapshot needs none.
                skip_large_objects: true,
            };
            let copts = CreateOptions {
                progress: run.bytes_fn(Part::SafetySnapshot),
                phase: run.create_phase_fn(Part::SafetySnapshot),
                cancel: run.cancel.clone(),
                notify: run.notify.clone(),
                on_damaged: run.on_damaged.clone(),
                on_point_fixed: Some(on_point_fixed),
                application_name: Some(application_name),
                chosen: None,
            };
            let taken = self.create_record(target, create, copts).await;
            run.done(Part::SafetySnapshot);
            let _ = done_tx.send(Some(
                taken
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| format!("the safety snapshot failed: {e}")),
            ));
            taken
        };
        // A task of its own: the capture's work in this task does not hold it up.
        let restore = {
            let (target, store, root, run) = (
                target.clone(),
                Arc::clone(self.store()),
                root.clone(),
                run.clone(),
            );
            tokio::spawn(async move {
                let outcome = async move {
                    let mut done = done_rx;
                    let outcome = match done.wait_for(Option::is_some).await {
                        Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
                        Err(_) => Err("the safety snapshot was abandoned".to_owned()),
                    };
                    outcome
                }
                .boxed()
                .shared();
                let not_run = |why: String| Ok(Err(phony_postgres::Error::Internal(why)));
                let cancel = run.cancel.clone();
                // Until the restore starts, a cancel stops the wait (the capture stops too).
                let fixed = tokio::select! {
                    biased;
                    () = crate::cancel::cancelled(cancel.as_ref()) => return Err(Error::Cancelled),
                    fixed = fixed_rx => fixed,
                };
                match fixed {
                    // The snapshot failed before it fixed its point: no restore.
                    Err(_) => return not_run("the safety snapshot failed".to_owned()),
                    Ok(true) => {}
                    Ok(false) => {
                        let ready = tokio::select! {
                            biased;
                            () = crate::cancel::cancelled(cancel.as_ref()) => return Err(Error::Cancelled),
                            ready = outcome.clone() => ready,
                        };
                        if let Err(why) = ready {
                            return not_run(why);
                        }
                    }
                }
                tracing::debug!("restoring beside the safety snapshot");
                started(&run, &root);
                let opts = RestoreOptions {
                    gate: Some(outcome),
                    ..opts
                };
                let restored = cancellable(opts, cancel.as_ref(), |opts| async move {
                    phony_postgres::restore(&target, &store, &root, &opts).await
                })
                .await;
                run.done(Part::Restore);
                restored
            })
        };
        let (taken, restored) = tokio::join!(capture, restore);
        let restored = restored.unwrap_or_else(|e| {
            Ok(Err(phony_postgres::Error::Internal(format!(
                "{}: {e}",
                phony_postgres::error::TASK_FAILED
            ))))
        });
        let failed = |source, kept| Error::Restore {
            id: record.id,
            database: target.dbname().to_owned(),
            kept,
            source: Box::new(source),
        };
        match (taken, restored) {
            // Cancelled before its commit: nothing changed, so the state before needs no
            // snapshot (one already written is removed).
            (taken, Err(e)) => {
                if let Ok(t) = taken {
                    self.remove_safety(&t).await;
                }
                Err(e)
            }
            (Err(Error::Cancelled), _) => Err(Error::Cancelled),
            (Err(e), _) => Err(Error::SafetySnapshot {
                source: Box::new(e),
            }),
            (Ok(t), Ok(Err(e))) if !e.may_have_committed() => {
                // Nothing changed: the state before is still the database's own.
                self.remove_safety(&t).await;
                Err(failed(e, None))
            }
            (Ok(t), Ok(Err(e))) => Err(failed(e, Some(t.id))),
            (Ok(t), Ok(Ok(report))) => Ok((report, t)),
        }
    }

    async fn remove_safety(&self, taken: &SnapshotRecord) {
        if let Err(e) = crate::names::delete_snapshot(self.store(), taken).await {
            tracing::warn!("removing safety snapshot {}: {e}", taken.id);
        }
    }
}
