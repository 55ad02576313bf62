//! The OpenAPI 3.1 document, generated from the route table ([`crate::routes::table`]) and
//! the schemas below. `openapi.json` at the crate's root is this document, committed; a
//! test fails when they differ (regenerate with
//! `PHONY_UPDATE_OPENAPI=1 cargo test -p phony-server --test integration openapi`).

use axum::Json;
use serde_json::{json, Map, Value};

use crate::routes::{table, Route};

/// The document.
pub fn document() -> Value {
    let routes: Vec<Route> = table().into_iter().map(|(r, _)| r).collect();
    let mut paths = Map::new();
    for r in &routes {
        let item = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        item[r.method] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "phony",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Snapshots of PostgreSQL databases, taken and rolled back over HTTP: projects, API tokens, plan limits and jobs. Errors are RFC 9457 problem documents (application/problem+json) with a stable `code`.",
            "license": { "name": "MIT" }
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API token: admin, or scoped to one project" },
                "jiraSignature": { "type": "apiKey", "in": "header", "name": "X-Hub-Signature", "description": "sha256=<hex HMAC-SHA256 of the raw body under the integration's secret>" },
                "linearSignature": { "type": "apiKey", "in": "header", "name": "Linear-Signature", "description": "<hex HMAC-SHA256 of the raw body under the integration's secret>; webhookTimestamp within 60 s" }
            },
            "schemas": schemas()
        }
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn content(schema: &str) -> Value {
    match schema {
        "Text" => json!({ "text/plain": { "schema": { "type": "string" } } }),
        "Html" => json!({ "text/html": { "schema": { "type": "string" } } }),
        "SqlFile" => json!({ "application/sql": { "schema": { "type": "string" } } }),
        "Problem" => json!({ "application/problem+json": { "schema": reference("Problem") } }),
        s => json!({ "application/json": { "schema": reference(s) } }),
    }
}

fn operation(r: &Route) -> Value {
    let mut parameters: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
        })
        .collect();
    for (name, ty, description) in r.query {
        parameters.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description, "schema": { "type": ty }
        }));
    }
    let mut responses = Map::new();
    for (status, description, schema) in r.responses {
        let mut resp = json!({ "description": description });
        if let Some(s) = schema {
            resp["content"] = content(s);
        }
        responses.insert(status.to_string(), resp);
    }
    if r.auth {
        responses.insert(
            "401".into(),
            json!({ "description": "No token, or one not valid (code unauthorized)", "content": content("Problem") }),
        );
        responses.insert(
            "404".into(),
            json!({ "description": "Not found, or another project's (code not_found)", "content": content("Problem") }),
        );
    }
    responses.insert(
        "default".into(),
        json!({ "description": "A problem document (see its code)", "content": content("Problem") }),
    );
    let mut op = json!({
        "operationId": r.operation_id,
        "summary": r.summary,
        "tags": [r.tag],
        "parameters": parameters,
        "responses": responses,
    });
    if r.auth {
        op["security"] = json!([{ "bearer": [] }]);
    } else if let Some(scheme) = hook_signature(r.path) {
        // A webhook's signature is its auth.
        op["security"] = json!([{ scheme: [] }]);
    } else {
        op["security"] = json!([]);
    }
    if let Some(body) = r.body {
        op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": reference(body) } } });
    }
    op
}

/// The security scheme of a webhook route, whose signature is its auth.
fn hook_signature(path: &str) -> Option<&'static str> {
    if path.starts_with("/api/v1/hooks/jira/") {
        Some("jiraSignature")
    } else if path.starts_with("/api/v1/hooks/linear/") {
        Some("linearSignature")
    } else {
        None
    }
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
}

fn open_object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn list_of(item: &str) -> Value {
    open_object(
        &["items"],
        json!({ "items": { "type": "array", "items": reference(item) } }),
    )
}

fn schemas() -> Value {
    let mut all = core_schemas();
    if let (Value::Object(all), Value::Object(more)) = (&mut all, automation_schemas()) {
        all.extend(more);
    }
    all
}

