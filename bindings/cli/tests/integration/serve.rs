//! `phony serve`: the real binary, spoken to over HTTP, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use phony_tests::TestDb;

/// One HTTP/1.1 request; the status and body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn field(json: &str, key: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|_| panic!("not JSON: {json}"));
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        .to_owned()
}

/// Starts the server; its process, address and the admin token it printed (if any).
/// The caller waits for the process (see [`terminate`]).
#[allow(clippy::zombie_processes)]
fn serve(meta: &str, dir: &std::path::Path) -> (Child, String, Option<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phony"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PHONY_") || k.starts_with("PG") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--meta",
            meta,
            "--shutdown-grace",
            "5s",
        ])
        .arg("--store-root")
        .arg(dir.join("stores"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    loop {
        let line = lines
            .next()
            .expect("the server ended before listening")
            .unwrap();
        if let Some(t) = line.strip_prefix("admin token (shown once; keep it): ") {
            token = Some(t.to_owned());
        }
        if let Some(url) = line.strip_prefix("phony-server listening on http://") {
            return (child, url.to_owned(), token);
        }
    }
}

fn terminate(mut child: Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "{exit:?}: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_takes_a_first_snapshot_over_http_and_stops_on_sigterm() {
    let meta = TestDb::new("serve_meta").await;
    let db = TestDb::new("serve_app").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, admin) = serve(&meta.url(), dir.path());
    let admin = admin.expect("the first start prints an admin token");
    let stderr = tokio::task::spawn_blocking({
        let (addr, db_url) = (addr.clone(), db.url());
        move || {
            assert_eq!(http(&addr, "GET", "/healthz", None, "").0, 200);
            let (s, body) = http(
                &addr,
                "POST",
                "/api/v1/projects",
                Some(&admin),
                &format!(r#"{{"name": "app", "database_url": "{db_url}", "plan": "FREE"}}"#),
            );
            assert_eq!(s, 201, "{body}");
            let project = field(&body, "id");
            let (s, body) = http(
                &addr,
                "POST",
                "/api/v1/tokens",
                Some(&admin),
                &format!(r#"{{"project_id": "{project}"}}"#),
            );
            assert_eq!(s, 201, "{body}");
            let token = field(&body, "token");
            let (s, body) = http(
                &addr,
                "POST",
                &format!("/api/v1/projects/{project}/snapshots?wait=60"),
                Some(&token),
                r#"{"name": "first"}"#,
            );
            assert_eq!(s, 201, "{body}");
            assert!(field(&body, "id").starts_with("snap_"));
            (terminate(child), project)
        }
    })
    .await
    .unwrap();
    let (stderr, project) = stderr;
    assert!(stderr.contains("stopping"), "{stderr}");

    // A second start prints no token, and the store is one the CLI reads.
    let (child, _, again) = serve(&meta.url(), dir.path());
    assert!(again.is_none());
    tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    let store = dir.path().join("stores").join(&project);
    let out = super::phony(&db.url(), &store, &["--json", "snapshot", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"first\""));
}
