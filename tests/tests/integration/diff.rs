//! diff(A, B) as a SQL patch, applied to a database in A's state, gives B's fingerprint.

use crate::{change_sets, run_cases};
use phony_core::diff::{diff, DiffOptions};
use phony_core::RootManifest;
use phony_postgres::{
    capture, ensure_database, patch::patch, restore, CaptureOptions, RestoreOptions,
};
use phony_tests::{assert_same, TestDb, TestStore};
use proptest::prelude::*;

/// Data changes over the rich fixture (each valid on its own and in any order).
const CHANGES: &[&str] = &[
    "INSERT INTO public.customers (email, name, tags) VALUES ('new' || nextval('public.ticket_seq') || '@x.test', 'New ''quoted'' \\ name', ARRAY['a', NULL])",
    "UPDATE public.customers SET name = NULL, tags = ARRAY['x', NULL] WHERE id = (SELECT min(id) FROM public.customers)",
    "DELETE FROM public.orders WHERE id = (SELECT max(id) FROM public.orders)",
    "UPDATE public.categories SET name = name || ' (renamed)' WHERE parent_id IS NOT NULL",
    "UPDATE public.type_zoo SET num = NULL, doc = '{\"changed\": true}', raw = '\\xdeadbeef', txt = E'tab\\there\\nnew line' WHERE id = (SELECT min(id) FROM public.type_zoo)",
    "TRUNCATE public.audit_log",
    "INSERT INTO public.page_views SELECT * FROM public.page_views",
    "DELETE FROM public.page_views WHERE ctid = (SELECT min(ctid) FROM public.page_views)",
    "UPDATE public.blobs SET body = body || 'tail', data = NULL",
    "SELECT nextval('\"Inventory\".invoice_no_seq'), nextval('public.ticket_seq')",
    "UPDATE \"Inventory\".\"Order Lines\" SET \"Größe\" = 'XXL ✓' WHERE \"Line ID\" = (SELECT min(\"Line ID\") FROM \"Inventory\".\"Order Lines\")",
    "UPDATE public.categories SET id = id + 1000 WHERE id = (SELECT max(id) FROM public.categories c WHERE NOT EXISTS (SELECT 1 FROM public.categories k WHERE k.parent_id = c.id) AND NOT EXISTS (SELECT 1 FROM \"Inventory\".products p WHERE p.category_id = c.id))",
    "DELETE FROM public.employees WHERE id NOT IN (SELECT head_employee_id FROM public.departments WHERE head_employee_id IS NOT NULL)",
    "INSERT INTO public.events (occurred_at, kind) VALUES ('2024-06-01 00:00:00+00', 'added by a test')",
];

fn all_rows() -> DiffOptions {
    DiffOptions {
        row_limit: usize::MAX,
        ..DiffOptions::default()
    }
}

