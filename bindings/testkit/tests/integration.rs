//! phony-testkit against the real PostgreSQL (the server of `default_server_url`): every
//! test builds its own kit, whose databases are dropped with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use phony_postgres::{ConnectionTarget, Fingerprint};
use phony_testkit::{default_server_url, Error, SchemaChanges, Setup, Strategy, Testkit};

const SHOP: &str = "
    CREATE TYPE status AS ENUM ('new', 'paid');
    CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text UNIQUE NOT NULL);
    CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                         status status NOT NULL DEFAULT 'new', total numeric(10,2));
    INSERT INTO customers (email) SELECT 'c' || g || '@example.com' FROM generate_series(1, 200) g;
    INSERT INTO orders (customer_id, total) SELECT 1 + g % 200, g / 10.0 FROM generate_series(1, 1000) g;";

fn shop(strategy: Strategy) -> Testkit {
    Testkit::from_setup(Setup::sql(SHOP).strategy(strategy))
}

/// What a test commits: rows inserted (sequences advance), updated and deleted, on two
/// connections.
async fn dirty(db: &phony_testkit::TestDatabase) {
    let a = db.connect().await.unwrap();
    let b = db.connect().await.unwrap();
    a.batch_execute(
        "INSERT INTO customers (email) VALUES ('new@example.com');
         INSERT INTO orders (customer_id, total) VALUES (1, 1), (2, 2);",
    )
    .await
    .unwrap();
    b.batch_execute(
        "UPDATE customers SET email = 'changed' || id WHERE id <= 10;
         DELETE FROM orders WHERE id % 3 = 0;",
    )
    .await
    .unwrap();
}

async fn counts(db: &phony_testkit::TestDatabase) -> (i64, i64, i64) {
    let c = db.connect().await.unwrap();
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders),
                    nextval('orders_id_seq')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn every_checkout_sees_the_baseline_serial() {
    sees_the_baseline(Strategy::Serial).await;
}

#[tokio::test]
async fn every_checkout_sees_the_baseline_pool() {
    sees_the_baseline(Strategy::Pool { size: 2 }).await;
}

/// Asserts that `db` has the fingerprint `first` holds, or keeps its own there if none yet.
async fn same_as_first(
    first: &mut Option<Fingerprint>,
    db: &phony_testkit::TestDatabase,
    what: &str,
) {
    let fp = Fingerprint::of(db.target()).await.unwrap();
    match first {
        None => *first = Some(fp),
        Some(b) => assert_eq!(&fp, b, "{what}"),
    }
}

async fn sees_the_baseline(strategy: Strategy) {
    let kit = shop(strategy);
    let mut baseline = None;
    for _ in 0..4 {
        let db = kit.checkout().await.unwrap();
        same_as_first(&mut baseline, &db, "a checkout differs from the baseline").await;
        dirty(&db).await;
        let report = db.finish().await.unwrap();
        assert_eq!(report.schema_changed, Some(false));
    }
    // Dropped without finish: reset in the background, seen by the next checkout.
    for _ in 0..3 {
        let db = kit.checkout().await.unwrap();
        assert_eq!(counts(&db).await, (200, 1000, 1001));
        dirty(&db).await;
    }
}

#[test]
fn parallel_tests_on_their_own_runtimes_never_share_a_database() {
    let kit = Arc::new(shop(Strategy::Pool { size: 2 }));
    let busy = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (kit, busy) = (kit.clone(), busy.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for _ in 0..3 {
                        let db = kit.checkout().await.unwrap();
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 2, "{now} tests hold a database of a pool of 2");
                        assert_eq!(counts(&db).await, (200, 1000, 1001), "{}", db.name());
                        dirty(&db).await;
                        busy.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[tokio::test]
async fn a_panicking_test_leaves_a_clean_database_for_the_next() {
    let kit = Arc::new(shop(Strategy::Serial));
    let k = kit.clone();
    let result = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let db = k.checkout().await.unwrap();
            let c = db.connect().await.unwrap();
            c.batch_execute("DELETE FROM orders; BEGIN; LOCK TABLE customers;")
                .await
                .unwrap();
            panic!("the test failed with a transaction open");
        })
    })
    .join();
    assert!(result.is_err());
    let db = tokio::time::timeout(Duration::from_secs(20), kit.checkout())
        .await
        .expect("the next checkout waits for the reset, not for ever")
        .unwrap();
    assert_eq!(counts(&db).await, (200, 1000, 1001));
}

