//! `Engine::sync` against the real server: numbered syncs with their snapshots, the checks
//! that refuse a sync before anything is written, and a sync cancelled before its load
//! commits (the database unchanged).

use std::sync::Arc;

use phony_core::mask::MaskRules;
use phony_core::{Origin, StoreConfig};
use phony_engine::{
    Cancel, Engine, Error, ErrorKind, Part, ProgressSink, RunOptions, Step, SyncRequest,
};
use phony_tests::TestDb;

async fn fixture(label: &str) -> (TestDb, TestDb, tempfile::TempDir, Engine) {
    let source = TestDb::new(&format!("{label}_src")).await;
    source
        .exec(
            "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, age int);
             INSERT INTO people SELECT g, 'p' || g || '@example.com', g % 90
               FROM generate_series(1, 500) g;",
        )
        .await;
    let db = TestDb::new(&format!("{label}_dst")).await;
    db.exec("CREATE TABLE old (x int); INSERT INTO old VALUES (1);")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    (source, db, dir, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_are_numbered_masked_and_snapshotted_either_side() {
    let (source, db, _dir, engine) = fixture("engine_sync").await;
    let request = SyncRequest {
        rules: MaskRules::parse("public.people.email email\n").unwrap(),
        ..SyncRequest::from(source.target())
    };
    let synced = engine
        .sync(&db.target(), request.clone(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(synced.number, 1);
    assert_eq!(synced.masked_columns, 1);
    assert_eq!(synced.report.rows, 500);
    let before = synced.before.unwrap();
    let after = synced.after.unwrap();
    assert_eq!(before.origin, Origin::SyncBefore);
    assert_eq!(after.origin, Origin::SyncAfter);
    assert_eq!(before.labels["sync"], "1");
    assert_eq!(after.labels["sync"], "1");
    let (kept, masked, ages): (i64, i64, i64) = {
        let c = db.client().await;
        let r = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE email LIKE 'p%@example.com'), sum(age)
                 FROM people",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(kept, 500);
    assert_eq!(masked, 0, "every address masked");
    assert_eq!(
        ages,
        source.value::<i64>("SELECT sum(age) FROM people").await
    );

    let second = engine
        .sync(
            &db.target(),
            SyncRequest {
                before: false,
                ..request
            },
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(second.number, 2);
    assert!(second.before.is_none());
    assert_eq!(second.after.unwrap().labels["sync"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_run_is_refused_before_anything_is_written() {
    let (source, db, _dir, engine) = fixture("engine_sync_refused").await;
    let before = db.fingerprint().await;
    let same = engine
        .sync(
            &db.target(),
            SyncRequest::from(db.target()),
            RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(same.kind(), ErrorKind::Invalid, "{same}");
    let bad_rule = engine
        .sync(
            &db.target(),
            SyncRequest {
                rules: MaskRules::parse("public.people.nope email\n").unwrap(),
                ..SyncRequest::from(source.target())
            },
            RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(bad_rule.kind(), ErrorKind::Invalid, "{bad_rule}");
    let nowhere =
        phony_postgres::ConnectionTarget::parse(Some("postgres://postgres@127.0.0.1:1/nowhere"))
            .unwrap();
    let unreachable = engine
        .sync(
            &db.target(),
            SyncRequest::from(nowhere),
            RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unreachable.kind(), ErrorKind::Connection);
    assert!(
        unreachable.to_string().contains("connecting to the source"),
        "{unreachable}"
    );
    phony_tests::assert_same(&db.fingerprint().await, &before, "after refused syncs");
    assert!(engine.scan().await.unwrap().records.is_empty());
}

/// Cancels the work when the load into the database starts.
struct CancelAtLoad(Cancel);

impl ProgressSink for CancelAtLoad {
    fn step(&self, part: Part, step: Step) {
        if part == Part::Restore && matches!(step, Step::Restoring { .. }) {
            self.0.cancel();
        }
    }

    fn bytes(&self, _part: Part, _bytes: u64) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_cancelled_before_its_load_commits_leaves_the_database_as_it_was() {
    let (source, db, _dir, engine) = fixture("engine_sync_cancel").await;
    let before = db.fingerprint().await;
    let cancel = Cancel::new();
    let run = RunOptions {
        progress: Some(Arc::new(CancelAtLoad(cancel.clone()))),
        cancel: Some(cancel),
        ..RunOptions::default()
    };
    let e = engine
        .sync(&db.target(), SyncRequest::from(source.target()), run)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    phony_tests::assert_same(&db.fingerprint().await, &before, "after a cancelled sync");
}
