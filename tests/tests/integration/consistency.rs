//! Capture is one consistent point in time while other sessions keep writing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use phony_postgres::{capture, CaptureOptions};
use phony_tests::{TestDb, TestStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_during_transfers_sees_balances_that_sum_to_zero() {
    let db = TestDb::new("consistent").await;
    // Two tables so that a torn read across tables (or across readers) shows up too.
    db.exec(
        "CREATE TABLE accounts_a (id int PRIMARY KEY, balance bigint NOT NULL);
         CREATE TABLE accounts_b (id int PRIMARY KEY, balance bigint NOT NULL);
         CREATE TABLE history (id bigserial PRIMARY KEY, src int, dst int, amount bigint);
         INSERT INTO accounts_a SELECT g, 0 FROM generate_series(1, 20000) g;
         INSERT INTO accounts_b SELECT g, 0 FROM generate_series(1, 20000) g;",
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let client = db.client().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut i: i32 = w;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7919 + 13) % 20000 + 1;
                let amount = (i % 97) as i64 + 1;
                client
                    .batch_execute(&format!(
                        "BEGIN;
                         UPDATE accounts_a SET balance = balance - {amount} WHERE id = {i};
                         UPDATE accounts_b SET balance = balance + {amount} WHERE id = {};
                         INSERT INTO history (src, dst, amount) VALUES ({i}, {i}, {amount});
                         COMMIT;",
                        (i * 31) % 20000 + 1
                    ))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let store = TestStore::new().await;
    let opts = CaptureOptions {
        workers: 3,
        ..CaptureOptions::default()
    };
    let captured = capture(&db.target(), &store.store, &opts).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut transfers = 0;
    for w in writers {
        transfers += w.await.unwrap();
    }
    assert!(transfers > 10, "the writers ran ({transfers} transfers)");

    let copy = db.restore_beside(&store, &captured.manifest, "copy").await;
    let client = db.target().with_dbname(&copy).connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT ((SELECT sum(balance) FROM accounts_a) + (SELECT sum(balance) FROM accounts_b))::int8,
                    (SELECT -sum(balance) FROM accounts_a)::int8,
                    (SELECT coalesce(sum(amount), 0) FROM history)::int8,
                    (SELECT count(*) FROM history)",
            &[],
        )
        .await
        .unwrap();
    let (sum, debited, logged, history): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(sum, 0, "balances sum to zero in the restored copy");
    assert_eq!(
        debited, logged,
        "history matches the balances: one point in time across tables"
    );
    assert!(
        history > 0 && (history as u64) < transfers,
        "captured mid-stream ({history} of {transfers})"
    );
}
