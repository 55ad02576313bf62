//! Restore into a database that does not exist yet (`--target` a new name).
//!
//! Nobody else can see a database that is still being built, so it is loaded like
//! pg_restore does, in parallel: the schema first, then tables on several connections
//! (each `TRUNCATE` + `COPY … FREEZE` in a transaction of its own), then the post-data DDL in
//! pg_dump's order, its runs of indexes and keys and of foreign keys each on several
//! connections. It is built under
//! a temporary name and renamed to its own only when complete, so the name never shows a
//! partial database; on failure the temporary database is dropped (a killed process leaves
//! it behind, named `…_phony_partial_…`, and the next restore to that name removes it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phony_core::manifest::identifiers;
use phony_core::{Backend, QualifiedName, RootManifest, Store, TableEntry};
use tokio_postgres::Client;

use crate::connect::ConnectionTarget;
use crate::database;
pub use crate::database::database_exists;
use crate::database::maintenance;
use crate::error::{pg, Error, Result};
use crate::sql::{ident, qualified};
use crate::write::restore::full_path::{
    hold_event_triggers_off, load_table, refresh_materialized_views, schema_scripts, set_sequences,
};
use crate::write::restore::plan::{RestoreOptions, RestorePath, RestoreReport};

/// The prefix of the temporary names a new database is built under.
fn partial_prefix(dbname: &str) -> String {
    let suffix = "_phony_partial_";
    let mut base = dbname.to_owned();
    // PostgreSQL names are at most 63 bytes; 8 are left for a random tag.
    while base.len() + suffix.len() + 8 > 63 {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// Creates database `target` holding the snapshot `root`. Fails if it already exists.
pub async fn restore_into_new<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let (pre_data, post_data) = schema_scripts(store, root).await?;
    let admin = maintenance(target).await?;
    let prefix = partial_prefix(target.dbname());
    // Leftovers of restores to this name that were killed.
    let stale = admin
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database WHERE starts_with(datname, $1)",
            &[&prefix],
        )
        .await
        .map_err(pg("looking for partial databases"))?;
    for row in stale {
        let name: String = row.get(0);
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            ))
            .await;
    }
    let partial = format!("{prefix}{:08x}", rand_tag());
    // The snapshot's encoding and locale (older snapshots: the server's defaults).
    let create = match &root.database {
        Some(props) => database::create_sql(&partial, props),
        None => format!("CREATE DATABASE {}", ident(&partial)),
    };
    admin
        .batch_execute(&create)
        .await
        .map_err(pg(format!("creating database {partial}")))?;
    let building = target
        .with_dbname(&partial)
        .with_application_name("phony restore");
    let result = load(&building, store, root, &pre_data, &post_data, opts).await;
    // The database's settings once it is loaded: they are for its users' sessions, and
    // may be ones the loading must not run under (`default_transaction_read_only`).
    let result = match (result, &root.database) {
        (Ok(report), Some(props)) if !props.settings.is_empty() => admin
            .batch_execute(&database::set_settings_sql(&partial, &props.settings))
            .await
            .map(|()| report)
            .map_err(pg(format!("setting the settings of database {partial}"))),
        (result, _) => result,
    };
    let result = match result {
        Ok(_) if crate::write::restore::plan::stopped(opts) => Err(Error::Cancelled),
        Ok(report) => {
            // The rename is this restore's commit: from here it may have happened.
            if let Some(committing) = &opts.committing {
                committing.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            rename(&admin, &partial, target.dbname())
                .await
                .map(|()| report)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(mut report) => {
            report.duration = started.elapsed();
            Ok(report)
        }
        Err(e) => {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    ident(&partial)
                ))
                .await;
            Err(e)
        }
    }
}

/// A tag that makes each partial database's name unique.
fn rand_tag() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

