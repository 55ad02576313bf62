//! `phony` killed with SIGKILL at random moments of create, restore and prune, many times:
//! afterwards the store verifies clean, every listed snapshot is whole, and the database
//! is in its before-state or its after-state.
//!
//! `PHONY_CRASH_ITERATIONS` sets the number of kills (default 24, so that the suite stays
//! quick; the long run is `PHONY_CRASH_ITERATIONS=200`); `PHONY_CRASH_SEED` replays a run.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use phony_tests::{TestDb, TestStore};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::{ok, phony, phony_cmd};

const DEFAULT_ITERATIONS: usize = 24;

/// The table's contents, cheaply: a database state's identity for this test.
async fn state(db: &TestDb) -> String {
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(id || '=' || v, ',' ORDER BY id)), '')
               || ':' || (SELECT last_value::text FROM s) FROM t",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Waits until no restore session of a killed phony is left on the server (it rolls back
/// when it notices its client is gone).
async fn no_restore_sessions(db: &TestDb) {
    let client = db.client().await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let rows = client
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'phony restore' AND datname = $1",
                &[&db.name],
            )
            .await
            .unwrap();
        if rows.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a killed restore's session did not end");
}

fn verify_clean(db: &TestDb, store: &Path, read_data: bool, when: &str) -> u64 {
    let mut args = vec!["--json", "store", "verify"];
    if read_data {
        args.push("--read-data");
    }
    let out = phony(&db.url(), store, &args);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{when}: {}", crate::stderr(&out)));
    assert!(
        out.status.success(),
        "{when}: the store is damaged: {report}"
    );
    report["snapshots"].as_u64().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Create,
    Restore,
    Prune,
}

fn spawn(db: &TestDb, store: &Path, op: Op, target: &str) -> Child {
    let args: Vec<&str> = match op {
        Op::Create => vec!["snapshot", "create"],
        Op::Restore => vec!["snapshot", "restore", target],
        Op::Prune => vec!["snapshot", "prune", "--keep-last", "3", "--wait", "1s"],
    };
    phony_cmd(&db.url(), store, &args).spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_nothing_is_lost() {
    killed_at_random_moments("crash", false).await;
}

/// The same with change tracking: a restore's safety snapshot is then completed while the
/// restore runs, which commits only after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_with_tracking_nothing_is_lost() {
    killed_at_random_moments("crash_trk", true).await;
}

