//! The delta path: only the rows that differ from the snapshot's are rewritten, table by
//! table (from the change log when tracking is on, else from the rows' ages or content).

use std::sync::Arc;
use std::time::Instant;

use phony_core::{Backend, RootManifest, Store, TableEntry};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::connect::ConnectionTarget;
use crate::error::{pg, Error, Result};
use crate::read::xmin;
use crate::session::Session;
use crate::sql::qualified;
use crate::tracking;
use crate::write::rewrite;

use super::full_path::{refresh_materialized_views, set_sequences_in};
use super::plan::{
    gate_open, schema_agrees, RestoreOptions, RestoreReport, RowAges, SchemaCheck, TableRewrite,
};

/// What change tracking knows, for the delta path.
pub(crate) struct Tracking<'a> {
    /// Tracking is installed and this database's own: log what the restore rewrites.
    pub(crate) tracked: bool,
    /// The database held the snapshot at this mark; the log says what changed since.
    pub(crate) mark: Option<&'a tracking::Mark>,
    /// With the mark, the tables (relation ids) a schema change since touched: the log is
    /// trusted for the others only (`None`: for every table).
    pub(crate) touched: Option<&'a std::collections::HashSet<u32>>,
    /// What rows put back from the log leave in the log, for other snapshots' marks.
    pub(crate) logging: rewrite::Logging,
    pub(crate) root: phony_core::BlobId,
}

pub(crate) enum DeltaError {
    /// Another session holds a lock the restore needs.
    Locked,
    /// The store cannot give what the snapshot needs: no path can succeed.
    Fatal(Error),
    /// The delta path cannot be taken; the full path will run instead.
    Fallback(String),
}

