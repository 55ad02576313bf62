//! Every route, with what the OpenAPI document says of it: the router and the document are
//! both built from [`table`], so neither can miss a route the other has.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;

use crate::app::AppState;
use crate::problem::Problem;
use crate::{
    diff, docs, hooks, jobs, metrics, openapi, projects, schedules, snapshots, syncs, timeline,
    tokens, usage,
};

/// A route as the OpenAPI document describes it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Needs `Authorization: Bearer`.
    pub auth: bool,
    /// The request body's schema.
    pub body: Option<&'static str>,
    /// Query parameters: (name, JSON type, description).
    pub query: &'static [(&'static str, &'static str, &'static str)],
    /// Answers: (status, description, schema).
    pub responses: &'static [(u16, &'static str, Option<&'static str>)],
}

const WAIT: (&str, &str, &str) = (
    "wait",
    "number",
    "Seconds (at most 300) to hold the answer until the job ends; then 201/200 with the result",
);

macro_rules! route {
    ($m:ident $path:literal, $op:literal, $tag:literal, $summary:literal,
     auth: $auth:expr, body: $body:expr, query: $query:expr, responses: $resp:expr, $handler:expr) => {
        (
            Route {
                method: stringify!($m),
                path: $path,
                operation_id: $op,
                summary: $summary,
                tag: $tag,
                auth: $auth,
                body: $body,
                query: $query,
                responses: $resp,
            },
            $m($handler),
        )
    };
}

