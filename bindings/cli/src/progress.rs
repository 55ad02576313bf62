//! A progress line on stderr, for work longer than a moment: the step, the bytes done and,
//! where the total is known (a restore's load: the snapshot's manifest says how many bytes
//! it holds), a bar with a percentage. Shown only when stderr is a terminal and without
//! `--json`: scripts and tests that pipe stderr see nothing extra.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use phony_engine::{Part, ProgressSink, Step};
use phony_postgres::{Phase, PhaseReport};

const SPINNER: &str = "{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})";
const BAR: &str =
    "{spinner} {msg} [{wide_bar}] {bytes}/{total_bytes} {percent}% ({bytes_per_sec}, eta {eta})";

/// Every line shown, one below the other: a restore's safety snapshot and the restore run
/// at the same time.
static LINES: OnceLock<MultiProgress> = OnceLock::new();

/// A progress line, shown only after half a second.
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
    /// What the work is, before the step: "restoring clean-state into app".
    what: String,
}

impl Bar {
    pub fn new(enabled: bool, what: &str) -> Self {
        let what = what.to_owned();
        if !enabled || !std::io::stderr().is_terminal() {
            return Bar { bar: None, what };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        set_style(&bar, SPINNER);
        bar.set_message(what.clone());
        let shown = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !shown.is_finished() {
                let shown = LINES.get_or_init(MultiProgress::new).add(shown);
                shown.enable_steady_tick(Duration::from_millis(120));
            }
        });
        Bar {
            bar: Some(bar),
            what,
        }
    }

    /// The callback to hand to a restore: the step it reached, and the total to load.
    pub fn phase_callback(&self) -> Option<PhaseReport> {
        let bar = self.bar.clone()?;
        let what = self.what.clone();
        Some(Arc::new(move |phase: Phase| {
            bar.set_message(format!("{what}: {}", phase.describe()));
            match phase {
                Phase::Loading { bytes } if bytes > 0 => {
                    bar.set_position(0);
                    bar.set_length(bytes);
                    set_style(&bar, BAR);
                }
                _ => set_style(&bar, SPINNER),
            }
        }))
    }

    /// Counts `n` bytes more.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Shows the step a restore reached.
    pub fn phase(&self, phase: Phase) {
        if let Some(f) = self.phase_callback() {
            f(phase);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn set_style(bar: &ProgressBar, template: &str) {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The engine's progress, as one line per part of the work (a restore and its safety
/// snapshot each get one), each made when its part first reports.
pub struct Bars {
    enabled: bool,
    /// The database the work is about.
    database: String,
    lines: std::sync::Mutex<Vec<(Part, Bar)>>,
}

impl Bars {
    pub fn new(enabled: bool, database: &str) -> Arc<Self> {
        Arc::new(Bars {
            enabled,
            database: database.to_owned(),
            lines: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn with(&self, part: Part, f: impl FnOnce(&Bar)) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bar)) = lines.iter().find(|(p, _)| *p == part) {
            return f(bar);
        }
        let what = match part {
            Part::SafetySnapshot => format!("safety snapshot: reading {}", self.database),
            Part::Restore => format!("restoring {}", self.database),
            Part::SyncSource => "reading the source".to_owned(),
            _ => format!("reading {}", self.database),
        };
        let bar = Bar::new(self.enabled, &what);
        f(&bar);
        lines.push((part, bar));
    }
}

impl ProgressSink for Bars {
    fn step(&self, part: Part, step: Step) {
        self.with(part, |bar| {
            if let Step::Restore(phase) = step {
                bar.phase(phase);
            }
        });
    }

    fn bytes(&self, part: Part, bytes: u64) {
        self.with(part, |bar| bar.inc(bytes));
    }

    fn done(&self, part: Part) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.retain(|(p, bar)| {
            if *p == part {
                bar.finish();
            }
            *p != part
        });
    }
}
