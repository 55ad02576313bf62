//! The kit: a baseline taken once per process, and databases in that state handed to one
//! test at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use phony_core::config::Compression;
use phony_core::{RootManifest, Store, StoreConfig};
use phony_object_store::ObjectStoreBackend;
use phony_postgres::{restore_in, ConnectionTarget, RestoreOptions};
use tokio::sync::{Mutex, OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::{pg, Error, Result};
use crate::guard::{Release, TestDatabase};
use crate::server::{default_server_url, url_with_dbname};
use crate::setup::{SchemaChanges, Setup, Source, Strategy};
use crate::slot::{Slot, LEASE_TABLE};
use crate::{migrate, runtime, schema};

/// Databases the kit creates are named `phony_tk_<tag>` (a baseline built from SQL) and
/// `phony_tk_<tag>_<n>` (pool copies), `<tag>` being 8 hex digits of the process's kit.
const PREFIX: &str = "phony_tk_";

/// A source of clean databases for the tests of one binary. Put it in a `static`: the
/// baseline is taken by the first test that asks, once.
///
/// ```no_run
/// use phony_testkit::{Setup, Testkit};
///
/// static DB: Testkit = Testkit::new(|| Setup::migrations("migrations"));
///
/// #[tokio::test]
/// async fn signing_up_commits_a_user() -> Result<(), Box<dyn std::error::Error>> {
///     let db = DB.checkout().await?;
///     let client = db.connect().await?;
///     client.execute("INSERT INTO users (email) VALUES ('a@example.com')", &[]).await?;
///     Ok(())
/// } // `db` is dropped: the database is reset to the baseline for the next test
/// ```
pub struct Testkit {
    recipe: Recipe,
    inner: OnceCell<Arc<Inner>>,
}

enum Recipe {
    Fn(fn() -> Setup),
    Value(Setup),
}

impl std::fmt::Debug for Testkit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testkit")
            .field("started", &self.inner.initialized())
            .finish()
    }
}

impl Testkit {
    /// A kit built from `setup` when a test first asks for a database.
    pub const fn new(setup: fn() -> Setup) -> Self {
        Testkit {
            recipe: Recipe::Fn(setup),
            inner: OnceCell::const_new(),
        }
    }

    /// A kit from a `setup` known only at run time (not for a `static`). Dropping the kit
    /// drops the databases it created.
    pub fn from_setup(setup: Setup) -> Self {
        Testkit {
            recipe: Recipe::Value(setup),
            inner: OnceCell::new(),
        }
    }

    fn setup(&self) -> Setup {
        match &self.recipe {
            Recipe::Fn(f) => f(),
            Recipe::Value(s) => s.clone(),
        }
    }

    /// A database in the baseline state, for this test alone until the guard is dropped
    /// (or [`finish`](TestDatabase::finish)ed), when it is reset for the next test.
    ///
    /// The first call builds the baseline (creates and fills the database if asked,
    /// captures it); if that fails, the error is returned and the next call tries again.
    pub async fn checkout(&self) -> Result<TestDatabase> {
        let inner = self
            .inner
            .get_or_try_init(|| runtime::run(Inner::start(self.setup())))
            .await?
            .clone();
        runtime::run(inner.checkout()).await
    }
}

impl Drop for Testkit {
    /// Drops the databases the kit created (its baseline built from SQL, its pool copies),
    /// once the tests still holding one have let go. A kit in a `static` is never dropped:
    /// the next process that starts a kit on the same server drops them instead.
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if let Err(e) = runtime::block(async move { inner.cleanup().await }) {
                eprintln!("phony-testkit: dropping the kit's databases: {e}");
            }
        }
    }
}

/// What a reset did.
#[derive(Debug, Clone)]
pub struct ResetReport {
    /// Wall time of the reset, the schema check included.
    pub duration: Duration,
    /// Whether the test had changed the schema (`None`: not checked).
    pub schema_changed: Option<bool>,
    /// What phony's restore did.
    pub restore: phony_postgres::RestoreReport,
}

