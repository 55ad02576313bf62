//! Every plan gate: the count (plan_limit), diff and export (plan_required), retention.

use serde_json::json;

use super::support::{start, start_with};

#[tokio::test(flavor = "multi_thread")]
async fn free_keeps_three_snapshots_pinned_ones_count_safety_ones_do_not() {
    let h = start().await;
    let p = h.project("FREE", 5).await;
    let base = format!("/api/v1/projects/{}/snapshots", p.id);
    let first = h.snapshot(&p, json!({ "pin": true })).await;
    h.snapshot(&p, json!({})).await;
    // A restore's safety snapshot does not count.
    h.post(
        &format!("/api/v1/snapshots/{first}/restore?wait=60"),
        &p.token,
        json!({}),
    )
    .await
    .ok(200);
    h.snapshot(&p, json!({})).await;
    let a = h.post(&base, &p.token, json!({})).await;
    let doc = a.problem(403, "plan_limit");
    assert_eq!(doc["plan"], "FREE");
    assert_eq!(doc["limit"], 3);
    assert!(doc["detail"].as_str().unwrap().contains("FREE"));

    let usage = h
        .get(&format!("/api/v1/projects/{}/usage", p.id), &p.token)
        .await;
    let u = usage.ok(200);
    assert_eq!(u["plan"], "FREE");
    assert_eq!(u["snapshots"]["used"], 3);
    assert_eq!(u["snapshots"]["allowed"], 3);
    assert_eq!(u["snapshots"]["safety"], 1);
    assert_eq!(u["snapshots"]["pinned"], 1);
    assert_eq!(u["retention_days"], 7);
    assert!(u["stored_bytes"].as_u64().unwrap() > 0);
    assert!(u["logical_bytes"].as_u64().unwrap() > 0);
    assert!(u["database_bytes"].as_u64().unwrap() > 0);
    assert!(u["stored_share"].as_f64().unwrap() > 0.0);

    // The limit is the plan's: an upgrade makes room.
    h.patch(
        &format!("/api/v1/projects/{}", p.id),
        &h.admin,
        json!({ "plan": "STARTER" }),
    )
    .await
    .ok(200);
    h.post(&format!("{base}?wait=60"), &p.token, json!({}))
        .await
        .ok(201);
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_needs_team_and_export_needs_business() {
    let h = start().await;
    for plan in ["FREE", "STARTER"] {
        let p = h.project(plan, 3).await;
        let s = h.snapshot(&p, json!({})).await;
        let a = h
            .get(&format!("/api/v1/snapshots/{s}/diff/live"), &p.token)
            .await;
        let doc = a.problem(403, "plan_required");
        assert_eq!(doc["required_plan"], "TEAM");
        assert_eq!(doc["plan"], plan);
    }
    for plan in ["FREE", "STARTER", "TEAM"] {
        let p = h.project(plan, 3).await;
        let s = h.snapshot(&p, json!({})).await;
        let a = h
            .post(
                &format!("/api/v1/snapshots/{s}/export"),
                &p.token,
                json!({ "format": "sql" }),
            )
            .await;
        assert_eq!(a.problem(403, "plan_required")["required_plan"], "BUSINESS");
    }
    let p = h.project("BUSINESS", 7).await;
    let s = h.snapshot(&p, json!({})).await;
    h.post(
        &format!("/api/v1/snapshots/{s}/export"),
        &p.token,
        json!({ "format": "csv" }),
    )
    .await
    .problem(422, "invalid_body");
    let a = h
        .post(
            &format!("/api/v1/snapshots/{s}/export?wait=60"),
            &p.token,
            json!({ "format": "sql" }),
        )
        .await;
    let report = a.ok(200).clone();
    assert_eq!(report["rows"], 7);
    let download = report["download"].as_str().unwrap();
    let file = h.get(download, &p.token).await;
    assert_eq!(file.status, 200);
    assert!(file.text.contains("COPY"), "{}", file.text);
    assert!(file.text.contains("item 7"));
    // Another project's token does not reach it.
    let other = h.project("BUSINESS", 1).await;
    h.get(download, &other.token)
        .await
        .problem(404, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_expires_snapshots_past_retention_and_keeps_pinned_ones_on_business() {
    let h = start_with(|c| c.sweep_interval = std::time::Duration::from_millis(200)).await;
    let free = h.project("FREE", 2).await;
    let business = h.project("BUSINESS", 2).await;
    let mut ids = Vec::new();
    for p in [&free, &business] {
        let old = h.snapshot(p, json!({})).await;
        let old_pinned = h.snapshot(p, json!({ "pin": true })).await;
        let fresh = h.snapshot(p, json!({})).await;
        // Age two of them by rewriting their records (the store is the source of truth).
        let engine = phony_engine::Engine::open(&format!("{}/{}", h.config.store_root, p.id))
            .await
            .unwrap();
        for id in [&old, &old_pinned] {
            let (mut r, _) = engine.show(id).await.unwrap();
            r.created_at -= time::Duration::days(400);
            engine.store().put_record(&r).await.unwrap();
        }
        ids.push((old, old_pinned, fresh));
    }
    // BUSINESS with a custom retention of 30 days.
    h.patch(
        &format!("/api/v1/projects/{}", business.id),
        &h.admin,
        json!({ "retention_days": 30 }),
    )
    .await
    .ok(200);
    let listed = |p: &super::support::TestProject| {
        let path = format!("/api/v1/projects/{}/snapshots", p.id);
        let token = p.token.clone();
        let h = &h;
        async move {
            let a = h.get(&path, &token).await;
            a.ok(200)["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let f = listed(&free).await;
        let b = listed(&business).await;
        if f.len() == 1 && b.len() == 2 {
            assert_eq!(f, vec![ids[0].2.clone()]);
            assert!(b.contains(&ids[1].1) && b.contains(&ids[1].2), "{b:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not expired: {f:?} {b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
