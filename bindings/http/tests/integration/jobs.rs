//! Jobs: cancel, survive restarts, two servers share them, graceful stop.

use std::time::Duration;

use serde_json::json;

use super::support::start_with;

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_are_cancelled_and_run_after_a_restart() {
    // An API-only server: jobs stay queued.
    let mut h = start_with(|c| c.workers = 0).await;
    let p = h.project("TEAM", 5).await;
    let base = format!("/api/v1/projects/{}/snapshots", p.id);
    let j1 = h
        .post(&base, &p.token, json!({ "name": "kept" }))
        .await
        .ok(202)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let j2 = h.post(&base, &p.token, json!({})).await.ok(202)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = h
        .post(&format!("/api/v1/jobs/{j2}/cancel"), &p.token, json!({}))
        .await;
    assert_eq!(c.ok(200)["status"], "cancelled");
    h.post(&format!("/api/v1/jobs/{j2}/cancel"), &p.token, json!({}))
        .await
        .problem(409, "job_finished");
    let list = h
        .get(&format!("/api/v1/projects/{}/jobs", p.id), &p.token)
        .await;
    assert_eq!(list.ok(200)["items"][0]["id"], j2.as_str());
    assert_eq!(list.body["items"][1]["status"], "queued");
    let queued = h
        .get(
            &format!("/api/v1/projects/{}/jobs?status=queued", p.id),
            &p.token,
        )
        .await;
    assert_eq!(queued.ok(200)["items"].as_array().unwrap().len(), 1);

    // Stopped and started again, with workers: the queued job runs.
    h.stop().await;
    let server = h.another(|c| c.workers = 2).await;
    h.base = server.url();
    h.server = Some(server);
    let done = h.wait_job(&j1, &p.token).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["name"], "kept");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_metadata_database_never_run_a_job_twice() {
    let mut h = start_with(|c| c.workers = 0).await;
    let mut projects = Vec::new();
    for _ in 0..3 {
        projects.push(h.project("BUSINESS", 20).await);
    }
    let mut jobs = Vec::new();
    for p in &projects {
        for _ in 0..5 {
            let a = h
                .post(
                    &format!("/api/v1/projects/{}/snapshots", p.id),
                    &p.token,
                    json!({}),
                )
                .await;
            jobs.push((
                a.ok(202)["id"].as_str().unwrap().to_owned(),
                p.token.clone(),
            ));
        }
    }
    let a = h.another(|c| c.workers = 3).await;
    let b = h.another(|c| c.workers = 3).await;
    for (id, token) in &jobs {
        let job = h.wait_job(id, token).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let meta = h.meta.client().await;
    let runs: Vec<i32> = meta
        .query("SELECT runs FROM jobs", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(runs.len(), 15);
    assert!(runs.iter().all(|r| *r == 1), "{runs:?}");
    let servers: i64 = meta
        .query_one("SELECT count(DISTINCT server_id) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert!(servers >= 1);
    for p in &projects {
        let list = h
            .get(&format!("/api/v1/projects/{}/snapshots", p.id), &p.token)
            .await;
        assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 5);
    }
    // Within a project, one job at a time.
    let overlaps: i64 = meta
        .query_one(
            "SELECT count(*) FROM jobs a JOIN jobs b ON a.project_id = b.project_id AND a.id < b.id
             WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(overlaps, 0);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_server_died_is_marked_failed() {
    let h = start_with(|c| c.sweep_interval = Duration::from_millis(200)).await;
    let p = h.project("FREE", 1).await;
    let meta = h.meta.client().await;
    // A job "running" on a server whose session (and advisory lock) is gone.
    meta.execute(
        "INSERT INTO jobs (id, project_id, kind, status, params, server_id, started_at, runs)
         VALUES ('job_dead00000000', $1, 'restore', 'running', '{}', 4242, now(), 1)",
        &[&p.id],
    )
    .await
    .unwrap();
    let mut status = String::new();
    // Its lock must stay free for `sweep::DEAD_AFTER` (3 s) first.
    for _ in 0..100 {
        let a = h.get("/api/v1/jobs/job_dead00000000", &p.token).await;
        status = a.ok(200)["status"].as_str().unwrap().to_owned();
        if status == "failed" {
            assert_eq!(a.body["error"]["code"], "server_stopped");
            assert!(a.body["error"]["detail"]
                .as_str()
                .unwrap()
                .contains("rolled back"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "failed");
    // The project's queue moves on.
    h.post(
        &format!("/api/v1/projects/{}/snapshots?wait=60", p.id),
        &p.token,
        json!({}),
    )
    .await
    .ok(201);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_a_restore_finishes_it_or_rolls_it_back_and_marks_it() {
    let mut h = start_with(|c| c.shutdown_grace = Duration::ZERO).await;
    let p = h.project("TEAM", 300_000).await;
    let snap = h.snapshot(&p, json!({})).await;
    p.db.exec("UPDATE items SET name = 'changed'").await;
    let a = h
        .post(
            &format!("/api/v1/snapshots/{snap}/restore"),
            &p.token,
            json!({}),
        )
        .await;
    let job = a.ok(202)["id"].as_str().unwrap().to_owned();
    // Stop once it runs.
    let meta = h.meta.client().await;
    for _ in 0..200 {
        let s: String = meta
            .query_one("SELECT status FROM jobs WHERE id = $1", &[&job])
            .await
            .unwrap()
            .get(0);
        if s != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
    let row = meta
        .query_one(
            "SELECT status, error->>'code' FROM jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    let (status, code): (String, Option<String>) = (row.get(0), row.get(1));
    let changed =
        p.db.value::<i64>("SELECT count(*) FROM items WHERE name = 'changed'")
            .await;
    match status.as_str() {
        "succeeded" => assert_eq!(changed, 0),
        "failed" => {
            assert_eq!(code.as_deref(), Some("server_stopped"));
            assert_eq!(changed, 300_000, "a half-done restore");
        }
        other => panic!("job left {other}"),
    }
}
