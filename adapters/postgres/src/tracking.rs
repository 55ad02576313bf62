//! Change tracking: triggers that log which rows change, so a restore (or a snapshot)
//! reads only those instead of comparing whole tables.
//!
//! Everything lives in the schema `phony`:
//! - `phony.changes (seq, relid, key, img, xid)`: one entry per changed row (statement-level
//!   triggers with transition tables, so the cost is one insert per statement, not a
//!   trigger call per row): the key, and for rows that existed before the statement their
//!   image (`row::text`); `key` NULL for "the whole table" (TRUNCATE, or a table without a
//!   primary key), `relid` 0 for a schema change (an event trigger). The first entry of a
//!   key after a mark holds the row as the mark saw it (or none: the key did not exist), so
//!   a tracked restore needs no snapshot data at all for keyed tables. The one exception
//!   is a restore's own rewrites, logged by key only (`img` empty where a row existed):
//!   a restore to a mark before them reads those tables' changed rows from its snapshot;
//! - `phony.marks (root, snap)`: for each snapshot captured from (or restored into) this
//!   database, the `pg_snapshot` at which the database held exactly that snapshot's state.
//!   Changes since a mark are the entries whose transaction that snapshot does not see;
//! - `phony.state`: the identity of this installation (database oid, the oid of
//!   `phony.changes`), so that a schema copied by another tool (a dump restored elsewhere, a
//!   template copy) is recognised as not ours and ignored: when in doubt, compare content.
//!
//! Every write phony makes to user tables is logged too, so marks of other snapshots stay
//! valid; a full restore clears the log and every mark but the restored snapshot's.

use phony_core::{BlobId, QualifiedName};
use tokio_postgres::{Client, GenericClient};

use crate::error::{pg, Error, Result};
use crate::read::catalog::PHONY_SCHEMA;
use crate::session::Session;
use crate::sql::{ident, qualified};

mod changes;

pub use changes::Mark;
pub(crate) use changes::{
    in_place_sql, logged, logged_relations, since_mark, Logged, LoggedRelation,
};

/// Prefix of the triggers phony installs on user tables and of its event triggers.
pub const TRIGGER_PREFIX: &str = "phony_track_";

/// Output settings under which row images are written and read back, so that an image
/// always parses to the same values, and is the text phony's own sessions print for the
/// row (see [`crate::connect::PINNED_SETTINGS`]): a row changed and changed back by a
/// session in another time zone compares equal to its image.
pub(crate) const IMAGE_SETTINGS: &str =
    "SET LOCAL datestyle = 'ISO, MDY'; SET LOCAL intervalstyle = 'postgres'; \
     SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; \
     SET LOCAL timezone = 'UTC';";

/// The user tables (and partitioned parents) `c` whose changes may go unlogged: one of
/// their four change-log triggers is missing or disabled. A `FROM … WHERE …` to follow a
/// select list (`n`: the table's schema).
macro_rules! untracked_tables_sql {
    () => {
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'phony')
            AND n.nspname NOT LIKE 'pg\\_%'
            AND (SELECT count(*) FROM pg_catalog.pg_trigger t
                 WHERE t.tgrelid = c.oid AND t.tgname LIKE 'phony\\_track\\_%'
                   AND t.tgenabled <> 'D') < 4 "
    };
}

