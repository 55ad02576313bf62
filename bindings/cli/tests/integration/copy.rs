//! `phony store copy`: only what the destination lacks travels, records last, any backend
//! to any backend.

use std::path::Path;
use std::time::{Duration, Instant};

use phony_tests::s3::TestBucket;
use phony_tests::{assert_same, TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony, phony_cmd};

fn copy(db: &TestDb, from: &str, to: &str, snapshots: &[&str]) -> Value {
    let mut args = vec!["--json", "store", "copy", from, to];
    args.extend_from_slice(snapshots);
    serde_json::from_str(&ok(&phony(&db.url(), Path::new(from), &args))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_sends_only_what_the_destination_lacks_and_restores_exactly() {
    let db = TestDb::rich("cli_copy").await;
    let (a, b) = (TestStore::new().await, TestStore::new().await);
    let (a_url, b_url) = (
        a.path().display().to_string(),
        b.path().display().to_string(),
    );
    let clean = db.fingerprint().await;
    ok(&phony(
        &db.url(),
        a.path(),
        &["snapshot", "create", "--name", "clean"],
    ));
    db.exec("UPDATE public.customers SET name = name || '!' WHERE id = 1")
        .await;
    ok(&phony(
        &db.url(),
        a.path(),
        &["snapshot", "create", "--name", "later"],
    ));
    let later = db.fingerprint().await;

    let first = copy(&db, &a_url, &b_url, &["clean"]);
    assert_eq!(first["copied"].as_array().unwrap().len(), 1, "{first}");
    let first_bytes = first["bytes_sent"].as_u64().unwrap();
    assert!(first_bytes > 0 && first["objects_skipped"] == 0, "{first}");

    // Again: nothing travels.
    let again = copy(&db, &a_url, &b_url, &["clean"]);
    assert_eq!(
        (again["bytes_sent"].as_u64(), again["objects_sent"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    assert_eq!(again["present"].as_array().unwrap().len(), 1, "{again}");

    // All: only the second snapshot's new blobs travel, a small part of the first copy.
    let all = copy(&db, &a_url, &b_url, &[]);
    assert_eq!(all["copied"].as_array().unwrap().len(), 1, "{all}");
    assert!(all["objects_skipped"].as_u64().unwrap() > 0, "{all}");
    assert!(
        all["bytes_sent"].as_u64().unwrap() < first_bytes,
        "{all} against {first}"
    );
    let text = ok(&phony(
        &db.url(),
        a.path(),
        &["store", "copy", &a_url, &b_url],
    ));
    assert!(
        text.contains("copied 0 snapshot(s)")
            && text.contains("2 already there")
            && text.contains("sent 0 object(s)"),
        "{text}"
    );

    ok(&phony(
        &db.url(),
        b.path(),
        &["store", "verify", "--read-data"],
    ));
    ok(&phony(
        &db.url(),
        b.path(),
        &["snapshot", "restore", "clean"],
    ));
    assert_same(
        &db.fingerprint().await,
        &clean,
        "after restoring a copied snapshot",
    );

    fails(
        &phony(
            &db.url(),
            a.path(),
            &["store", "copy", &a_url, &b_url, "nope"],
        ),
        1,
        &["nope"],
    );

    // Through S3 and back: directory → S3 → directory restores exactly.
    let Some(bucket) = TestBucket::new("a_copy_sends_only_what_the_destination_lacks") else {
        return;
    };
    let s3 = bucket.url("copied");
    let c = TestStore::new().await;
    let c_url = c.path().display().to_string();
    let up = copy(&db, &a_url, &s3, &[]);
    assert_eq!(up["copied"].as_array().unwrap().len(), 2, "{up}");
    assert_eq!(copy(&db, &a_url, &s3, &[])["bytes_sent"], 0);
    let down = copy(&db, &s3, &c_url, &["later"]);
    assert_eq!(down["copied"].as_array().unwrap().len(), 1, "{down}");
    db.exec("DELETE FROM public.orders").await;
    ok(&phony(
        &db.url(),
        c.path(),
        &["snapshot", "restore", "later", "--no-safety-snapshot"],
    ));
    assert_same(
        &db.fingerprint().await,
        &later,
        "after a copy through S3 and back",
    );
    ok(&phony(
        &db.url(),
        c.path(),
        &["store", "verify", "--read-data"],
    ));
}

/// A copy killed midway leaves no record in the destination; a rerun completes it and
/// does not send again what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_copy_leaves_no_record_and_a_rerun_sends_only_the_rest() {
    let Some(bucket) = TestBucket::new("a_killed_copy_leaves_no_record") else {
        return;
    };
    let db = TestDb::new("cli_copy_kill").await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, a text, b text); \
         INSERT INTO big SELECT g, md5(g::text), md5((g * 7)::text) || md5((g * 3)::text) \
         FROM generate_series(1, 400000) g",
    )
    .await;
    let fingerprint = db.fingerprint().await;
    let a = TestStore::new().await;
    let a_url = a.path().display().to_string();
    ok(&phony(
        &db.url(),
        a.path(),
        &["snapshot", "create", "--name", "big"],
    ));
    let s3 = bucket.url("dest");

    let mut child = phony_cmd(&db.url(), a.path(), &["store", "copy", &a_url, &s3])
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let blobs = bucket
            .keys()
            .await
            .iter()
            .filter(|k| k.contains("/blobs/"))
            .count();
        if blobs >= 20 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let keys = bucket.keys().await;
    assert!(
        !keys.iter().any(|k| k.contains("/snapshots/")),
        "no record: {keys:?}"
    );
    let arrived = keys.iter().filter(|k| k.contains("/blobs/")).count() as u64;

    let rerun = copy(&db, &a_url, &s3, &[]);
    assert_eq!(rerun["copied"].as_array().unwrap().len(), 1, "{rerun}");
    assert!(
        rerun["objects_skipped"].as_u64().unwrap() >= arrived,
        "{rerun}: {arrived} had arrived"
    );

    db.exec("DROP TABLE big").await;
    ok(&phony(
        &db.url(),
        Path::new(&s3),
        &["snapshot", "restore", "big", "--no-safety-snapshot"],
    ));
    assert_same(
        &db.fingerprint().await,
        &fingerprint,
        "after a resumed copy",
    );
}
