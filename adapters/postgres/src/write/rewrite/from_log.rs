//! Rows put back from the change log's images, without reading the snapshot.

use crate::error::{pg, Result};
use crate::session::Session;
use crate::sql::{column_list, ident, ident_list, qualified};
use crate::tracking::{since_mark, LoggedRelation, Mark};
use crate::write::restore::plan::TableRewrite;

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
) -> Result<TableRewrite> {
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
    let change = TableRewrite {
        table: rel.table.clone(),
        deleted: counts.get::<_, i64>(0) as u64,
        inserted: counts.get::<_, i64>(1) as u64,
        updated: counts.get::<_, i64>(2) as u64,
        reloaded: None,
    };
    if let Some(put) = put.filter(|_| change.inserted + change.updated > 0) {
        client.execute(&put, &params).await.map_err(pg(&context))?;
    }
    Ok(change)
}

/// What a rewrite from the log tells the log, for the marks of other snapshots. Either
/// way each logged key's row is compared with its image as text and rewritten only where
/// they differ: a row changed and changed back, or deleted and inserted again as it was,
/// is left alone and not counted, so a restore counts what its dry run and `diff` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logging {
    /// The rewritten rows are logged with their current image (other marks, or a dry run).
    Images,
    /// Nothing is logged (no other mark needs it).
    Nothing,
}

/// The SQL of one relation's rewrite. Parameters: `$1` the relation id, `$2` the mark's
/// snapshot. `rewrite` returns the rows the restore deletes, inserts and updates, and a
/// fourth count that only forces every part of the statement to run; `put`, when rows are
/// not updated in place, inserts the rows `rewrite` deleted or found missing.
struct Statements {
    rewrite: String,
    put: Option<String>,
}

/// The pieces of SQL both kinds of rewrite are made of.
struct Parts<'a> {
    rel: &'a LoggedRelation,
    /// The table, qualified.
    t: String,
    /// The first entry of each key since the mark (`key`, `img`).
    first: String,
}

impl<'a> Parts<'a> {
    fn new(rel: &'a LoggedRelation) -> Self {
        // The first entry of each key since the mark: its image is the row as the snapshot
        // has it (none: the key did not exist then). Keys are told apart, and sorted, as
        // values of their columns' types, the way the table's key tells rows apart (and an
        // `int8` sorts several times faster than a `text[]`).
        let typed = Self::logged_key(rel, "phony.changes");
        let first = format!(
            "SELECT DISTINCT ON ({typed}) key, img FROM phony.changes
             WHERE relid = $1 AND key IS NOT NULL AND {}
             ORDER BY {typed}, seq",
            since_mark("$2::text")
        );
        Parts {
            rel,
            t: qualified(&rel.table),
            first,
        }
    }

