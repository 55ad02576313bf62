//! Bad input: one clear line, a non-zero exit, nothing half-written.

use std::path::Path;

use phony_core::BlobId;
use phony_testkit::{ClusterOptions, TempCluster};
use phony_tests::{assert_same, TestDb, TestStore};

use crate::{fails, ok, phony, phony_cmd};

/// Every blob file of a store, biggest first.
fn blobs(store: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(store.join("blobs"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    out
}

fn count_snapshots(db_url: &str, store: &Path) -> usize {
    let out = phony(db_url, store, &["--json", "snapshot", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["snapshots"].as_array().unwrap().len()
}

#[test]
fn unreachable_server_and_missing_database() {
    let store = tempfile::tempdir().unwrap();
    let out = phony(
        "postgres://postgres@127.0.0.1:1/nowhere",
        store.path(),
        &["snapshot", "create"],
    );
    fails(
        &out,
        1,
        &["connecting to postgres://postgres@127.0.0.1:1/nowhere"],
    );

    let url = phony_tests::server_url();
    let missing = format!(
        "{}/phony_no_such_db_{}",
        &url[..url.rfind('/').unwrap()],
        std::process::id()
    );
    fails(
        &phony(&missing, store.path(), &["snapshot", "create"]),
        1,
        &["does not exist"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_and_no_password_is_ever_printed_or_stored() {
    let cluster = TempCluster::start_with(ClusterOptions {
        password: Some("right-horse-battery".into()),
        ..ClusterOptions::default()
    })
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let wrong = format!(
        "postgres://postgres:wrong-staple-9@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let out = phony(&wrong, store.path(), &["snapshot", "create"]);
    let err = fails(&out, 1, &["password authentication failed"]);
    assert!(!err.contains("wrong-staple-9"), "{err}");

    let right = cluster.url("postgres");
    let admin = phony_postgres::ConnectionTarget::parse(Some(&right))
        .unwrap()
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let out = phony(
        &right,
        store.path(),
        &["--json", "snapshot", "create", "--name", "pw"],
    );
    let text = format!("{}{}", crate::stdout(&out), crate::stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("right-horse-battery"));
    let out = phony(&right, store.path(), &["snapshot", "restore", "pw"]);
    assert!(out.status.success() && !crate::stdout(&out).contains("right-horse-battery"));
    for entry in walk(store.path()) {
        let text = plain_text(&entry);
        assert!(
            !text.contains("right-horse-battery"),
            "password stored in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A store file's plain content: blobs decoded by their id (the file name), through their
/// delta chains, records as is.
fn plain_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    match name.parse::<BlobId>() {
        Ok(id) => {
            // <store>/blobs/ab/abcd…
            let store = path.ancestors().nth(3).unwrap();
            let mut chain = phony_core::codec::Chain::new(id, bytes.into()).unwrap();
            while let Some(base) = chain.next_base() {
                let base_path = store.join(phony_core::store::blob_key(&base));
                chain
                    .push(base, std::fs::read(base_path).unwrap().into())
                    .unwrap();
            }
            String::from_utf8_lossy(&chain.decode(1 << 30).unwrap()).into_owned()
        }
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ambiguous_and_duplicate_references() {
    let db = TestDb::new("bad_refs").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let store = TestStore::new().await;
    let id = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "clean-state"],
    ));
    let id = id.trim().to_owned();

    fails(
        &phony(&db.url(), store.path(), &["snapshot", "restore", "nope"]),
        1,
        &["no snapshot is named \"nope\""],
    );
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "show", "snap_000000000000"],
        ),
        1,
        &["no snapshot is named"],
    );
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "create", "--name", "clean-state"],
        ),
        1,
        &["already exists", &id, "pick another name"],
    );
    assert_eq!(
        count_snapshots(&db.url(), store.path()),
        1,
        "nothing written for the duplicate"
    );

    // A second record sharing the first four hex digits makes that prefix ambiguous.
    let record =
        std::fs::read_to_string(store.path().join(format!("snapshots/{id}.json"))).unwrap();
    let twin = format!(
        "{}{}",
        &id[..9],
        if &id[9..] == "00000000" {
            "11111111"
        } else {
            "00000000"
        }
    );
    let twin_record = record
        .replace(&id, &twin)
        .replace("\"clean-state\"", "null");
    std::fs::write(
        store.path().join(format!("snapshots/{twin}.json")),
        twin_record,
    )
    .unwrap();
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "restore", &id[5..9]]),
        1,
        &["ambiguous", &id, &twin],
    );

    // Usage errors exit 2.
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "create", "--name", "has space"],
        ),
        2,
        &["invalid snapshot name"],
    );
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "restore", "x", "--lock-timeout", "5x"],
        ),
        2,
        &["lock-timeout"],
    );
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "frobnicate"]),
        2,
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_missing_and_newer_stores() {
    let db = TestDb::new("bad_store").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;

    // A store under a regular file cannot be created, as root or not.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    fails(
        &phony(&db.url(), &file.join("store"), &["snapshot", "create"]),
        1,
        &["creating store directory"],
    );

    // A read-only store directory, for a user the permissions apply to.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let out = if is_root() {
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        // A copy of the binary the unprivileged user can reach, wherever the build lives.
        let binary = dir.path().join("phony");
        std::fs::copy(env!("CARGO_BIN_EXE_phony"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let template = phony_cmd(&db.url(), &ro, &["snapshot", "create"]);
        let args: Vec<_> = template.get_args().map(|a| a.to_owned()).collect();
        let mut cmd = std::process::Command::new(&binary);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    } else {
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        phony(&db.url(), &ro, &["snapshot", "create"])
    };
    fails(&out, 1, &["ermission denied"]);

    let missing = dir.path().join("missing");
    fails(
        &phony(&db.url(), &missing, &["snapshot", "list"]),
        1,
        &["no phony store at"],
    );
    assert!(!missing.exists(), "list does not create a store");

    let store = TestStore::new().await;
    std::fs::write(
        store.path().join("phony-store.json"),
        r#"{"format": 99, "future": true}"#,
    )
    .unwrap();
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "list"]),
        1,
        &["format 99", "upgrade phony"],
    );
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "create"]),
        1,
        &["format 99"],
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_and_missing_blobs_fail_the_restore_and_change_nothing() {
    let db = TestDb::rich("bad_blobs").await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    // The restore will need the chunk holding the 1 MB value.
    db.exec("UPDATE public.blobs SET body = 'short' WHERE label = 'big'")
        .await;
    let changed = db.fingerprint().await;

    // Flip one bit of the biggest blob (a chunk of the 1 MB value).
    let victim = blobs(store.path()).remove(0);
    let original = std::fs::read(&victim).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_owned();
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "restore", "s"]),
        1,
        &["corrupt", &name],
    );
    assert_same(&db.fingerprint().await, &changed, "after a failed restore");

    std::fs::remove_file(&victim).unwrap();
    fails(
        &phony(&db.url(), store.path(), &["snapshot", "restore", "s"]),
        1,
        &["missing", &name],
    );
    assert_same(&db.fingerprint().await, &changed, "after a failed restore");

    // The full path needs every chunk, and fails the same way.
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "restore", "s", "--full"],
        ),
        1,
        &["missing", &name],
    );
    assert_same(&db.fingerprint().await, &changed, "after a failed restore");

    std::fs::write(&victim, &original).unwrap();
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "restore", "s"],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_by_a_user_who_may_not_write_changes_nothing() {
    let db = TestDb::new("bad_role").await;
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

    let role = format!("{}_ro", db.name);
    db.exec(&format!(
        "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" LOGIN"
    ))
    .await;
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    let out = phony(
        &url,
        store.path(),
        &["snapshot", "restore", "s", "--no-safety-snapshot"],
    );
    db.exec(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
        .await;
    fails(&out, 1, &["must be owner"]);
    assert_same(&db.fingerprint().await, &changed, "after a refused restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_older_pg_dump_is_named() {
    let db = TestDb::new("bad_pgdump").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let store = TestStore::new().await;
    let out = phony_cmd(&db.url(), store.path(), &["snapshot", "create"])
        .env("PHONY_PG_DUMP", "/nonexistent/pg_dump")
        .output()
        .unwrap();
    fails(&out, 1, &["pg_dump not found", "/nonexistent/pg_dump"]);

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.9'\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = phony_cmd(&db.url(), store.path(), &["snapshot", "create"])
        .env("PHONY_PG_DUMP", &fake)
        .output()
        .unwrap();
    fails(&out, 1, &["version 12", "older than the server"]);
    assert_eq!(count_snapshots(&db.url(), store.path()), 0);
}

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped. `None` where this
/// process may not mount (not root, or a container without the right).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes a file until the disk has no byte left.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Files whose name starts with `.` (a writer's temporary files) anywhere below `dir`.
fn hidden_files(dir: &Path) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_snapshot_in_one_line_and_a_prune_still_frees_it() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let db = TestDb::new("full_disk").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
    )
    .await;
    let store = disk.path().join("store");
    ok(&phony(
        &db.url(),
        &store,
        &["snapshot", "create", "--name", "small"],
    ));
    let kept = db.fingerprint().await;
    let blobs_kept = blobs(&store).len();

    // ~6 MB of rows that do not compress below the disk's 2 MiB.
    db.exec(
        "INSERT INTO t SELECT g, (SELECT string_agg(md5(g || ':' || k), '')
                                  FROM generate_series(1, 40) k)
         FROM generate_series(1001, 6000) g",
    )
    .await;
    let grown = db.fingerprint().await;
    fails(
        &phony(&db.url(), &store, &["snapshot", "create", "--name", "big"]),
        1,
        &["No space left on device"],
    );
    assert_eq!(
        count_snapshots(&db.url(), &store),
        1,
        "no record of the failed snapshot"
    );
    assert_eq!(hidden_files(&store), Vec::<std::path::PathBuf>::new());

    // Not a byte left: a restore that would keep the state before it (a safety snapshot)
    // refuses and changes nothing.
    let filler = disk.fill();
    fails(
        &phony(&db.url(), &store, &["snapshot", "restore", "small"]),
        1,
        &["No space left on device"],
    );
    assert_same(&db.fingerprint().await, &grown, "after a failed restore");

    // The collection can still run (its lock fits in a name) and removes what the failed
    // snapshot wrote.
    ok(&phony(
        &db.url(),
        &store,
        &["snapshot", "prune", "--keep-last", "10"],
    ));
    assert_eq!(blobs(&store).len(), blobs_kept);

    // The state now does not fit either: restore without keeping it.
    std::fs::remove_file(filler).unwrap();
    ok(&phony(
        &db.url(),
        &store,
        &["snapshot", "restore", "small", "--no-safety-snapshot"],
    ));
    assert_same(
        &db.fingerprint().await,
        &kept,
        "restored from the store that filled up",
    );
    ok(&phony(
        &db.url(),
        &store,
        &["store", "verify", "--read-data"],
    ));
}
