//! Names stay unique when creates race: exactly one claim wins, the other is told the
//! name is taken and leaves nothing behind.

use phony_core::{Backend as _, SnapshotId, SnapshotName, SnapshotRecord, StoreConfig};
use phony_engine::names::{claim_key, CLAIM_PREFIX};
use phony_engine::Engine;

use crate::record;

async fn store() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("store");
    let engine = Engine::open_or_create(location.to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    (dir, engine)
}

fn named(name: &str, id: u8) -> SnapshotRecord {
    let mut r = record();
    r.id = SnapshotId::from_random([id, 1, 2, 3, 4, 5]);
    r.name = Some(name.parse().unwrap());
    r
}

/// What a create does once its capture is stored: claim the name, then write the record.
async fn finish_create(engine: Engine, record: SnapshotRecord) -> phony_engine::Result<()> {
    let name = record.name.clone().unwrap();
    let claim = engine.claim_name(&name, record.id).await?;
    if let Err(e) = engine.store().put_record(&record).await {
        engine.release_claim(claim).await?;
        return Err(e.into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_creates_of_one_name_have_exactly_one_winner() {
    let (_dir, engine) = store().await;
    for round in 0..50u8 {
        let name = format!("race-{round}");
        let (a, b) = (named(&name, 2 * round), named(&name, 2 * round + 1));
        let (ra, rb) = tokio::join!(
            tokio::spawn(finish_create(engine.clone(), a.clone())),
            tokio::spawn(finish_create(engine.clone(), b.clone())),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra.is_ok() != rb.is_ok(), "round {round}: {ra:?} {rb:?}");
        let (winner, loser) = if ra.is_ok() { (a, rb) } else { (b, ra) };
        let loser = loser.unwrap_err();
        assert!(loser.is_name_taken(), "{loser}");
        assert!(
            loser.to_string().contains(&winner.id.to_string()),
            "{loser}"
        );
        // Nothing of the loser: one record of that name, the winner's.
        let holders: Vec<_> = engine
            .scan()
            .await
            .unwrap()
            .records
            .into_iter()
            .filter(|r| r.name == winner.name)
            .map(|r| r.id)
            .collect();
        assert_eq!(holders, vec![winner.id], "round {round}");
    }
    let claims = engine.store().backend().list(CLAIM_PREFIX).await.unwrap();
    assert_eq!(claims.len(), 50, "one claim per name, none dangling");
}

#[tokio::test]
async fn a_deleted_snapshot_frees_its_name() {
    let (_dir, engine) = store().await;
    let first = named("clean-state", 1);
    finish_create(engine.clone(), first.clone()).await.unwrap();
    let again = finish_create(engine.clone(), named("clean-state", 2)).await;
    assert!(again.unwrap_err().is_name_taken());
    engine.delete_snapshot(&first).await.unwrap();
    let key = claim_key("clean-state");
    assert_eq!(engine.store().backend().head(&key).await.unwrap(), None);
    finish_create(engine.clone(), named("clean-state", 3))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_claim_left_without_its_record_holds_the_name_until_stale() {
    let (_dir, engine) = store().await;
    let name: SnapshotName = "half-done".parse().unwrap();
    // A create that claimed, then stopped before its record.
    let orphan = engine
        .claim_name(&name, SnapshotId::from_random([9; 6]))
        .await
        .unwrap();
    drop(orphan);
    let fresh = engine
        .claim_name(&name, SnapshotId::from_random([8; 6]))
        .await;
    assert!(fresh.unwrap_err().is_name_taken());
    // Aged past the limit, it is taken over.
    let stale = serde_json::json!({
        "id": "snap_090909090909",
        "claimed_at": "2000-01-01T00:00:00Z",
    });
    engine
        .store()
        .backend()
        .put(
            &claim_key("half-done"),
            serde_json::to_vec(&stale).unwrap().into(),
        )
        .await
        .unwrap();
    let taken_over = engine
        .claim_name(&name, SnapshotId::from_random([8; 6]))
        .await;
    assert!(taken_over.is_ok(), "{taken_over:?}");
}

#[tokio::test]
async fn a_store_without_claims_keeps_its_names() {
    // A record written by a phony before claims: no claim object, the name still taken.
    let (_dir, engine) = store().await;
    let old = named("from-before", 4);
    engine.store().put_record(&old).await.unwrap();
    let records = engine.scan().await.unwrap().records;
    let err = phony_core::resolve::check_name_free(&records, "from-before").unwrap_err();
    assert!(matches!(err, phony_core::Error::AlreadyExists { .. }));
    // Deleting it (no claim to remove) works, and frees the name.
    engine.delete_snapshot(&old).await.unwrap();
    finish_create(engine.clone(), named("from-before", 5))
        .await
        .unwrap();
}

/// Two whole creates (capture included) of one name at once: one snapshot, one loser told
/// "name taken" that leaves neither record nor claim nor lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_creates_of_one_name_race_to_one_snapshot() {
    let db = phony_tests::TestDb::new("engine_name_race").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 2000);")
        .await;
    let (_dir, engine) = store().await;
    let create = || {
        let (engine, target) = (engine.clone(), db.target());
        tokio::spawn(async move {
            let create = phony_engine::Create {
                name: Some("twin".parse().unwrap()),
                ..Default::default()
            };
            engine
                .create(&target, create, phony_engine::CreateOptions::default())
                .await
        })
    };
    let (a, b) = tokio::join!(create(), create());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let lost = a.err().or(b.err()).unwrap();
    assert_eq!(lost.kind(), phony_engine::ErrorKind::NameTaken, "{lost}");
    assert_eq!(engine.scan().await.unwrap().records.len(), 1);
    assert_eq!(
        engine
            .store()
            .backend()
            .list(CLAIM_PREFIX)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(engine
        .store()
        .backend()
        .list("locks/")
        .await
        .unwrap()
        .is_empty());
}
