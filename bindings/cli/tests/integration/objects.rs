//! What a snapshot holds, as the CLI says it: secrets never printed, large objects refused
//! unless skipped.

use phony_tests::{TestDb, TestStore};

use crate::{fails, ok, phony};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_diffs_never_print_user_mapping_passwords() {
    let db = TestDb::new("cli_secret").await;
    let store = TestStore::new().await;
    db.exec(
        "CREATE FOREIGN DATA WRAPPER phony_dummy;
         CREATE SERVER remote FOREIGN DATA WRAPPER phony_dummy OPTIONS (host 'db.example');",
    )
    .await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "before"],
    ));
    db.exec(
        "CREATE USER MAPPING FOR CURRENT_USER SERVER remote
             OPTIONS (\"user\" 'app', password 'hunter2''s secret');
         ALTER SERVER remote OPTIONS (ADD password 'server-secret');",
    )
    .await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "after"],
    ));
    for args in [
        &["snapshot", "diff", "before", "after"][..],
        &["--json", "snapshot", "diff", "before", "after"],
        &["snapshot", "diff", "before"],
        &["snapshot", "diff", "after", "before"],
    ] {
        let out = ok(&phony(&db.url(), store.path(), args));
        assert!(out.contains("USER MAPPING"), "{args:?}: {out}");
        assert!(!out.contains("hunter2"), "{args:?}: {out}");
        assert!(!out.contains("server-secret"), "{args:?}: {out}");
        assert!(out.contains("********"), "{args:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_large_objects_is_refused_unless_skipped() {
    let db = TestDb::new("cli_lo").await;
    let store = TestStore::new().await;
    db.exec("SELECT lo_from_bytea(0, 'x')").await;
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "create"]),
        1,
        &["1 large object(s)", "--skip-large-objects"],
    );
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--skip-large-objects"],
    ));
}
