//! Tracking on/off/status, verify with repair, and stats through the engine.

use std::sync::{Arc, Mutex};

use phony_core::StoreConfig;
use phony_engine::lease::Notify;
use phony_engine::{tracking, Create, CreateOptions, Engine, RunOptions};
use phony_tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_goes_on_and_off() {
    let db = TestDb::new("engine_track").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY);").await;
    let quiet: Notify = Arc::new(|_: &str| {});
    assert!(!tracking::status(&db.target()).await.unwrap().tracking);
    let on = tracking::on(&db.target(), &quiet).await.unwrap();
    assert!(on.changed && on.status.tracking && on.status.valid);
    assert_eq!(on.status.tracked_tables, 1);
    assert!(!tracking::on(&db.target(), &quiet).await.unwrap().changed);
    let off = tracking::off(&db.target()).await.unwrap();
    assert!(off.changed && !off.status.tracking);
    assert!(!tracking::off(&db.target()).await.unwrap().changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_repairs_damaged_records_and_stats_count_the_rest() {
    let db = TestDb::new("engine_verify").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500);")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    engine
        .create(&db.target(), Create::default(), CreateOptions::default())
        .await
        .unwrap();
    let clean = engine
        .verify(true, false, RunOptions::default())
        .await
        .unwrap();
    assert!(clean.report.is_clean() && !clean.damage_left());
    assert_eq!(clean.report.snapshots, 1);

    std::fs::write(
        dir.path().join("snapshots/snap_0000000000aa.json"),
        b"{ not json",
    )
    .unwrap();
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let notify: Notify = {
        let said = Arc::clone(&said);
        Arc::new(move |line: &str| said.lock().unwrap().push(line.to_owned()))
    };
    let found = engine
        .verify(false, false, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(found.report.damaged_records.len(), 1);
    assert!(found.damage_left() && found.removed_records.is_none());
    let run = RunOptions {
        notify: Some(notify),
        ..Default::default()
    };
    let repaired = engine.verify(false, true, run).await.unwrap();
    assert_eq!(
        repaired.removed_records.as_deref().map(<[String]>::len),
        Some(1)
    );
    assert!(!repaired.damage_left());
    assert!(said.lock().unwrap()[0].starts_with("removing the damaged record"));
    let json = serde_json::to_value(&repaired).unwrap();
    assert_eq!(json["removed_records"].as_array().unwrap().len(), 1);

    let stats = engine.stats(RunOptions::default()).await.unwrap();
    assert_eq!(stats.snapshots, 1);
    assert!(stats.stored_bytes > 0);
}
