//! What the change log names since a mark: whether a table changed, which relations did,
//! and the SQL that rewrites their rows from the log.

use phony_core::QualifiedName;
use tokio_postgres::Client;

use crate::error::{pg, Result};
use crate::session::Session;
use crate::sql::literal;

/// The condition "this log entry's transaction is one the mark does not see", for a mark
/// given as SQL text (`$2::text`, a literal). The lower bound on `xid` is implied by the
/// visibility test; it is spelled out so the index on `xid` serves the read.
pub(crate) fn since_mark(mark: &str) -> String {
    let snap = format!("{mark}::pg_catalog.pg_snapshot");
    format!(
        "xid >= pg_catalog.pg_snapshot_xmin({snap}) \
         AND NOT pg_catalog.pg_visible_in_snapshot(xid, {snap})"
    )
}

/// A point at which the database held a snapshot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `pg_snapshot` text.
    pub snap: String,
}

/// What the log says about a table since a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logged {
    Unchanged,
    /// Some keys changed; they can be listed.
    Keys,
    /// The whole table must be compared (TRUNCATE, or no key).
    Whole,
}

pub(crate) async fn logged(client: &Client, relids: &[u32], mark: &Mark) -> Result<Logged> {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) > 0, coalesce(bool_or(key IS NULL), false) FROM phony.changes
                 WHERE relid = ANY($1) AND {}",
                since_mark("$2::text")
            ),
            &[&relids, &mark.snap],
        )
        .await
        .map_err(pg("reading the change log"))?;
    let (any, whole): (bool, bool) = (row.get(0), row.get(1));
    Ok(match (any, whole) {
        (false, _) => Logged::Unchanged,
        (true, true) => Logged::Whole,
        (true, false) => Logged::Keys,
    })
}

/// A relation the log names since a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedRelation {
    pub relid: u32,
    /// Quoted, schema-qualified name (`regclass` text).
    pub name: String,
    pub table: QualifiedName,
    /// Primary key columns (none: the table has no primary key) and their types, with
    /// their collations (see [`crate::read::catalog::COLUMN_TYPE_OF_A`]).
    pub key: Vec<String>,
    pub key_types: Vec<String>,
    /// Stored (not generated) columns, in order.
    pub columns: Vec<String>,
    /// Whole-table entries (TRUNCATE, no key): compare content.
    pub whole: bool,
    /// Entries for rows whose image was not logged (written by restores of earlier
    /// versions, which logged their rewrites by key): the snapshot, not the log, has those
    /// rows.
    pub unknown: bool,
    /// Partition ancestors (excluding itself) and descendants that have entries too.
    pub tree: Vec<u32>,
    /// Rows may be put back by updating them in place (see [`in_place_sql`]).
    pub in_place: bool,
}

/// Whether the rows of the relation whose oid is `relid` (an SQL expression) may be put
/// back by updating them in place: no unique or exclusion constraint but the primary key
/// (an update in place could trip over it midway, where a row takes a value another row
/// has not yet given up), no column outside the primary key generated always as identity
/// (which an update may not set), and a primary key whose values are equal only when they
/// are spelled the same (see [`EXACT_KEY_TYPES`]): an update in place keeps the key as the
/// table spells it, where the snapshot may spell an equal key otherwise (`Bob@x` and
/// `bob@x` under `citext`, `1.0` and `1.00`, `-0` and `0`). Otherwise rows are deleted,
/// then inserted. (`OFFSET 0` keeps the planner from turning the last test into one hash
/// over every key column of the database, ~1 ms, instead of index lookups per relation.)
pub(crate) fn in_place_sql(relid: &str) -> String {
    format!(
        "(NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                      WHERE i.indrelid = {relid} AND NOT i.indisprimary
                        AND (i.indisunique OR i.indisexclusion))
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = {relid} AND a.attidentity = 'a'
                            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index p
                                            WHERE p.indrelid = {relid} AND p.indisprimary
                                              AND a.attnum = ANY (p.indkey)))
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index p
                          JOIN pg_catalog.pg_attribute a
                            ON a.attrelid = p.indrelid AND a.attnum = ANY (p.indkey)
                          LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                          WHERE p.indrelid = {relid} AND p.indisprimary
                            AND NOT (a.atttypid = ANY ({EXACT_KEY_TYPES}::pg_catalog.regtype[])
                                     AND coalesce(co.collisdeterministic, true))
                          OFFSET 0))"
    )
}

/// Types whose equal values are spelled the same (under a deterministic collation, for
/// `text` and `varchar`): a key of these alone may be updated in place.
const EXACT_KEY_TYPES: &str = "'{bool,bytea,smallint,integer,bigint,oid,text,varchar,uuid,\
                                date,time,timestamp,timestamptz}'";

/// The primary key's columns `a` of the relation `c.relid`, in key order: index lookups per
/// logged relation (a join over all key columns of the database scans every column of
/// every table, system catalogs included, which cost a reset ~1 ms).
const KEY_COLUMNS_OF_C: &str = "FROM pg_catalog.pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = c.relid AND i.indisprimary ORDER BY k.ord";

/// Every relation with log entries since `mark`, with what rewriting its rows needs.
pub(crate) async fn logged_relations(
    session: &Session,
    mark: &Mark,
) -> Result<Vec<LoggedRelation>> {
    let context = "reading the change log";
    let statement = session
        .prepared(&format!(
            "WITH c AS (SELECT relid, bool_or(key IS NULL) AS whole,
                               coalesce(bool_or(img = {unknown}), false) AS unknown FROM phony.changes
                        WHERE relid <> 0 AND {}
                        GROUP BY relid)
             SELECT c.relid, c.relid::regclass::text, n.nspname::text, r.relname::text, c.whole,
                    ARRAY(SELECT o.relid FROM c o WHERE o.relid <> c.relid AND (
                        o.relid IN (SELECT relid FROM pg_catalog.pg_partition_ancestors(c.relid))
                        OR c.relid IN (SELECT relid FROM pg_catalog.pg_partition_ancestors(o.relid)))),
                    ARRAY(SELECT a.attname::text {key_of_c}),
                    ARRAY(SELECT {key_type} {key_of_c}),
                    ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = c.relid AND a.attnum > 0 AND NOT a.attisdropped
                            AND a.attgenerated = ''
                          ORDER BY a.attnum),
                    {in_place},
                    c.unknown
             FROM c JOIN pg_catalog.pg_class r ON r.oid = c.relid
             JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace",
            since_mark("$1::text"),
            unknown = literal(UNKNOWN_IMAGE),
            in_place = in_place_sql("c.relid"),
            key_of_c = KEY_COLUMNS_OF_C,
            key_type = crate::read::catalog::COLUMN_TYPE_OF_A,
        ))
        .await
        .map_err(pg(context))?;
    let rows = session
        .client()
        .query(&statement, &[&mark.snap])
        .await
        .map_err(pg(context))?;
    Ok(rows
        .iter()
        .map(|r| LoggedRelation {
            relid: r.get(0),
            name: r.get(1),
            table: QualifiedName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
            whole: r.get(4),
            tree: r.get(5),
            key: r.get(6),
            key_types: r.get(7),
            columns: r.get(8),
            in_place: r.get(9),
            unknown: r.get(10),
        })
        .collect())
}

/// The `img` of a log entry for a row that existed but whose image was not logged (restores
/// of earlier versions logged their rewrites so): a restore to a mark before it reads the
/// row from the snapshot in the store. Never a row's text, which always starts with `(`.
pub(crate) const UNKNOWN_IMAGE: &str = "";
