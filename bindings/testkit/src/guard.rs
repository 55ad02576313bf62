//! The guard a test holds, and what happens when it lets go.

use std::sync::Arc;

use phony_postgres::ConnectionTarget;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::kit::{Inner, Permit, ResetReport};
use crate::runtime;
use crate::setup::SchemaChanges;
use crate::slot::Slot;

/// Everything needed to give a database back: reset it, end the lease, return the slot.
pub(crate) struct Release {
    pub(crate) inner: Arc<Inner>,
    pub(crate) slot: Slot,
    /// The slot is a shared database this process holds the lease of.
    pub(crate) leased: bool,
    pub(crate) permit: Permit,
}

impl Release {
    async fn run(self) -> Result<ResetReport> {
        let Release {
            inner,
            mut slot,
            leased,
            permit,
        } = self;
        let result = inner.reset(&mut slot).await;
        let ended = match &result {
            Ok(_) | Err(Error::SchemaChanged { .. }) if leased => {
                slot.end_lease(inner.lock_timeout()).await
            }
            Ok(_) | Err(Error::SchemaChanged { .. }) => Ok(()),
            Err(e) => {
                // The lease row stays: the database is not in the baseline state.
                slot.dirty = Some(e.to_string());
                if leased {
                    slot.unlock().await;
                }
                Ok(())
            }
        };
        inner.put_back(slot);
        drop(permit);
        ended?;
        result
    }
}

/// A database in the baseline state, this test's alone while the guard lives.
///
/// When the guard is dropped (the test returned or panicked) the database is reset to the
/// baseline: in the background for a pool copy (the next test that gets it waits for the
/// reset), before `drop` returns for a database other processes share.
/// [`finish`](Self::finish) does it now and returns what happened.
pub struct TestDatabase {
    url: String,
    target: ConnectionTarget,
    release: Option<Release>,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("target", &self.target)
            .finish()
    }
}

impl TestDatabase {
    pub(crate) fn new(release: Release) -> Self {
        TestDatabase {
            url: release.slot.url.clone(),
            target: release.slot.target.clone(),
            release: Some(release),
        }
    }

    /// The database's connection string (with its password, if it has one): hand it to
    /// the application under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        self.target.dbname()
    }

    /// The database as phony names it.
    pub fn target(&self) -> &ConnectionTarget {
        &self.target
    }

    /// A new connection to the database, driven on the caller's runtime.
    pub async fn connect(&self) -> Result<Client> {
        Ok(self.target.connect().await?)
    }

    /// Resets the database now and reports how; the error of a reset that failed, or
    /// [`Error::SchemaChanged`] under [`SchemaChanges::Fail`].
    pub async fn finish(mut self) -> Result<ResetReport> {
        match self.release.take() {
            Some(release) => runtime::run(release.run()).await,
            None => Err(Error::Internal("already finished".into())),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(release) = self.release.take() else {
            return;
        };
        let name = self.target.dbname().to_owned();
        let wait = release.leased || release.inner.schema_policy() == SchemaChanges::Fail;
        if !wait {
            match runtime::handle() {
                Ok(handle) => {
                    handle.spawn(async move {
                        if let Err(e) = release.run().await {
                            tracing::warn!("phony-testkit: resetting {name}: {e}");
                        }
                    });
                }
                Err(e) => eprintln!("phony-testkit: resetting {name}: {e}"),
            }
            return;
        }
        match runtime::block(release.run()) {
            Ok(_) => {}
            Err(e @ Error::SchemaChanged { .. }) if !std::thread::panicking() => {
                // Documented: under SchemaChanges::Fail the test that ran DDL fails here.
                #[allow(clippy::panic)]
                {
                    panic!("{e}")
                }
            }
            Err(e) => eprintln!("phony-testkit: resetting {name}: {e}"),
        }
    }
}
