//! Cross-crate tests against the real PostgreSQL: capture and restore are exact, atomic,
//! consistent under concurrent writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod consistency;
mod corpus;
mod diff;
mod encodings;
mod incremental;
mod key_equality;
mod migration_rollback;
mod objects;
mod rls;
mod roundtrip;
mod settings;
mod tls;
mod tracking;
mod xmin;

use std::future::Future;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};

/// Runs `case` on `cases` values of `strategy` (proptest, shrinking on failure), each to
/// completion on the test's own multi-threaded runtime.
pub fn run_cases<S, F, Fut>(cases: u32, strategy: S, case: F)
where
    S: Strategy,
    F: Fn(S::Value) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    runner
        .run(&strategy, |value| {
            tokio::task::block_in_place(|| handle.block_on(case(value)));
            Ok(())
        })
        .unwrap();
}

/// Non-empty selections of `n` changes, in random order.
pub fn change_sets(n: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..n).collect::<Vec<_>>(), 1..n).prop_shuffle()
}
