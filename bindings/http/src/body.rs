//! Request bodies and query strings, with their rejections as problem documents: a body
//! that is not JSON is 400 `malformed_body`, one of the wrong shape (an unknown field, a
//! wrong type) 422 `invalid_body`, one over 1 MB 413 `body_too_large`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// The largest body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON body (`Content-Type: application/json`); an empty body reads as `{}`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0");
        let typed = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if empty && !typed {
            return serde_json::from_str("{}")
                .map(Body)
                .map_err(|e| Problem::invalid("invalid_body", e.to_string()));
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> Problem {
    match e {
        JsonRejection::JsonDataError(e) => Problem::invalid("invalid_body", inner(&e)),
        JsonRejection::JsonSyntaxError(e) => {
            Problem::new(StatusCode::BAD_REQUEST, "malformed_body", inner(&e))
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
        }
        other => Problem::new(other.status(), "malformed_body", other.body_text()),
    }
}

pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is over {} bytes", MAX_BODY),
    )
}

/// serde's own message, without axum's prefix.
fn inner(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// A query string.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                inner(&e),
            )),
            Err(e) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                e.body_text(),
            )),
        }
    }
}
