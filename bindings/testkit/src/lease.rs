//! The guard a test holds, and what happens when it lets go.

use std::sync::Arc;

use phony_postgres::ConnectionTarget;
use tokio_postgres::Client;

use crate::error::{pg, Error, Result};
use crate::kit::{lock_base, Inner, Permit, ResetReport, Slot, LEASE_TABLE};
use crate::runtime;
use crate::setup::SchemaChanges;

/// The hold of one process on a database other processes may use too: the cross-process
/// lock, and a row in `phony.testkit_lease` that stays behind if the process dies mid-test
/// (phony never captures or restores its own schema, so the row survives resets).
pub(crate) struct Lease {
    lock: Client,
}

impl Lease {
    pub(crate) async fn take(target: &ConnectionTarget) -> Result<Lease> {
        let lock = lock_base(target).await?;
        let client = target.connect().await?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS phony;
                 CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
                     holder text NOT NULL, since timestamptz NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|e| pg("creating the testkit's lease table", e))?;
        let holder = format!("pid {}", std::process::id());
        client
            .execute(
                &format!("INSERT INTO {LEASE_TABLE} (holder) VALUES ($1)"),
                &[&holder],
            )
            .await
            .map_err(|e| pg("recording the lease", e))?;
        Ok(Lease { lock })
    }

    async fn end(self, target: &ConnectionTarget) -> Result<()> {
        let client = target.connect().await?;
        client
            .batch_execute(&format!("DELETE FROM {LEASE_TABLE}"))
            .await
            .map_err(|e| pg("ending the lease", e))?;
        drop(client);
        self.lock
            .batch_execute("SELECT pg_catalog.pg_advisory_unlock_all()")
            .await
            .map_err(|e| pg("releasing the lock", e))
    }
}

/// Everything needed to give a database back: reset it, end the lease, return the slot.
pub(crate) struct Release {
    pub(crate) inner: Arc<Inner>,
    pub(crate) slot: Slot,
    pub(crate) lease: Option<Lease>,
    pub(crate) permit: Permit,
}

impl Release {
    async fn run(self) -> Result<ResetReport> {
        let Release {
            inner,
            mut slot,
            lease,
            permit,
        } = self;
        let result = inner.reset(&slot.target).await;
        match &result {
            Ok(_) | Err(Error::SchemaChanged { .. }) => {
                if let Some(lease) = lease {
                    lease.end(&slot.target).await?;
                }
            }
            // The row stays: the database is not in the baseline state.
            Err(e) => slot.dirty = Some(e.to_string()),
        }
        inner.put_back(slot);
        drop(permit);
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
        let wait = release.lease.is_some() || release.inner.schema_policy() == SchemaChanges::Fail;
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
