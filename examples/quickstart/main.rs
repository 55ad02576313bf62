//! Run with: `cargo run --release --example quickstart`
//!
//! Creates a demo database, snapshots it, dirties it the way a test run or a migration
//! would, restores it, and shows that it is exactly as it was, with timings.
//!
//! It uses the server at `$PHONY_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! or, when none answers, starts a throwaway cluster from the installed PostgreSQL binaries.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use phony_core::{Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;
use phony_postgres::{
    capture, ensure_database, restore, CaptureOptions, ConnectionTarget, Fingerprint,
    RestoreOptions,
};
use phony_testkit::TempCluster;

#[tokio::main]
async fn main() -> Result<()> {
    // 1. A server: the configured one, or a throwaway cluster.
    let url = std::env::var("PHONY_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut _cluster = None;
    let server = match ConnectionTarget::parse(Some(&url))?.connect().await {
        Ok(_) => ConnectionTarget::parse(Some(&url))?,
        Err(e) => {
            println!(
                "no server at {} ({e}); starting a throwaway cluster",
                ConnectionTarget::parse(Some(&url))?
            );
            let cluster =
                TempCluster::start().context("starting a throwaway PostgreSQL cluster")?;
            let target = ConnectionTarget::parse(Some(&cluster.url("postgres")))?;
            _cluster = Some(cluster);
            target
        }
    };

    // 2. A demo database: a small shop.
    let db = server.with_dbname(&format!(
        "phony_quickstart_{:06x}",
        rand::random::<u32>() & 0xff_ffff
    ));
    ensure_database(&db).await?;
    let client = db.connect().await?;
    let t = Instant::now();
    client
        .batch_execute(
            "CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
             CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text UNIQUE NOT NULL, name text);
             CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers, status order_status NOT NULL DEFAULT 'new', total numeric(10,2));
             INSERT INTO customers (email, name) SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, 50000) g;
             INSERT INTO orders (customer_id, status, total) SELECT 1 + g % 50000, (ARRAY['new','paid','shipped']::order_status[])[1 + g % 3], (g % 1000) / 10.0 FROM generate_series(1, 200000) g;",
        )
        .await?;
    println!(
        "created {} with 50,000 customers and 200,000 orders in {:.2?}",
        db.dbname(),
        t.elapsed()
    );

    // 3. A store in a temporary directory, and a snapshot.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(
        Store::open_or_init(
            ObjectStoreBackend::local(dir.path(), true)?,
            StoreConfig::default(),
        )
        .await?,
    );
    let clean = Fingerprint::of(&db).await?;
    let t = Instant::now();
    let snap = capture(&db, &store, &CaptureOptions::default()).await?;
    println!(
        "snapshot: {} tables, {} rows, {} KiB of rows stored as {} KiB, in {:.2?}",
        snap.stats.tables,
        snap.stats.rows,
        snap.stats.bytes / 1024,
        snap.stats.stored_bytes / 1024,
        t.elapsed()
    );

    // 4. Dirty it: an E2E run and a migration.
    client
        .batch_execute(
            "DELETE FROM orders WHERE id % 7 = 0;
             UPDATE customers SET name = 'changed' WHERE id < 1000;
             INSERT INTO orders (customer_id, total) SELECT 1, 9.99 FROM generate_series(1, 5000);
             ALTER TABLE customers ADD COLUMN loyalty_points int DEFAULT 0;
             CREATE INDEX orders_status_idx ON orders (status);",
        )
        .await?;
    println!("dirtied: deleted, updated and inserted rows; added a column and an index");
    assert_ne!(Fingerprint::of(&db).await?, clean);

    // 5. Restore, while our own session stays connected.
    let t = Instant::now();
    let report = restore(&db, &store, &snap.manifest, &RestoreOptions::default()).await?;
    println!(
        "restored {} tables, {} rows in {:.2?}",
        report.tables,
        report.rows,
        t.elapsed()
    );
    let after = Fingerprint::of(&db).await?;
    println!(
        "exactly as it was: {}",
        if after == clean { "yes" } else { "NO" }
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await?
        .get(0);
    println!("the session that dirtied it is still connected and sees {n} orders");

    drop(client);
    server
        .connect()
        .await?
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.dbname()))
        .await?;
    anyhow::ensure!(
        after == clean,
        "the restored database differs from the snapshot"
    );
    Ok(())
}