/// The event triggers' functions. Each schema change logs, per object it created, altered
/// or dropped, an entry with `relid` 0 and `key` `{classid, objid}` (the object's catalog
/// and oid; `{0, 0}` for commands that name none, such as `GRANT`): a restore then
/// compares the rows of the tables those objects are or that use them (see
/// [`touched_sql`]) and trusts the log for every other table. An entry with `key` NULL
/// (written by earlier versions, or by a restore that did not log its rows) leaves no
/// table's log trusted. `CREATE OR REPLACE`: installing again brings an installation made
/// by an earlier version up to date.
macro_rules! event_functions {
    () => {
        r#"
CREATE OR REPLACE FUNCTION phony.track_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF pg_catalog.current_setting('phony.quiet', true) = 'on' THEN
        RETURN;
    END IF;
    INSERT INTO phony.changes (relid, key)
    SELECT DISTINCT 0, ARRAY[c.classid::text, c.objid::text]
    FROM pg_catalog.pg_event_trigger_ddl_commands() c
    WHERE coalesce(c.schema_name, '') NOT LIKE 'pg\_temp%'
      AND coalesce(c.schema_name, '') <> 'phony';
END
$fn$;

CREATE OR REPLACE FUNCTION phony.track_drop() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF pg_catalog.current_setting('phony.quiet', true) = 'on' THEN
        RETURN;
    END IF;
    -- A dropped column names its table (classid pg_class, objid the table's oid).
    INSERT INTO phony.changes (relid, key)
    SELECT DISTINCT 0, ARRAY[o.classid::text, o.objid::text]
    FROM pg_catalog.pg_event_trigger_dropped_objects() o
    WHERE NOT o.is_temporary AND coalesce(o.schema_name, '') <> 'phony';
END
$fn$;
"#
    };
}

const INSTALL: &str = concat!(
    r#"
CREATE SCHEMA phony;
COMMENT ON SCHEMA phony IS 'phony change tracking (phony track on|off); not part of any snapshot';
CREATE TABLE phony.changes (
    seq bigserial,
    relid oid NOT NULL,
    key text[],
    img text,
    xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
CREATE INDEX changes_xid ON phony.changes (xid);
CREATE INDEX changes_ddl ON phony.changes (xid) WHERE relid = 0;
CREATE TABLE phony.marks (
    root text PRIMARY KEY,
    snap pg_catalog.pg_snapshot NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE phony.state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    db_oid oid NOT NULL,
    changes_oid oid NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO phony.state (db_oid, changes_oid)
SELECT d.oid, 'phony.changes'::regclass::oid FROM pg_catalog.pg_database d
WHERE d.datname = pg_catalog.current_database();

CREATE FUNCTION phony.track_table() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO phony.changes (relid, key) VALUES (TG_RELID, NULL);
    RETURN NULL;
END
$fn$;

"#,
    event_functions!(),
    r#"
CREATE EVENT TRIGGER phony_track_ddl ON ddl_command_end EXECUTE FUNCTION phony.track_ddl();
CREATE EVENT TRIGGER phony_track_drop ON sql_drop EXECUTE FUNCTION phony.track_drop();
"#
);

/// Whether tracking is installed, and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingStatus {
    pub installed: bool,
    /// The installation belongs to this database (not copied in by another tool).
    pub valid: bool,
    pub tracked_tables: i64,
    pub untracked_tables: Vec<String>,
    pub log_entries: i64,
    pub marks: i64,
}

/// The query behind [`installed`].
const INSTALLED: &str = "SELECT pg_catalog.to_regclass('phony.state') IS NOT NULL";

/// Whether the installation is this database's own (one boolean; needs `phony.state`).
macro_rules! own_installation_sql {
    () => {
        "SELECT count(*) = 1 FROM phony.state s, pg_catalog.pg_database d
         WHERE d.datname = pg_catalog.current_database() AND s.db_oid = d.oid
           AND s.changes_oid = pg_catalog.to_regclass('phony.changes')::oid"
    };
}

/// Whether `phony.state` exists.
pub async fn installed(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one(INSTALLED, &[])
        .await
        .map_err(pg("looking for change tracking"))?;
    Ok(row.get(0))
}

/// Whether the installation is this database's own (see the module docs).
pub async fn valid(client: &impl GenericClient) -> Result<bool> {
    if !installed(client).await? {
        return Ok(false);
    }
    let row = client
        .query_one(own_installation_sql!(), &[])
        .await
        .map_err(pg("checking change tracking"))?;
    Ok(row.get(0))
}

/// Installs tracking (in the caller's transaction). Needs a superuser (event triggers).
pub async fn install(client: &Client) -> Result<()> {
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(pg("checking privileges"))?
        .get(0);
    if superuser {
        // phony's own DDL is not the user's: their event triggers must not log it.
        client
            .batch_execute("SET LOCAL session_replication_role = replica")
            .await
            .map_err(pg("holding event triggers off"))?;
    }
    if installed(client).await? {
        if valid(client).await? {
            if superuser {
                // An installation made by an earlier version logs schema changes as this
                // one does from now on.
                client
                    .batch_execute(event_functions!())
                    .await
                    .map_err(pg("updating change tracking"))?;
            }
            return install_table_triggers(client).await;
        }
        // A copy from elsewhere: start afresh.
        uninstall(client).await?;
    }
    if !superuser {
        return Err(Error::Internal(
            "change tracking needs a superuser (it installs event triggers to notice schema changes)".into(),
        ));
    }
    client
        .batch_execute(INSTALL)
        .await
        .map_err(pg("installing change tracking"))?;
    install_table_triggers(client).await
}

/// Turns tracking on in a database that holds `root`'s state right now (a fresh copy of a
/// snapshot, say), so that restores to `root` read only what changes from here on. Runs in a
/// transaction of its own.
pub async fn install_at(client: &Client, root: &BlobId) -> Result<()> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(pg("starting a transaction"))?;
    let result = async {
        install(client).await?;
        let snap = snapshot_after_commit(client).await?;
        record_mark(client, root, &snap, None).await
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(pg("ending the transaction"))?;
    result
}

/// Removes tracking: its event triggers, the triggers on user tables, the schema.
pub async fn uninstall(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "SET LOCAL phony.quiet = 'on';
             DROP EVENT TRIGGER IF EXISTS phony_track_ddl;
             DROP EVENT TRIGGER IF EXISTS phony_track_drop;
             DROP SCHEMA IF EXISTS {} CASCADE;",
            ident(PHONY_SCHEMA)
        ))
        .await
        .map_err(pg("removing change tracking"))
}