/// The delta path, in the transaction `begin` opens (sent with its first statements). On
/// `Fallback` the transaction is back at its state after `begin` (the tables' locks still
/// held, and what the readers found in `examined` when the schema differs); on the other
/// errors the caller rolls it back.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn restore_delta<B: Backend + 'static>(
    target: &ConnectionTarget,
    session: &Session,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
    begin: &str,
    tracking: &Tracking<'_>,
    schema: Option<&SchemaCheck<'_>>,
    examined: &mut Examined,
    report: &mut RestoreReport,
) -> Result<(), DeltaError> {
    let fallback = |e: Error| match e {
        Error::Store(_) => DeltaError::Fatal(e),
        other => DeltaError::Fallback(other.to_string()),
    };
    let client = session.client();
    // Writers wait; readers go on. Triggers and foreign keys stay quiet: the end state is
    // the snapshot's, which satisfied them.
    let lock = if root.tables.is_empty() {
        String::new()
    } else {
        let tables: Vec<String> = root.tables.iter().map(|t| qualified(&t.table)).collect();
        format!("LOCK TABLE {} IN EXCLUSIVE MODE;", tables.join(", "))
    };
    // The log's reads cover a few thousand entries: launching parallel workers for them
    // (which stale statistics of a grown log invite) costs more than the whole read.
    let serial = match tracking.mark {
        Some(_) => "SET LOCAL max_parallel_workers_per_gather = 0;",
        None => "",
    };
    // A session that holds triggers off already keeps them so: switching the role (here,
    // and back below) would flush its cached plans.
    let quiet = match session.triggers_held_off() {
        true => "",
        false => "SET LOCAL session_replication_role = replica;",
    };
    // The locks are taken before the delta path's savepoint (in one of their own, for a
    // table the migration dropped): a fallback keeps them, so that the rows read meanwhile
    // are still the live rows when the schema path takes them over.
    let lock = match lock.is_empty() {
        true => String::new(),
        false => format!("SAVEPOINT phony_lock; {lock} RELEASE SAVEPOINT phony_lock;"),
    };
    if let Err(e) = client
        .batch_execute(&format!(
            "{begin} {lock} SAVEPOINT phony_delta; {quiet} {serial} {}",
            tracking::IMAGE_SETTINGS
        ))
        .await
    {
        let locked = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        // Back to the savepoint that was made last; the caller rolls back the rest.
        if client
            .batch_execute("ROLLBACK TO SAVEPOINT phony_delta")
            .await
            .is_err()
        {
            let _ = client
                .batch_execute("ROLLBACK TO SAVEPOINT phony_lock; RELEASE SAVEPOINT phony_lock")
                .await;
        }
        return Err(match locked {
            true => DeltaError::Locked,
            false => fallback(pg("starting the delta restore")(e)),
        });
    }
    let result = async {
        let tables: Vec<&TableEntry> = root.tables.iter().collect();
        // With a mark, the sequences are set meanwhile (their statements pipeline with the
        // log's); without one, after the rows are compared.
        let (logged, sequences) = tokio::join!(
            put_back_logged(session, store, &tables, tracking, opts, report),
            async {
                match tracking.mark {
                    Some(_) => {
                        Some(set_sequences_in(session, root, opts.transactional_sequences).await)
                    }
                    None => None,
                }
            }
        );
        let FromLog { content, unlogged } = logged.map_err(fallback)?;
        let mut sequences_set = false;
        if let Some(sequences) = sequences {
            report.sequences = sequences.map_err(fallback)?;
            sequences_set = true;
        }
        if !content.is_empty() {
            compare_content(
                target, client, store, root, &content, opts, schema, examined, report,
            )
            .await
            .map_err(fallback)?;
        }
        schema_agrees(schema).await.map_err(fallback)?;
        if !sequences_set {
            crate::phase::reached(&opts.phase, crate::Phase::Sequences);
            report.sequences = set_sequences_in(session, root, opts.transactional_sequences)
                .await
                .map_err(fallback)?;
        }
        gate_open(opts).await.map_err(DeltaError::Fatal)?;
        if !report.changes.is_empty() {
            refresh_materialized_views(client, root)
                .await
                .map_err(fallback)?;
        }
        // Pipelined: one round trip.
        let (origin, marked) = tokio::join!(
            async {
                match session.triggers_held_off() {
                    true => Ok(()),
                    false => {
                        client
                            .batch_execute("SET LOCAL session_replication_role = origin")
                            .await
                    }
                }
            },
            async {
                match tracking.tracked {
                    true => tracking::mark_after_commit(session, &tracking.root, unlogged).await,
                    false => Ok(()),
                }
            }
        );
        origin.map_err(|e| fallback(pg("re-enabling triggers")(e)))?;
        marked.map_err(fallback)?;
        Ok(())
    }
    .await;
    if result.is_err() {
        // Rows put back from the log before the schema's verdict are undone with the rest.
        report.changes.clear();
        report.tables = 0;
        report.rows = 0;
        report.sequences = 0;
        if let Err(e) = client
            .batch_execute("ROLLBACK TO SAVEPOINT phony_delta")
            .await
        {
            return Err(fallback(pg("undoing the delta restore")(e)));
        }
    }
    result
}

/// What [`put_back_logged`] left to compare.
pub(crate) struct FromLog<'t> {
    /// The tables whose live content is compared with the snapshot's (no usable log), each
    /// with the relation id to log its rewrites under, when tracking.
    pub(crate) content: Vec<(&'t TableEntry, Option<u32>)>,
    /// Rows were put back without logging them.
    pub(crate) unlogged: bool,
}

