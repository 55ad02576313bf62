//! Signing in with an API token, sessions and CSRF tokens.
//!
//! Signing in checks the token and stores a session server-side (`web_sessions`, keyed by
//! the SHA-256 of the cookie's 256-bit secret). The cookie is `HttpOnly`, `SameSite=Strict`,
//! and `Secure` when the request came over TLS (`X-Forwarded-Proto: https` from a proxy in
//! front). Every request joins the session to its token: a token revoked (or a session
//! expired) mid-session sends the browser back to the sign-in page, not to an error.
//!
//! Every form carries the session's CSRF token; a POST without it or with another
//! session's answers 403 and does nothing. The sign-in form, before any session, carries a
//! token that must match a `SameSite=Strict` cookie set with the form (double submit).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Caller, Scope};
use crate::problem::Problem;
use crate::secrets::{new_token, same_hash, token_hash};
use crate::web::{layout, page, redirect, wants_json, Fail};

/// The session cookie.
const COOKIE: &str = "phony_session";
/// The sign-in form's double-submit cookie.
const SIGN_IN_COOKIE: &str = "phony_sign_in";
/// How long a session lasts (its token may end it sooner).
const LIFETIME_HOURS: i32 = 12;

/// A signed-in browser: its token as the caller of the API's functions, and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    csrf: String,
}

impl Session {
    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// Refuses (403, nothing done) a form whose CSRF token is missing or not this session's.
    pub fn check_csrf(&self, given: Option<&str>, json: bool) -> Result<(), Fail> {
        match given {
            Some(g) if same_hash(g.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(csrf_refused(json)),
        }
    }
}

fn csrf_refused(json: bool) -> Fail {
    Fail::new(
        StatusCode::FORBIDDEN,
        "This form is missing its security token or it has expired: reload the page and try again. Nothing was done.",
    )
    .json(json)
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached the server over TLS (directly or through a proxy).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where a browser without a (valid) session goes: the page asked for, or (the script)
/// a 401 naming the sign-in page.
fn to_sign_in(headers: &HeaderMap, ended: bool) -> Response {
    let to = if ended {
        "/sign-in?ended=1"
    } else {
        "/sign-in"
    };
    let mut response = if wants_json(headers) {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "sign_in": to })),
        )
            .into_response()
    } else {
        redirect(to)
    };
    if ended {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(COOKIE, "", 0, over_tls(headers)),
        );
    }
    response
}

/// The session whose cookie secret is `secret`, if it is still valid (not expired, its
/// token not revoked).
async fn lookup(app: &AppState, secret: &str) -> Result<Option<Session>, Problem> {
    let client = app.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT s.csrf, t.id, t.project_id FROM web_sessions s
             JOIN tokens t ON t.id = s.token_id
             WHERE s.hash = $1 AND s.expires_at > now() AND t.revoked_at IS NULL",
            &[&token_hash(secret)],
        )
        .await?;
    Ok(row.map(|row| {
        let project: Option<String> = row.get(2);
        Session {
            csrf: row.get(0),
            caller: Caller {
                token_id: row.get(1),
                scope: project.map_or(Scope::Admin, Scope::Project),
            },
        }
    }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(secret) = cookie(&parts.headers, COOKIE) else {
            return Err(to_sign_in(&parts.headers, false));
        };
        match lookup(app, secret).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Err(to_sign_in(&parts.headers, true)),
            Err(p) => Err(Fail::from(p)
                .json(wants_json(&parts.headers))
                .into_response()),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    ended: Option<String>,
}

fn sign_in_form(csrf: &str, message: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(m) = message {
                    p.notice role="alert" { (m) }
                }
                p { "Paste an API token: a project's token shows that project, an admin token every project." }
                form method="post" action="/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { "API token" }
                    input id="token" name="token" type="password" autocomplete="off" required
                        spellcheck="false" placeholder="phony_…";
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /sign-in` (signed in already: the projects).
pub async fn sign_in_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<SignInQuery>,
) -> Response {
    if let Some(secret) = cookie(&headers, COOKIE) {
        if let Ok(Some(_)) = lookup(&app, secret).await {
            return redirect("/");
        }
    }
    let csrf = match cookie(&headers, SIGN_IN_COOKIE) {
        Some(c) => c.to_owned(),
        None => new_token(),
    };
    let message = q.ended.map(|_| {
        "Your session ended: its token was revoked or expired, or you were away too long. Sign in again."
    });
    let mut response = page(StatusCode::OK, sign_in_form(&csrf, message));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &csrf, 3600, over_tls(&headers)),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
    csrf: Option<String>,
}

/// `POST /sign-in`: a valid token starts a session.
pub async fn sign_in(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, Fail> {
    let expected = cookie(&headers, SIGN_IN_COOKIE);
    match (expected, form.csrf.as_deref()) {
        (Some(e), Some(g)) if same_hash(e.as_bytes(), g.as_bytes()) => {}
        _ => return Err(csrf_refused(false)),
    }
    let token = form.token.trim();
    let client = app.pool.get().await.map_err(Problem::from)?;
    let row = client
        .query_opt(
            "SELECT id FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
            &[&token_hash(token)],
        )
        .await
        .map_err(Problem::from)?;
    let Some(row) = row else {
        let csrf = expected.unwrap_or_default();
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            sign_in_form(csrf, Some("That token is not valid (or was revoked).")),
        ));
    };
    let token_id: String = row.get(0);
    let secret = new_token();
    client
        .execute("DELETE FROM web_sessions WHERE expires_at < now()", &[])
        .await
        .map_err(Problem::from)?;
    client
        .execute(
            "INSERT INTO web_sessions (hash, token_id, csrf, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
            &[
                &token_hash(&secret),
                &token_id,
                &new_token(),
                &LIFETIME_HOURS,
            ],
        )
        .await
        .map_err(Problem::from)?;
    let secure = over_tls(&headers);
    let mut response = redirect("/");
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(COOKIE, &secret, i64::from(LIFETIME_HOURS) * 3600, secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", 0, secure),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /sign-out`: ends the session here and now.
pub async fn sign_out(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Fail> {
    session.check_csrf(form.csrf.as_deref(), false)?;
    if let Some(secret) = cookie(&headers, COOKIE) {
        let client = app.pool.get().await.map_err(Problem::from)?;
        client
            .execute(
                "DELETE FROM web_sessions WHERE hash = $1",
                &[&token_hash(secret)],
            )
            .await
            .map_err(Problem::from)?;
    }
    let mut response = redirect("/sign-in");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(COOKIE, "", 0, over_tls(&headers)),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; phony_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_cookie_is_secure_only_over_tls() {
        let plain = set_cookie(COOKIE, "x", 60, false);
        assert_eq!(
            plain.to_str().unwrap_or_default(),
            "phony_session=x; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let tls = set_cookie(COOKIE, "x", 60, true);
        assert!(tls.to_str().unwrap_or_default().ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
    }
}
