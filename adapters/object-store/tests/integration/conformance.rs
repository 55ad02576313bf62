//! The conformance suite every backend runs (memory, a local directory, S3): the
//! guarantees `phony_core::Backend` states, and a store on top.

use bytes::Bytes;
use phony_core::{Backend, Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;
use phony_tests::s3::TestBucket;

/// Runs every check on `backend`, which must be empty.
pub async fn conformance(backend: ObjectStoreBackend) {
    // get of a missing key is NotFound; head is None; delete succeeds.
    assert!(backend
        .get("a/missing", 1 << 20)
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(backend.head("a/missing").await.unwrap(), None);
    backend.delete("a/missing").await.unwrap();

    // create-if-absent: first wins, later ones report existence and change nothing.
    assert!(backend
        .put_if_absent("a/one", Bytes::from_static(b"first"))
        .await
        .unwrap());
    assert!(!backend
        .put_if_absent("a/one", Bytes::from_static(b"second"))
        .await
        .unwrap());
    assert_eq!(&backend.get("a/one", 1 << 20).await.unwrap()[..], b"first");
    assert_eq!(backend.head("a/one").await.unwrap(), Some(5));

    // put replaces.
    backend
        .put("a/two", Bytes::from_static(b"x"))
        .await
        .unwrap();
    backend
        .put("a/two", Bytes::from_static(b"yy"))
        .await
        .unwrap();
    assert_eq!(&backend.get("a/two", 1 << 20).await.unwrap()[..], b"yy");

    // list by prefix.
    backend
        .put("b/three", Bytes::from_static(b"z"))
        .await
        .unwrap();
    let mut keys: Vec<_> = backend
        .list("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["a/one", "a/two"]);

    // list reports when each object was last written, by the backend's clock; a rewrite
    // moves it forward.
    let modified = |entries: Vec<phony_core::ListEntry>| {
        entries
            .into_iter()
            .find(|e| e.key == "a/two")
            .map(|e| e.modified)
            .unwrap()
    };
    let first = modified(backend.list("a/").await.unwrap());
    let age = time::OffsetDateTime::now_utc() - first;
    assert!(age.abs() < time::Duration::minutes(5), "{first}");
    // S3 keeps `Last-Modified` to the second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    backend
        .put("a/two", Bytes::from_static(b"yy"))
        .await
        .unwrap();
    assert!(modified(backend.list("a/").await.unwrap()) > first);

    // 16 concurrent creates of one key: exactly one winner.
    let handles: Vec<_> = (0..16u8)
        .map(|i| {
            let b = backend.clone();
            tokio::spawn(async move {
                b.put_if_absent("race/key", Bytes::from(vec![i; 100]))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for h in handles {
        winners += h.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    assert_eq!(backend.get("race/key", 1 << 20).await.unwrap().len(), 100);

    // A read is bounded: an object larger than the limit is damaged, an exact fit is read.
    assert_eq!(backend.get("race/key", 100).await.unwrap().len(), 100);
    let err = backend.get("race/key", 99).await.unwrap_err();
    assert!(
        matches!(err, phony_core::Error::BadObject { .. }) && err.to_string().contains("race/key"),
        "{err}"
    );

    // Listing is linearizable: a completed write is listed, a completed delete is not
    // (garbage collection's locking rests on it).
    for i in 0..20 {
        let key = format!("locks/create-{i}.json");
        backend.put(&key, Bytes::from_static(b"{}")).await.unwrap();
        assert!(backend
            .list("locks/")
            .await
            .unwrap()
            .iter()
            .any(|e| e.key == key));
        backend.delete(&key).await.unwrap();
        assert!(!backend
            .list("locks/")
            .await
            .unwrap()
            .iter()
            .any(|e| e.key == key));
    }

    backend.delete("a/one").await.unwrap();
    assert!(backend
        .get("a/one", 1 << 20)
        .await
        .unwrap_err()
        .is_not_found());

    // A store on top: blobs round-trip and dedupe.
    let store = Store::open_or_init(backend, StoreConfig::default())
        .await
        .unwrap();
    let (id, first) = store.put_plain(b"1\tx\n").await.unwrap();
    let (_, again) = store.put_plain(b"1\tx\n").await.unwrap();
    assert!(first.new && !again.new);
    assert_eq!(store.get_plain(&id, 100).await.unwrap(), b"1\tx\n");

    // A delta and its marker, then their collection once nothing references them.
    let row = |i: u32, v: &str| format!("{i}\tcustomer {i}\t{v}\n");
    let base: String = (0..2000).map(|i| row(i, "kept")).collect();
    let plain: String = (0..2000)
        .map(|i| row(i, if i == 700 { "changed" } else { "kept" }))
        .collect();
    let (base_id, _) = store.put_plain(base.as_bytes()).await.unwrap();
    let delta_id = phony_core::BlobId::of(plain.as_bytes());
    let stored = store
        .put_delta(&delta_id, plain.as_bytes(), &base_id, base.as_bytes())
        .await
        .unwrap();
    assert!(stored.new);
    assert_eq!(
        store.get_encoded(&delta_id, 1 << 20).await.unwrap()[0],
        2,
        "codec tag of a delta"
    );
    assert_eq!(
        store
            .get_plain(&delta_id, plain.len() as u64)
            .await
            .unwrap(),
        plain.as_bytes()
    );
    let deltas = phony_core::bases::DeltaMap::load(&store).await.unwrap();
    assert!(deltas.contains(&delta_id, &base_id) && deltas.len() == 1);
    let report = phony_core::gc::mark_and_sweep(&store, &[], true, &mut || Ok(()))
        .await
        .unwrap();
    assert_eq!(report.unreferenced.blobs, 3);
    assert_eq!(store.blob_size(&base_id).await.unwrap(), None);
    assert!(store.backend().list("bases/").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_conforms() {
    conformance(ObjectStoreBackend::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(ObjectStoreBackend::local(dir.path(), true).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_conforms() {
    let Some(bucket) = TestBucket::new("s3_backend_conforms") else {
        return;
    };
    conformance(bucket.backend("team/store")).await;
    // Everything stayed under the prefix.
    let keys = bucket.keys().await;
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("team/store/")),
        "{keys:?}"
    );
}