async fn rename(admin: &Client, from: &str, to: &str) -> Result<()> {
    // The loaders' sessions may take a moment to end after their connections close.
    let mut last = None;
    for _ in 0..100 {
        admin
            .execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
                &[&from],
            )
            .await
            .map_err(pg("closing the loaders' sessions"))?;
        match admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(from),
                ident(to)
            ))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match last {
        Some(e) => Err(pg(format!("renaming {from} to {to}"))(e)),
        None => Err(Error::Internal(format!("renaming {from} to {to} failed"))),
    }
}

async fn load<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    root: &RootManifest,
    pre_data: &str,
    post_data: &str,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let workers = opts.parallel.max(1);
    let started = Instant::now();
    let main = target.connect().await?;
    // The snapshot's event triggers are created with the rest of its post-data DDL: they
    // must not log what the restore does after (sequences, materialized views).
    hold_event_triggers_off(&main, false).await?;
    main.batch_execute(pre_data)
        .await
        .map_err(pg("creating the schema"))?;

    let loading = crate::Phase::Loading {
        bytes: root.bytes(),
    };
    let schema = started.elapsed();
    crate::phase::reached(&opts.phase, loading);
    // pg_dump's post-data order, which its dependencies need (a partition's index is
    // attached before a foreign key references the parent's key): runs of indexes and keys,
    // and runs of foreign keys, are built on several connections (a foreign key that
    // deadlocks with another is retried alone after its run); the rest runs in order.
    let (preamble, blocks) = split_blocks(post_data);
    let mut runs = runs(blocks);
    // The first run's indexes and keys depend on nothing but their table: each is built as
    // soon as its table is loaded, beside the loading of the others (as `pg_restore -j`
    // does), so that no connection waits for the biggest table to end before building.
    let early = match runs.first() {
        Some(run) if run.kind == RunKind::Parallel => {
            let first = runs.remove(0);
            let (early, rest) = early_blocks(first.blocks, &root.tables);
            if !rest.is_empty() {
                runs.insert(
                    0,
                    Run {
                        kind: RunKind::Parallel,
                        blocks: rest,
                    },
                );
            }
            early
        }
        _ => HashMap::new(),
    };
    // Tables, biggest first, on several connections.
    let mut tables: Vec<TableEntry> = root.tables.clone();
    tables.sort_by_key(|t| std::cmp::Reverse(t.content.bytes));
    let retry = load_and_build(target, store, tables, early, &preamble, workers, opts).await?;
    let loaded = started.elapsed();

    crate::phase::reached(&opts.phase, crate::Phase::IndexesAndConstraints);
    if !retry.is_empty() {
        runs.insert(
            0,
            Run {
                kind: RunKind::Sequential,
                blocks: retry,
            },
        );
    }
    for run in runs {
        let sequential = match run.kind {
            RunKind::Parallel => run_parallel(target, &preamble, run.blocks, workers).await?,
            RunKind::Sequential => run.blocks,
        };
        if sequential.is_empty() {
            continue;
        }
        let sql: String = sequential
            .iter()
            .map(|b| b.sql.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        main.batch_execute(&format!("{preamble}\n{sql}"))
            .await
            .map_err(pg("recreating foreign keys and triggers"))?;
    }

    let mut report = RestoreReport {
        path: RestorePath::Full,
        full_reason: Some("a new database".into()),
        tables: root.tables.len() as u64,
        rows: root.rows(),
        bytes: root.bytes(),
        ..RestoreReport::default()
    };
    let built = started.elapsed();
    crate::phase::reached(&opts.phase, crate::Phase::Sequences);
    set_sequences(&main, root, &mut report).await?;
    refresh_materialized_views(&main, root).await?;
    tracing::debug!(
        "restore into a new database: {} tables in {:.3} s; where the time went: \
         schema {:.3} s, tables {:.3} s, indexes and keys {:.3} s, sequences and views {:.3} s",
        root.tables.len(),
        started.elapsed().as_secs_f64(),
        schema.as_secs_f64(),
        (loaded - schema).as_secs_f64(),
        (built - loaded).as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    Ok(report)
}

/// What the loaders share: tables to load, indexes and keys ready to build (their table is
/// loaded), those waiting for their table, and how many tables are being loaded.
struct Loading {
    tables: VecDeque<TableEntry>,
    ready: VecDeque<Block>,
    waiting: HashMap<QualifiedName, Vec<Block>>,
    loading: usize,
    failed: bool,
    retry: Vec<Block>,
}

/// Loads `tables` on `workers` connections, each table in a transaction of its own, and
/// builds the blocks of `early` (indexes and keys, by table) as soon as their table is
/// loaded: a connection builds what is ready before it loads another table. Returns the
/// blocks that lost a deadlock, to build again alone.
async fn load_and_build<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    tables: Vec<TableEntry>,
    early: HashMap<QualifiedName, Vec<Block>>,
    preamble: &str,
    workers: usize,
    opts: &RestoreOptions,
) -> Result<Vec<Block>> {
    let state = Arc::new(Mutex::new(Loading {
        tables: VecDeque::from(tables),
        ready: VecDeque::new(),
        // Every table here is among `tables` (see [`early_blocks`]).
        waiting: early,
        loading: 0,
        failed: false,
        retry: Vec::new(),
    }));
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (target, store, state, changed, opts, preamble) = (
            target.clone(),
            store.clone(),
            state.clone(),
            changed.clone(),
            opts.clone(),
            preamble.to_owned(),
        );
        handles.push(tokio::spawn(async move {
            // However this loader ends short (an error, a panic), the others stop waiting
            // for tables it will not load.
            let stopped = Stopped {
                state: &state,
                changed: &changed,
                done: false,
            };
            let result = load_worker(&target, &store, &state, &changed, &opts, &preamble).await;
            let mut stopped = stopped;
            stopped.done = result.is_ok();
            result
        }));
    }
    join_all(handles).await?;
    let retry = std::mem::take(&mut lock(&state).retry);
    Ok(retry)
}

