//! Rows put back from the change log's images, without reading the snapshot.

use super::TableChange;
use crate::error::{pg, Result};
use crate::session::Session;
use crate::sql::{column_list, ident, ident_list, literal, qualified};
use crate::tracking::{since_mark, LoggedRelation, Mark};

/// Puts back, from the change log's row images, every row of `rel` that changed since the
/// mark: no snapshot data is read. The caller has checked that `rel` has a primary key and
/// that no other relation of its partition tree has entries.
///
/// The first entry of each key since the mark holds the row as the snapshot has it (no
/// image: the key did not exist then). Rows whose key the snapshot lacks are deleted, rows
/// it has are updated in place where they exist (see [`LoggedRelation::in_place`]; else
/// deleted and inserted again), and inserted where they do not.
///
/// `logging` says what the log learns of the rewrite (see [`Logging`]).
///
/// One statement (two where rows cannot be updated in place), prepared once per session:
/// concurrent calls on one session pipeline.
pub(crate) async fn restore_from_log(
    session: &Session,
    rel: &LoggedRelation,
    mark: &Mark,
    logging: Logging,
) -> Result<TableChange> {
    let context = format!("rewriting rows of {}", rel.name);
    let sql = Statements::new(rel, logging);
    let client = session.client();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&rel.relid, &mark.snap];
    let (rewrite, put) = match &sql.put {
        None => (session.prepared(&sql.rewrite).await, None),
        Some(put) => {
            let (rewrite, put) =
                tokio::join!(session.prepared(&sql.rewrite), session.prepared(put));
            (rewrite, Some(put.map_err(pg(&context))?))
        }
    };
    let rewrite = rewrite.map_err(pg(&context))?;
    let counts = client
        .query_one(&rewrite, &params)
        .await
        .map_err(pg(&context))?;
    let change = TableChange {
        table: rel.table.clone(),
        deleted: counts.get::<_, i64>(0) as u64,
        inserted: counts.get::<_, i64>(1) as u64,
        updated: counts.get::<_, i64>(2) as u64,
    };
    if let Some(put) = put.filter(|_| change.inserted + change.updated > 0) {
        client.execute(&put, &params).await.map_err(pg(&context))?;
    }
    Ok(change)
}

/// What a rewrite from the log tells the log, for the marks of other snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logging {
    /// Each row is compared with its image as text; those that differ are rewritten and
    /// logged with their current image. Exact counts (a row changed and changed back is
    /// left alone): for dry runs.
    Images,
    /// Every logged key's row is rewritten without comparing (no row is converted to
    /// text), and logged by key: with [`UNKNOWN_IMAGE`] where a row existed, no image where
    /// none did. A restore to another mark reads those rows from its snapshot.
    Keys,
    /// Nothing is logged (no other mark needs it); rows are rewritten without comparing.
    Nothing,
}

/// The `img` of a log entry for a row that existed but whose image was not logged: a
/// restore to a mark before it reads the row from the snapshot in the store. Never a row's
/// text, which always starts with `(`.
pub(crate) const UNKNOWN_IMAGE: &str = "";

/// The SQL of one relation's rewrite. Parameters: `$1` the relation id, `$2` the mark's
/// snapshot. `rewrite` returns the rows the restore deletes, inserts and updates, and a
/// fourth count that only forces every part of the statement to run; `put`, when rows are
/// not updated in place, inserts the rows `rewrite` deleted or found missing.
struct Statements {
    rewrite: String,
    put: Option<String>,
}

