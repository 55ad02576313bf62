//! Run with: `cargo bench -p phony-testkit --bench reset -- --scale 1 --tests 200`
//!
//! What a test suite pays per test to get a clean database, on the shop database of
//! `benches/gen_shop.sql`, each strategy measured in the same run on the same data. Every
//! "test" commits the same kind of work: ~100 rows (20 orders and 20 order items inserted,
//! 40 customers updated, 20 events deleted).
//!
//! - phony-testkit serial: one database, reset in place after each test (`TestDatabase::finish`).
//! - phony-testkit pool: two copies, two tests at a time, each copy reset after its test.
//! - CREATE DATABASE … TEMPLATE: a fresh copy of the baseline per test, dropped after it.
//! - transaction rollback: the test inside `BEGIN … ROLLBACK` on one connection (what
//!   DatabaseCleaner-style tools do; other connections never see its writes).
//!
//! Options: `--scale S` (default 1: ~600 MB, ~25 s to generate), `--tests N` (default 200),
//! `--template-tests M` (default 20: a template copy of a big database takes seconds),
//! `--db NAME` (use an already generated database, left in place), `--keep` (do not drop the
//! generated database). Server: `$PHONY_BENCH_URL`, else as the tests find one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use phony_postgres::ConnectionTarget;
use phony_testkit::{default_server_url, SchemaChanges, Setup, Strategy, Testkit};

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    scale: f64,
    tests: usize,
    template_tests: usize,
    db: Option<String>,
    keep: bool,
}