#[tokio::test]
async fn sessions_left_open_are_terminated_by_the_reset() {
    let kit = shop(Strategy::Pool { size: 1 });
    let db = kit.checkout().await.unwrap();
    let idle = db.connect().await.unwrap();
    idle.batch_execute("BEGIN; UPDATE customers SET email = 'x' || id;")
        .await
        .unwrap();
    let report = db.finish().await.unwrap();
    assert!(report.restore.terminated >= 1, "{report:?}");
    let db = kit.checkout().await.unwrap();
    let c = db.connect().await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers WHERE email LIKE 'x%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_reset_that_fails_is_retried_at_the_next_checkout() {
    let kit = Testkit::from_setup(
        Setup::sql(SHOP)
            .strategy(Strategy::Serial)
            .terminate_sessions(false)
            .lock_timeout(Duration::from_millis(200)),
    );
    let db = kit.checkout().await.unwrap();
    let holder = db.connect().await.unwrap();
    holder
        .batch_execute(
            "DELETE FROM orders WHERE id < 10; BEGIN; LOCK TABLE customers IN ACCESS SHARE MODE;",
        )
        .await
        .unwrap();
    let err = db.finish().await.unwrap_err();
    assert!(err.to_string().contains("could not lock"), "{err}");
    let err = kit.checkout().await.unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("could not lock"), "{err}");
    holder.batch_execute("COMMIT").await.unwrap();
    let db = kit.checkout().await.unwrap();
    assert_eq!(counts(&db).await, (200, 1000, 1001));
}

/// The kit's own session holds triggers off for good (so resets keep their cached plans);
/// the tests' sessions are untouched: their writes fire the user's triggers, and the
/// resets fire none.
#[tokio::test]
async fn user_triggers_fire_in_tests_and_never_in_resets() {
    let kit = Testkit::from_setup(Setup::sql(format!(
        "{SHOP}
         CREATE TABLE audit (n bigserial PRIMARY KEY, what text NOT NULL);
         CREATE FUNCTION audit_orders() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO audit (what) VALUES (TG_OP);
             RETURN NULL;
         END $$;
         CREATE TRIGGER audit_orders AFTER INSERT OR UPDATE OR DELETE ON orders
             FOR EACH ROW EXECUTE FUNCTION audit_orders();"
    )));
    let audited = |db: &phony_testkit::TestDatabase| {
        let target = db.target().clone();
        async move {
            let c = target.connect().await.unwrap();
            let row = c
                .query_one("SELECT count(*) FROM audit", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    let mut baseline = None;
    for _ in 0..8 {
        let db = kit.checkout().await.unwrap();
        same_as_first(
            &mut baseline,
            &db,
            "a reset fired a trigger or missed a row",
        )
        .await;
        assert_eq!(audited(&db).await, 0);
        dirty(&db).await;
        assert!(
            audited(&db).await > 300,
            "the test's writes fire its triggers"
        );
        db.finish().await.unwrap();
    }
}

#[tokio::test]
async fn schema_changes_are_detected_and_reset_by_the_full_path() {
    let kit = shop(Strategy::Serial);
    let db = kit.checkout().await.unwrap();
    let before = Fingerprint::of(db.target()).await.unwrap();
    db.connect()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE customers ADD COLUMN vip bool DEFAULT false;
             CREATE INDEX orders_total ON orders (total); DROP TYPE IF EXISTS nothing;",
        )
        .await
        .unwrap();
    let report = db.finish().await.unwrap();
    assert_eq!(report.schema_changed, Some(true));
    let db = kit.checkout().await.unwrap();
    assert_eq!(Fingerprint::of(db.target()).await.unwrap(), before);
}

#[tokio::test]
async fn schema_changes_fail_the_test_when_asked_and_still_reset() {
    let kit = Testkit::from_setup(
        Setup::sql(SHOP)
            .strategy(Strategy::Serial)
            .schema_changes(SchemaChanges::Fail),
    );
    let db = kit.checkout().await.unwrap();
    db.connect()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE scratch (x int)")
        .await
        .unwrap();
    let err = db.finish().await.unwrap_err();
    assert!(matches!(err, Error::SchemaChanged { .. }), "{err}");
    assert!(err.to_string().contains("changed the schema"), "{err}");

    // Dropping the guard fails the test (a panic) with the same message.
    let db = kit.checkout().await.unwrap();
    let c = db.connect().await.unwrap();
    let exists: bool = c
        .query_one("SELECT to_regclass('scratch') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "the schema was reset");
    c.batch_execute("CREATE TABLE scratch (x int)")
        .await
        .unwrap();
    drop(c);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db)));
    let message = panicked.unwrap_err();
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("changed the schema"), "{text}");
    let db = kit.checkout().await.unwrap();
    assert_eq!(counts(&db).await, (200, 1000, 1001));
}