pub(crate) struct Inner {
    base_url: String,
    base: ConnectionTarget,
    /// The kit created the base database (so no other process uses it).
    owned: bool,
    tag: String,
    setup: Setup,
    store: Arc<Store<ObjectStoreBackend>>,
    root: RootManifest,
    root_id: phony_core::BlobId,
    digest: String,
    permits: Arc<Semaphore>,
    idle: std::sync::Mutex<Vec<Slot>>,
    created: Mutex<usize>,
    /// Holds the advisory lock that tells other processes this kit's databases are alive.
    keeper: Client,
}

impl Inner {
    async fn start(setup: Setup) -> Result<Arc<Inner>> {
        let tag = format!("{:08x}", rand::random::<u32>());
        let (base_url, owned) = match &setup.source {
            Source::Database(url) => (url.clone(), false),
            _ => {
                let server = match &setup.server {
                    Some(s) => s.clone(),
                    None => tokio::task::spawn_blocking(default_server_url)
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?
                        .map_err(Error::Cluster)?,
                };
                (url_with_dbname(&server, &format!("{PREFIX}{tag}")), true)
            }
        };
        let base = ConnectionTarget::parse(Some(&base_url))
            .map_err(|e| Error::Invalid(e.to_string()))?
            .with_application_name("phony-testkit");
        let keeper = maintenance(&base)
            .connect()
            .await
            .map_err(|source| Error::Unreachable {
                target: base.to_string(),
                source,
            })?;
        keeper
            .query_one(
                "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtextextended($1, 0))",
                &[&tag_key(&tag)],
            )
            .await
            .map_err(|e| pg("taking the kit's liveness lock", e))?;
        // Dropping databases takes a while (each DROP waits for a checkpoint): beside the
        // baseline's build and capture, and awaited before the first checkout, so that a
        // short test process never exits with the sweep half done (its leftovers would
        // pile up faster than later sweeps removed them).
        let sweeper = maintenance(&base);
        let own = tag.clone();
        let sweep = tokio::spawn(async move {
            if let Err(e) = sweep_orphans(&sweeper, &own).await {
                tracing::debug!("sweeping databases of finished processes: {e}");
            }
        });

        if owned {
            build(&keeper, &base, &setup.source).await?;
        } else {
            base.connect().await.map_err(|source| Error::Unreachable {
                target: base.to_string(),
                source,
            })?;
        }

        // The store lives in this process's memory for its tests: compressed for speed, not
        // size (level 1 compresses the benchmark's rows four times faster than the default
        // for 6% more bytes; see docs/design.md, "Compression levels").
        let config = StoreConfig {
            compression: Compression::zstd(1),
            ..StoreConfig::default()
        };
        let store = Arc::new(Store::open_or_init(ObjectStoreBackend::memory(), config).await?);
        // Another process may be mid-test on a shared database: take its lock, and refuse
        // a database a dead process left dirty.
        let lock = if owned {
            None
        } else {
            Some(lock_base(&base).await?)
        };
        if !owned && setup.strategy == Strategy::Serial {
            check_not_dirty(&base).await?;
        }
        if setup.tracking {
            // Tracking on before the capture: the capture marks where the baseline is.
            start_tracking(&base, None).await;
        }
        // The baseline is a snapshot like any other: taken through the lifecycle API.
        let record = phony_engine::Engine::from_store(Arc::clone(&store))
            .create(
                &base,
                phony_engine::Create::default(),
                phony_engine::CreateOptions::default(),
            )
            .await
            .map_err(Error::from_engine)?;
        let manifest = store.root(&record.root).await?;
        if setup.tracking {
            // The kit restores its baseline only: other snapshots' marks would make every
            // reset log the rows it rewrites for them.
            let forgotten = async {
                let client = base.connect().await?;
                match phony_postgres::tracking::valid(&client).await? {
                    true => {
                        phony_postgres::tracking::forget_other_marks(&client, &record.root).await
                    }
                    false => Ok(()),
                }
            };
            if let Err(e) = forgotten.await {
                tracing::info!("keeping other snapshots' marks in {}: {e}", base.dbname());
            }
        }
        let digest: String = base
            .connect()
            .await?
            .query_one(schema::DIGEST, &[])
            .await
            .map_err(|e| pg("reading the schema", e))?
            .get(0);
        drop(lock);
        let _ = sweep.await;

        let slots = match setup.strategy {
            Strategy::Serial => 1,
            Strategy::Pool { size } => size.max(1),
        };
        Ok(Arc::new(Inner {
            base_url,
            base,
            owned,
            tag,
            store,
            root: manifest,
            root_id: record.root,
            digest,
            permits: Arc::new(Semaphore::new(slots)),
            idle: std::sync::Mutex::new(Vec::new()),
            created: Mutex::new(0),
            keeper,
            setup,
        }))
    }