    /// The logged key of the entry `alias`, as values of the key's types.
    fn logged_key(rel: &LoggedRelation, alias: &str) -> String {
        rel.key_types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("{alias}.key[{}]::{ty}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The row `t` has the key of the entry `alias`.
    fn matches(&self, alias: &str) -> String {
        format!(
            "({}) = ({})",
            column_list("t", &self.rel.key),
            Self::logged_key(self.rel, alias)
        )
    }

    /// The fields `columns` of the parsed image `r` of `alias`.
    fn fields(alias: &str, columns: &[&String]) -> String {
        columns
            .iter()
            .map(|c| format!("({alias}.r).{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn all(&self) -> Vec<&'a String> {
        self.rel.columns.iter().collect()
    }

    fn non_key(&self) -> Vec<&'a String> {
        self.rel
            .columns
            .iter()
            .filter(|c| !self.rel.key.contains(c))
            .collect()
    }

    /// Rows are updated in place: the table allows it and has columns besides its key.
    fn in_place(&self) -> bool {
        self.rel.in_place && !self.non_key().is_empty()
    }

    /// `(non-key columns) = ROW(their fields of the parsed image of alias)`, for an update.
    fn set_non_key(&self, alias: &str) -> String {
        let non_key = self.non_key();
        let names: Vec<String> = non_key.iter().map(|c| (*c).clone()).collect();
        format!(
            "({}) = ROW({})",
            ident_list(&names),
            Self::fields(alias, &non_key)
        )
    }

    /// Inserts the image of every entry of `cur` that has one and meets `extra`.
    // OFFSET 0 keeps the subquery from being flattened, which would parse each image once
    // per column instead of once.
    fn insert_images(&self, extra: &str) -> String {
        let t = &self.t;
        format!(
            "INSERT INTO {t} ({}) OVERRIDING SYSTEM VALUE
             SELECT {} FROM (SELECT c.img::{t} AS r FROM cur AS c
                             WHERE c.img IS NOT NULL {extra} OFFSET 0) AS x",
            ident_list(&self.rel.columns),
            Self::fields("x", &self.all())
        )
    }

    /// The statement that inserts, after `rewrite` deleted every row to be replaced, the
    /// images of the keys whose rows are missing.
    fn put(&self) -> String {
        format!(
            "WITH f AS ({}),
                  cur AS (SELECT f.key, f.img FROM f)
             {}",
            self.first,
            self.insert_images(&format!(
                "AND NOT EXISTS (SELECT 1 FROM {} AS t WHERE {})",
                self.t,
                self.matches("c")
            ))
        )
    }
}

impl Statements {
    fn new(rel: &LoggedRelation, logging: Logging) -> Self {
        let parts = Parts::new(rel);
        Self::compared(&parts, logging == Logging::Images)
    }

    /// Each row compared with its image as text; those that differ are rewritten and logged
    /// with their current image (see [`Logging::Images`]).
    fn compared(parts: &Parts, log: bool) -> Self {
        let (t, first) = (&parts.t, &parts.first);
        let logged = match log {
            true => {
                "INSERT INTO phony.changes (relid, key, img)
                     SELECT $1, c.key, c.live FROM cur AS c
                     WHERE c.live IS DISTINCT FROM c.img
                     RETURNING 1"
            }
            false => "SELECT 1 WHERE false",
        };
        // `live`: the row now, as text.
        let cur = format!(
            "WITH f AS ({first}),
                  cur AS MATERIALIZED (SELECT f.key, f.img,
                                              (SELECT t::text FROM {t} AS t WHERE {}) AS live
                                       FROM f),
                  logged AS ({logged}),",
            parts.matches("f")
        );
        let counts = "SELECT count(*) FILTER (WHERE c.img IS NULL AND c.live IS NOT NULL),
                             count(*) FILTER (WHERE c.img IS NOT NULL AND c.live IS NULL),
                             count(*) FILTER (WHERE c.img IS NOT NULL AND c.live IS NOT NULL
                                                AND c.live IS DISTINCT FROM c.img),
                             (SELECT count(*) FROM logged) + (SELECT count(*) FROM gone)
                               + (SELECT count(*) FROM changed)
                      FROM cur AS c";
        if parts.in_place() {
            let rewrite = format!(
                "{cur}
                 gone AS (DELETE FROM {t} AS t USING cur AS c
                          WHERE c.img IS NULL AND c.live IS NOT NULL AND {} RETURNING 1),
                 updated AS (UPDATE {t} AS t SET {}
                             FROM (SELECT c.key, c.img::{t} AS r FROM cur AS c
                                   WHERE c.img IS NOT NULL AND c.live IS NOT NULL
                                     AND c.live IS DISTINCT FROM c.img OFFSET 0) AS x
                             WHERE {} RETURNING 1),
                 inserted AS ({} RETURNING 1),
                 changed AS (SELECT 1 FROM updated UNION ALL SELECT 1 FROM inserted)
                 {counts}",
                parts.matches("c"),
                parts.set_non_key("x"),
                parts.matches("x"),
                parts.insert_images("AND c.live IS NULL"),
            );
            return Statements { rewrite, put: None };
        }
        // Delete every row that differs first, then insert: no unique constraint sees a
        // value held by two rows midway.
        let rewrite = format!(
            "{cur}
             gone AS (DELETE FROM {t} AS t USING cur AS c
                      WHERE c.live IS NOT NULL AND c.live IS DISTINCT FROM c.img AND {}
                      RETURNING 1),
             changed AS (SELECT 1 WHERE false)
             {counts}",
            parts.matches("c"),
        );
        Statements {
            rewrite,
            put: Some(parts.put()),
        }
    }
}
