//! A snapshot as a plain SQL script, which `psql -v ON_ERROR_STOP=1 -f FILE` loads into an
//! empty database: the schema's pre-data DDL, every table's rows as a `COPY … FROM stdin`
//! block, the post-data DDL (keys, indexes, foreign keys, triggers …), every sequence set
//! with `setval`, and the materialized views that held data refreshed.
//!
//! The script is produced from the store alone (no database is needed) and streamed: the
//! pieces go to a bounded channel, chunks are fetched and decoded a few ahead
//! ([`decoded_chunks`]), so memory stays bounded whatever the snapshot's size. The rows
//! are the stored chunks as they are: phony stores rows in COPY's text format.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use phony_core::{Backend, QualifiedName, RootManifest, SnapshotRecord, Store};
use tokio::sync::mpsc::Sender;

use crate::error::{Error, Result};
use crate::read::chunk_stream::decoded_chunks;
use crate::sql::{ident_list, literal, qualified};
use crate::write::restore::full_path::schema_scripts;

/// How many chunks are fetched and decoded ahead of the one being written.
const PREFETCH: usize = 8;

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub tables: u64,
    pub rows: u64,
    pub sequences: u64,
    /// Bytes of SQL, before any compression.
    pub bytes: u64,
}

/// Writes the script of snapshot `record` (whose root manifest is `root`) to `out`, piece
/// by piece. Fails if the receiving end closes early.
pub async fn export_sql<B: Backend + 'static>(
    store: &Arc<Store<B>>,
    record: &SnapshotRecord,
    root: &RootManifest,
    out: &Sender<Bytes>,
) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    let mut out = Output { out, bytes: 0 };
    let name = record
        .name
        .as_ref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    out.send(Bytes::from(format!(
        "--\n-- phony export of snapshot {}{name}, taken {}\n-- Load into an empty database: psql -v ON_ERROR_STOP=1 -f FILE\n--\n\n",
        record.id, record.created_at
    )))
    .await?;
    let (pre_data, post_data) = schema_scripts(store, root).await?;
    out.send(Bytes::from(pre_data.clone())).await?;

    for table in &root.tables {
        let cols = if table.columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", ident_list(&table.columns))
        };
        out.send(Bytes::from(format!(
            "\n--\n-- Data for {}\n--\n\nCOPY {}{cols} FROM stdin;\n",
            table.table,
            qualified(&table.table)
        )))
        .await?;
        let chunks = store.table_chunks(table).await?;
        let blobs = decoded_chunks(store, chunks, PREFETCH);
        futures::pin_mut!(blobs);
        while let Some(plain) = blobs.try_next().await? {
            out.send(Bytes::from(plain)).await?;
        }
        out.send(Bytes::from_static(b"\\.\n")).await?;
        report.tables += 1;
        report.rows += table.content.rows;
    }

    out.send(Bytes::from(format!("\n{post_data}\n"))).await?;
    let tail = tail_sql(root, &pre_data);
    out.send(Bytes::from(tail)).await?;
    report.sequences = root.sequences.len() as u64;
    report.bytes = out.bytes;
    Ok(report)
}

/// The channel the script goes to, counting what went.
struct Output<'a> {
    out: &'a Sender<Bytes>,
    bytes: u64,
}

impl Output<'_> {
    async fn send(&mut self, piece: Bytes) -> Result<()> {
        self.bytes += piece.len() as u64;
        self.out
            .send(piece)
            .await
            .map_err(|_| Error::Internal("the export's output closed early".into()))
    }
}

/// The sequences' `setval`s and the materialized views' refreshes, in the order their
/// definitions appear in the pre-data DDL (pg_dump writes dependencies first).
fn tail_sql(root: &RootManifest, pre_data: &str) -> String {
    let mut out = String::new();
    if !root.sequences.is_empty() {
        out += "--\n-- Sequences\n--\n\n";
        for s in &root.sequences {
            out += &format!(
                "SELECT pg_catalog.setval({}, {}, {});\n",
                literal(&qualified(&s.sequence)),
                s.last_value,
                s.is_called
            );
        }
    }
    let views = refresh_order(&root.materialized_views, pre_data);
    if !views.is_empty() {
        out += "\n--\n-- Materialized views\n--\n\n";
        for v in views {
            out += &format!("REFRESH MATERIALIZED VIEW {};\n", qualified(v));
        }
    }
    out
}

/// `views` ordered as their `-- Name: …; Type: MATERIALIZED VIEW; Schema: …` headers appear
/// in `pre_data`; any not found there last, as given.
fn refresh_order<'a>(views: &'a [QualifiedName], pre_data: &str) -> Vec<&'a QualifiedName> {
    let mut ordered: Vec<&QualifiedName> = Vec::new();
    for line in pre_data.lines() {
        let Some(header) = line.strip_prefix("-- Name: ") else {
            continue;
        };
        let mut parts = header.split("; ");
        let (Some(name), Some("Type: MATERIALIZED VIEW"), Some(schema)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let schema = schema.strip_prefix("Schema: ").unwrap_or(schema);
        if let Some(v) = views
            .iter()
            .find(|v| v.name == name && v.schema == schema && !ordered.contains(v))
        {
            ordered.push(v);
        }
    }
    for v in views {
        if !ordered.contains(&v) {
            ordered.push(v);
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_refresh_in_definition_order() {
        let views = vec![
            QualifiedName::new("public", "a_top"),
            QualifiedName::new("public", "b_base"),
            QualifiedName::new("s", "unlisted"),
        ];
        let pre = "--\n-- Name: b_base; Type: MATERIALIZED VIEW; Schema: public; Owner: x\n--\n\
                   --\n-- Name: a_top; Type: MATERIALIZED VIEW; Schema: public; Owner: x\n--\n";
        let order: Vec<_> = refresh_order(&views, pre)
            .into_iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(order, ["b_base", "a_top", "unlisted"]);
    }
}
