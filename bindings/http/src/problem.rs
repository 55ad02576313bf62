//! Errors as RFC 9457 problem documents (`application/problem+json`), each with a stable
//! `code` that clients can act on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer: status, stable code, one line for people, and extension members.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// Adds an extension member (`plan`, `limit`, `job` …).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn admin_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "admin_required",
            "this needs an admin token",
        )
    }

    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// A failure of the server's own (its metadata database, a store): logged once here,
    /// answered without internals.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed; see the server's log"),
        )
    }

    /// The metadata database cannot be reached: try again shortly.
    pub fn unavailable(error: &dyn std::fmt::Display) -> Self {
        tracing::warn!("metadata database: {error}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server's metadata database is unavailable; try again shortly",
        )
    }

    /// The document, as JSON.
    pub fn body(&self) -> Value {
        let mut doc = Map::new();
        doc.insert(
            "type".into(),
            json!(format!("urn:phony:problem:{}", self.code)),
        );
        doc.insert("title".into(), json!(self.title));
        doc.insert("status".into(), json!(self.status.as_u16()));
        doc.insert("detail".into(), json!(self.detail));
        doc.insert("code".into(), json!(self.code));
        for (k, v) in &self.extra {
            doc.insert(k.clone(), v.clone());
        }
        Value::Object(doc)
    }

    /// Reads a document back (a job's stored error).
    pub fn from_body(doc: &Value) -> Self {
        let status = doc["status"]
            .as_u64()
            .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = known_code(doc["code"].as_str().unwrap_or("internal"));
        let mut p = Problem::new(status, code, doc["detail"].as_str().unwrap_or_default());
        if let Value::Object(map) = doc {
            for (k, v) in map {
                if !matches!(k.as_str(), "type" | "title" | "status" | "detail" | "code") {
                    p.extra.insert(k.clone(), v.clone());
                }
            }
        }
        p
    }
}

/// Every code this server answers with (the stable list the API documents).
pub const CODES: &[&str] = &[
    "unauthorized",
    "admin_required",
    "not_found",
    "method_not_allowed",
    "malformed_body",
    "invalid_body",
    "invalid_query",
    "unsupported_media_type",
    "body_too_large",
    "invalid_database_url",
    "invalid_name",
    "invalid_plan",
    "name_taken",
    "snapshot_pinned",
    "ambiguous_id",
    "plan_limit",
    "plan_required",
    "project_busy",
    "locked",
    "schema_unsupported",
    "other_database",
    "storage_full",
    "last_admin_token",
    "job_finished",
    "export_not_ready",
    "invalid_destination",
    "destination_exists",
    "destination_failed",
    "idempotency_in_progress",
    "idempotency_mismatch",
    "database_unreachable",
    "database_error",
    "job_failed",
    "server_stopped",
    "cancelled",
    "unavailable",
    "internal",
    "invalid_origin",
    "invalid_masking_rules",
    "sync_source_missing",
    "sync_refused",
    "invalid_cron",
    "invalid_time_zone",
    "malformed_delivery",
];

fn known_code(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("job_failed")
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<deadpool_postgres::PoolError> for Problem {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Problem::unavailable(&e)
    }
}

impl From<tokio_postgres::Error> for Problem {
    fn from(e: tokio_postgres::Error) -> Self {
        // Connection lost, server shutting down or restarting, out of connections: the
        // metadata database is away for now, not wrong.
        let away = e
            .as_db_error()
            .is_none_or(|d| matches!(&d.code().code()[..2], "08" | "57" | "53"));
        if e.is_closed() || away {
            Problem::unavailable(&e)
        } else {
            Problem::internal("a metadata query", &e)
        }
    }
}

/// Maps an engine error to its answer, by the error's kind.
pub fn engine(e: phony_engine::Error, doing: &str) -> Problem {
    use phony_engine::ErrorKind as K;
    let detail = format!("{doing}: {}", chain(&e));
    match e.kind() {
        K::NotFound => Problem::not_found("snapshot"),
        K::AmbiguousId => Problem::conflict("ambiguous_id", detail),
        K::NameTaken => Problem::conflict("name_taken", detail),
        K::Locked { holders } => Problem::conflict("locked", detail).with("holders", holders),
        K::Cancelled => Problem::conflict("cancelled", detail),
        K::Connection => Problem::new(StatusCode::BAD_GATEWAY, "database_unreachable", detail),
        K::Database { sqlstate } => {
            Problem::invalid("database_error", detail).with("sqlstate", sqlstate)
        }
        K::SchemaUnsupported => Problem::invalid("schema_unsupported", detail),
        K::OtherDatabase => Problem::conflict("other_database", detail),
        K::Invalid => Problem::invalid("invalid_body", detail),
        K::StorageFull => Problem::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", detail),
        K::CorruptStore => Problem::internal(doing, &chain(&e)).with("reason", "corrupt_store"),
        _ => Problem::internal(doing, &chain(&e)),
    }
}

/// An error with its causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

pub type ApiResult<T> = std::result::Result<T, Problem>;
