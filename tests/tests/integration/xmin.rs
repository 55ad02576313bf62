//! Restores without tracking that compare only what rows' ages say may differ: rows written
//! before the capture are the snapshot's. Exact in every case, and actually narrower.

use phony_core::CapturePoint;
use phony_postgres::{
    capture, restore, CaptureOptions, Captured, Fingerprint, RestoreOptions, RestoreReport,
    RowAges, TableRewrite,
};
use phony_tests::{assert_same, TestDb, TestStore};

use crate::roundtrip::CHANGES;
use crate::{change_sets, run_cases};

/// Several chunks of integer-keyed rows, a text-keyed table, a two-column key, and a table
/// without a key holding duplicate rows.
const SETUP: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL, n int);
    INSERT INTO items SELECT g, 'item number ' || g || repeat('x', g % 40), g % 7
      FROM generate_series(1, 30000) g;
    CREATE TABLE words (w text COLLATE \"C\" PRIMARY KEY, meaning text);
    INSERT INTO words SELECT 'word ' || g, 'meaning ' || g || repeat('y', g % 30)
      FROM generate_series(1, 5000) g;
    CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
    INSERT INTO pairs SELECT g % 100, 'b' || g, 'v' || g FROM generate_series(1, 3000) g;
    CREATE TABLE log (who text, what text);
    INSERT INTO log SELECT 'user ' || (g % 10), 'did ' || (g % 3) FROM generate_series(1, 2000) g;
    CREATE TABLE empty (id int PRIMARY KEY, v text);
";

async fn setup(label: &str) -> (TestDb, TestStore, Captured) {
    setup_with(label, SETUP).await
}

/// A database made by `sql`, captured once older transactions have ended.
async fn setup_with(label: &str, sql: &str) -> (TestDb, TestStore, Captured) {
    let db = TestDb::new(label).await;
    db.exec(sql).await;
    db.quiesce().await;
    let store = TestStore::new().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert!(
        captured.source.point.is_some(),
        "the capture records its point"
    );
    (db, store, captured)
}

/// Waits until every transaction that was running when `point` was taken has ended: until
/// then the point is, rightly, not trusted.
async fn settle(db: &TestDb, point: &CapturePoint) {
    db.wait_for_xmin(point.snapshot.split(':').nth(1).unwrap().parse().unwrap())
        .await;
}

async fn restore_with(
    db: &TestDb,
    store: &TestStore,
    captured: &Captured,
    point: Option<CapturePoint>,
) -> RestoreReport {
    if let Some(p) = &captured.source.point {
        settle(db, p).await;
    }
    let opts = RestoreOptions {
        point,
        ..RestoreOptions::default()
    };
    let report = restore(&db.target(), &store.store, &captured.manifest, &opts)
        .await
        .unwrap();
    assert_eq!(
        report.path,
        phony_postgres::RestorePath::Delta,
        "{:?}",
        report.full_reason
    );
    report
}

async fn restore_by_age(db: &TestDb, store: &TestStore, captured: &Captured) -> RestoreReport {
    let report = restore_with(db, store, captured, captured.source.point.clone()).await;
    assert!(report.row_ages.is_some(), "the capture point is trusted");
    report
}

/// Makes the `picked` of `changes`, restores by age, and checks that the database is back
/// to `before` with no table's content compared whole; returns what the ages found.
async fn restore_by_age_after(
    db: &TestDb,
    store: &TestStore,
    captured: &Captured,
    before: &Fingerprint,
    changes: &[&str],
    picked: &[usize],
) -> RowAges {
    for &i in picked {
        db.exec(changes[i]).await;
    }
    let report = restore_by_age(db, store, captured).await;
    assert_same(
        &db.fingerprint().await,
        before,
        &format!("after restoring changes {picked:?} by age"),
    );
    let ages = report.row_ages.unwrap();
    assert_eq!(ages.content_tables, 0, "{picked:?}: {ages:?}");
    ages
}

/// What `report` says changed in table `name` (panics when it names no such table).
fn changed<'a>(report: &'a RestoreReport, name: &str) -> &'a TableRewrite {
    report
        .changes
        .iter()
        .find(|c| c.table.name == name)
        .unwrap_or_else(|| panic!("{name} not reported: {:?}", report.changes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_anywhere_are_undone_by_row_ages() {
    let (db, store, captured) = setup("xmin_any").await;
    let before = db.fingerprint().await;
    db.exec(
        "
        UPDATE items SET v = 'changed' WHERE id IN (15000, 15001, 2);
        DELETE FROM items WHERE id IN (14000, 29999, 1);
        INSERT INTO items VALUES (-5, 'before the first', 1), (0, 'zero', 0), (1000000, 'after the last', 2);
        DELETE FROM items WHERE id = 20000;
        INSERT INTO items VALUES (20000, 'item number 20000', 20000 % 7);
        DELETE FROM items WHERE id = 30000;
        INSERT INTO items SELECT 30000, 'item number 30000' || repeat('x', 30000 % 40), 30000 % 7;
        UPDATE items SET id = 40000 WHERE id = 10000;
        UPDATE items SET id = 10000, v = 'moved in' WHERE id = 10001;
        UPDATE words SET meaning = 'new meaning' WHERE w = 'word 2500';
        DELETE FROM words WHERE w = 'word 1';
        INSERT INTO words VALUES ('a word before all', 'x'), ('zzz after all', NULL);
        UPDATE pairs SET v = 'changed' WHERE a = 5 AND b = 'b105';
        DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log WHERE who = 'user 3');
        INSERT INTO log VALUES ('user 1', 'did 1');
        INSERT INTO empty VALUES (1, 'not empty any more');
    ",
    )
    .await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after the restore");
    let ages = report.row_ages.unwrap();
    assert!(ages.compared_chunks < ages.chunks, "{ages:?}");
    let items = changed(&report, "items");
    // Deleted: the three inserts, 40000 and (as a key) nothing else; inserted back: the
    // three deleted and 10001; updated: 2, 15000, 15001 and 10000.
    assert_eq!(
        (items.deleted, items.inserted, items.updated),
        (4, 4, 4),
        "{items:?}"
    );
    assert_eq!(
        changed(&report, "log").deleted + changed(&report, "log").inserted,
        2
    );
    assert_eq!(changed(&report, "empty").deleted, 1);

    // Again: the rows the first restore rewrote are new now, compared, and equal.
    let again = restore_by_age(&db, &store, &captured).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_same(&db.fingerprint().await, &before, "after restoring twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_keys_tell_the_missing_rows_by_their_sums() {
    let (db, store, captured) = setup_with(
        "xmin_sums",
        "
        CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL);
        INSERT INTO big SELECT g, 'row ' || g || repeat('z', g % 50) FROM generate_series(1, 20000) g;
        CREATE TABLE mid (id int PRIMARY KEY, v text);
        INSERT INTO mid SELECT g, 'mid ' || g FROM generate_series(-5000, 5000) g;
        CREATE TABLE tiny (id smallint PRIMARY KEY, v text);
        INSERT INTO tiny SELECT g, 'tiny ' || g FROM generate_series(-300, 300) g;
    ",
    )
    .await;
    let before = db.fingerprint().await;
    db.exec(
        "
        -- One class (same low bits) losing several rows of a chunk: read key by key.
        DELETE FROM big WHERE id IN (16, 32, 48, 64, 80);
        -- A run of neighbours: one per class.
        DELETE FROM big WHERE id BETWEEN 5001 AND 5012;
        -- Updates, keys moved away and onto a deleted key, rows below and above all.
        UPDATE big SET v = 'changed' WHERE id IN (7000, 7001, 7017);
        UPDATE big SET id = 90000 WHERE id = 12000;
        DELETE FROM big WHERE id = 13000;
        UPDATE big SET id = 13000, v = 'moved' WHERE id = 13001;
        INSERT INTO big VALUES (-1, 'below'), (0, 'zero'), (1000000000000, 'above');
        -- The same row deleted and put back as it was: new, yet equal.
        DELETE FROM big WHERE id = 15000;
        INSERT INTO big VALUES (15000, 'row 15000');
        DELETE FROM mid WHERE id IN (-4999, -17, -1, 0, 1, 4096);
        UPDATE mid SET v = NULL WHERE id IN (-2, 2);
        INSERT INTO mid VALUES (2147483647, 'max'), (-2147483648, 'min');
        DELETE FROM tiny WHERE id IN (-300, -3, 300);
        UPDATE tiny SET v = 'changed' WHERE id = 7;
        INSERT INTO tiny VALUES (32767, 'max');
    ",
    )
    .await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after the restore");
    let ages = report.row_ages.unwrap();
    assert!(ages.compared_chunks > 0, "{ages:?}");
    assert_eq!(ages.summed_chunks, ages.compared_chunks, "{ages:?}");
    let big = report
        .changes
        .iter()
        .find(|c| c.table.name == "big")
        .unwrap();
    // Deleted: the 3 inserted and 90000; inserted back: the 18 deleted and 12000 (13000
    // comes back as an update of the moved row, 15000 is equal); updated: 3 and 13000.
    assert_eq!(
        (big.deleted, big.inserted, big.updated),
        (4, 19, 4),
        "{big:?}"
    );

    // Again: the rewritten rows are new now, found equal from their sums.
    let again = restore_by_age(&db, &store, &captured).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_same(&db.fingerprint().await, &before, "after restoring twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_that_cannot_be_send_the_table_to_the_full_comparison() {
    let (db, store, captured) = setup("xmin_forged").await;
    let before = db.fingerprint().await;
    db.exec(
        "INSERT INTO items VALUES (100000000, 'not in the snapshot', 1);
         DELETE FROM items WHERE id = 5;",
    )
    .await;
    // A point claiming a later capture: the inserted row reads as one the capture saw,
    // which no chunk of the snapshot holds. The sums must notice, not trust it. (Taken
    // once the transactions of other tests that began before the insert have ended.)
    db.quiesce().await;
    let now: String = db.value("SELECT pg_current_snapshot()::text").await;
    let mut forged = captured.source.point.clone().unwrap();
    forged.snapshot = now;
    settle(&db, &forged).await;
    let report = restore_with(&db, &store, &captured, Some(forged)).await;
    assert_same(&db.fingerprint().await, &before, "after the restore");
    let ages = report.row_ages.expect("the forged point is trusted");
    assert_eq!(
        (ages.summed_chunks, ages.content_tables),
        (0, 1),
        "{ages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_row_costs_one_chunk() {
    let (db, store, captured) = setup("xmin_one").await;
    let before = db.fingerprint().await;
    let items = captured
        .manifest
        .tables
        .iter()
        .find(|t| t.table.name == "items")
        .unwrap();
    let chunks = store.store.table_chunks(items).await.unwrap();
    assert!(chunks.len() > 3, "the fixture spans several chunks");
    db.exec("UPDATE items SET n = -1 WHERE id = 17000").await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after the restore");
    let ages = report.row_ages.unwrap();
    assert_eq!(ages.compared_chunks, 1, "{ages:?}");
    assert_eq!(ages.tables, 5, "{ages:?}");
    assert_eq!(ages.unchanged_tables, 4, "{ages:?}");
    assert_eq!(ages.content_tables, 0, "{ages:?}");
    assert_eq!(report.rows, 1);

    // Nothing changed: no row is compared at all.
    let report = restore_with(&db, &store, &captured, captured.source.point.clone()).await;
    let ages = report.row_ages.unwrap();
    // The row the first restore rewrote is new: its chunk is compared, and found equal.
    assert_eq!(
        (ages.unchanged_tables, ages.compared_chunks),
        (4, 1),
        "{ages:?}"
    );
    assert!(report.changes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_full_and_freeze_keep_the_ages_of_rows() {
    let (db, store, captured) = setup("xmin_vacuum").await;
    let before = db.fingerprint().await;
    let client = db.client().await;
    let xmin_of = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let raw = xmin_of("SELECT xmin::text FROM items WHERE id = 123").await;
    db.exec("VACUUM FREEZE items").await;
    db.exec("VACUUM FULL words").await;
    db.exec("VACUUM FULL pairs").await;
    // Freezing keeps the raw xmin (since PostgreSQL 9.4), as does a rewrite.
    assert_eq!(
        xmin_of("SELECT xmin::text FROM items WHERE id = 123").await,
        raw
    );
    let report = restore_by_age(&db, &store, &captured).await;
    let ages = report.row_ages.unwrap();
    assert_eq!(
        (ages.unchanged_tables, ages.compared_chunks),
        (5, 0),
        "{ages:?}"
    );
    assert_same(&db.fingerprint().await, &before, "after vacuums");

    db.exec("DELETE FROM items WHERE id = 500").await;
    db.exec("VACUUM FULL items").await;
    db.exec("UPDATE words SET meaning = 'x' WHERE w = 'word 7'")
        .await;
    db.exec("VACUUM FREEZE words").await;
    restore_by_age(&db, &store, &captured).await;
    assert_same(
        &db.fingerprint().await,
        &before,
        "after changes and vacuums",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tables_are_refilled() {
    let (db, store, captured) = setup("xmin_truncate").await;
    let before = db.fingerprint().await;
    db.exec("TRUNCATE items, log; TRUNCATE words; INSERT INTO words VALUES ('word 1', 'back')")
        .await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after truncates");
    let items = report
        .changes
        .iter()
        .find(|c| c.table.name == "items")
        .unwrap();
    assert_eq!(items.inserted, 30000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_what_a_restore_does() {
    let (db, store, captured) = setup("xmin_dry").await;
    let before = db.fingerprint().await;
    db.exec("DELETE FROM items WHERE id % 1000 = 0; UPDATE words SET meaning = NULL WHERE w = 'word 9'; INSERT INTO log VALUES ('x', 'y')")
        .await;
    let changed = db.fingerprint().await;
    if let Some(p) = &captured.source.point {
        settle(&db, p).await;
    }
    let dry = RestoreOptions {
        point: captured.source.point.clone(),
        dry_run: true,
        ..RestoreOptions::default()
    };
    let report = restore(&db.target(), &store.store, &captured.manifest, &dry)
        .await
        .unwrap();
    assert!(report.row_ages.is_some());
    assert_same(
        &db.fingerprint().await,
        &changed,
        "a dry run changes nothing",
    );
    let real = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after the real run");
    let counts = |r: &RestoreReport| {
        let mut c: Vec<_> = r
            .changes
            .iter()
            .map(|c| (c.table.name.clone(), c.deleted, c.inserted, c.updated))
            .collect();
        c.sort();
        c
    };
    assert_eq!(counts(&report), counts(&real));
    assert_eq!(report.rows, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_from_elsewhere_or_none_compares_content() {
    let (db, store, captured) = setup("xmin_elsewhere").await;
    let before = db.fingerprint().await;
    let point = captured.source.point.clone().unwrap();
    let other = TestDb::new("xmin_other").await;
    let other_oid: i64 = other
        .value("SELECT oid::int8 FROM pg_database WHERE datname = current_database()")
        .await;
    let forged = [
        CapturePoint {
            system_id: "1".into(),
            ..point.clone()
        },
        CapturePoint {
            database_oid: other_oid as u32,
            ..point.clone()
        },
        CapturePoint {
            timeline: point.timeline + 1,
            ..point.clone()
        },
        CapturePoint {
            relations: "not these tables".into(),
            ..point.clone()
        },
        // A snapshot from the future: transactions it saw running may still run.
        CapturePoint {
            snapshot: "1:4000000000:".into(),
            ..point.clone()
        },
    ];
    for (i, p) in forged.into_iter().enumerate() {
        db.exec("UPDATE items SET n = n + 1 WHERE id = 777; DELETE FROM log WHERE who = 'user 4'; INSERT INTO pairs VALUES (1000, 'x', 'y')")
            .await;
        let report = restore_with(&db, &store, &captured, Some(p)).await;
        assert!(report.row_ages.is_none(), "forged point {i} is not trusted");
        assert_same(
            &db.fingerprint().await,
            &before,
            &format!("forged point {i}"),
        );
    }
    // An old record: no point at all.
    db.exec("UPDATE words SET w = 'renamed' WHERE w = 'word 3'")
        .await;
    let report = restore_with(&db, &store, &captured, None).await;
    assert!(report.row_ages.is_none());
    assert_same(&db.fingerprint().await, &before, "without a point");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_swapped_by_renaming_are_not_trusted() {
    let (db, store, captured) = setup_with(
        "xmin_swap",
        "CREATE TABLE a (v text); CREATE TABLE b (v text);
         INSERT INTO a VALUES ('from a'); INSERT INTO b VALUES ('from b');",
    )
    .await;
    let before = db.fingerprint().await;
    // Same schema text, same rows' ages, other contents under each name.
    db.exec("ALTER TABLE a RENAME TO c; ALTER TABLE b RENAME TO a; ALTER TABLE c RENAME TO b")
        .await;
    let report = restore_with(&db, &store, &captured, captured.source.point.clone()).await;
    assert!(report.row_ages.is_none());
    assert_same(&db.fingerprint().await, &before, "after the swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_by_age_are_exact_for_random_changes() {
    let db = TestDb::rich("xmin_random").await;
    db.quiesce().await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let (db, store, captured, before) = (&db, &store, &captured, &before);
    run_cases(8, change_sets(CHANGES.len()), |picked| async move {
        for i in &picked {
            db.exec(CHANGES[*i]).await;
        }
        restore_by_age(db, store, captured).await;
        assert_same(
            &db.fingerprint().await,
            before,
            &format!("after restoring changes {picked:?} by age"),
        );
    });
}

/// Tables without a key, their rows sorted by their whole text into many chunks: runs of
/// identical rows that straddle chunks' ends or fill whole chunks, rows alike in their
/// first 63 bytes across chunks' ends, values that print with
/// quotes, commas, parentheses, backslashes, spaces and newlines, NULLs beside empty
/// strings; one with a generated column (not in the rows' stored text); one whose names
/// hold quotes, a semicolon, a newline and Unicode.
const KEYLESS: &str = r#"
    CREATE TABLE notes (who text, what text, n int);
    INSERT INTO notes SELECT 'user ' || (g % 97), 'did ' || (g % 13) || repeat('.', g % 50), g % 5
      FROM generate_series(1, 100000) g;
    INSERT INTO notes SELECT 'a shared beginning, longer than the sixty-three bytes a bound keeps', g::text, 1
      FROM generate_series(1, 8000) g;
    INSERT INTO notes SELECT 'same', 'the same row, again (and again)', 1 FROM generate_series(1, 20000);
    INSERT INTO notes SELECT 'pair', 'two of each', g % 2000 FROM generate_series(1, 4000) g;
    INSERT INTO notes VALUES (NULL, '', NULL), ('', NULL, 0), (E'tab\there', E'new\nline', 2),
      ('quote "q"', E'back\\slash', 3), ('Größe', '(a,b)', 4);
    CREATE TABLE doubled (a int, b int GENERATED ALWAYS AS (a * 2) STORED, c text);
    INSERT INTO doubled (a, c) SELECT g % 1000, repeat('c', g % 20) FROM generate_series(1, 30000) g;
    CREATE TABLE "odd ""name""; x
y" ("a ""col""" text, "Größe" int);
    INSERT INTO "odd ""name""; x
y" SELECT 'v ' || (g % 500), g % 7 FROM generate_series(1, 60000) g;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_a_key_compare_only_the_chunks_their_rows_ages_flag() {
    let (db, store, captured) = setup_with("xmin_keyless", KEYLESS).await;
    let before = db.fingerprint().await;
    let chunks = |name: &str| {
        let entry = captured
            .manifest
            .tables
            .iter()
            .find(|t| t.table.name == name)
            .unwrap()
            .clone();
        let store = &store.store;
        async move { store.table_chunks(&entry).await.unwrap().len() as u64 }
    };
    let (notes, doubled) = (chunks("notes").await, chunks("doubled").await);
    let odd = chunks("odd \"name\"; x\ny").await;
    assert!(
        notes > 8 && doubled > 1 && odd > 1,
        "{notes}, {doubled} and {odd} chunks"
    );
    db.exec(
        r#"
        DELETE FROM notes WHERE ctid = (SELECT min(ctid) FROM notes WHERE who = 'same');
        INSERT INTO notes VALUES ('pair', 'two of each', 7);
        DELETE FROM notes WHERE who = 'pair' AND n = 8;
        UPDATE notes SET n = 99 WHERE ctid = (SELECT min(ctid) FROM notes WHERE who = 'user 50' AND n = 1);
        INSERT INTO notes VALUES ('   before everything', 'x', 1), ('~after everything', 'y', 2);
        UPDATE notes SET what = E'new\nline!' WHERE who = E'tab\there';
        DELETE FROM notes WHERE who IS NULL;
        UPDATE notes SET n = 2 WHERE n = 1 AND what = '4321' AND who LIKE 'a shared%';
        UPDATE doubled SET a = -1 WHERE ctid = (SELECT min(ctid) FROM doubled WHERE a = 500);
        UPDATE "odd ""name""; x
y" SET "Größe" = -1 WHERE ctid = (SELECT min(ctid) FROM "odd ""name""; x
y" WHERE "a ""col""" = 'v 250');
    "#,
    )
    .await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after the restore");
    let ages = report.row_ages.unwrap();
    // `doubled` is compared whole: its generated column is in its rows' text, not in its
    // chunks. `notes` only where its rows changed.
    assert_eq!(ages.content_tables, 1, "{ages:?}");
    assert!(
        ages.compared_chunks > 0 && ages.compared_chunks < notes / 2,
        "{ages:?} of {notes} chunks"
    );
    let odd = changed(&report, "odd \"name\"; x\ny");
    assert_eq!((odd.inserted, odd.deleted), (1, 1), "{odd:?}");
    let change = changed(&report, "notes");
    // Put back: one `same`, both copies of (pair, 8), the three rows updated and the one
    // with a NULL; taken out: the third (pair, 7), the two new rows and the three updated.
    assert_eq!((change.inserted, change.deleted), (7, 6), "{change:?}");

    // Again: the rows the first restore wrote are new, compared, and equal.
    let again = restore_by_age(&db, &store, &captured).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_same(&db.fingerprint().await, &before, "after restoring twice");

    // A whole chunk's worth of one row gone, and a chunk's first row: still exact.
    db.exec(
        "DELETE FROM notes WHERE who = 'same';
         DELETE FROM notes WHERE ctid IN (SELECT ctid FROM notes ORDER BY notes::text COLLATE \"C\" LIMIT 300);",
    )
    .await;
    restore_by_age(&db, &store, &captured).await;
    assert_same(
        &db.fingerprint().await,
        &before,
        "after deleting runs of rows",
    );
}

/// Changes to [`KEYLESS`]'s `notes`: copies of identical rows taken out and added, rows
/// moved to the ends of the order, runs of rows deleted across chunks' ends.
const KEYLESS_CHANGES: &[&str] = &[
    "DELETE FROM notes WHERE ctid = (SELECT min(ctid) FROM notes WHERE who = 'same')",
    "INSERT INTO notes SELECT 'same', 'the same row, again (and again)', 1 FROM generate_series(1, 3)",
    "DELETE FROM notes WHERE who = 'same'",
    "DELETE FROM notes WHERE who = 'pair' AND n = 8",
    "INSERT INTO notes VALUES ('pair', 'two of each', 7)",
    "UPDATE notes SET n = n + 1 WHERE who = 'user 50' AND n = 1",
    "INSERT INTO notes VALUES ('   before everything', 'x', 1), ('~after everything', 'y', 2)",
    "DELETE FROM notes WHERE who IS NULL",
    "UPDATE notes SET what = what || '!' WHERE ctid IN
       (SELECT ctid FROM notes ORDER BY notes::text COLLATE \"C\" OFFSET 5000 LIMIT 3)",
    "DELETE FROM notes WHERE ctid IN (SELECT ctid FROM notes ORDER BY notes::text COLLATE \"C\" LIMIT 300)",
    "UPDATE notes SET n = 0 WHERE who LIKE 'a shared%' AND what LIKE '%007'",
    "INSERT INTO notes SELECT * FROM notes WHERE who = 'user 3' LIMIT 50",
    "UPDATE notes SET who = 'same' WHERE ctid = (SELECT min(ctid) FROM notes WHERE who = 'user 7')",
    "UPDATE notes SET who = E'tab\\there' WHERE who = 'Größe'",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_a_key_restored_by_age_are_exact_for_random_changes() {
    let (db, store, captured) = setup_with("xmin_keyless_random", KEYLESS).await;
    let before = db.fingerprint().await;
    let (db, store, captured, before) = (&db, &store, &captured, &before);
    run_cases(8, change_sets(KEYLESS_CHANGES.len()), |picked| async move {
        // `doubled` is left alone: unchanged by its count; `notes` by its chunks.
        restore_by_age_after(db, store, captured, before, KEYLESS_CHANGES, &picked).await;
    });
}

/// Rows of a table without a key that are alike up to a character starting at their
/// text's byte 62 (`(`, then 61 bytes): a one-byte `a` there is kept in a 63-byte prefix,
/// a two-byte `é` is not. Each group sorts its `a` row, then its two `é` rows; ten rows unlike them sort first.
const STRADDLING: &str = r#"
    CREATE TABLE wide (v text);
    INSERT INTO wide SELECT repeat('x', 55) || lpad(g::text, 6, '0') || c || repeat('z', 20 + g % 37) || n
      FROM generate_series(1, 3000) g, (VALUES ('a', 1), ('é', 1), ('é', 2)) AS s(c, n);
    INSERT INTO wide SELECT 'first ' || g FROM generate_series(1, 10) g;
"#;

/// A row of [`STRADDLING`]: group `g`, character `c`, copy `n`.
fn straddling(g: u32, c: char, n: u32) -> String {
    format!(
        "{}{g:06}{c}{}{n}",
        "x".repeat(55),
        "z".repeat(20 + g as usize % 37)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_across_a_bounds_last_byte_keeps_rows_in_their_bucket() {
    let (db, store, captured) = setup_with("xmin_keyless_straddling", STRADDLING).await;
    let before = db.fingerprint().await;
    db.exec(&format!(
        "UPDATE wide SET v = v || '!' WHERE v = '{}'",
        straddling(1500, 'é', 1)
    ))
    .await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(&db.fingerprint().await, &before, "after the restore");
    let ages = report.row_ages.unwrap();
    assert_eq!(ages.content_tables, 0, "{ages:?}");
    let wide = changed(&report, "wide");
    assert_eq!((wide.inserted, wide.deleted), (1, 1), "{wide:?}");

    // A chunk that opens with group g's `a`: g's `é` rows sort after that bound, but their
    // 62-byte prefix sorts before it. Were they counted in the bucket before, taking
    // out the two rows they would stand in for there would go unseen.
    let entry = captured
        .manifest
        .tables
        .iter()
        .find(|t| t.table.name == "wide")
        .unwrap();
    let mut opening = None;
    for chunk in store
        .store
        .table_chunks(entry)
        .await
        .unwrap()
        .iter()
        .skip(1)
    {
        let plain = store.store.get_plain(&chunk.id, chunk.bytes).await.unwrap();
        let first = String::from_utf8(plain).unwrap();
        let first = first.lines().next().unwrap().to_owned();
        let g: u32 = first[55..61].parse().unwrap();
        if first == straddling(g, 'a', 1) && g > 1 {
            opening = Some(g);
            break;
        }
    }
    let g = opening.expect("a chunk opens with a group's first row");
    db.exec(&format!(
        "DELETE FROM wide WHERE v IN ('{}', '{}')",
        straddling(g - 1, 'é', 1),
        straddling(g - 1, 'é', 2)
    ))
    .await;
    let report = restore_by_age(&db, &store, &captured).await;
    assert_same(
        &db.fingerprint().await,
        &before,
        "after two rows before a bound went",
    );
    let wide = changed(&report, "wide");
    assert_eq!((wide.inserted, wide.deleted), (2, 0), "{wide:?}");
}

/// Tables without a key whose first column tells their rows apart, so that their rows are
/// bucketed by it: a timestamp (printed quoted, for its space), NULLs and `infinity`
/// (printed bare), and text that needs quoting or escaping in a row's text, or has a
/// character across its prefix's last byte.
const FIRST_COLUMN: &str = r#"
    CREATE TABLE stamped (at timestamptz, who text, n int);
    INSERT INTO stamped SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds',
        'who ' || (g % 7), g % 3
      FROM generate_series(1, 40000) g;
    INSERT INTO stamped SELECT NULL, 'nobody', g % 3 FROM generate_series(1, 50) g;
    INSERT INTO stamped SELECT 'infinity', 'end', 1 FROM generate_series(1, 5);
    CREATE TABLE hostile (k text, v text);
    INSERT INTO hostile SELECT CASE g % 8
        WHEN 0 THEN 'q"' || g WHEN 1 THEN 'c,' || g WHEN 2 THEN '(p) ' || g
        WHEN 3 THEN E'b\\' || g WHEN 4 THEN repeat('y', 55) || lpad(g::text, 6, '0') || 'é'
        WHEN 5 THEN repeat('y', 55) || lpad((g - 1)::text, 6, '0') || 'a'
        WHEN 6 THEN E'tab\t' || g ELSE 'Größe ' || g END,
        repeat('v', g % 30)
      FROM generate_series(1, 30000) g;
    INSERT INTO hostile VALUES ('', 'empty'), (NULL, 'null'), ('', 'empty'), (NULL, 'null');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_a_key_bucketed_by_their_first_column_are_exact() {
    let (db, store, captured) = setup_with("xmin_keyless_first", FIRST_COLUMN).await;
    let before = db.fingerprint().await;
    let changes: &[&str] = &[
        "UPDATE stamped SET n = n + 10 WHERE at = timestamptz '2024-01-01 00:00:00+00' + 20000 * interval '17 seconds'",
        "DELETE FROM stamped WHERE at IS NULL AND n = 1",
        "INSERT INTO stamped VALUES ('-infinity', 'start', 0), (NULL, 'nobody', 1), ('2024-01-02 00:00:00.5+00', 'x', 2)",
        "DELETE FROM stamped WHERE ctid = (SELECT min(ctid) FROM stamped WHERE at = 'infinity')",
        r#"UPDATE hostile SET v = v || '!' WHERE k IN ('q"8', 'c,9', '(p) 10', E'b\\11', E'tab\t14', 'Größe 15')"#,
        "UPDATE hostile SET v = 'changed' WHERE k = repeat('y', 55) || '015004é' OR k = repeat('y', 55) || '020004a'",
        "DELETE FROM hostile WHERE ctid = (SELECT min(ctid) FROM hostile WHERE k = '')",
        "INSERT INTO hostile VALUES (NULL, 'null'), ('\"', ','), ('', '')",
    ];
    let (db, store, captured, before) = (&db, &store, &captured, &before);
    run_cases(6, change_sets(changes.len()), |picked| async move {
        let ages = restore_by_age_after(db, store, captured, before, changes, &picked).await;
        // The changes to `hostile` fall in each of its kinds of first column, so in many
        // of its buckets; not in all of the two tables' chunks.
        assert!(ages.compared_chunks < ages.chunks, "{picked:?}: {ages:?}");
    });
}

/// Tables without a key whose rows are alike for 58 bytes, then differ by characters of one
/// to four bytes, so that the 60-byte bounds and the 63-byte prefixes cut characters at
/// every offset: one of one column (bucketed by its whole text), one of two (by its first).
const MIXED_WIDTHS: &str = r#"
    CREATE FUNCTION pg_temp.c(g int, k int) RETURNS text LANGUAGE sql IMMUTABLE AS
      $$ SELECT (ARRAY['a', 'é', '€', '𝄞'])[(hashint4(g * 7 + k) & 3) + 1] $$;
    CREATE TABLE one (v text);
    INSERT INTO one SELECT repeat('x', 57) || pg_temp.c(g, 1) || pg_temp.c(g, 2) || pg_temp.c(g, 3)
        || pg_temp.c(g, 4) || lpad(g::text, 6, '0')
      FROM generate_series(1, 20000) g;
    CREATE TABLE two (v text, n int);
    INSERT INTO two SELECT v, right(v, 6)::int % 5 FROM one;
"#;

/// Changes to both of [`MIXED_WIDTHS`]'s tables.
const MIXED_WIDTHS_CHANGES: &[&str] = &[
    "DELETE FROM one WHERE abs(hashtext(v)) % 97 = 5; DELETE FROM two WHERE abs(hashtext(v)) % 97 = 5",
    "INSERT INTO one SELECT v FROM one WHERE abs(hashtext(v)) % 101 = 7;
     INSERT INTO two SELECT * FROM two WHERE abs(hashtext(v)) % 101 = 7",
    "UPDATE one SET v = v || '!' WHERE abs(hashtext(v)) % 89 = 3;
     UPDATE two SET n = n + 1 WHERE abs(hashtext(v)) % 89 = 3",
    "INSERT INTO one SELECT repeat('x', 57) || '𝄞é' || g FROM generate_series(1, 20) g;
     INSERT INTO two SELECT repeat('x', 57) || 'a€' || g, g FROM generate_series(1, 20) g",
    "DELETE FROM one WHERE v LIKE repeat('x', 57) || 'é€%'; DELETE FROM two WHERE v LIKE repeat('x', 57) || '𝄞a%'",
    "UPDATE two SET v = repeat('x', 57) || 'aaaa' WHERE abs(hashtext(v)) % 211 = 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_differing_by_characters_of_every_width_at_the_prefixes_end_are_restored_exactly() {
    let (db, store, captured) = setup_with("xmin_keyless_widths", MIXED_WIDTHS).await;
    let before = db.fingerprint().await;
    let (db, store, captured, before) = (&db, &store, &captured, &before);
    run_cases(
        6,
        change_sets(MIXED_WIDTHS_CHANGES.len()),
        |picked| async move {
            restore_by_age_after(db, store, captured, before, MIXED_WIDTHS_CHANGES, &picked).await;
        },
    );
}
