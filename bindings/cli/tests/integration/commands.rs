//! The commands' contract: what they print, in text and JSON.

use phony_tests::{assert_same, TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_show_restore_delete() {
    let db = TestDb::rich("cli_flow").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;

    let id = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "clean-state"],
    ));
    let id = id.trim();
    assert!(
        id.starts_with("snap_") && id.len() == 17,
        "create prints the id alone: {id:?}"
    );

    db.exec("DELETE FROM public.orders; ALTER TABLE public.customers ADD COLUMN x int; SELECT nextval('public.ticket_seq')")
        .await;
    let dirty = db.fingerprint().await;
    let restored = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "clean-state"],
    ));
    assert!(restored.contains("restored clean-state"), "{restored}");
    assert_same(&db.fingerprint().await, &before, "after restore by name");

    // The state before the restore was kept, and restoring it undoes the restore.
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    let safety = list["snapshots"][0].clone();
    assert_eq!(safety["origin"], "safety", "{list}");
    let safety = safety["id"].as_str().unwrap().to_owned();
    assert!(restored.contains(&safety), "{restored}");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", &safety, "--no-safety-snapshot"],
    ));
    assert_same(&db.fingerprint().await, &dirty, "after undoing the restore");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "clean-state", "--no-safety-snapshot"],
    ));
    assert_same(&db.fingerprint().await, &before, "after restoring again");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "delete", &safety],
    ));

    let json: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "create"],
    )))
    .unwrap();
    for key in [
        "id",
        "name",
        "created_at",
        "tables",
        "rows",
        "bytes",
        "stored_bytes",
        "new_bytes",
    ] {
        assert!(json.get(key).is_some(), "create --json has {key}: {json}");
    }
    assert_eq!(json["tables"], 13);
    assert_eq!(json["name"], Value::Null);
    assert_eq!(
        json["new_bytes"], 0,
        "nothing changed since the first snapshot"
    );
    let second = json["id"].as_str().unwrap().to_owned();

    let list = ok(&phony(&db.url(), store.path(), &["snapshot", "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].contains("ID") && lines[0].contains("NAME") && lines[0].contains("ROWS"),
        "{list}"
    );
    assert!(lines[1].contains(&second), "newest first: {list}");
    assert!(
        lines[2].contains(id) && lines[2].contains("clean-state"),
        "{list}"
    );

    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 2);

    let show = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "show", &id[..9]],
    ));
    assert!(
        show.contains("clean-state") && show.contains("Inventory.Order Lines"),
        "{show}"
    );
    let taken_by = format!("phony {}", env!("CARGO_PKG_VERSION"));
    assert!(show.contains(&taken_by), "{show}");
    let show: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "show", id],
    )))
    .unwrap();
    assert_eq!(show["table_list"].as_array().unwrap().len(), 13);
    assert_eq!(show["tool_version"], env!("CARGO_PKG_VERSION"));

    let deleted = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "delete", &second],
    ));
    assert!(deleted.contains(&second));
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_target_creates_a_database_beside_the_source() {
    let db = TestDb::rich("cli_target").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "week-ago"],
    ));
    db.exec("DELETE FROM public.page_views").await;
    let changed = db.fingerprint().await;

    let copy = db.sibling_name("cmp");
    let out = ok(&phony(
        &db.url(),
        store.path(),
        &[
            "snapshot",
            "restore",
            "week-ago",
            "--target",
            &db.url_of(&copy),
        ],
    ));
    assert!(out.contains("(created)"), "{out}");
    assert_same(&db.fingerprint_of(&copy).await, &before, "the new database");
    assert_same(&db.fingerprint().await, &changed, "the source is untouched");
}

