//! The three statements that turn a table into the snapshot's rows once the rows that
//! differ are staged (the live ones in `LIVE`, the snapshot's in `SNAP`): by primary key
//! (delete, update, insert) or, for a table without one, as a multiset of whole rows; or,
//! for a table without one whose differing live rows' places are known, two.

use bytes::Bytes;
use futures::SinkExt;
use phony_core::{row, TableEntry};
use tokio_postgres::Client;

use crate::error::{pg, Result};
use crate::sql::{column_list, ident, ident_list};
use crate::write::restore::plan::TableRewrite;

pub(crate) const LIVE: &str = "pg_temp.phony_live";

pub(crate) const SNAP: &str = "pg_temp.phony_snap";

pub(crate) const MULTISET: &str = "pg_temp.phony_multiset";

pub(crate) fn row_of(alias: &str, columns: &[String]) -> String {
    format!("ROW({})::text", column_list(alias, columns))
}

pub(crate) fn key_eq(a: &str, b: &str, key: &[String]) -> String {
    key.iter()
        .map(|k| format!("{a}.{k} = {b}.{k}", k = ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Rewrites the rows that differ between the staged live and snapshot rows: updated in
/// place where `in_place` (see [`crate::tracking::in_place_sql`]), else deleted and
/// inserted again.
pub(crate) async fn apply_keyed(
    client: &Client,
    entry: &TableEntry,
    t: &str,
    in_place: bool,
) -> Result<TableRewrite> {
    let key = &entry.key;
    let cols = ident_list(&entry.columns);
    let s_cols: Vec<String> = entry
        .columns
        .iter()
        .map(|c| format!("s.{}", ident(c)))
        .collect();
    let context = format!("rewriting rows of {}", entry.table);
    if !in_place {
        // Every live row that is not the snapshot's goes, then every snapshot row that is
        // not live comes: no unique constraint sees a value held by two rows midway.
        let same = format!(
            "{} AND {} IS NOT DISTINCT FROM {}",
            key_eq("s", "l", key),
            row_of("s", &entry.columns),
            row_of("l", &entry.columns)
        );
        let gone = client
            .query_one(
                &format!(
                    "WITH d AS (DELETE FROM ONLY {t} AS t USING {LIVE} l WHERE {} \
                                AND NOT EXISTS (SELECT 1 FROM {SNAP} s WHERE {same}) \
                                RETURNING EXISTS (SELECT 1 FROM {SNAP} s WHERE {}) AS kept) \
                     SELECT count(*) FILTER (WHERE NOT kept), count(*) FILTER (WHERE kept) FROM d",
                    key_eq("t", "l", key),
                    key_eq("s", "t", key)
                ),
                &[],
            )
            .await
            .map_err(pg(context.clone()))?;
        let (deleted, updated) = (gone.get::<_, i64>(0) as u64, gone.get::<_, i64>(1) as u64);
        let put = client
            .execute(
                &format!(
                    "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {} FROM {SNAP} s \
                     WHERE NOT EXISTS (SELECT 1 FROM {LIVE} l WHERE {same})",
                    s_cols.join(", ")
                ),
                &[],
            )
            .await
            .map_err(pg(context))?;
        return Ok(TableRewrite {
            table: entry.table.clone(),
            deleted,
            inserted: put.saturating_sub(updated),
            updated,
            reloaded: None,
        });
    }
    let deleted = client
        .execute(
            &format!(
                "DELETE FROM ONLY {t} AS t USING {LIVE} l WHERE {} \
                 AND NOT EXISTS (SELECT 1 FROM {SNAP} s WHERE {})",
                key_eq("t", "l", key),
                key_eq("s", "l", key)
            ),
            &[],
        )
        .await
        .map_err(pg(context.clone()))?;
    let non_key: Vec<&String> = entry.columns.iter().filter(|c| !key.contains(c)).collect();
    let updated = if non_key.is_empty() {
        0
    } else {
        let set: Vec<String> = non_key
            .iter()
            .map(|c| format!("{c} = s.{c}", c = ident(c)))
            .collect();
        client
            .execute(
                &format!(
                    "UPDATE ONLY {t} AS t SET {} FROM {SNAP} s JOIN {LIVE} l ON {} \
                     WHERE {} AND {} IS DISTINCT FROM {}",
                    set.join(", "),
                    key_eq("s", "l", key),
                    key_eq("t", "s", key),
                    row_of("s", &entry.columns),
                    row_of("l", &entry.columns)
                ),
                &[],
            )
            .await
            .map_err(pg(context.clone()))?
    };
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {} FROM {SNAP} s \
                 WHERE NOT EXISTS (SELECT 1 FROM {LIVE} l WHERE {})",
                s_cols.join(", "),
                key_eq("s", "l", key)
            ),
            &[],
        )
        .await
        .map_err(pg(context))?;
    Ok(TableRewrite {
        table: entry.table.clone(),
        deleted,
        inserted,
        updated,
        reloaded: None,
    })
}

/// Makes a table without a key hold the snapshot's rows, as a multiset of whole rows: the
/// copies of each distinct row to remove and to add are counted first. Removing them means
/// finding each one by its text among all the live rows; when they are many (at least half
/// as many as the snapshot's rows), deleting every row and copying the snapshot's in
/// (`reload`) costs less, and the table is reloaded instead (the counts stay the rows that
/// differ).
pub(crate) async fn apply_multiset(
    client: &Client,
    entry: &TableEntry,
    t: &str,
    reload: impl std::future::Future<Output = Result<()>>,
) -> Result<TableRewrite> {
    let context = format!("rewriting rows of {}", entry.table);
    let cols = ident_list(&entry.columns);
    let s_cols: Vec<String> = entry
        .columns
        .iter()
        .map(|c| format!("z.{}", ident(c)))
        .collect();
    // How many copies of each distinct row to remove (n > 0) or add (n < 0).
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE phony_multiset AS \
             SELECT txt, sum(n)::int8 AS n FROM ( \
               SELECT {} AS txt, 1 AS n FROM {LIVE} l UNION ALL SELECT {}, -1 FROM {SNAP} s \
             ) x GROUP BY txt HAVING sum(n) <> 0",
            row_of("l", &entry.columns),
            row_of("s", &entry.columns)
        ))
        .await
        .map_err(pg(context.clone()))?;
    let sums = client
        .query_one(
            &format!(
                "SELECT coalesce(sum(n) FILTER (WHERE n > 0), 0)::int8, \
                        coalesce(-sum(n) FILTER (WHERE n < 0), 0)::int8 FROM {MULTISET}"
            ),
            &[],
        )
        .await
        .map_err(pg(context.clone()))?;
    let (to_delete, to_insert) = (
        sums.get::<_, i64>(0).max(0) as u64,
        sums.get::<_, i64>(1).max(0) as u64,
    );
    if let Some(why) = reload_reason(to_delete + to_insert, entry.content.rows) {
        client
            .batch_execute(&format!("DROP TABLE {MULTISET}; DELETE FROM ONLY {t}"))
            .await
            .map_err(pg(context))?;
        reload.await?;
        return Ok(TableRewrite {
            table: entry.table.clone(),
            deleted: to_delete,
            inserted: to_insert,
            updated: 0,
            reloaded: Some(why),
        });
    }
    let deleted = client
        .execute(
            &format!(
                "DELETE FROM ONLY {t} WHERE ctid IN ( \
                   SELECT z.ctid FROM ( \
                     SELECT t2.ctid, {txt} AS txt, row_number() OVER (PARTITION BY {txt}) AS rn \
                     FROM ONLY {t} AS t2 WHERE {txt} IN (SELECT txt FROM {MULTISET} WHERE n > 0) \
                   ) z JOIN {MULTISET} d USING (txt) WHERE z.rn <= d.n)",
                txt = row_of("t2", &entry.columns)
            ),
            &[],
        )
        .await
        .map_err(pg(context.clone()))?;
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {} FROM ( \
                   SELECT s.*, {txt} AS phony_txt, row_number() OVER (PARTITION BY {txt}) AS phony_rn \
                   FROM {SNAP} s \
                 ) z JOIN {MULTISET} d ON d.txt = z.phony_txt WHERE d.n < 0 AND z.phony_rn <= -d.n",
                s_cols.join(", "),
                txt = row_of("s", &entry.columns)
            ),
            &[],
        )
        .await
        .map_err(pg(context.clone()))?;
    client
        .batch_execute(&format!("DROP TABLE {MULTISET}"))
        .await
        .map_err(pg(context))?;
    Ok(TableRewrite {
        table: entry.table.clone(),
        deleted,
        inserted,
        updated: 0,
        reloaded: None,
    })
}