/// Installs the row triggers on every user table (and partitioned parent) that lacks them.
pub async fn install_table_triggers(client: &Client) -> Result<()> {
    let rows = client
        .query(
            concat!(
                "SELECT n.nspname::text, c.relname::text, c.oid,
                ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index i
                      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                      WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord)",
                untracked_tables_sql!(),
                "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"
            ),
            &[],
        )
        .await
        .map_err(pg("listing tables to track"))?;
    // Functions of tables that no longer exist (a full restore recreates tables).
    let mut sql = String::from(
        "SET LOCAL phony.quiet = 'on';
         CREATE INDEX IF NOT EXISTS changes_xid ON phony.changes (xid);
         CREATE INDEX IF NOT EXISTS changes_ddl ON phony.changes (xid) WHERE relid = 0;
         DO $drop$ DECLARE f regprocedure; BEGIN
           FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
                    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'phony' AND p.proname ~ '^t[0-9]+$'
                      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                      WHERE c.oid = substr(p.proname, 2)::oid)
           LOOP EXECUTE 'DROP FUNCTION ' || f; END LOOP;
         END $drop$;\n",
    );
    for r in rows {
        let table = QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let oid: u32 = r.get(2);
        let key: Vec<String> = r.get(3);
        sql += &table_triggers_sql(&table, oid, &key);
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(pg("installing change-tracking triggers"))
}

