//! snapshot → changes → restore gives the snapshot's fingerprint.

use phony_postgres::{capture, restore, CaptureOptions, RestoreOptions};
use phony_tests::{assert_same, TestDb, TestStore};
use proptest::prelude::*;

/// Data changes over the rich fixture, each valid on its own and in any order.
const CHANGES: &[&str] = &[
    "INSERT INTO public.customers (email, name) VALUES ('new' || nextval('public.ticket_seq') || '@x.test', 'New')",
    "UPDATE public.customers SET name = NULL, tags = ARRAY['x', NULL] WHERE id = (SELECT min(id) FROM public.customers)",
    "DELETE FROM public.orders WHERE id = (SELECT max(id) FROM public.orders)",
    "UPDATE public.categories SET name = name || ' (renamed)' WHERE parent_id IS NOT NULL",
    "UPDATE public.type_zoo SET num = NULL, doc = '{\"changed\": true}', raw = '\\xdeadbeef' WHERE id = (SELECT min(id) FROM public.type_zoo)",
    "TRUNCATE public.audit_log",
    "INSERT INTO public.page_views SELECT * FROM public.page_views",
    "DELETE FROM public.page_views WHERE ctid = (SELECT min(ctid) FROM public.page_views)",
    "UPDATE public.events SET occurred_at = occurred_at + interval '1 year' WHERE occurred_at < '2024-01-01' AND id = (SELECT min(id) FROM public.events_2023)",
    "UPDATE public.blobs SET body = body || 'tail', data = NULL",
    "SELECT nextval('\"Inventory\".invoice_no_seq'), nextval('public.ticket_seq')",
    "UPDATE \"Inventory\".\"Order Lines\" SET \"Größe\" = 'XXL ✓' WHERE \"Line ID\" = (SELECT min(\"Line ID\") FROM \"Inventory\".\"Order Lines\")",
    "UPDATE public.categories SET id = id + 1000 WHERE id = (SELECT max(id) FROM public.categories c WHERE NOT EXISTS (SELECT 1 FROM public.categories k WHERE k.parent_id = c.id) AND NOT EXISTS (SELECT 1 FROM \"Inventory\".products p WHERE p.category_id = c.id))",
    "DELETE FROM public.employees WHERE id NOT IN (SELECT head_employee_id FROM public.departments WHERE head_employee_id IS NOT NULL)",
];

/// Schema changes a migration might make.
const MIGRATIONS: &[&str] = &[
    "ALTER TABLE public.orders ADD COLUMN coupon text DEFAULT 'none'",
    "ALTER TABLE public.customers DROP COLUMN phone",
    "CREATE TABLE public.new_table (id int PRIMARY KEY, v text); INSERT INTO public.new_table VALUES (1, 'a')",
    "DROP TABLE public.page_views",
    "CREATE INDEX orders_note_idx ON public.orders (note)",
    "ALTER TYPE public.order_status ADD VALUE 'refunded'",
    "ALTER TABLE public.orders ALTER COLUMN note TYPE varchar(500)",
    "ALTER TABLE public.orders DROP CONSTRAINT orders_total_check",
    "CREATE SCHEMA extra; CREATE TABLE extra.t (a int)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_undoes_random_data_changes() {
    let db = TestDb::rich("rt_data").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert_eq!(captured.stats.tables, 13);

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 6,
        ..ProptestConfig::default()
    });
    let strategy =
        proptest::sample::subsequence((0..CHANGES.len()).collect::<Vec<_>>(), 1..CHANGES.len());
    let handle = tokio::runtime::Handle::current();
    runner
        .run(&strategy.prop_shuffle(), |picked| {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    for i in &picked {
                        db.exec(CHANGES[*i]).await;
                    }
                    restore(
                        &db.target(),
                        &store.store,
                        &captured.manifest,
                        &RestoreOptions::default(),
                    )
                    .await
                    .unwrap();
                    assert_same(
                        &db.fingerprint().await,
                        &before,
                        &format!("after changes {picked:?}"),
                    );
                })
            });
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_undoes_schema_changes() {
    let db = TestDb::rich("rt_schema").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    for m in MIGRATIONS {
        db.exec(m).await;
    }
    db.exec(CHANGES[0]).await;
    assert_ne!(db.fingerprint().await.schema, before.schema);
    restore(
        &db.target(),
        &store.store,
        &captured.manifest,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_same(&db.fingerprint().await, &before, "after the migrations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_new_database_leaves_the_source_untouched() {
    let db = TestDb::rich("rt_target").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(CHANGES[2]).await;
    let changed = db.fingerprint().await;
    assert_ne!(changed, before, "the change shows in the fingerprint");

    let copy = db.sibling_name("copy");
    let target = db.target().with_dbname(&copy);
    assert!(phony_postgres::ensure_database(&target).await.unwrap());
    restore(
        &target,
        &store.store,
        &captured.manifest,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_same(&db.fingerprint_of(&copy).await, &before, "the new database");
    assert_same(&db.fingerprint().await, &changed, "the source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_snapshot_of_unchanged_data_stores_almost_nothing() {
    let db = TestDb::rich("rt_dedup").await;
    let store = TestStore::new().await;
    let first = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let second = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert_eq!(first.root, second.root, "same state, same root");
    assert_eq!(second.stats.new_bytes, 0);
    assert!(first.stats.new_bytes > 0);
    assert!(first.stats.stored_bytes < first.stats.bytes, "compressed");
}
