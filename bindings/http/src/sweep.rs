//! The periodic sweep: jobs of servers that died are marked failed, snapshots past their
//! plan's retention (and safety snapshots past 24 hours) are deleted, old idempotent
//! answers are forgotten. One server sweeps at a time (an advisory lock).

use std::time::Duration;

use phony_core::Origin;
use serde_json::Value;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::problem::Problem;

/// The advisory lock key of the sweep ('phony-sw').
const SWEEP_LOCK: i64 = 0x7068_6f6e_792d_7377;

/// How long safety snapshots are kept.
pub const SAFETY_KEPT: time::Duration = time::Duration::hours(24);

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

/// Deletes snapshots past their retention, and safety snapshots past 24 hours.
async fn expire(app: &AppState) -> Result<(), Problem> {
    let plans = {
        let client = app.pool.get().await?;
        crate::plans::all(crate::snapshots::pg(&client)).await?
    };
    let now = OffsetDateTime::now_utc();
    for project in crate::projects::all(app).await? {
        let Some(plan) = plans.iter().find(|p| p.name == project.plan) else {
            continue;
        };
        let retention = plan.retention_days.or(project.retention_days);
        let engine = app.engine(&project.id).await?;
        let records = crate::snapshots::records(&engine).await?;
        let mut deleted = 0;
        for r in &records {
            let age = now - r.created_at;
            let expired = match r.origin {
                Origin::Safety => age > SAFETY_KEPT,
                _ => {
                    retention.is_some_and(|d| age > time::Duration::days(i64::from(d)))
                        && (!r.pinned || plan.retention_expires_pinned)
                }
            };
            if !expired {
                continue;
            }
            match engine.delete_snapshot(r).await {
                Ok(()) => {
                    deleted += 1;
                    tracing::info!("{}: expired snapshot {}", project.id, r.label());
                }
                Err(e) => tracing::warn!("{}: expiring {}: {e}", project.id, r.label()),
            }
        }
        if deleted > 0 {
            app.forget_listing(&project.id);
            let notify: phony_engine::lease::Notify =
                std::sync::Arc::new(|l: &str| tracing::info!("{l}"));
            if let Err(e) =
                phony_engine::gc::collect_garbage(engine.store(), Duration::from_secs(5), &notify)
                    .await
            {
                tracing::warn!("{}: collecting garbage: {e}", project.id);
            }
        }
    }
    Ok(())
}
