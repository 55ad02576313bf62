//! Export to a destination: an S3 object (the moto test server, `PHONY_TEST_S3_ENDPOINT`)
//! that psql loads into an empty database with the snapshot's fingerprint; an existing
//! object kept unless `force`; paths on the server's disk refused; BUSINESS only.

use std::process::Command;

use phony_tests::s3::TestBucket;
use phony_tests::{assert_same, TestDb};
use serde_json::json;

use super::support::start;

fn psql_load(db: &TestDb, file: &std::path::Path) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url(), "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_to_s3_loads_into_an_empty_database_with_the_same_fingerprint() {
    let Some(bucket) = TestBucket::new("an_export_to_s3_loads_into_an_empty_database") else {
        return;
    };
    let h = start().await;
    let db = TestDb::rich("srv_export").await;
    let p = h.project_on("BUSINESS", &db.url()).await.with_db(db);
    let snap = h.snapshot(&p, json!({ "name": "s" })).await;
    let expected = p.db.fingerprint().await;
    // The database moves on: the export is the snapshot's state, not today's.
    p.db.exec("DELETE FROM public.orders; SELECT nextval('public.ticket_seq')")
        .await;

    let export = format!("/api/v1/snapshots/{snap}/export?wait=60");
    let url = bucket.url("exports/s.sql");
    let report = h
        .post(
            &export,
            &p.token,
            json!({ "format": "sql", "destination": url }),
        )
        .await;
    let report = report.ok(200).clone();
    assert_eq!(report["destination"], url.as_str());
    assert!(report.get("download").is_none(), "{report}");
    assert_eq!(report["bytes"], report["written_bytes"]);

    let object = phony_core::Backend::get(&bucket.backend(""), "exports/s.sql", 1 << 30)
        .await
        .unwrap();
    assert_eq!(report["bytes"].as_u64().unwrap(), object.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.sql");
    std::fs::write(&file, &object).unwrap();
    let empty = TestDb::new("srv_export_load").await;
    psql_load(&empty, &file);
    assert_same(&empty.fingerprint().await, &expected, "a loaded export");

    // An existing object is kept unless "force": the job fails, 409, nothing replaced.
    let again = h
        .post(
            &export,
            &p.token,
            json!({ "format": "sql", "destination": url }),
        )
        .await;
    let doc = again.problem(409, "destination_exists");
    assert!(doc["detail"].as_str().unwrap().contains(&url), "{doc}");
    assert_eq!(doc["job"]["status"], "failed");
    assert_eq!(doc["job"]["params"]["destination"], url.as_str());
    h.post(
        &export,
        &p.token,
        json!({ "format": "sql", "destination": url, "force": true }),
    )
    .await
    .ok(200);
    assert_eq!(bucket.keys().await, ["exports/s.sql"]);

    // Compressed by name.
    let gz = bucket.url("exports/s.sql.gz");
    let report = h
        .post(
            &export,
            &p.token,
            json!({ "format": "sql", "destination": gz }),
        )
        .await;
    let report = report.ok(200).clone();
    let written = report["written_bytes"].as_u64().unwrap();
    assert!(written < report["bytes"].as_u64().unwrap(), "{report}");
    let object = phony_core::Backend::get(&bucket.backend(""), "exports/s.sql.gz", 1 << 30)
        .await
        .unwrap();
    assert_eq!(object.len() as u64, written);
    assert_eq!(&object[..2], [0x1f, 0x8b], "gzip");

    // Without a destination, the file is still downloaded from the job.
    let plain = h.post(&export, &p.token, json!({ "format": "sql" })).await;
    let download = plain.ok(200)["download"].as_str().unwrap().to_owned();
    let file = h.get(&download, &p.token).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.text.len() as u64, report["bytes"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_destinations_on_the_servers_disk_or_malformed_are_refused() {
    let h = start().await;
    let p = h.project("BUSINESS", 3).await;
    let snap = h.snapshot(&p, json!({})).await;
    let export = format!("/api/v1/snapshots/{snap}/export");
    let secret_key = h.config.data_dir.join("secret.key");
    for destination in [
        "/tmp/phony-export.sql".to_owned(),
        "exports/x.sql".to_owned(),
        format!("file://{}", secret_key.display()),
        "http://example.com/x.sql".to_owned(),
        "s3://phony-bucket".to_owned(),
        "s3://phony-bucket/".to_owned(),
        "s3://user:secret@phony-bucket/x.sql".to_owned(),
        "s3://No_Such/x.sql".to_owned(),
    ] {
        let a = h
            .post(
                &export,
                &p.token,
                json!({ "format": "sql", "destination": destination }),
            )
            .await;
        let doc = a.problem(422, "invalid_destination");
        assert!(!a.text.contains("secret@"), "{}", a.text);
        assert!(!doc["detail"].as_str().unwrap().is_empty());
    }
    // No job was queued for any of them, and nothing was written.
    let jobs = h
        .get(&format!("/api/v1/projects/{}/jobs", p.id), &p.token)
        .await;
    assert!(jobs.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["kind"] != "export"));
    assert!(!std::path::Path::new("/tmp/phony-export.sql").exists());

    // The plan gate comes first, destination or not; unknown fields are refused.
    let team = h.project("TEAM", 3).await;
    let s = h.snapshot(&team, json!({})).await;
    let a = h
        .post(
            &format!("/api/v1/snapshots/{s}/export"),
            &team.token,
            json!({ "format": "sql", "destination": "s3://phony-bucket/x.sql" }),
        )
        .await;
    assert_eq!(a.problem(403, "plan_required")["required_plan"], "BUSINESS");
    h.post(
        &export,
        &p.token,
        json!({ "format": "sql", "destination": "s3://phony-bucket/x.sql", "overwrite": true }),
    )
    .await
    .problem(422, "invalid_body");
    // Another project's token does not reach the snapshot.
    h.post(
        &export,
        &team.token,
        json!({ "format": "sql", "destination": "s3://phony-bucket/x.sql" }),
    )
    .await
    .problem(404, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_into_the_servers_own_s3_stores_is_refused() {
    let Some(bucket) = TestBucket::new("an_export_into_the_servers_own_s3_stores") else {
        return;
    };
    let root = bucket.url("stores");
    let h = super::support::start_with(|c| c.store_root = root.clone()).await;
    let p = h.project("BUSINESS", 3).await;
    let snap = h.snapshot(&p, json!({})).await;
    let export = format!("/api/v1/snapshots/{snap}/export?wait=60");
    // Over another project's store, or its own: refused before any job.
    let inside = format!("{root}/prj_other/snapshots/snap_000000000000.json");
    h.post(
        &export,
        &p.token,
        json!({ "format": "sql", "destination": inside, "force": true }),
    )
    .await
    .problem(422, "invalid_destination");
    // Beside the stores, in the same bucket: written.
    let beside = bucket.url("exports/x.sql");
    h.post(
        &export,
        &p.token,
        json!({ "format": "sql", "destination": beside }),
    )
    .await
    .ok(200);
    assert!(bucket.keys().await.contains(&"exports/x.sql".to_owned()));
}
