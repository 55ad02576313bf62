//! Keys that are equal but spelled otherwise (another case under a nondeterministic
//! collation, of `text` or `varchar`, or under `citext`, another scale of a `numeric`, `-0`
//! for `0`, arrays and composites of those): restores to either snapshot, forward and back, tracked and not, keep every
//! row, spelled as that snapshot has it.

use phony_postgres::{capture, CaptureOptions, RestorePath};
use phony_tests::{assert_same, TestDb, TestStore};

const SCHEMA: &str =
    "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE EXTENSION IF NOT EXISTS citext;
    CREATE TYPE pair AS (n numeric, s text COLLATE ci);
    CREATE TABLE icu (k text COLLATE ci PRIMARY KEY, n int);
    CREATE TABLE cit (k citext PRIMARY KEY, n int);
    CREATE TABLE num (k numeric PRIMARY KEY, n int);
    CREATE TABLE fl (k float8 PRIMARY KEY, n int);
    CREATE TABLE arr (k numeric[] PRIMARY KEY, n int);
    CREATE TABLE comp (k pair PRIMARY KEY, n int);
    CREATE TABLE tz (k timestamptz PRIMARY KEY, n int);
    CREATE TABLE multi (a text COLLATE ci, b numeric, n int, PRIMARY KEY (a, b));
    CREATE TABLE icu_only (k text COLLATE ci PRIMARY KEY);
    CREATE TABLE vc (k varchar(40) COLLATE ci PRIMARY KEY, n int);
    INSERT INTO icu VALUES ('User1@example.com', 1), ('other@example.com', 2);
    INSERT INTO cit VALUES ('User1@example.com', 1), ('other@example.com', 2);
    INSERT INTO num VALUES (1.0, 1), (2, 2);
    INSERT INTO fl VALUES (0, 1), (2, 2);
    INSERT INTO arr VALUES ('{1.0,2}', 1), ('{3}', 2);
    INSERT INTO comp VALUES ('(1.0,Abc)', 1), ('(2,x)', 2);
    INSERT INTO tz VALUES ('2024-01-01 00:00:00+00', 1), ('2024-06-01 00:00:00+00', 2);
    INSERT INTO multi VALUES ('Ab', 1.0, 1), ('cd', 2, 2);
    INSERT INTO icu_only VALUES ('User1@example.com'), ('other@example.com');
    INSERT INTO vc VALUES ('User1@example.com', 1), ('other@example.com', 2);";

/// Each key respelled (equal to the old one), some rows' other columns changed too.
const RESPELL: &str = "UPDATE icu SET k = 'user1@example.com' WHERE k = 'User1@example.com';
    UPDATE cit SET k = 'USER1@example.com', n = 5 WHERE k = 'user1@example.com';
    UPDATE num SET k = 1.00 WHERE k = 1;
    UPDATE fl SET k = '-0' WHERE k = 0;
    UPDATE arr SET k = '{1.00,2.0}' WHERE k = '{1,2}';
    UPDATE comp SET k = '(1.000,ABC)', n = 7 WHERE k = '(1,abc)'::pair;
    UPDATE tz SET k = '2024-01-01 01:00:00+01', n = 3 WHERE n = 1;
    UPDATE multi SET a = 'AB', b = 1.00 WHERE a = 'ab';
    UPDATE icu_only SET k = 'user1@EXAMPLE.com' WHERE k = 'user1@example.com';
    UPDATE vc SET k = 'user1@example.com' WHERE k = 'User1@example.com';";

async fn forward_and_back(tracked: bool) {
    let db = TestDb::new(&format!("keq_{}", tracked as u8)).await;
    db.exec(SCHEMA).await;
    if tracked {
        db.track_on().await;
    }
    db.quiesce().await;
    let store = TestStore::new().await;
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let fa = db.fingerprint().await;
    db.exec(RESPELL).await;
    let fb = db.fingerprint().await;
    assert_ne!(fa.tables, fb.tables);
    db.quiesce().await;
    let b = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    for (step, (manifest, expected)) in [(&a, &fa), (&b, &fb), (&a, &fa), (&b, &fb)]
        .into_iter()
        .map(|(c, f)| (&c.manifest, f))
        .enumerate()
    {
        let report = db.restore(&store, manifest).await;
        let what = format!("tracked: {tracked}, step {step}");
        assert_eq!(
            report.path,
            RestorePath::Delta,
            "{what}: {:?}",
            report.full_reason
        );
        assert_eq!(report.tracked, tracked, "{what}");
        for change in &report.changes {
            assert_eq!(change.deleted, change.inserted, "{what}: {change:?}");
        }
        assert_same(&db.fingerprint().await, expected, &what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respelled_keys_come_back_untracked() {
    forward_and_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respelled_keys_come_back_tracked() {
    forward_and_back(true).await;
}
