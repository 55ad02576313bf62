//! `Idempotency-Key` on a POST: the first answer is kept 24 hours and given again to a
//! repeat of the request with the same key and token (with `Idempotency-Replayed: true`).
//! A repeat that arrives while the first is being answered gets 409; the same key on
//! another path 422.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::problem::Problem;
use crate::secrets::token_hash;

/// The largest answer kept.
const MAX_KEPT: usize = 16 * 1024 * 1024;

pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(key), Some(token)) = (key, token) else {
        return next.run(req).await;
    };
    if key.is_empty() || key.len() > 255 {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "an Idempotency-Key has 1-255 characters",
        )
        .into_response();
    }
    match replay_or_claim(&app, &token, &key, req.uri().path()).await {
        Ok(Some(kept)) => return kept,
        Ok(None) => {}
        Err(p) => return p.into_response(),
    }
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_KEPT).await {
        Ok(b) => b,
        Err(e) => {
            forget(&app, &token, &key).await;
            return Problem::internal("answering", &e).into_response();
        }
    };
    let status = parts.status.as_u16();
    if parts.status.is_server_error() || parts.status == StatusCode::UNAUTHORIZED {
        // Not an answer worth repeating: the next try runs again.
        forget(&app, &token, &key).await;
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location = parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let stored = async {
            let client = app.pool.get().await.ok()?;
            client
                .execute(
                    "UPDATE idempotency SET status = $3, body = $4, content_type = $5, location = $6
                     WHERE token_hash = $1 AND key = $2",
                    &[&token_hash(&token), &key, &i32::from(status), &bytes.to_vec(), &content_type, &location],
                )
                .await
                .ok()
        }
        .await;
        if stored.is_none() {
            tracing::warn!("keeping the answer for an Idempotency-Key failed");
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn forget(app: &AppState, token: &str, key: &str) {
    if let Ok(client) = app.pool.get().await {
        let _ = client
            .execute(
                "DELETE FROM idempotency WHERE token_hash = $1 AND key = $2",
                &[&token_hash(token), &key],
            )
            .await;
    }
}

/// The kept answer for `key`, or None after claiming the key for this request.
async fn replay_or_claim(
    app: &AppState,
    token: &str,
    key: &str,
    path: &str,
) -> Result<Option<Response>, Problem> {
    let client = app.pool.get().await?;
    let hash = token_hash(token);
    client
        .execute(
            "DELETE FROM idempotency WHERE token_hash = $1 AND key = $2
                AND created_at < now() - interval '24 hours'",
            &[&hash, &key],
        )
        .await?;
    let claimed = client
        .execute(
            "INSERT INTO idempotency (token_hash, key, method, path) VALUES ($1, $2, 'POST', $3)
             ON CONFLICT DO NOTHING",
            &[&hash, &key, &path],
        )
        .await?;
    if claimed == 1 {
        return Ok(None);
    }
    let Some(row) = client
        .query_opt(
            "SELECT path, status, body, content_type, location FROM idempotency
             WHERE token_hash = $1 AND key = $2",
            &[&hash, &key],
        )
        .await?
    else {
        return Err(Problem::conflict(
            "idempotency_in_progress",
            "a request with this Idempotency-Key is being answered: try again shortly",
        ));
    };
    let kept_path: String = row.get(0);
    if kept_path != path {
        return Err(Problem::invalid(
            "idempotency_mismatch",
            "this Idempotency-Key was used for another request",
        ));
    }
    let Some(status) = row.get::<_, Option<i32>>(1) else {
        return Err(Problem::conflict(
            "idempotency_in_progress",
            "a request with this Idempotency-Key is being answered: try again shortly",
        ));
    };
    let body: Vec<u8> = row.get::<_, Option<Vec<u8>>>(2).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(ct) = row
        .get::<_, Option<String>>(3)
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(l) = row
        .get::<_, Option<String>>(4)
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert(header::LOCATION, l);
    }
    headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}
