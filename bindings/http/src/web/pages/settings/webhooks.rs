//! The webhook secrets of the Jira and Linear integrations: set or replace one, and the
//! switch that starts a sync after each sprint end's snapshot. A secret is shown once,
//! on the page that answers the form (never in a URL, never again), with the hook URL to
//! paste into the tracker; left empty, the server makes one (256 random bits, hex).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Ctx, Shown};
use crate::app::AppState;
use crate::hooks::IntegrationBody;
use crate::problem::Problem;
use crate::web::{when, Fail, Session, WebResult};

/// The trackers, as the API names them, and as people do.
const TRACKERS: [(&str, &str); 2] = [("jira", "Jira"), ("linear", "Linear")];

/// A secret just set: shown on this one page.
#[derive(Debug)]
pub struct Revealed {
    pub tracker: String,
    pub secret: String,
    pub hook_url: String,
}

pub async fn section(app: &AppState, c: &Ctx<'_>, shown: &Shown) -> Result<Markup, Fail> {
    let set: Vec<(String, bool, OffsetDateTime)> = {
        let client = app.pool.get().await.map_err(Problem::from)?;
        client
            .query(
                "SELECT tracker, sync_on_sprint_end, updated_at FROM integrations WHERE project_id = $1",
                &[&c.project.id],
            )
            .await
            .map_err(Problem::from)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let has_source = c.project.sync_source.is_some();
    Ok(html! {
        section.card id="webhooks" {
            h2 { "Webhook secrets" }
            (shown.message("webhooks"))
            p { "Jira or Linear tell the server when a sprint ends; a snapshot is taken then. Each delivery is signed with the secret set here." }
            @for (tracker, title) in TRACKERS {
                @let current = set.iter().find(|(t, _, _)| t == tracker);
                div.webhook data-tracker=(tracker) {
                    h3 { (title) }
                    @if let Some(r) = shown.secret.as_ref().filter(|r| r.tracker == tracker) {
                        div.notice role="status" data-secret-shown {
                            p { strong { "Copy the secret now: it is not shown again." } }
                            p { "Secret: " code data-secret { (r.secret) } }
                            p { "Hook URL: " code data-hook-url { (r.hook_url) } }
                        }
                    }
                    p {
                        @match current {
                            Some((_, _, at)) => { "A secret is set (" (when(*at)) ")." }
                            None => "No secret: deliveries are refused.",
                        }
                    }
                    form method="post" action=(c.action(&format!("/webhooks/{tracker}"))) data-webhook-form=(tracker) {
                        (c.session.csrf_field())
                        label for=(format!("secret-{tracker}")) { "Signing secret (empty: the server makes one)" }
                        input id=(format!("secret-{tracker}")) name="secret" type="password" autocomplete="off";
                        div.row {
                            label {
                                input type="checkbox" name="sync_on_sprint_end" value="1"
                                    checked[current.is_some_and(|(_, s, _)| *s)] disabled[!has_source];
                                " Start a sync after each sprint end's snapshot"
                            }
                            @if !has_source { " " span.muted { "(needs a sync source, above)" } }
                        }
                        button type="submit" { @if current.is_some() { "Replace the secret" } @else { "Set the secret" } }
                    }
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct WebhookForm {
    csrf: Option<String>,
    secret: Option<String>,
    sync_on_sprint_end: Option<String>,
}

/// This server's address as the browser reached it (the hook URL is absolute).
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// `POST /projects/{id}/settings/webhooks/{tracker}`: `PUT
/// /api/v1/projects/{id}/integrations/{tracker}`; the page answering it shows the secret.
pub async fn webhook(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path((id, tracker)): Path<(String, String)>,
    Form(form): Form<WebhookForm>,
) -> WebResult {
    session.check_csrf(form.csrf.as_deref(), false)?;
    let secret = match form.secret.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => crate::secrets::hex(&rand::random::<[u8; 32]>()),
    };
    let answer = crate::hooks::put(
        State(app.clone()),
        session.caller.clone(),
        Path((id.clone(), tracker.clone())),
        crate::body::Body(IntegrationBody {
            secret: secret.clone(),
            sync_on_sprint_end: Some(form.sync_on_sprint_end.is_some()),
        }),
    )
    .await;
    let shown = match answer {
        Ok(axum::Json(v)) => Shown {
            section: "webhooks",
            saved: Some(format!(
                "The {} secret is set.",
                v["tracker"].as_str().unwrap_or_default()
            )),
            secret: Some(Revealed {
                tracker: v["tracker"].as_str().unwrap_or_default().to_owned(),
                secret,
                hook_url: format!(
                    "{}{}",
                    origin(&headers),
                    v["hook_url"].as_str().unwrap_or_default()
                ),
            }),
            ..Shown::default()
        },
        Err(p) => return super::refused(&app, &session, &id, "webhooks", Fail::from(p)).await,
    };
    super::render(&app, &session, &id, shown, StatusCode::OK).await
}