/// The triggers (and, for a keyed table, its own trigger function, with static SQL whose
/// plan each session caches) that log a table's changes.
fn table_triggers_sql(table: &QualifiedName, oid: u32, key: &[String]) -> String {
    let t = qualified(table);
    // Some may be there still (the others dropped, or disabled): all four start afresh.
    let mut sql: String = ["i", "u", "d", "truncate"]
        .iter()
        .map(|name| format!("DROP TRIGGER IF EXISTS {TRIGGER_PREFIX}{name} ON {t};\n"))
        .collect();
    if key.is_empty() {
        for (name, event) in [("i", "INSERT"), ("u", "UPDATE"), ("d", "DELETE")] {
            sql += &format!(
                "CREATE TRIGGER {TRIGGER_PREFIX}{name} AFTER {event} ON {t} FOR EACH STATEMENT EXECUTE FUNCTION phony.track_table();\n"
            );
        }
    } else {
        let parts: Vec<String> = key
            .iter()
            .map(|k| format!("r.{}::text", ident(k)))
            .collect();
        let k = format!("ARRAY[{}]", parts.join(", "));
        let f = format!("phony.t{oid}");
        sql += &format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql
             SET datestyle = 'ISO, MDY' SET intervalstyle = 'postgres' SET extra_float_digits = 3 SET bytea_output = 'hex' SET timezone = 'UTC'
             AS $fn$
             BEGIN
                 -- Old rows with their image (the row as it was), new keys without one.
                 IF TG_OP = 'INSERT' THEN
                     INSERT INTO phony.changes (relid, key) SELECT {oid}, {k} FROM phony_new r;
                 ELSIF TG_OP = 'DELETE' THEN
                     INSERT INTO phony.changes (relid, key, img) SELECT {oid}, {k}, r::text FROM phony_old r;
                 ELSE
                     INSERT INTO phony.changes (relid, key, img)
                     SELECT {oid}, {k}, r::text FROM phony_old r UNION ALL SELECT {oid}, {k}, NULL FROM phony_new r;
                 END IF;
                 RETURN NULL;
             END
             $fn$;\n\
             CREATE TRIGGER {TRIGGER_PREFIX}i AFTER INSERT ON {t} REFERENCING NEW TABLE AS phony_new FOR EACH STATEMENT EXECUTE FUNCTION {f}();\n\
             CREATE TRIGGER {TRIGGER_PREFIX}u AFTER UPDATE ON {t} REFERENCING OLD TABLE AS phony_old NEW TABLE AS phony_new FOR EACH STATEMENT EXECUTE FUNCTION {f}();\n\
             CREATE TRIGGER {TRIGGER_PREFIX}d AFTER DELETE ON {t} REFERENCING OLD TABLE AS phony_old FOR EACH STATEMENT EXECUTE FUNCTION {f}();\n"
        );
    }
    sql += &format!(
        "CREATE TRIGGER {TRIGGER_PREFIX}truncate AFTER TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION phony.track_table();\n"
    );
    sql
}

/// The state of tracking in this database.
pub async fn status(client: &Client) -> Result<TrackingStatus> {
    if !installed(client).await? {
        return Ok(TrackingStatus {
            installed: false,
            valid: false,
            tracked_tables: 0,
            untracked_tables: Vec::new(),
            log_entries: 0,
            marks: 0,
        });
    }
    let valid = valid(client).await?;
    let row = client
        .query_one(
            concat!(
                "SELECT (SELECT count(*) FROM phony.changes), (SELECT count(*) FROM phony.marks),
                    (SELECT count(DISTINCT tgrelid) FROM pg_catalog.pg_trigger WHERE tgname = 'phony_track_truncate'),
                    ARRAY(SELECT n.nspname || '.' || c.relname",
                untracked_tables_sql!(),
                "ORDER BY 1)"
            ),
            &[],
        )
        .await
        .map_err(pg("reading change tracking"))?;
    Ok(TrackingStatus {
        installed: true,
        valid,
        log_entries: row.get(0),
        marks: row.get(1),
        tracked_tables: row.get(2),
        untracked_tables: row.get(3),
    })
}

/// The mark of `root`, if tracking is valid here, the mark exists, and no schema change
/// (or untracked table) happened since.
pub async fn usable_mark(client: &impl GenericClient, root: &BlobId) -> Result<Option<Mark>> {
    if !valid(client).await? {
        return Ok(None);
    }
    mark_if_usable(client, root).await
}

/// Whether a schema change (or a restore that did not log its rows) happened since the
/// mark `m`, and whether some table is not tracked: either makes `m` unusable.
macro_rules! mark_unusable_sql {
    () => {
        concat!("EXISTS (SELECT 1 FROM phony.changes c
                 WHERE c.relid = 0 AND c.xid >= pg_catalog.pg_snapshot_xmin(m.snap) AND NOT pg_catalog.pg_visible_in_snapshot(c.xid, m.snap)),
         EXISTS (SELECT 1",
        untracked_tables_sql!(),
        ")")
    };
}

/// [`usable_mark`] for a caller that has checked [`valid`] already.
pub(crate) async fn mark_if_usable(
    client: &impl GenericClient,
    root: &BlobId,
) -> Result<Option<Mark>> {
    let row = client
        .query_opt(
            concat!(
                "SELECT m.snap::text, ",
                mark_unusable_sql!(),
                " FROM phony.marks m WHERE m.root = $1"
            ),
            &[&root.to_hex()],
        )
        .await
        .map_err(pg("reading the snapshot's mark"))?;
    Ok(row.and_then(|r| {
        let (snap, ddl, untracked): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
        (!ddl && !untracked).then_some(Mark { snap })
    }))
}

/// What a restore needs to know of tracking, read in two statements prepared once per
/// session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    /// Tracking is installed and this database's own.
    pub tracked: bool,
    /// The usable mark of the snapshot being restored.
    pub mark: Option<Mark>,
    /// Marks of other snapshots exist: the rows a restore rewrites must be logged with
    /// their images for them.
    pub other_marks: bool,
    /// No usable mark, because the schema changed since the snapshot's: the log is still
    /// trusted for the tables the change did not touch.
    pub partial: Option<Partial>,
}

