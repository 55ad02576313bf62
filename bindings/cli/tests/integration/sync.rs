//! `phony sync` (masked copies of another database, with snapshots either side), `phony run`
//! (a command wrapped in snapshots) and `phony snapshot timeline`.

use phony_tests::{TestDb, TestStore};
use serde_json::Value;

use crate::{ok, phony, stderr};

const SOURCE: &str = "
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, name text, phone text,
                    ssn text, note text, age int);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id int NOT NULL REFERENCES users (id),
                     user_email text, total numeric);
INSERT INTO users SELECT g, 'user' || g || '@corp.example.com', 'Person Number' || g,
       '+1 (555) 000-' || lpad(g::text, 4, '0'), 'ssn-' || g, 'private ' || g, 20 + g % 50
  FROM generate_series(1, 300) g;
INSERT INTO orders SELECT g, 1 + g % 300, 'user' || (1 + g % 300) || '@corp.example.com', g * 1.5
  FROM generate_series(1, 900) g;
";

const RULES: &str = "
# PII never leaves production unmasked
public.users.id      hash
public.orders.user_id hash
public.users.email   email
public.orders.user_email email
public.users.name    name
public.users.phone   phone
public.users.ssn     null
public.users.note    fixed 'redacted'
";

fn snapshots(db: &TestDb, store: &TestStore) -> Vec<Value> {
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    list["snapshots"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masked_sync_replaces_the_database_with_snapshots_either_side() {
    let source = TestDb::new("sync_src").await;
    source.exec(SOURCE).await;
    let staging = TestDb::new("sync_stg").await;
    staging
        .exec("CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (1);")
        .await;
    let store = TestStore::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("mask-rules.txt");
    std::fs::write(&rules, RULES).unwrap();
    // The source's own change tracking is left alone: a sync writes nothing there.
    let source_store = TestStore::new().await;
    ok(&phony(&source.url(), source_store.path(), &["track", "on"]));
    let marks_before: i64 = source.value("SELECT count(*) FROM phony.marks").await;

    let out = ok(&phony(
        &staging.url(),
        store.path(),
        &[
            "sync",
            "--from",
            &source.url(),
            "--mask",
            rules.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("sync #1, 8 columns masked"), "{out}");
    let marks_after: i64 = source.value("SELECT count(*) FROM phony.marks").await;
    assert_eq!(
        marks_after, marks_before,
        "nothing is written to the source"
    );

    // The staging database holds the source's tables, masked column by column.
    let c = staging.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 300);
    let gone: bool = c
        .query_one("SELECT to_regclass('public.leftover') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(gone, "the sync replaces the database's contents");
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE email LIKE 'user%@corp.example.com'),
                    count(*) FILTER (WHERE email ~ '^[a-z0-9]+@[a-z]+\\.[a-z]+\\.com$'),
                    count(DISTINCT email),
                    count(*) FILTER (WHERE name LIKE 'Person Number%'),
                    count(*) FILTER (WHERE name ~ '^[A-Z][a-z]+ [A-Z][a-z]+[0-9]+$'),
                    count(*) FILTER (WHERE phone LIKE '+1 (555) 000-%'),
                    count(*) FILTER (WHERE phone ~ '^\\+[0-9] \\([0-9]{3}\\) [0-9]{3}-[0-9]{4}$'),
                    count(*) FILTER (WHERE ssn IS NULL),
                    count(*) FILTER (WHERE note = 'redacted'),
                    count(*) FILTER (WHERE id BETWEEN 1 AND 300),
                    sum(age)
             FROM users",
            &[],
        )
        .await
        .unwrap();
    let v: Vec<i64> = (0..11).map(|i| row.get(i)).collect();
    assert_eq!(v[0], 0, "no e-mail address survives");
    assert_eq!(v[1], 300, "addresses keep their shape");
    assert_eq!(v[2], 300, "distinct addresses stay distinct");
    assert_eq!(v[3], 0, "no name survives");
    assert_eq!(v[4], 300, "names keep their shape");
    assert_eq!(v[5], 0, "no phone number survives");
    assert_eq!(v[6], 300, "phone numbers keep their shape");
    assert_eq!(v[7], 300);
    assert_eq!(v[8], 300);
    assert!(v[9] < 10, "ids are permuted: {}", v[9]);
    let ages: i64 = source.value("SELECT sum(age) FROM users").await;
    assert_eq!(v[10], ages, "columns without a rule are copied as they are");
    // Foreign keys stay consistent: both sides use the same rules (the constraint was
    // rebuilt after the load, so it held), and the masked e-mails still match.
    let row = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE o.user_email = u.email)
             FROM orders o JOIN users u ON u.id = o.user_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (900, 900));

    // A snapshot on either side, labelled with the sync's number; the first undoes it.
    let list = snapshots(&staging, &store);
    let origins: Vec<&str> = list.iter().map(|s| s["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["sync-after", "sync-before"], "{list:?}");
    assert!(list.iter().all(|s| s["labels"]["sync"] == "1"), "{list:?}");
    let timeline = ok(&phony(
        &staging.url(),
        store.path(),
        &["snapshot", "timeline", "--width", "200"],
    ));
    assert!(
        timeline.contains("Before Sync #1")
            && timeline.contains("Sync #1")
            && timeline.contains("Current"),
        "{timeline}"
    );
    let before = list[1]["id"].as_str().unwrap();
    ok(&phony(
        &staging.url(),
        store.path(),
        &["snapshot", "restore", before],
    ));
    let left: i64 = staging.value("SELECT count(*) FROM leftover").await;
    assert_eq!(left, 1);

    // A second sync without snapshots takes none, and is number 2 nonetheless.
    let out = ok(&phony(
        &staging.url(),
        store.path(),
        &["sync", "--from", &source.url(), "--no-snapshots"],
    ));
    assert!(out.contains("sync #2"), "{out}");
    let email: String = staging.value("SELECT email FROM users WHERE id = 1").await;
    assert_eq!(
        email, "user1@corp.example.com",
        "without rules nothing is masked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_or_source_is_refused_before_anything_runs() {
    let source = TestDb::new("sync_bad_src").await;
    source.exec(SOURCE).await;
    let staging = TestDb::new("sync_bad_stg").await;
    staging
        .exec("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);")
        .await;
    let before = staging.fingerprint().await;
    let store = TestStore::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad-rules.txt");
    for (text, needle) in [
        ("public.users.nope email\n", "no such column"),
        ("public.nope.email email\n", "does not have"),
        ("public.users.email null\n", "NOT NULL"),
        ("public.users.age email\n", "text types"),
        ("public.users.email scramble\n", "unknown rule"),
    ] {
        std::fs::write(&rules, text).unwrap();
        let out = phony(
            &staging.url(),
            store.path(),
            &[
                "sync",
                "--from",
                &source.url(),
                "--mask",
                rules.to_str().unwrap(),
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{text}: {err}");
    }
    let out = phony(
        &staging.url(),
        store.path(),
        &["sync", "--from", "postgres://postgres@127.0.0.1:1/nowhere"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("connecting to the source"),
        "{}",
        stderr(&out)
    );
    phony_tests::assert_same(&staging.fingerprint().await, &before, "after refused syncs");
    assert!(snapshots(&staging, &store).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wraps_a_command_in_snapshots_and_passes_its_status_on() {
    let db = TestDb::new("run_wrap").await;
    db.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1);")
        .await;
    let store = TestStore::new().await;

    let out = phony(
        &db.url(),
        store.path(),
        &[
            "run",
            "--name",
            "deploy-{when}",
            "--",
            "sh",
            "-c",
            "echo from the job; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("from the job"));
    let list = snapshots(&db, &store);
    let names: Vec<&str> = list.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["deploy-after", "deploy-before"]);
    assert_eq!(list[0]["origin"], "sync-after");
    assert_eq!(list[0]["labels"]["exit_status"], "3");
    assert_eq!(list[0]["labels"]["command"], "sh");
    assert_eq!(list[1]["origin"], "sync-before");

    // Only before; the command's success is phony's.
    let out = phony(&db.url(), store.path(), &["run", "--before", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(snapshots(&db, &store).len(), 3);

    // A command that does not exist: one line, exit 127, no snapshot.
    let out = phony(
        &db.url(),
        store.path(),
        &["run", "--", "phony-no-such-command-xyz"],
    );
    assert_eq!(out.status.code(), Some(127));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("command not found: phony-no-such-command-xyz"),
        "{err}"
    );
    assert_eq!(snapshots(&db, &store).len(), 3);
}