async fn killed_at_random_moments(label: &str, tracked: bool) {
    let iterations: usize = std::env::var("PHONY_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    let seed: u64 = std::env::var("PHONY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let db = TestDb::new(label).await;
    db.exec(
        "CREATE SEQUENCE s;
         CREATE TABLE t (id int PRIMARY KEY DEFAULT nextval('s'), v text NOT NULL);
         INSERT INTO t (v) SELECT md5(g::text) || repeat('y', 60) FROM generate_series(1, 40000) g;",
    )
    .await;
    let store = TestStore::new().await;
    let s = store.path();
    if tracked {
        ok(&phony(&db.url(), s, &["track", "on"]));
    }
    // Locks of killed processes go stale in seconds, not minutes.
    ok(&phony(
        &db.url(),
        s,
        &["store", "config", "--lease-ttl", "3s"],
    ));

    // Two known states, each pinned so that prunes keep them.
    let mut states = std::collections::HashMap::new();
    ok(&phony(
        &db.url(),
        s,
        &["snapshot", "create", "--name", "a", "--pin"],
    ));
    states.insert("a", state(&db).await);
    db.exec("UPDATE t SET v = upper(v) WHERE id % 5 = 0; DELETE FROM t WHERE id % 11 = 0; INSERT INTO t (v) VALUES ('b')")
        .await;
    ok(&phony(
        &db.url(),
        s,
        &["snapshot", "create", "--name", "b", "--pin"],
    ));
    states.insert("b", state(&db).await);
    assert_ne!(states["a"], states["b"]);

    // How long each operation takes when left alone: kills land anywhere in it.
    let mut took = std::collections::HashMap::new();
    for (op, target) in [(Op::Create, ""), (Op::Restore, "a"), (Op::Prune, "")] {
        let start = Instant::now();
        ok(&spawn(&db, s, op, target).wait_with_output().unwrap());
        took.insert(op, start.elapsed());
    }
    let mut current = "a";

    let (mut killed, mut finished) = (0usize, 0usize);
    let mut per_op = std::collections::HashMap::<Op, (usize, usize)>::new();
    for i in 0..iterations {
        let op = [Op::Create, Op::Restore, Op::Prune][rng.gen_range(0..3)];
        let target = if rng.gen_bool(0.5) { "a" } else { "b" };
        let span = took[&op].as_millis() as u64 * 6 / 5 + 20;
        let at = Duration::from_millis(rng.gen_range(0..span));
        let mut child = spawn(&db, s, op, target);
        std::thread::sleep(at);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let entry = per_op.entry(op).or_default();
        if status.success() {
            finished += 1;
            entry.1 += 1;
        } else {
            killed += 1;
            entry.0 += 1;
        }

        // The killed process's lock (if any) goes stale after the lease period. Mostly the
        // test expires it at once, as if the period had passed, so that the next kill lands
        // in real work rather than in a wait for it; sometimes it is left to go stale.
        if !status.success() && rng.gen_bool(0.75) {
            if let Ok(locks) = std::fs::read_dir(s.join("locks")) {
                for lock in locks {
                    let _ = std::fs::remove_file(lock.unwrap().path());
                }
            }
        }
        no_restore_sessions(&db).await;
        let now = state(&db).await;
        let after = if op == Op::Restore && now == states[target] {
            target
        } else {
            current
        };
        assert_eq!(
            now, states[after],
            "iteration {i} (seed {seed}): {op:?} killed after {at:?} left the database in neither its before- nor its after-state"
        );
        current = after;
        if i % 6 == 5 {
            verify_clean(
                &db,
                s,
                false,
                &format!("iteration {i} (seed {seed}), {op:?} killed after {at:?}"),
            );
        }
    }

    // The last kill's lock, if any, is expired as above (the next command would remove it
    // at once anyway, since its holder is gone, but would say so on stderr).
    if let Ok(locks) = std::fs::read_dir(s.join("locks")) {
        for lock in locks {
            let _ = std::fs::remove_file(lock.unwrap().path());
        }
    }

    // Everything listed is whole, every blob hashes right, and the pinned snapshots still
    // restore to their states; then a prune with nothing running reclaims all garbage.
    let snapshots = verify_clean(&db, s, true, "at the end");
    for name in ["a", "b"] {
        ok(&phony(&db.url(), s, &["snapshot", "restore", name]));
        assert_eq!(state(&db).await, states[name], "restoring {name}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let pruned: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        s,
        &["--json", "snapshot", "prune", "--keep-last", "3"],
    )))
    .unwrap();
    assert_eq!(pruned["gc"]["status"], "swept", "{pruned}");
    verify_clean(&db, s, true, "after the final prune");
    let stats: Value =
        serde_json::from_str(&ok(&phony(&db.url(), s, &["--json", "store", "stats"]))).unwrap();
    assert_eq!(stats["unreferenced_blobs"], 0, "{stats}");
    println!(
        "crash test{with}: {iterations} iterations (seed {seed}): {killed} killed mid-operation, {finished} finished first \
         (create {:?}, restore {:?}, prune {:?} as killed/finished); {snapshots} snapshots listed, all whole; \
         the database was always in its before- or after-state",
        per_op.get(&Op::Create).copied().unwrap_or_default(),
        per_op.get(&Op::Restore).copied().unwrap_or_default(),
        per_op.get(&Op::Prune).copied().unwrap_or_default(),
        with = if tracked { " with tracking" } else { "" },
    );
}