/// Marks the loading failed when dropped before `done`, and wakes the loaders that wait.
struct Stopped<'a> {
    state: &'a Mutex<Loading>,
    changed: &'a tokio::sync::Notify,
    done: bool,
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(self.state).failed = true;
            self.changed.notify_waiters();
        }
    }
}

fn lock(state: &Mutex<Loading>) -> std::sync::MutexGuard<'_, Loading> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// One loader's connection: builds what is ready, else loads the next table, else waits for
/// the others' tables, until nothing is left.
async fn load_worker<B: Backend + 'static>(
    target: &ConnectionTarget,
    store: &Arc<Store<B>>,
    state: &Mutex<Loading>,
    changed: &tokio::sync::Notify,
    opts: &RestoreOptions,
    preamble: &str,
) -> Result<()> {
    enum Next {
        Build(Block),
        Load(TableEntry),
        Wait,
    }
    let client = target.connect().await?;
    // Indexes and keys are built on a connection of their own, under the script's preamble
    // (its `client_encoding` among others), which must not apply to the rows loaded.
    let mut builder: Option<Client> = None;
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let mut s = lock(state);
            if s.failed {
                return Ok(());
            }
            if let Some(block) = s.ready.pop_front() {
                Next::Build(block)
            } else if let Some(table) = s.tables.pop_front() {
                s.loading += 1;
                Next::Load(table)
            } else if s.loading > 0 {
                Next::Wait
            } else {
                return Ok(());
            }
        };
        match next {
            Next::Wait => notified.await,
            Next::Build(block) => {
                let builder = match &mut builder {
                    Some(b) => b,
                    None => builder.insert(connect_builder(target, preamble).await?),
                };
                if let Some(lost) = build(builder, block).await? {
                    lock(state).retry.push(lost);
                }
            }
            Next::Load(table) => {
                client
                    .batch_execute(&format!("BEGIN; TRUNCATE ONLY {}", qualified(&table.table)))
                    .await
                    .map_err(pg(format!("loading table {}", table.table)))?;
                load_table(&client, store, &table, opts).await?;
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(pg(format!("loading table {}", table.table)))?;
                let mut s = lock(state);
                s.loading -= 1;
                if let Some(blocks) = s.waiting.remove(&table.table) {
                    s.ready.extend(blocks);
                }
                drop(s);
                changed.notify_waiters();
            }
        }
    }
}

