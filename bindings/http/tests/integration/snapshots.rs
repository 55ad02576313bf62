//! Snapshots: create, list, show, patch, delete, restore, diff.

use serde_json::json;

use super::support::start;

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_is_created_as_a_job_listed_shown_patched_and_deleted() {
    let h = start().await;
    let p = h.project("TEAM", 50).await;
    let base = format!("/api/v1/projects/{}/snapshots", p.id);

    // Without ?wait: 202 with the job and where to find it.
    let a = h
        .post(
            &base,
            &p.token,
            json!({ "name": "first", "labels": { "ci": "42" } }),
        )
        .await;
    let job = a.ok(202).clone();
    assert_eq!(
        a.header("location").unwrap(),
        format!("/api/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["kind"], "create");
    assert!(["queued", "running", "succeeded"].contains(&job["status"].as_str().unwrap()));
    let done = h.wait_job(job["id"].as_str().unwrap(), &p.token).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let first = done["result"]["id"].as_str().unwrap().to_owned();
    assert!(first.starts_with("snap_"));
    assert_eq!(done["result"]["rows"], 50);
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());

    // With ?wait: 201 with the snapshot.
    let a = h
        .post(&format!("{base}?wait=60"), &p.token, json!({ "pin": true }))
        .await;
    let second = a.ok(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.header("location").unwrap(),
        format!("/api/v1/snapshots/{second}")
    );
    assert_eq!(a.body["pinned"], true);
    let third = h.snapshot(&p, json!({})).await;

    // A name is taken once.
    h.post(&base, &p.token, json!({ "name": "first" }))
        .await
        .problem(409, "name_taken");
    h.post(&base, &p.token, json!({ "name": "bad name!" }))
        .await
        .problem(422, "invalid_name");

    // Pages, newest first.
    let page = h.get(&format!("{base}?limit=2"), &p.token).await;
    let items = page.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], third.as_str());
    assert_eq!(items[1]["id"], second.as_str());
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let next = h
        .get(&format!("{base}?limit=2&cursor={cursor}"), &p.token)
        .await;
    assert_eq!(next.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(next.body["items"][0]["id"], first.as_str());
    assert!(next.body["next_cursor"].is_null());
    let manual = h.get(&format!("{base}?origin=manual"), &p.token).await;
    assert_eq!(manual.ok(200)["items"].as_array().unwrap().len(), 3);
    let safety = h.get(&format!("{base}?origin=safety"), &p.token).await;
    assert_eq!(safety.ok(200)["items"].as_array().unwrap().len(), 0);
    h.get(&format!("{base}?origin=weekly"), &p.token)
        .await
        .problem(400, "invalid_query");
    h.get(&format!("{base}?cursor=nonsense"), &p.token)
        .await
        .problem(400, "invalid_query");

    // Show: tables too.
    let shown = h.get(&format!("/api/v1/snapshots/{first}"), &p.token).await;
    assert_eq!(shown.ok(200)["name"], "first");
    assert_eq!(shown.body["labels"]["ci"], "42");
    assert_eq!(shown.body["project_id"], p.id.as_str());
    assert_eq!(shown.body["table_list"][0]["name"], "items");
    // By name, for the project's token.
    assert_eq!(
        h.get("/api/v1/snapshots/first", &p.token).await.ok(200)["id"],
        first.as_str()
    );

    // Rename, pin, labels.
    let patched = h
        .patch(
            &format!("/api/v1/snapshots/{first}"),
            &p.token,
            json!({ "name": "renamed", "pin": true, "labels": { "k": "v" } }),
        )
        .await;
    assert_eq!(patched.ok(200)["name"], "renamed");
    assert_eq!(patched.body["pinned"], true);
    assert_eq!(patched.body["labels"], json!({ "k": "v" }));
    // The old name is free again, the new one taken.
    h.post(&base, &p.token, json!({ "name": "renamed" }))
        .await
        .problem(409, "name_taken");
    h.patch(
        &format!("/api/v1/snapshots/{third}"),
        &p.token,
        json!({ "name": "renamed" }),
    )
    .await
    .problem(409, "name_taken");

    // A pinned snapshot is not deleted.
    h.delete(&format!("/api/v1/snapshots/{first}"), &p.token)
        .await
        .problem(409, "snapshot_pinned");
    h.patch(
        &format!("/api/v1/snapshots/{first}"),
        &p.token,
        json!({ "pin": false }),
    )
    .await
    .ok(200);
    assert_eq!(
        h.delete(&format!("/api/v1/snapshots/{first}"), &p.token)
            .await
            .status,
        204
    );
    h.get(&format!("/api/v1/snapshots/{first}"), &p.token)
        .await
        .problem(404, "not_found");
    h.delete(&format!("/api/v1/snapshots/{first}"), &p.token)
        .await
        .problem(404, "not_found");
    // The store is an ordinary phony store.
    let store = format!("{}/{}", h.config.store_root, p.id);
    let engine = phony_engine::Engine::open(&store).await.unwrap();
    assert_eq!(engine.list(&Default::default()).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_puts_the_rows_back_after_a_safety_snapshot_and_into_another_database() {
    let h = start().await;
    let p = h.project("TEAM", 100).await;
    let snap = h.snapshot(&p, json!({ "name": "clean" })).await;
    p.db.exec("DELETE FROM items WHERE id > 10; UPDATE items SET name = 'dirty'")
        .await;

    let a = h
        .post(
            &format!("/api/v1/snapshots/{snap}/restore?wait=60"),
            &p.token,
            json!({}),
        )
        .await;
    let report = a.ok(200).clone();
    assert_eq!(report["id"], snap.as_str());
    let safety = report["safety_snapshot"].as_str().unwrap().to_owned();
    assert_eq!(p.db.value::<i64>("SELECT count(*) FROM items").await, 100);
    assert_eq!(
        p.db.value::<i64>("SELECT count(*) FROM items WHERE name = 'dirty'")
            .await,
        0
    );

    // The safety snapshot holds the state before, listed under its origin.
    let list = h
        .get(
            &format!("/api/v1/projects/{}/snapshots?origin=safety", p.id),
            &p.token,
        )
        .await;
    assert_eq!(list.ok(200)["items"][0]["id"], safety.as_str());
    assert_eq!(list.body["items"][0]["rows"], 10);

    // Into another database, created for it.
    let other = p.db.sibling_name("copy");
    let url = p.db.url_of(&other);
    let a = h
        .post(
            &format!("/api/v1/snapshots/{snap}/restore?wait=60"),
            &p.token,
            json!({ "target_database_url": url }),
        )
        .await;
    assert_eq!(a.ok(200)["created_database"], true, "{}", a.text);
    assert!(a.body["safety_snapshot"].is_null());
    assert_eq!(p.db.fingerprint_of(&other).await, p.db.fingerprint().await);

    // Two restores at once: the second waits for the first.
    p.db.exec("UPDATE items SET name = 'again'").await;
    let r1 = h
        .post(
            &format!("/api/v1/snapshots/{snap}/restore"),
            &p.token,
            json!({}),
        )
        .await;
    let r2 = h
        .post(
            &format!("/api/v1/snapshots/{safety}/restore"),
            &p.token,
            json!({}),
        )
        .await;
    let j1 = h
        .wait_job(r1.ok(202)["id"].as_str().unwrap(), &p.token)
        .await;
    let j2 = h
        .wait_job(r2.ok(202)["id"].as_str().unwrap(), &p.token)
        .await;
    assert_eq!(j1["status"], "succeeded", "{j1}");
    assert_eq!(j2["status"], "succeeded", "{j2}");
    let end1 = time::OffsetDateTime::parse(
        j1["finished_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let start2 = time::OffsetDateTime::parse(
        j2["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        start2 >= end1,
        "the second restore started before the first ended"
    );
    assert_eq!(p.db.value::<i64>("SELECT count(*) FROM items").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diff_is_the_cli_document_between_snapshots_or_against_the_database_now() {
    let h = start().await;
    let p = h.project("TEAM", 20).await;
    let a = h.snapshot(&p, json!({ "name": "a" })).await;
    p.db.exec("INSERT INTO items VALUES (21, 'new'); DELETE FROM items WHERE id = 1")
        .await;
    let b = h.snapshot(&p, json!({ "name": "b" })).await;

    let d = h
        .get(
            &format!("/api/v1/snapshots/{a}/diff/{b}?rows=true&limit=10"),
            &p.token,
        )
        .await;
    let doc = d.ok(200).clone();
    assert_eq!(doc["identical"], false);
    assert_eq!(doc["from"]["id"], a.as_str());
    assert_eq!(doc["to"]["id"], b.as_str());
    let t = &doc["tables"][0];
    assert_eq!(t["name"], "items");
    assert_eq!(t["rows_added"], 1);
    assert_eq!(t["rows_removed"], 1);

    let same = h
        .get(&format!("/api/v1/snapshots/{b}/diff/live"), &p.token)
        .await;
    assert_eq!(same.ok(200)["identical"], true, "{}", same.text);
    assert_eq!(same.body["to"]["live"], true);
    p.db.exec("UPDATE items SET name = 'x' WHERE id = 2").await;
    let live = h
        .get(&format!("/api/v1/snapshots/{b}/diff/live"), &p.token)
        .await;
    assert_eq!(live.ok(200)["tables"][0]["rows_changed"], 1);

    h.get(
        &format!("/api/v1/snapshots/{a}/diff/snap_000000000000"),
        &p.token,
    )
    .await
    .problem(404, "not_found");
    h.get(
        &format!("/api/v1/snapshots/{a}/diff/{b}?rows=maybe"),
        &p.token,
    )
    .await
    .problem(400, "invalid_query");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_token_names_snapshots_by_id_and_is_told_so_for_a_name() {
    let h = start().await;
    let a = h.project("FREE", 2).await;
    let b = h.project("FREE", 2).await;
    let id = h.snapshot(&a, json!({ "name": "nightly" })).await;
    // The same name in another project: a name says nothing across projects.
    h.snapshot(&b, json!({ "name": "nightly" })).await;

    for reference in ["nightly", &id[..9]] {
        let path = format!("/api/v1/snapshots/{reference}");
        for answer in [
            h.get(&path, &h.admin).await,
            h.patch(&path, &h.admin, json!({ "pin": true })).await,
            h.delete(&path, &h.admin).await,
        ] {
            let detail = answer.problem(404, "not_found")["detail"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(detail.starts_with("snapshot not found"), "{detail}");
            assert!(detail.contains("full id"), "{detail}");
            assert!(detail.contains("project's token"), "{detail}");
        }
    }
    // Nothing was pinned or deleted; the project's token resolves the name.
    let shown = h.get("/api/v1/snapshots/nightly", &a.token).await;
    assert_eq!(shown.ok(200)["id"], id.as_str());
    assert_eq!(shown.body["pinned"], false);
    // By id (in any case), the admin token reaches it.
    let by_id = h.get(&format!("/api/v1/snapshots/{id}"), &h.admin).await;
    assert_eq!(by_id.ok(200)["project_id"], a.id.as_str());
    h.get(
        &format!(
            "/api/v1/snapshots/{}",
            id.to_ascii_uppercase().replace("SNAP_", "snap_")
        ),
        &h.admin,
    )
    .await
    .ok(200);
    // An id that names nothing is a plain 404.
    let none = h.get("/api/v1/snapshots/snap_000000000000", &h.admin).await;
    assert_eq!(
        none.problem(404, "not_found")["detail"],
        "snapshot not found"
    );
}
