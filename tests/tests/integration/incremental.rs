//! Incremental snapshots with change tracking hold exactly what a full capture at the same
//! point in time holds, whichever way each table was brought up to date.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use phony_core::{Backend, ChunkParams, QualifiedName, RootManifest, Store};
use phony_postgres::{capture, restore, CaptureOptions, RestoreOptions, TableMode};
use phony_tests::{assert_same, TestDb, TestStore};
use proptest::prelude::*;

use crate::roundtrip::CHANGES;
use crate::run_cases;

fn full() -> CaptureOptions {
    CaptureOptions {
        incremental: false,
        ..CaptureOptions::default()
    }
}

fn name(qualified: &str) -> QualifiedName {
    let (schema, name) = qualified.split_once('.').unwrap();
    QualifiedName::new(schema, name)
}

/// A table's rows as a snapshot holds them: its chunks' plain bytes, in order. Checks on
/// the way that every chunk's reference says what the chunk holds.
async fn rows_of<B: Backend>(store: &Store<B>, manifest: &RootManifest, table: &str) -> Vec<u8> {
    let entry = manifest
        .tables
        .iter()
        .find(|t| t.table == name(table))
        .unwrap_or_else(|| panic!("{table} is not in the snapshot"));
    let positions: Vec<usize> = entry
        .key
        .iter()
        .map(|k| entry.columns.iter().position(|c| c == k).unwrap())
        .collect();
    let max = ChunkParams::default().max as usize;
    let mut out = Vec::new();
    for c in store.table_chunks(entry).await.unwrap() {
        let plain = store.get_plain(&c.id, c.bytes).await.unwrap();
        assert_eq!(plain.len() as u64, c.bytes, "{table}: chunk size");
        assert!(!plain.is_empty(), "{table}: an empty chunk");
        let lines: Vec<&[u8]> = phony_core::row::lines(&plain).collect();
        assert_eq!(lines.len() as u64, c.rows, "{table}: chunk rows");
        if !positions.is_empty() {
            let key = |l: &[u8]| phony_core::row::key_text(l, &positions);
            assert_eq!(c.first.as_deref(), Some(key(lines[0]).as_str()), "{table}");
            assert_eq!(
                c.last.as_deref(),
                Some(key(lines[lines.len() - 1]).as_str())
            );
        }
        // Within the chunker's bounds: past `max` only by the row that crosses it.
        let crossing = lines.last().map_or(0, |l| l.len() + 1);
        assert!(
            plain.len() <= max + crossing,
            "{table}: a chunk of {} bytes",
            plain.len()
        );
        out.extend(plain);
    }
    assert_eq!(
        out.len() as u64,
        entry.content.bytes,
        "{table}: table bytes"
    );
    out
}

/// Asserts that two snapshots hold the same tables, rows (byte for byte, in order) and
/// sequences, whatever their chunk boundaries.
async fn assert_same_rows<B: Backend>(
    store_a: &Store<B>,
    a: &RootManifest,
    store_b: &Store<B>,
    b: &RootManifest,
    what: &str,
) {
    let tables = |m: &RootManifest| {
        m.tables
            .iter()
            .map(|t| {
                (
                    t.table.clone(),
                    t.columns.clone(),
                    t.key.clone(),
                    t.content.rows,
                )
            })
            .collect::<Vec<_>>()
    };
    let (ta, tb) = (tables(a), tables(b));
    let names = |t: &[(QualifiedName, _, _, _)]| t.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ta), names(&tb), "{what}: tables");
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x, y, "{what}: columns, key or row count of {}", x.0);
    }
    assert_eq!(a.sequences, b.sequences, "{what}: sequences");
    for t in &a.tables {
        let table = t.table.to_string();
        let (ra, rb) = (
            rows_of(store_a, a, &table).await,
            rows_of(store_b, b, &table).await,
        );
        if ra != rb {
            let (la, lb): (Vec<_>, Vec<_>) = (
                phony_core::row::lines(&ra).collect(),
                phony_core::row::lines(&rb).collect(),
            );
            let at = la.iter().zip(&lb).position(|(x, y)| x != y).unwrap_or(0);
            panic!(
                "{what}: rows of {table} differ at row {at} of {}/{}:\n  incremental: {:?}\n  full:        {:?}",
                la.len(),
                lb.len(),
                la.get(at).map(|l| String::from_utf8_lossy(&l[..l.len().min(200)])),
                lb.get(at).map(|l| String::from_utf8_lossy(&l[..l.len().min(200)])),
            );
        }
    }
}

