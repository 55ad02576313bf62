//! What the targeted schema path reads from the live catalog, inside the restore's
//! transaction: the statements that drop objects named only by pg_dump's headers, what a
//! re-created table takes with it (`pg_depend`), and an enum's columns.

use tokio_postgres::Client;

use crate::error::{pg, Result};
use crate::sql::{ident, literal};

use super::plan::{title, Key};

/// The statement that drops the live object `key`, found in the catalog; `None` when the
/// catalog does not name exactly one such object.
pub(crate) async fn drop_statement(client: &Client, key: &Key) -> Result<Option<String>> {
    let (kind, schema, name) = (key.0.as_str(), key.1.as_deref().unwrap_or(""), &key.2);
    let sql = match kind {
        "CONSTRAINT" | "FK CONSTRAINT" => {
            "SELECT pg_catalog.format('ALTER TABLE IF EXISTS %I.%I DROP CONSTRAINT IF EXISTS %I',
                    n.nspname, r.relname, k.conname)
             FROM pg_catalog.pg_constraint k
             JOIN pg_catalog.pg_class r ON r.oid = k.conrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = $1 AND r.relname || ' ' || k.conname = $2"
        }
        "TRIGGER" => {
            "SELECT pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %I.%I',
                    t.tgname, n.nspname, r.relname)
             FROM pg_catalog.pg_trigger t
             JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
             WHERE NOT t.tgisinternal AND n.nspname = $1 AND r.relname || ' ' || t.tgname = $2"
        }
        "POLICY" => {
            "SELECT pg_catalog.format('DROP POLICY IF EXISTS %I ON %I.%I',
                    p.polname, n.nspname, r.relname)
             FROM pg_catalog.pg_policy p
             JOIN pg_catalog.pg_class r ON r.oid = p.polrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = $1 AND r.relname || ' ' || p.polname = $2"
        }
        "RULE" => {
            "SELECT pg_catalog.format('DROP RULE IF EXISTS %I ON %I.%I',
                    w.rulename, n.nspname, r.relname)
             FROM pg_catalog.pg_rewrite w
             JOIN pg_catalog.pg_class r ON r.oid = w.ev_class
             JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = $1 AND r.relname || ' ' || w.rulename = $2"
        }
        "DEFAULT" => {
            "SELECT pg_catalog.format('ALTER TABLE IF EXISTS %I.%I ALTER COLUMN %I DROP DEFAULT',
                    n.nspname, r.relname, a.attname)
             FROM pg_catalog.pg_attrdef d
             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
             JOIN pg_catalog.pg_class r ON r.oid = d.adrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
             WHERE n.nspname = $1 AND r.relname || ' ' || a.attname = $2"
        }
        "FUNCTION" | "PROCEDURE" => {
            // Named `f(integer)` by pg_dump: one routine of that name, or the one whose
            // argument types read so.
            "SELECT pg_catalog.format('DROP ROUTINE IF EXISTS %s', p.oid::pg_catalog.regprocedure),
                    $2 = p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'
             FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1 AND pg_catalog.starts_with($2, p.proname || '(')"
        }
        // An identity column's sequence goes with the identity (pg_dump writes it as
        // `ALTER TABLE … ADD GENERATED … (SEQUENCE NAME …)`): it cannot be dropped alone.
        "SEQUENCE" => {
            "SELECT CASE WHEN a.attname IS NULL
                         THEN pg_catalog.format('DROP SEQUENCE IF EXISTS %I.%I', n.nspname, s.relname)
                         ELSE pg_catalog.format('ALTER TABLE IF EXISTS %I.%I ALTER COLUMN %I DROP IDENTITY IF EXISTS',
                                                tn.nspname, t.relname, a.attname) END
             FROM pg_catalog.pg_class s
             JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
             LEFT JOIN pg_catalog.pg_depend d
               ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = s.oid
              AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'i'
             LEFT JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
             LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE s.relkind = 'S' AND n.nspname = $1 AND s.relname = $2"
        }
        "SEQUENCE OWNED BY" => {
            return Ok(Some(format!(
                "ALTER SEQUENCE IF EXISTS {}.{} OWNED BY NONE",
                ident(schema),
                ident(name)
            )))
        }
        _ => return Ok(None),
    };
    let rows = client
        .query(sql, &[&schema, name])
        .await
        .map_err(pg(format!("finding {} in the catalog", title(key))))?;
    if let [one] = rows.as_slice() {
        return Ok(Some(one.get(0)));
    }
    let exact: Vec<String> = rows
        .iter()
        .filter(|_| kind == "FUNCTION" || kind == "PROCEDURE")
        .filter(|r| r.get::<_, Option<bool>>(1) == Some(true))
        .map(|r| r.get(0))
        .collect();
    Ok(match exact.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// What dropping table `table` (`schema.name` as pg_dump writes it) with `CASCADE` takes
/// with it, as pg_dump names those objects (the table itself first); `Err` names an object
/// that cannot be named so (a function on its row type, a table inheriting from it …).
pub(crate) async fn dependents(
    client: &Client,
    table: &str,
) -> Result<std::result::Result<Vec<Key>, String>> {
    let rows = client
        .query(DEPENDENTS, &[&table])
        .await
        .map_err(pg(format!("reading what depends on {table}")))?;
    let mut keys: Vec<Key> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let described: String = row.get(0);
        let named: Option<Vec<String>> = row.get(1);
        let Some([kind, schema, name]) = named.as_deref() else {
            return Ok(Err(format!(
                "{described} depends on {table}, and the targeted path cannot re-create it"
            )));
        };
        match kind.as_str() {
            "" => continue,
            "?" => {
                return Ok(Err(format!(
                    "{described} depends on {table}, and the targeted path cannot re-create it"
                )))
            }
            "TABLE" if i > 0 => {
                return Ok(Err(format!(
                    "{described} depends on {table} (inheritance or partitions)"
                )))
            }
            "SEQUENCE" => keys.push((
                "SEQUENCE OWNED BY".into(),
                Some(schema.clone()),
                name.clone(),
            )),
            _ => {}
        }
        keys.push((kind.clone(), Some(schema.clone()), name.clone()));
    }
    Ok(Ok(keys))
}

