//! Syncs: a project's database refreshed from its sync source, masked column by column,
//! with the snapshots its plan takes; the plan's gates; snapshots of external syncs.

use phony_tests::TestDb;
use serde_json::json;

use super::support::start;

pub const SOURCE: &str = "
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, name text, phone text,
                    ssn text, note text, age int);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id int NOT NULL REFERENCES users (id),
                     user_email text, total numeric);
INSERT INTO users SELECT g, 'user' || g || '@corp.example.com', 'Person Number' || g,
       '+1 (555) 000-' || lpad(g::text, 4, '0'), 'ssn-' || g, 'private ' || g, 20 + g % 50
  FROM generate_series(1, 200) g;
INSERT INTO orders SELECT g, 1 + g % 200, 'user' || (1 + g % 200) || '@corp.example.com', g * 1.5
  FROM generate_series(1, 600) g;
";

pub const RULES: &str = "# PII stays in production
public.users.email   email
public.orders.user_email email
public.users.name    name
public.users.phone   phone
public.users.ssn     null
public.users.note    fixed 'redacted'
";

/// `url` with a password that trust authentication ignores (it must never be shown).
pub fn with_password(url: &str) -> String {
    url.replacen("postgres@", "postgres:hunter2-secret@", 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_masks_columns_and_takes_the_plans_snapshots_either_side() {
    let h = start().await;
    let source = TestDb::new("srv_sync_src").await;
    source.exec(SOURCE).await;
    let p = h.project("TEAM", 5).await;
    let path = format!("/api/v1/projects/{}", p.id);

    // No source yet: 409 with a stable code.
    h.post(&format!("{path}/syncs"), &p.token, json!({}))
        .await
        .problem(409, "sync_source_missing");

    let a = h
        .patch(
            &path,
            &p.token,
            json!({ "sync_source_url": with_password(&source.url()), "masking_rules": RULES }),
        )
        .await;
    let project = a.ok(200);
    assert!(!a.text.contains("hunter2"), "{}", a.text);
    assert!(project["sync_source"]
        .as_str()
        .unwrap()
        .contains("srv_sync_src"));
    assert_eq!(project["masking_rules"], RULES);
    assert!(!h.get(&path, &p.token).await.text.contains("hunter2"));

    let a = h
        .post(&format!("{path}/syncs?wait=120"), &p.token, json!({}))
        .await;
    let report = a.ok(200).clone();
    assert!(!a.text.contains("hunter2"), "{}", a.text);
    assert_eq!(report["number"], 1);
    assert_eq!(report["masked_columns"], 6);
    let before = report["before_snapshot_id"].as_str().unwrap().to_owned();
    let after = report["after_snapshot_id"].as_str().unwrap().to_owned();

    // The database holds the source's rows, masked column by column.
    let c = p.db.client().await;
    let gone: bool = c
        .query_one("SELECT to_regclass('public.items') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(gone, "the sync replaces the database's contents");
    let row = c
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE email LIKE 'user%@corp.example.com'),
                    count(DISTINCT email),
                    count(*) FILTER (WHERE email ~ '^[^@]+@[^@]+\\.[a-z]+$'),
                    count(*) FILTER (WHERE name LIKE 'Person Number%'),
                    count(*) FILTER (WHERE name IS NOT NULL),
                    count(*) FILTER (WHERE phone LIKE '+1 (555) 000-%'),
                    count(*) FILTER (WHERE phone ~ '^\\+[0-9] \\([0-9]{3}\\) [0-9]{3}-[0-9]{4}$'),
                    count(*) FILTER (WHERE ssn IS NULL),
                    count(*) FILTER (WHERE note = 'redacted'),
                    sum(age), sum(id)
             FROM users",
            &[],
        )
        .await
        .unwrap();
    let v: Vec<i64> = (0..12).map(|i| row.get(i)).collect();
    assert_eq!(v[0], 200, "every row");
    assert_eq!(v[1], 0, "email: no address survives");
    assert_eq!(v[2], 200, "email: distinct addresses stay distinct");
    assert_eq!(v[3], 200, "email: addresses keep their shape");
    assert_eq!(v[4], 0, "name: no name survives");
    assert_eq!(v[5], 200, "name: every name is replaced, none removed");
    assert_eq!(v[6], 0, "phone: no number survives");
    assert_eq!(v[7], 200, "phone: numbers keep their shape");
    assert_eq!(v[8], 200, "ssn: null");
    assert_eq!(v[9], 200, "note: the fixed value");
    let ages: i64 = source.value("SELECT sum(age) FROM users").await;
    assert_eq!(v[10], ages, "age: unmasked, unchanged");
    assert_eq!(v[11], (1..=200).sum::<i64>(), "id: unmasked, unchanged");
    let orders = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE user_email LIKE 'user%@corp.example.com'),
                    sum(total)::float8, count(*) FILTER (WHERE user_id BETWEEN 1 AND 200)
             FROM orders",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(orders.get::<_, i64>(0), 600);
    assert_eq!(orders.get::<_, i64>(1), 0, "user_email: masked");
    let total: f64 = source.value("SELECT sum(total)::float8 FROM orders").await;
    assert_eq!(orders.get::<_, f64>(2), total, "total: unchanged");
    assert_eq!(orders.get::<_, i64>(3), 600, "user_id: unmasked");
    // The same address masks the same way in both tables (one rule, one key).
    let joined: i64 = c
        .query_one(
            "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id WHERE u.email = o.user_email",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(joined, 600, "equal values stay equal across tables");

    // Snapshots either side, labelled with the sync's number.
    let list = h
        .get(&format!("{path}/snapshots?origin=sync-before"), &p.token)
        .await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], before.as_str());
    assert_eq!(items[0]["labels"]["sync"], "1");
    let list = h
        .get(&format!("{path}/snapshots?origin=sync-after"), &p.token)
        .await;
    assert_eq!(list.ok(200)["items"][0]["id"], after.as_str());

    // The second sync is number 2; switching the snapshot before off is allowed.
    let a = h
        .post(
            &format!("{path}/syncs?wait=120"),
            &p.token,
            json!({ "before": false }),
        )
        .await;
    let second = a.ok(200);
    assert_eq!(second["number"], 2);
    assert!(second["before_snapshot_id"].is_null());
    assert!(second["after_snapshot_id"].is_string());

    let syncs = h.get(&format!("{path}/syncs"), &p.token).await;
    let items = syncs.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["number"], 2);
    assert_eq!(items[1]["number"], 1);
    assert_eq!(items[1]["status"], "succeeded");
    assert_eq!(items[1]["before_snapshot_id"], before.as_str());
    assert_eq!(items[1]["after_snapshot_id"], after.as_str());
    assert!(!syncs.text.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plan_decides_the_snapshots_around_a_sync_and_bad_rules_are_refused() {
    let h = start().await;
    let source = TestDb::new("srv_sync_gate").await;
    source.exec(SOURCE).await;
    let free = h.project("FREE", 3).await;
    let starter = h.project("STARTER", 3).await;
    for p in [&free, &starter] {
        h.patch(
            &format!("/api/v1/projects/{}", p.id),
            &p.token,
            json!({ "sync_source_url": source.url() }),
        )
        .await
        .ok(200);
    }
    let a = h
        .post(
            &format!("/api/v1/projects/{}/syncs", free.id),
            &free.token,
            json!({ "after": true }),
        )
        .await;
    assert_eq!(a.problem(403, "plan_required")["required_plan"], "STARTER");
    let a = h
        .post(
            &format!("/api/v1/projects/{}/syncs", starter.id),
            &starter.token,
            json!({ "before": true }),
        )
        .await;
    assert_eq!(a.problem(403, "plan_required")["required_plan"], "TEAM");
    h.post(
        &format!("/api/v1/projects/{}/syncs", starter.id),
        &starter.token,
        json!({ "sideways": true }),
    )
    .await
    .problem(422, "invalid_body");

    // FREE: a sync, no snapshot.
    let a = h
        .post(
            &format!("/api/v1/projects/{}/syncs?wait=120", free.id),
            &free.token,
            json!({}),
        )
        .await;
    let r = a.ok(200);
    assert!(r["before_snapshot_id"].is_null() && r["after_snapshot_id"].is_null());
    let n: i64 = free.db.value("SELECT count(*) FROM users").await;
    assert_eq!(n, 200);

    // Rules that do not parse: 400 naming the line; nothing saved.
    let a = h
        .patch(
            &format!("/api/v1/projects/{}", starter.id),
            &starter.token,
            json!({ "masking_rules": "public.users.email email\npublic.users.name scramble\n" }),
        )
        .await;
    let p = a.problem(400, "invalid_masking_rules");
    assert!(p["detail"].as_str().unwrap().contains("line 2"), "{p}");
    let shown = h
        .get(&format!("/api/v1/projects/{}", starter.id), &starter.token)
        .await;
    assert!(shown.ok(200)["masking_rules"].is_null());

    // A rule naming a column the source lacks: the sync is refused before anything runs.
    h.patch(
        &format!("/api/v1/projects/{}", starter.id),
        &starter.token,
        json!({ "masking_rules": "public.users.nope email\n" }),
    )
    .await
    .ok(200);
    let before = starter.db.fingerprint().await;
    let a = h
        .post(
            &format!("/api/v1/projects/{}/syncs?wait=120", starter.id),
            &starter.token,
            json!({}),
        )
        .await;
    let p = a.problem(422, "sync_refused");
    assert!(p["detail"].as_str().unwrap().contains("nope"), "{p}");
    phony_tests::assert_same(
        &starter.db.fingerprint().await,
        &before,
        "after a refused sync",
    );
    let list = h
        .get(
            &format!("/api/v1/projects/{}/snapshots", starter.id),
            &starter.token,
        )
        .await;
    assert!(list.ok(200)["items"].as_array().unwrap().is_empty());

    // An unreachable source: the job fails naming it, without its password.
    h.patch(
        &format!("/api/v1/projects/{}", starter.id),
        &starter.token,
        json!({ "sync_source_url": "postgres://u:pw-never-shown@127.0.0.1:1/nowhere", "masking_rules": null }),
    )
    .await
    .ok(200);
    let a = h
        .post(
            &format!("/api/v1/projects/{}/syncs?wait=120", starter.id),
            &starter.token,
            json!({}),
        )
        .await;
    a.problem(502, "database_unreachable");
    assert!(
        a.text.contains("nowhere") && !a.text.contains("pw-never-shown"),
        "{}",
        a.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_sync_tool_marks_its_snapshots() {
    let h = start().await;
    let p = h.project("TEAM", 3).await;
    let path = format!("/api/v1/projects/{}/snapshots", p.id);
    let a = h
        .post(
            &format!("{path}?wait=60"),
            &p.token,
            json!({ "origin": "sync-before", "sync_id": "etl-7" }),
        )
        .await;
    let s = a.ok(201);
    assert_eq!(s["origin"], "sync-before");
    assert_eq!(s["labels"]["sync"], "etl-7");
    let a = h
        .post(
            &format!("{path}?wait=60"),
            &p.token,
            json!({ "origin": "sync-after", "sync_id": "etl-7" }),
        )
        .await;
    assert_eq!(a.ok(201)["origin"], "sync-after");
    for body in [
        json!({ "origin": "scheduled" }),
        json!({ "origin": "safety" }),
        json!({ "origin": "sprint-end" }),
        json!({ "sync_id": "etl-8" }),
    ] {
        h.post(&path, &p.token, body)
            .await
            .problem(400, "invalid_origin");
    }
}
