//! A restore cancelled at each of its steps, against the real server: the database is
//! left as it was (its transaction rolled back); uncancelled, it reaches the snapshot.

use std::sync::Arc;

use phony_core::StoreConfig;
use phony_engine::{
    Cancel, Create, CreateOptions, CreatePhase, Engine, Error, Part, ProgressSink, RestoreRequest,
    RunOptions, Step,
};
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
    // Asked to stop at its commit (a cancel that arrived while the restore ran without
    // yielding, so nobody could drop it): it rolls back itself, on either path.
    for full in [false, true] {
        let opts = RestoreOptions {
            stop: Some(Arc::new(|| true)),
            full,
            ..RestoreOptions::default()
        };
        let result = phony_postgres::restore(&db.target(), engine.store(), &root, &opts).await;
        assert!(
            matches!(result, Err(phony_postgres::Error::Cancelled)),
            "full {full}: {result:?}"
        );
        assert_same(&db.fingerprint().await, &dirty, "stopped at its commit");
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

/// Where a test cancels: a part and a step.
type At = fn(Part, Step) -> bool;

/// A sink that cancels once the restore reaches a given step.
struct CancelAt {
    cancel: Cancel,
    at: At,
    seen: std::sync::Mutex<Vec<(Part, Step)>>,
}

impl ProgressSink for CancelAt {
    fn step(&self, part: Part, step: Step) {
        self.seen.lock().unwrap().push((part, step));
        if (self.at)(part, step) {
            self.cancel.cancel();
        }
    }
    fn bytes(&self, _: Part, _: u64) {}
}

/// `Engine::restore` in place, with its safety snapshot: cancelled at every step before its
/// commit it changes nothing and leaves no safety snapshot; run to its end it reaches the
/// snapshot and keeps the state before as a safety snapshot that undoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_its_safety_snapshot_cancelled_at_any_step_leaves_nothing() {
    let db = TestDb::new("engine_restore_safety").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
         CREATE SEQUENCE s; SELECT setval('s', 42);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let create = Create {
        name: Some("clean".parse().unwrap()),
        ..Default::default()
    };
    engine
        .create(&db.target(), create, CreateOptions::default())
        .await
        .unwrap();
    let snapshot = db.fingerprint().await;
    db.exec(
        "ALTER TABLE t ADD COLUMN w int; DELETE FROM t WHERE id % 3 = 0; SELECT setval('s', 7);",
    )
    .await;
    let dirty = db.fingerprint().await;

    let points: [(&str, At); 6] = [
        ("before it starts", |_, _| true),
        ("safety snapshot locking", |p, s| {
            p == Part::SafetySnapshot && s == Step::Create(CreatePhase::Locking)
        }),
        ("safety snapshot capturing", |p, s| {
            p == Part::SafetySnapshot && s == Step::Create(CreatePhase::Capturing)
        }),
        ("restore started", |p, s| {
            p == Part::Restore && matches!(s, Step::Restoring { .. })
        }),
        ("loading", |_, s| {
            matches!(s, Step::Restore(Phase::Loading { .. }))
        }),
        ("sequences", |_, s| s == Step::Restore(Phase::Sequences)),
    ];
    for (what, at) in points {
        let cancel = Cancel::new();
        if what == "before it starts" {
            cancel.cancel();
        }
        let sink = Arc::new(CancelAt {
            cancel: cancel.clone(),
            at,
            seen: Default::default(),
        });
        let run = RunOptions {
            progress: Some(sink.clone()),
            cancel: Some(cancel),
            ..Default::default()
        };
        let result = engine
            .restore(&db.target(), RestoreRequest::of("clean"), run)
            .await;
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{what}: {result:?} after {:?}",
            sink.seen.lock().unwrap()
        );
        assert_same(&db.fingerprint().await, &dirty, what);
        let records = engine.scan().await.unwrap().records;
        assert_eq!(records.len(), 1, "{what}: no safety snapshot is left");
    }

    let restored = engine
        .restore(
            &db.target(),
            RestoreRequest::of("clean"),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_same(&db.fingerprint().await, &snapshot, "restored");
    assert!(!restored.created);
    let safety = restored.safety.expect("a safety snapshot");
    assert_eq!(safety.origin, phony_core::Origin::Safety);
    assert_eq!(
        safety.labels.get("before_restore_of"),
        Some(&restored.record.id.to_string())
    );
    assert_eq!(
        safety.tool_version.as_deref(),
        Some(phony_engine::TOOL_VERSION)
    );
    // The safety snapshot undoes it.
    let mut undo = RestoreRequest::of(safety.id.to_string());
    undo.safety_snapshot = false;
    engine
        .restore(&db.target(), undo, RunOptions::default())
        .await
        .unwrap();
    assert_same(&db.fingerprint().await, &dirty, "undone");
}

