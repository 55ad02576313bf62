//! A progress line on stderr, for work longer than a moment: the step, the bytes done and,
//! where the total is known (a restore's load: the snapshot's manifest says how many bytes
//! it holds), a bar with a percentage. Shown only when stderr is a terminal and without
//! `--json`: scripts and tests that pipe stderr see nothing extra.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use phony_postgres::{Phase, PhaseReport, Progress};

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

    /// The callback to hand to capture or restore: bytes done.
    pub fn callback(&self) -> Option<Progress> {
        let bar = self.bar.clone()?;
        Some(Arc::new(move |n| bar.inc(n)))
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
