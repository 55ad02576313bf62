//! A digest of a database's schema from the catalogs, cheap enough to take after every test
//! (one prepared query, ~1.5 ms; no pg_dump), so a test that ran DDL is noticed before its
//! database is reset.

/// Every user object by name and definition (objects made after initdb have OIDs from
/// 16384 on, so each catalog is read through its OID index, not scanned): relations with their columns and defaults,
/// view and index definitions, constraints, functions, types, enum labels and triggers.
/// Names, not OIDs, so a database restored by the full path (objects recreated) has the
/// same digest. phony's own schema and the triggers of its functions are left out.
pub(crate) const DIGEST: &str = r#"
WITH ns AS (
    SELECT oid, nspname FROM pg_catalog.pg_namespace
    WHERE nspname NOT IN ('information_schema', 'phony') AND nspname NOT LIKE 'pg\_%'
)
SELECT md5(coalesce(string_agg(d, E'\n' ORDER BY d COLLATE "C"), '')) FROM (
    SELECT 'schema ' || nspname AS d FROM ns
    UNION ALL
    SELECT format('rel %s.%s %s %s', ns.nspname, c.relname, c.relkind,
        (SELECT string_agg(format('%s %s %s %s', a.attname,
                    pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)), ', ' ORDER BY a.attnum)
         FROM pg_catalog.pg_attribute a
         LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
        || CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
        || CASE WHEN c.relkind = 'i' THEN pg_catalog.pg_get_indexdef(c.oid) ELSE '' END
    FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
    WHERE c.oid >= 16384
    UNION ALL
    SELECT format('constraint %s.%s %s', ns.nspname, co.conname, pg_catalog.pg_get_constraintdef(co.oid))
    FROM pg_catalog.pg_constraint co JOIN ns ON ns.oid = co.connamespace
    WHERE co.oid >= 16384
    UNION ALL
    SELECT format('function %s.%s(%s) %s', ns.nspname, p.proname,
        pg_catalog.pg_get_function_identity_arguments(p.oid), md5(coalesce(p.prosrc, '')))
    FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
    WHERE p.oid >= 16384
    UNION ALL
    SELECT format('type %s.%s %s', ns.nspname, t.typname, t.typtype)
    FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
    WHERE t.oid >= 16384
    UNION ALL
    SELECT format('enum %s.%s %s %s', ns.nspname, t.typname, e.enumsortorder, e.enumlabel)
    FROM pg_catalog.pg_enum e JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid
    JOIN ns ON ns.oid = t.typnamespace
    WHERE e.oid >= 16384
    UNION ALL
    SELECT format('trigger %s.%s %s', ns.nspname, c.relname, pg_catalog.pg_get_triggerdef(tg.oid))
    FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
    JOIN ns ON ns.oid = c.relnamespace
    JOIN pg_catalog.pg_proc f ON f.oid = tg.tgfoid
    JOIN pg_catalog.pg_namespace fns ON fns.oid = f.pronamespace
    WHERE tg.oid >= 16384 AND NOT tg.tgisinternal AND fns.nspname <> 'phony'
) objects
"#;