/// Puts back the rows of `tables` that the change log since `tracking.mark` can: tables it
/// holds the changed rows' images of, all at once on this session (their statements
/// pipeline), and keyed tables whose changed keys it lists (those rows read from the
/// store); tables the log says are untouched are left alone. The others (every table
/// without a mark, and the ones a schema change touched) are returned to be compared.
pub(crate) async fn put_back_logged<'t, B: Backend + 'static>(
    session: &Session,
    store: &Arc<Store<B>>,
    tables: &[&'t TableEntry],
    tracking: &Tracking<'_>,
    opts: &RestoreOptions,
    report: &mut RestoreReport,
) -> Result<FromLog<'t>> {
    let client = session.client();
    // Whether a schema change may have changed a table's rows outside the log (one that
    // does not exist is not the table the mark saw).
    let touched = |relids: &[u32]| match tracking.touched {
        Some(touched) => relids.is_empty() || relids.iter().any(|r| touched.contains(r)),
        None => false,
    };
    // Relations whose changed rows the log's images put back.
    let mut from_log = std::collections::HashSet::new();
    let mut logged_rels = std::collections::HashSet::new();
    let mut unlogged = false;
    if let Some(mark) = tracking.mark {
        let rels = tracking::logged_relations(session, mark).await?;
        let names: std::collections::HashSet<&phony_core::QualifiedName> =
            tables.iter().map(|t| &t.table).collect();
        // Tables without a primary key, truncated ones, partition trees with entries at
        // several levels, and tables whose log has rows without images (see
        // `tracking::changes::UNKNOWN_IMAGE`) are compared below, against the snapshot.
        let simple: Vec<_> = rels
            .iter()
            .filter(|r| !r.whole && r.tree.is_empty() && !r.key.is_empty() && !r.unknown)
            .filter(|r| names.contains(&r.table) && !touched(&[r.relid]))
            .collect();
        logged_rels.extend(rels.iter().map(|r| r.relid));
        // One call per relation, all on this session: their statements pipeline.
        let changes = futures::future::join_all(
            simple
                .iter()
                .map(|rel| rewrite::restore_from_log(session, rel, mark, tracking.logging)),
        )
        .await;
        for (rel, change) in simple.iter().zip(pipelined(changes)?) {
            from_log.insert(rel.relid);
            let changed = change.deleted + change.inserted + change.updated > 0;
            unlogged |= changed && tracking.logging == rewrite::Logging::Nothing;
            count_change(report, Some(change));
        }
    }
    let all_relids = if !tracking.tracked {
        vec![Vec::new(); tables.len()]
    } else if tracking.mark.is_some()
        && tracking.touched.is_none()
        && logged_rels.iter().all(|r| from_log.contains(r))
    {
        // Every logged relation was put back above: no table needs its relids.
        vec![Vec::new(); tables.len()]
    } else {
        let names: Vec<_> = tables.iter().map(|t| t.table.clone()).collect();
        tracking::relids_of(client, &names).await?
    };
    let mut content = Vec::new();
    for (entry, relids) in tables.iter().zip(all_relids) {
        let log = relids.first().copied();
        let mark = tracking.mark.filter(|_| !touched(&relids));
        if mark.is_some()
            && relids
                .iter()
                .filter(|r| logged_rels.contains(*r))
                .all(|r| from_log.contains(r))
        {
            // Untouched since the mark, or put back from the log above.
            continue;
        }
        let logged = match mark {
            Some(mark) => tracking::logged(client, &relids, mark).await?,
            None => tracking::Logged::Whole,
        };
        match (logged, mark) {
            (tracking::Logged::Unchanged, _) => {}
            (tracking::Logged::Keys, Some(mark)) if !entry.key.is_empty() => {
                let change = rewrite::restore_table_keys(
                    client,
                    store,
                    entry,
                    &relids,
                    mark,
                    opts.prefetch,
                    log,
                )
                .await?;
                count_change(report, change);
            }
            _ => content.push((*entry, log)),
        }
    }
    Ok(FromLog { content, unlogged })
}

pub(crate) fn count_change(report: &mut RestoreReport, change: Option<TableRewrite>) {
    if let Some(c) = change.filter(|c| c.deleted + c.inserted + c.updated > 0) {
        report.tables += 1;
        report.rows += c.deleted + c.inserted + c.updated;
        report.changes.push(c);
    }
}

/// What the delta path's readers found, table by table, when the schema's verdict (the live
/// schema differs) sent the restore down the schema path: the schema path applies it
/// rather than read the same rows again. The delta path's locks are still held (taken
/// before its savepoint), so the rows have not changed since.
pub(crate) type Examined = Vec<(phony_core::QualifiedName, xmin::Outcome)>;

