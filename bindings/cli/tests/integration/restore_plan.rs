//! What a restore plans and reports: counts that agree with the dry run and diff, the
//! objects a full path drops and creates, tables reloaded whole and why, and the lock
//! table's limit.

use phony_tests::{assert_same, TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony};

/// A tracked restore counts rows whose content differs, as its dry run and `diff` do: rows
/// changed and changed back, updated twice, or deleted and inserted again as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_restore_counts_agree_with_the_dry_run_and_diff() {
    let db = TestDb::new("counts").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g;",
    )
    .await;
    let store = TestStore::new().await;
    ok(&phony(&db.url(), store.path(), &["track", "on"]));
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    let counts = |v: &Value| -> (u64, u64, u64) {
        let c = &v["changes"][0];
        (
            c["deleted"].as_u64().unwrap_or(0),
            c["inserted"].as_u64().unwrap_or(0),
            c["updated"].as_u64().unwrap_or(0),
        )
    };
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["--json", "snapshot"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&phony(&db.url(), store.path(), &all))).unwrap()
    };
    for extra in [&[][..], &["--no-safety-snapshot"]] {
        db.exec(
            "UPDATE t SET v = 'x' WHERE id = 1; UPDATE t SET v = 'v1' WHERE id = 1;
             UPDATE t SET v = 'a' WHERE id = 2; UPDATE t SET v = 'b' WHERE id = 2;
             UPDATE t SET v = 'c' WHERE id = 2;
             DELETE FROM t WHERE id = 3; INSERT INTO t VALUES (3, 'v3');
             UPDATE t SET v = 'z' WHERE id = 4;
             INSERT INTO t VALUES (21, 'new'); DELETE FROM t WHERE id = 5;
             INSERT INTO t VALUES (22, 'gone again'); DELETE FROM t WHERE id = 22;",
        )
        .await;
        let diff = json(&["diff", "s"]);
        let table = &diff["tables"][0];
        // From the snapshot to now: the restore undoes it.
        let diffed = (
            table["rows_added"].as_u64().unwrap(),
            table["rows_removed"].as_u64().unwrap(),
            table["rows_changed"].as_u64().unwrap(),
        );
        assert_eq!(diffed, (1, 1, 2), "{diff}");
        let mut dry = vec!["restore", "s", "--dry-run"];
        dry.extend_from_slice(extra);
        assert_eq!(counts(&json(&dry)), (1, 1, 2), "dry run {extra:?}");
        let mut args = vec!["restore", "s"];
        args.extend_from_slice(extra);
        let restored = json(&args);
        assert_eq!(
            counts(&restored),
            (1, 1, 2),
            "restore {extra:?}: {restored}"
        );
        assert_eq!(restored["rows"], 4, "{restored}");
    }
}

/// A dry run says it planned (no estimate of the restore's time), and on the full path
/// lists the schema objects the restore would drop, create and replace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_path_dry_run_lists_what_it_would_drop_and_create() {
    let db = TestDb::new("dry_full").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE old_t (id int);
         INSERT INTO t VALUES (1)",
    )
    .await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    db.exec("DROP TABLE old_t; CREATE TABLE extra (id int); ALTER TABLE t ADD COLUMN v text")
        .await;
    let before = db.fingerprint().await;

    let out = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--dry-run"],
    ));
    assert!(out.starts_with("would restore s ("), "{out}");
    assert!(out.contains("planned in "), "{out}");
    assert!(
        !out.contains(" in 0.") || out.contains("planned in 0."),
        "{out}"
    );
    let line = |would: &str, object: &str| {
        out.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.first() == Some(&would) && words[1..].join(" ") == object
        })
    };
    assert!(line("drop", "TABLE public.extra"), "{out}");
    assert!(line("create", "TABLE public.old_t"), "{out}");
    assert!(line("replace", "TABLE public.t"), "{out}");

    let json: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "restore", "s", "--dry-run"],
    )))
    .unwrap();
    let changes: Vec<(String, String)> = json["schema_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("dropped".into(), "extra".into())),
        "{json}"
    );
    assert!(
        changes.contains(&("added".into(), "old_t".into())),
        "{json}"
    );
    assert_same(
        &db.fingerprint().await,
        &before,
        "a dry run changes nothing",
    );
}

