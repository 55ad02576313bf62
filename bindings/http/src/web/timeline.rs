//! A project's timeline as the dashboard draws it: the items (snapshots, restores, snapshots
//! being taken, then `Current`) from one function, [`items`], and their picture, an inline
//! SVG axis with one marker per item, shaped and coloured by origin.
//!
//! [`items`] takes the project's snapshot records and jobs, and any further events (syncs,
//! schedule fires, sprint events: the timeline API's items) as [`Item`]s, so the page can
//! show them once they exist without another code path.

use std::collections::BTreeMap;

use maud::{html, Markup};
use phony_core::{Origin, SnapshotRecord};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::jobs::JobView;

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A snapshot (its origin says which kind).
    Snapshot,
    /// A restore that finished, rewriting the database to a snapshot.
    Restore,
    /// A snapshot being taken (a create job queued or running).
    Pending,
    /// Another event (a sync, a schedule fire, a sprint's end) without a snapshot of its own
    /// to show it: from the timeline API's items ([`events`]).
    Event,
    /// The database now.
    Current,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Restore => "restore",
            Kind::Pending => "pending",
            Kind::Event => "event",
            Kind::Current => "current",
        }
    }
}

/// One point of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub at: OffsetDateTime,
    pub kind: Kind,
    /// `Sync #1`, `Sprint End #2`, the snapshot's name, `Current` …
    pub label: String,
    pub snapshot_id: Option<String>,
    pub job_id: Option<String>,
    pub origin: Option<Origin>,
    pub pinned: bool,
}

/// The items of a project's timeline, oldest first, `Current` (at `now`) last: one per
/// snapshot, per restore that ran, per snapshot being taken, and the `events` given.
pub fn items(
    records: &[SnapshotRecord],
    jobs: &[JobView],
    events: Vec<Item>,
    now: OffsetDateTime,
) -> Vec<Item> {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Vec<Item> = Vec::new();
    for (r, label) in phony_core::timeline::labelled(records) {
        labels.insert(r.id.to_string(), label.clone());
        out.push(Item {
            at: r.created_at,
            kind: Kind::Snapshot,
            label,
            snapshot_id: Some(r.id.to_string()),
            job_id: None,
            origin: Some(r.origin),
            pinned: r.pinned,
        });
    }
    for job in jobs {
        let snapshot = job.params["snapshot_id"].as_str().map(str::to_owned);
        match (job.kind.as_str(), job.status.as_str()) {
            ("restore", "succeeded") if job.params["dry_run"] != true => {
                let to = snapshot
                    .as_ref()
                    .and_then(|s| labels.get(s).cloned())
                    .unwrap_or_else(|| "a snapshot".to_owned());
                out.push(Item {
                    at: job.finished_at.unwrap_or(job.created_at),
                    kind: Kind::Restore,
                    label: format!("Restored {to}"),
                    snapshot_id: snapshot,
                    job_id: Some(job.id.clone()),
                    origin: None,
                    pinned: false,
                });
            }
            ("create", "queued" | "running") => out.push(Item {
                at: job.created_at,
                kind: Kind::Pending,
                label: job.params["name"]
                    .as_str()
                    .map_or_else(|| "Taking a snapshot…".to_owned(), |n| format!("{n}…")),
                snapshot_id: None,
                job_id: Some(job.id.clone()),
                origin: Some(Origin::Manual),
                pinned: false,
            }),
            _ => {}
        }
    }
    out.extend(events);
    out.sort_by_key(|i| i.at);
    out.push(Item {
        at: now,
        kind: Kind::Current,
        label: "Current".to_owned(),
        snapshot_id: None,
        job_id: None,
        origin: None,
        pinned: false,
    });
    out
}