/// In place, a snapshot of another database is refused unless asked for; into another
/// database, a missing one is created (a dry run creates nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_another_database_creates_it_and_in_place_refuses_a_stranger() {
    let db = TestDb::new("engine_restore_into").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .await;
    let other = TestDb::new("engine_restore_other").await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let record = engine
        .create(&db.target(), Create::default(), CreateOptions::default())
        .await
        .unwrap();
    let id = record.id.to_string();

    let refused = engine
        .restore(
            &other.target(),
            RestoreRequest::of(&id),
            RunOptions::default(),
        )
        .await;
    match refused {
        Err(Error::OtherDatabase { database, .. }) => assert_eq!(database, other.name),
        other => panic!("{other:?}"),
    }

    let name = db.sibling_name("copy");
    let into = db.target().with_dbname(&name);
    let dry = RestoreRequest {
        into: Some(into.clone()),
        dry_run: true,
        ..RestoreRequest::of(&id)
    };
    let planned = engine
        .restore(&db.target(), dry, RunOptions::default())
        .await
        .unwrap();
    assert!(planned.created && planned.report.dry_run && planned.safety.is_none());
    assert!(!phony_postgres::database_exists(&into).await.unwrap());

    let request = RestoreRequest {
        into: Some(into.clone()),
        ..RestoreRequest::of(&id)
    };
    let restored = engine
        .restore(&db.target(), request, RunOptions::default())
        .await
        .unwrap();
    assert!(restored.created && restored.safety.is_none());
    assert_same(
        &db.fingerprint_of(&name).await,
        &db.fingerprint().await,
        "copied",
    );
    let admin = db.client().await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// What the lifecycle adds to a small restore: the adapter's restore alone, then
/// `Engine::restore` without and with its safety snapshot (medians of 15 runs each).
/// Run with `cargo test -p phony-engine --release --test integration -- --ignored
/// --nocapture measure_restore_overheads`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_restore_overheads() {
    let db = TestDb::new("engine_restore_measure").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;",
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
    let root = engine.store().root(&record.root).await.unwrap();
    let id = record.id.to_string();
    let dirty = "UPDATE t SET v = 'changed' WHERE id <= 5";
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut adapter = Vec::new();
    let mut plain = Vec::new();
    let mut safety = Vec::new();
    for _ in 0..15 {
        db.exec(dirty).await;
        let t = std::time::Instant::now();
        engine
            .restore_into(&db.target(), &root, RestoreOptions::default(), None)
            .await
            .unwrap();
        adapter.push(t.elapsed().as_secs_f64() * 1000.0);

        db.exec(dirty).await;
        let t = std::time::Instant::now();
        let request = RestoreRequest {
            safety_snapshot: false,
            ..RestoreRequest::of(&id)
        };
        engine
            .restore(&db.target(), request, RunOptions::default())
            .await
            .unwrap();
        plain.push(t.elapsed().as_secs_f64() * 1000.0);

        db.exec(dirty).await;
        let t = std::time::Instant::now();
        engine
            .restore(&db.target(), RestoreRequest::of(&id), RunOptions::default())
            .await
            .unwrap();
        safety.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "restore of 5 changed rows of 1,000, median ms: adapter {:.1}, Engine::restore {:.1}, with its safety snapshot {:.1}",
        median(adapter),
        median(plain),
        median(safety)
    );
}