#[tokio::test]
async fn migrations_build_the_baseline_and_a_failing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_users.sql"),
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_seed.sql"),
        "INSERT INTO users (email) VALUES ('admin@example.com');",
    )
    .unwrap();
    std::fs::write(dir.path().join("0002_seed.down.sql"), "DELETE FROM users;").unwrap();
    let kit = Testkit::from_setup(Setup::migrations(dir.path()));
    let db = kit.checkout().await.unwrap();
    let n: i64 = db
        .connect()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(db);
    drop(kit);

    std::fs::write(
        dir.path().join("0003_broken.sql"),
        "ALTER TABLE users ADD COLUMN name text;\nALTER TABLE nosuch ADD COLUMN x int;",
    )
    .unwrap();
    let kit = Testkit::from_setup(Setup::migrations(dir.path()));
    let err = kit.checkout().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Migration { .. }), "{text}");
    assert!(text.contains("0003_broken.sql"), "{text}");
    assert!(text.contains("\"nosuch\" does not exist"), "{text}");

    let missing = Testkit::from_setup(Setup::migrations(dir.path().join("nope")));
    let err = missing.checkout().await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn an_unreachable_baseline_is_reported_with_its_address() {
    let kit = Testkit::from_setup(Setup::database(
        "postgres://postgres@127.0.0.1:1/app?connect_timeout=2",
    ));
    let err = kit.checkout().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1/app"), "{err}");

    let server = default_server_url().unwrap();
    let kit = Testkit::from_setup(Setup::database(url_of(&server, "phony_tk_no_such_db")));
    let err = kit.checkout().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("does not exist"), "{chain}");
}

/// A database of the test's own, for the "existing database" source.
struct OwnDb {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl OwnDb {
    async fn new(label: &str, sql: &str) -> Self {
        let server = default_server_url().unwrap();
        let admin = ConnectionTarget::parse(Some(&server))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let name = format!("phony_tkt_{label}_{:08x}", rand_u32());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = url_of(&server, &name);
        let c = ConnectionTarget::parse(Some(&url))
            .unwrap()
            .connect()
            .await
            .unwrap();
        c.batch_execute(sql).await.unwrap();
        OwnDb { admin, name, url }
    }

