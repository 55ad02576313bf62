//! What every command needs: the database target and the store, resolved from flags,
//! environment and defaults.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use phony_core::{Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;
use phony_postgres::ConnectionTarget;

use crate::cli::Cli;

pub type AppStore = Store<ObjectStoreBackend>;

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
        self.open_existing_store().await?.ok_or_else(|| {
            crate::failure::Coded {
                code: "not_found",
                message: format!(
                    "no phony store at {} (take a snapshot first, or point --store or PHONY_STORE at a store)",
                    self.store
                ),
            }
            .into()
        })
    }

    /// Opens the store if there is one; creates nothing.
    pub async fn open_existing_store(&self) -> Result<Option<Arc<AppStore>>> {
        let opened = match ObjectStoreBackend::from_location(&self.store, false) {
            Ok(backend) => Store::open(backend).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(store) => Ok(Some(Arc::new(store))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("opening the store at {}", self.store)),
        }
    }

    /// Opens the store, creating it if missing.
    pub async fn open_or_create_store(&self) -> Result<Arc<AppStore>> {
        let backend = ObjectStoreBackend::from_location(&self.store, true)?;
        let store = Store::open_or_init(backend, StoreConfig::default())
            .await
            .with_context(|| format!("opening the store at {}", self.store))?;
        Ok(Arc::new(store))
    }
}
