//! `phony snapshot export`: a plain SQL script that psql loads into an empty database with
//! the snapshot's fingerprint; compressed by name; to a file, stdout or S3; never over an
//! existing file or object without --force.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use phony_tests::s3::TestBucket;
use phony_tests::{assert_same, TestDb, TestStore};

use crate::{fails, ok, phony};

fn psql_load(db: &TestDb, file: &Path) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url(), "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_script_loads_into_an_empty_database_with_the_same_fingerprint() {
    let db = TestDb::rich("cli_export").await;
    let store = TestStore::new().await;
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "create", "--name", "s"],
    ));
    let expected = db.fingerprint().await;
    // The database moves on: the export is the snapshot's state, not today's.
    db.exec("DELETE FROM public.orders; SELECT nextval('public.ticket_seq')")
        .await;

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("s.sql");
    let text = ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "export", "s", "-o", plain.to_str().unwrap()],
    ));
    assert!(text.starts_with("exported snap_"), "{text}");
    let empty = TestDb::new("cli_export_load").await;
    psql_load(&empty, &plain);
    assert_same(&empty.fingerprint().await, &expected, "a loaded export");
    let script = std::fs::read(&plain).unwrap();

    // Stdout by default, the same script.
    let out = phony(&db.url(), store.path(), &["snapshot", "export", "s"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, script);

    // Compressed by name.
    let zst = dir.path().join("s.sql.zst");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "export", "s", "-o", zst.to_str().unwrap()],
    ));
    let zst_bytes = std::fs::read(&zst).unwrap();
    assert!(zst_bytes.len() < script.len());
    assert_eq!(zstd::decode_all(&zst_bytes[..]).unwrap(), script);
    let gz = dir.path().join("s.sql.gz");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "export", "s", "-o", gz.to_str().unwrap()],
    ));
    let gz_bytes = std::fs::read(&gz).unwrap();
    assert!(gz_bytes.len() < script.len());
    assert_eq!(gunzip(&gz_bytes), script);

    // An existing file is kept unless --force.
    std::fs::write(&plain, b"mine").unwrap();
    fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "export", "s", "-o", plain.to_str().unwrap()],
        ),
        1,
        &["exists", "--force"],
    );
    assert_eq!(std::fs::read(&plain).unwrap(), b"mine");
    let json = phony(
        &db.url(),
        store.path(),
        &[
            "--json",
            "snapshot",
            "export",
            "s",
            "-o",
            plain.to_str().unwrap(),
        ],
    );
    let err: serde_json::Value =
        serde_json::from_slice(&json.stderr).expect("one JSON document on stderr");
    assert_eq!(err["error"]["code"], "exists", "{err}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"mine");
    ok(&phony(
        &db.url(),
        store.path(),
        &[
            "snapshot",
            "export",
            "s",
            "-o",
            plain.to_str().unwrap(),
            "--force",
        ],
    ));
    assert_eq!(std::fs::read(&plain).unwrap(), script);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // To S3, by multipart upload, compressed; an existing object is kept unless --force.
    let Some(bucket) = TestBucket::new("an_exported_script_loads_into_an_empty_database") else {
        return;
    };
    let url = format!("s3://{}/exports/s.sql.gz", bucket.name);
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "export", "s", "-o", &url],
    ));
    let object = phony_core::Backend::get(&bucket.backend(""), "exports/s.sql.gz", 1 << 30)
        .await
        .unwrap();
    assert_eq!(gunzip(&object), script);
    let err = fails(
        &phony(
            &db.url(),
            store.path(),
            &["snapshot", "export", "s", "-o", &url],
        ),
        1,
        &["exists", "--force"],
    );
    assert!(err.contains(&url), "{err}");
    ok(&phony(
        &db.url(),
        store.path(),
        &["snapshot", "export", "s", "-o", &url, "--force"],
    ));
    assert_eq!(bucket.keys().await, ["exports/s.sql.gz"]);
}
