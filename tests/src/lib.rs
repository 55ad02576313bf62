//! Support for phony's integration tests: each test gets its own uniquely named database
//! on the server named by `PHONY_TEST_DATABASE_URL` (default: the local server as
//! `postgres`), dropped when the test ends, so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use phony_core::{RootManifest, Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;
use phony_postgres::{ConnectionTarget, Fingerprint, RestoreOptions, RestoreReport};
use tokio_postgres::Client;

pub mod s3;

/// The server tests run against, as a URL to its maintenance database:
/// `$PHONY_TEST_DATABASE_URL`, else the local server at 127.0.0.1:5432 if it answers, else a
/// throwaway cluster from the installed PostgreSQL binaries, shared by the test process and
/// stopped when it exits (see `phony_testkit::default_server_url`).
pub fn server_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| match phony_testkit::default_server_url() {
        Ok(url) => url,
        Err(e) => panic!(
            "no PostgreSQL for the tests: nothing answers at 127.0.0.1:5432, \
             PHONY_TEST_DATABASE_URL is unset, and a throwaway cluster failed: {e}"
        ),
    })
    .clone()
}

/// A fixture file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A database of a test's own, dropped (with its sessions) when this is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    server: ConnectionTarget,
}

impl TestDb {
    /// Creates an empty database named `phony_t_<label>_<random>`.
    pub async fn new(label: &str) -> Self {
        Self::with_options(label, "").await
    }

