//! Stores on S3 (`--store s3://bucket/prefix`), against the S3-compatible test server and
//! the real PostgreSQL: every command works as on a directory, and failures are one line.

use std::path::Path;

use phony_tests::s3::TestBucket;
use phony_tests::{assert_same, TestDb};
use serde_json::Value;

use crate::{fails, ok, phony, phony_cmd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_on_an_s3_store() {
    let Some(bucket) = TestBucket::new("every_command_works_on_an_s3_store") else {
        return;
    };
    let db = TestDb::rich("cli_s3").await;
    let url = bucket.url("team/db");
    let store = Path::new(&url);
    let before = db.fingerprint().await;

    let id = ok(&phony(
        &db.url(),
        store,
        &["snapshot", "create", "--name", "clean"],
    ));
    assert!(id.trim().starts_with("snap_"), "{id}");
    let keys = bucket.keys().await;
    assert!(keys.iter().all(|k| k.starts_with("team/db/")), "{keys:?}");
    assert!(
        keys.contains(&"team/db/phony-store.json".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("team/db/blobs/")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("locks/")),
        "locks released: {keys:?}"
    );

    let list = ok(&phony(&db.url(), store, &["snapshot", "list"]));
    assert!(list.contains("clean"), "{list}");
    let show = ok(&phony(&db.url(), store, &["snapshot", "show", "clean"]));
    assert!(show.contains("orders"), "{show}");

    db.exec("DELETE FROM public.orders; SELECT nextval('public.ticket_seq')")
        .await;
    let diff = ok(&phony(&db.url(), store, &["snapshot", "diff", "clean"]));
    assert!(diff.contains("orders"), "{diff}");
    ok(&phony(&db.url(), store, &["snapshot", "restore", "clean"]));
    assert_same(&db.fingerprint().await, &before, "after a restore from S3");

    // Pin, retention, prune with its garbage collection, verify and stats.
    ok(&phony(&db.url(), store, &["snapshot", "pin", "clean"]));
    ok(&phony(
        &db.url(),
        store,
        &["store", "config", "--keep-last", "1"],
    ));
    db.exec("DELETE FROM public.customers WHERE id % 2 = 0")
        .await;
    ok(&phony(
        &db.url(),
        store,
        &["snapshot", "create", "--name", "later"],
    ));
    ok(&phony(&db.url(), store, &["snapshot", "prune", "--yes"]));
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store,
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    let names: Vec<_> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(names.contains(&"clean".to_owned()), "pinned stays: {list}");
    let verify = ok(&phony(
        &db.url(),
        store,
        &["store", "verify", "--read-data"],
    ));
    assert!(!verify.to_lowercase().contains("missing"), "{verify}");
    let stats = ok(&phony(&db.url(), store, &["store", "stats"]));
    assert!(!stats.is_empty());
    ok(&phony(&db.url(), store, &["snapshot", "unpin", "clean"]));
    ok(&phony(
        &db.url(),
        store,
        &["snapshot", "restore", "clean", "--no-safety-snapshot"],
    ));
    assert_same(&db.fingerprint().await, &before, "after a prune on S3");
    ok(&phony(&db.url(), store, &["snapshot", "delete", "clean"]));
    ok(&phony(
        &db.url(),
        store,
        &["snapshot", "prune", "--keep-last", "0", "--yes"],
    ));
    ok(&phony(&db.url(), store, &["store", "verify"]));
    assert!(!bucket.keys().await.iter().any(|k| k.contains("locks/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_s3_stores_fail_in_one_line_without_secrets() {
    let Some(bucket) = TestBucket::new("bad_s3_stores_fail_in_one_line_without_secrets") else {
        return;
    };
    let db = TestDb::new("cli_s3_bad").await;

    let missing = format!("s3://{}-none/x", bucket.name);
    let err = fails(
        &phony(&db.url(), Path::new(&missing), &["snapshot", "create"]),
        1,
        &["does not exist"],
    );
    assert!(!err.contains("phony-test-secret"), "{err}");
    let err = fails(
        &phony(&db.url(), Path::new(&missing), &["snapshot", "list"]),
        1,
        &["does not exist"],
    );
    assert!(!err.contains("phony-test-secret"), "{err}");

    fails(
        &phony(&db.url(), Path::new("gs://bucket/x"), &["snapshot", "list"]),
        1,
        &["unsupported store location scheme \"gs\""],
    );

    // A prefix that holds something other than a store.
    phony_core::Backend::put(
        &bucket.backend(""),
        "other/report.csv",
        bytes::Bytes::from_static(b"a,b\n"),
    )
    .await
    .unwrap();
    let url = bucket.url("other");
    fails(
        &phony(&db.url(), Path::new(&url), &["snapshot", "create"]),
        1,
        &["holds objects", "no phony store"],
    );
    fails(
        &phony(&db.url(), Path::new(&url), &["snapshot", "list"]),
        1,
        &["no phony store"],
    );

    // Nothing answers at the endpoint: said in seconds, in one line.
    let started = std::time::Instant::now();
    let out = phony_cmd(
        &db.url(),
        Path::new(&bucket.url("x")),
        &["snapshot", "list"],
    )
    .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    .output()
    .unwrap();
    let err = fails(
        &out,
        1,
        &["cannot reach the S3 endpoint http://127.0.0.1:9"],
    );
    assert!(!err.contains("phony-test-secret"), "{err}");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

/// Asserts failure with exit code 1 and returns the error line (the last: a lock that could
/// not be removed from a server that went away is warned about before it).
fn failed(out: &std::process::Output) -> String {
    let err = crate::stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("phony: error: "), "{err}");
    assert!(!err.contains("phony-test-secret"), "{err}");
    last
}

/// Waits until the bucket holds at least `n` blobs, while `child` runs.
async fn wait_for_blobs(bucket: &TestBucket, child: &mut std::process::Child, n: usize) {
    let started = std::time::Instant::now();
    while bucket
        .keys()
        .await
        .iter()
        .filter(|k| k.contains("/blobs/"))
        .count()
        < n
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "it ended before the cut"
        );
        assert!(started.elapsed().as_secs() < 120);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The S3 server goes away in the middle of a snapshot, a copy and an export: each fails
/// in one line and leaves no record (nor object); a rerun succeeds and reuses what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_going_away_midway_leaves_no_record_and_a_rerun_reuses_what_arrived() {
    let Some(bucket) = TestBucket::new("s3_going_away_midway") else {
        return;
    };
    let db = TestDb::new("cli_s3_cut").await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, a text, b text); \
         INSERT INTO big SELECT g, md5(g::text), md5((g * 7)::text) || md5((g * 3)::text) \
         FROM generate_series(1, 300000) g",
    )
    .await;
    let url = bucket.url("cut");
    let store = Path::new(&url);

    // A snapshot.
    let relay = phony_tests::s3::CuttableRelay::start(bucket.endpoint()).await;
    let mut child = phony_cmd(&db.url(), store, &["snapshot", "create", "--name", "big"])
        .env("AWS_ENDPOINT_URL", &relay.endpoint)
        .spawn()
        .unwrap();
    wait_for_blobs(&bucket, &mut child, 10).await;
    relay.cut();
    let err = failed(&child.wait_with_output().unwrap());
    assert!(err.contains("cannot reach the S3 endpoint"), "{err}");
    let keys = bucket.keys().await;
    assert!(
        !keys.iter().any(|k| k.contains("/snapshots/")),
        "no record: {keys:?}"
    );
    let rerun: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store,
        &["--json", "snapshot", "create", "--name", "big"],
    )))
    .unwrap();
    assert!(
        rerun["new_bytes"].as_u64().unwrap() < rerun["stored_bytes"].as_u64().unwrap(),
        "the rerun reused what had arrived: {rerun}"
    );
    ok(&phony(&db.url(), store, &["store", "verify"]));

    // A copy into S3.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().display().to_string();
    ok(&phony(&db.url(), store, &["store", "copy", &url, &local]));
    let dest = bucket.url("copied");
    let relay = phony_tests::s3::CuttableRelay::start(bucket.endpoint()).await;
    let mut child = phony_cmd(&db.url(), store, &["store", "copy", &local, &dest])
        .env("AWS_ENDPOINT_URL", &relay.endpoint)
        .spawn()
        .unwrap();
    let before = bucket
        .keys()
        .await
        .iter()
        .filter(|k| k.contains("/blobs/"))
        .count();
    wait_for_blobs(&bucket, &mut child, before + 10).await;
    relay.cut();
    failed(&child.wait_with_output().unwrap());
    assert!(!bucket
        .keys()
        .await
        .iter()
        .any(|k| k.starts_with("copied/snapshots/")));
    let copied: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store,
        &["--json", "store", "copy", &local, &dest],
    )))
    .unwrap();
    assert!(
        copied["objects_skipped"].as_u64().unwrap() >= 10,
        "{copied}"
    );

    // An export to S3: no object appears.
    let relay = phony_tests::s3::CuttableRelay::start(bucket.endpoint()).await;
    let target = format!("s3://{}/exports/big.sql", bucket.name);
    let child = phony_cmd(
        &db.url(),
        store,
        &["snapshot", "export", "big", "-o", &target],
    )
    .env("AWS_ENDPOINT_URL", &relay.endpoint)
    .spawn()
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    relay.cut();
    let out = child.wait_with_output().unwrap();
    // A cut that lands on the upload's last request (the one that completes it) may lose
    // only the answer: then the object is there, and whole; otherwise there is none.
    let mut cut_short = None;
    if !out.status.success() {
        failed(&out);
        let keys = bucket.keys().await;
        assert!(
            keys.iter()
                .all(|k| k == "exports/big.sql" || !k.starts_with("exports/")),
            "{keys:?}"
        );
        cut_short = bucket.size("exports/big.sql").await;
    }
    ok(&phony(
        &db.url(),
        store,
        &["snapshot", "export", "big", "-o", &target, "--force"],
    ));
    assert!(bucket.keys().await.contains(&"exports/big.sql".to_owned()));
    if let Some(len) = cut_short {
        assert_eq!(
            Some(len),
            bucket.size("exports/big.sql").await,
            "a partial export"
        );
    }
}

