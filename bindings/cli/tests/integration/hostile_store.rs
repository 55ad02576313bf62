//! Damaged and hostile stores: bad records, links out of the store, stale locks, and
//! where a store may be created. One bad object never blocks the rest, and nothing is lost.

use std::path::{Path, PathBuf};

use phony_tests::{TestDb, TestStore};
use serde_json::Value;

use crate::{fails, ok, phony, stderr, stdout};

async fn small_db(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 50) g")
        .await;
    db
}

fn record_path(store: &Path, id: &str) -> PathBuf {
    store.join("snapshots").join(format!("{id}.json"))
}

fn blob_path(store: &Path, hex: &str) -> PathBuf {
    store.join("blobs").join(&hex[..2]).join(hex)
}

/// The lines of stderr, each asserted to be a warning.
fn warnings(o: &std::process::Output) -> Vec<String> {
    let err = stderr(o);
    let lines: Vec<String> = err.lines().map(str::to_owned).collect();
    for l in &lines {
        assert!(l.starts_with("phony: warning: "), "{err}");
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_skipped_removed_on_request_and_keep_their_blobs() {
    let db = small_db("bad_records").await;
    let store = TestStore::new().await;
    let dir = store.path();
    let run = |args: &[&str]| phony(&db.url(), dir, args);
    let a = ok(&run(&["snapshot", "create", "--name", "a"]))
        .trim()
        .to_owned();
    db.exec("UPDATE t SET v = 'changed' WHERE id = 7").await;
    let b = ok(&run(&["snapshot", "create", "--name", "b"]))
        .trim()
        .to_owned();

    let b_text = std::fs::read_to_string(record_path(dir, &b)).unwrap();
    let b_root = serde_json::from_str::<Value>(&b_text).unwrap()["root"]
        .as_str()
        .unwrap()
        .to_owned();
    let empty = "snap_000000000001";
    let truncated = "snap_000000000002";
    let newer = "snap_000000000003";
    let misnamed = "snap_000000000004";
    std::fs::write(record_path(dir, empty), b"").unwrap();
    std::fs::write(record_path(dir, truncated), &b_text[..40]).unwrap();
    let format = serde_json::from_str::<Value>(&b_text).unwrap()["format"].clone();
    std::fs::write(
        record_path(dir, newer),
        b_text.replacen(&format!("\"format\": {format}"), "\"format\": 99", 1),
    )
    .unwrap();
    // b's record under another name: it references b's blobs.
    std::fs::write(record_path(dir, misnamed), &b_text).unwrap();

    // Every command about the sound snapshots works, with one warning per bad file.
    let listed = run(&["snapshot", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let out = stdout(&listed);
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    assert!(!out.contains(misnamed), "{out}");
    let lines = warnings(&listed);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, id) in lines.iter().zip([empty, truncated, newer, misnamed]) {
        assert!(line.contains(&format!("snapshots/{id}.json")), "{line}");
    }
    assert!(
        lines[2].contains("format 99") && lines[2].contains("upgrade phony"),
        "the newer record is named, not the store: {}",
        lines[2]
    );
    assert!(
        lines[0].contains("it is empty") && lines[0].contains("phony store verify --repair"),
        "{}",
        lines[0]
    );
    assert!(
        lines[3].contains(&b),
        "the misnamed record says whose it is: {}",
        lines[3]
    );

    for args in [
        &["snapshot", "show", "a"][..],
        &["snapshot", "diff", "a", "b"],
        &["snapshot", "restore", "a", "--no-safety-snapshot"],
        &["snapshot", "create", "--name", "c"],
        &["store", "stats"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(warnings(&o).len(), 4, "{args:?}");
    }

    // b is deleted; the misnamed copy of its record may still reference its blobs, so a
    // prune removes no blob while it is there, and says why.
    let o = run(&["snapshot", "delete", "b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pruned = run(&["snapshot", "prune", "--keep-last", "10"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let out = stdout(&pruned);
    assert!(
        out.contains("unreferenced blobs stay")
            && out.contains(&format!("snapshots/{misnamed}.json"))
            && out.contains("verify --repair"),
        "{out}"
    );
    assert!(blob_path(dir, &b_root).exists(), "b's root was kept");

    // delete by the file's id: --force removes a record that cannot be read.
    let o = run(&["snapshot", "delete", misnamed]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("phony: error: ")
            && last.contains(&format!("snapshots/{misnamed}.json"))
            && last.contains("--force"),
        "{err}"
    );
    let o = run(&["snapshot", "delete", misnamed, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("snapshots/{misnamed}.json")));
    assert!(!record_path(dir, misnamed).exists());

    // verify reports the rest; --repair removes the damaged ones and keeps the newer one.
    let o = run(&["store", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("damaged record snapshots/{empty}.json")));
    let o = run(&["store", "verify", "--repair"]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "removing the damaged record snapshots/{empty}.json"
        )) && err.contains(&format!(
            "removing the damaged record snapshots/{truncated}.json"
        )) && err.contains(&format!("keeping snapshots/{newer}.json")),
        "{err}"
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the newer record is still there: {err}"
    );
    assert!(!record_path(dir, empty).exists() && !record_path(dir, truncated).exists());
    assert!(
        record_path(dir, newer).exists(),
        "nothing of a newer phony is lost"
    );

    // Without it, the store is clean again and b's blobs are swept.
    std::fs::remove_file(record_path(dir, newer)).unwrap();
    ok(&run(&["store", "verify", "--repair"]));
    let out = ok(&run(&["snapshot", "prune", "--keep-last", "10"]));
    assert!(out.contains("freed"), "{out}");
    assert!(!blob_path(dir, &b_root).exists(), "b's root was swept");
    ok(&run(&["snapshot", "show", "a"]));
}

/// The create locks in a store directory.
fn create_locks(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("locks"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("create-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_of_a_killed_create_is_taken_over_at_once_and_said_so() {
    let db = small_db("stale_lock").await;
    let store = TestStore::new().await;
    let dir = store.path();
    ok(&phony(&db.url(), dir, &["snapshot", "create"]));

    // A create that holds its lock while it waits for a table, killed as Ctrl-C would.
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut child = crate::phony_cmd(&db.url(), dir, &["snapshot", "create"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while create_locks(dir).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the create never took its lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        create_locks(dir).len(),
        1,
        "the killed create left its lock"
    );

    // The lease (120 s) has not expired, but its holder is gone: prune does not wait.
    let started = std::time::Instant::now();
    let o = phony(
        &db.url(),
        dir,
        &["snapshot", "prune", "--keep-last", "5", "--wait", "20s"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "prune waited {:?} for a dead process",
        started.elapsed()
    );
    assert_eq!(
        stderr(&o).trim_end(),
        format!("phony: removed a stale lock of pid {pid} (no longer running)")
    );
    let out = stdout(&o);
    assert!(
        out.contains("freed") && !out.contains("still being created"),
        "{out}"
    );
    assert!(create_locks(dir).is_empty());
    // And the next command says nothing more.
    ok(&phony(&db.url(), dir, &["snapshot", "create"]));
}

/// Every blob file of a store, by its hex name.
fn blob_names(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(store.join("blobs")).unwrap() {
        for e in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(e.unwrap().file_name().into_string().unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_linked_to_dev_zero_or_sparse_fails_at_once_as_corrupt() {
    let db = small_db("hostile_blob").await;
    let store = TestStore::new().await;
    let dir = store.path();
    let run = |args: &[&str]| phony(&db.url(), dir, args);
    let a = ok(&run(&["snapshot", "create", "--name", "a"]))
        .trim()
        .to_owned();
    ok(&run(&["snapshot", "create", "--name", "b"]));
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(record_path(dir, &a)).unwrap()).unwrap();
    let root = record["root"].as_str().unwrap().to_owned();
    let path = blob_path(dir, &root);

    for hostile in ["link", "sparse"] {
        std::fs::remove_file(&path).unwrap();
        if hostile == "link" {
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        } else {
            std::fs::File::create(&path)
                .unwrap()
                .set_len(1 << 30)
                .unwrap();
        }
        let says = if hostile == "link" {
            "symbolic link"
        } else {
            "more than"
        };
        for args in [
            &["snapshot", "show", "a"][..],
            &["snapshot", "diff", "a", "b"],
            &["snapshot", "restore", "a", "--no-safety-snapshot"],
        ] {
            let started = std::time::Instant::now();
            let o = run(args);
            fails(&o, 1, &[&root, "corrupt", says]);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{hostile}: {args:?} took {:?}",
                started.elapsed()
            );
        }
        let o = run(&["store", "verify"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("blob {root} is corrupt")),
            "{} / {}",
            stdout(&o),
            stderr(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_linked_out_of_the_store_are_never_written_or_swept() {
    let db = small_db("hostile_links").await;
    let store = TestStore::new().await;
    let dir = store.path();
    let outside = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| phony(&db.url(), dir, args);
    let a = ok(&run(&["snapshot", "create"])).trim().to_owned();
    ok(&run(&["snapshot", "delete", &a]));

    // blobs/xx pointing at a directory elsewhere, holding a file named like a blob.
    let taken: Vec<String> = blob_names(dir).iter().map(|n| n[..2].to_owned()).collect();
    let first = (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|p| !taken.contains(p))
        .unwrap();
    let foreign = outside.path().join(format!("{first}{}", "0".repeat(62)));
    std::fs::write(&foreign, b"not phony's").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("blobs").join(&first)).unwrap();
    let o = run(&["snapshot", "prune", "--keep-last", "5"]);
    fails(&o, 1, &[&format!("blobs/{first}"), "symbolic link"]);
    assert_eq!(std::fs::read(&foreign).unwrap(), b"not phony's");
    std::fs::remove_file(dir.join("blobs").join(&first)).unwrap();

    // locks/ pointing elsewhere: no lock is written there.
    let _ = std::fs::remove_dir_all(dir.join("locks"));
    std::fs::remove_file(&foreign).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("locks")).unwrap();
    let o = run(&["snapshot", "create"]);
    fails(&o, 1, &["locks in", "symbolic link"]);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_created_only_by_a_create_that_can_succeed_and_only_where_meant() {
    let db = small_db("store_creation").await;
    let tmp = tempfile::tempdir().unwrap();

    // A failed connection leaves no store behind.
    let new = tmp.path().join("new");
    let o = phony(
        "postgres://postgres@127.0.0.1:1/nowhere",
        &new,
        &["snapshot", "create"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!new.exists(), "the failed create made {}", new.display());

    // A missing parent is not created.
    let deep = tmp.path().join("nonexistent/deep/store");
    let o = phony(&db.url(), &deep, &["snapshot", "create"]);
    fails(
        &o,
        1,
        &["parent directory", "nonexistent/deep", "does not exist"],
    );
    assert!(!tmp.path().join("nonexistent").exists());

    // A file is not a store.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for args in [&["snapshot", "create"][..], &["snapshot", "list"]] {
        let o = phony(&db.url(), &file, args);
        fails(&o, 1, &["is a file, not a store directory"]);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // A directory of other things is not made a store.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let o = phony(&db.url(), &other, &["snapshot", "create"]);
    fails(
        &o,
        1,
        &["is not a phony store (no phony-store.json) and is not empty"],
    );
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);

    // An empty directory, or a new one in an existing parent, becomes a store.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(&phony(&db.url(), &empty, &["snapshot", "create"]));
    ok(&phony(&db.url(), &new, &["snapshot", "create"]));
    ok(&phony(&db.url(), &new, &["snapshot", "create"]));

    // A config of format 0 is refused, naming both versions.
    let config = new.join("phony-store.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let format = serde_json::from_str::<Value>(&text).unwrap()["format"].clone();
    std::fs::write(
        &config,
        text.replacen(&format!("\"format\": {format}"), "\"format\": 0", 1),
    )
    .unwrap();
    let o = phony(&db.url(), &new, &["snapshot", "list"]);
    fails(&o, 1, &["format 0", &format!("formats 1 to {format}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_fails_a_restore_into_a_new_database_and_leaves_none() {
    let db = TestDb::new("hostile_new_db").await;
    // A big table is loaded and its index built on one connection while the damaged small
    // one fails on the other: the failure stops both, and nothing is left behind.
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, v text); CREATE INDEX big_v ON big (v);
         INSERT INTO big SELECT g, repeat('x', 100) || g FROM generate_series(1, 20000) g;
         CREATE TABLE small (id int PRIMARY KEY, w text); CREATE INDEX small_w ON small (w);
         INSERT INTO small SELECT g, 'w' || g FROM generate_series(1, 50) g",
    )
    .await;
    let store = TestStore::new().await;
    let dir = store.path();
    ok(&phony(
        &db.url(),
        dir,
        &["snapshot", "create", "--name", "a"],
    ));
    // The small table's rows are one chunk, named by the hash of their COPY text.
    let rows: String = (1..=50).map(|g| format!("{g}\tw{g}\n")).collect();
    let chunk = phony_core::BlobId::of(rows.as_bytes()).to_hex();
    let path = blob_path(dir, &chunk);
    assert!(path.exists(), "the small table's chunk is {chunk}");
    std::fs::write(&path, b"\x01not a zstd frame").unwrap();

    let copy = db.sibling_name("new");
    let started = std::time::Instant::now();
    let o = phony(
        &db.url(),
        dir,
        &["snapshot", "restore", "a", "--target", &db.url_of(&copy)],
    );
    fails(&o, 1, &[&chunk, "corrupt"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let left: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)",
            &[&copy],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "neither {copy} nor a partial database is left");
}
