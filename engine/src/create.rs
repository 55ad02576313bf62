//! Creating a snapshot: under the store's create lock, capture the database, choose a
//! unique id, claim the name, and write the record last.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use phony_core::manifest::MANIFEST_FORMAT;
use phony_core::resolve::check_name_free;
use phony_core::store::DamagedRecord;
use phony_core::{Origin, SnapshotId, SnapshotName, SnapshotRecord};
use phony_postgres::{CaptureOptions, ConnectionTarget, Progress};
use time::OffsetDateTime;

use crate::cancel::{cancelled, Cancel};
use crate::lease::{LockHolder, Notify};
use crate::{Engine, Error, Result};

/// What a new snapshot's record says of it besides its contents.
#[derive(Debug, Clone, Default)]
pub struct Create {
    pub name: Option<SnapshotName>,
    pub pin: bool,
    pub origin: Origin,
    pub labels: BTreeMap<String, String>,
    /// See [`CaptureOptions::skip_large_objects`].
    pub skip_large_objects: bool,
}

/// A snapshot created, and what the store's retention policy removed after it.
#[derive(Debug, Clone)]
pub struct Created {
    pub record: SnapshotRecord,
    /// `None` when the policy removed nothing (or there is none).
    pub retention: Option<crate::retention::AutoPruned>,
}

/// The step a create has reached, for whoever shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreatePhase {
    /// Waiting for the store's create lock (a garbage collection may be sweeping).
    Locking,
    /// Reading the database's rows (bytes read go to [`CreateOptions::progress`]).
    Capturing,
    /// Writing the record: the snapshot is listed once this ends.
    Recording,
}

/// The version of phony written into every record this build creates.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Told of a damaged record (one that cannot be read), which is then skipped.
pub type OnDamaged = Arc<dyn Fn(&DamagedRecord) + Send + Sync>;

/// How a create runs and reports; the default runs it plainly.
#[derive(Clone, Default)]
pub struct CreateOptions {
    /// Told the bytes of rows read.
    pub progress: Option<Progress>,
    /// Told each step as the create reaches it.
    pub phase: Option<Arc<dyn Fn(CreatePhase) + Send + Sync>>,
    /// Stops the create before its record is written: then it leaves no snapshot.
    pub cancel: Option<Cancel>,
    /// Where notices about others' stale locks go.
    pub notify: Option<Notify>,
    /// Told each damaged record met while checking names and ids.
    pub on_damaged: Option<OnDamaged>,
    /// See [`CaptureOptions::on_point_fixed`].
    pub on_point_fixed: Option<Arc<dyn Fn(bool) + Send + Sync>>,
    /// See [`CaptureOptions::application_name`].
    pub application_name: Option<String>,
    /// Where the snapshot's id is kept just before its record is written (so that a
    /// caller stopped from outside can remove that record).
    pub chosen: Option<Arc<Mutex<Option<SnapshotId>>>>,
}

