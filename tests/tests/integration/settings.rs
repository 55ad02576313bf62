//! Output and input settings given to every session by the database or the role
//! (`ALTER DATABASE … SET`, `ALTER ROLE … SET`) change nothing phony stores or puts back,
//! and the database's own settings come back with a restore.

use phony_postgres::{capture, restore, restore_into_new, CaptureOptions};
use phony_postgres::{RestoreOptions, RestorePath};
use phony_tests::{assert_same, TestDb, TestRole, TestStore};

/// Settings that change how values are printed and read.
const HOSTILE: &[(&str, &str)] = &[
    ("extra_float_digits", "-3"),
    ("DateStyle", "'SQL, DMY'"),
    ("IntervalStyle", "'sql_standard'"),
    ("TimeZone", "'Asia/Kathmandu'"),
    ("bytea_output", "'escape'"),
];

const TABLE: &str = "CREATE TABLE v (id int PRIMARY KEY, f4 real, f8 float8, n numeric,
        d date, ts timestamp, tz timestamptz, iv interval, b bytea);
    INSERT INTO v VALUES
        (1, 0.33333334, pi(), 1.50, '2024-02-29', '2024-02-29 13:14:15.123456',
         '2024-02-29 13:14:15.123456+05:30', '1 year 2 mons 3 days 04:05:06.789', '\\xdeadbeef'),
        (2, 1e-40, -1.2345678901234567e300, 0.1, '2024-12-31', '1999-12-31 23:59:59',
         '2024-12-31 23:59:59-08', '-3 days +04:00:00', '\\x00ff');";

const DIRTY: &str = "UPDATE v SET f8 = 0, d = '2000-01-01', iv = '1 day' WHERE id = 1;
    DELETE FROM v WHERE id = 2; INSERT INTO v (id) VALUES (3);";

/// The values as text, read on a session that pins its own settings.
const VALUES: &str = "SELECT string_agg(v::text, ' | ' ORDER BY id) FROM v";

const EXPECTED: &str = "(1,0.33333334,3.141592653589793,1.50,2024-02-29,\
    \"2024-02-29 13:14:15.123456\",\"2024-02-29 07:44:15.123456+00\",\
    \"1 year 2 mons 3 days 04:05:06.789\",\"\\\\xdeadbeef\") | \
    (2,1e-40,-1.2345678901234567e+300,0.1,2024-12-31,\"1999-12-31 23:59:59\",\
    \"2025-01-01 07:59:59+00\",\"-3 days +04:00:00\",\"\\\\x00ff\")";

