//! Row-level security: a snapshot never holds only the rows a policy shows, and a restore
//! never deletes the rows a policy hides.

use phony_postgres::{capture, restore, CaptureOptions, Error, RestoreOptions};
use phony_tests::{assert_same, TestDb, TestRole, TestStore};

/// Two rows, of which a policy shows one, to everyone, the owner included (FORCE).
const TABLE: &str = "CREATE TABLE s (id int PRIMARY KEY, secret bool NOT NULL);
    INSERT INTO s VALUES (1, false), (2, true);
    ALTER TABLE s ENABLE ROW LEVEL SECURITY;
    ALTER TABLE s FORCE ROW LEVEL SECURITY;
    CREATE POLICY visible ON s USING (NOT secret);
    CREATE TABLE open (id int PRIMARY KEY);
    INSERT INTO open VALUES (1);";

const DIRTY: &str = "UPDATE s SET id = 10 WHERE id = 1; INSERT INTO s VALUES (3, true);
    DELETE FROM open;";

/// A database owned by a role of its own that owns `s`.
async fn owned(label: &str) -> (TestDb, TestRole) {
    let db = TestDb::new(label).await;
    let role = TestRole::new(&db, "rls", "").await;
    db.exec(&format!(
        "ALTER DATABASE \"{}\" OWNER TO \"{}\"",
        db.name, role.name
    ))
    .await;
    role.target()
        .connect()
        .await
        .unwrap()
        .batch_execute(TABLE)
        .await
        .unwrap();
    (db, role)
}

fn refused_for_row_security(e: &Error) {
    let message = e.to_string();
    assert!(
        matches!(e, Error::RowSecurity { table, .. } if table == "s"),
        "{e:?}"
    );
    assert!(message.contains("BYPASSRLS"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_table_is_never_captured_and_a_bypassing_role_captures_every_row() {
    let (db, role) = owned("rls_capture").await;
    let store = TestStore::new().await;
    let e = capture(&role.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap_err();
    refused_for_row_security(&e);
    assert!(store.store.records().await.unwrap().is_empty());

    // With BYPASSRLS, every row.
    db.exec(&format!("ALTER ROLE \"{}\" BYPASSRLS", role.name))
        .await;
    let expected = db.fingerprint().await;
    assert_eq!(expected.tables["public.s"].0, 2);
    let captured = capture(&role.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert_eq!(captured.stats.rows, 3);
    db.exec(DIRTY).await;
    restore(
        &role.target(),
        &store.store,
        &captured.manifest,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_same(&db.fingerprint().await, &expected, "restored by the role");
}

/// A restore by a role the policy filters, of a snapshot taken by one it does not: the
/// delta and full paths either put every row back or fail; none deletes the hidden rows
/// or leaves them out. (Not tracked: a role that did not turn tracking on cannot write
/// phony's own tables.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_by_a_filtered_role_never_loses_hidden_rows() {
    let (db, role) = owned("rls_restore").await;
    let store = TestStore::new().await;
    let expected = db.fingerprint().await;
    // Taken by the superuser: every row.
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert_eq!(captured.stats.rows, 3);
    for full in [false, true] {
        db.exec(DIRTY).await;
        let dirty = db.fingerprint().await;
        let opts = RestoreOptions {
            full,
            ..RestoreOptions::default()
        };
        let what = format!("full: {full}");
        match restore(&role.target(), &store.store, &captured.manifest, &opts).await {
            Ok(_) => assert_same(&db.fingerprint().await, &expected, &what),
            Err(e) => {
                refused_for_row_security(&e);
                assert_same(&db.fingerprint().await, &dirty, &what);
                db.restore(&store, &captured.manifest).await;
            }
        }
    }
}
