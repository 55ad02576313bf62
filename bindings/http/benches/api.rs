//! The service's speed goals, measured: API overhead on create, `GET …/snapshots` latency
//! under load, memory at idle. See README.md beside this file for the command and figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use phony_server::{Config, Server};
use phony_tests::TestDb;
use serde_json::{json, Value};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64) * p).ceil() as usize;
    v[i.saturating_sub(1).min(v.len() - 1)]
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn project(&self, admin: &str, url: &str, plan: &str) -> (String, String) {
        let name = format!("b{:08x}", rand::random::<u32>());
        let (s, p) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/projects",
                admin,
                Some(json!({ "name": name, "database_url": url, "plan": plan })),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_owned();
        let (_, t) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/tokens",
                admin,
                Some(json!({ "project_id": id })),
            )
            .await;
        (id, t["token"].as_str().unwrap().to_owned())
    }
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("PHONY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let meta = TestDb::new("bench_meta").await;
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("phony_bench_admin_{:032x}", rand::random::<u128>());
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        meta_url: meta.url(),
        store_root: dir.path().join("stores").to_string_lossy().into_owned(),
        data_dir: dir.path().join("data"),
        admin_token: Some(admin.clone()),
        workers: 4,
        ..Config::default()
    };
    let server = Server::start(config.clone()).await.unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: server.url(),
    };

    // 1. Creating a snapshot: through the API (POST ?wait) against the engine directly
    //    (what `phony snapshot create` runs), alternating, on the same unchanged database
    //    and store, so that both are the same incremental capture.
    let db = TestDb::new("bench_app").await;
    db.exec(&format!(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
         INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, {rows}) g;"
    ))
    .await;
    let (pid, token) = api.project(&admin, &db.url(), "BUSINESS").await;
    let path = format!("/api/v1/projects/{pid}/snapshots?wait=300");
    let (s, _) = api
        .send(reqwest::Method::POST, &path, &token, Some(json!({})))
        .await;
    assert_eq!(s, 201);
    let engine = phony_engine::Engine::open(&format!("{}/{pid}", config.store_root))
        .await
        .unwrap();
    let target = phony_postgres::ConnectionTarget::parse_with(
        Some(&db.url()),
        phony_postgres::Environment::Ignore,
    )
    .unwrap();
    let (mut via_api, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let (s, _) = api
            .send(reqwest::Method::POST, &path, &token, Some(json!({})))
            .await;
        assert_eq!(s, 201);
        via_api.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        engine
            .create(&target, Default::default(), Default::default())
            .await
            .unwrap();
        direct.push(t.elapsed().as_secs_f64());
    }
    let (a, d) = (median(via_api), median(direct));
    println!(
        "create, {rows} rows, incremental: API {:.0} ms, engine {:.0} ms, ratio {:.2}",
        a * 1e3,
        d * 1e3,
        a / d
    );

    // 2. GET …/snapshots of a project with 1,000 snapshots, 50 concurrent clients, while
    //    restores run in another project.
    let small = TestDb::new("bench_list").await;
    small
        .exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);")
        .await;
    let (lid, ltoken) = api.project(&admin, &small.url(), "BUSINESS").await;
    let (s, first) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/projects/{lid}/snapshots?wait=60"),
            &ltoken,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201);
    let lengine = phony_engine::Engine::open(&format!("{}/{lid}", config.store_root))
        .await
        .unwrap();
    let (record, _) = lengine.show(first["id"].as_str().unwrap()).await.unwrap();
    for i in 1..1000u64 {
        let mut r = record.clone();
        r.id = phony_core::SnapshotId::from_random(rand::random());
        r.created_at += time::Duration::seconds(i as i64);
        lengine.store().put_record(&r).await.unwrap();
    }
    let snap = {
        let (_, list) = api
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/projects/{pid}/snapshots?limit=1"),
                &token,
                None,
            )
            .await;
        list["items"][0]["id"].as_str().unwrap().to_owned()
    };
    let restoring = {
        let api = Api {
            http: api.http.clone(),
            base: api.base.clone(),
        };
        let (token, snap) = (token.clone(), snap.clone());
        let db = db.url();
        tokio::spawn(async move {
            let _keep = db;
            loop {
                let (s, _) = api
                    .send(
                        reqwest::Method::POST,
                        &format!("/api/v1/snapshots/{snap}/restore?wait=300"),
                        &token,
                        Some(json!({ "full": true })),
                    )
                    .await;
                if s != 200 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list_path = format!("/api/v1/projects/{lid}/snapshots?limit=50");
    let mut clients = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        let api = Api {
            http: api.http.clone(),
            base: api.base.clone(),
        };
        let (p, t) = (list_path.clone(), ltoken.clone());
        clients.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for _ in 0..20 {
                let t0 = Instant::now();
                let (s, _) = api.send(reqwest::Method::GET, &p, &t, None).await;
                assert_eq!(s, 200);
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            times
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    restoring.abort();
    let n = all.len();
    let (p50, p99) = (percentile(&mut all, 0.50), percentile(&mut all, 0.99));
    println!("GET snapshots (1,000 in the project, 50 clients, {n} requests, restores alongside): p50 {p50:.1} ms, p99 {p99:.1} ms, {:.0} requests/s", n as f64 / took);

    // 3. Memory at idle with 100 projects (the whole bench process: an upper bound).
    let before = rss_mb();
    for _ in 0..100 {
        let (id, t) = api.project(&admin, &small.url(), "FREE").await;
        let (s, _) = api
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/projects/{id}/snapshots"),
                &t,
                None,
            )
            .await;
        assert_eq!(s, 200);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("memory with 100 more projects, idle: {:.0} MB resident (bench process, server and client; {before:.0} MB before)", rss_mb());
    server.stop().await.unwrap();
}
