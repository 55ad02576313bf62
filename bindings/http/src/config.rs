//! The server's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How a server runs; [`Config::default`] is `phony serve` without options.
#[derive(Clone)]
pub struct Config {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The metadata database (created if missing, migrated at start).
    pub meta_url: String,
    /// Where project stores go: a directory or `s3://bucket/prefix`; each project's store is
    /// `<store_root>/<project id>`.
    pub store_root: String,
    /// The server's own files: the secret key file, finished exports.
    pub data_dir: PathBuf,
    /// The first admin token (`PHONY_ADMIN_TOKEN`); without one, a token is generated and
    /// printed once when the metadata database has no admin token.
    pub admin_token: Option<String>,
    /// The key that encrypts database URLs (`PHONY_SECRET_KEY`, 64 hex digits); without
    /// one, `<data_dir>/secret.key` (created with mode 0600).
    pub secret_key: Option<String>,
    /// Jobs this server runs at once (one per project at a time); 0: an API-only server.
    pub workers: usize,
    /// How often expired snapshots are deleted and jobs of dead servers marked failed.
    pub sweep_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before they are cancelled
    /// (rolled back) and marked failed.
    pub shutdown_grace: Duration,
    /// Connections to the metadata database.
    pub pool_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            meta_url: "postgres://postgres@127.0.0.1:5432/phony_meta".into(),
            store_root: "./phony-data".into(),
            data_dir: PathBuf::from("./phony-data"),
            admin_token: None,
            secret_key: None,
            workers: 4,
            sweep_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            pool_size: 16,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("meta_url", &redact(&self.meta_url))
            .field("store_root", &self.store_root)
            .field("data_dir", &self.data_dir)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// A URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