impl Statements {
    fn new(rel: &LoggedRelation, logging: Logging) -> Self {
        let t = qualified(&rel.table);
        let key_of = |alias: &str| column_list(alias, &rel.key);
        let logged_key = |alias: &str| {
            rel.key_types
                .iter()
                .enumerate()
                .map(|(i, ty)| format!("{alias}.key[{}]::{ty}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let matches = |alias: &str| format!("({}) = ({})", key_of("t"), logged_key(alias));
        let cols = ident_list(&rel.columns);
        let fields = |columns: &[&String]| {
            columns
                .iter()
                .map(|c| format!("(x.r).{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all: Vec<&String> = rel.columns.iter().collect();
        let non_key: Vec<&String> = rel
            .columns
            .iter()
            .filter(|c| !rel.key.contains(c))
            .collect();
        // The first entry of each key since the mark: its image is the row as the snapshot
        // has it (none: the key did not exist then). Keys are told apart, and sorted, as
        // values of their columns' types, the way the table's key tells rows apart (and an
        // `int8` sorts several times faster than a `text[]`).
        let typed = logged_key("phony.changes");
        let first = format!(
            "SELECT DISTINCT ON ({typed}) key, img FROM phony.changes
             WHERE relid = $1 AND key IS NOT NULL AND {}
             ORDER BY {typed}, seq",
            since_mark("$2::text")
        );
        // `live`: the row now, as text when its image is compared and logged, else whether
        // it exists. `differs`: the row must be rewritten.
        let (live, present, differs) = match logging {
            Logging::Images => (
                format!("(SELECT t::text FROM {t} AS t WHERE {})", matches("f")),
                "c.live IS NOT NULL",
                "c.live IS DISTINCT FROM c.img",
            ),
            Logging::Keys | Logging::Nothing => (
                format!("EXISTS (SELECT 1 FROM {t} AS t WHERE {})", matches("f")),
                "c.live",
                "true",
            ),
        };
        let logged = match logging {
            Logging::Images => "logged AS (INSERT INTO phony.changes (relid, key, img)
                        SELECT $1, c.key, c.live FROM cur AS c WHERE c.live IS DISTINCT FROM c.img
                        RETURNING 1),"
                .to_owned(),
            // Every key whose row changes: it exists now, or will.
            Logging::Keys => format!(
                "logged AS (INSERT INTO phony.changes (relid, key, img)
                            SELECT $1, c.key, CASE WHEN c.live THEN {} END FROM cur AS c
                            WHERE c.live OR c.img IS NOT NULL
                            RETURNING 1),",
                literal(UNKNOWN_IMAGE)
            ),
            Logging::Nothing => "logged AS (SELECT 1 WHERE false),".to_owned(),
        };
        // OFFSET 0 keeps the subqueries from being flattened, which would parse each image
        // once per column instead of once.
        let insert_missing = |extra: &str| {
            format!(
                "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE
                 SELECT {} FROM (SELECT c.img::{t} AS r FROM cur AS c
                                 WHERE c.img IS NOT NULL {extra} OFFSET 0) AS x",
                fields(&all)
            )
        };
        let counts = format!(
            "SELECT count(*) FILTER (WHERE c.img IS NULL AND {present}),
                    count(*) FILTER (WHERE c.img IS NOT NULL AND NOT ({present})),
                    count(*) FILTER (WHERE c.img IS NOT NULL AND {present} AND {differs}),
                    (SELECT count(*) FROM logged) + (SELECT count(*) FROM gone)
                      + (SELECT count(*) FROM changed)
             FROM cur AS c"
        );
        let cur = format!(
            "WITH f AS ({first}),
                  cur AS MATERIALIZED (SELECT f.key, f.img, {live} AS live FROM f),
                  {logged}"
        );
        if rel.in_place && !non_key.is_empty() {
            let rewrite = format!(
                "{cur}
                 gone AS (DELETE FROM {t} AS t USING cur AS c
                          WHERE c.img IS NULL AND {present} AND {} RETURNING 1),
                 updated AS (UPDATE {t} AS t SET ({}) = ROW({})
                             FROM (SELECT c.key, c.img::{t} AS r FROM cur AS c
                                   WHERE c.img IS NOT NULL AND {present} AND {differs} OFFSET 0) AS x
                             WHERE {} RETURNING 1),
                 inserted AS ({} RETURNING 1),
                 changed AS (SELECT 1 FROM updated UNION ALL SELECT 1 FROM inserted)
                 {counts}",
                matches("c"),
                ident_list(&non_key.iter().map(|c| (*c).clone()).collect::<Vec<_>>()),
                fields(&non_key),
                matches("x"),
                insert_missing(&format!("AND NOT ({present})")),
            );
            return Statements { rewrite, put: None };
        }
        // Delete every row that differs first, then insert: no unique constraint sees a
        // value held by two rows midway.
        let rewrite = format!(
            "{cur}
             gone AS (DELETE FROM {t} AS t USING cur AS c
                      WHERE {present} AND {differs} AND {} RETURNING 1),
             changed AS (SELECT 1 WHERE false)
             {counts}",
            matches("c"),
        );
        let put = format!(
            "WITH f AS ({first}),
                  cur AS (SELECT f.key, f.img FROM f)
             {}",
            insert_missing(&format!(
                "AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {})",
                matches("c")
            ))
        );
        Statements {
            rewrite,
            put: Some(put),
        }
    }
}