    async fn drop_it(self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

fn url_of(server: &str, db: &str) -> String {
    match server.rfind('/') {
        Some(i) if server[..i].contains("://") => format!("{}/{db}", &server[..i]),
        _ => format!("{server} dbname={db}"),
    }
}

#[tokio::test]
async fn an_existing_database_is_reset_in_place_and_left_clean() {
    let own = OwnDb::new("inplace", SHOP).await;
    let target = ConnectionTarget::parse(Some(&own.url)).unwrap();
    let clean = Fingerprint::of(&target).await.unwrap();
    {
        let kit = Testkit::from_setup(Setup::database(&own.url).strategy(Strategy::Serial));
        for _ in 0..3 {
            let db = kit.checkout().await.unwrap();
            assert_eq!(db.name(), own.name);
            assert_eq!(counts(&db).await, (200, 1000, 1001));
            dirty(&db).await;
        }
    }
    // The last drop reset it before returning: the database is as the suite found it
    // (the lease table in phony's own schema aside, which fingerprints ignore).
    assert_eq!(Fingerprint::of(&target).await.unwrap(), clean);
    let c = target.connect().await.unwrap();
    let leases: i64 = c
        .query_one("SELECT count(*) FROM phony.testkit_lease", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leases, 0);

    // A process that died mid-test leaves its lease row: the next kit refuses the database.
    c.batch_execute("INSERT INTO phony.testkit_lease (holder) VALUES ('pid 1')")
        .await
        .unwrap();
    drop(c);
    let kit = Testkit::from_setup(Setup::database(&own.url).strategy(Strategy::Serial));
    let err = kit.checkout().await.unwrap_err();
    assert!(matches!(err, Error::LeftDirty { .. }), "{err}");
    assert!(err.to_string().contains("pid 1"), "{err}");
    drop(kit);
    own.drop_it().await;
}

#[tokio::test]
async fn an_existing_database_can_feed_a_pool_of_copies() {
    let own = OwnDb::new("pooled", SHOP).await;
    let kit = Testkit::from_setup(Setup::database(&own.url).strategy(Strategy::Pool { size: 2 }));
    let a = kit.checkout().await.unwrap();
    let b = kit.checkout().await.unwrap();
    assert_ne!(a.name(), b.name());
    assert_ne!(a.name(), own.name);
    dirty(&a).await;
    dirty(&b).await;
    drop((a, b));
    let a = kit.checkout().await.unwrap();
    assert_eq!(counts(&a).await, (200, 1000, 1001));
    drop(a);
    drop(kit);
    let c = ConnectionTarget::parse(Some(&own.url))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200, "the source database is never written");
    drop(c);
    own.drop_it().await;
}

/// Run by `processes_sharing_a_database_take_turns` in two child processes at once.
#[tokio::test]
#[ignore = "helper: run in child processes"]
async fn take_turns_on_a_shared_database() {
    let url = std::env::var("PHONY_TK_SHARED_URL").unwrap();
    let kit = Testkit::from_setup(Setup::database(&url).strategy(Strategy::Serial));
    for _ in 0..4 {
        let db = kit.checkout().await.unwrap();
        let c = db.connect().await.unwrap();
        c.batch_execute("INSERT INTO customers (email) VALUES ('mine@example.com')")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Nobody else wrote meanwhile: the other process waits for this one.
        assert_eq!(counts(&db).await.0, 201);
    }
}

#[tokio::test]
async fn processes_sharing_a_database_take_turns() {
    let own = OwnDb::new("shared", SHOP).await;
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["take_turns_on_a_shared_database", "--exact", "--ignored"])
                .env("PHONY_TK_SHARED_URL", &own.url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let target = ConnectionTarget::parse(Some(&own.url)).unwrap();
    let n: i64 = target
        .connect()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200, "left in the baseline state");
    own.drop_it().await;
}

/// Databases of finished processes are gone by the time the first checkout returns (a
/// short test process never exits with the sweep half done), half-dropped ones
/// (`datconnlimit = -2`) whoever left them; a live process's are kept.
#[tokio::test]
async fn databases_of_dead_processes_are_swept_before_the_first_checkout() {
    let server = default_server_url().unwrap();
    let admin = ConnectionTarget::parse(Some(&server))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let dead = format!("{:08x}", rand_u32());
    let live = format!("{:08x}", rand_u32());
    // A live process holds its tag's lock.
    admin
        .query_one(
            "SELECT pg_advisory_lock(hashtextextended('phony-testkit tag ' || $1, 0))",
            &[&live],
        )
        .await
        .unwrap();
    let orphans: Vec<String> = (1..=4).map(|n| format!("phony_tk_{dead}_{n}")).collect();
    let kept = format!("phony_tk_{live}_1");
    let half_dropped = format!("phony_tk_{live}_2");
    for name in orphans.iter().chain([&kept, &half_dropped]) {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    admin
        .execute(
            "UPDATE pg_database SET datconnlimit = -2 WHERE datname = $1",
            &[&half_dropped],
        )
        .await
        .unwrap();
    let kit = Testkit::from_setup(Setup::sql("CREATE TABLE t (x int)"));
    let _db = kit.checkout().await.unwrap();
    let names: Vec<&String> = orphans.iter().chain([&kept, &half_dropped]).collect();
    let mut left: Vec<String> = Vec::new();
    // Other kits of this test binary sweep too: an orphan one of them is dropping is left
    // to it, so it may still be there for a moment.
    for _ in 0..60 {
        left = admin
            .query(
                "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
                &[&names],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if left == [kept.clone()] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {kept} WITH (FORCE)"))
        .await
        .unwrap();
    assert_eq!(left, [kept]);
}

mod cluster {
    use std::net::{SocketAddr, TcpStream};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use phony_testkit::TempCluster;

    /// Run by `a_process_that_dies_leaves_no_server_behind` in a child process.
    #[test]
    #[ignore = "helper: run in a child process"]
    fn start_a_cluster_and_die() {
        let cluster = TempCluster::start().unwrap();
        println!("PORT={}", cluster.port());
        std::mem::forget(cluster);
        std::process::exit(0);
    }

    #[test]
    fn a_process_that_dies_leaves_no_server_behind() {
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "cluster::start_a_cluster_and_die",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let port: u16 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PORT="))
            .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
            .parse()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the server on {port} is still up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    #[test]
    fn a_cluster_starts_and_goes_away_on_drop() {
        let started = Instant::now();
        let cluster = TempCluster::start().unwrap();
        let took = started.elapsed();
        eprintln!("throwaway cluster up in {took:.2?}");
        // Well under a second on an idle machine; this only catches a hang, since parallel
        // tests and builds on two cores can slow initdb down many times over.
        assert!(took < Duration::from_secs(30), "{took:?}");
        let addr = SocketAddr::from(([127, 0, 0, 1], cluster.port()));
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
        drop(cluster);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    }
}
