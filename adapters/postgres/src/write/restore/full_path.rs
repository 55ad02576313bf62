//! The full path: every user schema dropped and the snapshot's DDL run, every table
//! loaded, sequences set, materialized views refreshed; and the pieces a restore into a
//! new database shares (see [`crate::write::fresh`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use phony_core::{Backend, RootManifest, Store, TableEntry};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::{describe, pg, Error, Result};
use crate::read::catalog::{self, PHONY_SCHEMA};
use crate::read::chunk_stream::decoded_chunks;
use crate::read::schema_dump::with_utf8_client_encoding;
use crate::session::Session;
use crate::sql::{ident, ident_list, literal, qualified};

use super::plan::{RestoreOptions, RestoreReport};

/// The full path's DDL, and the session settings to set back after running it.
pub(crate) struct Scripts<'a> {
    pub(crate) pre_data: &'a str,
    pub(crate) post_data: &'a str,
    pub(crate) settings: &'a [(String, String)],
}

pub(crate) async fn load<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    scripts: &Scripts<'_>,
    opts: &RestoreOptions,
    report: &mut RestoreReport,
) -> Result<()> {
    client
        .batch_execute(scripts.pre_data)
        .await
        .map_err(pg("recreating the schema"))?;
    let loading = crate::Phase::Loading {
        bytes: root.bytes(),
    };
    crate::phase::reached(&opts.phase, loading);
    for table in &root.tables {
        load_table(client, store, table, opts).await?;
        report.tables += 1;
        report.rows += table.content.rows;
        report.bytes += table.content.bytes;
    }
    crate::phase::reached(&opts.phase, crate::Phase::IndexesAndConstraints);
    client
        .batch_execute(scripts.post_data)
        .await
        .map_err(pg("recreating keys, indexes and triggers"))?;
    restore_session_settings(client, scripts.settings).await?;
    crate::phase::reached(&opts.phase, crate::Phase::Sequences);
    set_sequences(client, root, report).await?;
    refresh_materialized_views(client, root).await
}

/// The settings pg_dump's scripts set for the session (`SET name = …;`, `set_config('name'`),
/// by name: a restore must leave the caller's session as it found it.
pub(crate) fn script_settings(scripts: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in scripts.iter().flat_map(|s| s.lines()) {
        let name = if let Some(rest) = line.strip_prefix("SET ") {
            rest.split([' ', '=']).next()
        } else if let Some((_, rest)) = line.split_once("set_config('") {
            rest.split('\'').next()
        } else {
            None
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// The session's values of `names` (outside any transaction: no local settings).
pub(crate) async fn session_settings(
    session: &Session,
    names: &[String],
) -> Result<Vec<(String, String)>> {
    let context = "reading the session's settings";
    let statement = session
        .prepared("SELECT n, pg_catalog.current_setting(n, true) FROM unnest($1::text[]) AS n")
        .await
        .map_err(pg(context))?;
    let rows = session
        .client()
        .query(&statement, &[&names])
        .await
        .map_err(pg(context))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get(0), r.get::<_, Option<String>>(1)?)))
        .collect())
}

/// Sets `settings` back for the session, in the open transaction (they stick at commit).
pub(crate) async fn restore_session_settings(
    client: &Client,
    settings: &[(String, String)],
) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> = settings
        .iter()
        .map(|(name, value)| {
            format!(
                "pg_catalog.set_config({}, {}, false)",
                literal(name),
                literal(value)
            )
        })
        .collect();
    client
        .batch_execute(&format!("SELECT {}", calls.join(", ")))
        .await
        .map_err(pg("restoring the session's settings"))
}

/// Sets every sequence to the snapshot's state, transactionally: `setval` alone is not
/// rolled back with the transaction, but after `ALTER SEQUENCE … RESTART` (which gives the
/// sequence new storage in this transaction) it is. Sequences already in that state are
/// left alone.
pub(crate) async fn set_sequences(
    client: &Client,
    root: &RootManifest,
    report: &mut RestoreReport,
) -> Result<()> {
    let Some(sql) = current_sequences_sql(root) else {
        return Ok(());
    };
    report.sequences += apply_sequences(client, sql.as_str(), root, true).await?;
    Ok(())
}

/// [`set_sequences`] with the reading statement prepared once per session.
/// Returns the number of sequences. `transactional`: see [`RestoreOptions`].
pub(crate) async fn set_sequences_in(
    session: &Session,
    root: &RootManifest,
    transactional: bool,
) -> Result<u64> {
    let Some(sql) = current_sequences_sql(root) else {
        return Ok(0);
    };
    let statement = session
        .prepared(&sql)
        .await
        .map_err(pg("reading sequences"))?;
    apply_sequences(session.client(), &statement, root, transactional).await
}