/// Makes the `tables` (each with the relation id to log its rewrites under, when tracking)
/// hold the snapshot's rows by comparing content, inside the restore transaction. With a
/// trusted capture point, rows' ages say which tables and chunks to compare (`xmin`),
/// read on two connections at once; the others are re-read whole. The capture point is
/// trusted against every table of the snapshot `root` (`tables` may be some of them).
/// `examined`: outcomes
/// already read (taken out, not read again); when `schema` says the live schema differs,
/// it receives what the readers find instead (they finish first).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare_content<B: Backend + 'static>(
    target: &ConnectionTarget,
    client: &Client,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    tables: &[(&TableEntry, Option<u32>)],
    opts: &RestoreOptions,
    schema: Option<&SchemaCheck<'_>>,
    examined: &mut Examined,
    report: &mut RestoreReport,
) -> Result<()> {
    let params = store.config().chunking.params;
    let mut handed: std::collections::HashMap<_, _> = examined.drain(..).collect();
    let reader = connect_reader(target).await?;
    // Rows' ages are trusted against every table the capture recorded (the log or the
    // schema path may leave only some of them to compare).
    let captured: Vec<&phony_core::QualifiedName> = root.tables.iter().map(|t| &t.table).collect();
    let trusted = match &opts.point {
        Some(point) => match xmin::trust(&reader, point, &captured).await {
            xmin::Trust::Trusted(h) => Some(h),
            xmin::Trust::Untrusted(why) => {
                tracing::info!("comparing every table's content: {why}");
                None
            }
        },
        None => None,
    };
    let Some(horizon) = trusted else {
        schema_agrees(schema).await?;
        for (entry, log) in tables {
            let change =
                rewrite::restore_table(client, &reader, store, entry, params, opts.prefetch, *log)
                    .await?;
            count_change(report, change);
        }
        return Ok(());
    };
    // The tables read here, by their index in `tables`; the others' outcomes were handed.
    let mut given: Vec<(usize, xmin::Outcome)> = Vec::new();
    let mut read: Vec<usize> = Vec::new();
    for (i, (entry, _)) in tables.iter().enumerate() {
        match handed.remove(&entry.table) {
            Some(outcome) => given.push((i, outcome)),
            None => read.push(i),
        }
    }
    if !given.is_empty() {
        tracing::debug!(
            "{} tables' rows' ages taken over, not read again",
            given.len()
        );
    }
    let second = if read.len() > 1 {
        Some(connect_reader(target).await?)
    } else {
        None
    };
    let readers: Vec<&Client> = std::iter::once(&reader).chain(second.as_ref()).collect();
    let entries: Vec<&TableEntry> = read.iter().map(|&i| tables[i].0).collect();
    let started = Instant::now();
    // The readers examine the tables while this session applies what they found.
    let (done, mut found) = tokio::sync::mpsc::channel(1);
    let examine = xmin::examine(&readers, store, &entries, horizon, opts.prefetch, done);
    let apply = async {
        if let Err(e) = schema_agrees(schema).await {
            if let Some(Ok(Some(_))) = match schema {
                Some(check) => Some(check.clone().await),
                None => None,
            } {
                // The schema path will want these rows: it is given what the readers find.
                examined.extend(
                    given
                        .into_iter()
                        .map(|(i, o)| (tables[i].0.table.clone(), o)),
                );
                while let Some((j, outcome)) = found.recv().await {
                    examined.push((entries[j].table.clone(), outcome));
                }
                tracing::debug!(
                    "rows' ages read for the schema path in {:?}",
                    started.elapsed()
                );
            }
            return Err(e);
        }
        let mut taken = Taken::default();
        for (i, outcome) in given {
            taken
                .take(client, store, tables, i, outcome, opts, started)
                .await?;
        }
        while let Some((j, outcome)) = found.recv().await {
            taken
                .take(client, store, tables, read[j], outcome, opts, started)
                .await?;
        }
        Ok::<_, Error>(taken)
    };
    let ((), taken) = futures::try_join!(examine, apply)?;
    let Taken {
        mut ages,
        mut changes,
        content,
    } = taken;
    drop(second);
    // The content comparisons read on `reader`, free now.
    for i in content {
        let (entry, log) = tables[i];
        ages.content_tables += 1;
        let change =
            rewrite::restore_table(client, &reader, store, entry, params, opts.prefetch, log)
                .await?;
        changes.push((i, change));
    }
    changes.sort_by_key(|(i, _)| *i);
    for (_, change) in changes {
        count_change(report, change);
    }
    tracing::debug!(
        "tables compared by row ages in {:?}: {ages:?}",
        started.elapsed()
    );
    report.row_ages = Some(ages);
    Ok(())
}

