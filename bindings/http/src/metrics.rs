//! `GET /metrics`: Prometheus text. Requests by route, method and status with their
//! durations; jobs by kind and status (this server's finished ones with durations, and
//! every job in the metadata database by status).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::problem::ApiResult;

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    seconds: f64,
}

/// Counters kept in memory, per server.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Tally>>,
    jobs: Mutex<BTreeMap<(String, String), Tally>>,
}

impl Metrics {
    fn request(&self, route: String, method: String, status: u16, took: Duration) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let t = map.entry((route, method, status)).or_default();
        t.count += 1;
        t.seconds += took.as_secs_f64();
    }

    pub fn job_finished(&self, kind: &str, status: &str, took: Duration) {
        let mut map = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let t = map.entry((kind.to_owned(), status.to_owned())).or_default();
        t.count += 1;
        t.seconds += took.as_secs_f64();
    }
}

/// Counts every request under its route's template (`/api/v1/snapshots/{id}`).
pub async fn track(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics
        .request(route, method, response.status().as_u16(), started.elapsed());
    response
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<AppState>) -> ApiResult<Response> {
    let mut out = String::new();
    out.push_str(
        "# HELP phony_http_requests_total HTTP requests answered, by route, method and status.\n",
    );
    out.push_str("# TYPE phony_http_requests_total counter\n");
    let mut durations = String::new();
    durations
        .push_str("# HELP phony_http_request_duration_seconds Time spent answering requests.\n");
    durations.push_str("# TYPE phony_http_request_duration_seconds summary\n");
    {
        let map = app
            .metrics
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ((route, method, status), t) in map.iter() {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{status}\"",
                escape(route),
                escape(method)
            );
            let _ = writeln!(out, "phony_http_requests_total{{{labels}}} {}", t.count);
            let _ = writeln!(
                durations,
                "phony_http_request_duration_seconds_sum{{{labels}}} {}",
                t.seconds
            );
            let _ = writeln!(
                durations,
                "phony_http_request_duration_seconds_count{{{labels}}} {}",
                t.count
            );
        }
    }
    out.push_str(&durations);
    out.push_str(
        "# HELP phony_job_duration_seconds Jobs this server ran, by kind and how they ended.\n",
    );
    out.push_str("# TYPE phony_job_duration_seconds summary\n");
    {
        let map = app.metrics.jobs.lock().unwrap_or_else(|e| e.into_inner());
        for ((kind, status), t) in map.iter() {
            let labels = format!("kind=\"{}\",status=\"{}\"", escape(kind), escape(status));
            let _ = writeln!(
                out,
                "phony_job_duration_seconds_sum{{{labels}}} {}",
                t.seconds
            );
            let _ = writeln!(
                out,
                "phony_job_duration_seconds_count{{{labels}}} {}",
                t.count
            );
        }
    }
    out.push_str("# HELP phony_jobs Jobs in the metadata database, by kind and status.\n");
    out.push_str("# TYPE phony_jobs gauge\n");
    let client = app.pool.get().await?;
    let rows = client
        .query(
            "SELECT kind, status, count(*) FROM jobs GROUP BY kind, status ORDER BY kind, status",
            &[],
        )
        .await?;
    for row in rows {
        let (kind, status, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let _ = writeln!(
            out,
            "phony_jobs{{kind=\"{}\",status=\"{}\"}} {n}",
            escape(&kind),
            escape(&status)
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
