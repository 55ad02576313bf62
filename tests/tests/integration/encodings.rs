//! Databases in other encodings than UTF-8: their text comes back as it was, in place and
//! in a new database created with the same encoding and locale.

use phony_postgres::{capture, restore, restore_into_new, CaptureOptions, Error};
use phony_postgres::{RestoreOptions, RestorePath};
use phony_tests::{assert_same, TestDb, TestStore};

/// Non-ASCII text in rows, a key, a default and a comment (all in LATIN1's repertoire).
const SCHEMA: &str = "CREATE TABLE t (k text PRIMARY KEY, v text DEFAULT 'Straße');
    COMMENT ON TABLE t IS 'Grüße aus Köln';
    INSERT INTO t VALUES ('Grüße', 'naïve café'), ('ÀÉÎ', 'ÿ'), ('plain', 'text');";

const DIRTY: &str = "UPDATE t SET v = 'x' WHERE k = 'Grüße'; DELETE FROM t WHERE k = 'ÀÉÎ';
    INSERT INTO t VALUES ('neu', 'ö');";

/// The rows as UTF-8 text, in key order.
async fn rows(db: &TestDb, dbname: &str) -> Vec<(String, String)> {
    let client = db.target().with_dbname(dbname).connect().await.unwrap();
    client
        .query("SELECT k, v FROM t ORDER BY k COLLATE \"C\"", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn exact_in(encoding: &str) {
    let db = TestDb::with_options(
        &format!("enc_{}", encoding.to_lowercase()),
        &format!("TEMPLATE template0 ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'"),
    )
    .await;
    db.exec(SCHEMA).await;
    let expected_rows = rows(&db, &db.name).await;
    assert_eq!(
        expected_rows[0],
        ("Grüße".to_owned(), "naïve café".to_owned())
    );
    let expected = db.fingerprint().await;
    assert_eq!(expected.database.encoding, encoding);

    for tracked in [false, true] {
        if tracked {
            db.track_on().await;
        }
        let store = TestStore::new().await;
        let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        for full in [false, true] {
            let what = format!("{encoding}, tracked: {tracked}, full: {full}");
            db.exec(DIRTY).await;
            let opts = RestoreOptions {
                full,
                ..RestoreOptions::default()
            };
            let report = restore(&db.target(), &store.store, &captured.manifest, &opts)
                .await
                .unwrap();
            let path = if full {
                RestorePath::Full
            } else {
                RestorePath::Delta
            };
            assert_eq!(report.path, path, "{what}: {:?}", report.full_reason);
            assert_eq!(rows(&db, &db.name).await, expected_rows, "{what}");
            assert_same(&db.fingerprint().await, &expected, &what);
        }
        let copy = db.sibling_name(&format!("copy{}", tracked as u8));
        restore_into_new(
            &db.target().with_dbname(&copy),
            &store.store,
            &captured.manifest,
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(rows(&db, &copy).await, expected_rows, "new database");
        assert_same(
            &db.fingerprint_of(&copy).await,
            &expected,
            &format!("{encoding}: a new database"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_text_comes_back_as_it_was() {
    exact_in("LATIN1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_ascii_text_comes_back_as_it_was() {
    exact_in("SQL_ASCII").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_text_comes_back_as_it_was() {
    exact_in("UTF8").await;
}

/// A `SQL_ASCII` database stores whatever bytes it is given; phony keeps rows as UTF-8
/// text, so one that holds other bytes is refused, naming the table, never stored mangled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_ascii_bytes_that_are_not_utf8_are_refused() {
    let db = TestDb::with_options(
        "enc_raw",
        "TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    .await;
    db.exec(
        "CREATE TABLE ok (id int PRIMARY KEY, v text);
         INSERT INTO ok VALUES (1, 'fine');
         CREATE TABLE raw (id int PRIMARY KEY, v text);
         INSERT INTO raw VALUES (1, convert_from('\\xff'::bytea, 'SQL_ASCII'));",
    )
    .await;
    let store = TestStore::new().await;
    let e = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::NotUtf8 { table } if table == "public.raw"),
        "{e:?}"
    );
    assert!(e.to_string().contains("SQL_ASCII"), "{e}");
}
