//! What only a store on S3 does: its failures said in one line.

use phony_core::Store;
use phony_object_store::{ObjectStoreBackend, StoreLocation};
use phony_tests::s3::TestBucket;

#[tokio::test]
async fn a_missing_bucket_is_named_in_one_line() {
    let Some(bucket) = TestBucket::new("a_missing_bucket_is_named_in_one_line") else {
        return;
    };
    let location: StoreLocation = format!("s3://{}-gone/store", bucket.name).parse().unwrap();
    let err = ObjectStoreBackend::open(&location, true).await.unwrap_err();
    let text = phony_tests::error_chain(&err);
    assert!(
        text.contains("does not exist") && text.contains(&bucket.name),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains("phony-test-secret"), "{text}");

    // The bucket that exists opens; an empty prefix holds no store yet.
    let location: StoreLocation = bucket.url("store").parse().unwrap();
    let backend = ObjectStoreBackend::open(&location, true).await.unwrap();
    assert!(backend.is_s3());
    assert_eq!(
        phony_core::Backend::describe(&backend),
        location.to_string()
    );
    assert!(Store::open(backend).await.unwrap_err().is_not_found());
}

/// A thousand records on S3 list quickly: they are read concurrently, not one round trip
/// after another, and then from the record index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_records_on_s3_list_in_a_few_round_trips() {
    let Some(bucket) = TestBucket::new("a_thousand_records_on_s3_list_in_a_few_round_trips") else {
        return;
    };
    let store = std::sync::Arc::new(
        Store::open_or_init(bucket.backend("many"), phony_core::StoreConfig::default())
            .await
            .unwrap(),
    );
    let writes: Vec<_> = (0..1000u32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut id = [0u8; 6];
                id[2..].copy_from_slice(&i.to_be_bytes());
                let record = phony_core::SnapshotRecord {
                    format: 1,
                    tool_version: None,
                    id: phony_core::SnapshotId::from_random(id),
                    name: None,
                    created_at: time::OffsetDateTime::UNIX_EPOCH
                        + time::Duration::seconds(i.into()),
                    root: phony_core::BlobId::of(b"root"),
                    pinned: false,
                    origin: Default::default(),
                    labels: Default::default(),
                    source: Default::default(),
                    stats: Default::default(),
                };
                store.put_record(&record).await.unwrap();
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap();
    }
    let started = std::time::Instant::now();
    let records = store.records().await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("listing 1000 records on S3 took {elapsed:?}");
    assert_eq!(records.len(), 1000);
    assert!(records[0].created_at > records[999].created_at);
    assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");

    // The listing wrote the record index: the next one reads it instead of each record.
    let index = phony_core::Backend::head(store.backend(), phony_core::INDEX_KEY)
        .await
        .unwrap();
    assert!(index.is_some_and(|size| size > 1000 * 100), "{index:?}");
    let started = std::time::Instant::now();
    let again = store.records().await.unwrap();
    eprintln!("listing them again took {:?}", started.elapsed());
    assert_eq!(again, records);
}
