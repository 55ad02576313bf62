//! Rollback after a migration: the targeted schema path rewrites only the objects the
//! migration changed (and what depends on them), and the database ends in the snapshot's
//! state exactly. Migrations it cannot undo safely fall back to the full path, saying which
//! object forced it. Each test has its own database.

use phony_postgres::{capture, CaptureOptions, RestoreOptions, RestorePath, RestoreReport};
use phony_tests::{assert_same, TestDb, TestStore};
use proptest::strategy::Strategy;

use super::run_cases;

/// A small shop: an enum, keys, a foreign key, a check, indexes, a view, a trigger, a
/// comment, a sequence, rows.
const SHOP: &str = "
CREATE TYPE status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    note text DEFAULT 'none'
);
COMMENT ON COLUMN customers.note IS 'free text';
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    referrer_id bigint,
    status status NOT NULL DEFAULT 'new',
    amount integer NOT NULL DEFAULT 0 CHECK (amount >= 0),
    created date NOT NULL,
    note text
);
CREATE INDEX orders_created_idx ON orders (created);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE TABLE audit (at date, what text);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (NEW.created, 'order'); RETURN NEW; END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW order_totals AS
    SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM orders GROUP BY customer_id;
INSERT INTO customers (email, name)
    SELECT 'c' || i || '@example.com', 'customer ' || i FROM generate_series(1, 300) AS i;
INSERT INTO orders (id, customer_id, status, amount, created)
    SELECT i, 1 + i % 300, (ARRAY['new', 'paid', 'shipped'])[1 + i % 3]::status, i % 1000,
           date '2024-01-01' + i % 365
    FROM generate_series(1, 3000) AS i;
INSERT INTO audit SELECT date '2024-01-01' + i, 'seed' FROM generate_series(1, 50) AS i;
";

/// Migration steps, each with some data changes; any subset applies in any order.
const STEPS: &[(&str, &str)] = &[
    (
        "add column with default",
        "ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'standard';
         COMMENT ON COLUMN customers.tier IS 'loyalty';
         UPDATE customers SET tier = 'gold' WHERE id % 7 = 0;",
    ),
    (
        "add index",
        "CREATE INDEX orders_amount_idx ON orders (amount);
         UPDATE orders SET amount = amount + 1 WHERE id % 11 = 0;",
    ),
    (
        "add table",
        "CREATE TABLE coupons (
             id serial PRIMARY KEY,
             code text NOT NULL UNIQUE,
             customer_id bigint REFERENCES customers (id)
         );
         INSERT INTO coupons (code, customer_id)
             SELECT 'K' || i, 1 + i FROM generate_series(1, 40) AS i;",
    ),
    (
        "add foreign key",
        "UPDATE orders SET referrer_id = 1 + id % 50 WHERE id % 5 = 0;
         ALTER TABLE orders ADD CONSTRAINT orders_referrer_fk
             FOREIGN KEY (referrer_id) REFERENCES customers (id);",
    ),
    (
        "add view",
        "CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 900;",
    ),
    (
        "alter view",
        "CREATE OR REPLACE VIEW order_totals AS
             SELECT customer_id, count(*) AS orders, sum(amount) AS total, max(created) AS last
             FROM orders GROUP BY customer_id;",
    ),
    (
        "add enum value",
        "ALTER TYPE status ADD VALUE 'refunded' AFTER 'paid';
         COMMIT; BEGIN;
         UPDATE orders SET status = 'refunded' WHERE id % 13 = 0;",
    ),
    (
        "add check constraint",
        "DELETE FROM orders WHERE amount > 990;
         ALTER TABLE orders ADD CONSTRAINT orders_amount_small CHECK (amount < 995);",
    ),
    (
        "drop index",
        "DROP INDEX orders_created_idx;
         INSERT INTO orders (id, customer_id, status, amount, created)
             VALUES (5000, 3, 'new', 5, '2024-06-01');",
    ),
    (
        "alter column default",
        "ALTER TABLE orders ALTER COLUMN amount SET DEFAULT 7;
         ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;",
    ),
    (
        "drop column",
        "ALTER TABLE customers DROP COLUMN note;
         UPDATE customers SET name = upper(name) WHERE id % 9 = 0;",
    ),
];

/// Migrations the targeted path leaves to the full path, and the object that says why.
const FALLBACKS: &[(&str, &str, &str)] = &[
    (
        "renamed table",
        "ALTER TABLE audit RENAME TO audit_log;",
        "renamed",
    ),
    (
        "type change under a view",
        "DROP VIEW order_totals;
         ALTER TABLE orders ALTER COLUMN amount TYPE bigint;
         CREATE VIEW order_totals AS
             SELECT customer_id, count(*) AS orders, sum(amount) AS total
             FROM orders GROUP BY customer_id;",
        "VIEW public.order_totals",
    ),
    (
        "new schema",
        "CREATE SCHEMA reporting; CREATE TABLE reporting.daily (day date PRIMARY KEY);",
        "SCHEMA",
    ),
];

struct Shop {
    db: TestDb,
    store: TestStore,
    manifest: phony_core::RootManifest,
    before: phony_postgres::Fingerprint,
}

async fn shop(label: &str) -> Shop {
    let db = TestDb::new(label).await;
    db.exec(SHOP).await;
    let store = TestStore::new().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let before = db.fingerprint().await;
    Shop {
        db,
        store,
        manifest: captured.manifest,
        before,
    }
}

impl Shop {
    async fn migrate(&self, sql: &str) {
        self.db.exec(&format!("BEGIN; {sql} COMMIT;")).await;
    }

    async fn restore(&self, opts: &RestoreOptions) -> RestoreReport {
        phony_postgres::restore(&self.db.target(), &self.store.store, &self.manifest, opts)
            .await
            .unwrap()
    }

