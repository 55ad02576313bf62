//! Malformed, unknown, oversized and unreachable.

use reqwest::Method;
use serde_json::json;

use super::support::start;

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_answer_problem_documents() {
    let h = start().await;
    let p = h.project("FREE", 1).await;
    let url = format!("{}/api/v1/projects/{}/snapshots", h.base, p.id);
    let send = |body: Vec<u8>, ct: Option<&'static str>| {
        let mut r = h.http.post(&url).bearer_auth(&p.token).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
            let body: serde_json::Value = resp.json().await.unwrap();
            (status, ct, body)
        }
    };
    let (s, ct, b) = send(b"{\"name\": ".to_vec(), Some("application/json")).await;
    assert_eq!(
        (s, ct.as_str(), b["code"].as_str()),
        (400, "application/problem+json", Some("malformed_body"))
    );
    let (s, _, b) = send(b"{\"nmae\": \"x\"}".to_vec(), Some("application/json")).await;
    assert_eq!((s, b["code"].as_str()), (422, Some("invalid_body")));
    assert!(b["detail"].as_str().unwrap().contains("nmae"), "{b}");
    let (s, _, b) = send(b"{\"pin\": \"yes\"}".to_vec(), Some("application/json")).await;
    assert_eq!((s, b["code"].as_str()), (422, Some("invalid_body")));
    let (s, _, b) = send(b"{}".to_vec(), Some("text/plain")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let mut big = b"{\"name\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
    big.extend(b"\"}");
    let (s, _, b) = send(big, Some("application/json")).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("body_too_large")));

    // Unknown fields everywhere.
    h.post(
        "/api/v1/projects",
        &h.admin,
        json!({ "name": "a", "database_url": p.db.url(), "colour": "red" }),
    )
    .await
    .problem(422, "invalid_body");
    h.post("/api/v1/tokens", &h.admin, json!({ "scope": "all" }))
        .await
        .problem(422, "invalid_body");
    let s = h.snapshot(&p, json!({})).await;
    h.post(
        &format!("/api/v1/snapshots/{s}/restore"),
        &p.token,
        json!({ "target": "x" }),
    )
    .await
    .problem(422, "invalid_body");
    h.post(
        &format!("/api/v1/snapshots/{s}/restore"),
        &p.token,
        json!({ "target_database_url": "nope" }),
    )
    .await
    .problem(422, "invalid_database_url");
    h.patch(
        &format!("/api/v1/snapshots/{s}"),
        &p.token,
        json!({ "pinned": true }),
    )
    .await
    .problem(422, "invalid_body");
    h.get(
        &format!("/api/v1/projects/{}/snapshots?limit=0", p.id),
        &p.token,
    )
    .await
    .problem(400, "invalid_query");
    h.get(
        &format!("/api/v1/projects/{}/snapshots?colour=red", p.id),
        &p.token,
    )
    .await
    .problem(400, "invalid_query");

    // Unknown things.
    h.get("/api/v1/snapshots/snap_0123456789ab", &p.token)
        .await
        .problem(404, "not_found");
    h.get("/api/v1/snapshots/snap_0123456789ab", &h.admin)
        .await
        .problem(404, "not_found");
    h.get("/api/v1/jobs/job_0123456789ab", &p.token)
        .await
        .problem(404, "not_found");
    h.get("/api/v1/nothing", &p.token)
        .await
        .problem(404, "not_found");
    h.call(Method::PUT, "/api/v1/projects", Some(&h.admin), None)
        .await
        .problem(405, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_whose_database_is_unreachable_fails_its_job_and_the_server_stays_up() {
    let h = start().await;
    let p = h
        .project_on("FREE", "postgres://postgres@127.0.0.1:1/nowhere")
        .await;
    let a = h
        .post(
            &format!("/api/v1/projects/{}/snapshots?wait=60", p.id),
            &p.token,
            json!({}),
        )
        .await;
    let doc = a.problem(502, "database_unreachable");
    assert_eq!(doc["job"]["status"], "failed");
    assert_eq!(doc["job"]["error"]["code"], "database_unreachable");
    let job = doc["job"]["id"].as_str().unwrap();
    let shown = h.get(&format!("/api/v1/jobs/{job}"), &p.token).await;
    assert_eq!(shown.ok(200)["status"], "failed");
    assert_eq!(
        h.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    let usage = h
        .get(&format!("/api/v1/projects/{}/usage", p.id), &p.token)
        .await;
    assert!(usage.ok(200)["database_bytes"].is_null());
}
