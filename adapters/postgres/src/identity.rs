//! Which database a connection reaches, against the one a snapshot was taken of.
//!
//! A store can hold snapshots of several databases; an in-place restore of one over another
//! would replace that other database's schema and rows. The snapshot's record names its
//! source: the database's name always, and (where the role could read them) the cluster's
//! system identifier and the database's object id.

use phony_core::SourceInfo;

use crate::connect::ConnectionTarget;
use crate::error::{pg, Result};

/// Why the database at `target` is not `source` (the database a snapshot was taken of),
/// or `None` when it is.
///
/// The same database is the same name on the same cluster. The cluster is compared when
/// both sides know its system identifier (a role without `pg_control_system()` leaves it
/// unknown). The database's object id is not compared: a database dropped and created
/// again under its name (a CI job's fresh database, say) is still the one it replaces.
pub async fn other_database(
    target: &ConnectionTarget,
    source: &SourceInfo,
) -> Result<Option<String>> {
    if target.dbname() != source.database {
        return Ok(Some(format!(
            "it was taken of database {}, not {}",
            source.database,
            target.dbname()
        )));
    }
    let Some(point) = &source.point else {
        return Ok(None);
    };
    let client = target
        .with_application_name("phony restore")
        .connect()
        .await?;
    let row = client
        .query_one(
            "SELECT CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
                    THEN (pg_catalog.pg_control_system()).system_identifier::text END",
            &[],
        )
        .await
        .map_err(pg("reading the server's system identifier"))?;
    Ok(match row.get::<_, Option<String>>(0) {
        Some(live) if live != point.system_id => Some(format!(
            "it was taken of database {} on another server (system identifier {}, not {live})",
            source.database, point.system_id
        )),
        _ => None,
    })
}