/// Restores `manifest` into a new database and asserts it has `expected`'s fingerprint.
async fn assert_restores_to(
    db: &TestDb,
    store: &TestStore,
    manifest: &RootManifest,
    expected: &phony_postgres::Fingerprint,
    label: &str,
) {
    let copy = db.sibling_name(label);
    let target = db.target().with_dbname(&copy);
    phony_postgres::ensure_database(&target).await.unwrap();
    restore(&target, &store.store, manifest, &RestoreOptions::default())
        .await
        .unwrap();
    assert_same(&db.fingerprint_of(&copy).await, expected, label);
}

/// Tables with integer keys spanning many chunks: `wide` (key in the middle of the row,
/// NULLs), and `parts`, list-partitioned on a `smallint` that is part of its key, one
/// partition starting empty.
const PATCH_TABLES: &str = "
    CREATE TABLE public.wide (note text, id bigint PRIMARY KEY, n int);
    INSERT INTO public.wide
    SELECT repeat(md5(g::text), 3), g * 10, CASE WHEN g % 7 <> 0 THEN g END
    FROM generate_series(1, 20000) g;
    CREATE TABLE public.parts (region smallint, id int, v text, PRIMARY KEY (region, id))
        PARTITION BY LIST (region);
    CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES IN (1);
    CREATE TABLE public.parts_2 PARTITION OF public.parts FOR VALUES IN (2);
    CREATE TABLE public.parts_3 PARTITION OF public.parts FOR VALUES IN (3);
    INSERT INTO public.parts SELECT 1 + g % 2, g, md5(g::text) || repeat('p', g % 60)
    FROM generate_series(1, 15000) g;
";

/// Changes one row of `wide` and one of `parts` (through the parent: every partition's
/// log names it), at keys derived from `at`.
fn touch(at: i64) -> String {
    format!(
        "UPDATE public.wide SET n = coalesce(n, 0) + 1 WHERE id = (SELECT min(id) FROM public.wide WHERE id >= {at} % 200000);
         UPDATE public.parts SET v = v || '+' WHERE (region, id) =
             (SELECT region, id FROM public.parts WHERE id >= {at} % 15000 ORDER BY id LIMIT 1);"
    )
}

/// One random change to the patch tables or the rich fixture.
#[derive(Debug, Clone)]
enum Op {
    /// Rows at new keys from `at` on, every `step`-th key (a dense run makes a chunk grow
    /// past its maximum and be cut again).
    Insert {
        at: i64,
        n: i64,
        step: i64,
    },
    Update {
        from: i64,
        len: i64,
        nulls: bool,
    },
    Delete {
        from: i64,
        len: i64,
    },
    /// Primary keys move far away.
    MoveKeys {
        from: i64,
        len: i64,
    },
    /// A value of more than 1 MB.
    Huge {
        at: i64,
    },
    /// Rows move to another partition.
    Region {
        from: i64,
        len: i64,
        to: i16,
    },
    PartsInsert {
        at: i64,
        n: i64,
        region: i16,
    },
    PartsDelete {
        from: i64,
        len: i64,
    },
    Rich(usize),
}

