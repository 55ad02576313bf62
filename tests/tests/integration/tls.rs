//! TLS with libpq's `sslmode` meanings, against throwaway clusters serving certificates the
//! test makes: `require` encrypts, `verify-ca` and `verify-full` check the chain (and the
//! host), a wrong CA, a wrong host name and an expired certificate fail with one clear line,
//! and a snapshot and its restore work over TLS (pg_dump included).

use std::path::Path;
use std::sync::Arc;

use phony_core::{Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;
use phony_postgres::{capture, CaptureOptions, ConnectionTarget, Environment, Fingerprint};
use phony_testkit::{ClusterOptions, ServerTls, TempCluster};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn write(&self, dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path.display().to_string()
    }

    /// A server certificate for `names` (host names or IP addresses).
    fn server(&self, names: &[&str], expired: bool) -> ServerTls {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn cluster(tls: ServerTls) -> TempCluster {
    TempCluster::start_with(ClusterOptions {
        tls: Some(tls),
        ..Default::default()
    })
    .unwrap()
}

/// The URL of `cluster`'s `postgres` database at `host`, with `params`.
fn url(cluster: &TempCluster, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?{params}",
        cluster.port()
    )
}

fn target(url: &str) -> ConnectionTarget {
    ConnectionTarget::parse_with(Some(url), Environment::Ignore).unwrap()
}

/// Whether the connection to `url` is encrypted, or the error's text.
async fn encrypted(url: &str) -> Result<bool, String> {
    let client = target(url).connect().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn one_clear_line(err: &str, needle: &str) {
    assert!(!err.contains('\n'), "one line: {err:?}");
    assert!(err.contains(needle), "{err:?} should say {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_mean_what_libpq_says() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("phony test CA");
    let other_ca = Ca::new("someone else's CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let other_file = other_ca.write(dir.path(), "other.pem");
    let server = cluster(ca.server(&["127.0.0.1"], false));

    assert_eq!(
        encrypted(&url(&server, "127.0.0.1", "sslmode=require")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&url(&server, "127.0.0.1", "sslmode=prefer")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&url(&server, "127.0.0.1", "sslmode=disable")).await,
        Ok(false)
    );
    let full = format!("sslmode=verify-full&sslrootcert={ca_file}");
    assert_eq!(encrypted(&url(&server, "127.0.0.1", &full)).await, Ok(true));
    // Key/value strings take the same parameters.
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-ca sslrootcert='{ca_file}'",
        server.port()
    );
    assert_eq!(encrypted(&kv).await, Ok(true));

    // A certificate from another CA.
    let wrong_ca = format!("sslmode=verify-full&sslrootcert={other_file}");
    let err = encrypted(&url(&server, "127.0.0.1", &wrong_ca))
        .await
        .unwrap_err();
    one_clear_line(&err, "certificate");
    let err = encrypted(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other_file}"),
    ))
    .await
    .unwrap_err();
    one_clear_line(&err, "certificate");
    // `require` with a root file verifies the chain, as libpq does.
    let err = encrypted(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={other_file}"),
    ))
    .await
    .unwrap_err();
    one_clear_line(&err, "certificate");

    // The right CA, the wrong host name: verify-full refuses, verify-ca does not look.
    let err = encrypted(&url(&server, "localhost", &full))
        .await
        .unwrap_err();
    one_clear_line(&err, "certificate");
    let ca_only = format!("sslmode=verify-ca&sslrootcert={ca_file}");
    assert_eq!(
        encrypted(&url(&server, "localhost", &ca_only)).await,
        Ok(true)
    );

    // Verification without a root certificate is refused before connecting.
    let err = ConnectionTarget::parse_with(
        Some(&url(&server, "127.0.0.1", "sslmode=verify-full")),
        Environment::Ignore,
    )
    .unwrap()
    .connect()
    .await
    .unwrap_err()
    .to_string();
    one_clear_line(&err, "sslrootcert");
    let err = ConnectionTarget::parse(Some(&url(&server, "127.0.0.1", "sslmode=bogus")))
        .unwrap_err()
        .to_string();
    one_clear_line(&err, "sslmode \"bogus\" is not one of");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("phony test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = cluster(ca.server(&["127.0.0.1"], true));
    let err = encrypted(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca_file}"),
    ))
    .await
    .unwrap_err();
    one_clear_line(&err, "expired");
    // Without verification it is only encryption, as with libpq.
    assert_eq!(
        encrypted(&url(&server, "127.0.0.1", "sslmode=require")).await,
        Ok(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_restore_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("phony test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = cluster(ca.server(&["127.0.0.1"], false));
    let params = format!("sslmode=verify-full&sslrootcert={ca_file}");
    let admin = target(&url(&server, "127.0.0.1", &params))
        .connect()
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE app").await.unwrap();
    let app_url = format!(
        "postgres://postgres@127.0.0.1:{}/app?{params}",
        server.port()
    );
    let app = target(&app_url);
    app.connect()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    let before = Fingerprint::of(&app).await.unwrap();

    let store_dir = tempfile::tempdir().unwrap();
    let backend = ObjectStoreBackend::local(store_dir.path(), true).unwrap();
    let store = Arc::new(
        Store::open_or_init(backend, StoreConfig::default())
            .await
            .unwrap(),
    );
    let captured = capture(&app, &store, &CaptureOptions::default())
        .await
        .unwrap();
    app.connect()
        .await
        .unwrap()
        .batch_execute("DELETE FROM t WHERE id % 3 = 0; ALTER TABLE t ADD COLUMN w int;")
        .await
        .unwrap();
    phony_postgres::restore(
        &app,
        &store,
        &captured.manifest,
        &phony_postgres::RestoreOptions::default(),
    )
    .await
    .unwrap();
    phony_tests::assert_same(
        &Fingerprint::of(&app).await.unwrap(),
        &before,
        "after a restore over TLS",
    );
}

#[test]
fn ignoring_the_environment_needs_a_host() {
    let err = ConnectionTarget::parse_with(Some("dbname=app"), Environment::Ignore)
        .unwrap_err()
        .to_string();
    assert!(err.contains("names no host"), "{err}");
    let t = ConnectionTarget::parse_with(Some("postgres://db.example/app"), Environment::Ignore)
        .unwrap();
    assert_eq!(t.to_string(), "postgres://postgres@db.example:5432/app");
}