/// The events of the timeline API's `items` (`GET /api/v1/projects/{id}/timeline`) that
/// the snapshots in `records` do not already show: a sync, schedule fire or sprint end
/// still queued, running or failed, and a sync that took no snapshot after it (FREE, or
/// switched off). A finished one is shown by its snapshots (`Before Sync #1`, `Sync #1`,
/// `Sprint End #1`, the scheduled one's name); restores and snapshots being taken come
/// from the jobs [`items`] reads.
pub fn events(api_items: &serde_json::Value, records: &[SnapshotRecord]) -> Vec<Item> {
    let stored =
        |id: Option<&str>| id.is_some_and(|id| records.iter().any(|r| r.id.to_string() == id));
    let Some(list) = api_items.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|i| {
            let at = OffsetDateTime::parse(i["at"].as_str()?, &Rfc3339).ok()?;
            let status = i["status"].as_str().unwrap_or("succeeded");
            let snapshot = i["snapshot_id"].as_str();
            let label = i["label"].as_str().unwrap_or_default();
            let (origin, shown) = match i["kind"].as_str()? {
                "sync" => (Origin::SyncAfter, stored(snapshot)),
                "schedule" => (
                    Origin::Scheduled,
                    stored(snapshot) || matches!(status, "queued" | "running"),
                ),
                "sprint" => (
                    Origin::SprintEnd,
                    matches!(status, "succeeded" | "queued" | "running"),
                ),
                _ => return None,
            };
            if shown {
                return None;
            }
            let label = match status {
                "succeeded" => label.to_owned(),
                "queued" | "running" => format!("{label} ({status})"),
                other => format!("{label} ({other})"),
            };
            Some(Item {
                at,
                kind: Kind::Event,
                label,
                snapshot_id: None,
                job_id: i["job_id"].as_str().map(str::to_owned),
                origin: Some(origin),
                pinned: false,
            })
        })
        .collect()
}

/// How much of the history the axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zoom {
    /// Everything, one even step per item.
    All,
    Day,
    Week,
    Month,
}

impl Zoom {
    pub const ALL: [Zoom; 4] = [Zoom::All, Zoom::Day, Zoom::Week, Zoom::Month];

    pub fn parse(s: Option<&str>) -> Zoom {
        match s {
            Some("day") => Zoom::Day,
            Some("week") => Zoom::Week,
            Some("month") => Zoom::Month,
            _ => Zoom::All,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Zoom::All => "all",
            Zoom::Day => "day",
            Zoom::Week => "week",
            Zoom::Month => "month",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Zoom::All => "All",
            Zoom::Day => "Day",
            Zoom::Week => "Week",
            Zoom::Month => "Month",
        }
    }

    /// The span of a time zoom.
    fn span(self) -> Option<Duration> {
        match self {
            Zoom::All => None,
            Zoom::Day => Some(Duration::days(1)),
            Zoom::Week => Some(Duration::weeks(1)),
            Zoom::Month => Some(Duration::days(30)),
        }
    }
}

/// The items a zoom shows (the list below the axis shows the same).
pub fn visible(items: &[Item], zoom: Zoom, now: OffsetDateTime) -> Vec<Item> {
    match zoom.span() {
        None => items.to_vec(),
        Some(span) => items
            .iter()
            .filter(|i| i.at >= now - span)
            .cloned()
            .collect(),
    }
}

const HEIGHT: f64 = 170.0;
const AXIS: f64 = 112.0;
const MARGIN: f64 = 56.0;
/// The axis's width, at least (a card's width at 1280 px; narrower screens scroll it).
const WIDTH: f64 = 1080.0;
/// The width of a step between two items in the `All` zoom.
const STEP: f64 = 118.0;

/// The CSS class of an item's marker.
fn class(item: &Item) -> String {
    let origin = item.origin.map_or("none", Origin::as_str);
    format!("marker k-{} o-{origin}", item.kind.as_str())
}

