//! `Engine::diff`: two snapshots, or a snapshot and the live database, as the JSON
//! document `phony snapshot diff --json` prints; a prune racing the live diff does not
//! delete what it reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use phony_core::StoreConfig;
use phony_engine::gc::{collect_garbage, GcOutcome};
use phony_engine::{
    Create, CreateOptions, DiffOptions, DiffTo, Engine, Part, ProgressSink, RunOptions, Step,
};
use phony_tests::TestDb;

async fn fixture(label: &str) -> (TestDb, tempfile::TempDir, Engine) {
    let db = TestDb::new(label).await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'a' FROM generate_series(1, 1000) g;")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    (db, dir, engine)
}

async fn named(engine: &Engine, db: &TestDb, name: &str) {
    let create = Create {
        name: Some(name.parse().unwrap()),
        ..Default::default()
    };
    engine
        .create(&db.target(), create, CreateOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_of_two_snapshots_is_the_cli_document() {
    let (db, _dir, engine) = fixture("engine_diff").await;
    named(&engine, &db, "before").await;
    db.exec("UPDATE t SET v = 'b' WHERE id = 7; DELETE FROM t WHERE id = 8;")
        .await;
    named(&engine, &db, "after").await;
    let opts = DiffOptions {
        row_limit: 10,
        ..Default::default()
    };
    let doc = engine
        .diff("before", DiffTo::Snapshot("after".into()), opts)
        .await
        .unwrap();
    let v = serde_json::to_value(&doc).unwrap();
    assert_eq!(v["from"]["name"], "before");
    assert_eq!(v["to"]["name"], "after");
    assert_eq!(v["identical"], false);
    let t = &v["tables"][0];
    assert_eq!(
        (
            t["name"].as_str(),
            t["rows_changed"].as_u64(),
            t["rows_removed"].as_u64()
        ),
        (Some("t"), Some(1), Some(1))
    );
    assert!(
        doc.sql().unwrap().contains("DELETE FROM"),
        "{}",
        doc.sql().unwrap()
    );

    let same = engine
        .diff(
            "after",
            DiffTo::Snapshot("after".into()),
            DiffOptions::default(),
        )
        .await
        .unwrap();
    assert!(same.identical);
    let missing = engine
        .diff(
            "nope",
            DiffTo::Snapshot("after".into()),
            DiffOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing.kind(), phony_engine::ErrorKind::NotFound),
        "{missing:?}"
    );
}

/// Runs a garbage collection (as a prune does) once the live capture is stored, before
/// the comparison reads it.
struct PruneMeanwhile {
    engine: Engine,
    outcome: Mutex<Option<GcOutcome>>,
}

impl ProgressSink for PruneMeanwhile {
    fn step(&self, _: Part, _: Step) {}
    fn bytes(&self, _: Part, _: u64) {}
    fn done(&self, part: Part) {
        if part != Part::LiveCapture {
            return;
        }
        let outcome = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(collect_garbage(
                    self.engine.store(),
                    Duration::from_millis(300),
                    &(Arc::new(|_: &str| {}) as phony_engine::lease::Notify),
                ))
                .map_err(|e| e.to_string())
        });
        *self.outcome.lock().unwrap() = Some(outcome.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_racing_a_live_diff_postpones_its_sweep() {
    let (db, _dir, engine) = fixture("engine_diff_live").await;
    named(&engine, &db, "before").await;
    db.exec("INSERT INTO t SELECT g, 'new' FROM generate_series(1001, 3000) g;")
        .await;
    let sink = Arc::new(PruneMeanwhile {
        engine: engine.clone(),
        outcome: Mutex::new(None),
    });
    let opts = DiffOptions {
        run: RunOptions {
            progress: Some(sink.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let doc = engine
        .diff("before", DiffTo::Live(db.target()), opts)
        .await
        .unwrap();
    let outcome = sink.outcome.lock().unwrap().take();
    assert!(
        matches!(outcome, Some(GcOutcome::Postponed { creating: 1 })),
        "{outcome:?}"
    );
    let v = serde_json::to_value(&doc).unwrap();
    assert_eq!(v["to"]["live"], true);
    assert_eq!(v["to"]["database"], db.name.as_str());
    assert_eq!(v["tables"][0]["rows_added"], 2000);
}
