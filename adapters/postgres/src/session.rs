//! A session: one connection to one database that keeps the statements it prepared.
//!
//! A restore through a fresh connection pays for the connection, for a backend whose caches
//! are cold, and for parsing and planning every statement. A caller that restores the same
//! database again and again (a test suite between its tests) keeps one [`Session`]: each
//! statement is then prepared once, and later restores only bind and execute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio_postgres::{Client, Statement};

use crate::connect::ConnectionTarget;
use crate::error::{pg, Result};

/// Statements kept per session; past this, the cache starts over (a long-lived session
/// restoring ever-new tables must not grow without bound).
const MAX_STATEMENTS: usize = 512;

/// One connection and the statements prepared on it.
pub struct Session {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
    /// `session_replication_role` is `replica` for the whole session (see
    /// [`Session::hold_triggers_off`]).
    triggers_off: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl Session {
    /// Connects to `target`.
    pub async fn connect(target: &ConnectionTarget) -> Result<Session> {
        Ok(Session::new(target.connect().await?))
    }

    /// A session over an open connection (not inside a transaction).
    pub fn new(client: Client) -> Session {
        Session {
            client,
            statements: Mutex::new(HashMap::new()),
            triggers_off: AtomicBool::new(false),
        }
    }

    /// Holds user triggers and foreign-key checks off for the rest of the session
    /// (`session_replication_role = replica`), for a session that only restores and reads
    /// (a test kit's). A restore holds them off anyway while it rewrites rows, but switching
    /// the role flushes the server's plan cache: a session that switched it on and off for
    /// every restore planned each statement it had prepared again on every restore (about
    /// half of a small reset's server time).
    pub async fn hold_triggers_off(&self) -> Result<()> {
        self.client
            .batch_execute("SET session_replication_role = replica")
            .await
            .map_err(pg("holding triggers off for the session"))?;
        self.triggers_off.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether [`Session::hold_triggers_off`] was called.
    pub(crate) fn triggers_held_off(&self) -> bool {
        self.triggers_off.load(Ordering::Relaxed)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the connection has closed (the server ended it, or it broke).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The statement for `sql`, prepared on its first use in this session.
    pub(crate) async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache().get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut cache = self.cache();
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }
}