    async fn checkout(self: Arc<Self>) -> Result<TestDatabase> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut slot = match idle {
            Some(slot) => slot,
            None => self.new_slot().await?,
        };
        let leased = self.is_shared(&slot);
        if leased {
            if let Err(e) = slot.take_lease(self.setup.lock_timeout).await {
                self.put_back(slot);
                return Err(e);
            }
        }
        if let Some(reason) = slot.dirty.take() {
            tracing::info!(
                "{} was not reset after its last test ({reason}); resetting it now",
                slot.target
            );
            if let Err(e) = self.reset(&mut slot).await {
                let err = Error::Poisoned {
                    database: slot.target.dbname().to_owned(),
                    message: e.to_string(),
                };
                slot.dirty = Some(e.to_string());
                if leased {
                    slot.unlock().await;
                }
                self.put_back(slot);
                return Err(err);
            }
        }
        Ok(TestDatabase::new(Release {
            inner: self,
            slot,
            leased,
            permit,
        }))
    }

    /// Whether `slot` is the user's own database, which other processes may use too.
    fn is_shared(&self, slot: &Slot) -> bool {
        !self.owned && slot.target.dbname() == self.base.dbname()
    }

    pub(crate) fn put_back(&self, slot: Slot) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(slot);
        }
    }

    async fn new_slot(&self) -> Result<Slot> {
        let mut created = self.created.lock().await;
        let slot = match self.setup.strategy {
            Strategy::Serial => Slot::new(self.base_url.clone(), self.base.clone()),
            Strategy::Pool { .. } => {
                let name = format!("{PREFIX}{}_{}", self.tag, *created + 1);
                let _lock = if self.owned {
                    None
                } else {
                    Some(lock_base(&self.base).await?)
                };
                clone_database(&self.base, &name).await?;
                let target = self.base.with_dbname(&name);
                if self.setup.tracking {
                    // A copy is at the baseline now: tracking starts from there.
                    start_tracking(&target, Some(&self.root_id)).await;
                }
                Slot::new(url_with_dbname(&self.base_url, &name), target)
            }
        };
        *created += 1;
        Ok(slot)
    }

    /// Brings the slot's database back to the baseline.
    pub(crate) async fn reset(&self, slot: &mut Slot) -> Result<ResetReport> {
        let started = Instant::now();
        let policy = self.setup.schema_changes;
        let lock_timeout = self.setup.lock_timeout;
        // After a reset that the change log drove, the log also tells whether the schema
        // changed since: the digest is needed only when it cannot.
        let (terminated, digest) = slot
            .checks(
                lock_timeout,
                self.setup.terminate_sessions,
                policy != SchemaChanges::Ignore && !slot.tracked,
            )
            .await?;
        let opts = RestoreOptions {
            lock_timeout,
            // Done above, sparing the kit's own session.
            force: false,
            // The next checkout resets again if this one fails.
            transactional_sequences: false,
            ..RestoreOptions::default()
        };
        let target = slot.target.clone();
        let session = slot.control(lock_timeout).await?;
        let mut restore = restore_in(session, &target, &self.store, &self.root, &opts).await?;
        restore.terminated += terminated;
        slot.tracked = restore.tracked;
        if restore.tracked {
            slot.maintain().await;
        }
        let schema_changed = match policy {
            SchemaChanges::Ignore => None,
            _ => digest.map(|d| d != self.digest).or(restore.schema_changed),
        };
        if schema_changed == Some(true) {
            if policy == SchemaChanges::Fail {
                return Err(Error::SchemaChanged {
                    database: slot.target.dbname().to_owned(),
                });
            }
            tracing::info!(
                "a test changed the schema of {}: reset by the full path",
                slot.target.dbname()
            );
        }
        let duration = started.elapsed();
        tracing::debug!(
            database = slot.target.dbname(),
            duration_ms = duration.as_secs_f64() * 1000.0,
            path = restore.path.as_str(),
            "reset"
        );
        Ok(ResetReport {
            duration,
            schema_changed,
            restore,
        })
    }

    /// Waits for every slot to come back, then drops the kit's databases.
    async fn cleanup(&self) -> Result<()> {
        let all = match self.setup.strategy {
            Strategy::Serial => 1,
            Strategy::Pool { size } => u32::try_from(size.max(1)).unwrap_or(u32::MAX),
        };
        // A guard that outlives its kit must not hang the drop: after a while, go ahead.
        let _all =
            tokio::time::timeout(Duration::from_secs(30), self.permits.acquire_many(all)).await;
        let mut names: Vec<String> = (1..=*self.created.lock().await)
            .map(|n| format!("{PREFIX}{}_{n}", self.tag))
            .collect();
        if self.owned {
            names.push(self.base.dbname().to_owned());
        }
        for name in names {
            self.keeper
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .map_err(|e| pg(&format!("dropping {name}"), e))?;
        }
        Ok(())
    }

    pub(crate) fn lock_timeout(&self) -> Duration {
        self.setup.lock_timeout
    }

    pub(crate) fn schema_policy(&self) -> SchemaChanges {
        self.setup.schema_changes
    }
}