/// Writes a lock object as another live process would (fresh by its `Last-Modified`, the
/// server's clock).
async fn fake_lock(bucket: &TestBucket, prefix: &str, kind: &str) -> String {
    let key = format!("{prefix}/locks/{kind}-00ff00ff.json");
    let body = format!(
        r#"{{"kind": "{kind}", "token": "00ff00ff", "pid": 1, "host": "elsewhere", "started_at": "2026-01-01T00:00:00Z"}}"#
    );
    phony_core::Backend::put(&bucket.backend(""), &key, bytes::Bytes::from(body))
        .await
        .unwrap();
    key
}

/// Garbage collection on S3: creates and a prune at once leave every snapshot whole; a
/// create waits for a collection's lock; locks go stale by the server's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_prunes_at_once_on_s3_leave_every_snapshot_whole() {
    let Some(bucket) = TestBucket::new("creates_and_prunes_at_once_on_s3") else {
        return;
    };
    let db = TestDb::new("cli_s3_gc").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    )
    .await;
    let url = bucket.url("gc");
    let s = Path::new(&url);
    ok(&phony(&db.url(), s, &["snapshot", "create"]));
    for round in 0..2 {
        db.exec(&format!(
            "UPDATE t SET v = md5(v) WHERE id % 7 = {round}; INSERT INTO t VALUES ({}, 'r')",
            40000 + round
        ))
        .await;
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                phony_cmd(&db.url(), s, &["snapshot", "create"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        children.push(
            phony_cmd(&db.url(), s, &["snapshot", "prune", "--keep-last", "2"])
                .spawn()
                .unwrap(),
        );
        for c in children {
            ok(&c.wait_with_output().unwrap());
        }
        let report: Value = serde_json::from_str(&ok(&phony(
            &db.url(),
            s,
            &["--json", "store", "verify", "--read-data"],
        )))
        .unwrap();
        assert!(
            report["damaged_blobs"].as_array().unwrap().is_empty()
                && report["broken_snapshots"].as_array().unwrap().is_empty(),
            "round {round}: {report}"
        );
    }

    // A collection running elsewhere: a create waits until its lock is gone.
    let collecting = fake_lock(&bucket, "gc", "gc").await;
    let mut child = phony_cmd(&db.url(), s, &["snapshot", "create"])
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(child.try_wait().unwrap().is_none(), "the create waits");
    phony_core::Backend::delete(&bucket.backend(""), &collecting)
        .await
        .unwrap();
    ok(&child.wait_with_output().unwrap());

    // Locks of processes that died go stale after the lease period, by the server's clock.
    ok(&phony(
        &db.url(),
        s,
        &["store", "config", "--lease-ttl", "2s"],
    ));
    fake_lock(&bucket, "gc", "gc").await;
    fake_lock(&bucket, "gc", "create").await;
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    ok(&phony(&db.url(), s, &["snapshot", "create"]));
    let out: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        s,
        &["--json", "snapshot", "prune", "--keep-last", "1"],
    )))
    .unwrap();
    assert_eq!(out["gc"]["status"], "swept", "{out}");
    assert!(
        !bucket.keys().await.iter().any(|k| k.contains("/locks/")),
        "stale locks are removed"
    );
    ok(&phony(&db.url(), s, &["store", "verify", "--read-data"]));
}