impl std::fmt::Debug for CreateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateOptions")
            .field("cancel", &self.cancel)
            .field("application_name", &self.application_name)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Captures `target` and writes the snapshot's record, under the store's create lock (so
    /// no garbage collection deletes a blob the snapshot is about to reference). A name is
    /// checked before the capture and claimed after it ([`crate::names`]). The store's
    /// retention policy is applied after, sparing the new snapshot (see
    /// [`Self::create_with_retention`] for what it removed).
    pub async fn create(
        &self,
        target: &ConnectionTarget,
        create: Create,
        opts: CreateOptions,
    ) -> Result<SnapshotRecord> {
        Ok(self
            .create_with_retention(target, create, opts)
            .await?
            .record)
    }

    /// [`Self::create`], saying what the store's retention policy removed after.
    /// A policy that fails leaves the snapshot created: [`Error::Retention`] names it.
    pub async fn create_with_retention(
        &self,
        target: &ConnectionTarget,
        create: Create,
        opts: CreateOptions,
    ) -> Result<Created> {
        let notify = opts.notify.clone();
        let record = self.create_record(target, create, opts).await?;
        let notify = notify.unwrap_or_else(|| Arc::new(|_: &str| {}));
        let retention = self
            .apply_retention(record.id, &notify)
            .await
            .map_err(|e| Error::Retention {
                id: record.id,
                source: Box::new(e),
            })?;
        Ok(Created { record, retention })
    }

    /// Captures `target` and writes the snapshot's record; no retention after.
    pub(crate) async fn create_record(
        &self,
        target: &ConnectionTarget,
        create: Create,
        opts: CreateOptions,
    ) -> Result<SnapshotRecord> {
        let store = self.store();
        let phase = |p| {
            if let Some(f) = &opts.phase {
                f(p);
            }
        };
        let notify = opts
            .notify
            .clone()
            .unwrap_or_else(|| Arc::new(|_: &str| {}));
        // Until the record is written, a cancel drops the work: the capture's connections
        // close, its blobs stay unreferenced (garbage for the next collection) and the lock
        // holder removes its lock as it is dropped.
        let cancel = opts.cancel.as_ref();
        if let Some(name) = &create.name {
            // A name already taken fails before the capture, not after it.
            let scan = store
                .scan_records()
                .await
                .map_err(|source| Error::Storage {
                    doing: "reading the snapshot records",
                    source,
                })?;
            check_name_free(&scan.records, name.as_str())?;
        }
        phase(CreatePhase::Locking);
        let lock = tokio::select! {
            biased;
            () = cancelled(cancel) => return Err(Error::Cancelled),
            lock = LockHolder::acquire_create(store, &notify) => lock?,
        };
        let started = Instant::now();
        phase(CreatePhase::Capturing);
        let capture_opts = CaptureOptions {
            progress: opts.progress.clone(),
            on_point_fixed: opts.on_point_fixed.clone(),
            application_name: opts.application_name.clone(),
            skip_large_objects: create.skip_large_objects,
            ..CaptureOptions::default()
        };
        let captured = tokio::select! {
            biased;
            () = cancelled(cancel) => return Err(Error::Cancelled),
            captured = phony_postgres::capture(target, store, &capture_opts) => captured,
        }
        .map_err(|source| Error::Capture {
            target: target.to_string(),
            source,
        })?;

        let scan = store
            .scan_records()
            .await
            .map_err(|source| Error::Storage {
                doing: "reading the snapshot records",
                source,
            })?;
        if let Some(f) = &opts.on_damaged {
            scan.damaged.iter().for_each(|d| f(d));
        }
        let records = scan.records;
        if let Some(name) = &create.name {
            // Another snapshot may have taken the name while this one was captured.
            check_name_free(&records, name.as_str())?;
        }
        let id = loop {
            let id = SnapshotId::from_random(rand::random());
            if !records.iter().any(|r| r.id == id) {
                break id;
            }
        };
        let mut stats = captured.stats;
        stats.duration_ms = started.elapsed().as_millis() as u64;
        let record = SnapshotRecord {
            format: MANIFEST_FORMAT,
            tool_version: Some(TOOL_VERSION.to_owned()),
            id,
            name: create.name,
            created_at: OffsetDateTime::now_utc(),
            root: captured.root,
            pinned: create.pin,
            origin: create.origin,
            labels: create.labels,
            source: captured.source,
            stats,
        };
        lock.check()?;
        // The last point where a cancel leaves nothing: the claim and the record follow.
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Err(Error::Cancelled);
        }
        phase(CreatePhase::Recording);
        // Not cancellable from here: a claim without its record would hold the name.
        let finish = async {
            // Of two creates racing for one name, only one writes its claim (and record).
            let claim = match &record.name {
                Some(name) => Some(crate::names::claim(store, name, record.id).await?),
                None => None,
            };
            if let Some(chosen) = &opts.chosen {
                *chosen.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.id);
            }
            if let Err(source) = store.put_record(&record).await {
                if let Some(claim) = claim {
                    if let Err(r) = crate::names::release(store, claim).await {
                        tracing::warn!("releasing the name of {}: {r}", record.id);
                    }
                }
                return Err(Error::Storage {
                    doing: "writing the snapshot record",
                    source,
                });
            }
            Ok(())
        };
        finish.await?;
        lock.release().await;
        Ok(record)
    }
}
