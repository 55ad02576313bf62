//! Retention through the engine: a create applies the store's policy after its record
//! (never to the snapshot it made), and `prune` refuses, unless confirmed, a plan that
//! keeps no unpinned snapshot.

use phony_core::{RetentionPolicy, StoreConfig};
use phony_engine::{Create, CreateOptions, Engine, Error, PruneGc, PruneRequest, RunOptions};
use phony_tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applies_the_store_policy_and_prune_wants_confirming_to_remove_all() {
    let db = TestDb::new("engine_prune").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap();
    let config = StoreConfig {
        retention: Some(RetentionPolicy {
            keep_last: Some(2),
            expire_after: None,
        }),
        ..StoreConfig::default()
    };
    let engine = Engine::open_or_create(location, config).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        db.exec(&format!("INSERT INTO t VALUES ({})", n + 10)).await;
        let created = engine
            .create_with_retention(&db.target(), Create::default(), CreateOptions::default())
            .await
            .unwrap();
        assert_eq!(
            created.retention.is_some(),
            n == 2,
            "{n}: {:?}",
            created.retention
        );
        ids.push(created.record.id);
    }
    let left: Vec<_> = engine
        .scan()
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [ids[2], ids[1]], "the oldest went");

    let all = PruneRequest {
        policy: Some(RetentionPolicy {
            keep_last: Some(0),
            expire_after: None,
        }),
        ..PruneRequest::default()
    };
    let refused = engine.prune(all.clone(), RunOptions::default()).await;
    assert!(
        matches!(refused, Err(Error::ConfirmationRequired { removing: 2 })),
        "{refused:?}"
    );
    let dry = PruneRequest {
        dry_run: true,
        ..all.clone()
    };
    let planned = engine.prune(dry, RunOptions::default()).await.unwrap();
    assert!(
        matches!(planned.gc, PruneGc::WouldFree(_)),
        "{:?}",
        planned.gc
    );
    assert_eq!(engine.scan().await.unwrap().records.len(), 2, "a dry run");
    let confirmed = PruneRequest {
        confirm_all: true,
        ..all
    };
    let pruned = engine
        .prune(confirmed, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(pruned.removed, 2);
    assert!(matches!(pruned.gc, PruneGc::Swept(_)), "{:?}", pruned.gc);
    assert!(engine.scan().await.unwrap().records.is_empty());
}