/// The schemas of syncs, schedules, webhooks and the timeline.
fn automation_schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let time_or_null = json!({ "type": ["string", "null"], "format": "date-time" });
    json!({
        "SyncRequest": object(&[], json!({
            "before": { "type": "boolean", "description": "A snapshot before (default: as the plan takes it; one it does not take: 403 plan_required)" },
            "after": { "type": "boolean", "description": "A snapshot after (default: as the plan takes it)" }
        })),
        "SyncReport": open_object(&["number"], json!({
            "number": { "type": "integer" },
            "source": { "type": "string" },
            "database": { "type": "string" },
            "masked_columns": { "type": "integer" },
            "tables": { "type": "integer" },
            "rows": { "type": "integer" },
            "bytes": { "type": "integer" },
            "before_snapshot_id": { "type": ["string", "null"] },
            "after_snapshot_id": { "type": ["string", "null"] }
        })),
        "Sync": open_object(&["job_id", "status", "created_at"], json!({
            "number": { "type": ["integer", "null"] },
            "job_id": { "type": "string" },
            "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] },
            "source": { "type": ["string", "null"] },
            "before_snapshot_id": { "type": ["string", "null"] },
            "after_snapshot_id": { "type": ["string", "null"] },
            "error": { "description": "A problem document" },
            "created_at": time,
            "finished_at": time_or_null
        })),
        "SyncList": list_of("Sync"),
        "NewSchedule": object(&["cron"], json!({
            "cron": { "type": "string", "description": "Five fields (0 0 * * FRI) or six with seconds first" },
            "timezone": { "type": "string", "default": "UTC", "description": "An IANA zone" },
            "name": { "type": "string", "default": "scheduled-{datetime}", "description": "A name template: {date} {time} {datetime} {year} {month} {day} {week} {weekday}" },
            "pin": { "type": "boolean", "default": false }
        })),
        "Schedule": open_object(&["id", "project_id", "cron", "timezone", "name", "pin", "next_runs"], json!({
            "id": { "type": "string" },
            "project_id": { "type": "string" },
            "cron": { "type": "string" },
            "timezone": { "type": "string" },
            "name": { "type": "string" },
            "pin": { "type": "boolean" },
            "next_runs": { "type": "array", "items": time },
            "last_run": time,
            "created_at": time
        })),
        "ScheduleList": list_of("Schedule"),
        "IntegrationRequest": object(&["secret"], json!({
            "secret": { "type": "string", "description": "The webhook's signing secret; stored encrypted, never shown again" },
            "sync_on_sprint_end": { "type": "boolean", "description": "Start a sync after each sprint end's snapshot" }
        })),
        "Integration": open_object(&["project_id", "tracker", "sync_on_sprint_end", "hook_url"], json!({
            "project_id": { "type": "string" },
            "tracker": { "type": "string", "enum": ["jira", "linear"] },
            "sync_on_sprint_end": { "type": "boolean" },
            "hook_url": { "type": "string" },
            "created_at": time,
            "updated_at": time
        })),
        "HookDelivery": { "type": "object", "description": "The tracker's webhook body, as it sends it" },
        "HookAnswer": open_object(&["action"], json!({
            "action": { "type": "string", "enum": ["snapshot", "ignored", "duplicate"] },
            "reason": { "type": "string" },
            "snapshot_name": { "type": "string" },
            "job": reference("Job"),
            "sync_job": { "oneOf": [reference("Job"), { "type": "null" }] }
        })),
        "TimelineItem": open_object(&["at", "kind", "label"], json!({
            "at": time,
            "kind": { "type": "string", "enum": ["snapshot", "sync", "restore", "schedule", "sprint"] },
            "label": { "type": "string", "description": "Sync #1, Before Sync #1, Sprint End #2, a snapshot's name …" },
            "snapshot_id": { "type": "string" },
            "job_id": { "type": "string" },
            "origin": { "type": "string" },
            "pinned": { "type": "boolean" },
            "status": { "type": "string", "description": "A job's status" }
        })),
        "Timeline": open_object(&["items", "next_cursor"], json!({
            "items": { "type": "array", "items": reference("TimelineItem") },
            "next_cursor": { "type": ["string", "null"] }
        })),
    })
}