/// The marker's shape, centred on (x, AXIS).
fn shape(item: &Item, x: f64) -> Markup {
    let y = AXIS;
    let poly = |points: &[(f64, f64)]| {
        let p: Vec<String> = points
            .iter()
            .map(|(dx, dy)| format!("{:.1},{:.1}", x + dx, y + dy))
            .collect();
        html! { polygon.shape points=(p.join(" ")) {} }
    };
    match (item.kind, item.origin) {
        (Kind::Current, _) => html! { circle.shape cx=(x) cy=(y) r="9" {} },
        (Kind::Pending, _) => html! { circle.shape cx=(x) cy=(y) r="8" {} },
        (Kind::Restore, _) => poly(&[
            (-7.0, -9.0),
            (7.0, -9.0),
            (0.0, 0.0),
            (7.0, 9.0),
            (-7.0, 9.0),
            (0.0, 0.0),
        ]),
        (Kind::Event, _) => html! { rect.shape x=(x - 2.0) y=(y - 10.0) width="4" height="20" {} },
        (_, Some(Origin::Scheduled)) => {
            html! { rect.shape x=(x - 7.5) y=(y - 7.5) width="15" height="15" rx="2" {} }
        }
        (_, Some(Origin::SyncBefore)) => poly(&[(-9.0, -7.0), (9.0, -7.0), (0.0, 9.0)]),
        (_, Some(Origin::SyncAfter)) => poly(&[(-9.0, 7.0), (9.0, 7.0), (0.0, -9.0)]),
        (_, Some(Origin::SprintEnd)) => {
            poly(&[(0.0, -10.0), (10.0, 0.0), (0.0, 10.0), (-10.0, 0.0)])
        }
        (_, Some(Origin::Safety)) => poly(&[
            (-8.0, -5.0),
            (0.0, -9.0),
            (8.0, -5.0),
            (8.0, 4.0),
            (0.0, 9.0),
            (-8.0, 4.0),
        ]),
        _ => html! { circle.shape cx=(x) cy=(y) r="8" {} },
    }
}

/// `12-07 16:20`.
fn short(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}-{:02} {:02}:{:02}",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The axis, as inline SVG: markers link to their snapshot; labels alternate between three
/// rows so that close ones stay readable. It is hidden from screen readers, who get the
/// list of the same items instead.
pub fn svg(items: &[Item], zoom: Zoom, now: OffsetDateTime) -> Markup {
    let n = items.len().max(1);
    let (width, xs): (f64, Vec<f64>) = match zoom.span() {
        None => {
            let width = (MARGIN * 2.0 + STEP * (n.saturating_sub(1)) as f64).max(WIDTH);
            let step = if n > 1 {
                (width - 2.0 * MARGIN) / (n - 1) as f64
            } else {
                0.0
            };
            let xs = (0..items.len())
                .map(|i| {
                    if n > 1 {
                        MARGIN + step * i as f64
                    } else {
                        width - MARGIN
                    }
                })
                .collect();
            (width, xs)
        }
        Some(span) => {
            let width = WIDTH;
            let start = now - span;
            let xs = items
                .iter()
                .map(|i| {
                    let f = (i.at - start).as_seconds_f64() / span.as_seconds_f64();
                    MARGIN + f.clamp(0.0, 1.0) * (width - 2.0 * MARGIN)
                })
                .collect();
            (width, xs)
        }
    };
    let ticks: Vec<(f64, String)> = match zoom.span() {
        None => Vec::new(),
        Some(span) => (0..=4)
            .map(|k| {
                let t = now - span + span * (k as f64 / 4.0);
                (MARGIN + (width - 2.0 * MARGIN) * k as f64 / 4.0, short(t))
            })
            .collect(),
    };
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" width=(width) height=(HEIGHT)
            viewBox=(format!("0 0 {width} {HEIGHT}")) aria-hidden="true" focusable="false" {
            line.axis x1="12" y1=(AXIS) x2=(width - 12.0) y2=(AXIS) {}
            polygon.axis-head points=(format!("{},{} {},{} {},{}",
                width - 12.0, AXIS - 5.0, width - 2.0, AXIS, width - 12.0, AXIS + 5.0)) {}
            @for (x, t) in &ticks {
                line.tick x1=(x) y1=(AXIS + 14.0) x2=(x) y2=(AXIS + 20.0) {}
                text.tick-label x=(x) y=(AXIS + 34.0) text-anchor="middle" { (t) }
            }
            @for (i, (item, x)) in items.iter().zip(xs.iter()).enumerate() {
                @let row = (items.len() - 1 - i) % 3;
                @let label_y = AXIS - 26.0 - 20.0 * row as f64;
                // Labels near an end of the axis grow inwards, so that none is cut off.
                @let (anchor, label_x) = if *x < 130.0 {
                    ("start", x - 12.0)
                } else if *x > width - 130.0 {
                    ("end", x + 12.0)
                } else {
                    ("middle", *x)
                };
                @let body = html! {
                    line.leader x1=(x) y1=(label_y + 5.0) x2=(x) y2=(AXIS - 11.0) {}
                    (shape(item, *x))
                    @if item.pinned {
                        g.pin {
                            circle cx=(x + 9.0) cy=(AXIS - 10.0) r="4" {}
                            line x1=(x + 9.0) y1=(AXIS - 6.0) x2=(x + 9.0) y2=(AXIS - 1.0) {}
                        }
                    }
                    text.label x=(label_x) y=(label_y) text-anchor=(anchor) {
                        (item.label) @if item.pinned { " (pinned)" }
                    }
                    @if zoom == Zoom::All {
                        text.date x=(x) y=(AXIS + 30.0) text-anchor="middle" {
                            @if item.kind == Kind::Current { "now" } @else { (short(item.at)) }
                        }
                    }
                    title { (item.label) " · " (short(item.at)) " UTC" }
                };
                @match &item.snapshot_id {
                    Some(id) if item.kind == Kind::Snapshot => {
                        a class=(class(item)) href=(format!("/snapshots/{id}")) tabindex="-1"
                            data-snapshot=(id) { (body) }
                    }
                    _ => {
                        g class=(class(item)) data-job=[item.job_id.as_deref()] { (body) }
                    }
                }
            }
        }
    }
}

