//! What a capture is asked to do, and what it has stored so far: shared by the full read
//! ([`super`]) and the incremental one ([`crate::read::incremental`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use phony_core::Stored;

use crate::read::chunk_stream::Progress;

/// How to capture.
#[derive(Clone)]
pub struct CaptureOptions {
    /// Connections reading rows in parallel.
    pub workers: usize,
    /// Chunks being hashed, compressed or written at once, per reader.
    pub in_flight: usize,
    /// Called as rows are read.
    pub progress: Option<Progress>,
    /// With change tracking on, reuse the newest snapshot this database held and re-read only
    /// what the log says changed.
    pub incremental: bool,
    /// Called once, when what the capture holds no longer depends on what other sessions
    /// write (its point in time is fixed, its sequences read), with whether it is
    /// incremental (re-reads only what the log names, so it ends soon).
    pub on_point_fixed: Option<Arc<dyn Fn(bool) + Send + Sync>>,
    /// The `application_name` of every connection the capture opens (pg_dump's too);
    /// default `phony capture`. A restore that runs beside this capture and terminates
    /// other sessions spares the ones with this name (see [`RestoreOptions::spare`]).
    ///
    /// [`RestoreOptions::spare`]: crate::RestoreOptions::spare
    pub application_name: Option<String>,
    /// Masking applied to rows as they are read (a sync from production); implies reading
    /// every row (no incremental capture).
    pub mask: Option<Arc<crate::mask::MaskPlan>>,
    /// Write nothing to the database (no change-tracking marks) and read every row: for a
    /// database whose snapshots this store does not keep, such as a sync's source.
    pub read_only: bool,
    /// Snapshot a database that holds large objects, without them (a snapshot never holds
    /// them; without this, capture refuses such a database rather than leave them out
    /// silently).
    pub skip_large_objects: bool,
}

impl std::fmt::Debug for CaptureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureOptions")
            .field("workers", &self.workers)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Default for CaptureOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        CaptureOptions {
            workers: cores.clamp(2, 4),
            in_flight: cores * 2,
            progress: None,
            incremental: true,
            on_point_fixed: None,
            application_name: None,
            mask: None,
            read_only: false,
            skip_large_objects: false,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) blobs: u64,
    pub(crate) new_blobs: u64,
    pub(crate) stored_bytes: u64,
    pub(crate) new_bytes: u64,
    /// Where the time went, summed over the tasks doing it.
    pub(crate) stages: Stages,
}

/// Busy time per stage of a capture, summed over the readers and chunk tasks (so stages that
/// overlap can add up to more than the capture's wall time): what `PHONY_LOG=debug` shows at
/// the end of a capture, and what the benchmark reports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stages {
    /// pg_dump printing the schema (beside the readers, on its own connection).
    pub(crate) schema: Duration,
    /// Waiting for the server's `COPY` data (the server reading, sorting and sending rows).
    pub(crate) reading: Duration,
    /// Cutting the rows into chunks (and masking them, for a sync).
    pub(crate) chunking: Duration,
    /// Hashing chunks into their ids.
    pub(crate) hashing: Duration,
    /// Compressing new chunks (as deltas where they have a base).
    pub(crate) compressing: Duration,
    /// Asking the store for chunks and writing the new ones.
    pub(crate) writing: Duration,
}

impl Stages {
    pub(crate) fn add(&mut self, other: Stages) {
        self.schema += other.schema;
        self.reading += other.reading;
        self.chunking += other.chunking;
        self.hashing += other.hashing;
        self.compressing += other.compressing;
        self.writing += other.writing;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schema (pg_dump) {:.3} s, reading {:.3} s, chunking {:.3} s, hashing {:.3} s, compressing {:.3} s, writing {:.3} s",
            self.schema.as_secs_f64(),
            self.reading.as_secs_f64(),
            self.chunking.as_secs_f64(),
            self.hashing.as_secs_f64(),
            self.compressing.as_secs_f64(),
            self.writing.as_secs_f64()
        )
    }
}

impl Tally {
    pub(crate) fn add(&mut self, s: Stored) {
        self.blobs += 1;
        self.stored_bytes += s.stored_bytes;
        if s.new {
            self.new_blobs += 1;
            self.new_bytes += s.stored_bytes;
        }
    }
}

pub(crate) fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}
