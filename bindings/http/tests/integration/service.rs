//! Health, readiness, metrics, the docs page, idempotency, a metadata database that drops
//! its connections.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::support::start;

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_docs_answer() {
    let h = start().await;
    assert_eq!(
        h.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    assert_eq!(h.call(Method::GET, "/readyz", None, None).await.status, 200);
    let plans = h.call(Method::GET, "/api/v1/plans", None, None).await;
    assert_eq!(plans.ok(200)["items"][0]["name"], "FREE");
    assert_eq!(plans.body["items"][0]["snapshots_kept"], 3);
    let docs = h.call(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status, 200);
    assert!(docs
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(docs.text.contains("/api/v1/openapi.json"));
    // Nothing loaded from elsewhere.
    assert!(!docs.text.contains("<script src") && !docs.text.contains("https://"));

    let p = h.project("FREE", 2).await;
    h.snapshot(&p, json!({})).await;
    let m = h.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text.contains(
            r#"phony_http_requests_total{route="/api/v1/projects",method="POST",status="201"} 1"#
        ),
        "{}",
        m.text
    );
    assert!(m.text.contains("phony_http_request_duration_seconds_sum"));
    assert!(
        m.text
            .contains(r#"phony_jobs{kind="create",status="succeeded"} 1"#),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains(r#"phony_job_duration_seconds_count{kind="create",status="succeeded"} 1"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_gives_the_first_answer_again() {
    let h = start().await;
    let p = h.project("FREE", 2).await;
    let path = format!("{}/api/v1/projects/{}/snapshots", h.base, p.id);
    let send = || {
        h.http
            .post(&path)
            .bearer_auth(&p.token)
            .header("idempotency-key", "create-1")
            .json(&json!({ "name": "once" }))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    h.wait_job(first["id"].as_str().unwrap(), &p.token).await;
    let list = h
        .get(&format!("/api/v1/projects/{}/jobs", p.id), &p.token)
        .await;
    assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 1);
    // The same key on another path is refused.
    let other = h
        .http
        .post(format!("{}/api/v1/tokens", h.base))
        .bearer_auth(&p.token)
        .header("idempotency-key", "create-1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_recover_after_the_metadata_database_drops_every_connection() {
    let h = start().await;
    let p = h.project("FREE", 2).await;
    let kill = || async {
        let c = h.meta.client().await;
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&h.meta.name],
        )
        .await
        .unwrap();
    };
    // Under load: requests in flight while every connection is cut.
    let load = async {
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let a = h.get(&format!("/api/v1/projects/{}", p.id), &p.token).await;
            if a.status != 200 {
                a.problem(a.status, a.body["code"].as_str().unwrap_or("?"));
            }
            statuses.push(a.status);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    };
    let (statuses, ()) = tokio::join!(load, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        kill().await;
    });
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    // Recovered: answers, and jobs run (the listener reconnected).
    let mut ok = false;
    for _ in 0..50 {
        if h.get(&format!("/api/v1/projects/{}", p.id), &p.token)
            .await
            .status
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok);
    h.post(
        &format!("/api/v1/projects/{}/snapshots?wait=60", p.id),
        &p.token,
        json!({}),
    )
    .await
    .ok(201);
}