/// The legend of the marker shapes.
pub fn legend() -> Markup {
    let entries: [(&str, Origin); 6] = [
        ("Manual", Origin::Manual),
        ("Before sync", Origin::SyncBefore),
        ("After sync", Origin::SyncAfter),
        ("Scheduled", Origin::Scheduled),
        ("Sprint end", Origin::SprintEnd),
        ("Safety (before a restore)", Origin::Safety),
    ];
    html! {
        ul.legend aria-label="Marker shapes" {
            @for (name, origin) in entries {
                @let item = Item {
                    at: OffsetDateTime::UNIX_EPOCH,
                    kind: Kind::Snapshot,
                    label: String::new(),
                    snapshot_id: None,
                    job_id: None,
                    origin: Some(origin),
                    pinned: false,
                };
                li {
                    svg width="22" height="22" viewBox=(format!("-11 {} 22 22", AXIS - 11.0)) aria-hidden="true" {
                        g class=(class(&item)) { (shape(&item, 0.0)) }
                    }
                    (name)
                }
            }
            li { svg width="22" height="22" viewBox="-11 -11 22 22" aria-hidden="true" {
                g.pin { circle cx="0" cy="-2" r="4" {} line x1="0" y1="2" x2="0" y2="8" {} }
            } "Pinned" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(json: serde_json::Value) -> SnapshotRecord {
        let mut base = json!({
            "format": 1,
            "id": "snap_000000000001",
            "name": null,
            "created_at": "2026-12-01T09:00:00Z",
            "root": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "pinned": false,
            "origin": "manual",
            "labels": {},
            "source": { "database": "app", "server_version": "15.14" },
            "stats": { "tables": 1, "rows": 1, "sequences": 0, "bytes": 1, "stored_bytes": 1,
                       "new_bytes": 1, "blobs": 1, "new_blobs": 1, "duration_ms": 1 }
        });
        if let (Some(b), Some(o)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn items_are_labelled_as_the_product_names_them() {
        let records = vec![
            record(json!({"id": "snap_000000000003", "origin": "sync-after",
                          "labels": {"sync": "1"}, "created_at": "2026-12-01T09:04:00Z"})),
            record(json!({"id": "snap_000000000002", "origin": "sync-before",
                          "labels": {"sync": "1"}, "created_at": "2026-12-01T09:00:00Z"})),
            record(
                json!({"id": "snap_000000000004", "name": "clean-state", "pinned": true,
                          "created_at": "2026-12-01T10:00:00Z"}),
            ),
            record(json!({"id": "snap_000000000005", "origin": "sprint-end",
                          "created_at": "2026-12-02T10:00:00Z"})),
            record(json!({"id": "snap_000000000006", "origin": "sprint-end",
                          "created_at": "2026-12-03T10:00:00Z"})),
        ];
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let items = items(&records, &[], Vec::new(), now);
        let labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Before Sync #1",
                "Sync #1",
                "clean-state",
                "Sprint End #1",
                "Sprint End #2",
                "Current"
            ]
        );
        assert!(items[2].pinned);
        assert_eq!(items[5].kind, Kind::Current);
        let picture = svg(&items, Zoom::All, now).into_string();
        assert!(picture.contains("data-snapshot=\"snap_000000000004\""));
        assert!(picture.contains("clean-state (pinned)"));
        assert!(picture.contains("o-sprint-end"));
    }

    #[test]
    fn the_timeline_apis_events_show_what_no_snapshot_shows() {
        let records = vec![record(
            json!({"id": "snap_000000000003", "origin": "sync-after",
                          "labels": {"sync": "1"}, "created_at": "2026-12-01T09:04:00Z"}),
        )];
        let api = json!([
            {"at": "2026-12-01T09:00:00Z", "kind": "sync", "label": "Sync #1",
             "snapshot_id": "snap_000000000003", "job_id": "job_1", "status": "succeeded"},
            {"at": "2026-12-01T10:00:00Z", "kind": "sync", "label": "Sync #2",
             "job_id": "job_2", "status": "succeeded"},
            {"at": "2026-12-01T11:00:00Z", "kind": "sync", "label": "Sync #3",
             "job_id": "job_3", "status": "running"},
            {"at": "2026-12-01T12:00:00Z", "kind": "schedule", "label": "weekly",
             "job_id": "job_4", "status": "failed"},
            {"at": "2026-12-01T13:00:00Z", "kind": "sprint", "label": "Sprint end: S1",
             "job_id": "job_5", "status": "succeeded"},
            {"at": "2026-12-01T14:00:00Z", "kind": "restore", "label": "Restore of x"},
            {"at": "2026-12-01T15:00:00Z", "kind": "snapshot", "label": "Sync #1"},
        ]);
        let events = events(&api, &records);
        let labels: Vec<&str> = events.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["Sync #2", "Sync #3 (running)", "weekly (failed)"]);
        assert!(events.iter().all(|e| e.kind == Kind::Event));
        let now = time::macros::datetime!(2026-12-02 12:00 UTC);
        let all = items(&records, &[], events, now);
        assert_eq!(all.len(), 5);
        assert!(svg(&all, Zoom::All, now).into_string().contains("k-event"));
    }

    #[test]
    fn a_time_zoom_shows_only_its_span() {
        let records = vec![
            record(json!({"id": "snap_000000000001", "created_at": "2026-11-05T09:00:00Z"})),
            record(json!({"id": "snap_000000000002", "created_at": "2026-12-01T08:00:00Z"})),
        ];
        let now = time::macros::datetime!(2026-12-01 12:00 UTC);
        let all = items(&records, &[], Vec::new(), now);
        assert_eq!(visible(&all, Zoom::All, now).len(), 3);
        let day = visible(&all, Zoom::Day, now);
        assert_eq!(day.len(), 2);
        assert_eq!(day[0].snapshot_id.as_deref(), Some("snap_000000000002"));
        assert_eq!(visible(&all, Zoom::Week, now).len(), 2);
        assert_eq!(visible(&all, Zoom::Month, now).len(), 3);
    }
}
