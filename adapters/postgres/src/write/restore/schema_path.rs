//! The targeted schema path: after a migration, only the objects whose definition differs
//! from the snapshot's (and what depends on them) are rewritten, in the restore's
//! transaction. Its plan ([`plan`]) comes from the two schemas' pg_dump texts, object by
//! object; then:
//!
//! 1. *undo* (phase A, from the last live object back): drop what the snapshot lacks or
//!    defines otherwise, loosen tables kept in place (added columns and checks dropped,
//!    defaults and `NOT NULL`s taken off), drop re-created tables with `CASCADE` (the
//!    catalog says what goes with them, all of which comes back), give enums their labels;
//! 2. the snapshot's pre-data definitions of those objects, in its order;
//! 3. re-created and dropped tables loaded from the store; every other table brought to
//!    the snapshot's rows as the delta path does, before step 1 (readers read them, by
//!    rows' ages, while the live schema still holds) or, when the live schema refuses the
//!    snapshot's rows (a check or unique index the migration added), after step 2 (on this
//!    connection for the tables the DDL locked);
//! 4. the snapshot's post-data definitions (indexes, keys, foreign keys, triggers …) after
//!    the rows, then sequences, materialized views, change tracking.
//!
//! Anything the plan cannot prove right, or any statement that fails, rolls back to the
//! savepoint before it and the full path runs instead, with the reason.

use std::sync::Arc;

use phony_core::{Backend, RootManifest, Store, TableEntry};
use tokio_postgres::Client;

use crate::connect::ConnectionTarget;
use crate::error::{pg, Error, Result};
use crate::session::Session;
use crate::sql::{ident, qualified};
use crate::tracking;

use super::delta_path::{self, compare_content, count_change, Examined};
use super::full_path::{
    load_table, refresh_materialized_views, restore_session_settings, set_sequences_in,
};
use super::plan::{gate_open, Differs, RestoreOptions, RestoreReport, TableRewrite};

mod live;
pub(crate) mod plan;

use plan::{Item, Part, Undo, Why};

/// Live rows of a table its DDL locked, held in memory to compare (beyond: reloaded).
const HELD_BYTES: usize = 64 << 20;

pub(crate) enum SchemaError {
    /// The store failed: no path can succeed.
    Fatal(Error),
    /// Why the full path must run instead (the transaction is back at the savepoint).
    Fallback(String),
}

/// What the targeted path needs besides the restore's own arguments.
pub(crate) struct Inputs<'a> {
    pub(crate) differs: &'a Differs,
    pub(crate) pre_data: &'a str,
    pub(crate) post_data: &'a str,
    /// The session's settings to set back after pg_dump's script settings.
    pub(crate) settings: &'a [(String, String)],
    pub(crate) tracked: bool,
    pub(crate) root_id: phony_core::BlobId,
    /// The change log since the snapshot's mark, for the tables the migration did not
    /// touch: their rows are put back from it, not compared.
    pub(crate) partial: Option<&'a tracking::Partial>,
}

/// The targeted schema path, in the open restore transaction; `examined`: what the delta
/// path's readers found in the live rows (under locks held since), not read again.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn restore_schema<B: Backend + 'static>(
    target: &ConnectionTarget,
    session: &Session,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
    inputs: &Inputs<'_>,
    mut examined: Examined,
    report: &mut RestoreReport,
) -> std::result::Result<(), SchemaError> {
    let client = session.client();
    let live = plan::items(&inputs.differs.live_pre, &inputs.differs.live_post);
    let snap = plan::items(inputs.pre_data, inputs.post_data);
    // Decided before anything is written: a schema the plan cannot undo costs nothing.
    let draft = plan::draft(&live, &snap).map_err(SchemaError::Fallback)?;
    client
        .batch_execute("SAVEPOINT phony_schema")
        .await
        .map_err(|e| SchemaError::Fallback(pg("starting the schema restore")(e).to_string()))?;
    // First with the rows compared before any DDL (readers go on reading every table); if
    // the live schema refuses the snapshot's rows (a check or a unique index the migration
    // added), again with the DDL first and the tables it locked compared on this connection.
    let mut outcome = None;
    for early in [true, false] {
        let mut attempt = draft.clone();
        let result = run(
            target,
            session,
            store,
            root,
            opts,
            inputs,
            &snap,
            &mut attempt,
            early,
            &mut examined,
            report,
        )
        .await;
        // Applied or not, it was this attempt's: a second one reads after its DDL.
        examined.clear();
        let failed = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => SchemaError::Fallback(why),
            Err(e @ Error::Store(_)) => SchemaError::Fatal(e),
            Err(e) => SchemaError::Fallback(format!("the targeted schema restore failed: {e}")),
        };
        report.changes.clear();
        report.tables = 0;
        report.rows = 0;
        report.bytes = 0;
        report.sequences = 0;
        report.row_ages = None;
        if let Err(e) = client
            .batch_execute("ROLLBACK TO SAVEPOINT phony_schema")
            .await
        {
            return Err(SchemaError::Fatal(pg("undoing the schema restore")(e)));
        }
        let retry = early
            && matches!(&failed, SchemaError::Fallback(why) if why.starts_with("the targeted schema restore failed"));
        if !retry {
            return Err(failed);
        }
        tracing::debug!("schema path: comparing rows after the DDL instead");
        outcome = Some(failed);
    }
    Err(outcome
        .unwrap_or_else(|| SchemaError::Fallback("the targeted schema restore failed".into())))
}

