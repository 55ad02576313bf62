//! What a store asks of its backend, counted: the record index (a listing of records costs
//! a few requests, and stays right whatever other writers do) and the uploads of a new
//! snapshot (no existence check where it cannot help). Run on memory, a local directory
//! and S3.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use phony_core::{
    Backend, BlobId, ListEntry, Result, SnapshotId, SnapshotRecord, Store, StoreConfig, Uploads,
    INDEX_KEY,
};
use phony_object_store::ObjectStoreBackend;
use phony_tests::s3::TestBucket;

/// A backend that counts the requests made through it.
#[derive(Debug, Clone)]
struct Counted {
    inner: ObjectStoreBackend,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    get: AtomicUsize,
    head: AtomicUsize,
    put: AtomicUsize,
    put_if_absent: AtomicUsize,
    list: AtomicUsize,
}

/// Requests since the last [`Counted::take`]: gets, heads, puts, create-only puts, lists.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    get: usize,
    head: usize,
    put: usize,
    put_if_absent: usize,
    list: usize,
}

impl Counted {
    fn new(inner: ObjectStoreBackend) -> Self {
        Counted {
            inner,
            counts: Arc::default(),
        }
    }

    fn take(&self) -> Asked {
        let c = &self.counts;
        Asked {
            get: c.get.swap(0, Ordering::SeqCst),
            head: c.head.swap(0, Ordering::SeqCst),
            put: c.put.swap(0, Ordering::SeqCst),
            put_if_absent: c.put_if_absent.swap(0, Ordering::SeqCst),
            list: c.list.swap(0, Ordering::SeqCst),
        }
    }
}

impl Backend for Counted {
    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        self.counts.put_if_absent.fetch_add(1, Ordering::SeqCst);
        self.inner.put_if_absent(key, bytes).await
    }
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.counts.put.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        self.counts.get.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key, max_len).await
    }
    async fn get_versioned(&self, key: &str, max_len: u64) -> Result<(Bytes, Option<String>)> {
        self.counts.get.fetch_add(1, Ordering::SeqCst);
        self.inner.get_versioned(key, max_len).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.counts.head.fetch_add(1, Ordering::SeqCst);
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.counts.list.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
}

fn record(n: u32) -> SnapshotRecord {
    let mut id = [0u8; 6];
    id[2..].copy_from_slice(&n.to_be_bytes());
    SnapshotRecord {
        format: 1,
        id: SnapshotId::from_random(id),
        name: None,
        created_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(n.into()),
        root: BlobId::of(b"root"),
        pinned: false,
        origin: Default::default(),
        labels: Default::default(),
        source: Default::default(),
        tool_version: None,
        stats: Default::default(),
    }
}

/// `(id, pinned)` of every record a scan finds, newest first, with no damaged one.
async fn listed<B: Backend>(store: &Store<B>) -> Vec<(SnapshotId, bool)> {
    let scan = store.scan_records().await.unwrap();
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    scan.records.iter().map(|r| (r.id, r.pinned)).collect()
}

fn expected(records: &[SnapshotRecord]) -> Vec<(SnapshotId, bool)> {
    let mut v: Vec<_> = records
        .iter()
        .map(|r| (r.created_at, r.id, r.pinned))
        .collect();
    v.sort();
    v.into_iter().rev().map(|(_, id, p)| (id, p)).collect()
}

