//! `phony snapshot export ID|NAME [-o FILE|s3://…|-] [--format sql]`: a snapshot as a plain
//! SQL script (see `phony_postgres::export`), to stdout, a file or an S3 object, compressed
//! when the name ends in `.zst` or `.gz`.
//!
//! The script is produced on the async side and written on a blocking thread, through a
//! bounded channel, so memory stays bounded. A file is written under a temporary name beside
//! it and renamed when complete; an S3 object is a multipart upload, completed only at the
//! end (and aborted on failure): a failed export leaves nothing under the name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use phony_core::resolve::resolve;
use phony_object_store::{ObjectStoreBackend, StoreLocation};
use tokio::sync::mpsc;

use crate::context::Context;
use crate::output;

/// Pieces of script in flight between the producer and the writer.
const CHANNEL_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A plain SQL script for psql
    Sql,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Snapshot id, unique id prefix, or name
    #[arg(value_name = "ID|NAME")]
    pub snapshot: String,
    /// Where to write: a file, s3://bucket/key, or - for stdout; compressed when the name
    /// ends in .zst or .gz
    #[arg(short, long, value_name = "FILE|s3://…|-", default_value = "-")]
    pub output: String,
    /// The script's format
    #[arg(long, value_enum, default_value = "sql")]
    pub format: ExportFormat,
    /// Replace the file or object if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Zstd,
    Gzip,
}

