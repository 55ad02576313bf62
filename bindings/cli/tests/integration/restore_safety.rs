//! Restores that must not hurt: `--force` beside the safety snapshot, a snapshot of
//! another database, undo hints that undo, safety snapshots of restores that failed or
//! were interrupted.

use phony_tests::{assert_same, TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony, stdout};

/// With tracking on, the safety snapshot is completed while the restore runs: `--force`
/// must end other sessions, never the snapshot's own connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_spares_the_safety_snapshot_of_a_tracked_restore() {
    let db = TestDb::rich("force_tracked").await;
    let store = TestStore::new().await;
    ok(&phony(&db.url(), store.path(), &["track", "on"]));
    let clean = db.fingerprint().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "clean"],
    ));
    for round in 0..3 {
        db.exec("UPDATE public.customers SET name = name || '!' WHERE id % 2 = 0")
            .await;
        let dirty = db.fingerprint().await;
        let bystander = db.client().await;
        let out = phony(
            &db.url(),
            store.path(),
            &["--json", "snapshot", "restore", "clean", "--force"],
        );
        let restored: Value = serde_json::from_str(&ok(&out)).unwrap();
        assert!(
            restored["terminated_sessions"].as_u64().unwrap() >= 1,
            "round {round}: {restored}"
        );
        assert!(
            bystander.query_one("SELECT 1", &[]).await.is_err(),
            "round {round}: the other session was terminated"
        );
        assert_same(&db.fingerprint().await, &clean, "after the forced restore");
        // The safety snapshot holds the state before, exactly.
        let safety = restored["safety_snapshot"].as_str().unwrap().to_owned();
        ok(&phony(
            &db.url(),
            store.path(),
            &["snapshot", "restore", &safety, "--no-safety-snapshot"],
        ));
        assert_same(&db.fingerprint().await, &dirty, "after undoing it");
        ok(&phony(
            &db.url(),
            store.path(),
            &["snapshot", "restore", "clean", "--no-safety-snapshot"],
        ));
    }
}

/// The undo hint after `restore --target` names the target: running it puts the target back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_undo_hint_of_a_restore_into_another_database_names_that_database() {
    let db = TestDb::new("undo_src").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'source')")
        .await;
    let other = TestDb::new("undo_dst").await;
    other
        .exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (2, 'target')")
        .await;
    let before = other.fingerprint().await;
    let source = db.fingerprint().await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));

    let out = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--target", &other.url()],
    ));
    assert_same(&other.fingerprint().await, &source, "the target holds s");
    let hint = out.lines().last().unwrap();
    let (_, command) = hint.split_once("undo with `phony ").unwrap();
    let command = command.trim_end_matches(['`', ')']);
    let words: Vec<&str> = command.split(' ').collect();
    assert_eq!(words[0], "--database", "{hint}");
    assert!(words[1].ends_with(&format!("/{}", other.name)), "{hint}");
    assert!(!words[1].contains(&db.name), "{hint}");
    assert_eq!(words[2..4], ["snapshot", "restore"], "{hint}");
    // Run as printed (with the same store): the target is as it was.
    ok(&phony(words[1], store.path(), &words[2..]));
    assert_same(&other.fingerprint().await, &before, "after the undo");
    assert_same(&db.fingerprint().await, &source, "the source untouched");

    // A new database: the undo drops it.
    let fresh = db.sibling_name("fresh");
    let out = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--target", &db.url_of(&fresh)],
    ));
    let hint = out.lines().last().unwrap();
    assert!(
        hint.contains("undo with `dropdb --maintenance-db postgres://")
            && hint.ends_with(&format!("/postgres {fresh}`)")),
        "{hint}"
    );
    assert!(!out.contains("snapshot restore"), "{out}");
}

/// A restore that fails (here: a lock held elsewhere) changed nothing: it leaves no safety
/// snapshot behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_leaves_no_safety_snapshot() {
    let db = TestDb::new("failed_safety").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    db.exec("INSERT INTO t VALUES (2)").await;
    let holder = db.client().await;
    // A writer idle in its transaction.
    holder
        .batch_execute("BEGIN; UPDATE t SET id = id WHERE id = -1")
        .await
        .unwrap();
    let out = phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--lock-timeout", "300ms"],
    );
    fails(&out, 1, &["could not lock"]);
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    let ids: Vec<&str> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("(safety)"))
        .collect();
    assert_eq!(ids, ["s"], "{}", stdout(&out));
    drop(holder);
}