/// A database of more relations than the server's lock table holds: the restore says which
/// setting to raise and to what, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_table_too_small_names_the_setting_to_raise() {
    let cluster = phony_testkit::TempCluster::start_with(phony_testkit::ClusterOptions {
        settings: vec![("max_locks_per_transaction".into(), "10".into())],
        ..Default::default()
    })
    .unwrap();
    let url = cluster.url("postgres");
    let client = phony_postgres::ConnectionTarget::parse(Some(&url))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // 600 tables, each with a key and a TOAST table: 2,400 relations, in transactions small
    // enough for the lock table (10 × 100 entries).
    for batch in 0..30 {
        let sql: String = (0..20)
            .map(|i| {
                let n = batch * 20 + i;
                format!("CREATE TABLE t{n} (id int PRIMARY KEY, v text); INSERT INTO t{n} VALUES ({n}, 'x');")
            })
            .collect();
        client.batch_execute(&sql).await.unwrap();
    }
    let store = TestStore::new().await;
    ok(&phony(
        &url,
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    client
        .batch_execute("INSERT INTO t1 VALUES (2, 'y')")
        .await
        .unwrap();

    let out = phony(
        &url,
        store.path(),
        &["snapshot", "restore", "s", "--full", "--no-safety-snapshot"],
    );
    fails(
        &out,
        1,
        &[
            "lock table",
            "max_locks_per_transaction 10",
            "max_connections 100",
            "set max_locks_per_transaction = 64",
            "restart the server",
        ],
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM t1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "nothing changed");
}

/// A table without a key where most rows differ is reloaded whole rather than matched row
/// by row; one where few differ is not. The dry run says which and why, and the counts are
/// the rows that differ either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_mostly_changed_is_reloaded_and_the_dry_run_says_why() {
    let db = TestDb::new("reload").await;
    db.exec(
        "CREATE TABLE bulk (n int, v text); CREATE TABLE few (n int, v text);
         INSERT INTO bulk SELECT g, 'b' || g FROM generate_series(1, 1000) g;
         INSERT INTO few SELECT g, 'f' || g FROM generate_series(1, 1000) g;",
    )
    .await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    let clean = db.fingerprint().await;
    db.exec(
        "DELETE FROM bulk WHERE n <= 600; INSERT INTO bulk SELECT g, 'new' FROM generate_series(1, 600) g;
         UPDATE few SET v = 'changed' WHERE n = 7;",
    )
    .await;
    let dirty = db.fingerprint().await;

    let dry = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--dry-run"],
    ));
    assert!(
        dry.contains("public.bulk would be reloaded whole: 1200 rows differ, against 1000"),
        "{dry}"
    );
    assert!(!dry.contains("public.few would be reloaded"), "{dry}");
    assert!(
        dry.contains("\ndelta path: the schema is the snapshot's"),
        "{dry}"
    );
    assert_same(&db.fingerprint().await, &dirty, "a dry run changes nothing");

    let restored: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "restore", "s"],
    )))
    .unwrap();
    assert_same(&db.fingerprint().await, &clean, "after the restore");
    let changes = restored["changes"].as_array().unwrap();
    let of = |name: &str| changes.iter().find(|c| c["name"] == name).unwrap().clone();
    let bulk = of("bulk");
    assert_eq!(
        (bulk["deleted"].as_u64(), bulk["inserted"].as_u64()),
        (Some(600), Some(600))
    );
    assert!(
        bulk["reloaded"].as_str().unwrap().contains("no key"),
        "{bulk}"
    );
    let few = of("few");
    assert_eq!(
        (few["deleted"].as_u64(), few["inserted"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(few.get("reloaded").is_none(), "{few}");
}

/// A keyed table whose differing rows are most of its bytes (a few huge rows) is reloaded
/// whole; one with a row changed among many is rewritten row by row. Counts are by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_table_of_huge_changed_rows_is_reloaded_and_the_dry_run_says_why() {
    let db = TestDb::new("reload_keyed").await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, payload text);
         CREATE TABLE small (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT g, repeat(md5(g::text), 30000) FROM generate_series(1, 3) g;
         INSERT INTO small SELECT g, 's' || g FROM generate_series(1, 1000) g;",
    )
    .await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    let clean = db.fingerprint().await;
    db.exec(
        "UPDATE big SET payload = repeat(md5('x' || id), 30000) WHERE id <= 2;
         UPDATE small SET v = 'changed' WHERE id = 7;",
    )
    .await;
    let dry = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--dry-run"],
    ));
    assert!(
        dry.contains("public.big would be reloaded whole: the rows that differ"),
        "{dry}"
    );
    assert!(!dry.contains("public.small would be reloaded"), "{dry}");

    let restored: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "restore", "s"],
    )))
    .unwrap();
    assert_same(&db.fingerprint().await, &clean, "after the restore");
    let changes = restored["changes"].as_array().unwrap();
    let of = |name: &str| changes.iter().find(|c| c["name"] == name).unwrap().clone();
    let big = of("big");
    assert_eq!(
        (
            big["deleted"].as_u64(),
            big["inserted"].as_u64(),
            big["updated"].as_u64()
        ),
        (Some(0), Some(0), Some(2)),
        "{big}"
    );
    assert!(big["reloaded"].is_string(), "{big}");
    let small = of("small");
    assert_eq!(small["updated"].as_u64(), Some(1), "{small}");
    assert!(small.get("reloaded").is_none(), "{small}");
}
