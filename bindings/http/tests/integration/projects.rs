//! Projects and tokens.

use serde_json::json;

use super::support::start;

#[tokio::test(flavor = "multi_thread")]
async fn projects_are_created_listed_shown_patched_and_deleted_without_their_passwords() {
    let h = start().await;
    let db = phony_tests::TestDb::new("pw").await;
    // Trust authentication ignores the password; it must still never come back.
    let url = db.url().replacen("postgres@", "postgres:s3cr3t-pw@", 1);
    assert!(url.contains("s3cr3t-pw"), "{url}");
    let a = h
        .post(
            "/api/v1/projects",
            &h.admin,
            json!({ "name": "shop", "database_url": url, "plan": "team" }),
        )
        .await;
    let p = a.ok(201).clone();
    let id = p["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("prj_"));
    assert_eq!(p["plan"], "TEAM");
    assert_eq!(
        a.header("location").unwrap(),
        format!("/api/v1/projects/{id}")
    );
    assert!(!a.text.contains("s3cr3t"), "{}", a.text);
    assert!(p["database_url"].as_str().unwrap().ends_with(&db.name));

    let list = h.get("/api/v1/projects", &h.admin).await;
    assert!(!list.text.contains("s3cr3t"));
    assert_eq!(list.ok(200)["items"][0]["id"], id.as_str());
    let shown = h.get(&format!("/api/v1/projects/{id}"), &h.admin).await;
    assert_eq!(shown.ok(200)["name"], "shop");
    assert!(!shown.text.contains("s3cr3t"));

    // Encrypted at rest: the metadata holds no password in clear.
    let meta = h.meta.client().await;
    let rows = meta
        .query(
            "SELECT database_display, encode(database_secret, 'escape') FROM projects",
            &[],
        )
        .await
        .unwrap();
    for r in rows {
        let shown: String = r.get(0);
        let sealed: String = r.get(1);
        assert!(!shown.contains("s3cr3t") && !sealed.contains("s3cr3t"));
    }

    // A project token sees its own project; it may rename it, not change its plan.
    let t = h
        .post("/api/v1/tokens", &h.admin, json!({ "project_id": id }))
        .await;
    let token = t.ok(201)["token"].as_str().unwrap().to_owned();
    let own = h.get("/api/v1/projects", &token).await;
    assert_eq!(own.ok(200)["items"].as_array().unwrap().len(), 1);
    h.patch(
        &format!("/api/v1/projects/{id}"),
        &token,
        json!({ "plan": "BUSINESS" }),
    )
    .await
    .problem(403, "admin_required");
    let renamed = h
        .patch(
            &format!("/api/v1/projects/{id}"),
            &token,
            json!({ "name": "shop-2" }),
        )
        .await;
    assert_eq!(renamed.ok(200)["name"], "shop-2");
    let upgraded = h
        .patch(
            &format!("/api/v1/projects/{id}"),
            &h.admin,
            json!({ "plan": "BUSINESS", "retention_days": 365 }),
        )
        .await;
    assert_eq!(upgraded.ok(200)["plan"], "BUSINESS");
    assert_eq!(upgraded.body["retention_days"], 365);

    // Names are unique; plans and URLs are checked.
    h.post(
        "/api/v1/projects",
        &h.admin,
        json!({ "name": "shop-2", "database_url": db.url(), "plan": "FREE" }),
    )
    .await
    .problem(409, "name_taken");
    h.post(
        "/api/v1/projects",
        &h.admin,
        json!({ "name": "x", "database_url": db.url(), "plan": "GOLD" }),
    )
    .await
    .problem(422, "invalid_plan");
    h.post(
        "/api/v1/projects",
        &h.admin,
        json!({ "name": "y", "database_url": "mysql://nope", "plan": "FREE" }),
    )
    .await
    .problem(422, "invalid_database_url");
    h.post(
        "/api/v1/projects",
        &h.admin,
        json!({ "name": "z", "database_url": db.url(), "plan": "FREE", "retention_days": 30 }),
    )
    .await
    .problem(422, "invalid_body");

    // Deleting is for admins; the project's token goes with it.
    h.delete(&format!("/api/v1/projects/{id}"), &token)
        .await
        .problem(403, "admin_required");
    assert_eq!(
        h.delete(&format!("/api/v1/projects/{id}"), &h.admin)
            .await
            .status,
        204
    );
    h.get(&format!("/api/v1/projects/{id}"), &h.admin)
        .await
        .problem(404, "not_found");
    h.get("/api/v1/projects", &token)
        .await
        .problem(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_shown_once_listed_without_secrets_and_revoked() {
    let h = start().await;
    let p = h.project("FREE", 1).await;
    let a = h.post("/api/v1/tokens", &h.admin, json!({})).await;
    let admin2 = a.ok(201)["token"].as_str().unwrap().to_owned();
    let admin2_id = a.body["id"].as_str().unwrap().to_owned();
    assert!(a.body["project_id"].is_null());
    assert!(admin2.len() >= 64, "256 bits at least: {admin2}");
    let list = h.get("/api/v1/tokens", &admin2).await;
    assert!(!list.text.contains(&admin2) && !list.text.contains(&p.token));
    assert!(list.ok(200)["items"].as_array().unwrap().len() >= 3);
    for item in list.body["items"].as_array().unwrap() {
        assert!(item.get("token").is_none() && item.get("hash").is_none());
    }
    // Stored as a hash only.
    let meta = h.meta.client().await;
    let n: i64 = meta
        .query_one(
            "SELECT count(*) FROM tokens WHERE encode(hash, 'escape') LIKE '%' || $1 || '%'",
            &[&admin2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // Project tokens manage no tokens.
    h.post("/api/v1/tokens", &p.token, json!({}))
        .await
        .problem(403, "admin_required");
    h.get("/api/v1/tokens", &p.token)
        .await
        .problem(403, "admin_required");
    h.post(
        "/api/v1/tokens",
        &h.admin,
        json!({ "project_id": "prj_000000000000" }),
    )
    .await
    .problem(404, "not_found");

    assert_eq!(
        h.delete(&format!("/api/v1/tokens/{admin2_id}"), &h.admin)
            .await
            .status,
        204
    );
    h.get("/api/v1/tokens", &admin2)
        .await
        .problem(401, "unauthorized");
    h.delete(&format!("/api/v1/tokens/{admin2_id}"), &h.admin)
        .await
        .problem(404, "not_found");

    // The last admin token stays.
    let list = h.get("/api/v1/tokens", &h.admin).await;
    let admin_id = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["project_id"].is_null() && t["revoked_at"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.delete(&format!("/api/v1/tokens/{admin_id}"), &h.admin)
        .await
        .problem(409, "last_admin_token");
}
