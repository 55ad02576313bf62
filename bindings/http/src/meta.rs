//! The metadata database: created if missing, migrated at start (embedded, versioned SQL
//! files applied under an advisory lock, so two servers starting at once apply each once),
//! and reached through a pool.

use std::str::FromStr as _;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::{Error, Result};

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "automation",
        include_str!("../migrations/0002_automation.sql"),
    ),
    (3, "web", include_str!("../migrations/0003_web.sql")),
];

/// The advisory lock key taken while migrating ('phony-mg').
const MIGRATION_LOCK: i64 = 0x7068_6f6e_792d_6d67;

pub fn config(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| Error::Config(format!("the metadata database URL is not valid: {e}")))
}

/// The metadata database's name.
pub fn dbname(config: &tokio_postgres::Config) -> String {
    config.get_dbname().unwrap_or("postgres").to_owned()
}

/// Creates the database `url` names if it does not exist (connecting to `postgres` on the
/// same server to do so).
pub async fn ensure_database(url: &str) -> Result<()> {
    let config = config(url)?;
    let name = dbname(&config);
    match connect(&config).await {
        Ok(_) => return Ok(()),
        Err(e) if e.as_db_error().map(|d| d.code().code()) == Some("3D000") => {}
        Err(e) => return Err(Error::meta("connecting to the metadata database", e)),
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin)
        .await
        .map_err(|e| Error::meta("connecting to create the metadata database", e))?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!("created the metadata database {name}");
            Ok(())
        }
        // Another server created it meanwhile.
        Err(e) if e.as_db_error().map(|d| d.code().code()) == Some("42P04") => Ok(()),
        Err(e) => Err(Error::meta("creating the metadata database", e)),
    }
}

/// One connection outside the pool (migrations, the job listener).
pub async fn connect(
    config: &tokio_postgres::Config,
) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("metadata connection ended: {e}");
        }
    });
    Ok(client)
}

/// Applies the migrations not applied yet, under an advisory lock.
pub async fn migrate(url: &str) -> Result<()> {
    let client = connect(&config(url)?)
        .await
        .map_err(|e| Error::meta("connecting to the metadata database", e))?;
    let m = |e| Error::meta("migrating the metadata database", e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(m)?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(m)?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_versions", &[])
        .await
        .map_err(m)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let script = format!(
            "BEGIN;\n{sql}\nINSERT INTO schema_versions (version, name) VALUES ({version}, '{name}');\nCOMMIT;"
        );
        client.batch_execute(&script).await.map_err(m)?;
        tracing::info!("applied metadata migration {version} ({name})");
    }
    if let Some(newest) = applied.iter().max() {
        if MIGRATIONS.iter().all(|(v, _, _)| v < newest) {
            return Err(Error::Config(format!(
                "the metadata database is at version {newest}, newer than this server knows: upgrade the server"
            )));
        }
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(m)?;
    Ok(())
}

/// The pool requests use; a request waits at most a few seconds for a connection, so
/// that an unavailable metadata database makes requests fail cleanly (503).
pub fn pool(url: &str, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        config(url)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| Error::Config(format!("building the metadata pool: {e}")))
}