pub(crate) async fn probe(session: &Session, root: &BlobId) -> Result<Probe> {
    let context = "checking change tracking";
    let installed = session.prepared(INSTALLED).await.map_err(pg(context))?;
    let client = session.client();
    let row = client
        .query_one(&installed, &[])
        .await
        .map_err(pg(context))?;
    if !row.get::<_, bool>(0) {
        return Ok(Probe::default());
    }
    let statement = session
        .prepared(concat!(
            "SELECT (",
            own_installation_sql!(),
            "),
                    EXISTS (SELECT 1 FROM phony.marks o WHERE o.root <> $1),
                    m.snap::text, ",
            mark_unusable_sql!(),
            " FROM (VALUES (1)) AS one (x) LEFT JOIN phony.marks m ON m.root = $1"
        ))
        .await
        .map_err(pg(context))?;
    let row = client
        .query_one(&statement, &[&root.to_hex()])
        .await
        .map_err(pg(context))?;
    let (tracked, other_marks, snap, ddl, untracked): (
        bool,
        bool,
        Option<String>,
        Option<bool>,
        Option<bool>,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if !tracked {
        return Ok(Probe::default());
    }
    if ddl == Some(false) && untracked == Some(false) {
        return Ok(Probe {
            tracked,
            mark: snap.map(|snap| Mark { snap }),
            other_marks,
            partial: None,
        });
    }
    // A schema change since the mark: the log may still be trusted for the tables it
    // did not touch.
    let partial = match snap {
        Some(snap) => {
            let statement = session
                .prepared(&touched_sql())
                .await
                .map_err(pg(context))?;
            let row = client
                .query_one(&statement, &[&snap])
                .await
                .map_err(pg(context))?;
            let (unknown, touched): (bool, Vec<u32>) = (row.get(0), row.get(1));
            (!unknown).then(|| Partial {
                mark: Mark { snap },
                touched: touched.into_iter().collect(),
            })
        }
        None => None,
    };
    Ok(Probe {
        tracked,
        mark: None,
        other_marks,
        partial,
    })
}

/// A mark whose log is trusted for every table but the `touched` ones (see [`touched_sql`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partial {
    pub mark: Mark,
    /// Relation ids.
    pub touched: std::collections::HashSet<u32>,
}

/// After a schema change since the mark `$1` (`pg_snapshot` text): whether an entry names
/// no object (no table's log is trusted then), and the tables whose rows the change may
/// have changed outside the log: the tables its entries name (a dropped column names its
/// table), the tables with a column of a type they name, through domains, arrays, ranges
/// and row types (as `pg_depend` records columns' types), the inheritance and partition
/// descendants of all those, and every table whose change-log triggers are not all there
/// and enabled (created since, or had them dropped or disabled).
fn touched_sql() -> String {
    format!(
        "WITH RECURSIVE
     e AS (SELECT key FROM phony.changes WHERE relid = 0 AND {}),
     o (classid, objid) AS (
         SELECT DISTINCT key[1]::oid, key[2]::oid FROM e WHERE pg_catalog.cardinality(key) = 2
         UNION
         SELECT g.classid, g.objid FROM o JOIN (
             SELECT d.refclassid, d.refobjid, d.classid, d.objid FROM pg_catalog.pg_depend d
             WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                OR (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid > 0)
             UNION ALL
             -- A relation's row type: a standalone composite type's relation (what
             -- `ALTER TYPE … ATTRIBUTE` names) depends on its type, not the other way.
             SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid,
                    'pg_catalog.pg_type'::pg_catalog.regclass, c.reltype
             FROM pg_catalog.pg_class c WHERE c.reltype <> 0) g
           ON g.refclassid = o.classid AND g.refobjid = o.objid),
     r (oid) AS (
         SELECT objid FROM o WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
         UNION
         SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN r ON i.inhparent = r.oid)
     SELECT EXISTS (SELECT 1 FROM e WHERE key IS NULL OR pg_catalog.cardinality(key) <> 2),
            ARRAY(SELECT oid FROM r
                  UNION
                  SELECT c.oid {})",
        since_mark("$1::text"),
        untracked_tables_sql!()
    )
}