/// Restores `a` into `copy`, applies the patch of diff(a, b), and checks `copy` ends up
/// with `expected` (b's fingerprint).
async fn check_patch(
    db: &TestDb,
    store: &TestStore,
    copy: &str,
    a: &RootManifest,
    b: &RootManifest,
    what: &str,
) {
    let expected = db.fingerprint().await;
    let d = diff(&store.store, a, b, &all_rows()).await.unwrap();
    let sql = patch(&d, b).unwrap();
    let target = db.target().with_dbname(copy);
    restore(&target, &store.store, a, &RestoreOptions::default())
        .await
        .unwrap();
    let client = target.connect().await.unwrap();
    if let Err(e) = client.batch_execute(&sql).await {
        panic!("{what}: {}\n{sql}", phony_postgres::error::describe(&e));
    }
    assert_same(&db.fingerprint_of(copy).await, &expected, what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patch_of_random_changes_to_the_fixture_gives_b() {
    let db = TestDb::rich("diff_fixture").await;
    let store = TestStore::new().await;
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let copy = db.sibling_name("copy");
    ensure_database(&db.target().with_dbname(&copy))
        .await
        .unwrap();

    let same = diff(&store.store, &a.manifest, &a.manifest, &all_rows())
        .await
        .unwrap();
    assert!(same.is_empty() && same.stats.chunks_read == 0);

    let (db, store, a, copy) = (&db, &store, &a, &copy);
    run_cases(5, change_sets(CHANGES.len()), |picked| async move {
        db.restore(store, &a.manifest).await;
        for i in &picked {
            db.exec(CHANGES[*i]).await;
        }
        let b = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        check_patch(
            db,
            store,
            copy,
            &a.manifest,
            &b.manifest,
            &format!("changes {picked:?}"),
        )
        .await;
    });
}

/// A column type and how to write a random value of it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Json,
    Bool,
    Numeric,
    Bytea,
    Stamp,
    TextArray,
    Char,
}

const KINDS: &[Kind] = &[
    Kind::Int,
    Kind::Text,
    Kind::Json,
    Kind::Bool,
    Kind::Numeric,
    Kind::Bytea,
    Kind::Stamp,
    Kind::TextArray,
    Kind::Char,
];

impl Kind {
    fn sql_type(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Text => "text",
            Kind::Json => "json",
            Kind::Bool => "boolean",
            Kind::Numeric => "numeric(10,2)",
            Kind::Bytea => "bytea",
            Kind::Stamp => "timestamptz",
            Kind::TextArray => "text[]",
            Kind::Char => "char(4)",
        }
    }

    /// A SQL expression for a value chosen by `n`.
    fn value(self, n: u32) -> String {
        if n % 11 == 0 {
            return "NULL".into();
        }
        const TEXTS: &[&str] = &[
            "a",
            "tab\there",
            "line\nbreak",
            "back\\slash",
            "it''s",
            "\\N",
            "",
            "Größe ✓",
            "b",
        ];
        let t = TEXTS[(n as usize / 3) % TEXTS.len()];
        match self {
            Kind::Int => format!("{}", n as i32 % 50 - 10),
            Kind::Text => format!("'{t}{}'", n % 3),
            Kind::Json => format!("'{{\"k\": {}, \"s\": \"x y\"}}'", n % 5),
            Kind::Bool => (n % 2 == 0).to_string(),
            Kind::Numeric => format!("{}.{:02}", n % 100, n % 7),
            Kind::Bytea => format!("'\\x{:04x}'::bytea", n % 4096),
            Kind::Stamp => format!("'2024-01-{:02} 0{}:00:00+00'", n % 28 + 1, n % 9),
            Kind::TextArray => format!("ARRAY['{t}', NULL]::text[]"),
            Kind::Char => format!("'c{}'", n % 4),
        }
    }
}

/// A random table: its column kinds, whether it has a key, the seeds of its rows, and the
/// changes to make (operation, seed).
type Case = (Vec<usize>, bool, Vec<u32>, Vec<(u8, u32)>);