/// One query for the state of every sequence of the snapshot: (index, last_value, is_called).
pub(crate) fn current_sequences_sql(root: &RootManifest) -> Option<String> {
    if root.sequences.is_empty() {
        return None;
    }
    let current: Vec<String> = root
        .sequences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "SELECT {i}::int8, last_value, is_called FROM {}",
                qualified(&s.sequence)
            )
        })
        .collect();
    Some(current.join(" UNION ALL "))
}

/// Reads the sequences with `current` (see [`current_sequences_sql`]) and sets those that
/// differ from the snapshot's state (`transactional`: see [`RestoreOptions`]). Returns the
/// number of the snapshot's sequences.
pub(crate) async fn apply_sequences<T: tokio_postgres::ToStatement + ?Sized + Sync>(
    client: &Client,
    current: &T,
    root: &RootManifest,
    transactional: bool,
) -> Result<u64> {
    let rows = client
        .query(current, &[])
        .await
        .map_err(pg("reading sequences"))?;
    let mut same = vec![false; root.sequences.len()];
    for r in &rows {
        let i = r.get::<_, i64>(0) as usize;
        if let Some(seq) = root.sequences.get(i) {
            same[i] = r.get::<_, i64>(1) == seq.last_value && r.get::<_, bool>(2) == seq.is_called;
        }
    }
    let mut sql = String::new();
    let mut called = Vec::new();
    for (seq, same) in root.sequences.iter().zip(same) {
        if same {
            continue;
        }
        let q = qualified(&seq.sequence);
        if !transactional {
            called.push(format!(
                "pg_catalog.setval({}::regclass, {}, {})",
                literal(&q),
                seq.last_value,
                seq.is_called
            ));
            continue;
        }
        // A new file for the sequence, which a rollback drops: setval on it is undone too.
        sql += &format!("ALTER SEQUENCE {q} RESTART WITH {};\n", seq.last_value);
        if seq.is_called {
            called.push(format!(
                "pg_catalog.setval({}::regclass, {}, true)",
                literal(&q),
                seq.last_value
            ));
        }
    }
    if !called.is_empty() {
        sql += &format!("SELECT {};", called.join(", "));
    }
    if !sql.is_empty() {
        client
            .batch_execute(&sql)
            .await
            .map_err(pg("setting sequences"))?;
    }
    Ok(root.sequences.len() as u64)
}

pub(crate) async fn refresh_materialized_views(client: &Client, root: &RootManifest) -> Result<()> {
    if root.materialized_views.is_empty() {
        return Ok(());
    }
    for mv in catalog::materialized_views_in_creation_order(client)
        .await?
        .iter()
        .filter(|mv| root.materialized_views.contains(mv))
    {
        client
            .batch_execute(&format!("REFRESH MATERIALIZED VIEW {}", qualified(mv)))
            .await
            .map_err(pg(format!("refreshing materialized view {mv}")))?;
    }
    Ok(())
}

/// A stored schema script, to run on a UTF-8 session (see [`with_utf8_client_encoding`]).
async fn text_blob<B: Backend>(store: &Store<B>, r: &phony_core::BlobRef) -> Result<String> {
    let plain = store.get_plain(&r.id, r.bytes).await?;
    String::from_utf8(plain)
        .map(with_utf8_client_encoding)
        .map_err(|_| {
            Error::Store(phony_core::Error::Corrupt {
                id: r.id,
                reason: "schema text is not UTF-8".into(),
            })
        })
}

/// A snapshot's two schema scripts (pre-data, post-data), fetched together.
pub(crate) async fn schema_scripts<B: Backend>(
    store: &Store<B>,
    root: &RootManifest,
) -> Result<(String, String)> {
    tokio::try_join!(
        text_blob(store, &root.pre_data),
        text_blob(store, &root.post_data)
    )
}

