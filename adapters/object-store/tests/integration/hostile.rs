//! A damaged or hostile local store: symbolic links, devices, sparse files. Nothing is read
//! beyond what the caller's limit allows, and nothing outside the store is read, written or
//! deleted.

use std::os::unix::fs::symlink;
use std::path::Path;

use bytes::Bytes;
use phony_core::store::{blob_key, blob_prefix};
use phony_core::{Backend, BlobId, Error, Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;

async fn store_in(dir: &Path) -> Store<ObjectStoreBackend> {
    Store::open_or_init(
        ObjectStoreBackend::local(dir, true).unwrap(),
        StoreConfig::default(),
    )
    .await
    .unwrap()
}

/// The peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn assert_corrupt(err: &Error, id: &BlobId, says: &str) {
    match err {
        Error::Corrupt { id: got, reason } => {
            assert_eq!(got, id);
            assert!(reason.contains(says), "{reason}");
        }
        other => panic!("expected the blob to be corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_blob_linked_to_dev_zero_or_sparse_is_corrupt_and_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let plain = b"1\tone\n".repeat(100);
    let (id, _) = store.put_plain(&plain).await.unwrap();
    let path = dir.path().join(blob_key(&id));

    std::fs::remove_file(&path).unwrap();
    symlink("/dev/zero", &path).unwrap();
    let err = store.get_plain(&id, plain.len() as u64).await.unwrap_err();
    assert_corrupt(&err, &id, "symbolic link");
    assert!(store.blob_size(&id).await.is_err(), "head refuses it too");

    // A sparse file of 1 GiB where a 600-byte chunk should be.
    std::fs::remove_file(&path).unwrap();
    std::fs::File::create(&path)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let err = store.get_plain(&id, plain.len() as u64).await.unwrap_err();
    assert_corrupt(&err, &id, "more than");
    let err = store.get_chain(&id, plain.len() as u64).await.unwrap_err();
    assert_corrupt(&err, &id, "more than");

    // A directory where the blob should be.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = store.get_plain(&id, plain.len() as u64).await.unwrap_err();
    assert_corrupt(&err, &id, "directory");

    assert!(
        peak_rss() < 256 << 20,
        "reading a hostile blob took {} bytes of memory",
        peak_rss()
    );
}

#[tokio::test]
async fn records_and_the_config_are_read_within_a_hard_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let record = dir.path().join("snapshots/snap_abababababab.json");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    symlink("/dev/zero", &record).unwrap();
    // A link is no record: not listed, and refused when asked for by its id.
    let scan = store.scan_records().await.unwrap();
    assert!(
        scan.records.is_empty() && scan.damaged.is_empty(),
        "{scan:?}"
    );
    let id = "snap_abababababab".parse().unwrap();
    let err = store.record(&id).await.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    std::fs::remove_file(&record).unwrap();
    std::fs::File::create(&record)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let scan = store.scan_records().await.unwrap();
    assert_eq!(scan.damaged.len(), 1, "{scan:?}");
    assert!(scan.damaged[0].reason.contains("more than"), "{scan:?}");

    let config = dir.path().join("phony-store.json");
    std::fs::remove_file(&config).unwrap();
    symlink("/dev/zero", &config).unwrap();
    let err = Store::open(ObjectStoreBackend::local(dir.path(), false).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadObject { .. }), "{err:?}");
    assert!(peak_rss() < 256 << 20, "{} bytes of memory", peak_rss());
}

#[tokio::test]
async fn a_directory_linked_outside_the_store_is_never_written_or_swept() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let backend = ObjectStoreBackend::local(dir.path(), true).unwrap();

    // locks/ pointing outside: a lock is not written there.
    symlink(outside.path(), dir.path().join("locks")).unwrap();
    let err = backend
        .put("locks/create-00.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(err.to_string().starts_with("locks in "), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // blobs/xx pointing outside, holding a file named like a blob: not listed, not
    // deleted, not read.
    let id = BlobId::of(b"foreign");
    let hex = id.to_hex();
    std::fs::create_dir(dir.path().join("blobs")).unwrap();
    let foreign = outside.path().join(&hex);
    std::fs::write(&foreign, b"someone else's file").unwrap();
    symlink(
        outside.path(),
        dir.path().join(format!("blobs/{}", &hex[..2])),
    )
    .unwrap();
    let prefix = blob_prefix(id.as_bytes()[0]);
    assert!(backend.list(&prefix).await.is_err());
    assert!(backend.delete(&blob_key(&id)).await.is_err());
    assert!(backend.get(&blob_key(&id), 1 << 20).await.is_err());
    assert!(backend
        .put_if_absent(&blob_key(&id), Bytes::from_static(b"x"))
        .await
        .is_err());
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        b"someone else's file",
        "the foreign file is untouched"
    );
    // A listing of the whole store skips the link.
    let all = backend.list("").await.unwrap();
    assert!(all.iter().all(|e| !e.key.starts_with("blobs/")), "{all:?}");

    // A link as an object is removed itself, never its target.
    let link = dir.path().join("snapshots/snap_abababababab.json");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(&foreign, &link).unwrap();
    backend
        .delete("snapshots/snap_abababababab.json")
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(foreign.exists());
}

#[test]
fn a_store_directory_is_created_alone_and_never_over_other_things() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("missing/deep/store");
    let err = ObjectStoreBackend::local(&deep, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parent directory") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!dir.path().join("missing").exists());

    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for create in [true, false] {
        let err = ObjectStoreBackend::local(&file, create)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("is a file, not a store directory"), "{err}");
    }

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let err = ObjectStoreBackend::local(&other, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not a phony store (no phony-store.json) and is not empty"),
        "{err}"
    );
    assert!(
        ObjectStoreBackend::local(&other, false).is_ok(),
        "opening is not creating"
    );

    // Hidden entries (a concurrent writer's temporary files) do not count; a store does.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::write(fresh.join(".phony-store.json.1.0.tmp"), b"").unwrap();
    ObjectStoreBackend::local(&fresh, true).unwrap();
    std::fs::write(fresh.join("phony-store.json"), b"{}").unwrap();
    std::fs::write(fresh.join("blobs"), b"").unwrap();
    ObjectStoreBackend::local(&fresh, true).unwrap();
    ObjectStoreBackend::local(&dir.path().join("new"), true).unwrap();
    assert!(dir.path().join("new").is_dir());
}
