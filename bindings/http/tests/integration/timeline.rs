//! The timeline: snapshots, a sync, a restore, a schedule fire and a sprint end, newest
//! first, paginated.

use std::time::{Duration, Instant};

use phony_tests::TestDb;
use serde_json::{json, Value};

use super::hooks::{deliver, jira_sign, jira_sprint_closed};
use super::support::start;
use super::syncs::SOURCE;

#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_shows_every_kind_of_event_newest_first_page_by_page() {
    let h = start().await;
    let source = TestDb::new("srv_tl_src").await;
    source.exec(SOURCE).await;
    let p = h.project("TEAM", 3).await;
    let path = format!("/api/v1/projects/{}", p.id);
    let first = h
        .snapshot(&p, json!({ "name": "first", "pin": true }))
        .await;
    h.patch(&path, &p.token, json!({ "sync_source_url": source.url() }))
        .await
        .ok(200);
    h.post(&format!("{path}/syncs?wait=120"), &p.token, json!({}))
        .await
        .ok(200);
    h.post(
        &format!("/api/v1/snapshots/{first}/restore?wait=120"),
        &p.token,
        json!({ "force": true }),
    )
    .await
    .ok(200);
    h.call(
        reqwest::Method::PUT,
        &format!("{path}/integrations/jira"),
        Some(&p.token),
        Some(json!({ "secret": "tl" })),
    )
    .await
    .ok(200);
    let body = jira_sprint_closed(77, "Sprint 77");
    let a = deliver(&h, "jira", &p.id, &body, Some(jira_sign("tl", &body))).await;
    h.wait_job(a.ok(202)["job"]["id"].as_str().unwrap(), &p.token)
        .await;
    // A schedule fire: a seconds schedule, deleted after its first run.
    let s = h
        .post(
            &format!("{path}/schedules"),
            &p.token,
            json!({ "cron": "* * * * * *", "name": "every-{datetime}" }),
        )
        .await;
    let sid = s.ok(201)["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let fire_job = loop {
        let jobs = h.get(&format!("{path}/jobs?limit=100"), &p.token).await;
        let fire = jobs.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["params"]["schedule_id"] == sid.as_str())
            .cloned();
        if let Some(j) = fire {
            h.delete(&format!("/api/v1/schedules/{sid}"), &p.token)
                .await
                .ok(204);
            break j;
        }
        assert!(Instant::now() < deadline, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    h.wait_job(fire_job["id"].as_str().unwrap(), &p.token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Jobs that were queued before the delete run too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = h.get(&format!("{path}/jobs?limit=100"), &p.token).await;
        let open = jobs.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["status"] == "queued" || j["status"] == "running");
        if !open {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let a = h
        .get(&format!("{path}/timeline?limit=1000"), &p.token)
        .await;
    let all: Vec<Value> = a.ok(200)["items"].as_array().unwrap().clone();
    assert!(a.body["next_cursor"].is_null());
    let times: Vec<&str> = all.iter().map(|i| i["at"].as_str().unwrap()).collect();
    let parsed: Vec<time::OffsetDateTime> = times
        .iter()
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
        })
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let find = |kind: &str, label: &str| {
        all.iter()
            .find(|i| i["kind"] == kind && i["label"].as_str().unwrap().starts_with(label))
            .unwrap_or_else(|| panic!("no {kind} {label:?} in {all:#?}"))
            .clone()
    };
    let f = find("snapshot", "first");
    assert_eq!(f["snapshot_id"], first.as_str());
    assert_eq!(f["pinned"], true);
    assert_eq!(f["origin"], "manual");
    assert_eq!(find("snapshot", "Before Sync #1")["origin"], "sync-before");
    assert_eq!(find("snapshot", "Sync #1")["origin"], "sync-after");
    let sync = find("sync", "Sync #1");
    assert_eq!(sync["status"], "succeeded");
    assert!(sync["job_id"].is_string());
    assert_eq!(find("restore", "Restore of")["snapshot_id"], first.as_str());
    assert_eq!(find("snapshot", "Safety")["origin"], "safety");
    assert_eq!(find("snapshot", "Sprint End #1")["origin"], "sprint-end");
    assert_eq!(
        find("sprint", "Sprint end: Sprint 77")["status"],
        "succeeded"
    );
    let fire = find("schedule", "every-");
    assert_eq!(fire["job_id"], fire_job["id"]);
    assert!(fire["snapshot_id"].is_string());

    // Page by page, the same items.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}/timeline?limit=3&cursor={c}"),
            None => format!("{path}/timeline?limit=3"),
        };
        let a = h.get(&url, &p.token).await;
        let page = a.ok(200).clone();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        paged.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, all);
    h.get(&format!("{path}/timeline?limit=0"), &p.token)
        .await
        .problem(400, "invalid_query");
    h.get(&format!("{path}/timeline?cursor=nope"), &p.token)
        .await
        .problem(400, "invalid_query");
    let other = h.project("TEAM", 1).await;
    h.get(&format!("{path}/timeline"), &other.token)
        .await
        .problem(404, "not_found");
}