fn compression_of(name: &str) -> Compression {
    if name.ends_with(".zst") {
        Compression::Zstd
    } else if name.ends_with(".gz") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// Where the script goes.
enum Target {
    Stdout,
    File(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        key: object_store::path::Path,
        url: String,
    },
}

pub async fn run(ctx: &Context, args: ExportArgs) -> Result<()> {
    let ExportFormat::Sql = args.format;
    let store = ctx.open_store().await?;
    let records = store.records().await.context("reading the snapshots")?;
    let record = resolve(&records, &args.snapshot)?.clone();
    let root = store
        .root(&record.root)
        .await
        .with_context(|| format!("reading snapshot {}", record.id))?;
    let target = target(&args.output, args.force).await?;

    let job = Job {
        store,
        record,
        root,
        compression: compression_of(&args.output),
    };
    let report = match target {
        Target::Stdout => job.to_stdout().await?,
        Target::File(path) => job.to_file(&path).await?,
        Target::S3 { store, key, url } => job.to_s3(store.as_ref(), &key, &url).await?,
    };
    print(ctx, &job.record, &args.output, report)
}

/// One snapshot to export.
struct Job {
    store: Arc<crate::context::AppStore>,
    record: phony_core::SnapshotRecord,
    root: phony_core::RootManifest,
    compression: Compression,
}

type Report = phony_postgres::export::ExportReport;

impl Job {
    /// Produces the script into `sink` (on a blocking writer); the producer's result and
    /// the writer's.
    async fn run(
        &self,
        sink: Box<dyn Write + Send>,
    ) -> Result<(phony_postgres::Result<Report>, std::io::Result<()>)> {
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let writer = spawn_writer(rx, self.compression, sink);
        let produced =
            phony_postgres::export::export_sql(&self.store, &self.record, &self.root, &tx).await;
        drop(tx);
        let written = writer.await.context("writing the export")?;
        Ok((produced, written))
    }

    async fn to_stdout(&self) -> Result<Report> {
        let (produced, written) = self.run(Box::new(std::io::stdout())).await?;
        finish(produced, written)
    }

    /// Writes under a temporary name beside `path`, renamed when complete.
    async fn to_file(&self, path: &Path) -> Result<Report> {
        let (tmp, file) = temporary_file(path)?;
        let (produced, written) = match self.run(Box::new(std::io::BufWriter::new(file))).await {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let result = finish(produced, written).and_then(|report| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming the export to {}", path.display()))?;
            Ok(report)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// A multipart upload, completed only when the whole script went: otherwise aborted,
    /// and no object appears.
    async fn to_s3(
        &self,
        s3: &dyn ObjectStore,
        key: &object_store::path::Path,
        url: &str,
    ) -> Result<Report> {
        let upload = s3
            .put_multipart(key)
            .await
            .map_err(|e| anyhow::anyhow!("starting the upload to {url}: {e}"))?;
        let (ptx, prx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let uploader = tokio::spawn(upload_parts(prx, WriteMultipart::new(upload)));
        let (produced, written) = self.run(Box::new(ChannelWriter(ptx))).await?;
        let upload = uploader
            .await
            .context("uploading the export")?
            .map_err(|e| std::io::Error::other(format!("uploading to {url}: {e}")));
        let (written, upload) = match (written, upload) {
            (Ok(()), Ok(upload)) => (Ok(()), Some(upload)),
            (Err(e), upload) => (Err(e), upload.ok()),
            (Ok(()), Err(e)) => (Err(e), None),
        };
        match (finish(produced, written), upload) {
            (Ok(report), Some(upload)) => {
                upload
                    .finish()
                    .await
                    .map_err(|e| anyhow::anyhow!("completing the upload to {url}: {e}"))?;
                Ok(report)
            }
            (result, upload) => {
                if let Some(upload) = upload {
                    let _ = upload.abort().await;
                }
                result
            }
        }
    }
}

/// The producer's result, unless the writer failed first (then the writer's error is the
/// cause, and the producer only saw its channel close).
fn finish(
    produced: phony_postgres::Result<Report>,
    written: std::io::Result<()>,
) -> Result<Report> {
    written.context("writing the export")?;
    produced.context("exporting the snapshot")
}

fn print(
    ctx: &Context,
    record: &phony_core::SnapshotRecord,
    output: &str,
    report: Report,
) -> Result<()> {
    if ctx.json && output != "-" {
        output::print_json(&serde_json::json!({
            "snapshot": record.id.to_string(),
            "output": output,
            "tables": report.tables,
            "rows": report.rows,
            "sequences": report.sequences,
            "sql_bytes": report.bytes,
        }))?;
    } else if !ctx.json && output != "-" {
        println!(
            "exported {} to {output}: {} table(s), {} row(s), {} of SQL",
            record.id,
            report.tables,
            report.rows,
            output::size(report.bytes)
        );
    }
    Ok(())
}

/// Parses the output and refuses an existing file or object without `force`.
async fn target(output: &str, force: bool) -> Result<Target> {
    if output == "-" {
        return Ok(Target::Stdout);
    }
    if output.contains("://") && !output.starts_with("file://") {
        let location: StoreLocation = output.parse()?;
        let StoreLocation::S3 { bucket, prefix } = location else {
            bail!("export to {output} is not supported: write a file, s3://bucket/key or -");
        };
        if prefix.is_empty() {
            bail!("{output} names no object: write s3://{bucket}/KEY");
        }
        let backend = ObjectStoreBackend::open(
            &StoreLocation::S3 {
                bucket: bucket.clone(),
                prefix: String::new(),
            },
            false,
        )
        .await?;
        let store = backend
            .object_store()
            .context("opening the S3 bucket for the export")?;
        let key = object_store::path::Path::from(prefix.as_str());
        match store.head(&key).await {
            Ok(_) if !force => bail!("{output} exists: pass --force to replace it"),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => bail!("checking {output}: {e}"),
        }
        return Ok(Target::S3 {
            store,
            key,
            url: output.to_owned(),
        });
    }
    let path = PathBuf::from(output.strip_prefix("file://").unwrap_or(output));
    if path.exists() && !force {
        bail!("{} exists: pass --force to replace it", path.display());
    }
    Ok(Target::File(path))
}

/// A new temporary file beside `path`.
fn temporary_file(path: &Path) -> Result<(PathBuf, std::fs::File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = path.with_file_name(format!(".{name}.phony-{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    Ok((tmp, file))
}

/// Writes what arrives on `rx` to `sink` on a blocking thread, compressed as asked, and
/// finishes the compressed stream.
fn spawn_writer(
    mut rx: mpsc::Receiver<Bytes>,
    compression: Compression,
    sink: Box<dyn Write + Send>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::task::spawn_blocking(move || {
        let mut sink = match compression {
            Compression::None => {
                let mut w = sink;
                pump(&mut rx, &mut w)?;
                w
            }
            Compression::Zstd => {
                let mut w = zstd::Encoder::new(sink, 3)?;
                pump(&mut rx, &mut w)?;
                w.finish()?
            }
            Compression::Gzip => {
                let mut w = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
                pump(&mut rx, &mut w)?;
                w.finish()?
            }
        };
        sink.flush()
    })
}

fn pump(rx: &mut mpsc::Receiver<Bytes>, w: &mut impl Write) -> std::io::Result<()> {
    while let Some(piece) = rx.blocking_recv() {
        w.write_all(&piece)?;
    }
    Ok(())
}

/// Bytes written on the blocking side, sent to the uploader.
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::other("the upload stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Uploads what arrives as parts (a few in flight at once); returns the upload, not yet
/// completed, when the channel closes. Aborts it on failure.
async fn upload_parts(
    mut rx: mpsc::Receiver<Bytes>,
    mut upload: WriteMultipart,
) -> object_store::Result<WriteMultipart> {
    while let Some(piece) = rx.recv().await {
        if let Err(e) = upload.wait_for_capacity(4).await {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.write(&piece);
    }
    Ok(upload)
}
