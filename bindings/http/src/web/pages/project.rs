//! `/projects/{id}`: the project's timeline, "Snapshot now", and the way to compare two
//! points. The timeline section is also served alone (`/projects/{id}/timeline`), which the
//! script fetches when a snapshot it started is done: the new marker appears without a
//! reload.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::Caller;
use crate::jobs::WaitQuery;
use crate::projects::Project;
use crate::snapshots::NewSnapshot;
use crate::timeline::TimelineQuery;
use crate::web::pages;
use crate::web::timeline::{self, Kind, Zoom};
use crate::web::{layout, page, wants_json, when, Fail, Session, WebResult};

#[derive(Debug, Deserialize)]
pub struct ZoomQuery {
    zoom: Option<String>,
}

/// The syncs, schedule fires and sprint ends of the timeline API (its own function, called
/// as the session's token) that no snapshot shows.
async fn events(
    app: &AppState,
    caller: &Caller,
    project: &Project,
    records: &[phony_core::SnapshotRecord],
) -> Result<Vec<timeline::Item>, Fail> {
    let Json(answer) = crate::timeline::timeline(
        State(app.clone()),
        caller.clone(),
        Path(project.id.clone()),
        crate::body::Query(TimelineQuery {
            limit: Some(1000),
            cursor: None,
        }),
    )
    .await?;
    Ok(timeline::events(&answer["items"], records))
}

/// The timeline section: zoom, legend, the axis and the list of the same items.
async fn section(
    app: &AppState,
    caller: &Caller,
    project: &Project,
    zoom: Zoom,
) -> Result<Markup, Fail> {
    let gate = pages::diff_gate(app, project).await?;
    let records = app.listing(&project.id).await?;
    let jobs = pages::jobs(app, &project.id, 100).await?;
    let events = events(app, caller, project, &records).await?;
    let now = OffsetDateTime::now_utc();
    let all = timeline::items(&records, &jobs, events, now);
    let shown = timeline::visible(&all, zoom, now);
    let base = format!("/projects/{}", project.id);
    Ok(html! {
        div.timeline-bar {
            nav.zoom aria-label="Zoom" {
                @for z in Zoom::ALL {
                    @if z == zoom {
                        a href=(format!("{base}?zoom={}", z.as_str())) aria-current="true" { (z.title()) }
                    } @else {
                        a href=(format!("{base}?zoom={}", z.as_str())) { (z.title()) }
                    }
                }
            }
            (timeline::legend())
        }
        div.axis-wrap { (timeline::svg(&shown, zoom, now)) }
        h2.sr-only { "Items" }
        ol.items {
            @for item in shown.iter().rev() {
                li class=(format!("item k-{}", item.kind.as_str())) data-item=[item.snapshot_id.as_deref()] {
                    span class=(format!("dot o-{}", item.origin.map_or("none", |o| o.as_str()))) aria-hidden="true" {}
                    span.item-label {
                        @match (&item.snapshot_id, item.kind) {
                            (Some(id), Kind::Snapshot) => a href=(format!("/snapshots/{id}")) { (item.label) },
                            _ => (item.label),
                        }
                        @if item.pinned { " " span.badge { "pinned" } }
                    }
                    span.item-meta {
                        @match item.kind {
                            Kind::Snapshot => { (item.origin.map_or("", |o| o.as_str())) " · " (when(item.at)) }
                            Kind::Current => "the database now",
                            Kind::Pending => "being taken",
                            _ => (when(item.at)),
                        }
                    }
                    @if let (Some(id), Kind::Snapshot) = (&item.snapshot_id, item.kind) {
                        span.item-actions {
                            a href=(format!("/snapshots/{id}/restore")) { "Restore…" }
                            @if gate.is_none() {
                                a href=(format!("/projects/{}/diff?from={id}&to=now", project.id)) { "Compare with now" }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// `GET /projects/{id}`.
pub async fn timeline(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ZoomQuery>,
) -> WebResult {
    let project = pages::project(&app, &session, &id).await?;
    let zoom = Zoom::parse(q.zoom.as_deref());
    let (section, down) = tokio::join!(
        section(&app, &session.caller, &project, zoom),
        pages::reachable(&app, &project)
    );
    let section = section?;
    let gate = pages::diff_gate(&app, &project).await?;
    let records = app.listing(&project.id).await?;
    let points: BTreeMap<String, String> =
        timeline::items(&records, &[], Vec::new(), OffsetDateTime::now_utc())
            .into_iter()
            .filter_map(|i| Some((i.snapshot_id?, format!("{} · {}", i.label, when(i.at)))))
            .collect();
    let body = html! {
        (pages::header(&project, "timeline"))
        @if let Err(why) = &down { (pages::down_banner(why)) }
        section.card {
            form.snapshot-now method="post" action=(format!("/projects/{}/snapshots", project.id))
                data-job-form data-refresh=(format!("/projects/{}/timeline?zoom={}", project.id, zoom.as_str())) {
                (session.csrf_field())
                label for="snapshot-name" { "Snapshot now" }
                div.row {
                    input id="snapshot-name" name="name" type="text" placeholder="name (optional)"
                        pattern="[A-Za-z0-9._-]{1,64}" title="letters, digits, '.', '_' or '-'";
                    button.primary type="submit" { "Snapshot now" }
                }
                p.job-status role="status" aria-live="polite" data-job-status {}
            }
        }
        section.card id="timeline" aria-label="Timeline" { (section) }
        section.card {
            h2 { "Compare" }
            @if let Some(plan) = &gate {
                p.muted data-plan-required { "Comparing snapshots needs the " strong { (plan) } " plan; the project is on " (project.plan) "." }
            }
            form.compare method="get" action=(format!("/projects/{}/diff", project.id)) {
                fieldset.plain disabled[gate.is_some()] {
                div.row {
                    label { "From " select name="from" required {
                        @for (id, title) in points.iter().rev() { option value=(id) { (title) } }
                    } }
                    label { "to " select name="to" {
                        option value="now" { "Current (the database now)" }
                        @for (id, title) in points.iter().rev() { option value=(id) { (title) } }
                    } }
                    button type="submit" disabled[points.is_empty()] { "Compare" }
                }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout(&project.name, Some(&session), body),
    ))
}

/// `GET /projects/{id}/timeline`: the timeline section alone.
pub async fn fragment(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ZoomQuery>,
) -> WebResult {
    let project = pages::project(&app, &session, &id).await?;
    let markup = section(
        &app,
        &session.caller,
        &project,
        Zoom::parse(q.zoom.as_deref()),
    )
    .await?;
    Ok(page(StatusCode::OK, markup))
}

#[derive(Debug, Deserialize)]
pub struct SnapshotForm {
    csrf: Option<String>,
    name: Option<String>,
}

/// `POST /projects/{id}/snapshots`: queues a snapshot as the API does; the script gets the
/// job to follow, a form without it the job's page.
pub async fn snapshot_now(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<SnapshotForm>,
) -> WebResult {
    let json = wants_json(&headers);
    session.check_csrf(form.csrf.as_deref(), json)?;
    let name = form
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let answer = crate::snapshots::create(
        State(app.clone()),
        session.caller.clone(),
        Path(id),
        crate::body::Query(WaitQuery { wait: None }),
        crate::body::Body(NewSnapshot {
            name,
            pin: false,
            labels: BTreeMap::new(),
            origin: None,
            sync_id: None,
        }),
    )
    .await
    .map_err(|p| Fail::from(p).json(json))?;
    pages::follow_job(answer, json).await
}