    /// [`TestDb::new`] with options for `CREATE DATABASE` (`TEMPLATE template0 ENCODING …`).
    pub async fn with_options(label: &str, options: &str) -> Self {
        let server = ConnectionTarget::parse(Some(&server_url())).unwrap();
        let name = format!("phony_t_{label}_{:08x}", rand::random::<u32>());
        let admin = server.connect().await.unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" {options}"))
            .await
            .unwrap();
        TestDb { name, server }
    }

    /// Creates a database holding the rich fixture.
    pub async fn rich(label: &str) -> Self {
        let db = Self::new(label).await;
        db.load(&fixture("rich.sql")).await;
        db
    }

    /// A database name that does not exist yet (for restores into a new database); it is
    /// dropped with this one.
    pub fn sibling_name(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_of(&self.name)
    }

    pub fn url_of(&self, db: &str) -> String {
        let base = server_url();
        match base.rfind('/') {
            Some(i) if base[..i].contains("://") => format!("{}/{db}", &base[..i]),
            _ => format!("{base} dbname={db}"),
        }
    }

    pub fn target(&self) -> ConnectionTarget {
        self.server.with_dbname(&self.name)
    }

    pub async fn client(&self) -> Client {
        self.target().connect().await.unwrap()
    }

    /// Runs a SQL script file in one implicit transaction.
    pub async fn load(&self, path: &Path) {
        let sql = std::fs::read_to_string(path).unwrap();
        self.exec(&sql).await;
    }

    /// Runs SQL (one or more statements).
    pub async fn exec(&self, sql: &str) {
        let client = self.client().await;
        if let Err(e) = client.batch_execute(sql).await {
            panic!("{}: {sql}", phony_postgres::error::describe(&e));
        }
    }

    /// Turns change tracking on (`phony track on`), in a transaction of its own.
    pub async fn track_on(&self) {
        let client = self.client().await;
        client.batch_execute("BEGIN").await.unwrap();
        phony_postgres::tracking::install(&client).await.unwrap();
        client.batch_execute("COMMIT").await.unwrap();
    }

    pub async fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.target()).await.unwrap()
    }

    pub async fn fingerprint_of(&self, db: &str) -> Fingerprint {
        Fingerprint::of(&self.server.with_dbname(db)).await.unwrap()
    }

    /// Restores `manifest` from `store` into a new database beside this one (dropped with
    /// it) with the default options, and returns that database's name.
    pub async fn restore_beside(
        &self,
        store: &TestStore,
        manifest: &RootManifest,
        suffix: &str,
    ) -> String {
        let name = self.sibling_name(suffix);
        let target = self.server.with_dbname(&name);
        assert!(phony_postgres::ensure_database(&target).await.unwrap());
        phony_postgres::restore(&target, &store.store, manifest, &RestoreOptions::default())
            .await
            .unwrap();
        name
    }

    /// Restores `manifest` from `store` into this database with the default options.
    pub async fn restore(&self, store: &TestStore, manifest: &RootManifest) -> RestoreReport {
        phony_postgres::restore(
            &self.target(),
            &store.store,
            manifest,
            &RestoreOptions::default(),
        )
        .await
        .unwrap()
    }

    /// Waits until the transactions running now have ended. Other tests share the server: a
    /// capture taken while one of theirs runs counts every row written since it began as new.
    pub async fn quiesce(&self) {
        let xmax: String = self
            .value("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
            .await;
        self.wait_for_xmin(xmax.parse().unwrap()).await;
    }

    /// The one value `sql` (without parameters) returns, read on a connection of its own.
    pub async fn value<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until no transaction older than `xmax` runs (other tests share the server, and
    /// a capture's point is trusted only once the transactions it saw running have ended).
    pub async fn wait_for_xmin(&self, xmax: i64) {
        let client = self.client().await;
        for _ in 0..600 {
            let now: i64 = client
                .query_one(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if now >= xmax {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("transactions older than the capture kept running");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = self.server.clone();
        let names = [self.name.clone(), format!("{}_%", self.name)];
        // Drop runs outside async; use a runtime of its own on a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let admin = server.connect().await.ok()?;
                let rows = admin
                    .query(
                        "SELECT datname::text FROM pg_database WHERE datname = $1 OR datname LIKE $2",
                        &[&names[0], &names[1]],
                    )
                    .await
                    .ok()?;
                for r in rows {
                    let db: String = r.get(0);
                    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// A login role of a test's own (`phony_r_<label>_<random>`, with the attributes given),
/// dropped with what it owns in `db` when this is dropped: declare it after the database
/// so that it goes first.
#[derive(Debug)]
pub struct TestRole {
    pub name: String,
    db: ConnectionTarget,
}

impl TestRole {
    pub async fn new(db: &TestDb, label: &str, attributes: &str) -> Self {
        let name = format!("phony_r_{label}_{:08x}", rand::random::<u32>());
        db.exec(&format!("CREATE ROLE \"{name}\" LOGIN {attributes}"))
            .await;
        TestRole {
            name,
            db: db.target(),
        }
    }

    /// `db`'s database, connected to as this role.
    pub fn target(&self) -> ConnectionTarget {
        let shown = self.db.to_string();
        let (_, rest) = shown.split_once('@').unwrap();
        ConnectionTarget::parse(Some(&format!("postgres://{}@{rest}", self.name))).unwrap()
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let (db, name) = (self.db.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = db.connect().await.ok()?;
                let _ = client
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}';
                         REASSIGN OWNED BY \"{name}\" TO CURRENT_USER; DROP OWNED BY \"{name}\";
                         DROP ROLE \"{name}\";"
                    ))
                    .await;
                Some(())
            })
        })
        .join();
    }
}

/// A store in a temporary directory.
#[derive(Debug)]
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store<ObjectStoreBackend>>,
}

impl TestStore {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = ObjectStoreBackend::local(dir.path(), true).unwrap();
        let store = Arc::new(
            Store::open_or_init(backend, StoreConfig::default())
                .await
                .unwrap(),
        );
        TestStore { dir, store }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Asserts two fingerprints are equal, showing the first difference readably.
pub fn assert_same(actual: &Fingerprint, expected: &Fingerprint, what: &str) {
    if actual.schema != expected.schema {
        let a: Vec<_> = actual.schema.lines().collect();
        let e: Vec<_> = expected.schema.lines().collect();
        let first = a
            .iter()
            .zip(&e)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(e.len()));
        panic!(
            "{what}: schema differs at line {first}:\n  actual:   {:?}\n  expected: {:?}",
            a.get(first),
            e.get(first)
        );
    }
    assert_eq!(
        actual.tables, expected.tables,
        "{what}: table contents differ"
    );
    assert_eq!(
        actual.sequences, expected.sequences,
        "{what}: sequences differ"
    );
    assert_eq!(
        actual.database, expected.database,
        "{what}: database encoding, locale or settings differ"
    );
}

/// An error and its causes on one line, as the CLI prints them.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}
