//! The scheduler: fires due schedule runs as create jobs (origin `scheduled`, the rendered
//! name), on every server.
//!
//! Each due schedule is claimed `FOR UPDATE SKIP LOCKED`, its `last_run` and `next_run`
//! moved (`UPDATE … WHERE last_run = $old`), and its job queued, all in one transaction:
//! several servers on one metadata database fire each run exactly once, and a server that
//! dies half-way fires nothing (the transaction rolls back and another fires it). After
//! downtime a run missed is made up once ([`phony_core::schedule::Schedule::due`]).

use std::time::Duration;

use phony_core::schedule::render_name;
use serde_json::json;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::problem::ApiResult;

/// The longest the scheduler sleeps (others' new schedules are seen within it).
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Fires due runs until the server stops.
pub async fn run(app: AppState) {
    let mut stopping = app.stopping.clone();
    loop {
        if app.is_stopping() {
            return;
        }
        let pause = match fire_due(&app).await {
            Ok(pause) => pause,
            Err(e) => {
                tracing::warn!("scheduler: {}", e.detail);
                MAX_PAUSE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// Fires every run due now; how long until the next may be.
async fn fire_due(app: &AppState) -> ApiResult<Duration> {
    let mut client = app.pool.get().await?;
    loop {
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT s.*, p.scheduled_snapshots, clock_timestamp() AS now
                 FROM schedules s
                 JOIN projects pr ON pr.id = s.project_id
                 JOIN plans p ON p.name = pr.plan
                 WHERE s.next_run <= clock_timestamp()
                 ORDER BY s.next_run LIMIT 1
                 FOR UPDATE OF s SKIP LOCKED",
                &[],
            )
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            break;
        };
        let id: String = row.get("id");
        let project: String = row.get("project_id");
        let last: OffsetDateTime = row.get("last_run");
        let now: OffsetDateTime = row.get("now");
        let schedule = match crate::schedules::parse(row.get("cron"), row.get("timezone")) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("schedule {id}: {}; it stops firing", e.detail);
                tx.execute("UPDATE schedules SET next_run = NULL WHERE id = $1", &[&id])
                    .await?;
                tx.commit().await?;
                continue;
            }
        };
        let next = schedule.next_after(now);
        let Some(at) = schedule.due(last, now) else {
            tx.execute(
                "UPDATE schedules SET next_run = $2 WHERE id = $1",
                &[&id, &next],
            )
            .await?;
            tx.commit().await?;
            continue;
        };
        let claimed = tx
            .execute(
                "UPDATE schedules SET last_run = $3, next_run = $4 WHERE id = $1 AND last_run = $2",
                &[&id, &last, &at, &next],
            )
            .await?;
        if claimed == 1 {
            if row.get::<_, bool>("scheduled_snapshots") {
                let template: String = row.get("name");
                let name = render_name(&template, &schedule, at);
                let at_text = crate::schedules::rfc3339(at);
                let params = json!({
                    "name": name,
                    "pin": row.get::<_, bool>("pin"),
                    "labels": { "schedule": id, "scheduled_for": at_text },
                    "origin": "scheduled",
                    "schedule_id": id,
                    "fire_at": at_text,
                });
                let job = crate::jobs::enqueue(&*tx, &project, "create", &params).await?;
                tracing::info!("schedule {id} fired for {at_text}: job {}", job.id);
            } else {
                tracing::info!(
                    "schedule {id} skipped: the project's plan has no scheduled snapshots"
                );
            }
        }
        tx.commit().await?;
    }
    let until: Option<f64> = client
        .query_one(
            "SELECT extract(epoch FROM min(next_run) - clock_timestamp())::float8 FROM schedules",
            &[],
        )
        .await?
        .get(0);
    Ok(match until {
        Some(s) if s.is_finite() => Duration::from_secs_f64(s.clamp(0.02, MAX_PAUSE.as_secs_f64())),
        _ => MAX_PAUSE,
    })
}
