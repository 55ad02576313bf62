//! A create cancelled at each of its steps, against the real server: before its record it
//! leaves nothing listed, no lock and no claim; once recording, it completes.

use std::sync::Arc;

use phony_core::{Backend as _, StoreConfig};
use phony_engine::{Cancel, Create, CreateOptions, CreatePhase, Engine, Error};
use phony_tests::TestDb;

/// Where a create is cancelled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    Before,
    Phase(CreatePhase),
    PointFixed,
    FirstBytes,
}

async fn fixture() -> (TestDb, tempfile::TempDir, Engine) {
    let db = TestDb::new("engine_cancel").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
         CREATE SEQUENCE s;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    (db, dir, engine)
}

async fn create_cancelled_at(engine: &Engine, db: &TestDb, at: At) -> phony_engine::Result<()> {
    let cancel = Cancel::new();
    if at == At::Before {
        cancel.cancel();
    }
    let on = |want: At| {
        let cancel = cancel.clone();
        move || {
            if at == want {
                cancel.cancel();
            }
        }
    };
    let phase = {
        let cancel = cancel.clone();
        Arc::new(move |p: CreatePhase| {
            if at == At::Phase(p) {
                cancel.cancel();
            }
        })
    };
    let fixed = on(At::PointFixed);
    let bytes = on(At::FirstBytes);
    let opts = CreateOptions {
        cancel: Some(cancel.clone()),
        phase: Some(phase),
        on_point_fixed: Some(Arc::new(move |_| fixed())),
        progress: Some(Arc::new(move |_| bytes())),
        ..Default::default()
    };
    let create = Create {
        name: Some("cancelled".parse().unwrap()),
        ..Default::default()
    };
    engine.create(&db.target(), create, opts).await.map(|_| ())
}

async fn left_behind(engine: &Engine) -> (usize, usize, usize) {
    let backend = engine.store().backend();
    let records = engine.scan().await.unwrap().records.len();
    let locks = backend.list("locks/").await.unwrap().len();
    let claims = backend.list("names/").await.unwrap().len();
    (records, locks, claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cancelled_before_its_record_leaves_nothing() {
    let (db, _dir, engine) = fixture().await;
    for at in [
        At::Before,
        At::Phase(CreatePhase::Locking),
        At::Phase(CreatePhase::Capturing),
        At::PointFixed,
        At::FirstBytes,
    ] {
        let result = create_cancelled_at(&engine, &db, at).await;
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{at:?}: {result:?}"
        );
        assert_eq!(left_behind(&engine).await, (0, 0, 0), "{at:?}");
    }
    // Once recording, the create completes: the name, its claim and the record are there.
    create_cancelled_at(&engine, &db, At::Phase(CreatePhase::Recording))
        .await
        .unwrap();
    assert_eq!(left_behind(&engine).await, (1, 0, 1));
    // And a plain create of another name still works beside it.
    let again = Create {
        name: Some("after".parse().unwrap()),
        ..Default::default()
    };
    let record = engine
        .create(&db.target(), again, CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(record.stats.rows, 20000);
}