/// Records, in the open restore transaction, that the database will hold `root`'s state once
/// it commits, then prunes marks and log entries as [`record_mark`] does. When the restore
/// did not log the rows it rewrote (`unlogged`), an entry says so, which makes every mark
/// that does not see this transaction unusable (as a schema change would).
pub(crate) async fn mark_after_commit(
    session: &Session,
    root: &BlobId,
    unlogged: bool,
) -> Result<()> {
    let context = "recording the snapshot's mark";
    let client = session.client();
    let mark = session
        .prepared(&format!(
            "INSERT INTO phony.marks (root, snap)
             SELECT $1, ({SNAPSHOT_AFTER_COMMIT})::pg_catalog.pg_snapshot
             ON CONFLICT (root) DO UPDATE SET snap = EXCLUDED.snap, marked_at = pg_catalog.now()"
        ))
        .await
        .map_err(pg(context))?;
    let root = root.to_hex();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&root];
    let prune = match unlogged {
        true => format!("INSERT INTO phony.changes (relid, key) VALUES (0, NULL); {PRUNE}"),
        false => PRUNE.to_owned(),
    };
    // Pipelined: the mark is written before the pruning reads the marks.
    let (marked, pruned) =
        tokio::join!(client.execute(&mark, &params), client.batch_execute(&prune));
    marked.map_err(pg(context))?;
    pruned.map_err(pg("pruning the change log"))?;
    Ok(())
}

/// A snapshot's place among the marks while it is being taken: from the moment its point
/// in time is fixed until it records its own mark, pruning keeps every log entry that point
/// in time does not see (a restore's rewrites, committed meanwhile, included).
#[derive(Debug)]
pub struct PendingMark {
    key: String,
}

/// Prefix of the `root` of a [`PendingMark`] (never a blob id).
const PENDING: &str = "pending:";