/// Objects reached from a table through `pg_depend` (what `DROP … CASCADE` follows), a
/// view's rewrite rule standing for the view; each named as pg_dump names it (`''`: part of
/// another object, `'?'` or none: not an object the targeted path re-creates).
const DEPENDENTS: &str = "
WITH RECURSIVE dep(classid, objid, depth) AS (
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::oid, $1::text::pg_catalog.regclass::oid, 0
  UNION
    SELECT CASE WHEN w.oid IS NULL THEN d.classid ELSE 'pg_catalog.pg_class'::pg_catalog.regclass::oid END,
           CASE WHEN w.oid IS NULL THEN d.objid ELSE w.ev_class END,
           1
    FROM dep
    JOIN pg_catalog.pg_depend d ON d.refclassid = dep.classid AND d.refobjid = dep.objid
    LEFT JOIN pg_catalog.pg_rewrite w ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
         AND w.oid = d.objid AND w.rulename = '_RETURN'
    WHERE d.deptype IN ('n', 'a', 'i')
), objects AS (SELECT classid, objid, min(depth) AS depth FROM dep GROUP BY 1, 2)
SELECT coalesce(pg_catalog.pg_describe_object(o.classid, o.objid, 0), 'an object'),
  CASE o.classid
  WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (
    SELECT ARRAY[CASE c.relkind
        WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW'
        WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 't' THEN ''
        WHEN 'i' THEN CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                                        WHERE k.conindid = c.oid AND k.contype IN ('p', 'u', 'x'))
                           THEN '' ELSE 'INDEX' END
        ELSE '?' END, n.nspname::text, c.relname::text]
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = o.objid)
  WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN (
    SELECT ARRAY[CASE k.contype WHEN 'f' THEN 'FK CONSTRAINT' ELSE 'CONSTRAINT' END,
                 n.nspname::text, r.relname || ' ' || k.conname]
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class r ON r.oid = k.conrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
    WHERE k.oid = o.objid)
  WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN (
    SELECT ARRAY[CASE WHEN t.tgisinternal THEN '' ELSE 'TRIGGER' END,
                 n.nspname::text, r.relname || ' ' || t.tgname]
    FROM pg_catalog.pg_trigger t
    JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
    WHERE t.oid = o.objid)
  WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN (
    SELECT ARRAY['POLICY', n.nspname::text, r.relname || ' ' || p.polname]
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_class r ON r.oid = p.polrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
    WHERE p.oid = o.objid)
  WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN (
    SELECT ARRAY['RULE', n.nspname::text, r.relname || ' ' || w.rulename]
    FROM pg_catalog.pg_rewrite w
    JOIN pg_catalog.pg_class r ON r.oid = w.ev_class
    JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
    WHERE w.oid = o.objid)
  WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN (
    SELECT ARRAY['DEFAULT', n.nspname::text, r.relname || ' ' || a.attname]
    FROM pg_catalog.pg_attrdef d
    JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    JOIN pg_catalog.pg_class r ON r.oid = d.adrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
    WHERE d.oid = o.objid)
  WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (
    SELECT ARRAY[CASE WHEN t.typrelid <> 0 OR t.typcategory = 'A' THEN '' ELSE '?' END, '', '']
    FROM pg_catalog.pg_type t WHERE t.oid = o.objid)
  END
