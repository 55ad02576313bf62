//! Errors a caller can branch on: `Error::kind()` for each failure a service maps.

use std::time::Duration;

use phony_core::{SnapshotId, StoreConfig};
use phony_engine::{Create, CreateOptions, Engine, ErrorKind, RestoreRequest, RunOptions};
use phony_tests::TestDb;

async fn empty_store() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    (dir, engine)
}

#[tokio::test]
async fn unknown_and_ambiguous_references_and_taken_names() {
    let (_dir, engine) = empty_store().await;
    for (n, id) in [
        (1u8, [0xab, 0xcd, 0, 0, 0, 1]),
        (2, [0xab, 0xcd, 0, 0, 0, 2]),
    ] {
        let mut r = crate::record();
        r.id = SnapshotId::from_random(id);
        r.name = Some(format!("s{n}").parse().unwrap());
        engine.store().put_record(&r).await.unwrap();
    }
    let missing = engine.show("nothing-here").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let ambiguous = engine.show("abcd").await.unwrap_err();
    assert_eq!(ambiguous.kind(), ErrorKind::AmbiguousId, "{ambiguous}");

    // Two creates racing for one name: the second claim loses.
    let name = "raced".parse().unwrap();
    let first = SnapshotId::from_random([1; 6]);
    let _claim = engine.claim_name(&name, first).await.unwrap();
    let lost = engine
        .claim_name(&name, SnapshotId::from_random([2; 6]))
        .await
        .unwrap_err();
    assert_eq!(lost.kind(), ErrorKind::NameTaken, "{lost}");
    assert!(lost.is_name_taken());
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap();
    Engine::open_or_create(location, StoreConfig::default())
        .await
        .unwrap();
    let config = dir.path().join(phony_core::config::CONFIG_KEY);
    let text = std::fs::read_to_string(&config).unwrap();
    let newer = text.replacen("\"format\": 2", "\"format\": 99", 1);
    assert_ne!(text, newer, "{text}");
    std::fs::write(&config, newer).unwrap();
    let refused = Engine::open(location).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NewerFormat, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("format 99") && message.contains("up to 2"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let (_dir, engine) = empty_store().await;
    let nowhere = phony_postgres::ConnectionTarget::parse(Some(
        "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
    ))
    .unwrap();
    let failed = engine
        .create(&nowhere, Create::default(), CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Connection, "{failed}");
    // A database that does not exist: the server answers, with its SQLSTATE.
    let db = TestDb::new("engine_errors_missing").await;
    let missing = db.target().with_dbname("phony_no_such_database");
    let failed = engine
        .create(&missing, Create::default(), CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Connection, "{failed}");
    assert_eq!(failed.sqlstate(), Some("3D000"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statement_carries_its_sqlstate_and_a_lock_its_holders() {
    let db = TestDb::new("engine_errors_sql").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    let (_dir, engine) = empty_store().await;
    let record = engine
        .create(&db.target(), Create::default(), CreateOptions::default())
        .await
        .unwrap();
    db.exec("INSERT INTO t VALUES (2);").await;
    let plain = || RestoreRequest {
        safety_snapshot: false,
        lock_timeout: Some(Duration::from_millis(300)),
        ..RestoreRequest::of(record.id.to_string())
    };

    // Another session holds the table: the restore names it.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let locked = engine
        .restore(&db.target(), plain(), RunOptions::default())
        .await
        .unwrap_err();
    match locked.kind() {
        ErrorKind::Locked { holders } => assert_eq!(holders.len(), 1, "{holders:?}"),
        other => panic!("{other:?}: {locked}"),
    }
    holder.batch_execute("ROLLBACK").await.unwrap();

    // A database whose sessions are read-only refuses the restore's writes.
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
        db.name
    ))
    .await;
    let refused = engine
        .restore(&db.target(), plain(), RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::Database {
            sqlstate: Some("25006".into())
        },
        "{refused:?}"
    );
    assert_eq!(refused.sqlstate(), Some("25006"));
}
