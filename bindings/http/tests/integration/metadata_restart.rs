//! The metadata database restarting under load (a throwaway cluster of the test's own,
//! stopped and started again): requests during the restart answer 503 `unavailable` at
//! once, never hang or drop the connection; afterwards they succeed again, and jobs run,
//! without restarting phony-server. A restart frees every server's advisory lock for a
//! moment: another server's sweep does not take that for a death.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::Cluster;
use super::support::start_with;

/// One answer seen by the load: what and when it was asked (since the start), how long it took,
/// its status and code.
#[derive(Debug)]
struct Seen {
    path: String,
    at: Duration,
    took: Duration,
    status: u16,
    code: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_during_a_metadata_restart_fail_cleanly_and_then_succeed() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let meta_url = cluster.url("phony_meta");
    let mut h = start_with(|c| c.meta_url = meta_url.clone()).await;
    let p = h.project("FREE", 2).await;
    let snap = h.snapshot(&p, json!({})).await;
    let paths = Arc::new([
        format!("/api/v1/projects/{}", p.id),
        format!("/api/v1/projects/{}/snapshots", p.id),
        format!("/api/v1/snapshots/{snap}"),
        format!("/api/v1/projects/{}/jobs", p.id),
    ]);

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for client in 0..6 {
        let (http, base, token) = (h.http.clone(), h.base.clone(), p.token.clone());
        let (paths, stop) = (Arc::clone(&paths), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = client;
            while !stop.load(Ordering::SeqCst) {
                let path = &paths[i % paths.len()];
                i += 1;
                let asked = Instant::now();
                let answer = http
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("GET {path}: no answer: {e}"));
                let status = answer.status().as_u16();
                let problem = answer
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "application/problem+json");
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                if status != 200 {
                    assert!(problem, "GET {path}: {status} without a problem: {body}");
                }
                seen.push(Seen {
                    path: path.clone(),
                    at: asked - t0,
                    took: asked.elapsed(),
                    status,
                    code: body["code"].as_str().map(str::to_owned),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }

    // The restart, under that load.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let down = t0.elapsed();
    cluster.stop_server("fast");
    // While it is down, a create is refused cleanly too.
    let refused = h
        .post(
            &format!("/api/v1/projects/{}/snapshots", p.id),
            &p.token,
            json!({}),
        )
        .await;
    refused.problem(503, "unavailable");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_server();
    let up = t0.elapsed();

    // Recovered without restarting phony-server: every path answers 200 again.
    let deadline = Instant::now() + Duration::from_secs(20);
    'recovering: loop {
        let mut all = true;
        for path in paths.iter() {
            all &= h.get(path, &p.token).await.status == 200;
        }
        if all {
            break 'recovering;
        }
        assert!(
            Instant::now() < deadline,
            "requests did not recover within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for task in load {
        seen.extend(task.await.unwrap());
    }

    for s in &seen {
        assert!(
            s.status == 200 || (s.status == 503 && s.code.as_deref() == Some("unavailable")),
            "GET {}: {s:?}",
            s.path
        );
        // The pool's wait and connect timeouts bound every answer.
        assert!(s.took < Duration::from_secs(8), "{s:?}");
    }
    let failed: Vec<&Seen> = seen.iter().filter(|s| s.status == 503).collect();
    assert!(!failed.is_empty(), "the restart was not felt: {seen:?}");
    assert!(
        failed.iter().all(|s| s.at + s.took >= down),
        "503 before the restart: {failed:?}"
    );
    assert!(
        seen.iter().any(|s| s.status == 200 && s.at > up),
        "nothing succeeded after the restart"
    );
    assert!(seen.iter().any(|s| s.status == 200 && s.at + s.took < down));

    // Jobs run again: the job listener reconnected and took its lock again.
    h.snapshot(&p, json!({ "name": "after" })).await;
    let list = h
        .get(&format!("/api/v1/projects/{}/snapshots", p.id), &p.token)
        .await;
    assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 2);
    h.stop().await;
}

/// A restart of the metadata database frees every server's lock until its listener takes
/// it again: a lock found free is checked again `sweep::DEAD_AFTER` (3 s) later before
/// that server's running jobs are marked failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_free_for_a_moment_is_not_a_dead_server() {
    let h = start_with(|c| c.sweep_interval = Duration::from_millis(200)).await;
    let p = h.project("FREE", 1).await;
    let meta = h.meta.client().await;
    meta.execute(
        "INSERT INTO jobs (id, project_id, kind, status, params, server_id, started_at, runs)
         VALUES ('job_away00000000', $1, 'restore', 'running', '{}', 4343, now(), 1)",
        &[&p.id],
    )
    .await
    .unwrap();
    // The sweep finds the lock free; the "server" takes it again a moment later, as a
    // listener does after a restart.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let listener = h.meta.client().await;
    listener
        .execute("SELECT pg_advisory_lock(4343)", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let job = h.get("/api/v1/jobs/job_away00000000", &p.token).await;
    assert_eq!(job.ok(200)["status"], "running", "{}", job.text);
    // Gone for good: marked failed.
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let job = h.get("/api/v1/jobs/job_away00000000", &p.token).await;
        if job.ok(200)["status"] == "failed" {
            assert_eq!(job.body["error"]["code"], "server_stopped");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never marked failed: {}",
            job.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