/// The blocks of `blocks` whose table (an index's, or a key's) is one of `tables`, by table,
/// and the others (a table the statement does not name plainly, say), in their order.
fn early_blocks(
    blocks: Vec<Block>,
    tables: &[TableEntry],
) -> (HashMap<QualifiedName, Vec<Block>>, Vec<Block>) {
    let mut early: HashMap<QualifiedName, Vec<Block>> = HashMap::new();
    let mut rest = Vec::new();
    for block in blocks {
        match block_table(&block).filter(|t| tables.iter().any(|e| &e.table == t)) {
            Some(table) => early.entry(table).or_default().push(block),
            None => rest.push(block),
        }
    }
    (early, rest)
}

/// The table an index or key block of a pg_dump script is built on: from its statement,
/// `CREATE [UNIQUE] INDEX name ON [ONLY] schema.table …` or `ALTER TABLE [ONLY]
/// schema.table ADD CONSTRAINT …`. `None` for any other statement, or one that holds more
/// than one (a `SET default_tablespace` before it, say), or names it otherwise.
fn block_table(block: &Block) -> Option<QualifiedName> {
    let sql = block
        .sql
        .trim_start_matches(|c: char| c == '-' || c.is_whitespace());
    let rest = if let Some(rest) = sql
        .strip_prefix("CREATE INDEX ")
        .or_else(|| sql.strip_prefix("CREATE UNIQUE INDEX "))
    {
        match identifiers(rest).ok()? {
            (index, rest) if index.len() == 1 => rest.strip_prefix(" ON ")?,
            _ => return None,
        }
    } else {
        sql.strip_prefix("ALTER TABLE ")?
    };
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    let (names, rest) = identifiers(rest).ok()?;
    let [schema, name] = <[String; 2]>::try_from(names).ok()?;
    if !(rest.starts_with(' ') || rest.starts_with('\n')) {
        return None;
    }
    // One statement: nothing after its end but blank lines and comments.
    let end = rest.find(";\n")?;
    let after = &rest[end + 2..];
    let only_one = after
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"));
    only_one.then(|| QualifiedName::new(schema, name))
}

/// Runs `blocks` on `workers` connections. Blocks that lose a deadlock are returned, to run
/// again alone.
async fn run_parallel(
    target: &ConnectionTarget,
    preamble: &str,
    blocks: Vec<Block>,
    workers: usize,
) -> Result<Vec<Block>> {
    let queue = Arc::new(Mutex::new(VecDeque::from(blocks)));
    let retry = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (target, queue, retry, preamble) = (
            target.clone(),
            queue.clone(),
            retry.clone(),
            preamble.to_owned(),
        );
        handles.push(tokio::spawn(async move {
            let client = connect_builder(&target, &preamble).await?;
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(block) = next else { break };
                if let Some(lost) = build(&client, block).await? {
                    retry.lock().unwrap_or_else(|p| p.into_inner()).push(lost);
                }
            }
            Ok::<_, Error>(())
        }));
    }
    join_all(handles).await?;
    let retry = std::mem::take(&mut *retry.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(retry)
}

/// A connection to build indexes and keys on, under the post-data script's preamble.
async fn connect_builder(target: &ConnectionTarget, preamble: &str) -> Result<Client> {
    let client = target.connect().await?;
    client
        .batch_execute(&format!("{preamble}\nSET maintenance_work_mem = '256MB';"))
        .await
        .map_err(pg("preparing to build indexes and keys"))?;
    Ok(client)
}

