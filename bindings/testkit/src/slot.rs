//! One database the kit hands out, with the connections the kit keeps to it between tests:
//! reset checks run on a warm session instead of paying for a new backend each time.

use std::time::Duration;

use phony_postgres::ConnectionTarget;
use tokio_postgres::{Client, Statement};

use crate::error::{pg, Error, Result};

/// The table in phony's own schema where a lease on a shared database is recorded while a
/// test runs (phony never captures or restores that schema, so the row survives resets).
pub(crate) const LEASE_TABLE: &str = "phony.testkit_lease";

/// Other sessions on the slot's database: the leftovers of the test that just ended.
const TERMINATE: &str = "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid))
     FROM pg_catalog.pg_stat_activity
     WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
       AND backend_type = 'client backend'";

/// A database handed out or waiting to be. Its connections live on the kit's runtime.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) url: String,
    pub(crate) target: ConnectionTarget,
    /// Why the last reset failed; the next checkout tries again first.
    pub(crate) dirty: Option<String>,
    control: Option<Client>,
    /// The schema digest, prepared on `control` (planned once, not per test).
    digest: Option<Statement>,
    locker: Option<Client>,
}

impl Slot {
    pub(crate) fn new(url: String, target: ConnectionTarget) -> Self {
        Slot {
            url,
            target,
            dirty: None,
            control: None,
            digest: None,
            locker: None,
        }
    }

    /// The kit's own session on this database, (re)connected when needed.
    pub(crate) async fn control(&mut self, lock_timeout: Duration) -> Result<&Client> {
        if self.control.as_ref().is_none_or(Client::is_closed) {
            let client = self.target.connect().await?;
            client
                .batch_execute(&format!(
                    "SET lock_timeout = '{}ms'",
                    lock_timeout.as_millis().max(1)
                ))
                .await
                .map_err(|e| pg("setting the lock timeout", e))?;
            self.control = Some(client);
            self.digest = None;
        }
        self.control
            .as_ref()
            .ok_or_else(|| Error::Internal("no session on the test database".into()))
    }

    /// The schema digest of the database (see [`crate::schema`]).
    pub(crate) async fn schema_digest(&mut self, lock_timeout: Duration) -> Result<String> {
        self.control(lock_timeout).await?;
        let control = self
            .control
            .as_ref()
            .ok_or_else(|| Error::Internal("no session on the test database".into()))?;
        let stmt = match &self.digest {
            Some(stmt) => stmt.clone(),
            None => control
                .prepare(crate::schema::DIGEST)
                .await
                .map_err(|e| pg("preparing the schema check", e))?,
        };
        let row = control
            .query_one(&stmt, &[])
            .await
            .map_err(|e| pg("reading the schema", e))?;
        self.digest = Some(stmt);
        Ok(row.get(0))
    }

    /// Terminates every other client session on the database; returns how many.
    pub(crate) async fn terminate_others(&mut self, lock_timeout: Duration) -> Result<u64> {
        let n: i64 = self
            .control(lock_timeout)
            .await?
            .query_one(TERMINATE, &[])
            .await
            .map_err(|e| pg("terminating the test's sessions", e))?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The cross-process lease of a shared database: waits for other processes' tests,
    /// then records the lease.
    pub(crate) async fn take_lease(&mut self, lock_timeout: Duration) -> Result<()> {
        if self.locker.as_ref().is_none_or(Client::is_closed) {
            self.locker = Some(crate::kit::maintenance(&self.target).connect().await?);
        }
        if let Some(locker) = &self.locker {
            locker
                .query_one(
                    "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtextextended($1, 0))",
                    &[&crate::kit::base_lock_key(&self.target)],
                )
                .await
                .map_err(|e| pg(&format!("waiting for {}", self.target.dbname()), e))?;
        }
        let result = self
            .control(lock_timeout)
            .await?
            .batch_execute(&format!(
                "SET client_min_messages = warning;
                 CREATE SCHEMA IF NOT EXISTS phony;
                 CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
                     holder text NOT NULL, since timestamptz NOT NULL DEFAULT now());
                 INSERT INTO {LEASE_TABLE} (holder) VALUES ('pid {}')",
                std::process::id()
            ))
            .await
            .map_err(|e| pg("recording the lease", e));
        if result.is_err() {
            self.unlock().await;
        }
        result
    }

    /// Ends the lease of a database that is back in the baseline state.
    pub(crate) async fn end_lease(&mut self, lock_timeout: Duration) -> Result<()> {
        let result = self
            .control(lock_timeout)
            .await?
            .batch_execute(&format!("DELETE FROM {LEASE_TABLE}"))
            .await
            .map_err(|e| pg("ending the lease", e));
        self.unlock().await;
        result
    }

    /// Releases the cross-process lock (the lease row, if any, stays).
    pub(crate) async fn unlock(&mut self) {
        if let Some(locker) = &self.locker {
            if locker
                .batch_execute("SELECT pg_catalog.pg_advisory_unlock_all()")
                .await
                .is_err()
            {
                // A session that cannot unlock is closed instead, which unlocks.
                self.locker = None;
            }
        }
    }
}
