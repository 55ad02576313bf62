//! Pinning and unpinning rewrite the record once, under a create lock that is gone after.

use std::sync::Arc;

use phony_core::{Backend as _, StoreConfig};
use phony_engine::lease::Notify;
use phony_engine::Engine;

use crate::record;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_then_unpin_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_or_create(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let mut r = record();
    r.pinned = false;
    engine.store().put_record(&r).await.unwrap();
    let notify: Notify = Arc::new(|_: &str| {});
    let pinned = engine
        .set_pinned("clean-state", true, &notify, None)
        .await
        .unwrap();
    assert!(pinned.changed && pinned.record.pinned);
    let again = engine
        .set_pinned("clean-state", true, &notify, None)
        .await
        .unwrap();
    assert!(!again.changed, "already pinned");
    let unpinned = engine
        .set_pinned("snap_0123", false, &notify, None)
        .await
        .unwrap();
    assert!(unpinned.changed && !unpinned.record.pinned);
    let stored = engine.store().record(&r.id).await.unwrap().unwrap();
    assert!(!stored.pinned);
    let locks = engine.store().backend().list("locks/").await.unwrap();
    assert!(locks.is_empty(), "{locks:?}");
    let missing = engine.set_pinned("nope", true, &notify, None).await;
    assert!(missing.is_err());
}
