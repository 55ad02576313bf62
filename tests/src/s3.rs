//! Buckets of a test's own on the S3-compatible server named by `PHONY_TEST_S3_ENDPOINT`
//! (`.ci/run` starts moto's server on loopback and sets it).
//!
//! When the variable is unset, S3 tests say they are skipped and pass, unless `CI` is set:
//! then they fail, so CI never skips them silently.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use phony_object_store::{ObjectStoreBackend, StoreLocation};

/// The test server's endpoint, or `None` (after saying so) when S3 tests are to be
/// skipped. Sets the `AWS_*` variables the S3 client reads, so child processes inherit
/// them too: the endpoint always, dummy credentials where none are set.
pub fn endpoint(test: &str) -> Option<String> {
    static ENDPOINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let endpoint = ENDPOINT.get_or_init(|| {
        let endpoint = std::env::var("PHONY_TEST_S3_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())?;
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "phony-test"),
            ("AWS_SECRET_ACCESS_KEY", "phony-test-secret"),
            ("AWS_REGION", "us-east-1"),
        ] {
            if std::env::var_os(key).is_none() {
                std::env::set_var(key, value);
            }
        }
        // Whatever endpoint the environment names, the tests talk to the test server.
        std::env::remove_var("AWS_ENDPOINT_URL_S3");
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        Some(endpoint)
    });
    if endpoint.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: CI is set but PHONY_TEST_S3_ENDPOINT is not: .ci/run starts the S3 test server");
        }
        eprintln!("{test}: skipped: set PHONY_TEST_S3_ENDPOINT (see .ci/run) to run the S3 tests");
    }
    endpoint.clone()
}

/// A bucket of a test's own, emptied and removed when dropped.
#[derive(Debug)]
pub struct TestBucket {
    pub name: String,
    endpoint: String,
}

impl TestBucket {
    /// Creates a uniquely named bucket, or returns `None` when S3 tests are skipped (see
    /// [`endpoint`]). Panics when the server does not answer.
    pub fn new(test: &str) -> Option<Self> {
        let endpoint = endpoint(test)?;
        let name = format!("phony-t-{:08x}", rand::random::<u32>());
        let status = request(&endpoint, "PUT", &format!("/{name}")).unwrap_or_else(|e| {
            panic!("{test}: the S3 test server at {endpoint} does not answer: {e}")
        });
        assert!(status == 200, "creating bucket {name}: HTTP {status}");
        Some(TestBucket { name, endpoint })
    }

    /// The test server's endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.name, prefix.trim_matches('/'))
            .trim_end_matches('/')
            .to_owned()
    }

    /// A backend on `s3://<bucket>/<prefix>`.
    pub fn backend(&self, prefix: &str) -> ObjectStoreBackend {
        let location: StoreLocation = self.url(prefix).parse().unwrap();
        ObjectStoreBackend::for_location(&location, true).unwrap()
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let store = self.backend("").object_store().unwrap();
        let mut keys: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The size of the object at `key`, if there is one.
    pub async fn size(&self, key: &str) -> Option<u64> {
        let store = self.backend("").object_store().unwrap();
        let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
        objects
            .into_iter()
            .find(|m| m.location.as_ref() == key)
            .map(|m| m.size)
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        let backend = self.backend("");
        let name = self.name.clone();
        let endpoint = self.endpoint.clone();
        // Drop runs outside async; use a runtime of its own on a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let store = backend.object_store()?;
                let keys: Vec<_> = store
                    .list(None)
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .ok()?;
                for key in keys {
                    let _ = store.delete(&key).await;
                }
                Some(())
            });
            request(&endpoint, "DELETE", &format!("/{name}")).ok()
        })
        .join();
    }
}

/// One bare HTTP/1.1 request without a body (the test server checks no signature); its
/// status code.
fn request(endpoint: &str, method: &str, path: &str) -> std::io::Result<u16> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:.80}")))
}

/// A TCP relay in front of the S3 test server that can be cut, as if the server had been
/// killed: every open connection is dropped and new ones are refused.
#[derive(Debug)]
pub struct CuttableRelay {
    /// `http://127.0.0.1:<port>`: point `AWS_ENDPOINT_URL` here.
    pub endpoint: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl CuttableRelay {
    /// Starts relaying to the test server's endpoint (see [`endpoint`]).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (cut, mut cut_rx) = tokio::sync::watch::channel(false);
        let conn_cut = cut.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cut_rx.changed() => return,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        let upstream = upstream.clone();
                        let mut cut = conn_cut.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        CuttableRelay { endpoint, cut }
    }

    /// Drops every connection and refuses new ones from now on.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// The endpoint of the test server that checks credentials (and knows none), or `None`
/// (after saying so) when S3 tests are to be skipped; see [`endpoint`].
pub fn auth_endpoint(test: &str) -> Option<String> {
    endpoint(test)?;
    let auth = std::env::var("PHONY_TEST_S3_AUTH_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    if auth.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: CI is set but PHONY_TEST_S3_AUTH_ENDPOINT is not: .ci/run starts that server");
        }
        eprintln!("{test}: skipped: set PHONY_TEST_S3_AUTH_ENDPOINT (see .ci/run)");
    }
    auth
}
