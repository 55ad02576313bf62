//! What only a store in a local directory does: its files, its sync, its refusals.

use bytes::Bytes;
use phony_core::{Backend, Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;

#[tokio::test]
async fn a_missing_local_store_is_not_found_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(ObjectStoreBackend::local(&missing, false)
        .unwrap_err()
        .is_not_found());

    let backend = ObjectStoreBackend::local(dir.path(), true).unwrap();
    assert!(Store::open(backend.clone())
        .await
        .unwrap_err()
        .is_not_found());
    std::fs::write(dir.path().join("phony-store.json"), br#"{"format": 9}"#).unwrap();
    let err = Store::open(backend).await.unwrap_err();
    assert!(err.to_string().contains("format 9"), "{err}");
}

#[tokio::test]
async fn a_local_store_syncs_its_file_system_and_says_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open_or_init(
        ObjectStoreBackend::local(&root, true).unwrap(),
        StoreConfig::default(),
    )
    .await
    .unwrap();
    store.put_plain(b"1\tkept\n").await.unwrap();
    store.backend().sync().await.unwrap();

    std::fs::remove_dir_all(&root).unwrap();
    let err = store.backend().sync().await.unwrap_err().to_string();
    assert!(
        err.contains("syncing") && err.contains(&root.display().to_string()),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn a_corrupted_blob_is_named_by_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(
        ObjectStoreBackend::local(dir.path(), true).unwrap(),
        StoreConfig::default(),
    )
    .await
    .unwrap();
    let (id, _) = store.put_plain(&b"some row\n".repeat(100)).await.unwrap();
    let path = dir.path().join(phony_core::store::blob_key(&id));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = store.get_plain(&id, 1 << 20).await.unwrap_err();
    assert!(err.to_string().contains(&id.to_hex()), "{err}");
}

/// A delta, its marker (an empty object whose name holds two ids) and their collection
/// on a real disk.
#[tokio::test]
async fn deltas_and_their_markers_on_a_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(
        ObjectStoreBackend::local(dir.path(), true).unwrap(),
        StoreConfig::default(),
    )
    .await
    .unwrap();
    let row = |i: u32, v: &str| format!("{i}\tcustomer {i}\t{v}\n");
    let base: String = (0..2000).map(|i| row(i, "kept")).collect();
    let plain: String = (0..2000)
        .map(|i| row(i, if i == 700 { "changed" } else { "kept" }))
        .collect();
    let (base_id, _) = store.put_plain(base.as_bytes()).await.unwrap();
    let id = phony_core::BlobId::of(plain.as_bytes());
    let stored = store
        .put_delta(&id, plain.as_bytes(), &base_id, base.as_bytes())
        .await
        .unwrap();
    // A delta: its codec tag, and far smaller than the chunk compressed on its own.
    let standalone = phony_core::codec::encode(plain.as_bytes(), 3).len() as u64;
    assert!(
        stored.new && stored.stored_bytes * 4 < standalone,
        "{stored:?} against {standalone}"
    );
    let blob = std::fs::read(dir.path().join(phony_core::store::blob_key(&id))).unwrap();
    assert_eq!(blob[0], 2, "codec tag of a delta");
    let marker = dir
        .path()
        .join(phony_core::store::marker_key(&id, &base_id));
    assert_eq!(std::fs::read(&marker).unwrap(), b"");
    assert_eq!(
        store.get_plain(&id, plain.len() as u64).await.unwrap(),
        plain.as_bytes()
    );
    let deltas = phony_core::bases::DeltaMap::load(&store).await.unwrap();
    assert!(deltas.contains(&id, &base_id) && deltas.len() == 1);

    // Nothing references either: the delta, then its base and its marker go.
    let report = phony_core::gc::mark_and_sweep(&store, &[], true, &mut || Ok(()))
        .await
        .unwrap();
    assert_eq!(report.unreferenced.blobs, 2);
    assert!(!marker.exists());
    assert_eq!(store.blob_size(&base_id).await.unwrap(), None);
}

/// A local store's own files: temporary files (a killed writer's) and the temporary files
/// of the object_store backend earlier versions used are never listed as objects, keys
/// that could leave the directory are refused, and objects are plain files at their keys.
#[tokio::test]
async fn a_local_store_lists_only_whole_objects() {
    let dir = tempfile::tempdir().unwrap();
    let backend = ObjectStoreBackend::local(dir.path(), true).unwrap();
    backend
        .put_if_absent("blobs/ab/abc", Bytes::from_static(b"whole"))
        .await
        .unwrap();
    assert!(backend
        .put_if_absent("bases/ab/abc.def", Bytes::new())
        .await
        .unwrap());
    assert!(!backend
        .put_if_absent("bases/ab/abc.def", Bytes::new())
        .await
        .unwrap());
    assert_eq!(
        std::fs::read(dir.path().join("blobs/ab/abc")).unwrap(),
        b"whole"
    );
    std::fs::write(dir.path().join("blobs/ab/.abc.123.0.tmp"), b"wh").unwrap();
    std::fs::write(dir.path().join("blobs/ab/abd#1"), b"wh").unwrap();
    let keys: Vec<_> = backend
        .list("blobs/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.size))
        .collect();
    assert_eq!(keys, [("blobs/ab/abc".to_owned(), 5)]);
    assert!(backend.list("nothing/").await.unwrap().is_empty());
    let mut all: Vec<_> = backend
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    all.sort();
    assert_eq!(all, ["bases/ab/abc.def", "blobs/ab/abc"]);
    for bad in [
        "../outside",
        "blobs//x",
        "/etc/passwd",
        "blobs/.hidden",
        "a#b",
        "",
    ] {
        let err = backend
            .put(bad, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid object key"),
            "{bad}: {err}"
        );
    }
    assert!(!dir.path().parent().unwrap().join("outside").exists());
}
