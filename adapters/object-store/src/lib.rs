//! # phony-object-store
//!
//! phony's store [`Backend`]: a local directory (the default, through the file system
//! directly, see `local.rs`), and on the [`object_store`] crate memory (for tests), an S3
//! bucket (see `s3.rs`) and any other `object_store` implementation: every operation used
//! here is one that S3 offers, including create-if-absent writes. [`StoreLocation`] parses
//! where a store lives (`/path`, `file:///path`, `s3://bucket/prefix`, `memory://`).
//!
//! ```
//! # async fn demo() -> phony_core::Result<()> {
//! use phony_core::{Store, StoreConfig};
//! use phony_object_store::ObjectStoreBackend;
//!
//! let store = Store::open_or_init(ObjectStoreBackend::memory(), StoreConfig::default()).await?;
//! let (id, stored) = store.put_plain(b"1\thello\n").await?;
//! assert!(stored.new);
//! assert_eq!(store.get_plain(&id, 1024).await?, b"1\thello\n");
//! # Ok(()) }
//! # futures::executor::block_on(demo()).unwrap();
//! ```

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use phony_core::{Backend, Error, ListEntry, Result};
use time::OffsetDateTime;

mod local;
mod location;
mod s3;

use local::LocalDir;
pub use location::StoreLocation;

/// A store backend: a local directory, or any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    inner: Inner,
    description: String,
    /// The bucket, for a store on S3 (its errors are explained, see `s3::explain`).
    bucket: Option<String>,
}

#[derive(Debug, Clone)]
enum Inner {
    /// A local directory, through the file system directly (see [`local`]).
    Dir(Arc<LocalDir>),
    Store(Arc<dyn ObjectStore>),
}

impl ObjectStoreBackend {
    /// Wraps an object store; `description` names it in messages (no secrets).
    pub fn new(inner: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        ObjectStoreBackend {
            inner: Inner::Store(inner),
            description: description.into(),
            bucket: None,
        }
    }

    /// A store in a local directory. With `create`, the directory is created if missing
    /// (its parent must exist: a mistyped path does not silently become a tree of new
    /// directories), and an existing one must be a store already or empty; without, a
    /// missing directory is [`Error::NotFound`]. A path that is a file is
    /// [`Error::Invalid`] either way.
    pub fn local(dir: &std::path::Path, create: bool) -> Result<Self> {
        let description = dir.display().to_string();
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                if create {
                    check_can_hold_a_store(dir, &description)?;
                }
            }
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "{description} is a file, not a store directory"
                )))
            }
            // Missing, or below a file (which creating it then reports).
            Err(e) if is_missing(&e) && create => create_store_dir(dir, &description)?,
            Err(e) if is_missing(&e) => {
                return Err(Error::NotFound {
                    what: format!("phony store at {description}"),
                })
            }
            Err(e) => {
                return Err(Error::backend(
                    format!("opening store directory {description}"),
                    e,
                ))
            }
        }
        // The same layout as object_store's LocalFileSystem, which earlier versions used.
        let root = std::fs::canonicalize(dir)
            .map_err(|e| Error::backend(format!("opening store directory {description}"), e))?;
        Ok(ObjectStoreBackend {
            inner: Inner::Dir(Arc::new(LocalDir::new(root, description.clone()))),
            description,
            bucket: None,
        })
    }

    /// A store in memory, gone when dropped.
    pub fn memory() -> Self {
        Self::new(Arc::new(InMemory::new()), "memory")
    }

    /// A store named by a location: a path, `file:///path`, `memory://` or
    /// `s3://bucket/prefix` (see [`StoreLocation`]). Makes no request: see
    /// [`ObjectStoreBackend::open`] for one that checks an S3 bucket answers.
    pub fn from_location(location: &str, create: bool) -> Result<Self> {
        Self::for_location(&location.parse()?, create)
    }

    /// A store at a parsed location; makes no request.
    pub fn for_location(location: &StoreLocation, create: bool) -> Result<Self> {
        match location {
            StoreLocation::Dir(dir) => Self::local(dir, create),
            StoreLocation::Memory => Ok(Self::memory()),
            StoreLocation::S3 { bucket, prefix } => Ok(ObjectStoreBackend {
                inner: Inner::Store(s3::build(bucket, prefix)?),
                description: location.to_string(),
                bucket: Some(bucket.clone()),
            }),
        }
    }

    /// A store at a location, checked: a missing directory (without `create`) is
    /// [`Error::NotFound`]; an S3 bucket that does not exist, refuses the credentials or
    /// cannot be reached fails with one line that says which.
    pub async fn open(location: &StoreLocation, create: bool) -> Result<Self> {
        let backend = Self::for_location(location, create)?;
        if let (Inner::Store(store), Some(bucket)) = (&backend.inner, &backend.bucket) {
            s3::probe(store.as_ref(), bucket, &backend.description).await?;
        }
        Ok(backend)
    }

    /// Whether the store lives in an S3 bucket.
    pub fn is_s3(&self) -> bool {
        self.bucket.is_some()
    }

    /// The object store underneath, unless the store is a local directory (which is
    /// read and written through the file system directly).
    pub fn object_store(&self) -> Option<Arc<dyn ObjectStore>> {
        match &self.inner {
            Inner::Dir(_) => None,
            Inner::Store(store) => Some(Arc::clone(store)),
        }
    }

    /// A failure of the object store as the store's error: a missing object is
    /// [`Error::NotFound`]; S3 failures are explained in one line.
    fn fail(&self, context: String, e: object_store::Error) -> Error {
        match (e, &self.bucket) {
            (object_store::Error::NotFound { .. }, _) => Error::NotFound { what: context },
            (e, Some(bucket)) => s3::explain(context, bucket, &e),
            (e, None) => Error::backend(context, e),
        }
    }
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Creates the directory of a new store; its parent must exist.
fn create_store_dir(dir: &std::path::Path, description: &str) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        // Created by a concurrent writer meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| ".".to_owned(), |p| p.display().to_string());
            Err(Error::Invalid(format!(
                "cannot create the store {description}: its parent directory {parent} does not exist (create it first)"
            )))
        }
        Err(e) => Err(Error::backend(
            format!("creating store directory {description}"),
            e,
        )),
    }
}

