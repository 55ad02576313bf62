//! Change tracking in a database: on, off, and its status. It needs no store.

use std::time::Duration;

use phony_postgres::tracking::{self, TrackingStatus};
use phony_postgres::ConnectionTarget;
use serde::Serialize;

use crate::lease::Notify;
use crate::{Error, Result};

/// Tracking's state in a database, as `track … --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackingView {
    pub tracking: bool,
    /// The installation is this database's own (not copied in from another one).
    pub valid: bool,
    pub tracked_tables: i64,
    /// Tables created since tracking was turned on.
    pub untracked_tables: Vec<String>,
    pub log_entries: i64,
    pub marks: i64,
}

impl From<TrackingStatus> for TrackingView {
    fn from(s: TrackingStatus) -> Self {
        TrackingView {
            tracking: s.installed,
            valid: s.valid,
            tracked_tables: s.tracked_tables,
            untracked_tables: s.untracked_tables,
            log_entries: s.log_entries,
            marks: s.marks,
        }
    }
}

/// What turning tracking on or off did.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Whether anything changed (false: it already was so).
    pub changed: bool,
    /// The state after.
    pub status: TrackingView,
}

fn failed<'a>(
    target: &'a ConnectionTarget,
    doing: &'static str,
) -> impl Fn(phony_postgres::Error) -> Error + 'a {
    move |source| Error::Tracking {
        doing,
        database: target.dbname().to_owned(),
        source: Box::new(source),
    }
}

/// Tracking's state in `target`.
pub async fn status(target: &ConnectionTarget) -> Result<TrackingView> {
    let client = target.connect().await?;
    Ok(tracking::status(&client).await?.into())
}

/// Turns tracking on in `target` (again, if tables were added since), in one transaction.
/// Installing a table's trigger waits for the transactions writing to it: if it has to,
/// `notify` is told once, naming them.
pub async fn on(target: &ConnectionTarget, notify: &Notify) -> Result<Tracked> {
    let client = target.connect().await?;
    let before = tracking::status(&client).await?;
    let already = before.installed && before.valid && before.untracked_tables.is_empty();
    let fail = failed(target, "turning tracking on in");
    client
        .batch_execute("BEGIN")
        .await
        .map_err(phony_postgres::error::pg("starting a transaction"))?;
    say_while_blocked(target, &client, notify, tracking::install(&client))
        .await
        .map_err(&fail)?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(phony_postgres::error::pg("committing"))?;
    Ok(Tracked {
        changed: !already,
        status: tracking::status(&client).await?.into(),
    })
}

/// Turns tracking off in `target`: its triggers, log and marks are removed.
pub async fn off(target: &ConnectionTarget) -> Result<Tracked> {
    let client = target.connect().await?;
    let was_on = tracking::installed(&client).await?;
    client
        .batch_execute("BEGIN")
        .await
        .map_err(phony_postgres::error::pg("starting a transaction"))?;
    tracking::uninstall(&client)
        .await
        .map_err(failed(target, "turning tracking off in"))?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(phony_postgres::error::pg("committing"))?;
    Ok(Tracked {
        changed: was_on,
        status: tracking::status(&client).await?.into(),
    })
}

/// Runs `work` on `client`'s session; if that session waits for others, tells `notify`
/// once, naming them, instead of sitting silent.
async fn say_while_blocked<T>(
    target: &ConnectionTarget,
    client: &tokio_postgres::Client,
    notify: &Notify,
    work: impl std::future::Future<Output = phony_postgres::Result<T>>,
) -> phony_postgres::Result<T> {
    let pid: i32 = client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .map_err(phony_postgres::error::pg("asking for the session's id"))?
        .get(0);
    let watch = async {
        // A second session, only to look; if it cannot be had, stay silent.
        let Ok(observer) = target.connect().await else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let blockers: Vec<i32> = match observer
                .query_one("SELECT pg_catalog.pg_blocking_pids($1)", &[&pid])
                .await
            {
                Ok(row) => row.get(0),
                Err(_) => return std::future::pending().await,
            };
            if !blockers.is_empty() {
                let pids: Vec<String> = blockers.iter().map(i32::to_string).collect();
                let n = blockers.len();
                notify(&format!(
                    "waiting for {n} {} writing to {} to finish (pid {}): a table's trigger can only be added between writes",
                    if n == 1 { "transaction" } else { "transactions" },
                    target.dbname(),
                    pids.join(", ")
                ));
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        done = work => done,
        never = watch => never,
    }
}
