//! Malformed connection strings: exit 2 with one line saying what is wrong, no password in
//! it, and no store created.

use crate::phony;

fn usage_error(url: &str, needle: &str) {
    let store = tempfile::tempdir().unwrap();
    let path = store.path().join("store");
    let out = phony(url, &path, &["snapshot", "create"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{url}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{url}: one line: {err:?}"
    );
    assert!(err.contains(needle), "{url}: {err:?} should say {needle:?}");
    assert!(
        !err.contains("invalid connection string: invalid connection string"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!path.exists(), "{url}: a failed command created the store");
}

#[test]
fn malformed_connection_strings_say_what_is_wrong() {
    usage_error(
        "postgres://u:s3cret@127.0.0.1:notaport/db",
        "port \"notaport\"",
    );
    usage_error("postgres://127.0.0.1:99999/db", "from 1 to 65535");
    usage_error(
        "postgres://u:s3cret@127.0.0.1/db?sslmode=bogus",
        "sslmode \"bogus\"",
    );
    usage_error("postgres://[127.0.0.1/db", "unclosed '['");
    usage_error("nc_dev", "neither a URL");
    usage_error(
        "postgress://127.0.0.1/db",
        "unknown scheme \"postgress://\"",
    );
    usage_error("host=127.0.0.1 port=x", "port \"x\"");
    usage_error(
        "host=127.0.0.1 frobnicate=1",
        "unknown connection parameter \"frobnicate\"",
    );
}