/// Begins, on `side` (a connection of its own), a transaction that keeps marks from being
/// pruned while the caller fixes its point in time; then [`hold_mark`]. `None` (and no
/// transaction) when tracking is not valid here.
pub async fn lock_marks(side: &Client) -> Result<Option<PendingMark>> {
    if !valid(side).await? {
        return Ok(None);
    }
    side.batch_execute(&format!("BEGIN; {LOCK_MARKS}"))
        .await
        .map_err(pg("locking snapshot marks"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok(Some(PendingMark {
        key: format!("{PENDING}{}:{nanos}", std::process::id()),
    }))
}

/// Holds the place of the snapshot whose point in time is `snap`, and ends `side`'s
/// transaction begun by [`lock_marks`].
pub async fn hold_mark(side: &Client, pending: &PendingMark, snap: &str) -> Result<()> {
    side.execute(
        "INSERT INTO phony.marks (root, snap) VALUES ($1, $2::text::pg_catalog.pg_snapshot)",
        &[&pending.key, &snap],
    )
    .await
    .map_err(pg("holding the snapshot's place among the marks"))?;
    side.batch_execute("COMMIT")
        .await
        .map_err(pg("holding the snapshot's place among the marks"))
}

/// Gives up a held place (the snapshot failed). Best effort: a place left behind by a
/// killed process expires after a day.
pub async fn release_mark(side: &Client, pending: &PendingMark) {
    let _ = side.batch_execute("ROLLBACK").await;
    if let Err(e) = side
        .execute("DELETE FROM phony.marks WHERE root = $1", &[&pending.key])
        .await
    {
        tracing::debug!("releasing a pending mark: {e}");
    }
}

/// Serialises pruning with captures fixing their point in time (an advisory lock: taking
/// it never waits for autovacuum, as a lock on `phony.marks` would). Its key is "phony_mk".
macro_rules! lock_marks_sql {
    () => {
        "SELECT pg_catalog.pg_advisory_xact_lock(8099846450099219819);"
    };
}

/// Keeps the newest [`MAX_MARKS`] marks, and the log entries some mark may still need:
/// every entry from the oldest mark's `xmin` on (an index range, not a scan of the log).
/// Snapshots being taken hold their place meanwhile (see [`PendingMark`]); the lock waits
/// for one that is fixing its point in time.
const PRUNE: &str = concat!(
    lock_marks_sql!(),
    "DELETE FROM phony.marks WHERE root NOT IN \
       (SELECT root FROM phony.marks ORDER BY marked_at DESC LIMIT 64)
       OR (root LIKE 'pending:%' AND marked_at < pg_catalog.now() - interval '1 day');
     DELETE FROM phony.changes WHERE xid < coalesce(
       (SELECT min(pg_catalog.pg_snapshot_xmin(snap)) FROM phony.marks),
       pg_catalog.pg_current_xact_id());"
);

const LOCK_MARKS: &str = lock_marks_sql!();

/// Records that the database held `root`'s state at `snap` (a `pg_snapshot` text), in
/// place of `pending` if given.
pub async fn record_mark(
    client: &impl GenericClient,
    root: &BlobId,
    snap: &str,
    pending: Option<&PendingMark>,
) -> Result<()> {
    let root = root.to_hex();
    match pending {
        // In one statement: the place is never empty. A place that is gone (expired) means
        // log entries may be gone too: no mark then.
        Some(p) => {
            client
                .execute(
                    "WITH held AS (DELETE FROM phony.marks WHERE root = $3 RETURNING 1)
             INSERT INTO phony.marks (root, snap)
             SELECT $1, $2::text::pg_catalog.pg_snapshot WHERE EXISTS (SELECT 1 FROM held)
             ON CONFLICT (root) DO UPDATE SET snap = EXCLUDED.snap, marked_at = pg_catalog.now()",
                    &[&root, &snap, &p.key],
                )
                .await
        }
        None => client
            .execute(
                "INSERT INTO phony.marks (root, snap) VALUES ($1, $2::text::pg_catalog.pg_snapshot)
             ON CONFLICT (root) DO UPDATE SET snap = EXCLUDED.snap, marked_at = pg_catalog.now()",
                &[&root, &snap],
            )
            .await,
    }
    .map_err(pg("recording the snapshot's mark"))?;
    client
        .batch_execute(PRUNE)
        .await
        .map_err(pg("pruning the change log"))?;
    Ok(())
}

/// Forgets the marks of every snapshot but `keep` (snapshots being taken keep theirs):
/// restores to those compare content, and restores no longer log row images for them.
pub async fn forget_other_marks(client: &Client, keep: &BlobId) -> Result<()> {
    client
        .execute(
            "DELETE FROM phony.marks WHERE root <> $1 AND root NOT LIKE 'pending:%'",
            &[&keep.to_hex()],
        )
        .await
        .map_err(pg("forgetting snapshot marks"))?;
    client
        .batch_execute(PRUNE)
        .await
        .map_err(pg("pruning the change log"))
}

/// Whether `phony.changes` holds more dead entries than live ones (and over 10,000) while
/// autovacuum is off, for the server or for this table: nobody else will reclaim them.
const BLOATED: &str = "SELECT coalesce((
    SELECT s.n_dead_tup > greatest(10000, s.n_live_tup)
       AND (NOT pg_catalog.current_setting('autovacuum')::boolean
            OR coalesce((SELECT o.option_value FROM pg_catalog.pg_options_to_table(c.reloptions) AS o
                         WHERE o.option_name = 'autovacuum_enabled'), 'on')::boolean IS FALSE)
    FROM pg_catalog.pg_stat_user_tables s JOIN pg_catalog.pg_class c ON c.oid = s.relid
    WHERE s.relid = pg_catalog.to_regclass('phony.changes')), false)";