/// A store holds snapshots of several databases: restoring one over another database is
/// refused with one line naming both, unless asked for; `list` shows each one's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_database_is_not_restored_over_this_one() {
    let db = TestDb::new("src_db").await;
    db.exec("CREATE TABLE clean (id int PRIMARY KEY); INSERT INTO clean VALUES (1)")
        .await;
    let other = TestDb::new("other_db").await;
    other
        .exec("CREATE TABLE precious (id int PRIMARY KEY); INSERT INTO precious VALUES (7)")
        .await;
    let before = other.fingerprint().await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "clean-state"],
    ));

    for extra in [&[][..], &["--dry-run"], &["--force"]] {
        let mut args = vec!["snapshot", "restore", "clean-state"];
        args.extend_from_slice(extra);
        let out = phony(&other.url(), store.path(), &args);
        fails(&out, 1, &[&db.name, &other.name, "--allow-other-database"]);
    }
    assert_same(&other.fingerprint().await, &before, "after the refusals");
    let list = ok(&phony(&other.url(), store.path(), &["snapshot", "list"]));
    assert!(
        list.contains("DATABASE") && list.contains(&db.name),
        "{list}"
    );
    let show = ok(&phony(
        &other.url(),
        store.path(),
        &["snapshot", "show", "clean-state"],
    ));
    assert!(show.contains(&db.name), "{show}");

    ok(&phony(
        &other.url(),
        store.path(),
        &[
            "snapshot",
            "restore",
            "clean-state",
            "--allow-other-database",
        ],
    ));
    assert_same(
        &other.fingerprint().await,
        &db.fingerprint().await,
        "asked for, the restore happens",
    );
}

/// A database of the same name on another server is another database too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_another_server_is_not_restored_over_a_namesake() {
    let db = TestDb::new("namesake").await;
    db.exec("CREATE TABLE mine (id int PRIMARY KEY); INSERT INTO mine VALUES (1)")
        .await;
    let before = db.fingerprint().await;
    let cluster = phony_testkit::TempCluster::start().unwrap();
    let admin = phony_postgres::ConnectionTarget::parse(Some(&cluster.url("postgres")))
        .unwrap()
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
        .await
        .unwrap();
    let elsewhere = cluster.url(&db.name);
    let store = TestStore::new().await;
    ok(&phony(
        &elsewhere,
        store.path(),
        &["snapshot", "create", "--name", "theirs"],
    ));
    let out = phony(&db.url(), store.path(), &["snapshot", "restore", "theirs"]);
    fails(&out, 1, &["another server", "--allow-other-database"]);
    assert_same(&db.fingerprint().await, &before, "after the refusal");
    // The server it came from takes it back.
    ok(&phony(
        &elsewhere,
        store.path(),
        &["snapshot", "restore", "theirs"],
    ));
}

/// Ctrl-C while the restore waits for a lock: nothing changed, so the safety snapshot the
/// run already wrote is removed, and the exit code is 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_leaves_no_safety_snapshot() {
    let db = TestDb::new("ctrl_c").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    db.exec("INSERT INTO t VALUES (2)").await;
    let changed = db.fingerprint().await;
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; UPDATE t SET id = id WHERE id = -1")
        .await
        .unwrap();
    let watcher = db.client().await;
    let child = crate::phony_cmd(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--lock-timeout", "60s"],
    )
    .spawn()
    .unwrap();
    // The safety snapshot is written, and the restore waits for the holder's lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting = !watcher
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name = 'phony restore' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .is_empty();
        let records = std::fs::read_dir(store.path().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0);
        if waiting && records == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", crate::stderr(&out));
    assert!(
        crate::stderr(&out).contains("interrupted, nothing changed"),
        "{}",
        crate::stderr(&out)
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    let list: Value = serde_json::from_str(&ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    )))
    .unwrap();
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1, "{list}");
    assert_same(&db.fingerprint().await, &changed, "nothing changed");
}
