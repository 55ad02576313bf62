//! What a database holds, read from the system catalogs: tables with their stored columns
//! and keys, sequences, materialized views and user schemas.

use phony_core::QualifiedName;
use tokio_postgres::GenericClient;

use crate::error::{pg, Result};

/// The schema phony keeps its own objects in. It never appears in snapshots, restores,
/// diffs or fingerprints.
pub const PHONY_SCHEMA: &str = "phony";

/// A condition on `n.nspname` selecting user schemas.
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'phony') \
     AND n.nspname NOT LIKE 'pg\\_%'";

/// A condition on `c.oid` excluding objects that belong to an extension.
const NOT_EXTENSION_MEMBER: &str = "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

/// The SQL type of the column `a` (a `pg_attribute` row) as `format_type` names it, with
/// its collation where that is not the type's own (` COLLATE public.ci`): a value cast to
/// it is compared, sorted and grouped as the column's values are. Under another collation
/// `User1@x` and `user1@x` would be two keys of a column where they are one (a
/// nondeterministic collation), or sort elsewhere than the table's key order.
pub(crate) const COLUMN_TYPE_OF_A: &str = "pg_catalog.format_type(a.atttypid, a.atttypmod) ||      coalesce((SELECT ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.'                       || pg_catalog.quote_ident(co.collname)
               FROM pg_catalog.pg_collation co
               JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
               WHERE co.oid = a.attcollation AND a.attcollation <> 0
                 AND a.attcollation <> (SELECT ty.typcollation FROM pg_catalog.pg_type ty
                                        WHERE ty.oid = a.atttypid)), '')";

/// The array type of `ty` (a [`COLUMN_TYPE_OF_A`]), collation included: `text[] COLLATE
/// public.ci` for `text COLLATE public.ci`, as a cast's target.
pub(crate) fn array_type(ty: &str) -> String {
    match ty.split_once(" COLLATE ") {
        Some((base, collation)) => format!("{base}[] COLLATE {collation}"),
        None => format!("{ty}[]"),
    }
}

/// A table whose rows a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: QualifiedName,
    /// Stored columns (generated columns excluded), in attribute order.
    pub columns: Vec<String>,
    /// Primary-key columns in key order; empty without a primary key.
    pub key: Vec<String>,
    /// Size on disk, to schedule big tables first.
    pub bytes: i64,
}

/// Every user table with rows of its own (partition leaves, not partitioned parents).
pub async fn tables(client: &impl GenericClient) -> Result<Vec<TableInfo>> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
            ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                  ORDER BY a.attnum),
            ARRAY(SELECT a.attname::text
                  FROM pg_catalog.pg_index i
                  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary
                  ORDER BY k.ord),
            pg_catalog.pg_table_size(c.oid)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND {USER_SCHEMA} AND {NOT_EXTENSION_MEMBER}
         ORDER BY 1, 2"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(pg("listing tables"))?;
    Ok(rows
        .iter()
        .map(|r| TableInfo {
            name: QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            columns: r.get(2),
            key: r.get(3),
            bytes: r.get(4),
        })
        .collect())
}

/// Every user sequence, by name.
pub async fn sequences(client: &impl GenericClient) -> Result<Vec<QualifiedName>> {
    relations(client, "'S'", "", "1, 2").await
}

/// Materialized views that hold data, by name.
pub async fn populated_materialized_views(
    client: &impl GenericClient,
) -> Result<Vec<QualifiedName>> {
    relations(client, "'m'", "AND c.relispopulated", "1, 2").await
}

/// Every materialized view in creation order, which follows dependencies in a database
/// built from a schema dump (so refreshing in this order refreshes dependencies first).
pub async fn materialized_views_in_creation_order(
    client: &impl GenericClient,
) -> Result<Vec<QualifiedName>> {
    relations(client, "'m'", "", "c.oid").await
}

async fn relations(
    client: &impl GenericClient,
    kinds: &str,
    extra: &str,
    order: &str,
) -> Result<Vec<QualifiedName>> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ({kinds}) AND c.relpersistence <> 't' AND {USER_SCHEMA} AND {NOT_EXTENSION_MEMBER} {extra}
         ORDER BY {order}"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(pg("listing relations"))?;
    Ok(rows
        .iter()
        .map(|r| QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// Every user schema (what a full restore replaces).
pub async fn user_schemas(client: &impl GenericClient) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT n.nspname::text FROM pg_catalog.pg_namespace n WHERE {USER_SCHEMA} ORDER BY 1"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(pg("listing schemas"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The server's `server_version_num` and `server_version`.
pub async fn server_version(client: &impl GenericClient) -> Result<(u32, String)> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(pg("reading the server version"))?;
    Ok((row.get::<_, i32>(0).max(0) as u32, row.get(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_types_keep_the_collation() {
        assert_eq!(array_type("numeric(10,2)"), "numeric(10,2)[]");
        assert_eq!(
            array_type("text COLLATE public.ci"),
            "text[] COLLATE public.ci"
        );
    }
}
