//! One database the kit hands out, with the connections the kit keeps to it between tests:
//! reset checks run on a warm session instead of paying for a new backend each time.

use std::time::Duration;

use phony_postgres::{ConnectionTarget, Session};
use tokio_postgres::{Client, Statement};

use crate::error::{pg, Error, Result};

/// The table in phony's own schema where a lease on a shared database is recorded while a
/// test runs (phony never captures or restores that schema, so the row survives resets).
pub(crate) const LEASE_TABLE: &str = "phony.testkit_lease";

/// Resets between two vacuums of the change log (see [`Slot::maintain`]).
const VACUUM_EVERY: u32 = 64;

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
    /// The last reset was driven by the change log (which also watches the schema).
    pub(crate) tracked: bool,
    /// Resets since the kit last vacuumed the change log (see [`Slot::maintain`]).
    since_vacuum: u32,
    control: Option<Session>,
    /// The termination and schema-digest queries, prepared on `control` (planned once,
    /// not per test).
    statements: Option<(Statement, Statement)>,
    locker: Option<Client>,
}

impl Slot {
    pub(crate) fn new(url: String, target: ConnectionTarget) -> Self {
        Slot {
            url,
            target,
            dirty: None,
            tracked: false,
            since_vacuum: 0,
            control: None,
            statements: None,
            locker: None,
        }
    }

    /// After a reset: every [`VACUUM_EVERY`] resets, vacuums the change log and the tables
    /// each reset rewrites. Each reset deletes the log entries of the test before it; left
    /// to autovacuum (which runs a minute apart at best, and not at all where it is off),
    /// the dead entries pile up and every later reset's pruning walks them (6 ms more per
    /// reset after 1,200 resets without it). One vacuum in 64 resets costs that reset a
    /// few tens of milliseconds, under a millisecond per reset on average.
    pub(crate) async fn maintain(&mut self) {
        self.since_vacuum += 1;
        if self.since_vacuum < VACUUM_EVERY {
            return;
        }
        self.since_vacuum = 0;
        if let Some(session) = self.control.as_ref() {
            let vacuum = format!("VACUUM phony.changes, phony.marks, {LEASE_TABLE}");
            if let Err(e) = session.client().batch_execute(&vacuum).await {
                tracing::debug!("vacuuming the change log of {}: {e}", self.target.dbname());
            }
        }
    }

    /// The kit's own session on this database, (re)connected when needed.
    pub(crate) async fn control(&mut self, lock_timeout: Duration) -> Result<&Session> {
        if self.control.as_ref().is_none_or(Session::is_closed) {
            let client = self.target.connect().await?;
            client
                // A test database's resets need not wait for the WAL flush: other sessions
                // see them at once; only a crash of the server could undo the last one.
                .batch_execute(&format!(
                    "SET lock_timeout = '{}ms'; SET synchronous_commit = off",
                    lock_timeout.as_millis().max(1)
                ))
                .await
                .map_err(|e| pg("setting the lock timeout", e))?;
            let session = Session::new(client);
            // The kit's session writes only phony's own tables, and restores: held off for
            // good, triggers need not be switched per reset (see `hold_triggers_off`).
            session.hold_triggers_off().await?;
            self.control = Some(session);
            self.statements = None;
        }
        self.control
            .as_ref()
            .ok_or_else(|| Error::Internal("no session on the test database".into()))
    }

    /// The checks before a reset, pipelined in one round trip on the kit's session:
    /// terminate the other client sessions (if `terminate`; returns how many) and read the
    /// schema digest (if `digest`; see [`crate::schema`]). Both statements are prepared
    /// once per session.
    pub(crate) async fn checks(
        &mut self,
        lock_timeout: Duration,
        terminate: bool,
        digest: bool,
    ) -> Result<(u64, Option<String>)> {
        self.control(lock_timeout).await?;
        let control = self
            .control
            .as_ref()
            .ok_or_else(|| Error::Internal("no session on the test database".into()))?
            .client();
        let statements = match &self.statements {
            Some(s) => s.clone(),
            None => {
                let (t, d) = tokio::join!(
                    control.prepare(TERMINATE),
                    control.prepare(crate::schema::DIGEST)
                );
                (
                    t.map_err(|e| pg("preparing the session check", e))?,
                    d.map_err(|e| pg("preparing the schema check", e))?,
                )
            }
        };
        let (t, d) = tokio::join!(
            async {
                match terminate {
                    true => control.query_one(&statements.0, &[]).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match digest {
                    true => control.query_one(&statements.1, &[]).await.map(Some),
                    false => Ok(None),
                }
            }
        );
        let terminated = t
            .map_err(|e| pg("terminating the test's sessions", e))?
            .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
        let digest = d
            .map_err(|e| pg("reading the schema", e))?
            .map(|row| row.get::<_, String>(0));
        self.statements = Some(statements);
        Ok((terminated, digest))
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
            .client()
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
            .client()
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