/// Change tracking with an S3 store: tracked snapshots and restores, a restore into a new
/// database, the safety snapshot undoing a restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_snapshots_and_restores_on_s3() {
    let Some(bucket) = TestBucket::new("tracked_snapshots_and_restores_on_s3") else {
        return;
    };
    let db = TestDb::rich("cli_s3_track").await;
    let url = bucket.url("tracked");
    let s = Path::new(&url);
    ok(&phony(&db.url(), s, &["track", "on"]));
    let clean = db.fingerprint().await;
    ok(&phony(
        &db.url(),
        s,
        &["snapshot", "create", "--name", "clean"],
    ));
    db.exec(
        "DELETE FROM public.orders WHERE id = (SELECT max(id) FROM public.orders);
         UPDATE public.customers SET name = name || '!' WHERE id % 2 = 0;
         SELECT nextval('public.ticket_seq')",
    )
    .await;
    let dirty = db.fingerprint().await;
    let restored: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        s,
        &["--json", "snapshot", "restore", "clean"],
    )))
    .unwrap();
    assert_eq!(restored["path"], "delta", "{restored}");
    assert_same(&db.fingerprint().await, &clean, "a tracked restore from S3");
    let safety = restored["safety_snapshot"].as_str().unwrap().to_owned();
    let copy = db.sibling_name("s3new");
    ok(&phony(
        &db.url(),
        s,
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
        "the safety snapshot, restored from S3",
    );
    ok(&phony(&db.url(), s, &["track", "off"]));
}

/// Credentials the server refuses: one line that says so, never the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_one_line_without_the_secret() {
    let Some(endpoint) = phony_tests::s3::auth_endpoint("refused_credentials") else {
        return;
    };
    let db = TestDb::new("cli_s3_auth").await;
    for args in [
        &["snapshot", "list"][..],
        &["snapshot", "create"][..],
        &["store", "copy", "s3://phony-auth/a", "memory://"][..],
    ] {
        let out = phony_cmd(&db.url(), Path::new("s3://phony-auth/a"), args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "AKIAPHONYWRONGKEY")
            .env("AWS_SECRET_ACCESS_KEY", "phony-wrong-secret-value")
            .output()
            .unwrap();
        let err = fails(
            &out,
            1,
            &["access denied", "AWS_ACCESS_KEY_ID", "s3://phony-auth/a"],
        );
        assert!(!err.contains("phony-wrong-secret-value"), "{err}");
        assert_eq!(
            err.matches("s3://phony-auth/a").count(),
            1,
            "said once: {err}"
        );
    }
}
