//! `/docs`: a small, self-contained viewer of the OpenAPI document (no CDN, no script
//! from elsewhere: everything is in the binary).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("docs.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        PAGE,
    )
}
