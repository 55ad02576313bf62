//! Retention, pinning, garbage collection, verify and stats, through the real binary.

use std::path::Path;
use std::time::{Duration, Instant};

use phony_tests::{assert_same, TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony, phony_cmd};

fn json(db: &TestDb, store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&phony(&db.url(), store, &all))).unwrap()
}

/// Every blob file of a store.
pub fn blob_files(store: &Path) -> Vec<std::path::PathBuf> {
    let Ok(dirs) = std::fs::read_dir(store.join("blobs")) else {
        return Vec::new();
    };
    let mut out: Vec<_> = dirs
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

fn listed(db: &TestDb, store: &Path) -> Vec<String> {
    json(db, store, &["snapshot", "list"])["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A database with a table big enough for several chunks.
async fn db_with_rows(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO t SELECT g, md5(g::text) || repeat('x', 40) FROM generate_series(1, 20000) g;",
    )
    .await;
    db
}

fn create(db: &TestDb, store: &Path, extra: &[&str]) -> String {
    let mut args = vec!["snapshot", "create"];
    args.extend_from_slice(extra);
    ok(&phony(&db.url(), store, &args)).trim().to_owned()
}

/// Moves a snapshot's creation time into the past by editing its record.
fn age_record(store: &Path, id: &str, days: i64) {
    let path = store.join(format!("snapshots/{id}.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let when = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    v["created_at"] = Value::String(
        when.format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    );
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_what_the_policy_says_and_frees_what_the_dry_run_promised() {
    let db = db_with_rows("prune_flow").await;
    let store = TestStore::new().await;
    let s = store.path();
    let pinned = create(&db, s, &["--name", "before-migration", "--pin"]);
    let mut ids = vec![];
    for i in 0..3 {
        db.exec(&format!(
            "UPDATE t SET v = v || '{i}' WHERE id % 1000 = {i}; INSERT INTO t VALUES ({}, 'new')",
            30000 + i
        ))
        .await;
        ids.push(create(&db, s, &[]));
    }
    let state_of_newest = db.fingerprint().await;
    let files_before = blob_files(s);

    // The dry run shows everything and changes nothing.
    let dry = json(
        &db,
        s,
        &["snapshot", "prune", "--keep-last", "1", "--dry-run"],
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"], 2, "{dry}");
    assert_eq!(dry["kept"], 2);
    let actions: Vec<(&str, &str)> = dry["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            (ids[2].as_str(), "keep"),
            (ids[1].as_str(), "remove"),
            (ids[0].as_str(), "remove"),
            (pinned.as_str(), "keep"),
        ]
    );
    assert_eq!(dry["snapshots"][3]["keep"][0]["rule"], "pinned");
    let would_free = dry["gc"]["unreferenced"]["bytes"].as_u64().unwrap();
    let would_free_blobs = dry["gc"]["unreferenced"]["blobs"].as_u64().unwrap();
    assert_eq!(dry["gc"]["status"], "would_free");
    assert!(would_free > 0 && would_free_blobs > 0, "{dry}");
    assert_eq!(blob_files(s), files_before, "a dry run deletes nothing");
    assert_eq!(listed(&db, s).len(), 4);

    let text = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "1", "--dry-run"],
    ));
    assert!(
        text.contains("would remove 2 of 4 snapshots and free"),
        "{text}"
    );
    assert!(
        text.contains("(pinned)") && text.contains("(last 1)"),
        "{text}"
    );

    // The real run does exactly that.
    let run = json(&db, s, &["snapshot", "prune", "--keep-last", "1"]);
    assert_eq!(run["removed"], 2);
    assert_eq!(run["gc"]["status"], "swept");
    assert_eq!(
        run["gc"]["unreferenced"]["bytes"].as_u64().unwrap(),
        would_free
    );
    assert_eq!(
        blob_files(s).len() as u64,
        files_before.len() as u64 - would_free_blobs
    );
    assert_eq!(listed(&db, s), [ids[2].clone(), pinned.clone()]);
    let verified = json(&db, s, &["store", "verify", "--read-data"]);
    assert_eq!(verified["damaged_blobs"].as_array().unwrap().len(), 0);

    // What is left restores exactly.
    ok(&phony(
        &db.url(),
        s,
        &[
            "snapshot",
            "restore",
            "before-migration",
            "--no-safety-snapshot",
        ],
    ));
    ok(&phony(
        &db.url(),
        s,
        &["snapshot", "restore", &ids[2], "--no-safety-snapshot"],
    ));
    assert_same(&db.fingerprint().await, &state_of_newest, "after prune");

    // A second prune finds nothing more to do.
    let again = json(&db, s, &["snapshot", "prune", "--keep-last", "1"]);
    assert_eq!(again["removed"], 0);
    assert_eq!(again["gc"]["unreferenced"]["blobs"], 0);

    // Unpinned, the old snapshot goes; a policy may remove everything, and says so.
    let unpinned = json(&db, s, &["snapshot", "unpin", "before-migration"]);
    assert_eq!(unpinned["pinned"], false);
    let all = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "0", "--dry-run"],
    ));
    assert!(
        all.contains("would remove 2 of 2 snapshots (every snapshot)"),
        "{all}"
    );
    let all = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "0", "--yes"],
    ));
    assert!(
        all.contains("removed 2 of 2 snapshots (every snapshot)"),
        "{all}"
    );
    assert!(listed(&db, s).is_empty());
    assert!(blob_files(s).is_empty(), "every blob is reclaimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_pins_and_the_stores_own_policy() {
    let db = TestDb::new("prune_expiry").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    let s = store.path();
    let old = create(&db, s, &["--name", "old"]);
    let older_pinned = create(&db, s, &["--name", "kept"]);
    let fresh = create(&db, s, &[]);
    age_record(s, &old, 40);
    age_record(s, &older_pinned, 50);
    let pinned = json(&db, s, &["snapshot", "pin", "kept"]);
    assert_eq!(pinned["pinned"], true);
    assert!(ok(&phony(&db.url(), s, &["snapshot", "pin", "kept"])).contains("(already)"));

    // Both rules: a snapshot stays if either keeps it.
    let plan = json(
        &db,
        s,
        &[
            "snapshot",
            "prune",
            "--expire-after",
            "30d",
            "--keep-last",
            "2",
            "--dry-run",
        ],
    );
    assert_eq!(plan["removed"], 0, "old is among the last 2: {plan}");
    let run = json(&db, s, &["snapshot", "prune", "--expire-after", "30d"]);
    assert_eq!(run["removed"], 1);
    assert_eq!(listed(&db, s), [fresh.clone(), older_pinned.clone()]);

    // Deleting a pinned snapshot by hand needs --force.
    fails(
        &phony(&db.url(), s, &["snapshot", "delete", "kept"]),
        1,
        &["pinned", "--force"],
    );

    // No policy given and none configured.
    fails(
        &phony(&db.url(), s, &["snapshot", "prune"]),
        1,
        &["no retention policy", "--keep-last"],
    );

    // The store's policy applies after every create, and to a bare prune.
    let config = json(&db, s, &["store", "config", "--keep-last", "2"]);
    assert_eq!(config["retention"]["keep_last"], 2);
    let second = create(&db, s, &[]);
    let third = json(&db, s, &["snapshot", "create"]);
    assert_eq!(
        third["retention"]["removed"],
        serde_json::json!([fresh]),
        "{third}"
    );
    let third = third["id"].as_str().unwrap().to_owned();
    assert_eq!(
        listed(&db, s),
        [third.clone(), second.clone(), older_pinned.clone()]
    );
    let bare = json(&db, s, &["snapshot", "prune", "--dry-run"]);
    assert_eq!(bare["policy"]["keep_last"], 2);
    assert_eq!(bare["removed"], 0);
    let shown = ok(&phony(&db.url(), s, &["store", "config"]));
    assert!(shown.contains("keep the last 2"), "{shown}");
    let cleared = json(&db, s, &["store", "config", "--no-retention"]);
    assert!(cleared.get("retention").is_none(), "{cleared}");
    create(&db, s, &[]);
    assert_eq!(listed(&db, s).len(), 4, "no policy, nothing removed");
    assert!(json(&db, s, &["store", "verify"])["broken_snapshots"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_policies_are_usage_errors() {
    let store = tempfile::tempdir().unwrap();
    let url = "postgres://postgres@127.0.0.1:1/none";
    for (args, needle) in [
        (&["snapshot", "prune", "--expire-after", "30x"][..], "30x"),
        (&["snapshot", "prune", "--expire-after", "0s"][..], "expire"),
        (
            &["snapshot", "prune", "--expire-after", "-3d"][..],
            "expire-after",
        ),
        (&["snapshot", "prune", "--keep-last", "-1"][..], "0 or more"),
        (
            &["snapshot", "prune", "--keep-last", "ten"][..],
            "keep-last",
        ),
        (&["store", "config", "--keep-last", "-5"][..], "0 or more"),
        (&["store", "config", "--lease-ttl", "0s"][..], "lease-ttl"),
        (
            &["store", "config", "--no-retention", "--keep-last", "1"][..],
            "cannot be used",
        ),
        (&["snapshot", "pin"][..], "ID|NAME"),
    ] {
        let out = phony(url, store.path(), args);
        fails(&out, 2, &[needle]);
    }
    // On a missing store: exit 1, nothing created.
    let missing = store.path().join("missing");
    fails(
        &phony(url, &missing, &["snapshot", "prune", "--keep-last", "1"]),
        1,
        &["no phony store at"],
    );
    fails(
        &phony(url, &missing, &["store", "verify"]),
        1,
        &["no phony store at"],
    );
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_missing_and_flipped_blobs_and_the_snapshots_they_break() {
    let db = db_with_rows("verify").await;
    let store = TestStore::new().await;
    let s = store.path();
    let a = create(&db, s, &["--name", "a"]);
    db.exec("UPDATE t SET v = 'changed' WHERE id = 20000").await;
    let b = create(&db, s, &["--name", "b"]);
    let clean = ok(&phony(&db.url(), s, &["store", "verify", "--read-data"]));
    assert!(
        clean.contains("checked 2 snapshots") && clean.contains("no damage"),
        "{clean}"
    );

    // The first chunk of the table: only the last row changed, so both snapshots share it.
    let records = store.store.records().await.unwrap();
    let root = store.store.root(&records[1].root).await.unwrap();
    let chunks = store.store.table_chunks(&root.tables[0]).await.unwrap();
    assert!(chunks.len() > 2);
    let name = chunks[0].id.to_hex();
    let victim = s.join(phony_core::store::blob_key(&chunks[0].id));
    let original = std::fs::read(&victim).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x04;
    std::fs::write(&victim, &flipped).unwrap();

    ok(&phony(&db.url(), s, &["store", "verify"]));
    let out = phony(&db.url(), s, &["store", "verify", "--read-data"]);
    fails(
        &out,
        1,
        &["store is damaged", "2 of 2 snapshots cannot be restored"],
    );
    let report = crate::stdout(&out);
    assert!(
        report.contains(&format!("damaged chunk blob {name} is corrupt")),
        "{report}"
    );
    assert!(report.contains(&a) && report.contains(&b), "{report}");

    std::fs::remove_file(&victim).unwrap();
    let out = phony(&db.url(), s, &["--json", "store", "verify"]);
    let err = fails(&out, 1, &["store is damaged"]);
    let err: Value = serde_json::from_str(&err).unwrap();
    assert_eq!(err["error"]["code"], "corrupt_store");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["damaged_blobs"][0]["id"], name.as_str());
    assert_eq!(v["damaged_blobs"][0]["problem"], "missing");
    assert_eq!(v["damaged_blobs"][0]["kind"], "chunk");
    assert_eq!(v["broken_snapshots"].as_array().unwrap().len(), 2);

    // A missing manifest stops a prune before it deletes anything: what it references is
    // unknown.
    std::fs::write(&victim, &original).unwrap();
    let record: Value =
        serde_json::from_slice(&std::fs::read(s.join(format!("snapshots/{b}.json"))).unwrap())
            .unwrap();
    let root = record["root"].as_str().unwrap();
    let root_path = s.join(format!("blobs/{}/{root}", &root[..2]));
    let root_bytes = std::fs::read(&root_path).unwrap();
    std::fs::remove_file(&root_path).unwrap();
    let out = phony(&db.url(), s, &["store", "verify"]);
    fails(&out, 1, &["1 of 2 snapshots"]);
    assert!(crate::stdout(&out).contains(&format!(
        "damaged root blob {root} is missing; needed by {b}"
    )));
    let files = blob_files(s).len();
    fails(
        &phony(&db.url(), s, &["snapshot", "prune", "--keep-last", "5"]),
        1,
        &["nothing referenced was deleted", root],
    );
    assert_eq!(blob_files(s).len(), files);
    std::fs::write(&root_path, root_bytes).unwrap();
    ok(&phony(&db.url(), s, &["store", "verify", "--read-data"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_dedup_compression_and_unique_bytes() {
    let db = db_with_rows("stats").await;
    let store = TestStore::new().await;
    let s = store.path();
    let a = create(&db, s, &[]);
    db.exec("INSERT INTO t VALUES (50000, 'one more row')")
        .await;
    let b = create(&db, s, &[]);
    let stats = json(&db, s, &["store", "stats"]);
    assert_eq!(stats["snapshots"], 2);
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 1.8, "{stats}");
    assert!(
        stats["compression_ratio"].as_f64().unwrap() > 1.5,
        "{stats}"
    );
    assert_eq!(stats["unreferenced_blobs"], 0);
    let per = stats["per_snapshot"].as_array().unwrap();
    assert_eq!(per[0]["id"], b.as_str());
    assert_eq!(per[1]["id"], a.as_str());
    for p in per {
        let unique = p["unique_bytes"].as_u64().unwrap();
        assert!(
            unique > 0 && unique < p["referenced_bytes"].as_u64().unwrap() / 2,
            "{p}"
        );
    }
    // Deleting a snapshot frees exactly its unique bytes.
    let unique_a = per[1]["unique_bytes"].as_u64().unwrap();
    ok(&phony(&db.url(), s, &["snapshot", "delete", &a]));
    let after = json(&db, s, &["store", "stats"]);
    assert_eq!(after["unreferenced_bytes"].as_u64().unwrap(), unique_a);
    let text = ok(&phony(&db.url(), s, &["store", "stats"]));
    assert!(
        text.contains("after dedup") && text.contains("UNIQUE"),
        "{text}"
    );
    let pruned = json(&db, s, &["snapshot", "prune", "--keep-last", "1"]);
    assert_eq!(
        pruned["gc"]["unreferenced"]["bytes"].as_u64().unwrap(),
        unique_a
    );
}

/// Writes a lock file as another live process would (fresh by its mtime).
fn fake_lock(store: &Path, kind: &str) -> std::path::PathBuf {
    let dir = store.join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{kind}-00ff00ff.json"));
    std::fs::write(
        &path,
        format!(
            r#"{{"kind": "{kind}", "token": "00ff00ff", "pid": 1, "host": "elsewhere", "started_at": "2026-01-01T00:00:00Z"}}"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_collections_wait_for_each_other() {
    let db = TestDb::new("gc_locks").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    let s = store.path();
    let a = create(&db, s, &[]);
    ok(&phony(&db.url(), s, &["snapshot", "delete", &a]));
    let garbage = blob_files(s);
    assert!(!garbage.is_empty());

    // A snapshot being created elsewhere: the sweep is postponed, nothing is deleted.
    let creating = fake_lock(s, "create");
    let out = json(
        &db,
        s,
        &["snapshot", "prune", "--keep-last", "1", "--wait", "300ms"],
    );
    assert_eq!(out["gc"]["status"], "postponed", "{out}");
    assert_eq!(out["gc"]["creating"], 1);
    assert_eq!(blob_files(s), garbage);
    let text = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "1", "--wait", "0s"],
    ));
    assert!(text.contains("still being created"), "{text}");
    std::fs::remove_file(&creating).unwrap();

    // A collection running elsewhere: a create waits until it is gone.
    let collecting = fake_lock(s, "gc");
    let mut child = phony_cmd(&db.url(), s, &["snapshot", "create"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the create waits");
    std::fs::remove_file(&collecting).unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    assert!(started.elapsed() < Duration::from_secs(20));

    // A lock of a process that died goes stale after the lease period.
    ok(&phony(
        &db.url(),
        s,
        &["store", "config", "--lease-ttl", "2s"],
    ));
    fake_lock(s, "gc");
    fake_lock(s, "create");
    std::thread::sleep(Duration::from_millis(2500));
    let o = phony(&db.url(), s, &["snapshot", "create"]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert_eq!(
        crate::stderr(&o),
        "phony: removed a stale lock of pid 1 on elsewhere (its lease expired)\n".repeat(2),
        "whoever removes a stale lock says so"
    );
    let out = json(&db, s, &["snapshot", "prune", "--keep-last", "1"]);
    assert_eq!(out["gc"]["status"], "swept", "{out}");
    assert!(
        !s.join("locks/gc-00ff00ff.json").exists()
            && !s.join("locks/create-00ff00ff.json").exists(),
        "stale locks are removed"
    );
    ok(&phony(&db.url(), s, &["store", "verify", "--read-data"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_creates_and_a_prune_at_once_leave_every_snapshot_whole() {
    let db = db_with_rows("gc_concurrent").await;
    let store = TestStore::new().await;
    let s = store.path();
    create(&db, s, &[]);
    for round in 0..3 {
        db.exec(&format!(
            "UPDATE t SET v = md5(v) WHERE id % 7 = {round}; INSERT INTO t VALUES ({}, 'r')",
            40000 + round
        ))
        .await;
        let mut children: Vec<_> = (0..4)
            .map(|_| {
                phony_cmd(&db.url(), s, &["snapshot", "create"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        children.push(
            phony_cmd(
                &db.url(),
                s,
                &["--json", "snapshot", "prune", "--keep-last", "2"],
            )
            .spawn()
            .unwrap(),
        );
        for c in children {
            ok(&c.wait_with_output().unwrap());
        }
        let report = json(&db, s, &["store", "verify", "--read-data"]);
        assert!(
            report["damaged_blobs"].as_array().unwrap().is_empty()
                && report["broken_snapshots"].as_array().unwrap().is_empty(),
            "round {round}: {report}"
        );
    }
    // Every listed snapshot restores.
    for id in listed(&db, s) {
        let copy = db.sibling_name(&id[5..11]);
        ok(&phony(
            &db.url(),
            s,
            &["snapshot", "restore", &id, "--target", &db.url_of(&copy)],
        ));
    }
    // With nothing running, a prune reclaims everything unreferenced.
    json(&db, s, &["snapshot", "prune", "--keep-last", "2"]);
    assert_eq!(json(&db, s, &["store", "stats"])["unreferenced_blobs"], 0);
}

/// Without change tracking a snapshot re-reads every row, but each chunk that changed is
/// stored as a delta against the chunk it replaces in the newest snapshot of the database:
/// after small changes scattered over every chunk, the second snapshot adds a few percent
/// of the first one's bytes. It restores exactly, also once the first snapshot is deleted
/// and its blobs collected (the bases its deltas need stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_snapshot_stores_changed_chunks_as_deltas_against_the_last_one() {
    let db = db_with_rows("untracked_deltas").await;
    let store = TestStore::new().await;
    let s = store.path();
    let first = create(&db, s, &[]);
    let before: std::collections::HashSet<_> = blob_files(s).into_iter().collect();
    db.exec("UPDATE t SET v = v || '!' WHERE id % 499 = 0; DELETE FROM t WHERE id % 997 = 1;")
        .await;
    let expected = db.fingerprint().await;
    let second = create(&db, s, &[]);

    let new_bytes = |id: &str| {
        let shown = json(&db, s, &["snapshot", "show", id]);
        shown["new_bytes"].as_u64().unwrap()
    };
    let (first_bytes, second_bytes) = (new_bytes(&first), new_bytes(&second));
    assert!(
        second_bytes * 20 < first_bytes,
        "the second snapshot added {second_bytes} bytes, the first {first_bytes}"
    );
    let added: Vec<_> = blob_files(s)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    let deltas = added
        .iter()
        .filter(|f| std::fs::read(f).unwrap().first() == Some(&2))
        .count();
    assert!(
        deltas * 2 > added.len(),
        "{deltas} of {} new blobs are deltas",
        added.len()
    );

    ok(&phony(&db.url(), s, &["snapshot", "delete", &first]));
    let pruned = json(&db, s, &["snapshot", "prune", "--keep-last", "1"]);
    assert_eq!(pruned["gc"]["status"], "swept", "{pruned}");
    let verified = json(&db, s, &["store", "verify", "--read-data"]);
    assert_eq!(
        verified["damaged_blobs"].as_array().unwrap().len(),
        0,
        "{verified}"
    );
    let copy = db.sibling_name("copy");
    ok(&phony(
        &db.url(),
        s,
        &[
            "snapshot",
            "restore",
            &second,
            "--target",
            &db.url_of(&copy),
        ],
    ));
    assert_same(
        &db.fingerprint_of(&copy).await,
        &expected,
        "the second snapshot",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_snapshots_are_limited_by_default_and_by_the_stores_config() {
    let db = TestDb::new("safety_limits").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    let s = store.path();
    let base = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "create", "--name", "base"],
    ));
    let base = base.trim().to_owned();
    let safety_ids = |db: &TestDb| {
        json(db, s, &["snapshot", "list"])["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["origin"] == "safety")
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let mut taken = Vec::new();
    for n in 0..7 {
        db.exec(&format!("INSERT INTO t VALUES ({})", n + 100))
            .await;
        let v = json(&db, s, &["snapshot", "restore", "base"]);
        taken.push(v["safety_snapshot"].as_str().unwrap().to_owned());
    }
    // The last 5 stay, newest first; the manual snapshot is not touched.
    let kept = safety_ids(&db);
    let newest: Vec<String> = taken.iter().rev().take(5).cloned().collect();
    assert_eq!(kept, newest);
    assert!(listed(&db, s).contains(&base));

    let shown = ok(&phony(&db.url(), s, &["store", "config"]));
    assert!(
        shown.contains("keep the last 5 per database, none older than 7days"),
        "{shown}"
    );
    let config = json(&db, s, &["store", "config", "--safety-keep-last", "1"]);
    assert_eq!(config["safety_retention"]["keep_last"], 1);
    ok(&phony(&db.url(), s, &["snapshot", "pin", &kept[4]]));
    db.exec("INSERT INTO t VALUES (10)").await;
    let v = json(&db, s, &["snapshot", "restore", "base"]);
    let just = v["safety_snapshot"].as_str().unwrap().to_owned();
    assert_eq!(
        safety_ids(&db),
        [just, kept[4].clone()],
        "the new one and the pinned one"
    );

    ok(&phony(
        &db.url(),
        s,
        &["store", "config", "--safety-keep-all"],
    ));
    db.exec("INSERT INTO t VALUES (11)").await;
    json(&db, s, &["snapshot", "restore", "base"]);
    assert_eq!(safety_ids(&db).len(), 3, "no limit");
}
