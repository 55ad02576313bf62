//! Syncing a database from another: its contents replaced by the source's current state,
//! masked on the way when asked, with a snapshot on either side.
//!
//! Everything that can be checked is checked before anything is written: the two are not
//! the same database, they run the same PostgreSQL major version, the source can be
//! reached, and every masking rule names a column that exists and fits it. The source is
//! then read in one consistent capture into the store (its chunks dedupe against earlier
//! syncs), and restored into the database on the full path in one transaction: a sync
//! killed half-way leaves the database as it was, and other sessions stay connected.
//!
//! Each sync has a number (one more than the highest any snapshot of the store carries,
//! unless the caller chose one); its snapshots have origin `sync-before` and `sync-after`
//! and carry it as the label `sync`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use phony_core::mask::{MaskKey, MaskRules};
use phony_core::{Origin, SnapshotRecord};
use phony_postgres::{CaptureOptions, ConnectionTarget, MaskPlan, RestoreOptions, RestoreReport};

use crate::cancel::cancelled;
use crate::create::{Create, CreateOptions};
use crate::lease::LockHolder;
use crate::progress::{Part, RunOptions, Step};
use crate::restore::cancellable;
use crate::{Engine, Error, Result};

/// What to sync from, and how.
#[derive(Clone)]
pub struct SyncRequest {
    /// The database to copy (read only; nothing is written there).
    pub source: ConnectionTarget,
    /// Masking rules applied to the source's rows as they are read (empty: none).
    pub rules: MaskRules,
    /// The key of the keyed-hash rules; `None`: a random one for this sync.
    pub key: Option<MaskKey>,
    /// Keep the state before as a snapshot (origin `sync-before`).
    pub before: bool,
    /// Keep the state after as a snapshot (origin `sync-after`).
    pub after: bool,
    /// How long to wait for other sessions' locks (default: 5 s).
    pub lock_timeout: Option<Duration>,
    /// Terminate other sessions of the database first.
    pub force: bool,
    /// Extra labels of both snapshots (they always have `sync` and `source`).
    pub labels: BTreeMap<String, String>,
    /// The sync's number; `None`: one more than the highest in the store.
    pub number: Option<u64>,
}

impl SyncRequest {
    /// A sync from `source`, unmasked, with snapshots before and after.
    pub fn from(source: ConnectionTarget) -> Self {
        SyncRequest {
            source,
            rules: MaskRules::default(),
            key: None,
            before: true,
            after: true,
            lock_timeout: None,
            force: false,
            labels: BTreeMap::new(),
            number: None,
        }
    }
}

impl std::fmt::Debug for SyncRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRequest")
            .field("source", &self.source.to_string())
            .field("rules", &self.rules)
            .field("before", &self.before)
            .field("after", &self.after)
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct Synced {
    /// The sync's number.
    pub number: u64,
    /// The source, without its password.
    pub source: String,
    /// How many columns the rules masked.
    pub masked_columns: usize,
    /// What loading the source into the database did.
    pub report: RestoreReport,
    /// The snapshot of the state before.
    pub before: Option<SnapshotRecord>,
    /// The snapshot of the state after.
    pub after: Option<SnapshotRecord>,
}