#[allow(clippy::too_many_arguments)]
async fn run<B: Backend + 'static>(
    target: &ConnectionTarget,
    session: &Session,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
    inputs: &Inputs<'_>,
    snap: &[Item],
    draft: &mut plan::Draft,
    early: bool,
    examined: &mut Examined,
    report: &mut RestoreReport,
) -> Result<std::result::Result<(), String>> {
    let client = session.client();
    // pg_dump's session settings (an empty search_path: its DDL names everything), no
    // user trigger or foreign-key check on the rows, writers kept out of every table.
    let quiet = match session.triggers_held_off() {
        true => "",
        false => "SET LOCAL session_replication_role = replica;",
    };
    client
        .batch_execute(&format!("{}\n{quiet}", preamble(inputs.pre_data)))
        .await
        .map_err(pg("preparing the schema restore"))?;
    lock_tables(client, root).await?;
    // Where the time goes, step by step (at debug level).
    let mut step = Step::start();

    // What each re-created table takes with it comes back too.
    let mut extra = Vec::new();
    for ((schema, name), why) in &draft.recreated {
        let table = format!("{}.{}", ident(schema), ident(name));
        let keys = match live::dependents(client, &table).await? {
            Ok(keys) => keys,
            Err(why) => return Ok(Err(why)),
        };
        if let Why::TypeChanged(column) = why {
            if let Some(view) = keys
                .iter()
                .find(|k| k.0 == "VIEW" || k.0 == "MATERIALIZED VIEW")
            {
                return Ok(Err(format!(
                    "the type of column {column} of {schema}.{name} changed and {} depends on the table",
                    plan::title(view)
                )));
            }
        }
        extra.extend(keys);
    }
    plan::complete(draft, snap, &extra);
    // Statements the catalog must name.
    let mut undo = Vec::with_capacity(draft.undo.len());
    for step in &draft.undo {
        match step {
            Undo::Drop { key, sql: None } => match live::drop_statement(client, key).await? {
                Some(sql) => undo.push(Undo::Drop {
                    key: key.clone(),
                    sql: Some(sql),
                }),
                None => {
                    return Ok(Err(format!(
                        "{} was not found in the catalog by its name",
                        plan::title(key)
                    )))
                }
            },
            other => undo.push(other.clone()),
        }
    }
    let params = store.config().chunking.params;
    let loading = crate::Phase::Loading {
        bytes: draft
            .loaded
            .iter()
            .filter_map(|(s, n)| {
                root.tables
                    .iter()
                    .find(|t| t.table.schema == *s && t.table.name == *n)
            })
            .map(|t| t.content.bytes)
            .sum(),
    };
    step.done("planned (the catalog read)");
    if early {
        crate::phase::reached(&opts.phase, loading);
        // The rows of every table kept, under the live schema, before any DDL locks them:
        // from the log where the migration left a table alone, else compared.
        let kept: Vec<&TableEntry> = root
            .tables
            .iter()
            .filter(|t| !is_loaded(draft, t))
            .collect();
        let kept = put_back_logged(session, store, &kept, inputs, opts, report).await?;
        if !kept.is_empty() {
            compare_content(
                target, client, store, root, &kept, opts, None, examined, report,
            )
            .await?;
        }
    }
    if early {
        step.done("rows compared before the DDL");
    }
    gate_open(opts).await?;

    // 1. Undo, from the last live object back.
    for step in &undo {
        let (sql, what) = match step {
            Undo::Drop { key, sql } => (sql.clone().unwrap_or_default(), plan::title(key)),
            Undo::Alter(statements) => (
                statements
                    .iter()
                    .map(|s| format!("{s};"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                "altering a table".to_owned(),
            ),
            Undo::Recreate { key, table } => {
                (format!("DROP TABLE {table} CASCADE"), plan::title(key))
            }
            Undo::Enum { key, labels } => {
                let Some(create) = snap.iter().find(|i| &i.key() == key) else {
                    return Ok(Err(format!("{} is not in the snapshot", plan::title(key))));
                };
                if let Err(why) = live::swap_enum(client, key, &create.ddl(), labels).await? {
                    return Ok(Err(why));
                }
                continue;
            }
        };
        if sql.is_empty() {
            continue;
        }
        client
            .batch_execute(&sql)
            .await
            .map_err(pg(format!("undoing {what}")))?;
    }

    step.done("undone");
    // 2. The snapshot's pre-data definitions.
    run_items(client, snap, draft, Part::Pre).await?;
    if !early {
        crate::phase::reached(&opts.phase, loading);
    }

    step.done("pre-data definitions run");
    // 3. Rows: loaded where the tables are new, compared everywhere else.
    let loaded: Vec<&TableEntry> = root.tables.iter().filter(|t| is_loaded(draft, t)).collect();
    for entry in &loaded {
        load_table(client, store, entry, opts).await?;
        report.tables += 1;
        report.rows += entry.content.rows;
        report.bytes += entry.content.bytes;
        report.changes.push(TableRewrite {
            table: entry.table.clone(),
            deleted: 0,
            inserted: entry.content.rows,
            updated: 0,
            reloaded: Some("created again from the snapshot's definition".into()),
        });
    }
    let held = match early {
        true => Vec::new(),
        false => locked_tables(client).await?,
    };
    let rest: Vec<&TableEntry> = root
        .tables
        .iter()
        .filter(|t| !early && !is_loaded(draft, t))
        .collect();
    let rest = match rest.is_empty() {
        true => Vec::new(),
        false => put_back_logged(session, store, &rest, inputs, opts, report).await?,
    };
    let (here, elsewhere): (Vec<&TableEntry>, Vec<&TableEntry>) = rest
        .into_iter()
        .map(|(t, _)| t)
        .partition(|t| held.contains(&t.table));
    for entry in here {
        let change = crate::write::rewrite::restore_table_here(
            client,
            store,
            entry,
            params,
            opts.prefetch,
            HELD_BYTES,
        )
        .await?;
        count_change(report, change);
    }
    if !elsewhere.is_empty() {
        let tables: Vec<(&TableEntry, Option<u32>)> =
            elsewhere.into_iter().map(|t| (t, None)).collect();
        compare_content(
            target,
            client,
            store,
            root,
            &tables,
            opts,
            None,
            &mut Examined::new(),
            report,
        )
        .await?;
    }

    step.done("rows loaded and compared");
    // 4. What goes after the rows: checks and NOT NULLs, then the post-data definitions.
    crate::phase::reached(&opts.phase, crate::Phase::IndexesAndConstraints);
    if !draft.tighten.is_empty() {
        let sql: Vec<String> = draft.tighten.iter().map(|s| format!("{s};")).collect();
        client
            .batch_execute(&sql.join("\n"))
            .await
            .map_err(pg("setting the snapshot's constraints and defaults back"))?;
    }
    run_items(client, snap, draft, Part::Post).await?;
    step.done("post-data definitions run");
    crate::phase::reached(&opts.phase, crate::Phase::Sequences);
    report.sequences = set_sequences_in(session, root, opts.transactional_sequences).await?;
    if !report.changes.is_empty() || !root.materialized_views.is_empty() {
        refresh_materialized_views(client, root).await?;
    }
    step.done("sequences and materialized views");
    if inputs.tracked {
        // Tables created again have no tracking triggers, and the log holds the
        // migration's DDL: start over from this snapshot, as the full path does.
        tracking::reset_after_full_restore(client, &inputs.root_id).await?;
    }
    if !session.triggers_held_off() {
        client
            .batch_execute("SET LOCAL session_replication_role = origin")
            .await
            .map_err(pg("re-enabling triggers"))?;
    }
    restore_session_settings(client, inputs.settings).await?;
    step.done("change tracking and settings");
    Ok(Ok(()))
}

/// The `tables` whose rows the change log cannot put back (all of them without a mark),
/// to be compared; the others are put back from it (see [`delta_path::put_back_logged`]).
/// Their rewrites are not logged: tracking starts over from the snapshot afterwards.
async fn put_back_logged<'t, B: Backend + 'static>(
    session: &Session,
    store: &Arc<Store<B>>,
    tables: &[&'t TableEntry],
    inputs: &Inputs<'_>,
    opts: &RestoreOptions,
    report: &mut RestoreReport,
) -> Result<Vec<(&'t TableEntry, Option<u32>)>> {
    let Some(partial) = inputs.partial else {
        return Ok(tables.iter().map(|t| (*t, None)).collect());
    };
    // The log's images are written, and so read back, under these settings.
    session
        .client()
        .batch_execute(tracking::IMAGE_SETTINGS)
        .await
        .map_err(pg("preparing to read the change log"))?;
    let tracking = delta_path::Tracking {
        tracked: true,
        mark: Some(&partial.mark),
        touched: Some(&partial.touched),
        logging: crate::write::rewrite::Logging::Nothing,
        root: inputs.root_id,
    };
    let found =
        delta_path::put_back_logged(session, store, tables, &tracking, opts, report).await?;
    tracing::debug!(
        "schema path: {} of {} tables compared, the others' rows from the change log",
        found.content.len(),
        tables.len()
    );
    Ok(found.content.into_iter().map(|(t, _)| (t, None)).collect())
}

/// Times the schema path's steps, each logged at debug level as it ends.
struct Step(std::time::Instant);

impl Step {
    fn start() -> Step {
        Step(std::time::Instant::now())
    }

    fn done(&mut self, what: &str) {
        tracing::debug!("schema path: {what} in {:?}", self.0.elapsed());
        self.0 = std::time::Instant::now();
    }
}

fn is_loaded(draft: &plan::Draft, t: &TableEntry) -> bool {
    draft
        .loaded
        .iter()
        .any(|(s, n)| *s == t.table.schema && *n == t.table.name)
}

/// Runs the snapshot's objects of `part` that the plan creates, in the snapshot's order.
async fn run_items(client: &Client, snap: &[Item], draft: &plan::Draft, part: Part) -> Result<()> {
    for (i, item) in snap.iter().enumerate() {
        if item.part != part || !draft.create.contains(&i) {
            continue;
        }
        let mut ddl = item.ddl();
        if matches!(item.object.kind.as_str(), "FUNCTION" | "PROCEDURE") {
            ddl = ddl.replacen("CREATE FUNCTION ", "CREATE OR REPLACE FUNCTION ", 1);
            ddl = ddl.replacen("CREATE PROCEDURE ", "CREATE OR REPLACE PROCEDURE ", 1);
        }
        client
            .batch_execute(&ddl)
            .await
            .map_err(pg(format!("creating {}", item.title())))?;
    }
    Ok(())
}

/// The settings a pg_dump script sets before its first object.
fn preamble(script: &str) -> String {
    script
        .lines()
        .take_while(|l| !l.starts_with("-- Name: "))
        .filter(|l| l.starts_with("SET ") || l.starts_with("SELECT pg_catalog.set_config("))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writers kept out of the snapshot's tables that exist here, as the delta path does.
async fn lock_tables(client: &Client, root: &RootManifest) -> Result<()> {
    let names: Vec<String> = root.tables.iter().map(|t| qualified(&t.table)).collect();
    let rows = client
        .query(
            "SELECT n FROM unnest($1::text[]) AS n WHERE pg_catalog.to_regclass(n) IS NOT NULL",
            &[&names],
        )
        .await
        .map_err(pg("finding the tables to lock"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let existing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    client
        .batch_execute(&format!(
            "LOCK TABLE {} IN EXCLUSIVE MODE",
            existing.join(", ")
        ))
        .await
        .map_err(pg("locking the tables"))
}

/// Tables this transaction holds in `ACCESS EXCLUSIVE` mode (its DDL took them): no other
/// connection can read them until the commit.
async fn locked_tables(client: &Client) -> Result<Vec<phony_core::QualifiedName>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
             FROM pg_catalog.pg_locks l
             JOIN pg_catalog.pg_class c ON c.oid = l.relation
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation'
               AND l.mode = 'AccessExclusiveLock' AND l.granted",
            &[],
        )
        .await
        .map_err(pg("reading the restore's locks"))?;
    Ok(rows
        .iter()
        .map(|r| phony_core::QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}
