//! The server's lock table, when a restore or a capture overflows it.
//!
//! A restore is one transaction, and every relation it drops, creates or rewrites stays
//! locked until the commit; a capture's transaction holds a lock on every table it reads.
//! PostgreSQL's lock table is shared by all sessions and holds
//! `max_locks_per_transaction × (max_connections + max_prepared_transactions)` entries: a
//! database of thousands of tables can need more than the default (64 × 100). The server
//! then says only "out of shared memory"; this module names the setting, the size it has
//! and the size it needs.

use tokio_postgres::Client;

use crate::error::{pg, Error, Result};

/// Whether `e` is the server's lock table overflowing.
pub(crate) fn is_full(e: &Error) -> bool {
    match e {
        Error::Postgres { message, .. } => {
            message.contains("out of shared memory")
                && message.contains("max_locks_per_transaction")
        }
        _ => false,
    }
}

/// `e`, as [`Error::LockTable`] with the numbers when it is the lock table overflowing
/// (read on `client`, outside any failed transaction), else as it is.
pub(crate) async fn explain(client: &Client, e: Error) -> Error {
    if !is_full(&e) {
        return e;
    }
    match sizes(client).await {
        Ok(explained) => explained,
        Err(_) => e,
    }
}

/// The lock table's size and what a transaction over every relation of the database needs.
async fn sizes(client: &Client) -> Result<Error> {
    let row = client
        .query_one(
            "SELECT pg_catalog.current_setting('max_locks_per_transaction')::int8,
                    pg_catalog.current_setting('max_connections')::int8,
                    pg_catalog.current_setting('max_prepared_transactions')::int8,
                    (SELECT count(*) + 2 * count(*) FILTER (WHERE c.reltoastrelid <> 0)
                     FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'phony')
                       AND n.nspname !~ '^pg_')",
            &[],
        )
        .await
        .map_err(pg("reading the lock table's settings"))?;
    let per_transaction = row.get::<_, i64>(0).max(0) as u64;
    let connections = row.get::<_, i64>(1).max(0) as u64;
    let prepared = row.get::<_, i64>(2).max(0) as u64;
    let relations = row.get::<_, i64>(3).max(0) as u64;
    Ok(Error::LockTable {
        relations,
        per_transaction,
        connections,
        prepared,
        suggested: suggested(relations, per_transaction, connections + prepared),
    })
}

/// A `max_locks_per_transaction` that fits a full restore of `relations` relations: it
/// locks each one dropped and each one created, with a quarter to spare for other sessions;
/// a multiple of 64, above `current`.
fn suggested(relations: u64, current: u64, slots: u64) -> u64 {
    let needed = (relations * 2 + relations / 2).div_ceil(slots.max(1));
    needed.max(current + 1).div_ceil(64) * 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggestion_fits_a_full_restore_with_room_to_spare() {
        // 5,000 tables with a key and a TOAST table: 20,000 relations.
        assert_eq!(suggested(20_000, 64, 100), 512);
        // Never below what the server has.
        assert_eq!(suggested(10, 64, 100), 128);
        assert_eq!(suggested(1_200, 10, 100), 64);
    }

    #[test]
    fn only_the_lock_table_overflowing_is_explained() {
        let full = Error::Postgres {
            context: "replacing schema public".into(),
            message:
                "out of shared memory; hint: You might need to increase max_locks_per_transaction."
                    .into(),
            code: Some("53200".into()),
        };
        assert!(is_full(&full));
        let other = Error::Postgres {
            context: "loading".into(),
            message: "out of shared memory".into(),
            code: Some("53200".into()),
        };
        assert!(!is_full(&other));
    }
}
