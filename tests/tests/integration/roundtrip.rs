//! snapshot → changes → restore gives the snapshot's fingerprint.

use crate::{change_sets, run_cases};
use phony_postgres::{capture, restore, CaptureOptions, RestoreOptions, RestorePath};
use phony_tests::{assert_same, TestDb, TestStore};

/// Data changes over the rich fixture, each valid on its own and in any order.
pub const CHANGES: &[&str] = &[
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

    let (db, store, captured, before) = (&db, &store, &captured, &before);
    run_cases(6, change_sets(CHANGES.len()), |picked| async move {
        for i in &picked {
            db.exec(CHANGES[*i]).await;
        }
        // With the capture's point (rows' ages), as the CLI restores; the full restores
        // below give every table new rows and oids, so later cases compare content.
        let by_age = RestoreOptions {
            point: captured.source.point.clone(),
            ..RestoreOptions::default()
        };
        let report = restore(&db.target(), &store.store, &captured.manifest, &by_age)
            .await
            .unwrap();
        assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
        assert_same(
            &db.fingerprint().await,
            before,
            &format!("after delta restore of changes {picked:?}"),
        );
        // The full path gives the same state.
        for i in &picked {
            db.exec(CHANGES[*i]).await;
        }
        let full = RestoreOptions {
            full: true,
            ..RestoreOptions::default()
        };
        let report = restore(&db.target(), &store.store, &captured.manifest, &full)
            .await
            .unwrap();
        assert_eq!(report.path, RestorePath::Full);
        assert_same(
            &db.fingerprint().await,
            before,
            &format!("after changes {picked:?}"),
        );
    });
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
    let report = db.restore(&store, &captured.manifest).await;
    assert_eq!(report.path, RestorePath::Full);
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

    let copy = db.restore_beside(&store, &captured.manifest, "copy").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_values_swapped_between_rows_are_put_back_by_the_delta() {
    let db = TestDb::rich("rt_swap").await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    // Swap two unique emails (through a third value, as a migration would): undoing it in
    // one UPDATE collides with the unique index whatever the row order, so the rows are
    // deleted, then inserted.
    db.exec(
        "CREATE TEMP TABLE two AS SELECT id, email FROM public.customers ORDER BY id LIMIT 2;
         UPDATE public.customers SET email = 'swap@x.test' WHERE id = (SELECT min(id) FROM two);
         UPDATE public.customers SET email = (SELECT email FROM two ORDER BY id LIMIT 1)
           WHERE id = (SELECT max(id) FROM two);
         UPDATE public.customers SET email = (SELECT email FROM two ORDER BY id DESC LIMIT 1)
           WHERE id = (SELECT min(id) FROM two);",
    )
    .await;
    let report = db.restore(&store, &captured.manifest).await;
    assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
    let customers = report
        .changes
        .iter()
        .find(|c| c.table.name == "customers")
        .unwrap();
    assert_eq!(
        (customers.deleted, customers.inserted, customers.updated),
        (0, 0, 2),
        "{report:?}"
    );
    assert_same(&db.fingerprint().await, &before, "after restore");
}

/// A table with unique constraints besides its key: on an expression, with a predicate, on
/// a generated column.
pub const UNIQUES: &str = "
    CREATE TABLE public.uniques (
        id int PRIMARY KEY,
        email text NOT NULL,
        handle text NOT NULL,
        slot int NOT NULL,
        active bool NOT NULL DEFAULT true,
        score int,
        note text,
        code text GENERATED ALWAYS AS (upper(handle)) STORED);
    CREATE UNIQUE INDEX uniques_email_idx ON public.uniques (lower(email));
    CREATE UNIQUE INDEX uniques_slot_idx ON public.uniques (slot) WHERE active;
    ALTER TABLE public.uniques ADD CONSTRAINT uniques_code_key UNIQUE (code);
    INSERT INTO public.uniques (id, email, handle, slot, score)
    SELECT i, 'e' || i || '@x.test', 'h' || i, i, i
    FROM generate_series(1, 40) AS i;";

/// Changes to [`UNIQUES`]: 18 rows changed, 1 deleted, 1 inserted. Eleven change no
/// constrained column; the rest swap or move constrained values (one only in case, which
/// the expression index sees as the same value), so that putting any of them back by an
/// update would collide with another row midway.
pub const UNIQUES_CHANGES: &str = "
    UPDATE public.uniques SET note = 'changed', score = -score WHERE id <= 10;
    UPDATE public.uniques SET note = 'too' WHERE id = 29;
    UPDATE public.uniques SET email = 'tmp@x.test' WHERE id = 21;
    UPDATE public.uniques SET email = 'e21@x.test' WHERE id = 22;
    UPDATE public.uniques SET email = 'E22@x.test' WHERE id = 21;
    UPDATE public.uniques SET email = 'E23@X.test' WHERE id = 23;
    UPDATE public.uniques SET active = false WHERE id = 24;
    UPDATE public.uniques SET slot = 24 WHERE id = 25;
    UPDATE public.uniques SET handle = 'tmp' WHERE id = 26;
    UPDATE public.uniques SET handle = 'h26' WHERE id = 27;
    UPDATE public.uniques SET handle = 'H27' WHERE id = 26;
    DELETE FROM public.uniques WHERE id = 28;
    INSERT INTO public.uniques (id, email, handle, slot) VALUES (41, 'e41@x.test', 'h41', 41);";

/// The change a restore of [`UNIQUES_CHANGES`] reports for the table.
pub fn uniques_change(report: &phony_postgres::RestoreReport) -> (u64, u64, u64) {
    let c = report
        .changes
        .iter()
        .find(|c| c.table.name == "uniques")
        .unwrap_or_else(|| panic!("no change to uniques: {report:?}"));
    (c.deleted, c.inserted, c.updated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_under_expression_partial_and_generated_unique_indexes_are_put_back() {
    let db = TestDb::new("rt_uniques").await;
    db.exec(UNIQUES).await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    // By rows' ages (as the CLI restores), then by content.
    for point in [captured.source.point.clone(), None] {
        let by_age = point.is_some();
        db.exec(UNIQUES_CHANGES).await;
        let opts = RestoreOptions {
            point,
            ..RestoreOptions::default()
        };
        let dry = RestoreOptions {
            dry_run: true,
            ..opts.clone()
        };
        let report = restore(&db.target(), &store.store, &captured.manifest, &dry)
            .await
            .unwrap();
        assert_eq!(
            uniques_change(&report),
            (1, 1, 18),
            "dry run, by age: {by_age}"
        );
        let report = restore(&db.target(), &store.store, &captured.manifest, &opts)
            .await
            .unwrap();
        assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
        assert_eq!(uniques_change(&report), (1, 1, 18), "by age: {by_age}");
        assert_same(
            &db.fingerprint().await,
            &before,
            &format!("by age: {by_age}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_the_database_refuses_falls_back_to_the_full_path() {
    let db = TestDb::rich("rt_refuse").await;
    // A trigger that fires even for replication-role writes and refuses those: the delta
    // path's rewrite fails inside its savepoint; the full path (which creates triggers
    // after loading the rows) succeeds in the same transaction.
    db.exec(
        "CREATE FUNCTION public.refuse_replica() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF current_setting('session_replication_role') = 'replica' THEN
             RAISE EXCEPTION 'refused by a trigger';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON public.customers
           FOR EACH ROW EXECUTE FUNCTION public.refuse_replica();
         ALTER TABLE public.customers ENABLE ALWAYS TRIGGER refuse;",
    )
    .await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec("UPDATE public.customers SET name = 'changed' WHERE id IN (SELECT id FROM public.customers ORDER BY id LIMIT 3);")
        .await;
    let report = db.restore(&store, &captured.manifest).await;
    assert_eq!(report.path, RestorePath::Full);
    let reason = report.full_reason.unwrap_or_default();
    assert!(reason.contains("refused by a trigger"), "{reason}");
    assert_same(&db.fingerprint().await, &before, "after restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_the_delta_and_changes_nothing() {
    let db = TestDb::rich("rt_dry").await;
    let store = TestStore::new().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(
        "DELETE FROM public.page_views WHERE hits IS NULL;
         INSERT INTO public.categories (id, name) VALUES (5000, 'new');
         UPDATE public.orders SET note = 'changed';
         SELECT nextval('public.ticket_seq');",
    )
    .await;
    let changed = db.fingerprint().await;
    let dry = RestoreOptions {
        dry_run: true,
        ..RestoreOptions::default()
    };
    let report = restore(&db.target(), &store.store, &captured.manifest, &dry)
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.path, RestorePath::Delta);
    let by_table: std::collections::BTreeMap<String, (u64, u64, u64)> = report
        .changes
        .iter()
        .map(|c| (c.table.to_string(), (c.deleted, c.inserted, c.updated)))
        .collect();
    assert_eq!(by_table["public.categories"], (1, 0, 0));
    assert_eq!(by_table["public.orders"].2, 8);
    assert!(by_table["public.page_views"].1 > 0);
    assert_eq!(by_table.len(), 3, "{by_table:?}");
    assert_same(&db.fingerprint().await, &changed, "after a dry run");
}
