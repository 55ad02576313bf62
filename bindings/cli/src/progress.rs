//! A progress line on the terminal, for work longer than a moment; never when stdout is
//! not a terminal or with `--json`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use phony_postgres::Progress;

/// A spinner counting bytes, shown only after half a second.
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(enabled: bool, message: &str) -> Self {
        if !enabled || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return Bar { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})")
        {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        let shown = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !shown.is_finished() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(120));
            }
        });
        Bar { bar: Some(bar) }
    }

    /// The callback to hand to capture or restore.
    pub fn callback(&self) -> Option<Progress> {
        let bar = self.bar.clone()?;
        Some(Arc::new(move |n| bar.inc(n)))
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
