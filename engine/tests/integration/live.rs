//! A live capture (diff against the database) holds a create lock: a garbage collection
//! started meanwhile postpones its sweep instead of deleting blobs the diff reads.

use std::sync::Arc;
use std::time::Duration;

use phony_core::{Backend as _, StoreConfig};
use phony_engine::gc::{collect_garbage, GcOutcome};
use phony_engine::lease::Notify;
use phony_engine::Engine;
use phony_postgres::CaptureOptions;
use phony_tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_waits_for_a_live_capture() {
    let db = TestDb::new("engine_live").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let notify: Notify = Arc::new(|_: &str| {});
    let live = engine
        .capture_live(&db.target(), &CaptureOptions::default(), &notify)
        .await
        .unwrap();
    // No record names the capture's blobs: only its lock keeps them.
    let blobs = engine.store().backend().list("blobs/").await.unwrap().len();
    assert!(blobs > 0);
    let outcome = collect_garbage(engine.store(), Duration::from_millis(300), &notify)
        .await
        .unwrap();
    assert!(
        matches!(outcome, GcOutcome::Postponed { creating: 1 }),
        "{outcome:?}"
    );

    live.check().unwrap();
    live.release().await;
    // Released: the next collection sweeps the unreferenced blobs.
    let outcome = collect_garbage(engine.store(), Duration::ZERO, &notify)
        .await
        .unwrap();
    assert!(matches!(outcome, GcOutcome::Swept(_)), "{outcome:?}");
    let left = engine.store().backend().list("blobs/").await.unwrap().len();
    assert_eq!(left, 0);
}
