//! Schedules: a seconds schedule firing several times with two servers sharing it (each
//! run once), a missed run made up once, and the bad input.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::{start, Harness, TestProject};

/// The project's create jobs fired by schedules.
async fn fired(h: &Harness, p: &TestProject) -> Vec<Value> {
    let a = h
        .get(
            &format!("/api/v1/projects/{}/jobs?limit=500", p.id),
            &p.token,
        )
        .await;
    a.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["params"]["origin"] == "scheduled")
        .cloned()
        .collect()
}

/// Waits until every job of the project has ended.
async fn settle(h: &Harness, p: &TestProject) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = h
            .get(
                &format!("/api/v1/projects/{}/jobs?limit=500", p.id),
                &p.token,
            )
            .await;
        let open = a.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["status"] == "queued" || j["status"] == "running")
            .count();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "jobs still open: {}", a.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seconds_schedule_fires_each_run_once_with_two_servers_sharing_it() {
    let mut h = start().await;
    let other = h.another(|_| {}).await;
    let p = h.project("TEAM", 3).await;
    let a = h
        .post(
            &format!("/api/v1/projects/{}/schedules", p.id),
            &p.token,
            json!({ "cron": "*/2 * * * * *", "timezone": "Europe/Berlin", "name": "tick-{datetime}" }),
        )
        .await;
    let s = a.ok(201).clone();
    let id = s["id"].as_str().unwrap().to_owned();
    let runs: Vec<time::OffsetDateTime> = s["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            time::OffsetDateTime::parse(
                t.as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(runs.len(), 5);
    for w in runs.windows(2) {
        assert_eq!(w[1] - w[0], time::Duration::seconds(2), "{s}");
    }

    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        h.delete(&format!("/api/v1/schedules/{id}"), &p.token)
            .await
            .status,
        204
    );
    // A run claimed just before the delete may still be queued; then nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&h, &p).await;
    let jobs = fired(&h, &p).await;
    let times: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["params"]["fire_at"].as_str().unwrap().to_owned())
        .collect();
    assert!(jobs.len() >= 3, "fired {} times in 9 s", jobs.len());
    assert_eq!(times.len(), jobs.len(), "a run fired twice: {jobs:?}");
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");

    // One snapshot per fire, named from the template in the schedule's zone.
    let list = h
        .get(
            &format!("/api/v1/projects/{}/snapshots?origin=scheduled", p.id),
            &p.token,
        )
        .await;
    let snaps = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(snaps.len(), jobs.len(), "snapshots = fires");
    let names: BTreeSet<&str> = snaps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), snaps.len());
    assert!(names.iter().all(|n| n.starts_with("tick-")), "{names:?}");
    assert!(snaps.iter().all(|s| s["labels"]["schedule"] == id.as_str()));

    // Nothing fires after the delete.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fired(&h, &p).await.len(), jobs.len());
    other.stop().await.unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_missed_while_no_server_ran_is_made_up_once_and_a_taken_name_gets_a_suffix() {
    let h = start().await;
    let p = h.project("TEAM", 3).await;
    // The name is taken already: the scheduled snapshot gets a suffix.
    h.snapshot(&p, json!({ "name": "yearly" })).await;
    // A yearly schedule whose last run was two years ago: many missed, one made up.
    let meta = h.meta.client().await;
    meta.execute(
        "INSERT INTO schedules (id, project_id, cron, timezone, name, pin, last_run, next_run)
         VALUES ('sch_missed00001', $1, '0 0 0 1 1 *', 'UTC', 'yearly', false,
                 now() - interval '800 days', now() - interval '700 days')",
        &[&p.id],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while fired(&h, &p).await.is_empty() {
        assert!(Instant::now() < deadline, "the missed run was not made up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle(&h, &p).await;
    let jobs = fired(&h, &p).await;
    assert_eq!(jobs.len(), 1, "made up once: {jobs:?}");
    assert_eq!(jobs[0]["status"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["result"]["name"], "yearly-2", "{}", jobs[0]);
    let next: time::OffsetDateTime = meta
        .query_one(
            "SELECT next_run FROM schedules WHERE id = 'sch_missed00001'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(next > time::OffsetDateTime::now_utc());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedules_are_refused_naming_what_is_wrong() {
    let h = start().await;
    let free = h.project("FREE", 1).await;
    let team = h.project("TEAM", 1).await;
    let a = h
        .post(
            &format!("/api/v1/projects/{}/schedules", free.id),
            &free.token,
            json!({ "cron": "0 0 * * FRI" }),
        )
        .await;
    assert_eq!(a.problem(403, "plan_required")["required_plan"], "TEAM");

    let path = format!("/api/v1/projects/{}/schedules", team.id);
    for (body, code, field) in [
        (json!({ "cron": "61 * * * *" }), "invalid_cron", "minute"),
        (json!({ "cron": "0 25 * * *" }), "invalid_cron", "hour"),
        (
            json!({ "cron": "0 0 * * FUNDAY" }),
            "invalid_cron",
            "day-of-week",
        ),
        (
            json!({ "cron": "0 0 30 2 *" }),
            "invalid_cron",
            "never fires",
        ),
        (
            json!({ "cron": "0 0 * * FRI", "timezone": "Mars/Olympus_Mons" }),
            "invalid_time_zone",
            "timezone",
        ),
    ] {
        let a = h.post(&path, &team.token, body.clone()).await;
        let p = a.problem(400, code);
        assert_eq!(p["field"], field, "{body}: {p}");
        assert_eq!(p["detail"].as_str().unwrap().lines().count(), 1);
    }
    h.post(
        &path,
        &team.token,
        json!({ "cron": "0 0 * * *", "name": "bad name!{date}" }),
    )
    .await
    .problem(422, "invalid_name");
    h.post(
        &path,
        &team.token,
        json!({ "cron": "0 0 * * *", "every": "day" }),
    )
    .await
    .problem(422, "invalid_body");

    let a = h
        .post(
            &path,
            &team.token,
            json!({ "cron": "0 0 * * FRI", "timezone": "UTC", "name": "weekly-{date}", "pin": true }),
        )
        .await;
    let s = a.ok(201).clone();
    assert_eq!(s["cron"], "0 0 * * FRI");
    assert_eq!(s["pin"], true);
    assert!(s["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.as_str().unwrap().ends_with("T00:00:00Z")));
    let listed = h.get(&path, &team.token).await;
    assert_eq!(listed.ok(200)["items"].as_array().unwrap().len(), 1);
    // Another project's token does not see it.
    let id = s["id"].as_str().unwrap();
    h.delete(&format!("/api/v1/schedules/{id}"), &free.token)
        .await
        .problem(404, "not_found");
    h.get(&path, &free.token).await.problem(404, "not_found");
    assert_eq!(
        h.delete(&format!("/api/v1/schedules/{id}"), &team.token)
            .await
            .status,
        204
    );
    h.delete(&format!("/api/v1/schedules/{id}"), &team.token)
        .await
        .problem(404, "not_found");
}
