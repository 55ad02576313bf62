//! `phony snapshot diff FROM [TO]`: what changed between two snapshots, or from a snapshot
//! to the database as it is now.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory};
use phony_core::diff::{
    Diff, ObjectChange, RowChange, SequencePoint, TableChange, TableDiff, Value,
};
use phony_engine::report::DiffSide;
use phony_engine::{DiffOptions, DiffTo, Engine, RunOptions};

use crate::cli::Cli;
use crate::context::Context;
use crate::output;
use crate::progress::Bars;
use crate::stdout::out;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Snapshot to diff from: id, unique id prefix, or name
    #[arg(value_name = "FROM")]
    pub from: String,
    /// Snapshot to diff to; without it, the database as it is now
    #[arg(value_name = "TO")]
    pub to: Option<String>,
    /// List the rows that were added, removed or changed (up to --limit per table)
    #[arg(long)]
    pub rows: bool,
    /// Only this table (schema.name, or a bare name); repeat for more
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Rows listed per table with --rows
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Also list tables without changes
    #[arg(long)]
    pub all: bool,
    /// Print SQL that turns FROM's data into TO's (refused when the schemas differ)
    #[arg(long, conflicts_with_all = ["rows", "all"])]
    pub sql: bool,
}

pub async fn run(ctx: &Context, args: DiffArgs) -> Result<()> {
    if args.sql && ctx.json {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--sql prints a SQL script; it cannot be combined with --json",
            )
            .exit();
    }
    let engine = Engine::from_store(ctx.open_store().await?);
    let to = match &args.to {
        Some(reference) => DiffTo::Snapshot(reference.clone()),
        None => DiffTo::Live(ctx.target()?),
    };
    let database = match &to {
        DiffTo::Live(target) => target.dbname().to_owned(),
        DiffTo::Snapshot(_) => String::new(),
    };
    let bars = Bars::new(!ctx.json && !args.sql, &database);
    let ctrl_c = crate::snapshot::CtrlC::listen();
    let opts = DiffOptions {
        tables: args.tables.clone(),
        row_limit: if args.sql {
            usize::MAX
        } else if args.rows {
            args.limit
        } else {
            0
        },
        include_unchanged: args.all,
        run: RunOptions {
            progress: Some(bars.clone()),
            cancel: Some(ctrl_c.cancel.clone()),
            notify: Some(crate::context::notify()),
            on_damaged: Some(Arc::new(crate::context::warn_damaged)),
        },
    };
    let doc = engine.diff(&args.from, to, opts).await;
    drop(bars);
    let doc = doc?;
    if args.sql {
        let sql = doc.sql().context("writing the SQL patch")?;
        out!("{sql}")?;
        return Ok(());
    }
    if ctx.json {
        return output::print_json(&doc);
    }
    out!("{}", render(&doc.from, &doc.to, &doc.diff, args.rows))?;
    Ok(())
}

/// The verb after a count: "1 differs", "2 differ".
fn differ(n: usize) -> &'static str {
    if n == 1 {
        "differs"
    } else {
        "differ"
    }
}

/// The diff for people.
fn render(from: &DiffSide, to: &DiffSide, diff: &Diff, rows: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "from {}", from.label());
    let _ = writeln!(out, "to   {}", to.label());
    if diff.is_empty() {
        out.push_str("no differences\n");
        for t in &diff.tables {
            let _ = writeln!(out, "  {}.{}: unchanged", t.schema, t.name);
        }
        return out;
    }
    if !diff.schema.is_empty() {
        let _ = writeln!(
            out,
            "\nschema: {} {}",
            crate::output::count(diff.schema.len(), "object", "objects"),
            differ(diff.schema.len())
        );
        for c in &diff.schema {
            let mark = match c.change {
                ObjectChange::Added => "added",
                ObjectChange::Dropped => "dropped",
                ObjectChange::Altered => "altered",
            };
            let _ = writeln!(out, "  {mark} {}", c.title());
            for line in c.diff.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let changed = diff.tables.iter().filter(|t| t.has_changes()).count();
    if !diff.tables.is_empty() {
        let _ = writeln!(out, "\ntables: {changed} {}", differ(changed));
        for t in &diff.tables {
            render_table(&mut out, t, rows);
        }
    }
    if !diff.sequences.is_empty() {
        let _ = writeln!(
            out,
            "\nsequences: {} {}",
            diff.sequences.len(),
            differ(diff.sequences.len())
        );
        for s in &diff.sequences {
            let _ = writeln!(
                out,
                "  {}.{}: {} → {}",
                s.schema,
                s.name,
                point(&s.from),
                point(&s.to)
            );
        }
    }
    out
}

fn point(p: &Option<SequencePoint>) -> String {
    match p {
        None => "(none)".into(),
        Some(p) if p.is_called => p.last_value.to_string(),
        Some(p) => format!("{} (not called)", p.last_value),
    }
}

fn render_table(out: &mut String, t: &TableDiff, rows: bool) {
    let what = match t.change {
        TableChange::Added => " (added table)",
        TableChange::Dropped => " (dropped table)",
        TableChange::Changed | TableChange::Unchanged => "",
    };
    let _ = writeln!(
        out,
        "  {}.{}{what}: {} added, {} removed, {} changed",
        t.schema, t.name, t.rows_added, t.rows_removed, t.rows_changed
    );
    for n in &t.notes {
        let _ = writeln!(out, "    note: {n}");
    }
    if !t.columns_only_in_from.is_empty() {
        let _ = writeln!(
            out,
            "    columns only in from: {}",
            t.columns_only_in_from.join(", ")
        );
    }
    if !t.columns_only_in_to.is_empty() {
        let _ = writeln!(
            out,
            "    columns only in to: {}",
            t.columns_only_in_to.join(", ")
        );
    }
    if !rows {
        return;
    }
    let key_of = |key: &[Value]| -> String {
        t.key
            .iter()
            .zip(key)
            .map(|(c, v)| format!("{c}={}", show(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all_of = |values: &[Value]| -> String {
        t.columns
            .iter()
            .zip(values)
            .map(|(c, v)| format!("{c}={}", show(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in &t.rows {
        match r {
            RowChange::Added { key, values, count } | RowChange::Removed { key, values, count } => {
                let mark = if matches!(r, RowChange::Added { .. }) {
                    '+'
                } else {
                    '-'
                };
                let times = if *count > 1 {
                    format!("{count}× ")
                } else {
                    String::new()
                };
                if key.is_empty() {
                    let _ = writeln!(out, "    {mark} {times}({})", all_of(values));
                } else {
                    let _ = writeln!(out, "    {mark} {}: ({})", key_of(key), all_of(values));
                }
            }
            RowChange::Changed { key, changes } => {
                let cols: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}: {} → {}", c.column, show(&c.old), show(&c.new)))
                    .collect();
                let _ = writeln!(out, "    ~ {}: {}", key_of(key), cols.join("; "));
            }
        }
    }
    if t.rows_truncated {
        let _ = writeln!(out, "    … more rows not listed (raise --limit)");
    }
}

/// A value as PostgreSQL prints it, on one line: NULL as `NULL`, control characters
/// escaped, long values shortened.
fn show(v: &Value) -> String {
    const MAX: usize = 80;
    let Some(s) = v else {
        return "NULL".into();
    };
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        match ch {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_on_one_line() {
        assert_eq!(show(&None), "NULL");
        assert_eq!(show(&Some("a\tb\nc".into())), "a\\tb\\nc");
        assert_eq!(show(&Some("x".repeat(100))).chars().count(), 81);
    }
}
