//! What phony says: names against ids, closed pipes, JSON errors, confirmations, plurals,
//! and the small habits of each command.

use std::path::Path;

use phony_tests::{TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony, phony_cmd, stderr, stdout};

fn create(db: &TestDb, store: &Path, extra: &[&str]) -> String {
    let mut args = vec!["snapshot", "create"];
    args.extend_from_slice(extra);
    ok(&phony(&db.url(), store, &args)).trim().to_owned()
}

fn shown_id(db: &TestDb, store: &Path, reference: &str) -> String {
    let out = ok(&phony(
        &db.url(),
        store,
        &["--json", "snapshot", "show", reference],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_never_shadow_ids_and_prefixes_match_in_any_case() {
    let db = TestDb::new("msg_names").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    let s = store.path();
    let first = create(&db, s, &[]);
    let hex = &first["snap_".len()..];

    // A name that reads as the id's prefix (or any id) is refused, with a usage error.
    for bad in [&hex[..4], &hex.to_uppercase()[..6], "snap_x", "cafe"] {
        let out = phony(&db.url(), s, &["snapshot", "create", "--name", bad]);
        fails(&out, 2, &["could be read as a snapshot id or id prefix"]);
    }
    // Letters of any script are letters.
    let dia = create(&db, s, &["--name", "día-1"]);
    assert_eq!(shown_id(&db, s, "día-1"), dia);

    // Prefixes match in either case; short ones say what is needed.
    assert_eq!(shown_id(&db, s, &hex[..4].to_uppercase()), first);
    assert_eq!(shown_id(&db, s, &first.to_uppercase()), first);
    let out = phony(&db.url(), s, &["snapshot", "show", &hex[..3]]);
    fails(
        &out,
        1,
        &["too short to be an id prefix", "at least 4 hex digits"],
    );

    // A store written before the rule may hold such a name: it still resolves by name when
    // no id matches, and an id prefix wins over it.
    let other = create(&db, s, &[]);
    let path = s.join(format!("snapshots/{other}.json"));
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let free = ["0000", "1111", "2222"]
        .into_iter()
        .find(|p| {
            ![&first, &dia, &other]
                .iter()
                .any(|id| id[5..].starts_with(p))
        })
        .unwrap();
    record["name"] = Value::from(free);
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    assert_eq!(shown_id(&db, s, free), other);
    record["name"] = Value::from(&hex[..5]);
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    assert_eq!(shown_id(&db, s, &hex[..5]), first, "the id prefix wins");
    ok(&phony(&db.url(), s, &["snapshot", "delete", &hex[..5]]));
    assert_eq!(
        shown_id(&db, s, &hex[..5]),
        other,
        "then the old name resolves"
    );
}

/// Runs phony with the read end of its stdout closed before it writes anything.
fn with_stdout_closed(db: &TestDb, store: &Path, args: &[&str]) {
    let mut child = phony_cmd(&db.url(), store, args).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err, "", "{args:?}: nothing on stderr");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let db = TestDb::new("msg_pipe").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g",
    )
    .await;
    let store = TestStore::new().await;
    let s = store.path();
    let from = create(&db, s, &[]);
    db.exec("UPDATE t SET v = 'y' WHERE id % 2 = 0").await;
    let to = create(&db, s, &[]);
    for args in [
        &["snapshot", "list"][..],
        &["--json", "snapshot", "list"],
        &["snapshot", "show", &from],
        &["--json", "snapshot", "show", &from],
        &["snapshot", "diff", &from, &to, "--sql"],
        &["snapshot", "diff", &from, &to, "--rows"],
        &["--json", "store", "stats"],
        &["store", "stats"],
    ] {
        with_stdout_closed(&db, s, args);
    }
}

fn json_error(out: &std::process::Output, exit: i32) -> Value {
    assert_eq!(out.status.code(), Some(exit), "{}", stderr(out));
    assert_eq!(stdout(out), "");
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let v: Value = serde_json::from_str(&err).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_errors_are_json_with_a_stable_code() {
    let db = TestDb::new("msg_json").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let store = TestStore::new().await;
    let s = store.path();
    create(&db, s, &["--name", "taken"]);
    let cases: [(&[&str], i32, &str); 6] = [
        (&["snapshot", "show", "nope"], 1, "not_found"),
        (&["snapshot"], 2, "usage"),
        (&["snapshot", "show", "abc"], 1, "not_found"),
        (&["snapshot", "create", "--name", "taken"], 1, "name_taken"),
        (&["snapshot", "show"], 2, "usage"),
        (&["snapshot", "create", "--name", "a b"], 2, "usage"),
    ];
    for (args, exit, code) in cases {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let v = json_error(&phony(&db.url(), s, &all), exit);
        assert_eq!(v["error"]["code"], code, "{args:?}: {v}");
    }
    let unreachable = phony(
        "postgres://postgres@127.0.0.1:1/x",
        s,
        &["--json", "snapshot", "create"],
    );
    assert_eq!(json_error(&unreachable, 1)["error"]["code"], "connection");
    let missing = tempfile::tempdir().unwrap();
    let no_store = phony(
        &db.url(),
        &missing.path().join("none"),
        &["--json", "snapshot", "show", "x"],
    );
    assert_eq!(json_error(&no_store, 1)["error"]["code"], "not_found");
    // Without --json, the same errors stay one line of text.
    fails(
        &phony(&db.url(), s, &["snapshot", "show", "nope"]),
        1,
        &["nope"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_that_would_remove_every_unpinned_snapshot_wants_yes() {
    let db = TestDb::new("msg_prune").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let store = TestStore::new().await;
    let s = store.path();
    let kept = create(&db, s, &["--pin"]);
    let a = create(&db, s, &[]);
    let out = phony(&db.url(), s, &["snapshot", "prune", "--keep-last", "0"]);
    fails(
        &out,
        2,
        &["would remove the only snapshot that is not pinned", "--yes"],
    );
    let v = json_error(
        &phony(
            &db.url(),
            s,
            &["--json", "snapshot", "prune", "--keep-last", "0"],
        ),
        2,
    );
    assert_eq!(v["error"]["code"], "confirmation_required");
    assert_eq!(shown_id(&db, s, &a), a, "nothing removed");
    // A dry run needs no confirmation; a prune that keeps one unpinned snapshot neither.
    ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "0", "--dry-run"],
    ));
    create(&db, s, &[]);
    let one = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "1"],
    ));
    assert!(one.contains("removed 1 of 3 snapshots"), "{one}");
    let all = ok(&phony(
        &db.url(),
        s,
        &["snapshot", "prune", "--keep-last", "0", "--yes"],
    ));
    assert!(all.contains("removed 1 of 2 snapshots"), "{all}");
    assert_eq!(shown_id(&db, s, &kept), kept, "pinned ones stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_habits_list_without_a_store_plurals_and_tracking_twice() {
    let db = TestDb::new("msg_small").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("nothing-here");

    // No store yet: an empty list, and no store made.
    let text = ok(&phony(&db.url(), &s, &["snapshot", "list"]));
    assert!(text.contains("no snapshots yet"), "{text}");
    let v: Value =
        serde_json::from_str(&ok(&phony(&db.url(), &s, &["--json", "snapshot", "list"]))).unwrap();
    assert_eq!(v["snapshots"], Value::Array(vec![]));
    assert!(!s.exists(), "list created nothing");

    // Singular where there is one.
    let id = create(&db, &s, &[]);
    db.exec("DELETE FROM t WHERE id = 1").await;
    let restored = ok(&phony(
        &db.url(),
        &s,
        &["snapshot", "restore", &id, "--no-safety-snapshot"],
    ));
    assert!(
        restored.contains("(0 rows deleted, 1 inserted"),
        "{restored}"
    );
    db.exec("INSERT INTO t VALUES (3)").await;
    let restored = ok(&phony(
        &db.url(),
        &s,
        &["snapshot", "restore", &id, "--no-safety-snapshot"],
    ));
    assert!(restored.contains("of 1 table (1 row deleted"), "{restored}");
    let verified = ok(&phony(&db.url(), &s, &["store", "verify"]));
    assert!(verified.contains("checked 1 snapshot,"), "{verified}");
    let shown = ok(&phony(&db.url(), &s, &["snapshot", "show", &id]));
    assert!(shown.contains("1 table, 2 rows, 0 sequences"), "{shown}");

    // Tracking on twice says so; off twice too.
    let on = ok(&phony(&db.url(), &s, &["track", "on"]));
    assert!(on.starts_with("tracking is on\n"), "{on}");
    assert!(on.contains("1 table tracked"), "{on}");
    let again = ok(&phony(&db.url(), &s, &["track", "on"]));
    assert!(again.starts_with("tracking is already on\n"), "{again}");
    ok(&phony(&db.url(), &s, &["track", "off"]));
    let off = ok(&phony(&db.url(), &s, &["track", "off"]));
    assert!(off.starts_with("tracking is already off"), "{off}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_on_says_when_it_waits_for_writers() {
    let db = TestDb::new("msg_track_wait").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let store = TestStore::new().await;
    let writer = db.client().await;
    writer
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let child = phony_cmd(&db.url(), store.path(), &["track", "on"])
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    writer.batch_execute("COMMIT").await.unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("waiting for 1 transaction writing to") && err.contains("to finish"),
        "{err}"
    );
    assert!(
        stdout(&out).starts_with("tracking is on"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| phony("postgres://nobody@127.0.0.1:1/none", dir.path(), args);
    for (shell, marker) in [
        ("bash", "complete -F _phony"),
        ("zsh", "#compdef phony"),
        ("fish", "complete -c phony"),
    ] {
        let script = ok(&run(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("restore") && script.contains("prune"),
            "{shell}"
        );
    }
    let page = ok(&run(&["man"]));
    assert!(page.contains(".TH phony 1"), "{page}");
    assert!(page.contains("snapshot"), "{page}");
    fails(&run(&["completions", "cmd.exe"]), 2, &["invalid value"]);
    assert!(
        !dir.path().join("phony-store.json").exists(),
        "no store made"
    );
}