/// Makes a table without a key hold the snapshot's rows given the live rows that differ by
/// their places (`at`, their `ctid`s, read under the restore's locks) and the snapshot's
/// rows that differ (`snap`, COPY text): the ones are deleted there, the others copied in.
pub(crate) async fn apply_located(
    client: &Client,
    entry: &TableEntry,
    t: &str,
    at: &[String],
    snap: Vec<u8>,
) -> Result<TableRewrite> {
    let context = format!("rewriting rows of {}", entry.table);
    let deleted = match at.is_empty() {
        true => 0,
        false => client
            .execute(
                &format!("DELETE FROM ONLY {t} WHERE ctid = ANY($1::text[]::tid[])"),
                &[&at],
            )
            .await
            .map_err(pg(context.clone()))?,
    };
    if deleted != at.len() as u64 {
        // The rows moved since they were read: nothing may be deleted blindly.
        return Err(crate::error::Error::Internal(format!(
            "{} of the {} rows of {} to delete were where they had been read",
            deleted,
            at.len(),
            entry.table
        )));
    }
    let inserted = row::lines(&snap).count() as u64;
    if inserted > 0 {
        let sql = format!("COPY {t} ({}) FROM STDIN", ident_list(&entry.columns));
        copy_in_rows(client, &sql, snap, &context).await?;
    }
    Ok(TableRewrite {
        table: entry.table.clone(),
        deleted,
        inserted,
        updated: 0,
        reloaded: None,
    })
}

/// Runs `sql`, a `COPY … FROM STDIN`, with `rows` (COPY text) as its input.
pub(crate) async fn copy_in_rows(
    client: &Client,
    sql: &str,
    rows: Vec<u8>,
    context: &str,
) -> Result<()> {
    let sink = client.copy_in::<_, Bytes>(sql).await.map_err(pg(context))?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(rows)).await.map_err(pg(context))?;
    sink.as_mut().finish().await.map_err(pg(context))?;
    Ok(())
}

/// Why a table without a key is cheaper to reload than to rewrite `differing` of its
/// snapshot's `rows` rows one by one, or `None` when it is not.
pub(crate) fn reload_reason(differing: u64, rows: u64) -> Option<String> {
    (differing > 0 && differing * 2 >= rows).then(|| {
        format!(
            "{differing} rows differ, against {rows} in the snapshot, and it has no key: \
             reloading it costs less than finding each row among the live ones"
        )
    })
}