fn args() -> Args {
    let mut a = Args {
        scale: 1.0,
        tests: 200,
        template_tests: 20,
        db: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--scale" => a.scale = it.next().and_then(|v| v.parse().ok()).expect("--scale S"),
            "--tests" => a.tests = it.next().and_then(|v| v.parse().ok()).expect("--tests N"),
            "--template-tests" => {
                a.template_tests = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--template-tests M")
            }
            "--db" => a.db = it.next(),
            "--keep" => a.keep = true,
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn url_of(server: &str, db: &str) -> String {
    match server.rfind('/') {
        Some(i) if server[..i].contains("://") => format!("{}/{db}", &server[..i]),
        _ => format!("{server} dbname={db}"),
    }
}

/// Upper bounds of the ids a test may touch.
#[derive(Clone, Copy)]
struct Ids {
    customers: i64,
    products: i64,
    orders: i64,
    events: i64,
}

/// One test's work: ~100 rows committed.
fn workload(i: usize, ids: Ids) -> String {
    let i = i as i64;
    format!(
        "INSERT INTO orders (customer_id, total, created_at)
             SELECT 1 + (g * 7919 + {i}) % {c}, 10, now() FROM generate_series(1, 20) g;
         INSERT INTO order_items (order_id, product_id, qty, price)
             SELECT 1 + (g * 104729 + {i} * 13) % {o}, 1 + (g + {i}) % {p}, 1, 9.99 FROM generate_series(1, 20) g;
         UPDATE customers SET last_login_at = now()
             WHERE id IN (SELECT 1 + (g * 7919 + {i} * 31) % {c} FROM generate_series(1, 40) g);
         DELETE FROM events
             WHERE id IN (SELECT 1 + (g * 6007 + {i} * 17) % {e} FROM generate_series(1, 20) g);",
        c = ids.customers,
        p = ids.products,
        o = ids.orders,
        e = ids.events,
    )
}

struct Figures {
    name: String,
    samples: Vec<Duration>,
    note: String,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = args();
    let server = match std::env::var("PHONY_BENCH_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => default_server_url()?,
    };
    let admin = ConnectionTarget::parse(Some(&server))?.connect().await?;
    let generated = args.db.is_none();
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| format!("phony_tkbench_{}", std::process::id()));
    if generated {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await?;
        let t = Instant::now();
        let target = ConnectionTarget::parse(Some(&url_of(&server, &db)))?;
        let mut psql = Command::new("psql");
        psql.args(["-X", "-q", "-v", &format!("scale={}", args.scale), "-f"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../benches/gen_shop.sql"
            ));
        for (k, v) in target.libpq_env() {
            psql.env(k, v);
        }
        let out = psql.output()?;
        if !out.status.success() {
            return Err(format!("gen_shop.sql: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        eprintln!(
            "generated {db} at scale {} in {:.1?}",
            args.scale,
            t.elapsed()
        );
    }
    let result = run(&args, &server, &db).await;
    if generated && !args.keep {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await?;
    }
    result
}

async fn run(args: &Args, server: &str, db: &str) -> Res<()> {
    let url = url_of(server, db);
    let target = ConnectionTarget::parse(Some(&url))?;
    let client = target.connect().await?;
    let row = client
        .query_one(
            "SELECT (SELECT max(id) FROM customers), (SELECT max(id)::bigint FROM products),
                    (SELECT max(id) FROM orders), (SELECT max(id) FROM events),
                    pg_size_pretty(pg_database_size(current_database())), version()",
            &[],
        )
        .await?;
    let ids = Ids {
        customers: row.get(0),
        products: row.get(1),
        orders: row.get(2),
        events: row.get(3),
    };
    let size: String = row.get(4);
    let version: String = row.get(5);
    drop(client);
    println!("database {db}: {size}; {version}");
    println!(
        "{} tests per strategy ({} for template copies); each test commits ~100 rows\n",
        args.tests, args.template_tests
    );
    let mut all = Vec::new();

    // phony-testkit, one database reset in place.
    {
        let kit = Testkit::from_setup(
            Setup::database(&url)
                .strategy(Strategy::Serial)
                .schema_changes(SchemaChanges::Restore),
        );
        let t = Instant::now();
        kit.checkout().await?.finish().await?;
        let baseline = t.elapsed();
        let mut samples = Vec::new();
        let mut restore_only = Vec::new();
        let mut overhead = Vec::new();
        let suite = Instant::now();
        for i in 0..args.tests {
            let db = kit.checkout().await?;
            db.connect().await?.batch_execute(&workload(i, ids)).await?;
            let report = db.finish().await?;
            samples.push(report.duration);
            restore_only.push(report.restore.duration);
            overhead.push(report.duration.saturating_sub(report.restore.duration));
        }
        restore_only.sort();
        overhead.sort();
        all.push(Figures {
            name: "phony-testkit serial (reset in place)".into(),
            samples,
            note: format!(
                "baseline capture + first reset {:.2?}; p50 of restore {} + kit's checks {}; whole suite {:.2?}",
                baseline,
                ms(pct(&restore_only, 0.5)),
                ms(pct(&overhead, 0.5)),
                suite.elapsed()
            ),
        });
    }

    // phony-testkit, a pool of two copies, two tests at a time.
    {
        let kit = std::sync::Arc::new(Testkit::from_setup(
            Setup::database(&url).strategy(Strategy::Pool { size: 2 }),
        ));
        let t = Instant::now();
        let (a, b) = (kit.checkout().await?, kit.checkout().await?);
        a.finish().await?;
        b.finish().await?;
        let setup = t.elapsed();
        let t = Instant::now();
        let mut workers = Vec::new();
        for w in 0..2 {
            let kit = kit.clone();
            let n = args.tests / 2;
            workers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                for i in 0..n {
                    let db = kit.checkout().await.map_err(|e| e.to_string())?;
                    let c = db.connect().await.map_err(|e| e.to_string())?;
                    c.batch_execute(&workload(i * 2 + w, ids))
                        .await
                        .map_err(|e| e.to_string())?;
                    drop(c);
                    samples.push(db.finish().await.map_err(|e| e.to_string())?.duration);
                }
                Ok::<_, String>(samples)
            }));
        }
        let mut samples = Vec::new();
        for w in workers {
            samples.extend(w.await??);
        }
        all.push(Figures {
            name: "phony-testkit pool of 2 (2 tests at a time)".into(),
            samples,
            note: format!(
                "baseline + 2 copies {:.2?}; whole suite {:.2?}",
                setup,
                t.elapsed()
            ),
        });
        drop(kit);
    }

    // CREATE DATABASE … TEMPLATE per test, dropped after it.
    {
        let admin = ConnectionTarget::parse(Some(server))?.connect().await?;
        let mut samples = Vec::new();
        for i in 0..args.template_tests {
            let copy = format!("{db}_tpl");
            let t = Instant::now();
            admin
                .batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {db}"))
                .await?;
            let created = t.elapsed();
            let c = ConnectionTarget::parse(Some(&url_of(server, &copy)))?
                .connect()
                .await?;
            c.batch_execute(&workload(i, ids)).await?;
            drop(c);
            let t = Instant::now();
            admin
                .batch_execute(&format!("DROP DATABASE {copy} WITH (FORCE)"))
                .await?;
            samples.push(created + t.elapsed());
        }
        all.push(Figures {
            name: "CREATE DATABASE … TEMPLATE + DROP".into(),
            samples,
            note: "per test: a fresh copy, dropped after".into(),
        });
    }

    // The test inside a transaction that is rolled back.
    {
        let client = target.connect().await?;
        let mut samples = Vec::new();
        for i in 0..args.tests {
            let t = Instant::now();
            client.batch_execute("BEGIN").await?;
            let begun = t.elapsed();
            client.batch_execute(&workload(i, ids)).await?;
            let t = Instant::now();
            client.batch_execute("ROLLBACK").await?;
            samples.push(begun + t.elapsed());
        }
        all.push(Figures {
            name: "transaction rollback".into(),
            samples,
            note: "BEGIN + ROLLBACK; one connection only".into(),
        });
    }

    println!(
        "{:<46} {:>5} {:>11} {:>11} {:>11}  note",
        "strategy (cost per test)", "n", "p50", "p95", "max"
    );
    for mut f in all {
        f.samples.sort();
        println!(
            "{:<46} {:>5} {:>11} {:>11} {:>11}  {}",
            f.name,
            f.samples.len(),
            ms(pct(&f.samples, 0.5)),
            ms(pct(&f.samples, 0.95)),
            ms(f.samples.last().copied().unwrap_or_default()),
            f.note
        );
    }
    Ok(())
}
