//! Change tracking: restores that read only what changed, and never a wrong restore.

use crate::{change_sets, run_cases};
use phony_postgres::{
    capture, restore, tracking, CaptureOptions, Captured, Fingerprint, RestoreOptions, RestorePath,
};
use phony_tests::{assert_same, TestDb, TestStore};

use crate::roundtrip::{uniques_change, CHANGES, UNIQUES, UNIQUES_CHANGES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_restores_are_exact_for_random_changes() {
    let db = TestDb::rich("trk_random").await;
    let untracked = db.fingerprint().await;
    db.track_on().await;
    let before = db.fingerprint().await;
    assert_same(
        &before,
        &untracked,
        "tracking leaves no trace in the fingerprint",
    );
    let store = TestStore::new().await;
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();

    let (db, store, captured, before) = (&db, &store, &captured, &before);
    run_cases(8, change_sets(CHANGES.len()), |picked| async move {
        for i in &picked {
            db.exec(CHANGES[*i]).await;
        }
        let report = db.restore(store, &captured.manifest).await;
        assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
        assert_same(
            &db.fingerprint().await,
            before,
            &format!("after tracked restore of changes {picked:?}"),
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_snapshots_stays_exact() {
    let db = TestDb::rich("trk_switch").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let opts = RestoreOptions::default();
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let fa = db.fingerprint().await;
    db.exec(CHANGES[0]).await;
    db.exec(CHANGES[3]).await;
    db.exec(CHANGES[6]).await;
    let b = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let fb = db.fingerprint().await;

    // A, then more changes, then B, then A again: each restore must see the others' writes.
    restore(&db.target(), &store.store, &a.manifest, &opts)
        .await
        .unwrap();
    assert_same(&db.fingerprint().await, &fa, "back at A");
    db.exec(CHANGES[1]).await;
    db.exec(CHANGES[12]).await;
    let r = restore(&db.target(), &store.store, &b.manifest, &opts)
        .await
        .unwrap();
    assert_eq!(r.path, RestorePath::Delta);
    assert_same(&db.fingerprint().await, &fb, "at B");
    let r = restore(&db.target(), &store.store, &a.manifest, &opts)
        .await
        .unwrap();
    assert_eq!(r.path, RestorePath::Delta);
    assert_same(&db.fingerprint().await, &fa, "at A again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_take_the_schema_path_and_tracking_follows() {
    let db = TestDb::rich("trk_schema").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let snap = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec("ALTER TABLE public.orders ADD COLUMN coupon text")
        .await;
    db.exec(CHANGES[2]).await;
    let r = db.restore(&store, &snap.manifest).await;
    assert_eq!(r.path, RestorePath::Schema, "{:?}", r.full_reason);
    assert_same(&db.fingerprint().await, &before, "after the schema path");

    // Tracking is back on every table, and the next restore reads the log.
    let status = tracking::status(&db.client().await).await.unwrap();
    assert!(status.untracked_tables.is_empty(), "{status:?}");
    assert!(tracking::usable_mark(&db.client().await, &snap.root)
        .await
        .unwrap()
        .is_some());
    db.exec(CHANGES[2]).await;
    let r = db.restore(&store, &snap.manifest).await;
    assert_eq!(r.path, RestorePath::Delta);
    assert_same(&db.fingerprint().await, &before, "after the tracked delta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_off_and_on_again_or_copied_elsewhere_falls_back_to_content() {
    let db = TestDb::rich("trk_doubt").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let snap = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();

    // Off (changes go unlogged), then on again: the old mark is gone with the log.
    let client = db.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    tracking::uninstall(&client).await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    db.exec(CHANGES[0]).await;
    db.exec(CHANGES[5]).await;
    db.track_on().await;
    assert!(tracking::usable_mark(&client, &snap.root)
        .await
        .unwrap()
        .is_none());
    db.restore(&store, &snap.manifest).await;
    assert_same(&db.fingerprint().await, &before, "after off and on");

    // A copy made by another tool carries the tracking schema, but not its identity.
    db.exec(CHANGES[2]).await;
    let copy = db.sibling_name("tpl");
    drop(client);
    let admin = phony_postgres::ConnectionTarget::parse(Some(&phony_tests::server_url()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            db.name
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{copy}\" TEMPLATE \"{}\"",
            db.name
        ))
        .await
        .unwrap();
    let copy_target = db.target().with_dbname(&copy);
    let copy_client = copy_target.connect().await.unwrap();
    assert!(tracking::installed(&copy_client).await.unwrap());
    assert!(!tracking::valid(&copy_client).await.unwrap());
    // Unlogged in the copy: tracking there is not this database's own.
    copy_client
        .batch_execute("UPDATE public.categories SET name = 'copied' WHERE parent_id IS NULL")
        .await
        .unwrap();
    restore(
        &copy_target,
        &store.store,
        &snap.manifest,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_same(&db.fingerprint_of(&copy).await, &before, "the copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_snapshots_hold_exactly_the_live_state() {
    let db = TestDb::rich("trk_incr").await;
    // Enough rows for several chunks, so that ranges are re-read and others reused.
    db.exec(
        "CREATE TABLE public.wide (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO public.wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g;",
    )
    .await;
    db.track_on().await;
    let store = TestStore::new().await;
    let full = CaptureOptions {
        incremental: false,
        ..CaptureOptions::default()
    };
    let first = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let rounds: &[&[&str]] = &[
        &[
            "UPDATE public.wide SET v = 'changed' WHERE id IN (7, 15000)",
            CHANGES[0],
            CHANGES[8],
        ],
        &[
            "DELETE FROM public.wide WHERE id BETWEEN 100 AND 120",
            CHANGES[12],
            CHANGES[5],
        ],
        &[
            "INSERT INTO public.wide VALUES (0, 'first'), (30000, 'last')",
            CHANGES[6],
            CHANGES[2],
        ],
        &[
            "UPDATE public.wide SET id = id + 50000 WHERE id = 9000",
            CHANGES[9],
        ],
    ];
    let _ = first;
    for (i, round) in rounds.iter().enumerate() {
        for sql in *round {
            db.exec(sql).await;
        }
        let live = db.fingerprint().await;
        let incr = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        let whole = capture(&db.target(), &store.store, &full).await.unwrap();
        assert!(
            incr.stats.blobs < whole.stats.blobs / 2,
            "round {i}: the incremental capture touched {} blobs, a full one {}",
            incr.stats.blobs,
            whole.stats.blobs
        );
        assert_eq!(incr.stats.rows, whole.stats.rows, "round {i}");
        for (label, snap) in [("incremental", &incr), ("full", &whole)] {
            let copy = db
                .restore_beside(&store, &snap.manifest, &format!("r{i}_{label}"))
                .await;
            let restored = db.fingerprint_of(&copy).await;
            assert_same(&restored, &live, &format!("round {i}, {label} snapshot"));
        }
    }
}

/// What a capture does as it starts: fixes its point in time and holds its place among the
/// marks. Returns the side session, the held place and the point in time.
async fn hold_place(db: &TestDb) -> (tokio_postgres::Client, tracking::PendingMark, String) {
    let side = db.client().await;
    let pending = tracking::lock_marks(&side).await.unwrap().unwrap();
    let snap: String = db
        .value("SELECT pg_catalog.pg_current_snapshot()::text")
        .await;
    tracking::hold_mark(&side, &pending, &snap).await.unwrap();
    (side, pending, snap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_taken_during_an_unlogged_restore_is_not_trusted() {
    let db = TestDb::rich("trk_unlogged").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec(CHANGES[0]).await;
    // A restore finds no other mark (so it will not log the rows it rewrites), then waits
    // for a lock...
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE public.customers IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let restoring = {
        let (target, store, manifest) = (db.target(), store.store.clone(), a.manifest.clone());
        tokio::spawn(async move {
            restore(&target, &store, &manifest, &RestoreOptions::default()).await
        })
    };
    let watcher = db.client().await;
    for _ in 0..500 {
        let waiting: bool = watcher
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'phony restore'
                   AND wait_event_type = 'Lock')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // ...meanwhile a snapshot fixes its point in time and holds its place...
    let (_side, pending, snap) = hold_place(&db).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let r = restoring.await.unwrap().unwrap();
    assert_eq!(r.path, RestorePath::Delta);
    // ...and the snapshot's mark, recorded afterwards, must not claim the log is complete.
    let b = phony_core::BlobId::of(b"a snapshot taken meanwhile");
    let client = db.client().await;
    tracking::record_mark(&client, &b, &snap, Some(&pending))
        .await
        .unwrap();
    assert!(tracking::usable_mark(&client, &b).await.unwrap().is_none());
    assert!(tracking::usable_mark(&client, &a.root)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_being_taken_keeps_the_log_entries_it_needs() {
    let db = TestDb::rich("trk_pending").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let (side, pending, snap) = hold_place(&db).await;
    // Written after the snapshot's point in time, then pruned by a restore to A if the
    // held place were not a mark.
    db.exec(CHANGES[2]).await;
    db.restore(&store, &a.manifest).await;
    let client = db.client().await;
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM phony.changes
             WHERE NOT pg_catalog.pg_visible_in_snapshot(xid, $1::text::pg_catalog.pg_snapshot)",
            &[&snap],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        kept > 0,
        "the log entries the pending snapshot needs were pruned"
    );
    // A place given up is gone.
    tracking::release_mark(&side, &pending).await;
    let marks: i64 = client
        .query_one(
            "SELECT count(*) FROM phony.marks WHERE root LIKE 'pending:%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_restores_again_and_again_across_schema_changes() {
    let db = TestDb::rich("trk_session").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let snap = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let session = phony_postgres::Session::connect(&db.target())
        .await
        .unwrap();
    let opts = RestoreOptions::default();
    let steps: [(&str, RestorePath); 4] = [
        (CHANGES[0], RestorePath::Delta),
        (CHANGES[0], RestorePath::Delta),
        (
            "ALTER TABLE public.orders ADD COLUMN coupon text",
            RestorePath::Schema,
        ),
        (CHANGES[0], RestorePath::Delta),
    ];
    for (i, (sql, path)) in steps.into_iter().enumerate() {
        db.exec(sql).await;
        let r =
            phony_postgres::restore_in(&session, &db.target(), &store.store, &snap.manifest, &opts)
                .await
                .unwrap();
        assert_eq!(r.path, path, "step {i}: {:?}", r.full_reason);
        assert_same(&db.fingerprint().await, &before, &format!("after step {i}"));
    }
    // pg_dump's scripts (the full path) set session settings; the session keeps its own.
    let search_path: String = session
        .client()
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(search_path, "\"$user\", public");
}

/// A restore waits at its gate before it commits or drops anything, and a gate that says
/// no rolls it back: the state before stays, on the delta path and on the full path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_rolls_the_restore_back() {
    use futures::FutureExt;
    let db = TestDb::rich("trk_gate").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let a = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let fa = db.fingerprint().await;
    let gate = |outcome: Result<(), String>, after_ms: u64| {
        Some(
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(after_ms)).await;
                outcome
            }
            .boxed()
            .shared(),
        )
    };
    for change in [CHANGES[2], "ALTER TABLE public.customers ADD COLUMN x int"] {
        db.exec(change).await;
        let dirty = db.fingerprint().await;
        let closed = RestoreOptions {
            gate: gate(Err("the snapshot before failed".into()), 100),
            ..RestoreOptions::default()
        };
        let e = restore(&db.target(), &store.store, &a.manifest, &closed)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("the snapshot before failed"), "{e}");
        assert_same(
            &db.fingerprint().await,
            &dirty,
            &format!("closed gate: {change}"),
        );
        let open = RestoreOptions {
            gate: gate(Ok(()), 100),
            ..RestoreOptions::default()
        };
        restore(&db.target(), &store.store, &a.manifest, &open)
            .await
            .unwrap();
        assert_same(
            &db.fingerprint().await,
            &fa,
            &format!("open gate: {change}"),
        );
    }
}

/// Keys the table holds equal to the snapshot's but spelled otherwise (another case under
/// `citext`, another scale of a `numeric`, `-0` for `0`): the row must come back spelled as
/// it was, which an update of the other columns alone would not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_equal_but_spelled_otherwise_come_back_as_they_were() {
    let db = TestDb::new("trk_spelling").await;
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS citext;
         CREATE TABLE ci (email citext PRIMARY KEY, n int);
         INSERT INTO ci VALUES ('Bob@x.test', 1), ('carol@x.test', 2);
         CREATE TABLE num (k numeric PRIMARY KEY, n int);
         INSERT INTO num VALUES (1.0, 1), (2.50, 2), (3, 3);
         CREATE TABLE fl (k float8 PRIMARY KEY, n int);
         INSERT INTO fl VALUES ('-0', 1), (1.5, 2);",
    )
    .await;
    let mess = "UPDATE ci SET email = 'bob@x.test', n = 5 WHERE email = 'Bob@x.test';
                UPDATE ci SET email = 'CAROL@X.TEST' WHERE email = 'carol@x.test';
                UPDATE num SET k = 1.00 WHERE k = 1;
                UPDATE num SET k = 2.5, n = 7 WHERE k = 2.5;
                UPDATE fl SET k = 0, n = 9 WHERE k = 0;";
    for tracked in [false, true] {
        if tracked {
            db.track_on().await;
        }
        db.quiesce().await;
        let store = TestStore::new().await;
        let base = capture(&db.target(), &store.store, &CaptureOptions::default())
            .await
            .unwrap();
        let expected = db.fingerprint().await;
        db.exec(mess).await;
        let report = db.restore(&store, &base.manifest).await;
        assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
        assert_eq!(report.tracked, tracked, "{report:?}");
        assert_same(
            &db.fingerprint().await,
            &expected,
            &format!("tracked: {tracked}"),
        );
    }
    // An incremental snapshot of the changed spellings holds the live rows, once each.
    db.exec(mess).await;
    let live = db.fingerprint().await;
    let store = TestStore::new().await;
    capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    db.exec("UPDATE ci SET n = n + 1; UPDATE num SET k = 1.000 WHERE k = 1")
        .await;
    let live_after = db.fingerprint().await;
    let incremental = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    assert_ne!(live, live_after);
    let copy = db
        .restore_beside(&store, &incremental.manifest, "copy")
        .await;
    assert_same(
        &db.fingerprint_of(&copy).await,
        &live_after,
        "incremental snapshot",
    );
}

/// A snapshot of `db` into `store`, and the database's fingerprint at that moment.
async fn captured_with_fingerprint(db: &TestDb, store: &TestStore) -> (Captured, Fingerprint) {
    let captured = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    (captured, db.fingerprint().await)
}

/// Tracking turned on in `db`, a store, and a snapshot of `db` in it with the database's
/// fingerprint at that moment.
async fn tracked_base(db: &TestDb) -> (TestStore, (Captured, Fingerprint)) {
    db.track_on().await;
    let store = TestStore::new().await;
    let base = captured_with_fingerprint(db, &store).await;
    (store, base)
}

/// Restores `base` with the log's help and checks that the database is `expected` again;
/// then, given a `later` snapshot, goes to it and back (see [`forward_and_back`]).
async fn restore_tracked(
    db: &TestDb,
    store: &TestStore,
    base: &Captured,
    expected: &Fingerprint,
    later: Option<&(Captured, Fingerprint)>,
    label: &str,
) -> phony_postgres::RestoreReport {
    let report = db.restore(store, &base.manifest).await;
    assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
    assert!(report.tracked, "{report:?}");
    assert_same(&db.fingerprint().await, expected, label);
    if let Some(later) = later {
        forward_and_back(db, store, later, &base.manifest, expected).await;
    }
    report
}

/// Restores the later snapshot `later` (captured with its fingerprint), whose rows a
/// rewrite back to `base` logged by key only: they come from its snapshot, and the log
/// drives the way back to `base` (whose fingerprint is `expected`) again.
async fn forward_and_back(
    db: &TestDb,
    store: &TestStore,
    later: &(Captured, Fingerprint),
    base: &phony_core::RootManifest,
    expected: &Fingerprint,
) {
    let (captured, fingerprint) = later;
    let report = db.restore(store, &captured.manifest).await;
    assert_eq!(report.path, RestorePath::Delta, "{:?}", report.full_reason);
    assert_same(
        &db.fingerprint().await,
        fingerprint,
        "forward to the later one",
    );
    db.restore(store, base).await;
    assert_same(&db.fingerprint().await, expected, "back again");
}

/// Rows put back from the log by each strategy: in place (no other unique constraint),
/// deleted and inserted again (a unique column whose values two rows swapped, so that an
/// update in place would trip over the other row midway), and tables whose only non-key
/// column is one, or is generated always as identity. With another snapshot's mark (the
/// rewritten rows are logged with their images) and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rewrite_strategy_puts_back_the_exact_rows() {
    let db = TestDb::new("trk_strategies").await;
    db.exec(
        "CREATE TABLE plain (id int PRIMARY KEY, v text, n numeric);
         INSERT INTO plain SELECT i, 'v' || i, i * 1.5 FROM generate_series(1, 300) i;
         CREATE TABLE uniq (id int PRIMARY KEY, email text UNIQUE, note text);
         INSERT INTO uniq SELECT i, 'e' || i, NULL FROM generate_series(1, 50) i;
         CREATE TABLE one (id int PRIMARY KEY, v int);
         INSERT INTO one SELECT i, i FROM generate_series(1, 50) i;
         CREATE TABLE ident (id int PRIMARY KEY, seq int GENERATED ALWAYS AS IDENTITY, v text);
         INSERT INTO ident (id, v) SELECT i, 'x' FROM generate_series(1, 20) i;",
    )
    .await;
    let (store, (base, expected)) = tracked_base(&db).await;
    let mess = "UPDATE plain SET v = v || '!', n = NULL WHERE id % 3 = 0;
                DELETE FROM plain WHERE id % 7 = 0;
                INSERT INTO plain SELECT i, 'new', 0 FROM generate_series(301, 340) i;
                UPDATE plain SET id = id + 1000 WHERE id IN (1, 2);
                UPDATE uniq SET email = 'swapping' WHERE id = 1;
                UPDATE uniq SET email = 'e1' WHERE id = 2;
                UPDATE uniq SET email = 'e2' WHERE id = 1;
                UPDATE uniq SET email = 'tmp', note = 'swap' WHERE id = 3;
                UPDATE uniq SET email = 'e3' WHERE id = 4;
                UPDATE uniq SET email = 'e4' WHERE id = 3;
                DELETE FROM uniq WHERE id = 5;
                UPDATE one SET v = -v WHERE id < 10;
                DELETE FROM ident WHERE id = 3;
                UPDATE ident SET v = 'changed' WHERE id > 15;";
    let mut later = None;
    for other_mark in [false, true] {
        if other_mark {
            db.exec("UPDATE plain SET v = 'later' WHERE id < 30; DELETE FROM uniq WHERE id = 9;")
                .await;
            later = Some(captured_with_fingerprint(&db, &store).await);
        }
        for round in 0..2 {
            db.exec(mess).await;
            let label = format!("other mark: {other_mark}, round {round}");
            restore_tracked(&db, &store, &base, &expected, later.as_ref(), &label).await;
        }
    }
}

/// Rows under unique constraints besides the key (on an expression, with a predicate, on a
/// generated column) whose values moved between rows are put back from the log. With
/// another snapshot's mark and without, and in a dry run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_rows_under_expression_partial_and_generated_unique_indexes_are_put_back() {
    let db = TestDb::new("trk_uniques").await;
    db.exec(UNIQUES).await;
    let (store, (base, expected)) = tracked_base(&db).await;
    for other_mark in [false, true] {
        let mut later = None;
        if other_mark {
            db.exec("UPDATE public.uniques SET note = 'later' WHERE id IN (1, 21, 30);")
                .await;
            later = Some(captured_with_fingerprint(&db, &store).await);
        }
        db.exec(UNIQUES_CHANGES).await;
        let dry = RestoreOptions {
            dry_run: true,
            ..RestoreOptions::default()
        };
        let report = restore(&db.target(), &store.store, &base.manifest, &dry)
            .await
            .unwrap();
        assert!(report.tracked, "{report:?}");
        let changed = match other_mark {
            // The later snapshot's three rows are changed back too.
            true => (1, 1, 19),
            false => (1, 1, 18),
        };
        assert_eq!(uniques_change(&report), changed, "dry run");
        let label = format!("other mark: {other_mark}");
        let report = restore_tracked(&db, &store, &base, &expected, later.as_ref(), &label).await;
        assert_eq!(uniques_change(&report), changed, "{label}");
    }
}

/// With autovacuum off for the log, the entries every prune deletes stay behind as dead
/// rows that reads of the log step over: a restore vacuums the log once they outnumber
/// the live ones (and 10,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_autovacuum_leaves_alone_is_vacuumed_after_a_restore() {
    let db = TestDb::new("trk_vacuum").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT g, g FROM generate_series(1, 12000) AS g;",
    )
    .await;
    db.track_on().await;
    db.exec("ALTER TABLE phony.changes SET (autovacuum_enabled = false)")
        .await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let snap = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    let dead = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'phony.changes'::regclass";
    let vacuums =
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'phony.changes'::regclass";

    // 12,000 entries, which the restore's pruning deletes; counted once its session ends.
    db.exec("UPDATE t SET v = v + 1").await;
    db.restore(&store, &snap.manifest).await;
    assert_same(&db.fingerprint().await, &before, "after the first restore");
    // The statistics collector reports them when the restore's session ends; on a loaded
    // machine that takes a while. A read that prunes a page of the log meanwhile takes its
    // dead rows off the count, so the wait is for the restore's threshold (10,000), not
    // for all 12,000.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while db.value::<i64>(dead).await <= 10000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pruned entries were never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(db.value::<i64>(vacuums).await, 0);

    // The next restore finds them and vacuums.
    db.exec("UPDATE t SET v = 0 WHERE id = 1").await;
    let report = db.restore(&store, &snap.manifest).await;
    assert!(report.tracked, "{report:?}");
    assert_same(&db.fingerprint().await, &before, "after the second restore");
    assert_eq!(db.value::<i64>(vacuums).await, 1);
    assert!(db.value::<i64>(dead).await < 12000);
}

/// A schema change done and undone since the snapshot leaves its schema, so the delta path
/// runs with the log trusted for the tables the change did not touch. Touched are also the
/// partitions of an altered partitioned table, and the tables using a row type or a domain
/// that changed: a write no log sees (triggers held off, as only a superuser can) in each
/// of them is compared and undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_touches_partitions_and_the_users_of_its_types() {
    let db = TestDb::rich("trk_touched").await;
    db.track_on().await;
    let store = TestStore::new().await;
    let before = db.fingerprint().await;
    let snap = capture(&db.target(), &store.store, &CaptureOptions::default())
        .await
        .unwrap();
    for (what, ddl, unseen) in [
        (
            "a partitioned table",
            "ALTER TABLE public.events ADD COLUMN scratch int;
             ALTER TABLE public.events DROP COLUMN scratch;",
            "UPDATE public.events_2024 SET kind = 'unseen';",
        ),
        (
            "a row type",
            "ALTER TYPE public.address ADD ATTRIBUTE zip2 text CASCADE;
             ALTER TYPE public.address DROP ATTRIBUTE zip2 CASCADE;",
            "UPDATE public.customers SET name = 'unseen';",
        ),
        (
            "a domain",
            "ALTER DOMAIN public.positive_int SET DEFAULT 1;
             ALTER DOMAIN public.positive_int DROP DEFAULT;",
            "UPDATE public.type_zoo SET label = 'unseen';",
        ),
    ] {
        db.exec(&format!(
            "BEGIN; {ddl} SET LOCAL session_replication_role = replica; {unseen} COMMIT;"
        ))
        .await;
        db.exec(CHANGES[0]).await;
        let report = db.restore(&store, &snap.manifest).await;
        assert_eq!(
            report.path,
            RestorePath::Delta,
            "{what}: {:?}",
            report.full_reason
        );
        assert_same(&db.fingerprint().await, &before, what);
    }
}
