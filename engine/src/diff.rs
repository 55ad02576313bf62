//! Comparing two snapshots, or a snapshot and the live database.

use phony_core::diff::Offload;
use phony_core::resolve::resolve;
use phony_core::RootManifest;
use phony_postgres::{CaptureOptions, ConnectionTarget};

use crate::cancel::cancelled;
use crate::progress::{Part, RunOptions, Step};
use crate::report::{DiffDocument, DiffSide};
use crate::{CreatePhase, Engine, Error, Result};

/// What a diff compares its first snapshot with.
// Made once per diff: the size of a target is no cost worth a box in callers' code.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DiffTo {
    /// Another snapshot: an id, a unique id prefix, or a name.
    Snapshot(String),
    /// The database as it is now: it is read into the store (only changed chunks are
    /// written; no record), protected from a concurrent prune until compared.
    Live(ConnectionTarget),
}

/// What a diff reports, and how it runs.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only these tables (`schema.name`, or a bare name in any schema); empty: all.
    pub tables: Vec<String>,
    /// Row changes listed per table (counts are always complete); 0: counts only.
    pub row_limit: usize,
    /// List tables without changes too.
    pub include_unchanged: bool,
    /// Progress of the live capture, cancellation (before the comparison ends), notices.
    pub run: RunOptions,
}

/// Decodes and matches chunk runs on tokio's blocking pool, so all cores share the work.
#[derive(Debug, Clone, Copy)]
struct BlockingPool;

impl Offload for BlockingPool {
    async fn run<T, F>(&self, work: F) -> phony_core::Result<T>
    where
        F: FnOnce() -> phony_core::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| phony_core::Error::backend("decoding chunks", e))?
    }
}

impl Engine {
    /// What changed from the snapshot `from` to `to`: schema objects, rows per table (by
    /// key), sequences. The document serializes as `phony snapshot diff --json` prints it.
    pub async fn diff(&self, from: &str, to: DiffTo, opts: DiffOptions) -> Result<DiffDocument> {
        let run = &opts.run;
        let scan = self.scan().await?;
        run.damaged(&scan);
        let records = scan.records;
        let from_record = resolve(&records, from)?;
        let from_root = self.read_root(from_record).await?;
        let mut live = None;
        let (to_side, to_root): (DiffSide, RootManifest) = match &to {
            DiffTo::Snapshot(reference) => {
                let r = resolve(&records, reference)?;
                (DiffSide::of(r), self.read_root(r).await?)
            }
            DiffTo::Live(target) => {
                let capture = CaptureOptions {
                    progress: run.bytes_fn(Part::LiveCapture),
                    // Compared with a snapshot, which never holds large objects.
                    skip_large_objects: true,
                    ..CaptureOptions::default()
                };
                run.step(Part::LiveCapture, Step::Create(CreatePhase::Locking));
                // Held until the comparison is read: no garbage collection deletes a blob
                // the capture reuses while the diff reads it.
                let notify = run.notify();
                let captured = tokio::select! {
                    biased;
                    () = cancelled(run.cancel.as_ref()) => Err(Error::Cancelled),
                    captured = self.capture_live(target, &capture, &notify) => captured,
                };
                run.done(Part::LiveCapture);
                let captured = captured?;
                let manifest = captured.manifest.clone();
                live = Some(captured);
                (
                    DiffSide::Database {
                        database: target.dbname().to_owned(),
                        live: true,
                    },
                    manifest,
                )
            }
        };
        let compare = phony_core::diff::DiffOptions {
            tables: opts.tables.clone(),
            row_limit: opts.row_limit,
            include_unchanged: opts.include_unchanged,
            ..phony_core::diff::DiffOptions::default()
        };
        let diff = tokio::select! {
            biased;
            () = cancelled(run.cancel.as_ref()) => Err(Error::Cancelled),
            diff = phony_core::diff::diff_with(self.store(), &from_root, &to_root, &compare, &BlockingPool) => {
                diff.map_err(|source| Error::Storage { doing: "comparing the snapshots", source })
            }
        };
        if let Some(live) = live {
            let held = live.check();
            live.release().await;
            held?;
        }
        let diff = diff?;
        Ok(DiffDocument {
            from: DiffSide::of(from_record),
            to: to_side,
            identical: diff.is_empty(),
            diff,
            to_manifest: to_root,
        })
    }

    async fn read_root(&self, record: &phony_core::SnapshotRecord) -> Result<RootManifest> {
        self.store()
            .root(&record.root)
            .await
            .map_err(|source| Error::ReadingSnapshot {
                id: record.id,
                source,
            })
    }
}

impl DiffDocument {
    /// SQL that turns the data of `from` into that of `to` (refused when the schemas
    /// differ, which SQL over rows cannot express).
    pub fn sql(&self) -> Result<String> {
        Ok(phony_postgres::patch::patch(&self.diff, &self.to_manifest)?)
    }
}
