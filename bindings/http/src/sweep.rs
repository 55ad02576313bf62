//! The periodic sweep: jobs of servers that died are marked failed, every project's
//! retention is applied ([`crate::retention`]: its policy within its plan's caps, safety
//! snapshots past 24 hours), old idempotent answers are forgotten. One server sweeps at a
//! time (an advisory lock).

use std::time::Duration;

use serde_json::Value;

use crate::app::AppState;
use crate::problem::Problem;

/// The advisory lock key of the sweep ('phony-sw').
const SWEEP_LOCK: i64 = 0x7068_6f6e_792d_7377;

/// Sweeps every `interval` until the server stops.
pub async fn run(app: AppState) {
    let mut stopping = app.stopping.clone();
    loop {
        if let Err(e) = sweep(&app).await {
            tracing::warn!("sweep: {}", e.detail);
        }
        tokio::select! {
            () = tokio::time::sleep(app.config.sweep_interval) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// One sweep.
pub async fn sweep(app: &AppState) -> Result<(), Problem> {
    mark_orphans(app).await?;
    let client = app.pool.get().await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SWEEP_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(());
    }
    let result = async {
        client
            .execute(
                "DELETE FROM idempotency WHERE created_at < now() - interval '24 hours'",
                &[],
            )
            .await?;
        expire(app).await
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&SWEEP_LOCK])
        .await?;
    result
}

/// How long a server's lock must stay free before its running jobs are marked failed: a
/// restart of the metadata database frees every lock until each server's listener
/// reconnects and takes its own again (it retries every second).
pub const DEAD_AFTER: Duration = Duration::from_secs(3);

/// Whether server `id`'s advisory lock is free (its session is gone).
async fn lock_free(client: &tokio_postgres::Client, id: i64) -> Result<bool, Problem> {
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&id])
        .await?
        .get(0);
    if free {
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&id])
            .await?;
    }
    Ok(free)
}

/// Marks failed the running jobs of servers whose advisory lock is free, and still free
/// [`DEAD_AFTER`] later (they died).
pub async fn mark_orphans(app: &AppState) -> Result<(), Problem> {
    let mut gone = Vec::new();
    {
        let client = app.pool.get().await?;
        let servers = client
            .query(
                "SELECT DISTINCT server_id FROM jobs WHERE status = 'running' AND server_id <> $1",
                &[&app.server_id],
            )
            .await?;
        for row in servers {
            let server: i64 = row.get(0);
            if lock_free(&client, server).await? {
                gone.push(server);
            }
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(DEAD_AFTER).await;
    let client = app.pool.get().await?;
    for server in gone {
        if !lock_free(&client, server).await? {
            continue;
        }
        let error: Value = Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "server_stopped",
            "the server running this job stopped; a restore it ran was rolled back by PostgreSQL (nothing changed)",
        )
        .body();
        let n = client
            .execute(
                "UPDATE jobs SET status = 'failed', error = $2, finished_at = clock_timestamp()
                 WHERE status = 'running' AND server_id = $1",
                &[&server, &error],
            )
            .await?;
        if n > 0 {
            tracing::warn!("marked {n} job(s) of a stopped server as failed");
            client
                .execute(&format!("NOTIFY {}", crate::jobs::CHANNEL), &[])
                .await?;
        }
    }
    Ok(())
}

/// Applies every project's retention (see [`crate::retention`]).
async fn expire(app: &AppState) -> Result<(), Problem> {
    for project in crate::projects::all(app).await? {
        if let Err(e) = crate::retention::apply(app, &project).await {
            tracing::warn!("{}: applying retention: {}", project.id, e.detail);
        }
    }
    Ok(())
}
