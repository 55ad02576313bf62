//! The `phony` binary, run for real against the real PostgreSQL: stdout, stderr, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod commands;
mod connection_strings;
mod copy;
mod crash;
mod diff;
mod export;
mod hostile_store;
mod interruptions;
mod messages;
mod names;
mod objects;
mod restore_plan;
mod restore_safety;
mod retention;
mod s3;
mod serve;
mod sync;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `phony` with a clean environment (no PHONY_*, DATABASE_URL or PG* variables),
/// against `db_url` and the store at `store`.
pub fn phony(db_url: &str, store: &Path, args: &[&str]) -> Output {
    phony_cmd(db_url, store, args).output().unwrap()
}

pub fn phony_cmd(db_url: &str, store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phony"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PHONY_") || k.starts_with("PG") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--database")
        .arg(db_url)
        .arg("--store")
        .arg(store)
        .args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success with nothing on stderr, and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "phony failed: {}", stderr(o));
    // The one thing a successful command may say on stderr: that it took over the lock of
    // a process that died (tests that kill phony leave those behind on purpose).
    let err = stderr(o);
    let other: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("phony: removed a stale lock"))
        .collect();
    assert!(other.is_empty(), "nothing on stderr on success: {err:?}");
    stdout(o)
}

/// Asserts failure with `code` and exactly one line on stderr containing every `needle`;
/// returns that line.
pub fn fails(o: &Output, code: i32, needles: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code; stderr: {err}; stdout: {}",
        stdout(o)
    );
    if code == 1 {
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line of error: {err:?}"
        );
        assert!(
            err.starts_with("phony: error: ") || err.starts_with(r#"{"error":{"code":"#),
            "{err}"
        );
    }
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} should contain {n:?}");
    }
    err
}
