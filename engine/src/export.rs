//! Exporting a snapshot as a plain SQL script (see `phony_postgres::export`) to a file, an
//! S3 object or any writer, compressed when asked (by name: `.zst`, `.gz`).
//!
//! The export's whole lifecycle lives here, so that the command line and the service
//! export alike: which snapshot, whether the destination may be replaced, how the script
//! is written, and what is left behind when it fails (nothing).
//!
//! The script is produced on the async side and written on a blocking thread, through a
//! bounded channel, so memory stays bounded whatever the snapshot's size. A file is
//! written under a temporary name beside it and renamed when complete; an S3 object is a
//! multipart upload, completed only at the end (aborted otherwise): a failed or cancelled
//! export leaves nothing under the name. S3 credentials come from the process's `AWS_*`
//! environment, as for a store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt as _, WriteMultipart};
use phony_core::resolve::resolve;
use phony_core::{RootManifest, SnapshotRecord};
use phony_object_store::{ObjectStoreBackend, StoreLocation};
use phony_postgres::export::ExportReport;
use tokio::sync::mpsc;

use crate::cancel::cancelled;
use crate::progress::{Part, RunOptions, Step};
use crate::{Engine, Error, Result};

/// Pieces of script in flight between the producer and the writer.
const CHANNEL_DEPTH: usize = 16;

/// Parts of an S3 upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Where an export goes.
pub enum ExportTarget {
    /// A local file, written under a temporary name beside it and renamed when complete.
    File(PathBuf),
    /// An S3 object, `s3://bucket/key`: a multipart upload completed only at the end.
    S3(String),
    /// Any writer (stdout): written as produced; a failure may leave part of the script.
    Writer(Box<dyn Write + Send>),
}

impl std::fmt::Debug for ExportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportTarget::File(p) => f.debug_tuple("File").field(p).finish(),
            ExportTarget::S3(url) => f.debug_tuple("S3").field(url).finish(),
            ExportTarget::Writer(_) => f.write_str("Writer"),
        }
    }
}

impl ExportTarget {
    /// Where people write an export: `s3://bucket/key`, `file:///path` or a path. Other
    /// schemes are refused ([`crate::ErrorKind::Invalid`]).
    pub fn parse(output: &str) -> Result<Self> {
        if !output.contains("://") {
            return Ok(ExportTarget::File(PathBuf::from(output)));
        }
        match output.parse::<StoreLocation>()? {
            StoreLocation::S3 { .. } => Ok(ExportTarget::S3(output.to_owned())),
            StoreLocation::Dir(path) if output.starts_with("file://") => {
                Ok(ExportTarget::File(path))
            }
            _ => Err(invalid(format!(
                "export to {output} is not supported: write a file, s3://bucket/key or -"
            ))),
        }
    }

    /// The destination as messages name it.
    pub fn describe(&self) -> String {
        match self {
            ExportTarget::File(p) => p.display().to_string(),
            ExportTarget::S3(url) => url.clone(),
            ExportTarget::Writer(_) => "the output".to_owned(),
        }
    }
}

/// The script's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// A plain SQL script for `psql -v ON_ERROR_STOP=1 -f FILE`.
    #[default]
    Sql,
}

/// How the script is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Zstd,
    Gzip,
}

impl Compression {
    /// By the destination's name: `.zst` is zstd, `.gz` gzip, anything else plain.
    pub fn by_name(name: &str) -> Self {
        if name.ends_with(".zst") {
            Compression::Zstd
        } else if name.ends_with(".gz") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }
}

/// How to export.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    pub format: ExportFormat,
    pub compression: Compression,
    /// Replace the file or object if it exists (otherwise [`Error::ExportExists`]).
    pub force: bool,
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The snapshot exported.
    pub record: SnapshotRecord,
    /// Tables, rows, sequences and bytes of SQL (before compression).
    pub report: ExportReport,
    /// Bytes written to the destination (after compression).
    pub written: u64,
}

