//! A server of a test's own, and a client that speaks to it.

use std::time::Duration;

use phony_server::{Config, Server};
use phony_tests::TestDb;
use reqwest::Method;
use serde_json::{json, Value};

/// A running server with its metadata database and data directory.
pub struct Harness {
    pub server: Option<Server>,
    pub base: String,
    pub admin: String,
    pub config: Config,
    pub meta: TestDb,
    pub _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts a problem document with this status and code.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        &self.body
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        &self.body
    }
}

/// A project of a test: its database, id and token.
pub struct TestProject {
    pub db: TestDb,
    pub id: String,
    pub token: String,
}

pub fn base_config(meta: &TestDb, dir: &std::path::Path, admin: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        meta_url: meta.url(),
        store_root: dir.join("stores").to_string_lossy().into_owned(),
        data_dir: dir.join("data"),
        admin_token: Some(admin.to_owned()),
        secret_key: None,
        workers: 2,
        sweep_interval: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(10),
        pool_size: 8,
    }
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Harness {
    let meta = TestDb::new("meta").await;
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("phony_test_admin_{:032x}", rand::random::<u128>());
    let mut config = base_config(&meta, dir.path(), &admin);
    tune(&mut config);
    let server = Server::start(config.clone()).await.unwrap();
    Harness {
        base: server.url(),
        server: Some(server),
        admin,
        config,
        meta,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

impl Harness {
    /// Starts another server on the same metadata database and data directory.
    pub async fn another(&self, tune: impl FnOnce(&mut Config)) -> Server {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        tune(&mut config);
        Server::start(config).await.unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        call_at(&self.http, &self.base, method, path, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A project on `plan` whose database holds a table `items` of `rows` rows, and a token
    /// of its own.
    pub async fn project(&self, plan: &str, rows: i64) -> TestProject {
        let db = TestDb::new("prj").await;
        db.exec(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await;
        self.project_on(plan, &db.url()).await.with_db(db)
    }

    /// Registers `url` as a project on `plan`; the project's `db` is a placeholder.
    pub async fn project_on(&self, plan: &str, url: &str) -> Pending {
        let name = format!("p{:08x}", rand::random::<u32>());
        let a = self
            .post(
                "/api/v1/projects",
                &self.admin,
                json!({ "name": name, "database_url": url, "plan": plan }),
            )
            .await;
        let id = a.ok(201)["id"].as_str().unwrap().to_owned();
        let t = self
            .post("/api/v1/tokens", &self.admin, json!({ "project_id": id }))
            .await;
        let token = t.ok(201)["token"].as_str().unwrap().to_owned();
        Pending { id, token }
    }

    /// Takes a snapshot and waits for it; its id.
    pub async fn snapshot(&self, p: &TestProject, body: Value) -> String {
        let a = self
            .post(
                &format!("/api/v1/projects/{}/snapshots?wait=60", p.id),
                &p.token,
                body,
            )
            .await;
        a.ok(201)["id"].as_str().unwrap().to_owned()
    }

    /// Waits for job `id` to end; the job.
    pub async fn wait_job(&self, id: &str, token: &str) -> Value {
        let a = self.get(&format!("/api/v1/jobs/{id}?wait=60"), token).await;
        let job = a.ok(200).clone();
        assert!(
            ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()),
            "{job}"
        );
        job
    }
}

/// A project registered, waiting for its database handle.
pub struct Pending {
    pub id: String,
    pub token: String,
}

impl Pending {
    pub fn with_db(self, db: TestDb) -> TestProject {
        TestProject {
            db,
            id: self.id,
            token: self.token,
        }
    }
}

pub async fn call_at(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Answer {
        status,
        headers,
        body,
        text,
    }
}