/// The record index on `backend` (empty): listings read only what changed, and see every
/// other writer's pins, deletes and records, and through a damaged index.
pub async fn record_index(backend: ObjectStoreBackend) {
    let counted = Counted::new(backend.clone());
    let store = Store::open_or_init(counted.clone(), StoreConfig::default())
        .await
        .unwrap();
    // Another writer, on the same objects.
    let other = Store::open(backend.clone()).await.unwrap();
    let indexed = backend.object_store().is_some();

    let mut records: Vec<SnapshotRecord> = (1..=40).map(record).collect();
    for r in &records {
        other.put_record(r).await.unwrap();
    }
    counted.take();
    assert_eq!(listed(&store).await, expected(&records));
    let first = counted.take();
    assert_eq!(
        (first.list, first.get),
        (1, 40 + indexed as usize),
        "{first:?}"
    );
    assert_eq!(
        first.put, indexed as usize,
        "the index is written: {first:?}"
    );
    assert_eq!(backend.head(INDEX_KEY).await.unwrap().is_some(), indexed);

    // Listed again: one listing and, with the index, one read.
    assert_eq!(listed(&store).await, expected(&records));
    let again = counted.take();
    let reads = if indexed { 1 } else { 40 };
    assert_eq!(
        (again.list, again.get, again.put),
        (1, reads, 0),
        "{again:?}"
    );

    // Another writer pins one, deletes one and adds one: seen, and only those are read.
    records[3].pinned = true;
    other.put_record(&records[3]).await.unwrap();
    other.delete_record(&records[7].id).await.unwrap();
    records.remove(7);
    records.push(record(99));
    other.put_record(&records[records.len() - 1]).await.unwrap();
    assert_eq!(listed(&store).await, expected(&records));
    let changed = counted.take();
    let reads = if indexed { 1 + 2 } else { 40 };
    assert_eq!(
        (changed.get, changed.put),
        (reads, indexed as usize),
        "{changed:?}"
    );
    assert_eq!(listed(&store).await, expected(&records));
    let reads = if indexed { 1 } else { 40 };
    assert_eq!(counted.take().get, reads);

    // Unpinned again (S3 keeps `Last-Modified` to the second: the version tag tells).
    records[3].pinned = false;
    other.put_record(&records[3]).await.unwrap();
    assert_eq!(listed(&store).await, expected(&records));

    // A damaged index costs reads, not answers, and is replaced.
    for damage in [&b"{\"format\": 1, \"records\": 7"[..], b"", b"\x00\xff"] {
        backend
            .put(INDEX_KEY, Bytes::copy_from_slice(damage))
            .await
            .unwrap();
        counted.take();
        assert_eq!(listed(&store).await, expected(&records));
        assert_eq!(counted.take().get, 40 + indexed as usize);
        assert_eq!(listed(&store).await, expected(&records));
        let reads = if indexed { 1 } else { 40 };
        assert_eq!(counted.take().get, reads);
    }

    // An index entry that says another record than its key is read from the record.
    if indexed {
        let text = String::from_utf8(
            backend
                .get(INDEX_KEY, phony_core::MAX_INDEX_LEN)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        // The records of a and b trade places; their keys and versions stay.
        let (a, b) = (records[0].id.to_string(), records[1].id.to_string());
        let swapped = text
            .replace(&format!("snapshots/{a}"), "KEY-A")
            .replace(&format!("snapshots/{b}"), "KEY-B")
            .replace(&a, "SWAP")
            .replace(&b, &a)
            .replace("SWAP", &b)
            .replace("KEY-A", &format!("snapshots/{a}"))
            .replace("KEY-B", &format!("snapshots/{b}"));
        assert_ne!(swapped, text);
        backend.put(INDEX_KEY, Bytes::from(swapped)).await.unwrap();
        counted.take();
        assert_eq!(listed(&store).await, expected(&records));
        assert_eq!(counted.take().get, 1 + 2, "the two records are read");
    }

    // No record: no index read.
    for r in &records {
        other.delete_record(&r.id).await.unwrap();
    }
    counted.take();
    assert!(listed(&store).await.is_empty());
    assert_eq!(counted.take().get, 0);
}

/// A new snapshot's uploads on `backend` (empty): no existence check into a store without
/// records, until a blob turns out to be there already.
pub async fn uploads(backend: ObjectStoreBackend) {
    let counted = Counted::new(backend.clone());
    let store = Store::open_or_init(counted.clone(), StoreConfig::default())
        .await
        .unwrap();
    let other = Store::open(backend.clone()).await.unwrap();
    let uploads = Uploads::for_store(&store).await.unwrap();
    assert!(!uploads.asks_first(), "a store without records");
    counted.take();

    let blob = |i: u32| format!("{i}\trow {i}\n").repeat(50).into_bytes();
    let mut written = Vec::new();
    for i in 0..5 {
        let (id, stored) = uploads.put_plain(&store, &blob(i)).await.unwrap();
        assert!(stored.new);
        written.push((id, stored.stored_bytes));
    }
    let asked = counted.take();
    assert_eq!((asked.head, asked.put_if_absent), (0, 5), "{asked:?}");
    for (id, size) in written {
        assert_eq!(other.blob_size(&id).await.unwrap(), Some(size));
        assert_eq!(other.get_plain(&id, 1 << 20).await.unwrap().len(), 50 * 8);
    }

    // Stored by this writer already: no request at all.
    let (_, again) = uploads.put_plain(&store, &blob(3)).await.unwrap();
    assert!(!again.new);
    let asked = counted.take();
    assert_eq!(
        (asked.head, asked.put_if_absent, asked.get),
        (0, 0, 0),
        "{asked:?}"
    );

    // Stored by another writer: the create-only write finds it, its stored size is
    // reported, and from then on each blob is asked for first.
    let (theirs, stored) = other.put_plain(&blob(10)).await.unwrap();
    assert!(stored.new);
    counted.take();
    let (id, found) = uploads.put_plain(&store, &blob(10)).await.unwrap();
    assert_eq!(id, theirs);
    assert!(!found.new && found.stored_bytes == stored.stored_bytes);
    assert!(uploads.asks_first());
    let asked = counted.take();
    assert_eq!((asked.head, asked.put_if_absent), (1, 1), "{asked:?}");
    let (_, new) = uploads.put_plain(&store, &blob(11)).await.unwrap();
    assert!(new.new);
    let asked = counted.take();
    assert_eq!((asked.head, asked.put_if_absent), (1, 1), "{asked:?}");
    let (_, known) = uploads.put_plain(&store, &blob(11)).await.unwrap();
    assert!(!known.new);
    assert_eq!(counted.take().head, 0);

    // Into a store with records, every blob is asked for first.
    other.put_record(&record(1)).await.unwrap();
    let uploads = Uploads::for_store(&store).await.unwrap();
    assert!(uploads.asks_first());
    counted.take();
    let (_, present) = uploads.put_plain(&store, &blob(0)).await.unwrap();
    assert!(!present.new);
    let asked = counted.take();
    assert_eq!((asked.head, asked.put_if_absent), (1, 0), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_record_index() {
    record_index(ObjectStoreBackend::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_record_index() {
    let dir = tempfile::tempdir().unwrap();
    record_index(ObjectStoreBackend::local(dir.path(), true).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_record_index() {
    let Some(bucket) = TestBucket::new("s3_record_index") else {
        return;
    };
    record_index(bucket.backend("index")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_uploads() {
    uploads(ObjectStoreBackend::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_uploads() {
    let dir = tempfile::tempdir().unwrap();
    uploads(ObjectStoreBackend::local(dir.path(), true).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_uploads() {
    let Some(bucket) = TestBucket::new("s3_uploads") else {
        return;
    };
    uploads(bucket.backend("uploads")).await;
}