/// The maintenance database of the server `target` is on, where the kit's locks live (so
/// that terminating a test database's sessions never touches them).
pub(crate) fn maintenance(target: &ConnectionTarget) -> ConnectionTarget {
    target.with_dbname("postgres")
}

fn tag_key(tag: &str) -> String {
    format!("phony-testkit tag {tag}")
}

/// The advisory lock key of a shared database.
pub(crate) fn base_lock_key(target: &ConnectionTarget) -> String {
    format!("phony-testkit base {}", target.dbname())
}

/// A session on the maintenance database holding the lock of the shared database
/// `target`: other processes' kits wait for it. Dropping it releases the lock.
pub(crate) async fn lock_base(target: &ConnectionTarget) -> Result<Client> {
    let client = maintenance(target).connect().await?;
    client
        .query_one(
            "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtextextended($1, 0))",
            &[&base_lock_key(target)],
        )
        .await
        .map_err(|e| pg(&format!("waiting for the lock on {}", target.dbname()), e))?;
    Ok(client)
}

/// Refuses a shared database that a test process left mid-test when it died.
async fn check_not_dirty(target: &ConnectionTarget) -> Result<()> {
    let client = target.connect().await?;
    let exists: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[&LEASE_TABLE],
        )
        .await
        .map_err(|e| pg("looking for the testkit's lease table", e))?
        .get(0);
    if !exists {
        return Ok(());
    }
    let rows = client
        .query(
            &format!("SELECT holder, since::text FROM {LEASE_TABLE}"),
            &[],
        )
        .await
        .map_err(|e| pg("reading the testkit's lease table", e))?;
    match rows.first() {
        None => Ok(()),
        Some(row) => Err(Error::LeftDirty {
            database: target.dbname().to_owned(),
            detail: format!(
                "{} since {}",
                row.get::<_, String>(0),
                row.get::<_, String>(1)
            ),
        }),
    }
}

/// Creates and fills the base database of a kit built from SQL; drops it on failure.
async fn build(keeper: &Client, base: &ConnectionTarget, source: &Source) -> Result<()> {
    let name = base.dbname().to_owned();
    keeper
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|e| pg(&format!("creating database {name}"), e))?;
    let result = async {
        let client = base.connect().await?;
        match source {
            Source::Sql(sql) => client
                .batch_execute(sql)
                .await
                .map_err(|e| pg("running the setup SQL", e)),
            Source::SqlFile(path) => migrate::apply(&client, std::slice::from_ref(path)).await,
            Source::Migrations(dir) => {
                if !dir.is_dir() {
                    return Err(Error::Invalid(format!(
                        "migrations directory {} does not exist",
                        dir.display()
                    )));
                }
                migrate::apply(&client, &migrate::migration_files(dir)?).await
            }
            Source::Database(_) => Ok(()),
        }
    }
    .await;
    if result.is_err() {
        let _ = keeper
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
    result
}

