//! Plans as data: one table of limits and features (see the `plans` migration), consulted
//! here, at one gate. An error names the plan and its limit (`plan_limit`) or the lowest
//! plan that has a feature (`plan_required`).

use axum::http::StatusCode;
use serde::Serialize;
use tokio_postgres::Row;

use crate::problem::{ApiResult, Problem};

/// A plan's limits and features.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// None: unlimited.
    pub snapshots_kept: Option<i32>,
    /// None: the project's own (BUSINESS: custom).
    pub retention_days: Option<i32>,
    pub retention_expires_pinned: bool,
    pub auto_snapshot_on_sync: String,
    pub scheduled_snapshots: bool,
    pub snapshot_diff: bool,
    pub export: bool,
}

/// A feature some plans have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    SnapshotDiff,
    Export,
    ScheduledSnapshots,
}

impl Feature {
    fn describe(self) -> &'static str {
        match self {
            Feature::SnapshotDiff => "snapshot diff",
            Feature::Export => "export",
            Feature::ScheduledSnapshots => "scheduled snapshots",
        }
    }
}

impl Plan {
    fn of(row: &Row) -> Self {
        Plan {
            name: row.get("name"),
            snapshots_kept: row.get("snapshots_kept"),
            retention_days: row.get("retention_days"),
            retention_expires_pinned: row.get("retention_expires_pinned"),
            auto_snapshot_on_sync: row.get("auto_snapshot_on_sync"),
            scheduled_snapshots: row.get("scheduled_snapshots"),
            snapshot_diff: row.get("snapshot_diff"),
            export: row.get("export"),
        }
    }

    pub fn has(&self, feature: Feature) -> bool {
        match feature {
            Feature::SnapshotDiff => self.snapshot_diff,
            Feature::Export => self.export,
            Feature::ScheduledSnapshots => self.scheduled_snapshots,
        }
    }

    /// Fails with `plan_limit` when `used` snapshots leave no room for one more.
    pub fn check_room(&self, used: u64) -> ApiResult<()> {
        match self.snapshots_kept {
            Some(limit) if used >= u64::try_from(limit).unwrap_or(0) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "plan_limit",
                format!(
                    "the {} plan keeps {limit} snapshots and the project has {used} (pinned ones count; safety snapshots do not): delete one or upgrade",
                    self.name
                ),
            )
            .with("plan", self.name.clone())
            .with("limit", limit)
            .with("used", used)),
            _ => Ok(()),
        }
    }
}

/// Every plan, lowest first.
pub async fn all(client: &impl tokio_postgres::GenericClient) -> ApiResult<Vec<Plan>> {
    let rows = client
        .query("SELECT * FROM plans ORDER BY rank", &[])
        .await?;
    Ok(rows.iter().map(Plan::of).collect())
}

/// The plan named `name` (in any case), or `invalid_plan`.
pub async fn find(client: &impl tokio_postgres::GenericClient, name: &str) -> ApiResult<Plan> {
    let plans = all(client).await?;
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let listed = names.join(", ");
    plans
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| {
            Problem::invalid(
                "invalid_plan",
                format!("no plan {name:?}: choose one of {listed}"),
            )
        })
}

/// Fails with `plan_required` naming the lowest plan with `feature` when `plan` lacks it.
pub async fn require(
    client: &impl tokio_postgres::GenericClient,
    plan: &Plan,
    feature: Feature,
) -> ApiResult<()> {
    if plan.has(feature) {
        return Ok(());
    }
    let lowest = all(client)
        .await?
        .into_iter()
        .find(|p| p.has(feature))
        .map(|p| p.name)
        .unwrap_or_default();
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        "plan_required",
        format!(
            "{} needs the {lowest} plan or higher; the project is on {}",
            feature.describe(),
            plan.name
        ),
    )
    .with("plan", plan.name.clone())
    .with("required_plan", lowest)
    .with("feature", feature.describe()))
}