/// Every route with its handler.
pub fn table() -> Vec<(Route, MethodRouter<AppState>)> {
    vec![
        route!(post "/api/v1/projects", "createProject", "projects",
            "Register a database as a project (admin)",
            auth: true, body: Some("NewProject"), query: &[],
            responses: &[(201, "The project", Some("Project"))], projects::create),
        route!(get "/api/v1/projects", "listProjects", "projects",
            "Every project (admin), or the token's own",
            auth: true, body: None, query: &[],
            responses: &[(200, "The projects", Some("ProjectList"))], projects::list),
        route!(get "/api/v1/projects/{id}", "getProject", "projects", "A project",
            auth: true, body: None, query: &[],
            responses: &[(200, "The project", Some("Project"))], projects::show),
        route!(patch "/api/v1/projects/{id}", "updateProject", "projects",
            "Rename a project, change its database URL; its plan and retention (admin)",
            auth: true, body: Some("ProjectPatch"), query: &[],
            responses: &[(200, "The project", Some("Project"))], projects::update),
        route!(delete "/api/v1/projects/{id}", "deleteProject", "projects",
            "Delete a project's metadata, tokens and jobs (admin); its store stays",
            auth: true, body: None, query: &[],
            responses: &[(204, "Deleted", None)], projects::delete),
        route!(get "/api/v1/projects/{id}/usage", "getUsage", "projects",
            "Plan, snapshots used and allowed, retention, stored and logical bytes, the database's size",
            auth: true, body: None, query: &[],
            responses: &[(200, "The usage", Some("Usage"))], usage::usage),
        route!(post "/api/v1/projects/{id}/snapshots", "createSnapshot", "snapshots",
            "Take a snapshot (a job); over the plan's count: 403 plan_limit",
            auth: true, body: Some("NewSnapshot"), query: &[WAIT],
            responses: &[
                (202, "Queued: the job; Location names it", Some("Job")),
                (201, "With ?wait=, the snapshot once taken", Some("Snapshot")),
            ], snapshots::create),
        route!(get "/api/v1/projects/{id}/snapshots", "listSnapshots", "snapshots",
            "A project's snapshots, newest first, a page at a time",
            auth: true, body: None,
            query: &[
                ("limit", "integer", "Snapshots per page, 1-1000 (default 50)"),
                ("cursor", "string", "next_cursor of the previous page"),
                ("origin", "string", "Only these: manual, safety, scheduled, sync-before, sync-after, sprint-end"),
            ],
            responses: &[(200, "A page", Some("SnapshotPage"))], snapshots::list),
        route!(get "/api/v1/projects/{id}/jobs", "listJobs", "jobs", "A project's jobs, newest first",
            auth: true, body: None,
            query: &[
                ("limit", "integer", "Jobs listed, 1-500 (default 50)"),
                ("status", "string", "Only these: queued, running, succeeded, failed, cancelled"),
            ],
            responses: &[(200, "The jobs", Some("JobList"))], jobs::list),
        route!(get "/api/v1/snapshots/{id}", "getSnapshot", "snapshots",
            "A snapshot with its tables and sequences",
            auth: true, body: None, query: &[],
            responses: &[(200, "The snapshot", Some("SnapshotDetail"))], snapshots::show),
        route!(patch "/api/v1/snapshots/{id}", "updateSnapshot", "snapshots",
            "Rename, pin or unpin a snapshot, replace its labels",
            auth: true, body: Some("SnapshotPatch"), query: &[],
            responses: &[(200, "The snapshot", Some("Snapshot"))], snapshots::update),
        route!(delete "/api/v1/snapshots/{id}", "deleteSnapshot", "snapshots",
            "Delete a snapshot (a pinned one: 409)",
            auth: true, body: None, query: &[],
            responses: &[(204, "Deleted", None)], snapshots::delete),
        route!(post "/api/v1/snapshots/{id}/restore", "restoreSnapshot", "snapshots",
            "Restore a snapshot into the project's database (after a safety snapshot) or into another (a job)",
            auth: true, body: Some("RestoreRequest"), query: &[WAIT],
            responses: &[
                (202, "Queued: the job; Location names it", Some("Job")),
                (200, "With ?wait=, the restore's report", Some("RestoreReport")),
            ], snapshots::restore),
        route!(get "/api/v1/snapshots/{id}/diff/{other_id}", "diffSnapshots", "snapshots",
            "What changed between two snapshots, or (other_id = live) to the database now (TEAM, BUSINESS)",
            auth: true, body: None,
            query: &[
                ("rows", "boolean", "List the rows added, removed or changed"),
                ("limit", "integer", "Rows listed per table with rows=true (default 100)"),
            ],
            responses: &[(200, "The CLI's diff --json document", Some("Diff"))], diff::diff),
        route!(post "/api/v1/snapshots/{id}/export", "exportSnapshot", "snapshots",
            "Export a snapshot as SQL (BUSINESS; a job): to an S3 object, or a file downloaded from the finished job",
            auth: true, body: Some("ExportRequest"), query: &[WAIT],
            responses: &[
                (202, "Queued: the job; Location names it", Some("Job")),
                (200, "With ?wait=, the export's report", Some("ExportReport")),
            ], snapshots::export),
        route!(get "/api/v1/jobs/{id}", "getJob", "jobs", "A job",
            auth: true, body: None, query: &[WAIT],
            responses: &[(200, "The job", Some("Job"))], jobs::show),
        route!(post "/api/v1/jobs/{id}/cancel", "cancelJob", "jobs",
            "Cancel a job: a queued one at once, a running one before it changes anything",
            auth: true, body: None, query: &[],
            responses: &[
                (200, "Cancelled (it was queued)", Some("Job")),
                (202, "Asked (it is running)", Some("Job")),
            ], jobs::cancel),
        route!(get "/api/v1/jobs/{id}/download", "downloadExport", "jobs",
            "The SQL file of a finished export job",
            auth: true, body: None, query: &[],
            responses: &[(200, "The SQL script", Some("SqlFile"))], jobs::download),
        route!(post "/api/v1/projects/{id}/syncs", "createSync", "automation",
            "Refresh the project's database from its sync source, masked, with snapshots either side as the plan takes them (a job)",
            auth: true, body: Some("SyncRequest"), query: &[WAIT],
            responses: &[
                (202, "Queued: the job; Location names it", Some("Job")),
                (200, "With ?wait=, the sync's report", Some("SyncReport")),
                (409, "No sync source set (code sync_source_missing)", Some("Problem")),
            ], syncs::create),
        route!(get "/api/v1/projects/{id}/syncs", "listSyncs", "automation",
            "A project's syncs, newest first, with their snapshots",
            auth: true, body: None,
            query: &[("limit", "integer", "Syncs listed, 1-500 (default 50)")],
            responses: &[(200, "The syncs", Some("SyncList"))], syncs::list),
        route!(post "/api/v1/projects/{id}/schedules", "createSchedule", "automation",
            "Take snapshots on a cron schedule in a time zone (TEAM, BUSINESS)",
            auth: true, body: Some("NewSchedule"), query: &[],
            responses: &[
                (201, "The schedule with its next five runs", Some("Schedule")),
                (400, "A cron field that is bad or never fires (invalid_cron), an unknown zone (invalid_time_zone)", Some("Problem")),
            ], schedules::create),
        route!(get "/api/v1/projects/{id}/schedules", "listSchedules", "automation",
            "A project's schedules with their next runs",
            auth: true, body: None, query: &[],
            responses: &[(200, "The schedules", Some("ScheduleList"))], schedules::list),
        route!(delete "/api/v1/schedules/{id}", "deleteSchedule", "automation",
            "Delete a schedule",
            auth: true, body: None, query: &[],
            responses: &[(204, "Deleted", None)], schedules::delete),
        route!(put "/api/v1/projects/{id}/integrations/{tracker}", "putIntegration", "automation",
            "Set the signing secret of the project's jira or linear webhook (never shown again)",
            auth: true, body: Some("IntegrationRequest"), query: &[],
            responses: &[(200, "The integration, without its secret", Some("Integration"))], hooks::put),
        route!(post "/api/v1/hooks/jira/{id}", "jiraHook", "automation",
            "A Jira webhook delivery (X-Hub-Signature: sha256=…); sprint_closed takes a snapshot",
            auth: false, body: Some("HookDelivery"), query: &[],
            responses: &[
                (202, "A sprint end: its snapshot (and sync) queued", Some("HookAnswer")),
                (200, "Another event, or a re-delivery: nothing done", Some("HookAnswer")),
                (401, "A bad or missing signature: nothing done (code unauthorized)", Some("Problem")),
                (400, "Not a Jira webhook body (code malformed_delivery)", Some("Problem")),
            ], hooks::jira),
        route!(post "/api/v1/hooks/linear/{id}", "linearHook", "automation",
            "A Linear webhook delivery (Linear-Signature, webhookTimestamp within 60 s); a completed cycle takes a snapshot",
            auth: false, body: Some("HookDelivery"), query: &[],
            responses: &[
                (202, "A cycle end: its snapshot (and sync) queued", Some("HookAnswer")),
                (200, "Another event, or a re-delivery: nothing done", Some("HookAnswer")),
                (401, "A bad or missing signature, a stale timestamp: nothing done (code unauthorized)", Some("Problem")),
                (400, "Not a Linear webhook body (code malformed_delivery)", Some("Problem")),
            ], hooks::linear),
        route!(get "/api/v1/projects/{id}/timeline", "getTimeline", "automation",
            "Snapshots, syncs, restores, schedule fires and sprint ends, newest first, a page at a time",
            auth: true, body: None,
            query: &[
                ("limit", "integer", "Items per page, 1-1000 (default 50)"),
                ("cursor", "string", "next_cursor of the previous page"),
            ],
            responses: &[(200, "A page", Some("Timeline"))], timeline::timeline),
        route!(post "/api/v1/tokens", "createToken", "tokens",
            "Create a token for a project, or an admin token (admin); its secret is shown this once",
            auth: true, body: Some("NewToken"), query: &[],
            responses: &[(201, "The token, with its secret", Some("NewTokenResult"))], tokens::create),
        route!(get "/api/v1/tokens", "listTokens", "tokens", "Every token, without secrets (admin)",
            auth: true, body: None, query: &[],
            responses: &[(200, "The tokens", Some("TokenList"))], tokens::list),
        route!(delete "/api/v1/tokens/{id}", "revokeToken", "tokens", "Revoke a token (admin)",
            auth: true, body: None, query: &[],
            responses: &[(204, "Revoked", None)], tokens::revoke),
        route!(get "/api/v1/plans", "listPlans", "plans", "Every plan's limits and features",
            auth: false, body: None, query: &[],
            responses: &[(200, "The plans", Some("PlanList"))], plan_list),
        route!(get "/api/v1/openapi.json", "openapi", "service", "This document",
            auth: false, body: None, query: &[],
            responses: &[(200, "The OpenAPI document", Some("OpenApi"))], openapi::serve),
        route!(get "/docs", "docs", "service", "A viewer of this document",
            auth: false, body: None, query: &[],
            responses: &[(200, "An HTML page", Some("Html"))], docs::page),
        route!(get "/healthz", "healthz", "service", "The process answers",
            auth: false, body: None, query: &[],
            responses: &[(200, "ok", Some("Text"))], healthz),
        route!(get "/readyz", "readyz", "service", "The metadata database answers",
            auth: false, body: None, query: &[],
            responses: &[(200, "ready", Some("Text")), (503, "Not ready", Some("Problem"))], readyz),
        route!(get "/metrics", "metrics", "service", "Prometheus metrics",
            auth: false, body: None, query: &[],
            responses: &[(200, "Prometheus text", Some("Text"))], metrics::metrics),
    ]
}

/// The router, with problem documents for unknown routes and methods, a 1 MB body limit,
/// `Idempotency-Key` and request metrics.
pub fn router(app: AppState) -> Router {
    let mut router = Router::new();
    for (route, handler) in table() {
        router = router.route(route.path, handler);
    }
    router
        // The dashboard's pages: not API routes, so not in the table (nor the document).
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::idempotency::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(crate::body::MAX_BODY))
        .with_state(app)
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route (see /api/v1/openapi.json)",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method (see /api/v1/openapi.json)",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> Result<&'static str, Problem> {
    let client = app.pool.get().await?;
    client.execute("SELECT 1", &[]).await?;
    Ok("ready\n")
}

async fn plan_list(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let client = app.pool.get().await?;
    let plans = crate::plans::all(crate::snapshots::pg(&client)).await?;
    Ok(axum::Json(serde_json::json!({ "items": plans })))
}