/// Turns change tracking on in `target` (marking it as at `root`, when given). A role that
/// may not (tracking needs a superuser) goes on without it: resets compare content.
async fn start_tracking(target: &ConnectionTarget, root: Option<&phony_core::BlobId>) {
    let result = async {
        let client = target.connect().await?;
        match root {
            Some(root) => phony_postgres::tracking::install_at(&client, root).await,
            None => {
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(phony_postgres::error::pg("starting a transaction"))?;
                phony_postgres::tracking::install(&client).await?;
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(phony_postgres::error::pg("committing"))
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::info!("change tracking stays off in {}: {e}", target.dbname());
    }
}

/// `CREATE DATABASE name TEMPLATE base`, retried while the base's last sessions exit.
async fn clone_database(base: &ConnectionTarget, name: &str) -> Result<()> {
    let admin = maintenance(base).connect().await?;
    let sql = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
        base.dbname().replace('"', "\"\"")
    );
    let mut attempts = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(pg(&format!("copying {} to {name}", base.dbname()), e)),
        }
    }
}

/// Drops at once, on as many connections.
const SWEEPERS: usize = 4;

/// Drops the databases of kits whose process is gone (their liveness lock is free), and
/// any of the kit's databases a drop left half done (PostgreSQL 15.4+ marks an interrupted
/// `DROP DATABASE`'s database invalid, `datconnlimit = -2`: nobody can connect to it, and
/// only another `DROP DATABASE` removes it).
async fn sweep_orphans(server: &ConnectionTarget, own_tag: &str) -> Result<()> {
    let keeper = server.connect().await?;
    let rows = keeper
        .query(
            "SELECT datname::text, datconnlimit = -2 FROM pg_catalog.pg_database
             WHERE datname ~ '^phony_tk_[0-9a-f]{8}(_[0-9]+)?$' ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| pg("listing databases", e))?;
    let found: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut tags: Vec<&str> = found
        .iter()
        .filter_map(|(n, _)| n.get(PREFIX.len()..PREFIX.len() + 8))
        .filter(|t| *t != own_tag)
        .collect();
    tags.dedup();
    let mut doomed: Vec<&str> = found
        .iter()
        .filter(|(_, invalid)| *invalid)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut freed = Vec::new();
    for tag in tags {
        let free: bool = keeper
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1, 0))",
                &[&tag_key(tag)],
            )
            .await
            .map_err(|e| pg("checking for a live kit", e))?
            .get(0);
        if !free {
            continue;
        }
        freed.push(tag);
        for (name, _) in found
            .iter()
            .filter(|(n, _)| n[PREFIX.len()..].starts_with(tag))
        {
            if !doomed.contains(&name.as_str()) {
                doomed.push(name);
            }
        }
    }
    // Each DROP DATABASE waits for a checkpoint: several at once share them.
    for batch in doomed.chunks(SWEEPERS) {
        let mut drops = tokio::task::JoinSet::new();
        for name in batch {
            let (server, name) = (server.clone(), (*name).to_owned());
            drops.spawn(async move {
                tracing::debug!("dropping {name}, left by a finished test process");
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                match server.connect().await {
                    Ok(client) => {
                        if let Err(e) = client.batch_execute(&sql).await {
                            tracing::debug!("dropping {name}: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("dropping {name}: {e}"),
                }
            });
        }
        while drops.join_next().await.is_some() {}
    }
    for tag in freed {
        let _ = keeper
            .query_one(
                "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended($1, 0))",
                &[&tag_key(tag)],
            )
            .await;
    }
    Ok(())
}

/// Keeps the permit type in one place.
pub(crate) type Permit = OwnedSemaphorePermit;