fn random_case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(0..KINDS.len(), 1..5),
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..200),
        prop::collection::vec((any::<u8>(), any::<u32>()), 1..60),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patch_between_random_row_sets_of_random_schemas_gives_b() {
    let db = TestDb::new("diff_random").await;
    let store = TestStore::new().await;
    let copy = db.sibling_name("copy");
    ensure_database(&db.target().with_dbname(&copy))
        .await
        .unwrap();
    let (db, store, copy) = (&db, &store, &copy);
    run_cases(6, random_case(), |(kinds, keyed, rows, ops)| async move {
        let kinds: Vec<Kind> = kinds.iter().map(|&k| KINDS[k]).collect();
        let mut ddl = String::from("DROP TABLE IF EXISTS r; CREATE TABLE r (");
        if keyed {
            ddl.push_str("id integer PRIMARY KEY, ");
        }
        let cols: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| format!("c{i} {}", k.sql_type()))
            .collect();
        ddl.push_str(&cols.join(", "));
        ddl.push_str(");");
        let insert = |id: usize, seed: u32| {
            let vals: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| k.value(seed.wrapping_mul(i as u32 + 7)))
                .collect();
            if keyed {
                format!("INSERT INTO r VALUES ({id}, {});", vals.join(", "))
            } else {
                format!("INSERT INTO r VALUES ({});", vals.join(", "))
            }
        };
        for (i, seed) in rows.iter().enumerate() {
            ddl.push_str(&insert(i, *seed));
            if !keyed && seed % 5 == 0 {
                ddl.push_str(&insert(i, *seed)); // an exact duplicate
            }
        }
        db.exec(&ddl).await;
        let a = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        let mut changes = String::new();
        let n = rows.len().max(1);
        for (j, (op, seed)) in ops.iter().enumerate() {
            let target = *seed as usize % n;
            let col = *seed as usize % kinds.len();
            let cond = if keyed {
                format!("id = {target}")
            } else {
                format!("ctid = (SELECT ctid FROM r OFFSET {target} LIMIT 1)")
            };
            match op % 3 {
                0 => changes.push_str(&format!("DELETE FROM r WHERE {cond};")),
                1 => changes.push_str(&format!(
                    "UPDATE r SET c{col} = {} WHERE {cond};",
                    kinds[col].value(seed.wrapping_add(1))
                )),
                _ => changes.push_str(&insert(n + 1000 + j, *seed)),
            }
        }
        db.exec(&changes).await;
        let b = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        check_patch(
            db,
            store,
            copy,
            &a.manifest,
            &b.manifest,
            &format!("{kinds:?} keyed={keyed}"),
        )
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_key_and_table_changes_are_reported_not_crashed_on() {
    let db = TestDb::new("diff_hard").await;
    let store = TestStore::new().await;
    db.exec(
        "CREATE TABLE widened (id int PRIMARY KEY, a text, b int);
         CREATE TABLE rekeyed (id int PRIMARY KEY, code text NOT NULL);
         CREATE TABLE old_name (id int PRIMARY KEY);
         INSERT INTO widened SELECT g, 'w' || g, g FROM generate_series(1, 50) g;
         INSERT INTO rekeyed SELECT g, 'c' || g FROM generate_series(1, 50) g;
         INSERT INTO old_name SELECT generate_series(1, 5);",
    )
    .await;
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(
        "ALTER TABLE widened DROP COLUMN b, ADD COLUMN c text DEFAULT 'new';
         UPDATE widened SET a = 'changed' WHERE id = 7;
         ALTER TABLE rekeyed DROP CONSTRAINT rekeyed_pkey, ADD PRIMARY KEY (code);
         DELETE FROM rekeyed WHERE id = 3;
         ALTER TABLE old_name RENAME TO new_name;",
    )
    .await;
    let b = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let d = diff(&store.store, &a.manifest, &b.manifest, &all_rows())
        .await
        .unwrap();
    let t = |name: &str| d.tables.iter().find(|t| t.name == name).unwrap();
    let w = t("widened");
    assert_eq!((w.rows_added, w.rows_removed, w.rows_changed), (0, 0, 1));
    assert_eq!(w.columns_only_in_from, vec!["b".to_string()]);
    assert_eq!(w.columns_only_in_to, vec!["c".to_string()]);
    assert!(w.notes[0].contains("common column"), "{:?}", w.notes);
    let r = t("rekeyed");
    assert_eq!((r.rows_added, r.rows_removed, r.rows_changed), (0, 1, 0));
    assert!(r.key.is_empty() && r.notes[0].contains("primary key differs"));
    assert_eq!(t("old_name").change, phony_core::diff::TableChange::Dropped);
    assert_eq!(t("new_name").change, phony_core::diff::TableChange::Added);
    let kinds: Vec<String> = d.schema.iter().map(|c| c.title()).collect();
    assert!(
        kinds.contains(&"TABLE public.widened".to_string()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"TABLE public.new_name".to_string()),
        "{kinds:?}"
    );
    let err = patch(&d, &b.manifest).unwrap_err().to_string();
    assert!(err.contains("schemas differ"), "{err}");
}
