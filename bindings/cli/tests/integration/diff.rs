//! `phony snapshot diff`: text, --rows, --json, --sql, and the live database.

use phony_tests::{assert_same, TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony};

fn create(db: &TestDb, store: &TestStore, name: &str) -> String {
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", name],
    ))
    .trim()
    .to_owned()
}

fn json(db: &TestDb, store: &TestStore, args: &[&str]) -> Value {
    let mut all = vec!["--json", "snapshot", "diff"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&phony(&db.url(), store.path(), &all))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_rows_show_schema_and_data_changes() {
    let db = TestDb::rich("cli_diff_text").await;
    let store = TestStore::new().await;
    let a = create(&db, &store, "before");
    db.exec(
        "UPDATE public.categories SET name = 'Renamed' WHERE id = (SELECT min(id) FROM public.categories);
         DELETE FROM public.orders WHERE id = (SELECT max(id) FROM public.orders);
         INSERT INTO public.page_views SELECT * FROM public.page_views LIMIT 1;
         CREATE INDEX orders_note_idx ON public.orders (note);",
    )
    .await;
    create(&db, &store, "after");

    let out = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "diff", "before", "after"],
    ));
    assert!(
        out.starts_with(&format!("from {a} (before)\nto   snap_")),
        "{out}"
    );
    assert!(out.contains("added INDEX public.orders_note_idx"), "{out}");
    assert!(
        out.contains("+CREATE INDEX orders_note_idx ON public.orders USING btree (note);"),
        "{out}"
    );
    assert!(
        out.contains("public.categories: 0 added, 0 removed, 1 changed"),
        "{out}"
    );
    assert!(
        out.contains("public.orders: 0 added, 1 removed, 0 changed"),
        "{out}"
    );
    assert!(
        out.contains("public.page_views: 1 added, 0 removed, 0 changed"),
        "{out}"
    );
    assert!(
        !out.contains("public.customers:"),
        "unchanged tables are left out: {out}"
    );
    assert!(!out.contains("~ id="), "no rows without --rows: {out}");

    let out = ok(&phony(
        &db.url(),
        store.path(),
        &[
            "snapshot",
            "diff",
            "before",
            "after",
            "--rows",
            "--table",
            "public.categories",
            "--table",
            "orders",
        ],
    ));
    assert!(out.contains("    ~ id=1: name: "), "{out}");
    assert!(out.contains(" → Renamed"), "{out}");
    assert!(out.contains("    - id="), "{out}");
    assert!(!out.contains("page_views"), "filtered out: {out}");

    let all = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "diff", "before", "after", "--all"],
    ));
    assert!(
        all.contains("public.customers: 0 added, 0 removed, 0 changed"),
        "{all}"
    );

    let same = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "diff", "after", "after"],
    ));
    assert!(same.ends_with("no differences\n"), "{same}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_has_the_documented_shape() {
    let db = TestDb::new("cli_diff_json").await;
    let store = TestStore::new().await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         CREATE SEQUENCE s;
         INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 100000) g;",
    )
    .await;
    let a = create(&db, &store, "a");
    db.exec(
        "UPDATE t SET v = E'tab\\there', n = NULL WHERE id = 2500;
         DELETE FROM t WHERE id = 10;
         INSERT INTO t VALUES (200000, NULL, 1);
         SELECT nextval('s');",
    )
    .await;
    let b = create(&db, &store, "b");

    let v = json(&db, &store, &["a", "b", "--rows", "--limit", "2"]);
    assert_eq!(v["from"]["id"], a.as_str());
    assert_eq!(v["from"]["name"], "a");
    assert_eq!(v["to"]["id"], b.as_str());
    assert_eq!(v["identical"], false);
    assert_eq!(v["schema"].as_array().unwrap().len(), 0);
    let t = &v["tables"][0];
    assert_eq!(t["schema"], "public");
    assert_eq!(t["name"], "t");
    assert_eq!(t["change"], "changed");
    assert_eq!(t["columns"], serde_json::json!(["id", "v", "n"]));
    assert_eq!(t["key"], serde_json::json!(["id"]));
    assert_eq!(
        (
            t["rows_added"].as_u64(),
            t["rows_removed"].as_u64(),
            t["rows_changed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(t["rows"].as_array().unwrap().len(), 2, "--limit 2: {t}");
    assert_eq!(t["rows_truncated"], true);
    let all = json(&db, &store, &["a", "b", "--rows"]);
    let rows = all["tables"][0]["rows"].as_array().unwrap();
    let changed = rows.iter().find(|r| r["change"] == "changed").unwrap();
    assert_eq!(changed["key"], serde_json::json!(["2500"]));
    assert_eq!(
        changed["changes"],
        serde_json::json!([
            {"column": "v", "old": "v2500", "new": "tab\there"},
            {"column": "n", "old": "2500", "new": null}
        ])
    );
    let added = rows.iter().find(|r| r["change"] == "added").unwrap();
    assert_eq!(added["values"], serde_json::json!(["200000", null, "1"]));
    assert_eq!(added["count"], 1);
    assert_eq!(
        all["sequences"],
        serde_json::json!([{"schema": "public", "name": "s", "from": {"last_value": 1, "is_called": false}, "to": {"last_value": 1, "is_called": true}}])
    );
    let stats = &all["stats"];
    assert!(stats["chunks_read"].as_u64().unwrap() < 10, "{stats}");
    assert!(stats["chunks_shared"].as_u64().unwrap() > 0, "{stats}");

    let counts_only = json(&db, &store, &["a", "b"]);
    assert_eq!(counts_only["tables"][0]["rows"], serde_json::json!([]));

    let same = json(&db, &store, &["b", "b"]);
    assert_eq!(same["identical"], true);
    assert_eq!(same["stats"]["chunks_read"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_patch_turns_a_into_b() {
    let db = TestDb::rich("cli_diff_sql").await;
    let store = TestStore::new().await;
    create(&db, &store, "a");
    db.exec(
        "UPDATE public.customers SET name = 'O''Brien \\ ✓' WHERE id = (SELECT min(id) FROM public.customers);
         DELETE FROM public.page_views WHERE ctid = (SELECT min(ctid) FROM public.page_views);
         INSERT INTO public.orders (customer_id, status, ordered_at, total) VALUES (NULL, 'paid', '2024-05-05 00:00:00+00', 12.5);",
    )
    .await;
    let expected = db.fingerprint().await;
    create(&db, &store, "b");

    let sql = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "diff", "a", "b", "--sql"],
    ));
    assert!(
        sql.contains("BEGIN;") && sql.trim_end().ends_with("COMMIT;"),
        "{sql}"
    );
    let copy = db.sibling_name("copy");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "a", "--target", &db.url_of(&copy)],
    ));
    let client = db.target().with_dbname(&copy).connect().await.unwrap();
    client.batch_execute(&sql).await.unwrap();
    assert_same(&db.fingerprint_of(&copy).await, &expected, "patched copy");

    db.exec("ALTER TABLE public.orders ADD COLUMN coupon text")
        .await;
    create(&db, &store, "c");
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "diff", "a", "c", "--sql"],
        ),
        1,
        &["schemas differ", "TABLE public.orders"],
    );
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["--json", "snapshot", "diff", "a", "c", "--sql"],
        ),
        2,
        &["--json"],
    );
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "diff", "a", "nope"]),
        1,
        &["nope"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_against_the_live_database() {
    let db = TestDb::new("cli_diff_live").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
        .await;
    let store = TestStore::new().await;
    create(&db, &store, "before-test");
    let same = json(&db, &store, &["before-test"]);
    assert_eq!(same["identical"], true, "{same}");
    assert_eq!(same["to"]["database"], db.name.as_str());

    db.exec("UPDATE t SET v = 'y' WHERE id = 42; INSERT INTO t VALUES (101, 'z')")
        .await;
    let out = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "diff", "before-test", "--rows"],
    ));
    assert!(
        out.contains(&format!("to   database {} (now)", db.name)),
        "{out}"
    );
    assert!(
        out.contains("public.t: 1 added, 0 removed, 1 changed"),
        "{out}"
    );
    assert!(out.contains("~ id=42: v: x → y"), "{out}");
    assert!(out.contains("+ id=101: (id=101, v=z)"), "{out}");

    // The live read writes no snapshot record.
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1);
}
