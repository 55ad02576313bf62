//! The steps of a restore, as it reports them to whoever shows its progress.

use std::sync::Arc;

/// A step a restore has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading every table's rows; `bytes` in all, as the snapshot's manifest says (the
    /// restore's byte [`crate::Progress`] counts towards it from here on).
    Loading { bytes: u64 },
    /// Building indexes and adding keys, constraints and triggers after the load.
    IndexesAndConstraints,
    /// Setting sequences to the snapshot's values.
    Sequences,
}

impl Phase {
    /// A few words for people: "loading", "indexes and constraints", "sequences".
    pub fn describe(&self) -> &'static str {
        match self {
            Phase::Loading { .. } => "loading",
            Phase::IndexesAndConstraints => "indexes and constraints",
            Phase::Sequences => "sequences",
        }
    }
}

/// Told each [`Phase`] as the restore reaches it.
pub type PhaseReport = Arc<dyn Fn(Phase) + Send + Sync>;

/// Tells `report` (if any) that the restore reached `phase`.
pub(crate) fn reached(report: &Option<PhaseReport>, phase: Phase) {
    if let Some(r) = report {
        r(phase);
    }
}
