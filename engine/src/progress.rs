//! How a lifecycle operation reports and is stopped: a progress sink, a cancellation
//! handle and a notice callback, shared by create, restore and the live diff.

use std::sync::Arc;

use phony_postgres::{PhaseReport, Progress};

use crate::create::{CreatePhase, OnDamaged};
use crate::lease::Notify;
use crate::Cancel;

/// Which piece of work a report is about: a restore takes its safety snapshot beside it,
/// so one operation may report two at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// A snapshot being created.
    Snapshot,
    /// The snapshot of the state before a restore, taken beside it.
    SafetySnapshot,
    /// A restore.
    Restore,
    /// The live database read for a diff (no record is written).
    LiveCapture,
    /// A sync's source being read into the store.
    SyncSource,
    /// A snapshot written out as a script.
    Export,
}

/// A step an operation reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// A snapshot (or a live capture) reached a step.
    Create(CreatePhase),
    /// A restore began; the snapshot holds this much.
    Restoring { tables: u64, rows: u64, bytes: u64 },
    /// A restore reached a step of its own (loading, indexes, sequences).
    Restore(phony_postgres::Phase),
    /// An export began; the snapshot holds this much.
    Exporting { tables: u64, rows: u64, bytes: u64 },
}

/// Where an operation reports its progress: a command line draws bars, a service updates
/// a job. Called from the operation's tasks; keep each call short.
pub trait ProgressSink: Send + Sync {
    /// `part` reached `step`.
    fn step(&self, part: Part, step: Step);
    /// `part` read or wrote `bytes` more bytes of rows.
    fn bytes(&self, part: Part, bytes: u64);
    /// `part` ended, whether it succeeded or not.
    fn done(&self, _part: Part) {}
}

/// What every long operation takes besides its request: where progress and notices go,
/// and a handle that stops it. The default runs it plainly.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Told steps and bytes as the work goes.
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// Stops the work at its next safe point (see [`Cancel`]).
    pub cancel: Option<Cancel>,
    /// Where notices about others' stale locks go (one line each).
    pub notify: Option<Notify>,
    /// Told each damaged snapshot record met, which is then skipped.
    pub on_damaged: Option<OnDamaged>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(Cancel::is_cancelled)
    }

    pub(crate) fn notify(&self) -> Notify {
        self.notify
            .clone()
            .unwrap_or_else(|| Arc::new(|_: &str| {}))
    }

    pub(crate) fn step(&self, part: Part, step: Step) {
        if let Some(p) = &self.progress {
            p.step(part, step);
        }
    }

    pub(crate) fn done(&self, part: Part) {
        if let Some(p) = &self.progress {
            p.done(part);
        }
    }

    /// The byte counter to hand to a capture or a restore.
    pub(crate) fn bytes_fn(&self, part: Part) -> Option<Progress> {
        let sink = self.progress.clone()?;
        Some(Arc::new(move |n| sink.bytes(part, n)))
    }

    /// The step report to hand to a restore.
    pub(crate) fn restore_phase_fn(&self) -> Option<PhaseReport> {
        let sink = self.progress.clone()?;
        Some(Arc::new(move |p| {
            sink.step(Part::Restore, Step::Restore(p))
        }))
    }

    /// The step report to hand to a create.
    pub(crate) fn create_phase_fn(
        &self,
        part: Part,
    ) -> Option<Arc<dyn Fn(CreatePhase) + Send + Sync>> {
        let sink = self.progress.clone()?;
        Some(Arc::new(move |p| sink.step(part, Step::Create(p))))
    }

    /// Tells the damaged records of `scan` to [`Self::on_damaged`].
    pub(crate) fn damaged(&self, scan: &phony_core::store::RecordScan) {
        if let Some(f) = &self.on_damaged {
            scan.damaged.iter().for_each(|d| f(d));
        }
    }
}
