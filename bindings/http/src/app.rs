//! The state every request and job shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phony_core::SnapshotRecord;

use deadpool_postgres::Pool;
use phony_engine::Engine;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::problem::{ApiResult, Problem};
use crate::secrets::SecretKey;
use crate::Config;

/// The server's shared state.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub pool: Pool,
    pub key: SecretKey,
    /// This server's number: its job listener's session holds an advisory lock on it.
    pub server_id: i64,
    /// Woken when a job may be claimable (a NOTIFY, a job ending here).
    pub wake: Arc<tokio::sync::Notify>,
    /// Becomes true when the server is asked to stop.
    pub stopping: watch::Receiver<bool>,
    pub metrics: Metrics,
    /// Tokens checked lately (see [`crate::auth::TOKEN_FRESH`]).
    pub tokens: crate::auth::TokenCache,
    engines: Mutex<HashMap<String, Engine>>,
    listings: Mutex<HashMap<String, Arc<Listing>>>,
}

/// A project's records as last read from its store, shared by concurrent readers, and
/// the lock its one refresh at a time holds.
#[derive(Debug, Default)]
struct Listing {
    read: Mutex<Option<(Instant, Arc<Vec<SnapshotRecord>>)>>,
    refresh: tokio::sync::Mutex<()>,
}

/// How long a listing read from a store serves requests: writes through this server
/// refresh it at once; others' writes (another server, the CLI) show within this time.
pub const LISTING_FRESH: Duration = Duration::from_secs(1);

/// How long an older listing still answers while another request refreshes it (instead
/// of every request waiting for the store at once).
pub const LISTING_STALE: Duration = Duration::from_secs(10);

pub type AppState = Arc<App>;

impl App {
    pub fn new(
        config: Config,
        pool: Pool,
        key: SecretKey,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        App {
            config,
            pool,
            key,
            server_id: rand::random::<i64>() & 0x3fff_ffff_ffff_ffff,
            wake: Arc::new(tokio::sync::Notify::new()),
            stopping,
            metrics: Metrics::default(),
            tokens: crate::auth::TokenCache::default(),
            engines: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
        }
    }

    /// Where project `id`'s store is.
    pub fn store_location(&self, project_id: &str) -> String {
        let root = &self.config.store_root;
        if root.contains("://") {
            format!("{}/{project_id}", root.trim_end_matches('/'))
        } else {
            std::path::Path::new(root)
                .join(project_id)
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Project `id`'s store, opened (created on first use) and kept.
    pub async fn engine(&self, project_id: &str) -> ApiResult<Engine> {
        if let Some(e) = self.lock_engines().get(project_id) {
            return Ok(e.clone());
        }
        let location = self.store_location(project_id);
        if !location.contains("://") {
            tokio::fs::create_dir_all(&location)
                .await
                .map_err(|e| Problem::internal("creating the project's store directory", &e))?;
        }
        let engine = Engine::open_or_create(&location, phony_core::StoreConfig::default())
            .await
            .map_err(|e| {
                Problem::internal("opening the project's store", &crate::problem::chain(&e))
            })?;
        self.lock_engines()
            .insert(project_id.to_owned(), engine.clone());
        Ok(engine)
    }

    /// Forgets a deleted project's store.
    pub fn forget_engine(&self, project_id: &str) {
        self.lock_engines().remove(project_id);
        self.forget_listing(project_id);
        self.tokens.forget_project(project_id);
    }

    /// Project `id`'s records, newest first: read from its store at most once per
    /// [`LISTING_FRESH`] however many requests ask at once. While one request reads it
    /// again, the others are answered from the listing before (at most [`LISTING_STALE`]
    /// old) rather than all waiting for the store.
    pub async fn listing(&self, project_id: &str) -> ApiResult<Arc<Vec<SnapshotRecord>>> {
        let slot = {
            let mut map = self.listings.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(map.entry(project_id.to_owned()).or_default())
        };
        let last = || slot.read.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fresh = |max: Duration| last().filter(|(at, _)| at.elapsed() < max);
        if let Some((_, records)) = fresh(LISTING_FRESH) {
            return Ok(records);
        }
        let refreshing = match slot.refresh.try_lock() {
            Ok(held) => held,
            Err(_) => match fresh(LISTING_STALE) {
                Some((_, records)) => return Ok(records),
                None => slot.refresh.lock().await,
            },
        };
        // Another request may have refreshed it while this one waited.
        if let Some((_, records)) = fresh(LISTING_FRESH) {
            return Ok(records);
        }
        let engine = self.engine(project_id).await?;
        let records = Arc::new(crate::snapshots::records(&engine).await?);
        *slot.read.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), Arc::clone(&records)));
        drop(refreshing);
        Ok(records)
    }

    /// Drops project `id`'s listing: the next read goes to the store (after a write).
    pub fn forget_listing(&self, project_id: &str) {
        self.listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(project_id);
    }

    fn lock_engines(&self) -> std::sync::MutexGuard<'_, HashMap<String, Engine>> {
        self.engines.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}
