//! Sprint-end webhooks from Jira and Linear: signed, badly signed, replayed, too large,
//! not the tracker's; and automatic snapshots over the plan's count pushing out the oldest.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::{start, Answer, Harness, TestProject};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Posts `body` to the project's `tracker` hook with `signature` in its header.
pub async fn deliver(
    h: &Harness,
    tracker: &str,
    project: &str,
    body: &[u8],
    signature: Option<String>,
) -> Answer {
    let mut req = h
        .http
        .post(format!("{}/api/v1/hooks/{tracker}/{project}", h.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        let name = if tracker == "jira" {
            "X-Hub-Signature"
        } else {
            "Linear-Signature"
        };
        req = req.header(name, s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Answer {
        status,
        headers,
        body,
        text,
    }
}

pub fn jira_sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex(&phony_core::sprint::sign(secret.as_bytes(), body))
    )
}

pub fn jira_sprint_closed(id: u64, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "timestamp": 1_765_000_000_000_u64,
        "webhookEvent": "sprint_closed",
        "sprint": {
            "id": id, "self": format!("https://x.atlassian.net/rest/agile/1.0/sprint/{id}"),
            "state": "closed", "name": name,
            "startDate": "2026-11-23T09:00:00.000Z", "endDate": "2026-12-07T09:00:00.000Z",
            "completeDate": "2026-12-07T10:00:00.000Z", "originBoardId": 12, "goal": "ship"
        }
    }))
    .unwrap()
}

fn linear_cycle_completed(id: &str, stamp_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "update", "type": "Cycle", "createdAt": "2026-12-07T10:00:00.000Z",
        "webhookTimestamp": stamp_ms,
        "data": {
            "id": id, "number": 14, "name": "Cycle Fourteen", "teamId": "team-eng",
            "startsAt": "2026-11-23T00:00:00.000Z", "endsAt": "2026-12-07T00:00:00.000Z",
            "completedAt": "2026-12-07T10:00:00.000Z"
        },
        "updatedFrom": { "completedAt": null }
    }))
    .unwrap()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The project's snapshots, newest first.