/// Vacuums the change log when it needs it and autovacuum will not (see [`BLOATED`]): every
/// prune leaves the entries it deletes behind as dead rows, which the log's reads then step
/// over (a bloated log made the benchmark's tracked rollback 35 ms slower). Outside a
/// transaction; returns whether it vacuumed. A role that does not own the log is skipped by
/// `VACUUM` with a warning, not an error.
pub async fn tidy(client: &impl GenericClient) -> Result<bool> {
    let bloated: bool = client
        .query_one(BLOATED, &[])
        .await
        .map_err(pg("looking at the change log's dead entries"))?
        .get(0);
    if bloated {
        client
            .batch_execute("VACUUM phony.changes")
            .await
            .map_err(pg("vacuuming the change log"))?;
    }
    Ok(bloated)
}

/// Marks kept: restores to older snapshots compare content instead.
pub const MAX_MARKS: usize = 64;

/// After a full restore: the log and other marks no longer describe this database.
pub(crate) async fn reset_after_full_restore(client: &Client, root: &BlobId) -> Result<()> {
    client
        .batch_execute("TRUNCATE phony.changes; DELETE FROM phony.marks;")
        .await
        .map_err(pg("resetting change tracking"))?;
    install_table_triggers(client).await?;
    let snap = snapshot_after_commit(client).await?;
    record_mark(client, root, &snap, None).await
}

/// The current snapshot as it will be once this transaction commits: the same in-progress
/// transactions, minus this one, whose writes (and log entries) it then sees.
pub(crate) async fn snapshot_after_commit(client: &Client) -> Result<String> {
    let row = client
        .query_one(&format!("SELECT {SNAPSHOT_AFTER_COMMIT}"), &[])
        .await
        .map_err(pg("reading the current snapshot"))?;
    Ok(row.get(0))
}

/// The text of [`snapshot_after_commit`], as one scalar subquery.
// A snapshot's xmax is the latest completed xid + 1, which may not reach this transaction's
// own xid: raise it past ours, and count the xids in between as in progress (unseen), as
// they may be. Its xmin is then the lowest xid still unseen (the xmax when there is none),
// not our own: every log read since the mark starts at its xmin, and should not begin with
// the entries this very transaction wrote.
const SNAPSHOT_AFTER_COMMIT: &str = "(WITH s AS (SELECT pg_catalog.pg_current_snapshot() AS snap),
           v AS (SELECT snap,
                        pg_catalog.pg_snapshot_xmax(snap)::text::numeric AS hi,
                        pg_catalog.pg_current_xact_id()::text::numeric AS me
                 FROM s),
           u AS (SELECT x FROM (SELECT x::text::numeric AS x FROM v, pg_catalog.pg_snapshot_xip(v.snap) AS x
                                UNION SELECT pg_catalog.generate_series(v.hi, v.me - 1) FROM v) y
                 WHERE x <> (SELECT me FROM v))
      SELECT least((SELECT min(x) FROM u), greatest(hi, me + 1))::text || ':'
             || greatest(hi, me + 1)::text || ':'
             || coalesce((SELECT string_agg(x::text, ',' ORDER BY x) FROM u), '')
      FROM v)";

/// The relation ids whose log entries concern each of `tables` (itself and its partition
/// ancestors), in one query, in the order given (an empty list for a table that does not
/// exist).
pub(crate) async fn relids_of(client: &Client, tables: &[QualifiedName]) -> Result<Vec<Vec<u32>>> {
    let names: Vec<String> = tables.iter().map(qualified).collect();
    let rows = client
        .query(
            "SELECT u.i::int8, c.oid,
                    ARRAY(SELECT a.relid::oid FROM pg_catalog.pg_partition_ancestors(c.oid) AS a
                          WHERE a.relid <> c.oid)
             FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i)
             JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(u.n)",
            &[&names],
        )
        .await
        .map_err(pg("reading the tables' partition trees"))?;
    let mut out = vec![Vec::new(); tables.len()];
    for r in rows {
        let i = r.get::<_, i64>(0) as usize;
        let mut ids = vec![r.get::<_, u32>(1)];
        ids.extend(r.get::<_, Vec<u32>>(2));
        if let Some(slot) = out.get_mut(i.wrapping_sub(1)) {
            *slot = ids;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_max_marks() {
        assert!(PRUNE.contains(&format!("LIMIT {MAX_MARKS})")));
    }
}
