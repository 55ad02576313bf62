//! Opening a store from its URL: a directory path, `file://…` or `s3://bucket/prefix`.

use std::fmt;
use std::sync::Arc;

use phony_core::store::RecordScan;
use phony_core::{Backend as _, RootManifest, SnapshotRecord, Store, StoreConfig};
use phony_object_store::{ObjectStoreBackend, StoreLocation};

use crate::{Error, ListFilter, Result};

/// The store every binding works on.
pub type EngineStore = Store<ObjectStoreBackend>;

/// One store, opened: the entry point of the lifecycle API.
#[derive(Clone)]
pub struct Engine {
    store: Arc<EngineStore>,
    location: String,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store.describe())
            .finish()
    }
}

impl Engine {
    /// Opens the store at `location`, which must exist ([`Error::NoStore`] otherwise).
    pub async fn open(location: &str) -> Result<Self> {
        Self::open_existing(location)
            .await?
            .ok_or_else(|| Error::NoStore {
                location: location.to_owned(),
            })
    }

    /// Opens the store at `location` if there is one; creates nothing.
    /// A location that holds other things but no store is an error, not an empty store.
    pub async fn open_existing(location: &str) -> Result<Option<Self>> {
        let backend = match backend(location, false).await {
            Ok(backend) => backend,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match Store::open(backend.clone()).await {
            Ok(store) => Ok(Some(Self::of(store, location))),
            Err(e) if e.is_not_found() => match backend.list("").await?.first() {
                Some(first) if backend.is_s3() => Err(Error::ForeignObjects {
                    describe: backend.describe(),
                    first: first.key.clone(),
                    config_key: phony_core::config::CONFIG_KEY,
                }),
                Some(_) => Err(Error::NotAStore {
                    describe: backend.describe(),
                    config_key: phony_core::config::CONFIG_KEY,
                }),
                None => Ok(None),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the store at `location`, creating it with `config` if missing. An S3 prefix
    /// that holds objects but no store is refused ([`Error::ForeignObjects`]) rather than
    /// mixed with one.
    pub async fn open_or_create(location: &str, config: StoreConfig) -> Result<Self> {
        let backend = backend(location, true).await?;
        if backend.is_s3() {
            if let Err(e) = Store::open(backend.clone()).await {
                if !e.is_not_found() {
                    return Err(e.into());
                }
                let found = backend.list("").await?;
                if let Some(first) = found.first() {
                    return Err(Error::ForeignObjects {
                        describe: backend.describe(),
                        first: first.key.clone(),
                        config_key: phony_core::config::CONFIG_KEY,
                    });
                }
            }
        }
        let store = Store::open_or_init(backend, config).await?;
        Ok(Self::of(store, location))
    }

    /// An engine over a store already opened (e.g. one a caller keeps as an `Arc`).
    pub fn from_store(store: Arc<EngineStore>) -> Self {
        let location = store.describe();
        Engine { store, location }
    }

    fn of(store: EngineStore, location: &str) -> Self {
        Engine {
            store: Arc::new(store),
            location: location.to_owned(),
        }
    }

    /// The store, for the adapters' capture and restore.
    pub fn store(&self) -> &Arc<EngineStore> {
        &self.store
    }

    /// Where the store was opened from, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Every snapshot record, newest first, and the records that cannot be read.
    pub async fn scan(&self) -> Result<RecordScan> {
        Ok(self.store.scan_records().await?)
    }

    /// The readable snapshot records `filter` keeps, newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<SnapshotRecord>> {
        let mut records = self.scan().await?.records;
        records.retain(|r| filter.keeps(r));
        Ok(records)
    }

    /// The snapshot `reference` names (an id, a unique prefix of one, or a name), with its
    /// root manifest.
    pub async fn show(&self, reference: &str) -> Result<(SnapshotRecord, RootManifest)> {
        let records = self.scan().await?.records;
        let record = phony_core::resolve::resolve(&records, reference)?.clone();
        let root = self.store.root(&record.root).await?;
        Ok((record, root))
    }
}

async fn backend(location: &str, create: bool) -> phony_core::Result<ObjectStoreBackend> {
    let location: StoreLocation = location.parse()?;
    ObjectStoreBackend::open(&location, create).await
}