/// Refuses to make a store of a directory that holds other things: one without the store's
/// config and with entries (other than hidden ones, such as a writer's temporary files).
fn check_can_hold_a_store(dir: &std::path::Path, description: &str) -> Result<()> {
    let config = dir.join(phony_core::config::CONFIG_KEY);
    if std::fs::symlink_metadata(&config).is_ok() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::backend(format!("reading store directory {description}"), e))?;
    let populated = entries
        .filter_map(|e| e.ok())
        .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
    if populated {
        return Err(Error::Invalid(format!(
            "{description} is not a phony store (no {}) and is not empty",
            phony_core::config::CONFIG_KEY
        )));
    }
    Ok(())
}

/// Seconds and nanoseconds since the epoch as a timestamp (the epoch itself if out of
/// range, which no real clock gives).
fn to_time(secs: i64, nanos: u32) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Backend for ObjectStoreBackend {
    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let store = match &self.inner {
            Inner::Dir(d) => return d.put_if_absent(key, &bytes),
            Inner::Store(store) => store,
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store
            .put_opts(&Path::from(key), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.fail(format!("writing {key} in {}", self.description), e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let store = match &self.inner {
            Inner::Dir(d) => return d.put(key, &bytes),
            Inner::Store(store) => store,
        };
        store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.fail(format!("writing {key} in {}", self.description), e))
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        Ok(self.get_versioned(key, max_len).await?.0)
    }

    async fn get_versioned(&self, key: &str, max_len: u64) -> Result<(Bytes, Option<String>)> {
        let store = match &self.inner {
            Inner::Dir(d) => return Ok((d.get(key, max_len)?, None)),
            Inner::Store(store) => store,
        };
        let context = || format!("{key} in {}", self.description);
        let result = store
            .get(&Path::from(key))
            .await
            .map_err(|e| self.fail(context(), e))?;
        // The size is known before the body is read.
        if result.meta.size > max_len {
            return Err(Error::too_large(context(), result.meta.size, max_len));
        }
        let version = result.meta.e_tag.clone();
        let bytes = result.bytes().await.map_err(|e| self.fail(context(), e))?;
        if bytes.len() as u64 > max_len {
            return Err(Error::too_large(context(), bytes.len() as u64, max_len));
        }
        Ok((bytes, version))
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let store = match &self.inner {
            Inner::Dir(d) => return d.head(key),
            Inner::Store(store) => store,
        };
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        match store.get_opts(&Path::from(key), opts).await {
            Ok(r) => Ok(Some(r.meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(format!("checking {key} in {}", self.description), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let store = match &self.inner {
            Inner::Dir(d) => return d.delete(key),
            Inner::Store(store) => store,
        };
        match store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(format!("deleting {key} in {}", self.description), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let store = match &self.inner {
            Inner::Dir(d) => return d.list(prefix),
            Inner::Store(store) => store,
        };
        let prefix_path = Path::from(prefix.trim_end_matches('/'));
        let metas: Vec<_> = store
            .list(Some(&prefix_path))
            .try_collect()
            .await
            .map_err(|e| self.fail(format!("listing {prefix} in {}", self.description), e))?;
        Ok(metas
            .into_iter()
            .map(|m| ListEntry {
                key: m.location.to_string(),
                size: m.size,
                modified: to_time(
                    m.last_modified.timestamp(),
                    m.last_modified.timestamp_subsec_nanos(),
                ),
                version: m.e_tag,
            })
            .collect())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn sync(&self) -> Result<()> {
        match &self.inner {
            Inner::Dir(d) => d.sync(),
            // An object store's write is durable once acknowledged.
            Inner::Store(_) => Ok(()),
        }
    }
}
