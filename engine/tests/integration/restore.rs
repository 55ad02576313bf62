//! A restore cancelled at each of its steps, against the real server: the database is
//! left as it was (its transaction rolled back); uncancelled, it reaches the snapshot.

use std::sync::Arc;

use phony_core::StoreConfig;
use phony_engine::{Cancel, Create, CreateOptions, Engine, Error};
use phony_postgres::{Phase, RestoreOptions};
use phony_tests::{assert_same, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_restore_changes_nothing() {
    let db = TestDb::new("engine_restore_cancel").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
         CREATE INDEX t_v ON t (v);
         CREATE SEQUENCE s; SELECT setval('s', 42);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let record = engine
        .create(&db.target(), Create::default(), CreateOptions::default())
        .await
        .unwrap();
    let snapshot = db.fingerprint().await;
    // A schema change: the restore takes the full path, through every phase.
    db.exec(
        "ALTER TABLE t ADD COLUMN w int; DELETE FROM t WHERE id % 3 = 0;
         SELECT setval('s', 7);",
    )
    .await;
    let dirty = db.fingerprint().await;
    let root = engine.store().root(&record.root).await.unwrap();

    let phases = [
        Phase::Loading { bytes: 0 },
        Phase::IndexesAndConstraints,
        Phase::Sequences,
    ];
    for at in phases {
        let cancel = Cancel::new();
        let phase = {
            let cancel = cancel.clone();
            Arc::new(move |p: Phase| {
                if std::mem::discriminant(&p) == std::mem::discriminant(&at) {
                    cancel.cancel();
                }
            })
        };
        let opts = RestoreOptions {
            phase: Some(phase),
            ..RestoreOptions::default()
        };
        let result = engine
            .restore_into(&db.target(), &root, opts, Some(&cancel))
            .await;
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{at:?}: {result:?}"
        );
        assert_same(
            &db.fingerprint().await,
            &dirty,
            &format!("cancelled at {at:?}"),
        );
    }
    // Cancelled before it starts: nothing either.
    let cancel = Cancel::new();
    cancel.cancel();
    let result = engine
        .restore_into(
            &db.target(),
            &root,
            RestoreOptions::default(),
            Some(&cancel),
        )
        .await;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_same(&db.fingerprint().await, &dirty, "cancelled before it began");

    engine
        .restore_into(&db.target(), &root, RestoreOptions::default(), None)
        .await
        .unwrap();
    assert_same(&db.fingerprint().await, &snapshot, "restored");
}