/// Builds `block` on `client`: the block back when it lost a deadlock, to build again alone.
async fn build(client: &Client, block: Block) -> Result<Option<Block>> {
    match client.batch_execute(&block.sql).await {
        Ok(()) => Ok(None),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) => {
            Ok(Some(block))
        }
        Err(e) => Err(pg(format!("building {}", block.name))(e)),
    }
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<Result<()>>>) -> Result<()> {
    let mut first = None;
    for h in handles {
        let r = h
            .await
            .map_err(|e| Error::Internal(format!("a restore task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// One object of a pg_dump script: its header's name and type, and its SQL.
#[derive(Debug, Clone)]
struct Block {
    name: String,
    kind: String,
    sql: String,
}

/// Whether a run of blocks may be built on several connections at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Parallel,
    Sequential,
}

/// Consecutive blocks of a script built the same way.
#[derive(Debug)]
struct Run {
    kind: RunKind,
    blocks: Vec<Block>,
}

/// The script's blocks, in their order, cut into runs: consecutive indexes and keys, or
/// consecutive foreign keys, may be built at once; anything else runs alone, in order.
fn runs(blocks: Vec<Block>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut last_group = "";
    for block in blocks {
        let group = match block.kind.as_str() {
            "INDEX" | "CONSTRAINT" => "keys",
            "FK CONSTRAINT" => "foreign keys",
            _ => "",
        };
        let kind = if group.is_empty() {
            RunKind::Sequential
        } else {
            RunKind::Parallel
        };
        match runs.last_mut() {
            Some(run) if run.kind == kind && group == last_group => run.blocks.push(block),
            _ => runs.push(Run {
                kind,
                blocks: vec![block],
            }),
        }
        last_group = group;
    }
    runs
}

/// The name and type a block header (`<name>; Type: <type>; Schema: <s>; Owner: <o>`)
/// gives, or an empty type when a name holds `; ` and the header cannot be read for sure:
/// such a block is then built alone, in its place.
fn header_kind(header: &str) -> (String, String) {
    let parts: Vec<&str> = header.trim_end_matches('\n').split("; ").collect();
    match parts.as_slice() {
        [name, kind, schema, owner]
            if schema.starts_with("Schema: ") && owner.starts_with("Owner: ") =>
        {
            let kind = kind.strip_prefix("Type: ").unwrap_or("");
            ((*name).to_owned(), kind.to_owned())
        }
        _ => (header.trim_end().to_owned(), String::new()),
    }
}

/// Splits a pg_dump script into its preamble (the `SET` lines before the first object) and
/// its objects, by the `-- Name: …; Type: …;` comment headers pg_dump writes.
fn split_blocks(script: &str) -> (String, Vec<Block>) {
    let mut preamble = String::new();
    let mut blocks: Vec<Block> = Vec::new();
    for line in script.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("-- Name: ") {
            let (name, kind) = header_kind(header);
            blocks.push(Block {
                name,
                kind,
                sql: String::new(),
            });
            continue;
        }
        match blocks.last_mut() {
            Some(b) => b.sql.push_str(line),
            None => preamble.push_str(line),
        }
    }
    (preamble, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_scripts_split_into_objects() {
        let script = "SET a = 1;\n--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: x\n--\n\nALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n\n--\n-- Name: t_idx; Type: INDEX; Schema: public; Owner: x\n--\n\nCREATE INDEX t_idx ON public.t USING btree (v);\n";
        let (preamble, blocks) = split_blocks(script);
        assert_eq!(preamble, "SET a = 1;\n--\n");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].kind, "CONSTRAINT");
        assert!(blocks[0].sql.contains("PRIMARY KEY"));
        assert_eq!(blocks[1].kind, "INDEX");
        assert_eq!(blocks[1].name, "t_idx");
    }

    #[test]
    fn runs_keep_the_scripts_order() {
        let script = "SET a = 1;\n\
            -- Name: p p_pkey; Type: CONSTRAINT; Schema: public; Owner: x\nALTER TABLE p;\n\
            -- Name: Escap3e; Escap3e;_pkey; Type: CONSTRAINT; Schema: public; Owner: x\nALTER TABLE e;\n\
            -- Name: c c_pkey; Type: CONSTRAINT; Schema: public; Owner: x\nALTER TABLE c;\n\
            -- Name: c_idx; Type: INDEX; Schema: public; Owner: x\nCREATE INDEX c_idx;\n\
            -- Name: c_pkey; Type: INDEX ATTACH; Schema: public; Owner: x\nALTER INDEX p_pkey ATTACH;\n\
            -- Name: r r_fk; Type: FK CONSTRAINT; Schema: public; Owner: x\nALTER TABLE r ADD FOREIGN KEY;\n\
            -- Name: s s_fk; Type: FK CONSTRAINT; Schema: public; Owner: x\nALTER TABLE s ADD FOREIGN KEY;\n";
        let (_, blocks) = split_blocks(script);
        let runs = runs(blocks);
        let shape: Vec<(RunKind, Vec<&str>)> = runs
            .iter()
            .map(|r| (r.kind, r.blocks.iter().map(|b| b.sql.trim()).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (RunKind::Parallel, vec!["ALTER TABLE p;"]),
                (RunKind::Sequential, vec!["ALTER TABLE e;"]),
                (
                    RunKind::Parallel,
                    vec!["ALTER TABLE c;", "CREATE INDEX c_idx;"]
                ),
                (RunKind::Sequential, vec!["ALTER INDEX p_pkey ATTACH;"]),
                (
                    RunKind::Parallel,
                    vec![
                        "ALTER TABLE r ADD FOREIGN KEY;",
                        "ALTER TABLE s ADD FOREIGN KEY;"
                    ]
                ),
            ]
        );
    }

    fn table_of(sql: &str) -> Option<QualifiedName> {
        block_table(&Block {
            name: String::new(),
            kind: "INDEX".into(),
            sql: sql.into(),
        })
    }

    #[test]
    fn an_index_or_key_names_its_table_or_is_left_for_later() {
        let t = |schema: &str, name: &str| Some(QualifiedName::new(schema, name));
        assert_eq!(
            table_of("--\n\nCREATE INDEX i ON public.orders USING btree (customer_id);\n\n\n"),
            t("public", "orders")
        );
        assert_eq!(
            table_of("CREATE UNIQUE INDEX \"x\"\"; ON y\" ON ONLY \"Sch.ema\".\"t \"\"1\"\"\" USING btree (a);\n"),
            t("Sch.ema", "t \"1\"")
        );
        assert_eq!(
            table_of("--\n\nALTER TABLE ONLY public.customers\n    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);\n\n"),
            t("public", "customers")
        );
        assert_eq!(
            table_of("ALTER TABLE ONLY \"é\nß\".\"select\"\n    ADD CONSTRAINT k UNIQUE (a);\n"),
            t("é\nß", "select")
        );
        // Anything else is built after every table is loaded, as before.
        for other in [
            "SET default_tablespace = fast;\n\nCREATE INDEX i ON public.t USING btree (a);\n",
            "ALTER DOMAIN public.d\n    ADD CONSTRAINT c CHECK ((VALUE > 0)) NOT VALID;\n",
            "CREATE INDEX i ON public.t USING btree (a);\nCOMMENT ON INDEX public.i IS 'x';\n",
            "CREATE INDEX i ON public.t USING btree (a)",
            "CREATE INDEX i ON t USING btree (a);\n",
            "CREATE INDEX \"unterminated ON public.t USING btree (a);\n",
        ] {
            assert_eq!(table_of(other), None, "{other}");
        }
    }

    #[test]
    fn partial_names_fit_postgres() {
        assert_eq!(partial_prefix("copy"), "copy_phony_partial_");
        assert!(partial_prefix(&"x".repeat(63)).len() + 8 <= 63);
    }
}