/// With tracking, the safety snapshot is completed while the restore runs (the restore
/// commits after it): both must still be exact, and undoing the restore must work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_restore_keeps_the_state_before_it_exactly() {
    let db = TestDb::rich("cli_safety").await;
    let store = TestStore::new().await;
    ok(&phony(&db.url(), store.path(), &["track", "on"]));
    let clean = db.fingerprint().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "clean"],
    ));
    for round in 0..3 {
        db.exec(
            "DELETE FROM public.orders WHERE id = (SELECT max(id) FROM public.orders);
             UPDATE public.customers SET name = name || '!' WHERE id % 2 = 0;
             INSERT INTO public.customers (email, name) VALUES ('r' || nextval('public.ticket_seq') || '@x.test', 'R');
             SELECT nextval('public.ticket_seq')",
        )
        .await;
        let dirty = db.fingerprint().await;
        let restored: Value = serde_json::from_str(&ok(&phony(
            &db.url(),
            store.path(),
            &["--json", "snapshot", "restore", "clean"],
        )))
        .unwrap();
        assert_eq!(restored["path"], "delta", "{restored}");
        assert_same(
            &db.fingerprint().await,
            &clean,
            &format!("round {round}: restored"),
        );
        let safety = restored["safety_snapshot"].as_str().unwrap().to_owned();
        let copy = db.sibling_name(&format!("before{round}"));
        ok(&phony(
            &db.url(),
            store.path(),
            &[
                "snapshot",
                "restore",
                &safety,
                "--target",
                &db.url_of(&copy),
            ],
        ));
        assert_same(
            &db.fingerprint_of(&copy).await,
            &dirty,
            &format!("round {round}: the safety snapshot"),
        );
        // Undone in place, and done again.
        ok(&phony(
            &db.url(),
            store.path(),
            &["snapshot", "restore", &safety],
        ));
        assert_same(
            &db.fingerprint().await,
            &dirty,
            &format!("round {round}: undone"),
        );
        ok(&phony(
            &db.url(),
            store.path(),
            &["snapshot", "restore", "clean", "--no-safety-snapshot"],
        ));
        assert_same(
            &db.fingerprint().await,
            &clean,
            &format!("round {round}: again"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_snapshots_need_force_to_delete() {
    let db = TestDb::new("cli_pin").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "keep", "--pin"],
    ));
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "delete", "keep"]),
        1,
        &["pinned", "--force"],
    );
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "delete", "keep", "--force"],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_on_status_off() {
    let db = TestDb::rich("cli_track").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let on = ok(&phony(&db.url(), store.path(), &["track", "on"]));
    assert!(
        on.contains("tracking is on") && on.contains("14 tables tracked"),
        "{on}"
    );
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    db.exec("UPDATE public.orders SET note = 'dirty'; DELETE FROM public.page_views")
        .await;

    let status: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "track", "status"],
    )))
    .unwrap();
    assert_eq!(status["tracking"], true);
    assert!(status["log_entries"].as_i64().unwrap() > 0);
    assert_eq!(status["marks"], 1);

    let out: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "restore", "s"],
    )))
    .unwrap();
    assert_eq!(out["path"], "delta");
    assert_eq!(out["changes"].as_array().unwrap().len(), 2, "{out}");
    assert_same(&db.fingerprint().await, &before, "after a tracked restore");

    let off = ok(&phony(&db.url(), store.path(), &["track", "off"]));
    assert!(off.contains("tracking is off"), "{off}");
    let n: i64 = db
        .value("SELECT count(*) FROM pg_namespace WHERE nspname = 'phony'")
        .await;
    assert_eq!(n, 0, "nothing left behind");
    assert_same(
        &db.fingerprint().await,
        &before,
        "tracking off leaves the database as it was",
    );

    // Only a superuser may turn it on (event triggers).
    let role = format!("{}_plain", db.name);
    db.exec(&format!(
        "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" LOGIN"
    ))
    .await;
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    let out = phony(&url, store.path(), &["track", "on"]);
    db.exec(&format!("DROP ROLE \"{role}\"")).await;
    crate::fails(&out, 1, &["needs a superuser"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_restore_compares_only_rows_written_since_the_capture() {
    let db = TestDb::rich("cli_ages").await;
    let store = TestStore::new().await;
    db.quiesce().await;
    let before = db.fingerprint().await;
    let id = ok(&phony(&db.url(), store.path(), &["snapshot", "create"]));
    let record: Value = serde_json::from_slice(
        &std::fs::read(store.path().join(format!("snapshots/{}.json", id.trim()))).unwrap(),
    )
    .unwrap();
    let point = &record["source"]["point"];
    assert!(point["system_id"].is_string(), "{record}");
    assert!(point["database_oid"].as_u64().unwrap() > 0, "{record}");
    let xmax: i64 = point["snapshot"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();

    db.exec(
        "UPDATE public.orders SET note = 'dirty' WHERE id = (SELECT min(id) FROM public.orders)",
    )
    .await;
    db.wait_for_xmin(xmax).await;
    let restore = |dry: bool| {
        let mut args = vec![
            "--json",
            "snapshot",
            "restore",
            id.trim(),
            "--no-safety-snapshot",
        ];
        if dry {
            args.push("--dry-run");
        }
        let out: Value = serde_json::from_str(&ok(&phony(&db.url(), store.path(), &args))).unwrap();
        out
    };
    let dry = restore(true);
    assert_eq!(dry["changes"][0]["updated"], 1, "{dry}");
    let out = restore(false);
    assert_eq!(out["path"], "delta");
    assert_eq!(out["changes"], dry["changes"]);
    let ages = &out["row_ages"];
    assert_eq!(ages["compared_chunks"], 1, "{out}");
    assert_eq!(ages["content_tables"], 0, "{out}");
    assert!(ages["unchanged_tables"].as_u64().unwrap() >= 10, "{out}");
    assert_same(&db.fingerprint().await, &before, "after the restore");
}