fn core_schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let time_or_null = json!({ "type": ["string", "null"], "format": "date-time" });
    let labels = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let plan = json!({ "type": "string", "enum": ["FREE", "STARTER", "TEAM", "BUSINESS"] });
    let snapshot = open_object(
        &["id", "name", "created_at", "origin", "pinned", "labels"],
        json!({
            "id": { "type": "string", "pattern": "^snap_[0-9a-f]{12}$" },
            "name": { "type": ["string", "null"] },
            "created_at": time,
            "origin": { "type": "string", "enum": ["manual", "safety", "scheduled", "sync-before", "sync-after", "sprint-end"] },
            "pinned": { "type": "boolean" },
            "labels": labels,
            "database": { "type": "string" },
            "server_version": { "type": "string" },
            "tables": { "type": "integer" },
            "rows": { "type": "integer" },
            "sequences": { "type": "integer" },
            "bytes": { "type": "integer", "description": "Plain bytes of all rows" },
            "stored_bytes": { "type": "integer" },
            "new_bytes": { "type": "integer", "description": "Stored bytes this snapshot added" },
            "duration_ms": { "type": "integer" },
            "root": { "type": "string" }
        }),
    );
    let mut detail = snapshot.clone();
    detail["properties"]["project_id"] = json!({ "type": "string" });
    detail["properties"]["table_list"] = json!({ "type": "array", "items": { "type": "object" } });
    detail["properties"]["sequence_list"] =
        json!({ "type": "array", "items": { "type": "object" } });
    json!({
        "Problem": open_object(&["type", "title", "status", "detail", "code"], json!({
            "type": { "type": "string" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "code": { "type": "string", "enum": crate::problem::CODES },
            "plan": { "type": "string", "description": "plan_limit, plan_required: the project's plan" },
            "limit": { "type": "integer", "description": "plan_limit: snapshots the plan keeps" },
            "required_plan": { "type": "string", "description": "plan_required: the lowest plan with the feature" },
            "job": { "$ref": "#/components/schemas/Job" }
        })),
        "NewProject": object(&["name", "database_url"], json!({
            "name": { "type": "string", "maxLength": 64 },
            "database_url": { "type": "string", "description": "postgres://user:password@host:port/db; the password is encrypted at rest and never returned" },
            "plan": { "allOf": [plan], "default": "FREE" },
            "retention_days": { "type": ["integer", "null"], "description": "BUSINESS only: custom retention" }
        })),
        "ProjectPatch": object(&[], json!({
            "name": { "type": "string" },
            "database_url": { "type": "string" },
            "plan": { "allOf": [plan], "description": "admin tokens only" },
            "retention_days": { "type": ["integer", "null"], "description": "admin tokens only; at most the plan's (BUSINESS: any)" },
            "keep_last": { "type": ["integer", "null"], "description": "admin tokens only; keep the last N snapshots, at most the plan's count" },
            "sync_source_url": { "type": ["string", "null"], "description": "The database syncs copy from; its password is encrypted at rest and never returned; null removes it" },
            "masking_rules": { "type": ["string", "null"], "description": "`schema.table.column rule` a line (null, fixed 'v', hash, email, name, phone); a bad line is 400 invalid_masking_rules" }
        })),
        "Project": open_object(&["id", "name", "plan", "database_url", "created_at"], json!({
            "id": { "type": "string" },
            "name": { "type": "string" },
            "plan": plan,
            "database_url": { "type": "string", "description": "Without its password" },
            "retention_days": { "type": ["integer", "null"] },
            "keep_last": { "type": ["integer", "null"] },
            "sync_source": { "type": ["string", "null"], "description": "The sync source's URL without its password" },
            "masking_rules": { "type": ["string", "null"] },
            "created_at": time,
            "updated_at": time
        })),
        "ProjectList": list_of("Project"),
        "Usage": open_object(&["project_id", "plan", "snapshots"], json!({
            "project_id": { "type": "string" },
            "plan": plan,
            "snapshots": open_object(&["used", "allowed"], json!({
                "used": { "type": "integer" },
                "allowed": { "type": ["integer", "null"] },
                "pinned": { "type": "integer" },
                "safety": { "type": "integer" }
            })),
            "retention_days": { "type": ["integer", "null"] },
            "retention_expires_pinned": { "type": "boolean" },
            "stored_bytes": { "type": "integer" },
            "logical_bytes": { "type": "integer" },
            "database_bytes": { "type": ["integer", "null"] },
            "stored_share": { "type": ["number", "null"], "description": "stored_bytes / database_bytes" }
        })),
        "NewSnapshot": object(&[], json!({
            "name": { "type": "string", "maxLength": 64 },
            "pin": { "type": "boolean", "default": false },
            "labels": labels,
            "origin": { "type": "string", "enum": ["manual", "sync-before", "sync-after"], "description": "Around a sync run by a tool of your own; other origins are the server's (400 invalid_origin)" },
            "sync_id": { "type": "string", "maxLength": 64, "description": "With origin: the sync's id, kept as the label sync" }
        })),
        "SnapshotPatch": object(&[], json!({
            "name": { "type": ["string", "null"], "description": "null removes the name" },
            "pin": { "type": "boolean" },
            "labels": { "allOf": [labels], "description": "Replaces every label" }
        })),
        "Snapshot": snapshot,
        "SnapshotDetail": detail,
        "SnapshotPage": open_object(&["items", "next_cursor"], json!({
            "items": { "type": "array", "items": reference("Snapshot") },
            "next_cursor": { "type": ["string", "null"] }
        })),
        "RestoreRequest": object(&[], json!({
            "target_database_url": { "type": "string", "description": "Restore into this database instead (created if missing); no safety snapshot then" },
            "force": { "type": "boolean", "default": false },
            "dry_run": { "type": "boolean", "default": false },
            "full": { "type": "boolean", "default": false },
            "allow_other_database": { "type": "boolean", "default": false }
        })),
        "RestoreReport": open_object(&["id", "database", "path"], json!({
            "id": { "type": "string" },
            "database": { "type": "string" },
            "created_database": { "type": "boolean" },
            "path": { "type": "string", "enum": ["delta", "full"] },
            "rows": { "type": "integer" },
            "changes": { "type": "array", "items": { "type": "object" } },
            "safety_snapshot": { "type": ["string", "null"] },
            "duration_ms": { "type": "integer" }
        })),
        "Diff": open_object(&["from", "to", "identical"], json!({
            "from": { "type": "object" },
            "to": { "type": "object" },
            "identical": { "type": "boolean" },
            "schema": { "type": "array" },
            "tables": { "type": "array" },
            "sequences": { "type": "array" }
        })),
        "ExportRequest": object(&["format"], json!({
            "format": { "type": "string", "enum": ["sql"] },
            "destination": { "type": "string", "description": "An S3 object, s3://bucket/key (compressed when the key ends in .zst or .gz; the server's AWS credentials); absent: download the file from the finished job. Paths on the server are refused (422 invalid_destination)" },
            "force": { "type": "boolean", "description": "Replace an existing object at destination (otherwise the job fails with 409 destination_exists)" }
        })),
        "ExportReport": open_object(&["format"], json!({
            "format": { "type": "string" },
            "snapshot_id": { "type": "string" },
            "tables": { "type": "integer" },
            "rows": { "type": "integer" },
            "sequences": { "type": "integer" },
            "bytes": { "type": "integer", "description": "Bytes of SQL, before compression" },
            "written_bytes": { "type": "integer", "description": "Bytes written (after compression)" },
            "download": { "type": "string", "description": "Without a destination: where to download the file" },
            "destination": { "type": "string", "description": "With a destination: the object written" }
        })),
        "Job": open_object(&["id", "project_id", "kind", "status", "progress", "created_at"], json!({
            "id": { "type": "string" },
            "project_id": { "type": "string" },
            "kind": { "type": "string", "enum": ["create", "restore", "export", "sync"] },
            "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] },
            "params": { "type": "object" },
            "progress": open_object(&[], json!({
                "phase": { "type": ["string", "null"] },
                "tables": { "type": "integer" },
                "rows": { "type": "integer" },
                "bytes": { "type": "integer" }
            })),
            "result": { "description": "The snapshot, restore report or export report" },
            "error": { "description": "A problem document", "oneOf": [reference("ProblemBody"), { "type": "null" }] },
            "cancel_requested": { "type": "boolean" },
            "created_at": time,
            "started_at": time_or_null,
            "finished_at": time_or_null
        })),
        "ProblemBody": { "type": "object", "description": "See Problem" },
        "JobList": list_of("Job"),
        "NewToken": object(&[], json!({
            "project_id": { "type": ["string", "null"], "description": "Without one: an admin token" }
        })),
        "Token": open_object(&["id", "project_id", "created_at"], json!({
            "id": { "type": "string" },
            "project_id": { "type": ["string", "null"] },
            "created_at": time,
            "revoked_at": time_or_null
        })),
        "NewTokenResult": open_object(&["id", "project_id", "token"], json!({
            "id": { "type": "string" },
            "project_id": { "type": ["string", "null"] },
            "created_at": time,
            "token": { "type": "string", "description": "The secret, shown this once" }
        })),
        "TokenList": list_of("Token"),
        "Plan": open_object(&["name"], json!({
            "name": plan,
            "snapshots_kept": { "type": ["integer", "null"] },
            "retention_days": { "type": ["integer", "null"] },
            "retention_expires_pinned": { "type": "boolean" },
            "auto_snapshot_on_sync": { "type": "string" },
            "scheduled_snapshots": { "type": "boolean" },
            "snapshot_diff": { "type": "boolean" },
            "export": { "type": "boolean" }
        })),
        "PlanList": list_of("Plan"),

        "OpenApi": { "type": "object" }
    })
}
