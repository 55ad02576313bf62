//! Which PostgreSQL server a test suite uses: the one it is told about, the local one if it
//! answers, or a throwaway cluster started for the process.

use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cluster::TempCluster;

/// The variable that names the server tests use (a URL to its maintenance database).
pub const SERVER_ENV: &str = "PHONY_TEST_DATABASE_URL";

/// The local server tried when [`SERVER_ENV`] is unset.
pub const LOCAL_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server tests use, as a URL to its maintenance database:
///
/// 1. `$PHONY_TEST_DATABASE_URL` when set;
/// 2. else the PostgreSQL at `127.0.0.1:5432` (user `postgres`) when something listens there;
/// 3. else a throwaway cluster from the installed server binaries, started once for the
///    process ([`shared_cluster`]) and stopped and removed when the process exits.
pub fn default_server_url() -> std::io::Result<String> {
    if let Some(url) = std::env::var(SERVER_ENV).ok().filter(|v| !v.is_empty()) {
        return Ok(url);
    }
    if local_server_answers() {
        return Ok(LOCAL_SERVER_URL.to_owned());
    }
    Ok(shared_cluster()?.url("postgres"))
}

/// Whether something accepts connections at `127.0.0.1:5432`.
pub fn local_server_answers() -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], 5432));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

static SHARED: OnceLock<Result<TempCluster, String>> = OnceLock::new();

/// One throwaway cluster for the whole process, started on first use. Statics are never
/// dropped, so it is not stopped by `Drop`: its watchdog (see [`TempCluster`]) stops the
/// server and deletes its files when the process exits, however it exits.
pub fn shared_cluster() -> std::io::Result<&'static TempCluster> {
    match SHARED.get_or_init(|| TempCluster::start().map_err(|e| e.to_string())) {
        Ok(c) => Ok(c),
        Err(e) => Err(std::io::Error::other(e.clone())),
    }
}

/// `url` with its database replaced by `dbname` (URLs and key/value strings).
pub(crate) fn url_with_dbname(url: &str, dbname: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url} dbname='{}'", dbname.replace('\'', "\\'"));
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let authority = main.split('/').next().unwrap_or(main);
    let mut out = format!("{scheme}://{authority}/{dbname}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_another_database() {
        assert_eq!(
            url_with_dbname("postgres://u:p@h:5/app?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(url_with_dbname("postgresql://h", "t1"), "postgresql://h/t1");
        assert_eq!(
            url_with_dbname("host=h dbname=app", "t1"),
            "host=h dbname=app dbname='t1'"
        );
    }
}