impl Engine {
    /// Exports the snapshot `snapshot` names (an id, a unique id prefix or a name) to
    /// `target`, as `opts` asks.
    ///
    /// An existing file or object is refused without `opts.force`
    /// ([`Error::ExportExists`]); the check comes before any work. (An S3 object written
    /// by someone else between the check and the upload's completion is replaced: S3
    /// multipart uploads cannot be create-only.) `run.cancel` stops the export at once and
    /// leaves nothing at a file or S3 destination ([`Error::Cancelled`]). Progress is
    /// reported as [`Part::Export`]: one [`Step::Exporting`], then bytes of SQL.
    pub async fn export(
        &self,
        snapshot: &str,
        target: ExportTarget,
        opts: ExportOptions,
        run: RunOptions,
    ) -> Result<Exported> {
        let ExportFormat::Sql = opts.format;
        if run.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let scan = self.scan().await?;
        run.damaged(&scan);
        let record = resolve(&scan.records, snapshot)?.clone();
        let root =
            self.store()
                .root(&record.root)
                .await
                .map_err(|source| Error::ReadingSnapshot {
                    id: record.id,
                    source,
                })?;
        let job = Job {
            engine: self,
            record: &record,
            root: &root,
            compression: opts.compression,
            run: &run,
        };
        let (report, written) = match target {
            ExportTarget::Writer(sink) => {
                let describe = "the output".to_owned();
                let (produced, written) = job.produce(sink).await?;
                job.finish(produced, written, &describe)?
            }
            ExportTarget::File(path) => {
                if !opts.force && path.exists() {
                    return Err(Error::ExportExists {
                        target: path.display().to_string(),
                    });
                }
                job.to_file(&path).await?
            }
            ExportTarget::S3(url) => {
                let (s3, key) = s3_target(&url, opts.force).await?;
                job.to_s3(s3.as_ref(), &key, &url).await?
            }
        };
        Ok(Exported {
            record,
            report,
            written,
        })
    }
}

fn invalid(message: String) -> Error {
    Error::Store(phony_core::Error::Invalid(message))
}

/// Opens the bucket of `url` (`s3://bucket/key`) and refuses an existing object without
/// `force`.
async fn s3_target(
    url: &str,
    force: bool,
) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
    let StoreLocation::S3 { bucket, prefix } = url.parse::<StoreLocation>()? else {
        return Err(invalid(format!("{url} is not an s3://bucket/key URL")));
    };
    if prefix.is_empty() {
        return Err(invalid(format!(
            "{url} names no object: write s3://{bucket}/KEY"
        )));
    }
    let location = StoreLocation::S3 {
        bucket,
        prefix: String::new(),
    };
    let backend = ObjectStoreBackend::open(&location, false)
        .await
        .map_err(|e| match e {
            phony_core::Error::Invalid(_) => Error::Store(e),
            other => Error::ExportWriting {
                target: url.to_owned(),
                source: std::io::Error::other(other),
            },
        })?;
    let store = backend
        .object_store()
        .ok_or_else(|| invalid(format!("{url} is not an S3 location")))?;
    let key = object_store::path::Path::from(prefix.as_str());
    match store.head(&key).await {
        Ok(_) if !force => Err(Error::ExportExists {
            target: url.to_owned(),
        }),
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok((store, key)),
        Err(e) => Err(Error::ExportWriting {
            target: url.to_owned(),
            source: std::io::Error::other(e),
        }),
    }
}

/// One snapshot being exported.
struct Job<'a> {
    engine: &'a Engine,
    record: &'a SnapshotRecord,
    root: &'a RootManifest,
    compression: Compression,
    run: &'a RunOptions,
}

/// What the producer and the writer each ended with; `None`: cancelled.
type Ends = (
    Option<phony_postgres::Result<ExportReport>>,
    std::io::Result<u64>,
);