async fn values(db: &TestDb, dbname: &str) -> String {
    let client = db.target().with_dbname(dbname).connect().await.unwrap();
    client
        .batch_execute(
            "SET extra_float_digits = 3; SET DateStyle = 'ISO, MDY'; \
             SET IntervalStyle = postgres; SET TimeZone = 'UTC'; SET bytea_output = hex",
        )
        .await
        .unwrap();
    client.query_one(VALUES, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_settings_change_no_value_in_place_or_into_a_new_database() {
    let db = TestDb::new("set_db").await;
    db.exec(TABLE).await;
    for (name, value) in HOSTILE {
        db.exec(&format!(
            "ALTER DATABASE \"{}\" SET {name} = {value}",
            db.name
        ))
        .await;
    }
    assert_eq!(values(&db, &db.name).await, EXPECTED);
    let expected = db.fingerprint().await;
    assert_eq!(expected.database.settings.len(), HOSTILE.len());

    for tracked in [false, true] {
        if tracked {
            db.track_on().await;
        }
        let store = TestStore::new().await;
        let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        db.exec(DIRTY).await;
        let report = db.restore(&store, &captured.manifest).await;
        assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
        assert_eq!(values(&db, &db.name).await, EXPECTED, "tracked: {tracked}");
        assert_same(
            &db.fingerprint().await,
            &expected,
            &format!("in place, tracked: {tracked}"),
        );

        // The full path, and a new database (which gets the settings too).
        db.exec(DIRTY).await;
        let opts = RestoreOptions {
            full: true,
            ..RestoreOptions::default()
        };
        restore(&db.target(), &store.store, &captured.manifest, &opts)
            .await
            .unwrap();
        assert_eq!(values(&db, &db.name).await, EXPECTED, "full, {tracked}");
        let copy = db.sibling_name(&format!("copy{}", tracked as u8));
        restore_into_new(
            &db.target().with_dbname(&copy),
            &store.store,
            &captured.manifest,
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(values(&db, &copy).await, EXPECTED, "new database");
        assert_same(&db.fingerprint_of(&copy).await, &expected, "a new database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_settings_change_no_value() {
    let db = TestDb::new("set_role").await;
    let role = TestRole::new(&db, "set", "").await;
    db.exec(&format!(
        "ALTER DATABASE \"{}\" OWNER TO \"{}\"",
        db.name, role.name
    ))
    .await;
    for (name, value) in HOSTILE {
        db.exec(&format!(
            "ALTER ROLE \"{}\" SET {name} = {value}",
            role.name
        ))
        .await;
    }
    let owner = role.target();
    owner
        .connect()
        .await
        .unwrap()
        .batch_execute(TABLE)
        .await
        .unwrap();
    let expected = db.fingerprint().await;
    let store = TestStore::new().await;
    let captured = capture(&owner, &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(DIRTY).await;
    for full in [false, true] {
        let opts = RestoreOptions {
            full,
            ..RestoreOptions::default()
        };
        restore(&owner, &store.store, &captured.manifest, &opts)
            .await
            .unwrap();
        assert_eq!(values(&db, &db.name).await, EXPECTED, "full: {full}");
        assert_same(&db.fingerprint().await, &expected, &format!("full: {full}"));
        db.exec(DIRTY).await;
    }
}

/// A restore in place gives the database back the settings the snapshot recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_puts_the_database_settings_back() {
    let db = TestDb::new("set_back").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET search_path = \"$user\", public, \"odd, name\"; \
         ALTER DATABASE \"{0}\" SET work_mem = '8MB'",
        db.name
    ))
    .await;
    let expected = db.fingerprint().await;
    let store = TestStore::new().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(&format!(
        "ALTER DATABASE \"{}\" RESET work_mem; ALTER DATABASE \"{0}\" SET statement_timeout = 5",
        db.name
    ))
    .await;
    assert_ne!(db.fingerprint().await.database, expected.database);
    let report = db.restore(&store, &captured.manifest).await;
    assert_eq!(report.path, RestorePath::Delta);
    assert_same(&db.fingerprint().await, &expected, "settings put back");
}

/// Row images logged by an application's session in another time zone read as the rows
/// phony's sessions print: a row changed and changed back counts as unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_logged_in_another_time_zone_compare_equal() {
    let db = TestDb::new("set_tz").await;
    db.exec(
        "CREATE TABLE tz (id int PRIMARY KEY, at timestamptz, n int);
         INSERT INTO tz VALUES (1, '2024-03-01 12:00:00+00', 1), (2, '2024-03-02 12:00:00+00', 2);",
    )
    .await;
    db.track_on().await;
    let store = TestStore::new().await;
    let base = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let expected = db.fingerprint().await;
    // An application's session, with its own time zone (not one of phony's).
    let (app, connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    app.batch_execute(
        "SET TimeZone = 'Asia/Kathmandu';
         UPDATE tz SET n = n + 1 WHERE id = 1; UPDATE tz SET n = n - 1 WHERE id = 1;
         UPDATE tz SET n = 20 WHERE id = 2;",
    )
    .await
    .unwrap();
    let opts = RestoreOptions {
        dry_run: true,
        ..RestoreOptions::default()
    };
    let report = restore(&db.target(), &store.store, &base.manifest, &opts)
        .await
        .unwrap();
    assert!(report.tracked, "{report:?}");
    let updated: u64 = report.changes.iter().map(|c| c.updated).sum();
    assert_eq!(updated, 1, "{:?}", report.changes);
    db.restore(&store, &base.manifest).await;
    assert_same(&db.fingerprint().await, &expected, "restored");
}
