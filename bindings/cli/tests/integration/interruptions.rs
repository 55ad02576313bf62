//! Restores that are killed, blocked or forced, and sessions that stay connected.

use std::time::{Duration, Instant};

use phony_tests::{assert_same, TestDb, TestStore};

use crate::{fails, ok, phony, phony_cmd};

/// A database big enough that a restore takes a noticeable moment.
async fn big_db(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
         INSERT INTO big SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 6) FROM generate_series(1, 300000) g;
         CREATE TABLE small (id serial PRIMARY KEY, v text);
         INSERT INTO small (v) VALUES ('a'), ('b');",
    )
    .await;
    db
}

/// Polls until `cond` holds or `timeout` passes.
async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Waits (up to 20 s) until a session named `application_name` runs a COPY in a database
/// whose name starts with `database` (other tests run phony too): the moment to kill the
/// phony process behind it mid-work.
async fn copying(watcher: &tokio_postgres::Client, application_name: &str, database: &str) -> bool {
    wait_for(Duration::from_secs(20), || async {
        !watcher
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'COPY%'
                 AND starts_with(datname, $2)",
                &[&application_name, &database],
            )
            .await
            .unwrap()
            .is_empty()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_midway_leaves_the_before_state() {
    let db = big_db("kill_restore").await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    db.exec(
        "DELETE FROM big WHERE id % 3 = 0; INSERT INTO small (v) VALUES ('c'); DROP TABLE small",
    )
    .await;
    let changed = db.fingerprint().await;

    let watcher = db.client().await;
    let mut child = phony_cmd(&db.url(), store.path(), &["snapshot", "restore", "s"])
        .spawn()
        .unwrap();
    // Kill it while it is loading rows: the schema is already dropped and recreated.
    let loading = copying(&watcher, "phony restore", &db.name).await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(loading, "the restore reached the load phase");
    assert!(!status.success());
    // The server notices the closed connection and rolls the transaction back.
    assert!(
        wait_for(Duration::from_secs(20), || async {
            watcher
                .query(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'phony restore'",
                    &[],
                )
                .await
                .unwrap()
                .is_empty()
        })
        .await
    );
    assert_same(
        &db.fingerprint().await,
        &changed,
        "after the killed restore",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_create_lists_nothing() {
    let db = big_db("kill_create").await;
    let store = TestStore::new().await;
    let watcher = db.client().await;
    let mut child = phony_cmd(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    )
    .spawn()
    .unwrap();
    let reading = copying(&watcher, "phony capture", &db.name).await;
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reading);
    let list = ok(&phony(
        &db.url(),
        store.path(),
        &["--json", "snapshot", "list"],
    ));
    assert!(list.contains("\"snapshots\": []"), "{list}");
    // And the name is still free; the killed create's lock is taken over at once.
    let o = phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert_eq!(
        crate::stderr(&o).trim_end(),
        format!("phony: removed a stale lock of pid {pid} (no longer running)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_elsewhere_names_the_session_and_force_ends_it() {
    let db = TestDb::new("locks").await;
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

    // A reader in an open transaction does not stop a restore of rows.
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN; SELECT * FROM t")
        .await
        .unwrap();
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--lock-timeout", "300ms"],
    ));
    reader.batch_execute("COMMIT").await.unwrap();
    db.exec("INSERT INTO t VALUES (2)").await;

    // A writer idle in its transaction does (and so would any session for a schema change).
    let holder = db.client().await;
    holder
        .batch_execute(
            "SET application_name = 'e2e-runner'; BEGIN; UPDATE t SET id = id WHERE id = -1",
        )
        .await
        .unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let started = Instant::now();
    let out = phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--lock-timeout", "300ms"],
    );
    fails(
        &out,
        1,
        &[
            "could not lock",
            &format!("pid {pid}"),
            "e2e-runner",
            "idle in transaction",
            "--force",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_same(
        &db.fingerprint().await,
        &changed,
        "after the blocked restore",
    );

    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--force"],
    ));
    assert!(
        holder.query_one("SELECT 1", &[]).await.is_err(),
        "the holder was terminated"
    );
    let n: i64 = db.value("SELECT count(*) FROM t").await;
    assert_eq!(n, 1);

    // Without --force, idle sessions keep their connections.
    let bystander = db.client().await;
    bystander
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s"],
    ));
    let n: i64 = bystander
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 1,
        "the bystander is still connected and sees the restored state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_restore_into_a_new_database_never_shows_a_partial_one() {
    let db = big_db("kill_target").await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    let copy = db.sibling_name("new");
    let watcher = db.client().await;
    let mut child = phony_cmd(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--target", &db.url_of(&copy)],
    )
    .spawn()
    .unwrap();
    let loading = copying(&watcher, "phony restore", &format!("{copy}_phony_partial_")).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(loading, "the restore reached the load phase");
    let exists = |name: String| {
        let watcher = &watcher;
        async move {
            !watcher
                .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_empty()
        }
    };
    assert!(
        !exists(copy.clone()).await,
        "the target name never shows a partial database"
    );
    // A second restore replaces the leftover and completes.
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--target", &db.url_of(&copy)],
    ));
    assert!(exists(copy.clone()).await);
    let leftovers = watcher
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&format!("{copy}_phony_partial")],
        )
        .await
        .unwrap();
    assert!(leftovers.is_empty(), "the partial database was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_restore_says_nothing_changed_and_exits_130() {
    let db = big_db("sigint_restore").await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    db.exec("DELETE FROM big WHERE id % 3 = 0; DROP TABLE small")
        .await;
    let changed = db.fingerprint().await;

    let watcher = db.client().await;
    let child = phony_cmd(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s", "--no-safety-snapshot"],
    )
    .spawn()
    .unwrap();
    let loading = copying(&watcher, "phony restore", &db.name).await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        loading && sent.success(),
        "the restore reached the load phase"
    );
    assert_eq!(out.status.code(), Some(130), "{}", crate::stderr(&out));
    assert_eq!(
        crate::stderr(&out),
        "phony: error: interrupted, nothing changed\n"
    );
    assert_eq!(crate::stdout(&out), "");
    assert!(
        wait_for(Duration::from_secs(20), || async {
            watcher
                .query(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'phony restore'",
                    &[],
                )
                .await
                .unwrap()
                .is_empty()
        })
        .await
    );
    assert_same(&db.fingerprint().await, &changed, "after Ctrl-C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_create_lists_nothing_and_exits_130() {
    let db = big_db("sigint_create").await;
    let store = TestStore::new().await;
    let watcher = db.client().await;
    let child = phony_cmd(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    )
    .spawn()
    .unwrap();
    let reading = copying(&watcher, "phony capture", &db.name).await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(reading && sent.success(), "the capture was reading");
    assert_eq!(out.status.code(), Some(130), "{}", crate::stderr(&out));
    assert_eq!(
        crate::stderr(&out),
        "phony: error: interrupted, nothing changed\n"
    );
    let list = ok(&phony(&db.url(), store.path(), &["snapshot", "list"]));
    assert!(list.contains("no snapshots yet"), "{list}");
    // Its lock is gone: a create right after neither waits nor fails.
    ok(&phony(&db.url(), store.path(), &["snapshot", "create"]));
}
