//! Tokens × resources: admin, project A, project B, none, wrong, revoked.

use reqwest::Method;
use serde_json::json;

use super::support::start;

#[tokio::test(flavor = "multi_thread")]
async fn every_token_sees_exactly_what_it_should() {
    let h = start().await;
    let a = h.project("TEAM", 3).await;
    let b = h.project("TEAM", 3).await;
    let snap = h.snapshot(&a, json!({ "name": "mine" })).await;
    let other = h.snapshot(&a, json!({})).await;
    let b_snap = h.snapshot(&b, json!({})).await;
    let job = h
        .get(&format!("/api/v1/projects/{}/jobs", a.id), &a.token)
        .await
        .ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = h
        .post("/api/v1/tokens", &h.admin, json!({ "project_id": a.id }))
        .await;
    let revoked = t.ok(201)["token"].as_str().unwrap().to_owned();
    let revoked_id = t.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.delete(&format!("/api/v1/tokens/{revoked_id}"), &h.admin)
            .await
            .status,
        204
    );

    let resources = [
        format!("/api/v1/projects/{}", a.id),
        format!("/api/v1/projects/{}/snapshots", a.id),
        format!("/api/v1/snapshots/{snap}"),
        format!("/api/v1/jobs/{job}"),
        format!("/api/v1/projects/{}/jobs", a.id),
        format!("/api/v1/snapshots/{snap}/diff/{other}"),
        format!("/api/v1/projects/{}/usage", a.id),
    ];
    let wrong = format!("phony_{}", "0".repeat(64));
    let cases: [(&str, Option<&str>, u16); 6] = [
        ("admin", Some(&h.admin), 200),
        ("project A", Some(&a.token), 200),
        ("project B", Some(&b.token), 404),
        ("none", None, 401),
        ("wrong", Some(&wrong), 401),
        ("revoked", Some(&revoked), 401),
    ];
    for path in &resources {
        for (who, token, expected) in &cases {
            let ans = h.call(Method::GET, path, *token, None).await;
            assert_eq!(ans.status, *expected, "{who} GET {path}: {}", ans.text);
            if *expected == 404 {
                ans.problem(404, "not_found");
            }
            if *expected == 401 {
                ans.problem(401, "unauthorized");
            }
        }
    }
    // Writes of another project's things answer 404 too, and change nothing.
    let b_on_a = [
        (
            Method::POST,
            format!("/api/v1/projects/{}/snapshots", a.id),
            Some(json!({})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/snapshots/{snap}"),
            Some(json!({ "pin": true })),
        ),
        (Method::DELETE, format!("/api/v1/snapshots/{snap}"), None),
        (
            Method::POST,
            format!("/api/v1/snapshots/{snap}/restore"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/snapshots/{snap}/export"),
            Some(json!({ "format": "sql" })),
        ),
        (Method::POST, format!("/api/v1/jobs/{job}/cancel"), None),
        (
            Method::PATCH,
            format!("/api/v1/projects/{}", a.id),
            Some(json!({ "name": "mine-now" })),
        ),
    ];
    for (method, path, body) in b_on_a {
        let ans = h.call(method.clone(), &path, Some(&b.token), body).await;
        ans.problem(404, "not_found");
    }
    // A snapshot of B named from A's diff is not found either.
    h.get(&format!("/api/v1/snapshots/{snap}/diff/{b_snap}"), &a.token)
        .await
        .problem(404, "not_found");
    h.get(&format!("/api/v1/snapshots/{snap}/diff/{b_snap}"), &h.admin)
        .await
        .problem(404, "not_found");
    // Admin-only routes.
    for (method, path) in [
        (Method::GET, "/api/v1/tokens"),
        (Method::POST, "/api/v1/projects"),
    ] {
        let body = (method == Method::POST)
            .then(|| json!({ "name": "n", "database_url": "postgres://x@h/d" }));
        h.call(method, path, Some(&a.token), body)
            .await
            .problem(403, "admin_required");
    }
    // A's snapshot is still there, unpinned.
    let s = h.get(&format!("/api/v1/snapshots/{snap}"), &a.token).await;
    assert_eq!(s.ok(200)["pinned"], false);
}

/// Tokens are trusted for a few seconds once checked (`auth::TOKEN_FRESH`): a revocation
/// through this server holds at once, one through another server within that window, and
/// a deleted project's tokens stop at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refused_at_once_here_and_within_seconds_elsewhere() {
    let h = start().await;
    let p = h.project("FREE", 2).await;
    let other = h.another(|c| c.workers = 0).await;
    let there = other.url();
    let t = h
        .post("/api/v1/tokens", &h.admin, json!({ "project_id": p.id }))
        .await;
    let token = t.ok(201)["token"].as_str().unwrap().to_owned();
    let id = t.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/projects/{}", p.id);
    let at = |base: &str| {
        let (http, base, path, token) =
            (h.http.clone(), base.to_owned(), path.clone(), token.clone());
        async move {
            super::support::call_at(&http, &base, Method::GET, &path, Some(&token), None).await
        }
    };
    // Checked once on each server: trusted from then on.
    at(&h.base).await.ok(200);
    at(&there).await.ok(200);

    h.delete(&format!("/api/v1/tokens/{id}"), &h.admin)
        .await
        .ok(204);
    at(&h.base).await.problem(401, "unauthorized");
    let revoked = std::time::Instant::now();
    loop {
        let a = at(&there).await;
        if a.status == 401 {
            break;
        }
        a.ok(200);
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(7),
            "the other server still trusts a token revoked {:?} ago",
            revoked.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A deleted project's tokens stop at once on the server that deleted it.
    at(&h.base).await;
    let q = h.project("FREE", 2).await;
    let qpath = format!("/api/v1/projects/{}", q.id);
    h.get(&qpath, &q.token).await.ok(200);
    h.delete(&qpath, &h.admin).await.ok(204);
    h.get(&qpath, &q.token).await.problem(401, "unauthorized");
    other.stop().await.unwrap();
}
