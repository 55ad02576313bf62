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
