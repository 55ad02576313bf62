//! Masking rules checked against a database's catalog, then applied to each table's rows
//! as a capture reads them (see [`phony_core::mask`]).

use std::collections::BTreeMap;

use phony_core::mask::{ColumnShape, MaskKey, MaskRules, TableMask};
use phony_core::QualifiedName;
use tokio_postgres::GenericClient;

use crate::error::{pg, Error, Result};
use crate::read::catalog::TableInfo;

/// Rules whose tables and columns exist, with what masking needs to know of each column.
#[derive(Debug, Clone)]
pub struct MaskPlan {
    rules: MaskRules,
    key: MaskKey,
    shapes: BTreeMap<QualifiedName, Vec<ColumnShape>>,
    /// Partitions and inheritance children, masked by the rules of the table named.
    named_by: BTreeMap<QualifiedName, QualifiedName>,
}

impl MaskPlan {
    /// Checks `rules` against the database `client` is connected to: every table and column
    /// must exist, and every rule must fit its column (`null` on a `NOT NULL` column, `email`
    /// on a date, … are refused), before anything runs.
    pub async fn prepare(
        client: &impl GenericClient,
        rules: MaskRules,
        key: MaskKey,
    ) -> Result<Self> {
        let mut shapes = BTreeMap::new();
        let mut named_by = BTreeMap::new();
        for table in rules.tables() {
            let rows = client
                .query(
                    "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
                     FROM pg_catalog.pg_attribute a
                     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
                       AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                     ORDER BY a.attnum",
                    &[&table.schema, &table.name],
                )
                .await
                .map_err(pg(format!("reading the columns of {table}")))?;
            if rows.is_empty() {
                return Err(Error::Mask(format!(
                    "masking rules name table {}.{}, which the source database does not have",
                    table.schema, table.name
                )));
            }
            let cols: Vec<ColumnShape> = rows
                .iter()
                .map(|r| ColumnShape {
                    name: r.get(0),
                    type_name: r.get(1),
                    not_null: r.get(2),
                })
                .collect();
            // Checks every rule of the table now, in the table's column order.
            rules.for_table(table, &cols, &key)?;
            shapes.insert(table.clone(), cols);
            // Rows of partitions and inheritance children are read table by table.
            let children = client
                .query(
                    "WITH RECURSIVE d(oid) AS (
                        SELECT c.oid FROM pg_catalog.pg_class c
                        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = $1 AND c.relname = $2
                      UNION
                        SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d ON i.inhparent = d.oid)
                     SELECT n.nspname::text, c.relname::text FROM d
                     JOIN pg_catalog.pg_class c ON c.oid = d.oid
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE NOT (n.nspname = $1 AND c.relname = $2)",
                    &[&table.schema, &table.name],
                )
                .await
                .map_err(pg(format!("reading the partitions of {table}")))?;
            for r in children {
                let child = QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1));
                named_by.entry(child).or_insert_with(|| table.clone());
            }
        }
        Ok(MaskPlan {
            rules,
            key,
            shapes,
            named_by,
        })
    }

    /// The masking of `table`'s rows as a capture reads them (its stored columns, in
    /// order), or `None` when no rule names it or a table it descends from.
    pub(crate) fn for_table(&self, table: &TableInfo) -> Result<Option<TableMask>> {
        let named = self.named_by.get(&table.name).unwrap_or(&table.name);
        let Some(known) = self.shapes.get(named) else {
            return Ok(None);
        };
        // One shape per COPY column, in order; columns of a child's own are never named.
        let cols: Vec<ColumnShape> = table
            .columns
            .iter()
            .map(|name| {
                known
                    .iter()
                    .find(|c| &c.name == name)
                    .cloned()
                    .unwrap_or_else(|| ColumnShape {
                        name: name.clone(),
                        type_name: String::new(),
                        not_null: false,
                    })
            })
            .collect();
        Ok(self.rules.for_table(named, &cols, &self.key)?)
    }

    /// Whether any rule applies to `table` (named, or a table it descends from).
    pub fn masks(&self, table: &QualifiedName) -> bool {
        self.shapes
            .contains_key(self.named_by.get(table).unwrap_or(table))
    }
}