pub async fn snapshots(h: &Harness, p: &TestProject) -> Vec<Value> {
    let a = h
        .get(&format!("/api/v1/projects/{}/snapshots", p.id), &p.token)
        .await;
    a.ok(200)["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_sprint_ends_take_one_snapshot_each_and_bad_deliveries_do_nothing() {
    let h = start().await;
    let p = h.project("TEAM", 3).await;
    let other = h.project("TEAM", 3).await;
    let put = |tracker: &str, secret: &str| {
        let path = format!("/api/v1/projects/{}/integrations/{tracker}", p.id);
        let body = json!({ "secret": secret });
        let h = &h;
        let token = p.token.clone();
        async move {
            h.call(reqwest::Method::PUT, &path, Some(&token), Some(body))
                .await
        }
    };
    let a = put("jira", "jira-secret-123").await;
    assert_eq!(
        a.ok(200)["hook_url"],
        format!("/api/v1/hooks/jira/{}", p.id)
    );
    assert!(!a.text.contains("jira-secret-123"), "{}", a.text);
    put("linear", "linear-secret-456").await.ok(200);
    put("github", "x").await.problem(404, "not_found");
    put("jira", "").await.problem(422, "invalid_body");
    // Another project's token cannot set this project's secret.
    h.call(
        reqwest::Method::PUT,
        &format!("/api/v1/projects/{}/integrations/jira", p.id),
        Some(&other.token),
        Some(json!({ "secret": "mine" })),
    )
    .await
    .problem(404, "not_found");

    // A signed sprint_closed: a snapshot named and labelled after the sprint.
    let body = jira_sprint_closed(4711, "Sprint 42: Checkout");
    let a = deliver(
        &h,
        "jira",
        &p.id,
        &body,
        Some(jira_sign("jira-secret-123", &body)),
    )
    .await;
    let answer = a.ok(202).clone();
    assert_eq!(answer["action"], "snapshot");
    assert_eq!(answer["snapshot_name"], "sprint-end-sprint-42-checkout");
    let job = h
        .wait_job(answer["job"]["id"].as_str().unwrap(), &p.token)
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let snaps = snapshots(&h, &p).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["origin"], "sprint-end");
    assert_eq!(snaps[0]["name"], "sprint-end-sprint-42-checkout");
    assert_eq!(snaps[0]["labels"]["sprint_id"], "4711");
    assert_eq!(snaps[0]["labels"]["tracker"], "jira");
    assert_eq!(snaps[0]["labels"]["board"], "12");

    // The same delivery again: no second snapshot.
    let a = deliver(
        &h,
        "jira",
        &p.id,
        &body,
        Some(jira_sign("jira-secret-123", &body)),
    )
    .await;
    assert_eq!(a.ok(200)["action"], "duplicate");

    // Wrong secret, no signature, a tampered body, a project without the integration:
    // 401, nothing done.
    let wrong = jira_sprint_closed(4712, "Sprint 43");
    for (project, sig, body) in [
        (
            &p.id,
            Some(jira_sign("not-the-secret", &wrong)),
            wrong.clone(),
        ),
        (&p.id, None, wrong.clone()),
        (&p.id, Some("sha256=zz".to_owned()), wrong.clone()),
        (
            &p.id,
            Some(jira_sign("jira-secret-123", &body)),
            wrong.clone(),
        ),
        (
            &other.id,
            Some(jira_sign("jira-secret-123", &wrong)),
            wrong.clone(),
        ),
    ] {
        deliver(&h, "jira", project, &body, sig)
            .await
            .problem(401, "unauthorized");
    }
    // Another event: 200, nothing.
    let started =
        serde_json::to_vec(&json!({ "webhookEvent": "sprint_started", "sprint": { "id": 5 } }))
            .unwrap();
    let a = deliver(
        &h,
        "jira",
        &p.id,
        &started,
        Some(jira_sign("jira-secret-123", &started)),
    )
    .await;
    assert_eq!(a.ok(200)["action"], "ignored");
    // Signed, but not Jira's: 400.
    for junk in [
        &b"not json"[..],
        &br#"{"hello": "world"}"#[..],
        &b"[1, 2]"[..],
    ] {
        deliver(
            &h,
            "jira",
            &p.id,
            junk,
            Some(jira_sign("jira-secret-123", junk)),
        )
        .await
        .problem(400, "malformed_delivery");
    }
    // Over 1 MB: 413.
    let big = vec![b' '; 1024 * 1024 + 10];
    deliver(
        &h,
        "jira",
        &p.id,
        &big,
        Some(jira_sign("jira-secret-123", &big)),
    )
    .await
    .problem(413, "body_too_large");

    // Linear: a completed cycle, signed and fresh.
    let body = linear_cycle_completed("cyc-14", now_ms());
    let sig = hex(&phony_core::sprint::sign(b"linear-secret-456", &body));
    let a = deliver(&h, "linear", &p.id, &body, Some(sig.clone())).await;
    let answer = a.ok(202).clone();
    assert_eq!(answer["snapshot_name"], "sprint-end-cycle-fourteen");
    h.wait_job(answer["job"]["id"].as_str().unwrap(), &p.token)
        .await;
    // Replayed: no second snapshot.
    assert_eq!(
        deliver(&h, "linear", &p.id, &body, Some(sig)).await.ok(200)["action"],
        "duplicate"
    );
    // Stale (two minutes old) or badly signed: 401.
    let stale = linear_cycle_completed("cyc-15", now_ms() - 120_000);
    let sig = hex(&phony_core::sprint::sign(b"linear-secret-456", &stale));
    deliver(&h, "linear", &p.id, &stale, Some(sig))
        .await
        .problem(401, "unauthorized");
    let fresh = linear_cycle_completed("cyc-16", now_ms());
    deliver(
        &h,
        "linear",
        &p.id,
        &fresh,
        Some(jira_sign("linear-secret-456", &fresh)),
    )
    .await
    .problem(401, "unauthorized");

    let snaps = snapshots(&h, &p).await;
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snapshots(&h, &other).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_snapshots_over_the_plan_push_out_the_oldest_and_keep_last_applies() {
    let h = start().await;
    let p = h.project("FREE", 2).await;
    h.call(
        reqwest::Method::PUT,
        &format!("/api/v1/projects/{}/integrations/jira", p.id),
        Some(&p.token),
        Some(json!({ "secret": "s" })),
    )
    .await
    .ok(200);
    let manual = h.snapshot(&p, json!({})).await;
    let mut sprint_jobs = Vec::new();
    for id in 1..=4 {
        let body = jira_sprint_closed(id, &format!("Sprint {id}"));
        let a = deliver(&h, "jira", &p.id, &body, Some(jira_sign("s", &body))).await;
        let job = a.ok(202)["job"]["id"].as_str().unwrap().to_owned();
        assert_eq!(h.wait_job(&job, &p.token).await["status"], "succeeded");
        sprint_jobs.push(job);
    }
    // FREE keeps 3: the manual one and the two newest sprint ends.
    let names: Vec<String> = snapshots(&h, &p)
        .await
        .iter()
        .map(|s| {
            s["name"]
                .as_str()
                .unwrap_or(s["id"].as_str().unwrap())
                .to_owned()
        })
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names.contains(&"sprint-end-sprint-4".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"sprint-end-sprint-3".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&manual), "{names:?}");
    // A manual snapshot over the count is still refused.
    h.post(
        &format!("/api/v1/projects/{}/snapshots", p.id),
        &p.token,
        json!({}),
    )
    .await
    .problem(403, "plan_limit");

    // keep_last: within the plan's count, admin only; applied after the next automatic one.
    let path = format!("/api/v1/projects/{}", p.id);
    h.patch(&path, &p.token, json!({ "keep_last": 2 }))
        .await
        .problem(403, "admin_required");
    h.patch(&path, &h.admin, json!({ "keep_last": 5 }))
        .await
        .problem(422, "invalid_body");
    h.patch(&path, &h.admin, json!({ "retention_days": 8 }))
        .await
        .problem(422, "invalid_body");
    let a = h
        .patch(
            &path,
            &h.admin,
            json!({ "keep_last": 2, "retention_days": 5 }),
        )
        .await;
    assert_eq!(a.ok(200)["keep_last"], 2);
    assert_eq!(a.body["retention_days"], 5);
    let usage = h.get(&format!("{path}/usage"), &p.token).await;
    assert_eq!(usage.ok(200)["retention_days"], 5);
    let body = jira_sprint_closed(5, "Sprint 5");
    let a = deliver(&h, "jira", &p.id, &body, Some(jira_sign("s", &body))).await;
    let job = a.ok(202)["job"]["id"].as_str().unwrap().to_owned();
    h.wait_job(&job, &p.token).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<Value> = snapshots(&h, &p)
            .await
            .iter()
            .map(|s| s["name"].clone())
            .collect();
        if names.len() == 2 {
            assert_eq!(names[0], "sprint-end-sprint-5");
            assert_eq!(names[1], "sprint-end-sprint-4");
            break;
        }
        assert!(Instant::now() < deadline, "{names:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sprint_end_can_start_a_sync_after_its_snapshot() {
    let h = start().await;
    let source = phony_tests::TestDb::new("srv_hook_src").await;
    source.exec(super::syncs::SOURCE).await;
    let p = h.project("TEAM", 2).await;
    let integration = format!("/api/v1/projects/{}/integrations/jira", p.id);
    // A sync on sprint end needs a sync source.
    h.call(
        reqwest::Method::PUT,
        &integration,
        Some(&p.token),
        Some(json!({ "secret": "s", "sync_on_sprint_end": true })),
    )
    .await
    .problem(409, "sync_source_missing");
    h.patch(
        &format!("/api/v1/projects/{}", p.id),
        &p.token,
        json!({ "sync_source_url": source.url() }),
    )
    .await
    .ok(200);
    let a = h
        .call(
            reqwest::Method::PUT,
            &integration,
            Some(&p.token),
            Some(json!({ "secret": "s", "sync_on_sprint_end": true })),
        )
        .await;
    assert_eq!(a.ok(200)["sync_on_sprint_end"], true);

    let body = jira_sprint_closed(900, "Release train");
    let a = deliver(&h, "jira", &p.id, &body, Some(jira_sign("s", &body))).await;
    let answer = a.ok(202).clone();
    let snap_job = h
        .wait_job(answer["job"]["id"].as_str().unwrap(), &p.token)
        .await;
    let sync_job = h
        .wait_job(answer["sync_job"]["id"].as_str().unwrap(), &p.token)
        .await;
    assert_eq!(sync_job["status"], "succeeded", "{sync_job}");
    assert_eq!(sync_job["kind"], "sync");
    // The snapshot first (the sprint's end state), then the sync.
    let at = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(at(&snap_job["finished_at"]) <= at(&sync_job["started_at"]));
    let n: i64 = p.db.value("SELECT count(*) FROM users").await;
    assert_eq!(n, 200);
    let origins: Vec<Value> = snapshots(&h, &p)
        .await
        .iter()
        .map(|s| s["origin"].clone())
        .collect();
    assert_eq!(
        origins,
        vec![
            json!("sync-after"),
            json!("sync-before"),
            json!("sprint-end")
        ]
    );
}