    /// A dry run, then the rollback; both must take `path`; the state is the snapshot's.
    async fn roll_back(&self, path: RestorePath, what: &str) -> RestoreReport {
        let dry = self
            .restore(&RestoreOptions {
                dry_run: true,
                ..RestoreOptions::default()
            })
            .await;
        assert_eq!(dry.path, path, "{what}: dry run: {:?}", dry.full_reason);
        let report = self.restore(&RestoreOptions::default()).await;
        assert_eq!(report.path, path, "{what}: {:?}", report.full_reason);
        assert_same(&self.db.fingerprint().await, &self.before, what);
        report
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_typical_migration_rolls_back_through_the_schema_path() {
    let shop = shop("mig_each").await;
    for (what, sql) in STEPS {
        shop.migrate(sql).await;
        let report = shop.roll_back(RestorePath::Schema, what).await;
        assert!(!report.schema_changes.is_empty(), "{what}");
    }
    // All at once.
    for (_, sql) in STEPS {
        shop.migrate(sql).await;
    }
    shop.roll_back(RestorePath::Schema, "every step").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_migration_touched_is_reloaded() {
    let shop = shop("mig_touched").await;
    shop.migrate(STEPS[1].1).await; // an index on orders
    shop.migrate(STEPS[2].1).await; // a new table
    let report = shop.roll_back(RestorePath::Schema, "index and table").await;
    assert!(
        report.changes.iter().all(|c| c.reloaded.is_none()),
        "{:?}",
        report.changes
    );
    shop.migrate(STEPS[10].1).await; // a dropped column: customers comes back whole
    let report = shop.roll_back(RestorePath::Schema, "dropped column").await;
    let reloaded: Vec<String> = report
        .changes
        .iter()
        .filter(|c| c.reloaded.is_some())
        .map(|c| c.table.to_string())
        .collect();
    assert_eq!(reloaded, ["public.customers"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_the_snapshots_rows_break_is_dropped_before_they_come_back() {
    let shop = shop("mig_check").await;
    shop.migrate(
        "UPDATE orders SET amount = 900 WHERE amount > 900;
         ALTER TABLE orders ADD CONSTRAINT orders_amount_capped CHECK (amount <= 900);",
    )
    .await;
    let report = shop.roll_back(RestorePath::Schema, "a check").await;
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.table.name == "orders" && c.updated > 0),
        "{:?}",
        report.changes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_the_schema_path_cannot_undo_take_the_full_path_and_say_why() {
    let shop = shop("mig_fallback").await;
    for (what, sql, object) in FALLBACKS {
        shop.migrate(sql).await;
        let report = shop.roll_back(RestorePath::Full, what).await;
        let reason = report.full_reason.unwrap_or_default();
        assert!(reason.contains(object), "{what}: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_migrations_end_where_the_full_path_ends() {
    let steps =
        proptest::sample::subsequence((0..STEPS.len()).collect::<Vec<_>>(), 1..5).prop_shuffle();
    let shop = shop("mig_prop").await;
    run_cases(6, steps, |chosen| {
        let shop = &shop;
        async move {
            let sql: Vec<&str> = chosen.iter().map(|&i| STEPS[i].1).collect();
            let what = format!("steps {chosen:?}");
            shop.migrate(&sql.join("\n")).await;
            let targeted = shop.restore(&RestoreOptions::default()).await;
            assert_eq!(
                targeted.path,
                RestorePath::Schema,
                "{what}: {:?}",
                targeted.full_reason
            );
            let after_targeted = shop.db.fingerprint().await;
            shop.migrate(&sql.join("\n")).await;
            let full = shop
                .restore(&RestoreOptions {
                    full: true,
                    ..RestoreOptions::default()
                })
                .await;
            assert_eq!(full.path, RestorePath::Full);
            let after_full = shop.db.fingerprint().await;
            assert_same(
                &after_targeted,
                &after_full,
                &format!("{what}: against the full path"),
            );
            assert_same(&after_targeted, &shop.before, &what);
        }
    });
}

/// With the capture's point trusted, the delta path reads the rows' ages while the schemas
/// are compared; when they differ, the schema path takes over what it found (the tables'
/// locks held throughout) rather than read the rows again, and the rows changed beside the
/// migration come back all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_before_the_schema_verdict_are_taken_over() {
    let db = TestDb::new("mig_ages").await;
    db.exec(SHOP).await;
    db.quiesce().await;
    let store = TestStore::new().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let point = captured.source.point.clone().expect("a capture point");
    let before = db.fingerprint().await;
    for (what, sql) in [
        (
            "unchanged rows",
            STEPS[1]
                .1
                .replace("UPDATE orders", "SELECT 1 FROM orders")
                .replace("SET amount = amount + 1 ", ""),
        ),
        (
            "changed rows",
            format!(
                "{}\n{}\nDELETE FROM audit WHERE at < '2024-01-05';",
                STEPS[1].1, STEPS[0].1
            ),
        ),
    ] {
        db.exec(&format!("BEGIN; {sql} COMMIT;")).await;
        db.wait_for_xmin(point.snapshot.split(':').nth(1).unwrap().parse().unwrap())
            .await;
        let report = phony_postgres::restore(
            &db.target(),
            &store.store,
            &captured.manifest,
            &RestoreOptions {
                point: Some(point.clone()),
                ..RestoreOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            report.path,
            RestorePath::Schema,
            "{what}: {:?}",
            report.full_reason
        );
        let ages = report.row_ages.expect("rows compared by their ages");
        assert_eq!(ages.tables, 3, "{what}: {ages:?}");
        assert_same(&db.fingerprint().await, &before, what);
    }
}