impl Job<'_> {
    /// Produces the script into `sink` (on a blocking writer) until it ends or the run is
    /// cancelled; the producer's result (`None`: cancelled) and the writer's.
    async fn produce(&self, sink: Box<dyn Write + Send>) -> Result<Ends> {
        self.run.step(
            Part::Export,
            Step::Exporting {
                tables: self.root.tables.len() as u64,
                rows: self.root.rows(),
                bytes: self.root.bytes(),
            },
        );
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let writer = spawn_writer(rx, self.compression, sink, self.run.clone());
        let store = self.engine.store();
        let produced = tokio::select! {
            biased;
            () = cancelled(self.run.cancel.as_ref()) => None,
            r = phony_postgres::export::export_sql(store, self.record, self.root, &tx) => Some(r),
        };
        drop(tx);
        let written = writer.await.map_err(|e| Error::ExportWriting {
            target: "the export".to_owned(),
            source: std::io::Error::other(e),
        })?;
        self.run.done(Part::Export);
        Ok((produced, written))
    }

    /// The report, unless the export was cancelled or failed. A writer's failure is the
    /// cause when both failed: the producer only saw its channel close.
    fn finish(
        &self,
        produced: Option<phony_postgres::Result<ExportReport>>,
        written: std::io::Result<u64>,
        target: &str,
    ) -> Result<(ExportReport, u64)> {
        let Some(produced) = produced else {
            return Err(Error::Cancelled);
        };
        let written = written.map_err(|source| Error::ExportWriting {
            target: target.to_owned(),
            source,
        })?;
        let report = produced.map_err(|source| Error::Exporting {
            id: self.record.id,
            source: Box::new(source),
        })?;
        Ok((report, written))
    }

    /// Writes under a temporary name beside `path`, renamed when complete; removed on
    /// failure.
    async fn to_file(&self, path: &Path) -> Result<(ExportReport, u64)> {
        let describe = path.display().to_string();
        let (tmp, file) = temporary_file(path).map_err(|source| Error::ExportWriting {
            target: describe.clone(),
            source,
        })?;
        let result = async {
            let (produced, written) = self
                .produce(Box::new(std::io::BufWriter::new(file)))
                .await?;
            let done = self.finish(produced, written, &describe)?;
            std::fs::rename(&tmp, path).map_err(|source| Error::ExportWriting {
                target: describe.clone(),
                source,
            })?;
            Ok(done)
        }
        .await;
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
    ) -> Result<(ExportReport, u64)> {
        let failed = |e: object_store::Error| Error::ExportWriting {
            target: url.to_owned(),
            source: std::io::Error::other(e),
        };
        let upload = s3.put_multipart(key).await.map_err(failed)?;
        let (ptx, prx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let uploader = tokio::spawn(upload_parts(prx, WriteMultipart::new(upload)));
        let ends = self.produce(Box::new(ChannelWriter(ptx))).await;
        let upload = match uploader.await {
            Ok(Ok(upload)) => Ok(upload),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(e) => Err(std::io::Error::other(e)),
        };
        let (produced, written) = match ends {
            Ok(ends) => ends,
            Err(e) => {
                if let Ok(upload) = upload {
                    let _ = upload.abort().await;
                }
                return Err(e);
            }
        };
        // The uploader's failure is the cause when the writer only saw it stop.
        let (written, upload) = match (written, upload) {
            (Ok(n), Ok(upload)) => (Ok(n), Some(upload)),
            (Err(e), Ok(upload)) => (Err(e), Some(upload)),
            (_, Err(e)) => (Err(e), None),
        };
        match (self.finish(produced, written, url), upload) {
            (Ok(done), Some(upload)) => {
                upload.finish().await.map_err(failed)?;
                Ok(done)
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

/// A new temporary file beside `path`.
fn temporary_file(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = path.with_file_name(format!(".{name}.phony-{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    Ok((tmp, file))
}

/// Writes what arrives on `rx` to `sink` on a blocking thread, compressed as asked, and
/// finishes the compressed stream; the bytes written to `sink`. Reports each piece's
/// plain bytes to `run`.
fn spawn_writer(
    mut rx: mpsc::Receiver<Bytes>,
    compression: Compression,
    sink: Box<dyn Write + Send>,
    run: RunOptions,
) -> tokio::task::JoinHandle<std::io::Result<u64>> {
    tokio::task::spawn_blocking(move || {
        let counted = Counting { inner: sink, n: 0 };
        let mut sink = match compression {
            Compression::None => {
                let mut w = counted;
                pump(&mut rx, &mut w, &run)?;
                w
            }
            Compression::Zstd => {
                let mut w = zstd::Encoder::new(counted, 3)?;
                pump(&mut rx, &mut w, &run)?;
                w.finish()?
            }
            Compression::Gzip => {
                let mut w = flate2::write::GzEncoder::new(counted, flate2::Compression::default());
                pump(&mut rx, &mut w, &run)?;
                w.finish()?
            }
        };
        sink.flush()?;
        Ok(sink.n)
    })
}

fn pump(
    rx: &mut mpsc::Receiver<Bytes>,
    w: &mut impl Write,
    run: &RunOptions,
) -> std::io::Result<()> {
    while let Some(piece) = rx.blocking_recv() {
        w.write_all(&piece)?;
        if let Some(p) = &run.progress {
            p.bytes(Part::Export, piece.len() as u64);
        }
    }
    Ok(())
}

/// Counts the bytes that reach the destination.
struct Counting {
    inner: Box<dyn Write + Send>,
    n: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
        if let Err(e) = upload.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.write(&piece);
    }
    Ok(upload)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn compression_follows_the_name() {
        assert_eq!(Compression::by_name("a.sql"), Compression::None);
        assert_eq!(Compression::by_name("a.sql.zst"), Compression::Zstd);
        assert_eq!(Compression::by_name("s3://b/a.sql.gz"), Compression::Gzip);
    }

    #[test]
    fn targets_parse_paths_files_and_s3_and_refuse_the_rest() {
        assert!(
            matches!(ExportTarget::parse("out.sql").unwrap(), ExportTarget::File(p) if p == Path::new("out.sql"))
        );
        assert!(
            matches!(ExportTarget::parse("file:///tmp/o.sql").unwrap(), ExportTarget::File(p) if p == Path::new("/tmp/o.sql"))
        );
        assert!(
            matches!(ExportTarget::parse("s3://bucket/k.sql").unwrap(), ExportTarget::S3(u) if u == "s3://bucket/k.sql")
        );
        let e = ExportTarget::parse("memory://").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
        assert!(ExportTarget::parse("s3://user:secret@bucket/k").is_err());
    }
}
