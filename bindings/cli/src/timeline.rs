//! `phony snapshot timeline`: the database's history as the product draws it, one point
//! per snapshot, oldest on the left, `Current` at the end:
//!
//! ```text
//!   Before Sync #1     Sync #1            Current
//! ──●──────────────────●──────────────────●──▶ time
//!   snap_3f9a1c2b7d04  snap_77aa01bc2e19  now
//!   12-01 09:00        12-01 09:04
//! ```
//!
//! Points are evenly spaced (their dates are underneath); a history wider than the
//! terminal wraps onto further axes.

use anyhow::Result;
use clap::Args;
use phony_core::SnapshotRecord;
use serde::Serialize;

use crate::context::Context;
use crate::output;
use crate::stdout::out;

#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Columns to draw within [default: $COLUMNS, else 80]
    #[arg(long, value_name = "N")]
    pub width: Option<usize>,
}

pub async fn run(ctx: &Context, args: TimelineArgs) -> Result<()> {
    // No store yet: only the present.
    let records = match ctx.open_existing_store().await? {
        Some(store) => crate::context::records(&store).await?,
        None => Vec::new(),
    };
    let points = points(&records);
    if ctx.json {
        #[derive(Serialize)]
        struct Timeline {
            points: Vec<Point>,
        }
        return output::print_json(&Timeline { points });
    }
    let width = args
        .width
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(80);
    out!("{}", render(&points, width))?;
    Ok(())
}

/// One point of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The snapshot's id; `None` for `Current`.
    pub id: Option<String>,
    pub label: String,
    pub origin: Option<String>,
    pub created_at: Option<String>,
    pub pinned: bool,
}

/// The points of `records` (any order), oldest first, then `Current`.
pub fn points(records: &[SnapshotRecord]) -> Vec<Point> {
    let mut out: Vec<Point> = phony_core::timeline::labelled(records)
        .into_iter()
        .map(|(r, label)| {
            let t = r.created_at;
            Point {
                id: Some(r.id.to_string()),
                label,
                origin: Some(r.origin.to_string()),
                created_at: Some(format!(
                    "{:02}-{:02} {:02}:{:02}",
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute()
                )),
                pinned: r.pinned,
            }
        })
        .collect();
    out.push(Point {
        id: None,
        label: "Current".to_owned(),
        origin: None,
        created_at: None,
        pinned: false,
    });
    out
}

/// Draws `points` within `width` columns.
pub fn render(points: &[Point], width: usize) -> String {
    let cell = |p: &Point| -> [String; 3] {
        let label = if p.pinned {
            format!("{} (pinned)", p.label)
        } else {
            p.label.clone()
        };
        [
            label,
            p.id.clone().unwrap_or_else(|| "now".to_owned()),
            p.created_at.clone().unwrap_or_default(),
        ]
    };
    let cells: Vec<[String; 3]> = points.iter().map(cell).collect();
    let widths: Vec<usize> = cells
        .iter()
        .map(|c| c.iter().map(|s| s.chars().count()).max().unwrap_or(0) + 2)
        .collect();
    // Rows of points that fit: "──" before the first point, "──▶ time" after the last.
    let mut rows: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut used = 2;
    for (i, w) in widths.iter().enumerate() {
        if i > start && used + w + 8 > width.max(20) {
            rows.push(start..i);
            start = i;
            used = 2;
        }
        used += w;
    }
    rows.push(start..widths.len());

    let mut out = String::new();
    let last_row = rows.len() - 1;
    for (r, range) in rows.into_iter().enumerate() {
        let mut lines = [
            String::from("  "),
            String::from("──"),
            String::from("  "),
            String::from("  "),
        ];
        for i in range.clone() {
            let w = widths[i];
            for (line, text) in [0, 2, 3].into_iter().zip(&cells[i]) {
                let pad = w - text.chars().count();
                lines[line].push_str(text);
                lines[line].push_str(&" ".repeat(pad));
            }
            lines[1].push('●');
            lines[1].push_str(&"─".repeat(w - 1));
        }
        if r == last_row {
            // The last point's segment ends in the arrow.
            let trimmed = lines[1].trim_end_matches('─').to_owned();
            lines[1] = format!("{trimmed}──▶ time");
        }
        for line in lines {
            let line = line.trim_end();
            if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use phony_core::{BlobId, Origin, SnapshotId, SnapshotStats, SourceInfo};
    use time::macros::datetime;

    fn record(
        id: [u8; 6],
        at: time::OffsetDateTime,
        origin: Origin,
        name: Option<&str>,
        sync: Option<&str>,
    ) -> SnapshotRecord {
        SnapshotRecord {
            format: 1,
            tool_version: None,
            id: SnapshotId::from_random(id),
            name: name.map(|n| n.parse().unwrap()),
            created_at: at,
            root: BlobId::of(b"root"),
            pinned: name == Some("clean-state"),
            origin,
            labels: sync
                .map(|s| [("sync".to_owned(), s.to_owned())].into())
                .unwrap_or_default(),
            source: SourceInfo::default(),
            stats: SnapshotStats::default(),
        }
    }

    fn history() -> Vec<SnapshotRecord> {
        vec![
            record(
                [2; 6],
                datetime!(2026-12-01 09:04 UTC),
                Origin::SyncAfter,
                None,
                Some("1"),
            ),
            record(
                [1; 6],
                datetime!(2026-12-01 09:00 UTC),
                Origin::SyncBefore,
                None,
                Some("1"),
            ),
            record(
                [3; 6],
                datetime!(2026-12-03 14:30 UTC),
                Origin::Manual,
                Some("clean-state"),
                None,
            ),
            record(
                [4; 6],
                datetime!(2026-12-12 17:00 UTC),
                Origin::SprintEnd,
                None,
                None,
            ),
        ]
    }

    /// The drawing is part of the interface: a change shows up here as a reviewed diff.
    #[test]
    fn golden_timeline() {
        let drawn = render(&points(&history()), 200);
        let expected = concat!(
            "  Before Sync #1     Sync #1            clean-state (pinned)  Sprint End #1      Current\n",
            "──●──────────────────●──────────────────●─────────────────────●──────────────────●──▶ time\n",
            "  snap_010101010101  snap_020202020202  snap_030303030303     snap_040404040404  now\n",
            "  12-01 09:00        12-01 09:04        12-03 14:30           12-12 17:00\n",
        );
        assert_eq!(drawn, expected, "\n{drawn}");
    }

    #[test]
    fn narrow_terminals_wrap_onto_further_axes() {
        let drawn = render(&points(&history()), 50);
        let axes: Vec<&str> = drawn.lines().filter(|l| l.starts_with("──")).collect();
        assert_eq!(axes.len(), 3, "\n{drawn}");
        assert!(axes.last().unwrap().ends_with("──▶ time"));
        assert!(drawn.lines().all(|l| l.chars().count() <= 50), "\n{drawn}");
        for id in ["snap_010101010101", "snap_040404040404", "now"] {
            assert!(drawn.contains(id), "{id}\n{drawn}");
        }
    }

    #[test]
    fn an_empty_store_shows_only_the_present() {
        assert_eq!(render(&points(&[]), 80), "  Current\n──●──▶ time\n  now\n");
    }
}
