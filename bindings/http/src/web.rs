//! The web dashboard: pages rendered on the server at `/`, for people who never open a
//! terminal. They sign in with an API token (kept server-side behind an `HttpOnly` session
//! cookie), see each project's timeline, take a snapshot, restore one after seeing what it
//! would rewrite, compare two, and read their plan's usage.
//!
//! The pages are not API routes (the OpenAPI document does not list them): [`router`] is
//! merged beside the API's. Every asset (style sheet, script, icon) is in the binary
//! ([`assets`]); the pages work without the script, which only makes job progress live.
//! The handlers go through the same functions as the API with the session's token as the
//! caller, so plan limits, tenancy and jobs behave exactly as over HTTP.

mod assets;
mod pages;
mod session;
pub mod timeline;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::problem::Problem;

pub use session::Session;

/// The dashboard's routes (merged into the service's router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::projects::list))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/assets/{file}", get(assets::serve))
        .route("/projects/{id}", get(pages::project::timeline))
        .route("/projects/{id}/timeline", get(pages::project::fragment))
        .route(
            "/projects/{id}/snapshots",
            post(pages::project::snapshot_now),
        )
        .route("/projects/{id}/diff", get(pages::diff::show))
        .route("/projects/{id}/diff/rows", get(pages::diff::rows))
        .route("/projects/{id}/settings", get(pages::settings::show))
        .route(
            "/projects/{id}/settings/retention",
            post(pages::settings::retention),
        )
        .route(
            "/projects/{id}/settings/schedules",
            post(pages::settings::add_schedule),
        )
        .route(
            "/projects/{id}/settings/schedules/preview",
            get(pages::settings::preview),
        )
        .route(
            "/projects/{id}/settings/schedules/{schedule}/delete",
            post(pages::settings::delete_schedule),
        )
        .route(
            "/projects/{id}/settings/sync",
            post(pages::settings::sync_source),
        )
        .route(
            "/projects/{id}/settings/sync/run",
            post(pages::settings::sync_now),
        )
        .route(
            "/projects/{id}/settings/webhooks/{tracker}",
            post(pages::settings::webhook),
        )
        .route("/snapshots/{id}", get(pages::snapshot::show))
        .route(
            "/snapshots/{id}/restore",
            get(pages::restore::confirm).post(pages::restore::start),
        )
        .route("/jobs/{id}", get(pages::job::show))
        .route("/jobs/{id}/status", get(pages::job::status))
}

/// What the pages allow the browser to load: this server's own files, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML page answer: never cached (it shows live state), framed by nobody.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A `303 See Other` to `to` (after a form, and to the sign-in page).
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Whether the request came from the page's script (which wants JSON back).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A page's frame: the header with the navigation, then `body`.
pub fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · phony" }
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href=(assets::url("style.css"));
                script src=(assets::url("app.js")) defer {}
            }
            body {
                header.top {
                    a.brand href="/" {
                        img src="/assets/icon.svg" alt="" width="24" height="24";
                        span { "phony" }
                    }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            a href="/" { "Projects" }
                            form.inline method="post" action="/sign-out" {
                                (s.csrf_field())
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A failure shown as a page (or, to the script, as `{"error": …}`).
#[derive(Debug)]
pub struct Fail {
    pub status: StatusCode,
    pub message: String,
    pub json: bool,
}

impl Fail {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Fail {
            status,
            message: message.into(),
            json: false,
        }
    }

    /// Answers the script in JSON.
    pub fn json(mut self, json: bool) -> Self {
        self.json = json;
        self
    }
}

impl From<Problem> for Fail {
    fn from(p: Problem) -> Self {
        Fail::new(p.status, p.detail)
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        if self.json {
            return (
                self.status,
                axum::Json(serde_json::json!({ "error": self.message })),
            )
                .into_response();
        }
        let title = self.status.canonical_reason().unwrap_or("Error");
        page(
            self.status,
            layout(
                title,
                None,
                html! {
                    section.card.error role="alert" {
                        h1 { (title) }
                        p { (self.message) }
                        p { a href="/" { "Back to the projects" } }
                    }
                },
            ),
        )
    }
}

pub type WebResult = Result<Response, Fail>;

/// `2026-12-07 16:20 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `s` as one query-string value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `1.4 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_400_000), "1.4 MB");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("public.items"), "public.items");
        assert_eq!(enc("a b&c=d"), "a%20b%26c%3Dd");
    }
}