FROM objects o
ORDER BY o.depth, o.classid, o.objid";

/// Gives the enum `key` the snapshot's definition (`create`, its labels `labels` as SQL
/// literals): the live type is renamed, the snapshot's created, every column converted (a
/// label the snapshot lacks becomes its first label; the rows are compared afterwards
/// anyway) with its default kept, and the old type dropped. `Err(why)` when something
/// other than plain tables' columns and their defaults uses the type.
pub(crate) async fn swap_enum(
    client: &Client,
    key: &Key,
    create: &str,
    labels: &[String],
) -> Result<std::result::Result<(), String>> {
    let (schema, name) = (key.1.as_deref().unwrap_or(""), key.2.as_str());
    let q = format!("{}.{}", ident(schema), ident(name));
    let context = || pg(format!("converting the columns of {}", title(key)));
    let users = client
        .query(
            "SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
             FROM pg_catalog.pg_type t
             JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
                  AND d.refobjid IN (t.oid, t.typarray) AND d.deptype = 'n'
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = $1 AND t.typname = $2
               AND NOT (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.refobjid = t.oid)
               AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid > 0
                        AND d.refobjid = t.oid
                        AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                    WHERE c.oid = d.objid AND c.relkind = 'r'))",
            &[&schema, &name],
        )
        .await
        .map_err(context())?;
    if let Some(user) = users.first() {
        let user: String = user.get(0);
        return Ok(Err(format!(
            "{user} uses {}, whose added labels the targeted path cannot take back",
            title(key)
        )));
    }
    let columns = client
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.format('%I', a.attname),
                    pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
             JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
             LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE tn.nspname = $1 AND t.typname = $2 AND NOT a.attisdropped AND c.relkind = 'r'
             ORDER BY 1, a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(context())?;
    let old = format!("phony_old_{name}");
    let mut sql = format!("ALTER TYPE {q} RENAME TO {};\n{create}\n", ident(&old));
    let first = labels.first().cloned().unwrap_or_else(|| literal(""));
    let mut i = 0;
    while i < columns.len() {
        let table: String = columns[i].get(0);
        let mut alters = Vec::new();
        let mut defaults = Vec::new();
        while i < columns.len() && columns[i].get::<_, String>(0) == table {
            let col: String = columns[i].get(1);
            let default: Option<String> = columns[i].get(2);
            if let Some(expr) = default {
                alters.push(format!("ALTER COLUMN {col} DROP DEFAULT"));
                defaults.push(format!("ALTER COLUMN {col} SET DEFAULT {expr}"));
            }
            alters.push(format!(
                "ALTER COLUMN {col} TYPE {q} USING (CASE WHEN {col}::text IN ({}) THEN {col}::text ELSE {first} END)::{q}",
                labels.join(", ")
            ));
            i += 1;
        }
        sql += &format!("ALTER TABLE ONLY {table} {};\n", alters.join(", "));
        if !defaults.is_empty() {
            sql += &format!("ALTER TABLE ONLY {table} {};\n", defaults.join(", "));
        }
    }
    sql += &format!("DROP TYPE {}.{};", ident(schema), ident(&old));
    client.batch_execute(&sql).await.map_err(context())?;
    Ok(Ok(()))
}