/// What applying the readers' outcomes came to, by index in the compared tables.
#[derive(Default)]
struct Taken {
    ages: RowAges,
    changes: Vec<(usize, Option<TableRewrite>)>,
    /// Tables whose content is compared whole afterwards.
    content: Vec<usize>,
}

impl Taken {
    /// Applies what the readers found in table `i` of `tables`.
    #[allow(clippy::too_many_arguments)]
    async fn take<B: Backend + 'static>(
        &mut self,
        client: &Client,
        store: &Arc<Store<B>>,
        tables: &[(&TableEntry, Option<u32>)],
        i: usize,
        outcome: xmin::Outcome,
        opts: &RestoreOptions,
        started: Instant,
    ) -> Result<()> {
        let (entry, log) = tables[i];
        self.ages.tables += 1;
        match outcome {
            xmin::Outcome::Unchanged { chunks } => {
                self.ages.unchanged_tables += 1;
                self.ages.chunks += chunks;
            }
            xmin::Outcome::Staged {
                staged,
                chunks,
                compared,
                summed,
            } => {
                self.ages.chunks += chunks;
                self.ages.compared_chunks += compared;
                if summed {
                    self.ages.summed_chunks += compared;
                }
                let change =
                    rewrite::apply_staged(client, store, entry, staged, log, opts.prefetch).await?;
                tracing::debug!("{}: applied at {:?}", entry.table, started.elapsed());
                self.changes.push((i, change));
            }
            xmin::Outcome::Content => self.content.push(i),
        }
        Ok(())
    }
}

/// A connection that reads live rows beside the restore transaction. Its queries scan whole
/// tables once; compiling them (JIT) costs more than it saves, and two readers already
/// keep two cores busy (no parallel workers).
pub(crate) async fn connect_reader(target: &ConnectionTarget) -> Result<Client> {
    let reader = target.connect().await?;
    reader
        .batch_execute("SET jit = off; SET max_parallel_workers_per_gather = 0")
        .await
        .map_err(pg("setting up a reader"))?;
    Ok(reader)
}

/// The results of statements pipelined in one transaction, or the error that failed it: once
/// one statement fails, the later ones fail only because the transaction is aborted, so
/// any other error is the one to report.
pub(crate) fn pipelined<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let aborted = |e: &Error| matches!(e, Error::Postgres { message, .. } if message.contains("current transaction is aborted"));
    let mut out = Vec::with_capacity(results.len());
    let mut error: Option<Error> = None;
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                if error
                    .as_ref()
                    .is_none_or(|seen| aborted(seen) && !aborted(&e))
                {
                    error = Some(e);
                }
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_statements_report_the_error_that_aborted_them() {
        let error = |message: &str| Error::Postgres {
            context: "rewriting rows".into(),
            message: message.into(),
            code: None,
        };
        let results: Vec<Result<u8>> = vec![
            Ok(1),
            Err(error("current transaction is aborted, commands ignored")),
            Err(error("duplicate key value violates unique constraint")),
            Err(error("current transaction is aborted, commands ignored")),
        ];
        let e = pipelined(results).unwrap_err();
        assert!(e.to_string().contains("duplicate key"), "{e}");
        assert_eq!(pipelined(vec![Ok(1), Ok(2)]).unwrap(), [1, 2]);
    }
}