impl Op {
    fn sql(&self) -> String {
        match *self {
            Op::Insert { at, n, step } => format!(
                "INSERT INTO public.wide SELECT 'new ' || repeat(md5(k::text), 4), k, k % 5 \
                 FROM generate_series({at}, {at} + {n} * {step}, {step}) k ON CONFLICT DO NOTHING"
            ),
            Op::Update { from, len, nulls } => format!(
                "UPDATE public.wide SET note = {}, n = {} WHERE id BETWEEN {from} AND {from} + {len}",
                if nulls { "NULL" } else { "note || E'\\\\tx\\n'" },
                if nulls { "NULL" } else { "coalesce(n, 0) + 1" },
            ),
            Op::Delete { from, len } => {
                format!("DELETE FROM public.wide WHERE id BETWEEN {from} AND {from} + {len}")
            }
            Op::MoveKeys { from, len } => format!(
                "UPDATE public.wide w SET id = id + 1000000 WHERE id BETWEEN {from} AND {from} + {len} \
                 AND NOT EXISTS (SELECT 1 FROM public.wide o WHERE o.id = w.id + 1000000)"
            ),
            Op::Huge { at } => format!(
                "UPDATE public.wide SET note = repeat('big', 400000) || id \
                 WHERE id = (SELECT min(id) FROM public.wide WHERE id >= {at})"
            ),
            Op::Region { from, len, to } => format!(
                "UPDATE public.parts p SET region = {to} WHERE id BETWEEN {from} AND {from} + {len} \
                 AND NOT EXISTS (SELECT 1 FROM public.parts o WHERE o.region = {to} AND o.id = p.id)"
            ),
            Op::PartsInsert { at, n, region } => format!(
                "INSERT INTO public.parts SELECT {region}, k, 'inserted ' || k FROM generate_series({at}, {at} + {n}) k ON CONFLICT DO NOTHING"
            ),
            Op::PartsDelete { from, len } => format!(
                "DELETE FROM public.parts_2 WHERE id BETWEEN {from} AND {from} + {len}"
            ),
            Op::Rich(i) => CHANGES[i].to_owned(),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            -500i64..210_000,
            1i64..50,
            prop_oneof![Just(1i64), Just(7), Just(10)]
        )
            .prop_map(|(at, n, step)| Op::Insert { at, n, step }),
        (-100i64..200_000, 1i64..3000).prop_map(|(at, _)| Op::Insert {
            at: at - at % 10 + 1,
            n: 2500,
            step: 1
        }),
        (0i64..210_000, 0i64..300, any::<bool>()).prop_map(|(from, len, nulls)| Op::Update {
            from,
            len,
            nulls
        }),
        (0i64..210_000, 0i64..2000).prop_map(|(from, len)| Op::Delete { from, len }),
        (0i64..210_000, 0i64..100).prop_map(|(from, len)| Op::MoveKeys { from, len }),
        (0i64..210_000).prop_map(|at| Op::Huge { at }),
        (0i64..15_000, 0i64..500, 1i16..4).prop_map(|(from, len, to)| Op::Region { from, len, to }),
        (14_000i64..20_000, 0i64..300, 1i16..4).prop_map(|(at, n, region)| Op::PartsInsert {
            at,
            n,
            region
        }),
        (0i64..15_000, 0i64..400).prop_map(|(from, len)| Op::PartsDelete { from, len }),
        (0..CHANGES.len()).prop_map(Op::Rich),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_snapshots_equal_full_ones_for_random_changes() {
    let db = TestDb::rich("incr_random").await;
    db.exec(PATCH_TABLES).await;
    db.track_on().await;
    // Incremental snapshots go to one store, each based on the one before; full ones to
    // another (whose marks the first store does not know, so they are never a base).
    let (incr_store, full_store) = (TestStore::new().await, TestStore::new().await);
    capture(&db.target(), &incr_store.store, &CaptureOptions::default())
        .await
        .unwrap();

    let (db, incr_store, full_store) = (&db, &incr_store, &full_store);
    let round = std::sync::atomic::AtomicUsize::new(0);
    let round = &round;
    run_cases(
        10,
        (proptest::collection::vec(op(), 1..6), 0i64..1_000_000),
        |(ops, at)| async move {
            let i = round.fetch_add(1, Ordering::Relaxed);
            for op in &ops {
                db.exec(&op.sql()).await;
            }
            db.exec(&touch(at)).await;
            let live = db.fingerprint().await;
            let incr = capture(&db.target(), &incr_store.store, &CaptureOptions::default())
                .await
                .unwrap();
            let whole = capture(&db.target(), &full_store.store, &full())
                .await
                .unwrap();
            let what = format!("round {i}, changes {ops:?}");
            for (table, mode) in &incr.modes {
                let expected_modes: &[TableMode] = match table.to_string().as_str() {
                    // No key, or a timestamp in the key.
                    "public.page_views" | "public.events_2023" | "public.events_2024" => {
                        &[TableMode::Reused, TableMode::Full, TableMode::Ranges]
                    }
                    // TRUNCATE logs the whole table; triggers of other tables insert rows.
                    "public.audit_log" => &[TableMode::Reused, TableMode::Full, TableMode::Patched],
                    _ => &[TableMode::Reused, TableMode::Patched],
                };
                assert!(
                    expected_modes.contains(mode),
                    "{what}: {table} was captured {mode:?}"
                );
            }
            for t in [
                "public.wide",
                "public.parts_1",
                "public.parts_2",
                "public.parts_3",
            ] {
                assert_eq!(incr.modes[&name(t)], TableMode::Patched, "{what}: {t}");
            }
            assert_same_rows(
                &incr_store.store,
                &incr.manifest,
                &full_store.store,
                &whole.manifest,
                &what,
            )
            .await;
            assert_restores_to(db, incr_store, &incr.manifest, &live, &format!("r{i}")).await;
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_snapshot_is_one_point_in_time_under_concurrent_writes() {
    let db = TestDb::new("incr_writers").await;
    // Transfers keep the balances' sum at zero; each transaction also bumps a counter,
    // appends its number to a ledger and drops the entry 200 before it, and moves an
    // account to a new primary key (id + 1000000, once): a torn snapshot shows up as a broken sum, a ledger
    // that does not end at the counter, or a wrong number of entries or accounts.
    db.exec(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, pad text);
         CREATE TABLE ledger (id bigint PRIMARY KEY, amount bigint NOT NULL, pad text);
         CREATE TABLE counter (id smallint PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO accounts SELECT g, 0, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g;
         INSERT INTO counter VALUES (1, 0);",
    )
    .await;
    db.track_on().await;
    let store = TestStore::new().await;
    capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let client = db.client().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7919 + 13) % 19_000;
                let amount = i % 97 + 1;
                client
                    .batch_execute(&format!(
                        "BEGIN;
                         UPDATE counter SET n = n + 1 WHERE id = 1;
                         UPDATE accounts SET balance = balance - {amount} WHERE id IN ({a}, {a} + 1000000);
                         UPDATE accounts SET balance = balance + {amount} WHERE id IN ({b}, {b} + 1000000);
                         INSERT INTO ledger SELECT n, {amount}, repeat('l', 40) FROM counter WHERE id = 1;
                         DELETE FROM ledger WHERE id = (SELECT n - 200 FROM counter WHERE id = 1);
                         UPDATE accounts SET id = id + 1000000 WHERE id = {c} AND id < 1000000;
                         COMMIT;",
                        a = i + 1,
                        b = (i * 31) % 19_000 + 1,
                        c = (i * 17) % 20_000 + 1,
                    ))
                    .await
                    .unwrap();
            }
        }));
    }

    let mut last = 0;
    for round in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        // One reader (tables one after the other: a table read at another point in time
        // would show) or one per table.
        let opts = CaptureOptions {
            workers: 1 + 2 * (round % 2),
            ..CaptureOptions::default()
        };
        let snap = capture(&db.target(), &store.store, &opts).await.unwrap();
        let m = &snap.manifest;
        let rows = |bytes: Vec<u8>| -> Vec<Vec<String>> {
            phony_core::row::lines(&bytes)
                .map(|l| {
                    phony_core::row::fields(l)
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect()
                })
                .collect()
        };
        let accounts = rows(rows_of(&store.store, m, "public.accounts").await);
        let ledger = rows(rows_of(&store.store, m, "public.ledger").await);
        let counter = rows(rows_of(&store.store, m, "public.counter").await);
        let n: i64 = counter[0][1].parse().unwrap();
        let sum: i64 = accounts.iter().map(|r| r[1].parse::<i64>().unwrap()).sum();
        let ids: Vec<i64> = ledger.iter().map(|r| r[0].parse().unwrap()).collect();
        let expected: Vec<i64> = ((n - 199).max(1)..=n).collect();
        assert_eq!(sum, 0, "round {round}: balances");
        assert_eq!(accounts.len(), 20_000, "round {round}: accounts");
        assert!(
            ids == expected,
            "round {round}: the counter is at {n}, the ledger holds {:?}..={:?} ({} entries)",
            ids.first(),
            ids.last(),
            ids.len()
        );
        assert!(n > last, "round {round}: the writers ran");
        last = n;
        for t in ["public.accounts", "public.ledger", "public.counter"] {
            assert_eq!(
                snap.modes[&name(t)],
                TableMode::Patched,
                "round {round}: {t}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // Quiet now: the last incremental snapshot equals a full one, and restores exactly.
    let live = db.fingerprint().await;
    let incr = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let other = TestStore::new().await;
    let whole = capture(&db.target(), &other.store, &full()).await.unwrap();
    assert_same_rows(
        &store.store,
        &incr.manifest,
        &other.store,
        &whole.manifest,
        "after the writers",
    )
    .await;
    assert_restores_to(&db, &store, &incr.manifest, &live, "quiet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_integer_keys_are_re_read_in_ranges() {
    let db = TestDb::new("incr_ranges").await;
    db.exec(
        "CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE TABLE tags (name text PRIMARY KEY, n int, note text);
         CREATE TABLE dom (id posint PRIMARY KEY, v text);
         CREATE TABLE num (id numeric PRIMARY KEY, v text);
         CREATE TABLE mixed (a bigint, b text, v text, PRIMARY KEY (a, b));
         CREATE TABLE plain_ints (id int PRIMARY KEY, v text);
         INSERT INTO tags SELECT 'tag ' || md5(g::text), g, repeat('t', g % 80) FROM generate_series(1, 20000) g;
         INSERT INTO dom SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 20000) g;
         INSERT INTO num SELECT g / 4.0, repeat(md5(g::text), 2) FROM generate_series(1, 20000) g;
         INSERT INTO mixed SELECT g % 10, md5(g::text), repeat('m', g % 50) FROM generate_series(1, 20000) g;
         INSERT INTO plain_ints SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    )
    .await;
    db.track_on().await;
    let (store, other) = (TestStore::new().await, TestStore::new().await);
    capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    for (round, sql) in [
        "UPDATE tags SET n = NULL WHERE n % 1000 = 3;
         DELETE FROM tags WHERE n BETWEEN 5000 AND 5100;
         INSERT INTO tags VALUES ('aaa first', 0, 'x'), ('zzz last', 1, E'tab\\there');
         UPDATE tags SET name = name || ' moved' WHERE n % 3000 = 7;
         UPDATE dom SET v = 'changed' WHERE id % 997 = 0;
         UPDATE dom SET id = id + 100000 WHERE id BETWEEN 300 AND 310;
         DELETE FROM num WHERE id BETWEEN 100 AND 200;
         INSERT INTO num VALUES (0.125, 'between'), (-1, 'below');
         UPDATE mixed SET v = NULL WHERE a = 3 AND b < '1';
         UPDATE plain_ints SET v = NULL WHERE id % 1111 = 0;",
        "DELETE FROM dom WHERE id < 1000;
         UPDATE num SET id = id + 0.0625 WHERE id BETWEEN 1000 AND 1001;
         UPDATE tags SET note = repeat('long', 50000) WHERE n = 42;",
    ]
    .into_iter()
    .enumerate()
    {
        db.exec(sql).await;
        let live = db.fingerprint().await;
        let incr = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        let whole = capture(&db.target(), &other.store, &full()).await.unwrap();
        let expected = [
            ("public.tags", TableMode::Ranges, TableMode::Ranges),
            ("public.dom", TableMode::Ranges, TableMode::Ranges),
            ("public.num", TableMode::Ranges, TableMode::Ranges),
            ("public.mixed", TableMode::Ranges, TableMode::Reused),
            ("public.plain_ints", TableMode::Patched, TableMode::Reused),
        ];
        for (t, first, second) in expected {
            let mode = if round == 0 { first } else { second };
            assert_eq!(incr.modes[&name(t)], mode, "round {round}: {t}");
        }
        assert_same_rows(
            &store.store,
            &incr.manifest,
            &other.store,
            &whole.manifest,
            &format!("round {round}"),
        )
        .await;
        assert_restores_to(&db, &store, &incr.manifest, &live, &format!("r{round}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_chunk_and_its_leaf_are_stored_as_deltas_against_what_they_replace() {
    let db = TestDb::new("incr_delta").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g;",
    )
    .await;
    db.track_on().await;
    let store = TestStore::new().await;
    let base = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec("UPDATE t SET v = 'changed' WHERE id = 10000").await;
    let incr = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let t = name("public.t");
    assert_eq!(incr.modes[&t], TableMode::Patched);

    let entry = |m: &RootManifest| m.tables.iter().find(|e| e.table == t).unwrap().clone();
    let (old, new) = (entry(&base.manifest), entry(&incr.manifest));
    let (old_chunks, new_chunks) = (
        store.store.table_chunks(&old).await.unwrap(),
        store.store.table_chunks(&new).await.unwrap(),
    );
    assert_eq!(old_chunks.len(), new_chunks.len());
    let changed: Vec<usize> = (0..old_chunks.len())
        .filter(|&i| old_chunks[i].id != new_chunks[i].id)
        .collect();
    assert_eq!(changed.len(), 1, "one chunk holds the changed row");
    let i = changed[0];
    for (what, id, base) in [
        ("the chunk", new_chunks[i].id, old_chunks[i].id),
        ("the leaf", new.content.id, old.content.id),
    ] {
        let stored = store
            .store
            .get_encoded(&id, phony_core::store::MAX_MANIFEST_LEN)
            .await
            .unwrap();
        let header = phony_core::codec::DeltaHeader::parse(&id, &stored)
            .unwrap()
            .unwrap_or_else(|| panic!("{what} is stored on its own"));
        assert_eq!(
            header.base, base,
            "{what} is a delta against the one it replaces"
        );
        assert!(stored.len() < 2000, "{what}: {} bytes", stored.len());
    }
    assert!(
        incr.stats.new_bytes < 8192,
        "the snapshot added {} bytes",
        incr.stats.new_bytes
    );
}

/// A store of format 1 holds no deltas: a tracked capture that re-reads tables (whole, in
/// ranges, or patched) stores every new chunk standalone there, and restores exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_deltas_takes_incremental_snapshots_standalone() {
    let db = TestDb::new("incr_format1").await;
    db.exec(
        "CREATE TABLE keyless (v text);
         INSERT INTO keyless SELECT repeat(md5(g::text), 4) FROM generate_series(1, 5000) g;
         CREATE TABLE texts (k text PRIMARY KEY, v text);
         INSERT INTO texts SELECT 'k' || g, repeat(md5(g::text), 4) FROM generate_series(1, 5000) g;
         CREATE TABLE ints (id int PRIMARY KEY, v text);
         INSERT INTO ints SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 5000) g;",
    )
    .await;
    db.track_on().await;
    let dir = tempfile::tempdir().unwrap();
    let old = phony_core::StoreConfig {
        format: 1,
        ..phony_core::StoreConfig::default()
    };
    let backend = phony_object_store::ObjectStoreBackend::local(dir.path(), true).unwrap();
    let store = TestStore {
        store: Arc::new(Store::open_or_init(backend, old).await.unwrap()),
        dir,
    };
    assert!(!store.store.deltas_allowed());
    capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(
        "UPDATE keyless SET v = 'changed' WHERE ctid = (SELECT min(ctid) FROM keyless);
         UPDATE texts SET v = 'changed' WHERE k = 'k2500';
         UPDATE ints SET v = 'changed' WHERE id = 2500;",
    )
    .await;
    let live = db.fingerprint().await;
    let incr = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert_eq!(incr.modes[&name("public.keyless")], TableMode::Full);
    assert_eq!(incr.modes[&name("public.texts")], TableMode::Ranges);
    assert_eq!(incr.modes[&name("public.ints")], TableMode::Patched);
    assert_restores_to(&db, &store, &incr.manifest, &live, "copy").await;
}
