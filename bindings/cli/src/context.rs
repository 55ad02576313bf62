//! What every command needs: the database target and the store, resolved from flags,
//! environment and defaults.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use phony_core::store::{DamagedRecord, RecordScan};
use phony_core::{SnapshotRecord, StoreConfig};
use phony_postgres::ConnectionTarget;

use crate::cli::Cli;

pub type AppStore = phony_engine::EngineStore;

/// Flags and environment, resolved.
#[derive(Debug)]
pub struct Context {
    pub json: bool,
    database: Option<String>,
    store: String,
}

impl Context {
    pub fn new(cli: &Cli) -> Self {
        let database = cli
            .database
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()));
        Context {
            json: cli.json,
            database,
            store: cli.store.clone(),
        }
    }

    /// The database: `--database`, `$PHONY_DATABASE_URL`, `$DATABASE_URL`, then libpq's defaults.
    pub fn target(&self) -> Result<ConnectionTarget> {
        Ok(ConnectionTarget::parse(self.database.as_deref())?)
    }

    /// Opens the store, which must exist.
    pub async fn open_store(&self) -> Result<Arc<AppStore>> {
        open_store_at(&self.store).await
    }

    /// Opens the store if there is one; creates nothing.
    pub async fn open_existing_store(&self) -> Result<Option<Arc<AppStore>>> {
        open_existing_store_at(&self.store).await
    }

    /// Opens the store, creating it if missing.
    pub async fn open_or_create_store(&self) -> Result<Arc<AppStore>> {
        open_or_create_store_at(&self.store, StoreConfig::default()).await
    }
}

/// Where the engine's notices go: one line each on stderr.
pub fn notify() -> phony_engine::lease::Notify {
    Arc::new(|line: &str| eprintln!("phony: {line}"))
}

/// Every readable snapshot record, newest first. A damaged record is skipped with one
/// warning line on stderr naming it (once per process), so that one bad file does not
/// stop commands about the others.
pub async fn records(store: &AppStore) -> Result<Vec<SnapshotRecord>> {
    Ok(scan_records(store).await?.records)
}

/// [`records`], with the damaged ones.
pub async fn scan_records(store: &AppStore) -> Result<RecordScan> {
    let scan = store
        .scan_records()
        .await
        .context("reading the snapshot records")?;
    for d in &scan.damaged {
        warn_damaged(d);
    }
    Ok(scan)
}

/// Says once per process, on stderr, that the record `d` is skipped.
pub fn warn_damaged(d: &DamagedRecord) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.contains(&d.key) {
        return;
    }
    warned.push(d.key.clone());
    let hint = if d.newer_format {
        ""
    } else {
        " (remove it with `phony store verify --repair`)"
    };
    eprintln!(
        "phony: warning: skipping the snapshot record {}: {}{hint}",
        d.key, d.reason
    );
}

/// Opens the store at `location`, which must exist.
pub async fn open_store_at(location: &str) -> Result<Arc<AppStore>> {
    open_existing_store_at(location).await?.ok_or_else(|| {
        crate::failure::Coded {
            code: "not_found",
            message: format!(
                "no phony store at {location} (take a snapshot first, or point --store or PHONY_STORE at a store)"
            ),
        }
        .into()
    })
}

/// Opens the store at `location` if there is one; creates nothing.
/// A location that holds other things but no store is an error, not an empty store.
pub async fn open_existing_store_at(location: &str) -> Result<Option<Arc<AppStore>>> {
    match phony_engine::Engine::open_existing(location).await {
        Ok(engine) => Ok(engine.map(|e| Arc::clone(e.store()))),
        Err(e) => Err(e).with_context(|| format!("opening the store at {location}")),
    }
}

/// Opens the store at `location`, creating it with `config` if missing. An S3 prefix that
/// holds objects but no store is refused rather than mixed with one.
pub async fn open_or_create_store_at(location: &str, config: StoreConfig) -> Result<Arc<AppStore>> {
    match phony_engine::Engine::open_or_create(location, config).await {
        Ok(engine) => Ok(Arc::clone(engine.store())),
        Err(e @ phony_engine::Error::ForeignObjects { .. }) => Err(e.into()),
        Err(e) => Err(e).with_context(|| format!("opening the store at {location}")),
    }
}