/// One more than the highest sync number any snapshot of `records` carries (label `sync`).
pub fn next_sync_number(records: &[SnapshotRecord]) -> u64 {
    records
        .iter()
        .filter_map(|r| r.labels.get("sync")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1
}

impl Engine {
    /// Replaces `target`'s contents with `request.source`'s current state, masked by
    /// `request.rules`, with the snapshots asked for on either side.
    ///
    /// `run.cancel` stops it before the load commits: the database is unchanged then (a
    /// snapshot before, already taken, stays: it is the database's state).
    pub async fn sync(
        &self,
        target: &ConnectionTarget,
        request: SyncRequest,
        run: RunOptions,
    ) -> Result<Synced> {
        let source = &request.source;
        if source.to_string() == target.to_string() {
            return Err(Error::SyncRefused {
                why: format!("the source and the database are the same ({target})"),
            });
        }
        let masked_columns = request.rules.iter().count();
        let from_source = |doing: &'static str| {
            let described = source.to_string();
            move |e| Error::SyncSource {
                doing,
                source_db: described,
                source: e,
            }
        };

        // Everything that can be checked is checked before anything is written.
        let source_client = source
            .connect()
            .await
            .map_err(from_source("connecting to the source"))?;
        let target_client = target.connect().await?;
        let (source_version, source_text) = phony_postgres::catalog::server_version(&source_client)
            .await
            .map_err(from_source("reading the source"))?;
        let (target_version, target_text) =
            phony_postgres::catalog::server_version(&target_client).await?;
        if source_version / 10000 != target_version / 10000 {
            return Err(Error::SyncRefused {
                why: format!(
                    "the source runs PostgreSQL {source_text} and {} runs {target_text}: a sync needs the same major version",
                    target.dbname()
                ),
            });
        }
        let mask = if request.rules.is_empty() {
            None
        } else {
            let key = request
                .key
                .clone()
                .unwrap_or_else(|| MaskKey::new(rand::random()));
            Some(Arc::new(
                MaskPlan::prepare(&source_client, request.rules.clone(), key).await?,
            ))
        };
        drop((source_client, target_client));

        let number = match request.number {
            Some(n) => n,
            None => next_sync_number(&self.scan().await?.records),
        };
        let mut labels = request.labels.clone();
        labels.insert("sync".to_owned(), number.to_string());
        labels.insert("source".to_owned(), source.to_string());
        let before = if request.before {
            Some(
                self.sync_snapshot(target, Origin::SyncBefore, &labels, &run)
                    .await?,
            )
        } else {
            None
        };

        // The source's chunks are kept from garbage collection by a create lock until the
        // database holds them.
        let notify = run.notify();
        let lock = tokio::select! {
            biased;
            () = cancelled(run.cancel.as_ref()) => return Err(Error::Cancelled),
            lock = LockHolder::acquire_create(self.store(), &notify) => lock?,
        };
        run.step(
            Part::SyncSource,
            Step::Create(crate::CreatePhase::Capturing),
        );
        let capture = CaptureOptions {
            incremental: false,
            read_only: true,
            mask,
            progress: run.bytes_fn(Part::SyncSource),
            ..CaptureOptions::default()
        };
        let captured = tokio::select! {
            biased;
            () = cancelled(run.cancel.as_ref()) => return Err(Error::Cancelled),
            captured = phony_postgres::capture(source, self.store(), &capture) => captured,
        };
        run.done(Part::SyncSource);
        let captured = captured.map_err(from_source("reading the source"))?;
        lock.check()?;
        crate::restore::started(&run, &captured.manifest);
        let opts = RestoreOptions {
            lock_timeout: request
                .lock_timeout
                .unwrap_or(RestoreOptions::default().lock_timeout),
            force: request.force,
            full: true,
            progress: run.bytes_fn(Part::Restore),
            phase: run.restore_phase_fn(),
            ..RestoreOptions::default()
        };
        let loaded = cancellable(opts, run.cancel.as_ref(), |opts| {
            let manifest = &captured.manifest;
            async move { phony_postgres::restore(target, self.store(), manifest, &opts).await }
        })
        .await;
        run.done(Part::Restore);
        lock.release().await;
        let report = loaded?.map_err(|e| Error::SyncLoad {
            database: target.dbname().to_owned(),
            source: Box::new(e),
        })?;

        let after = if request.after {
            Some(
                self.sync_snapshot(target, Origin::SyncAfter, &labels, &run)
                    .await
                    .map_err(|e| Error::SyncAfter {
                        source: Box::new(e),
                    })?,
            )
        } else {
            None
        };
        Ok(Synced {
            number,
            source: source.to_string(),
            masked_columns,
            report,
            before,
            after,
        })
    }

    /// A snapshot beside a sync, with the store's retention applied after.
    async fn sync_snapshot(
        &self,
        target: &ConnectionTarget,
        origin: Origin,
        labels: &BTreeMap<String, String>,
        run: &RunOptions,
    ) -> Result<SnapshotRecord> {
        let create = Create {
            name: None,
            pin: false,
            origin,
            labels: labels.clone(),
            skip_large_objects: false,
        };
        let opts = CreateOptions {
            progress: run.bytes_fn(Part::Snapshot),
            phase: run.create_phase_fn(Part::Snapshot),
            cancel: run.cancel.clone(),
            notify: run.notify.clone(),
            on_damaged: run.on_damaged.clone(),
            ..CreateOptions::default()
        };
        let created = self.create_with_retention(target, create, opts).await;
        run.done(Part::Snapshot);
        Ok(created?.record)
    }
}