/// Streams a table's chunks from the store into `COPY … FROM STDIN`, fetching and
/// decoding ahead of the load.
pub(crate) async fn load_table<B: Backend + 'static>(
    client: &Client,
    store: &Arc<Store<B>>,
    table: &TableEntry,
    opts: &RestoreOptions,
) -> Result<()> {
    let chunks = store.table_chunks(table).await?;
    let cols = if table.columns.is_empty() {
        String::new()
    } else {
        format!(" ({})", ident_list(&table.columns))
    };
    let sql = format!(
        "COPY {}{cols} FROM STDIN WITH (FREEZE)",
        qualified(&table.table)
    );
    let sink = client
        .copy_in::<_, Bytes>(&sql)
        .await
        .map_err(pg(format!("loading table {}", table.table)))?;
    futures::pin_mut!(sink);
    let blobs = decoded_chunks(store, chunks, opts.prefetch);
    futures::pin_mut!(blobs);
    while let Some(plain) = blobs.try_next().await? {
        if let Some(p) = &opts.progress {
            p(plain.len() as u64);
        }
        sink.send(Bytes::from(plain))
            .await
            .map_err(pg(format!("loading table {}", table.table)))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(pg(format!("loading table {}", table.table)))?;
    Ok(())
}

/// For the rest of the transaction (`local`) or session, a superuser's DDL fires no event trigger but those
/// enabled `ALWAYS` (`session_replication_role = replica`): the user's event triggers must
/// not see the restore drop and recreate their objects, nor log it in tables it restores.
/// Only a superuser may create event triggers, and only one may hold them off.
pub(crate) async fn hold_event_triggers_off(client: &Client, local: bool) -> Result<()> {
    client
        .execute(
            "SELECT pg_catalog.set_config('session_replication_role', 'replica', $1)
             FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper",
            &[&local],
        )
        .await
        .map(drop)
        .map_err(pg("holding event triggers off"))
}

pub(crate) enum DropError {
    Locked,
    Other(Error),
}

/// Drops every user schema (not phony's own) and recreates `public` as PostgreSQL makes
/// it, unless the snapshot's DDL creates it itself.
pub(crate) async fn drop_user_schemas(
    client: &Client,
    server_version_num: u32,
    pre_data: &str,
) -> Result<(), DropError> {
    // Publications, foreign servers (with their user mappings) and foreign data wrappers
    // belong to the database, not to a schema; the snapshot's DDL recreates those it holds.
    // Wrappers of extensions go with their extension.
    let database_objects = client
        .query(
            "SELECT 'PUBLICATION', pubname::text FROM pg_catalog.pg_publication
             UNION ALL
             SELECT 'SERVER', srvname::text FROM pg_catalog.pg_foreign_server
             UNION ALL
             SELECT 'FOREIGN DATA WRAPPER', w.fdwname::text FROM pg_catalog.pg_foreign_data_wrapper w
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_foreign_data_wrapper'::regclass
                   AND d.objid = w.oid AND d.deptype = 'e')",
            &[],
        )
        .await
        .map_err(|e| DropError::Other(pg("reading publications and foreign servers")(e)))?;
    for row in database_objects {
        let (kind, name): (String, String) = (row.get(0), row.get(1));
        let sql = format!("DROP {kind} IF EXISTS {} CASCADE", ident(&name));
        if let Err(e) = client.batch_execute(&sql).await {
            if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(DropError::Locked);
            }
            return Err(DropError::Other(pg(format!(
                "dropping {} {name}",
                kind.to_lowercase()
            ))(e)));
        }
    }
    let schemas = catalog::user_schemas(client)
        .await
        .map_err(DropError::Other)?;
    for schema in schemas.iter().filter(|s| *s != PHONY_SCHEMA) {
        let sql = format!("DROP SCHEMA {} CASCADE", ident(schema));
        if let Err(e) = client.batch_execute(&sql).await {
            if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(DropError::Locked);
            }
            return Err(DropError::Other(Error::Postgres {
                context: format!("replacing schema {schema}"),
                message: describe(&e),
                code: crate::error::sqlstate(&e),
            }));
        }
    }
    let creates_public = pre_data
        .lines()
        .any(|l| l.starts_with("CREATE SCHEMA public"));
    if !creates_public {
        // The state initdb gives `public`; pg_dump writes only what differs from it.
        let sql = if server_version_num >= 150000 {
            "CREATE SCHEMA public AUTHORIZATION pg_database_owner; \
             GRANT USAGE ON SCHEMA public TO PUBLIC; \
             COMMENT ON SCHEMA public IS 'standard public schema';"
                .to_owned()
        } else {
            let owner: String = client
                .query_one(
                    "SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = 10",
                    &[],
                )
                .await
                .map_err(|e| DropError::Other(pg("reading the bootstrap role")(e)))?
                .get(0);
            format!(
                "CREATE SCHEMA public AUTHORIZATION {}; GRANT ALL ON SCHEMA public TO PUBLIC; \
                 COMMENT ON SCHEMA public IS 'standard public schema';",
                ident(&owner)
            )
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| DropError::Other(pg("recreating schema public")(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_of_pg_dump_scripts_are_found() {
        let pre = "SET statement_timeout = 0;\nSET lock_timeout = 0;\n\
                   SELECT pg_catalog.set_config('search_path', '', false);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\n  SET x = 1;\n$$;\n\
                   SET default_tablespace = '';\n";
        let post = "SET lock_timeout = 0;\nSET client_min_messages TO warning;\n";
        assert_eq!(
            script_settings(&[pre, post]),
            [
                "statement_timeout",
                "lock_timeout",
                "search_path",
                "default_tablespace",
                "client_min_messages"
            ]
        );
    }
}
