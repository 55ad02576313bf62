//! A fingerprint of a database's state that ignores physical row order: the normalised
//! schema dump, each table's rows sorted, each sequence's state, the database's encoding,
//! locale and settings. Two databases with equal fingerprints hold the same schema, rows and
//! sequences, under the same settings.

use std::collections::BTreeMap;

use phony_core::DatabaseProperties;

use crate::connect::ConnectionTarget;
use crate::database;
use crate::error::{pg, Result};
use crate::read::catalog;
use crate::read::schema_dump::{normalize, PgDump};
use crate::sql::qualified;

/// The state of a database, comparable across databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// `pg_dump --schema-only` without comments, blank lines and meta-commands.
    pub schema: String,
    /// Per table: row count and md5 of the sorted rows.
    pub tables: BTreeMap<String, (i64, String)>,
    /// Per sequence: `(last_value, is_called)`.
    pub sequences: BTreeMap<String, (i64, bool)>,
    /// The database's encoding, locale and `ALTER DATABASE … SET` settings.
    pub database: DatabaseProperties,
}

impl Fingerprint {
    /// Takes the fingerprint of the database at `target`.
    pub async fn of(target: &ConnectionTarget) -> Result<Self> {
        let client = target.connect().await?;
        let (version, _) = catalog::server_version(&client).await?;
        let schema = normalize(
            &PgDump::find(version / 10000)
                .await?
                .dump(target, None, None)
                .await?,
        );
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(pg("starting the fingerprint transaction"))?;
        let mut tables = BTreeMap::new();
        // Materialized views are not compared: a restore refreshes them from the restored
        // rows, so one that was stale when the snapshot was taken comes back fresh.
        let relations: Vec<_> = catalog::tables(&client)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        for name in relations {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), ''))
                         FROM ONLY {} AS t",
                        qualified(&name)
                    ),
                    &[],
                )
                .await
                .map_err(pg(format!("reading {name}")))?;
            tables.insert(name.to_string(), (row.get(0), row.get(1)));
        }
        let mut sequences = BTreeMap::new();
        for seq in catalog::sequences(&client).await? {
            let row = client
                .query_one(
                    &format!("SELECT last_value, is_called FROM {}", qualified(&seq)),
                    &[],
                )
                .await
                .map_err(pg(format!("reading {seq}")))?;
            sequences.insert(seq.to_string(), (row.get(0), row.get(1)));
        }
        let database = database::properties(&client).await?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(pg("ending the fingerprint transaction"))?;
        Ok(Fingerprint {
            schema,
            tables,
            sequences,
            database,
        })
    }
}
