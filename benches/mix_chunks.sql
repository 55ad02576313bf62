-- mix_chunks.sql: one row changed in each of about 1 % of the chunks of every table of a
-- shop database made by gen_shop.sql (any scale >= 0.02): the changes a rollback without
-- change tracking has to find are spread thinly over the whole database, not gathered in
-- the newest rows as mix.sql's are.
--
--   psql -X -d shop -f benches/mix_chunks.sql
--
-- A chunk is ~64 KiB of a table's COPY text (the store's default chunking), so with rows of
-- w bytes a chunk holds ~65536 / w of them, and changing every (100 × 65536 / w)-th row in
-- key order changes one row in one chunk of a hundred. w is the average text width of the
-- table's first 2,000 rows. audit_log has no key: its rows are ranked by their whole text,
-- the order phony reads them in. Every change is an update of a column that is not a key,
-- so the rows' number stays the same.
--
-- Deterministic: run on the same state, it changes the same rows the same way.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;

CREATE FUNCTION pg_temp.stride(rel regclass) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    width float8;
BEGIN
    EXECUTE format('SELECT avg(octet_length(t::text)) FROM (SELECT * FROM %s LIMIT 2000) t', rel)
        INTO width;
    RETURN greatest(2, round(100 * 65536 / coalesce(nullif(width, 0), 100)))::bigint;
END
$$;

WITH s AS (SELECT pg_temp.stride('customers') AS n)
UPDATE customers c SET last_login_at = coalesce(c.last_login_at, c.created_at) + interval '1 second'
  FROM s WHERE c.id % s.n = s.n / 2;

WITH s AS (SELECT pg_temp.stride('products') AS n)
UPDATE products p SET stock = p.stock + 1
  FROM s WHERE p.id % s.n = s.n / 2;

WITH s AS (SELECT pg_temp.stride('orders') AS n)
UPDATE orders o SET total = o.total + 0.01
  FROM s WHERE o.id % s.n = s.n / 2;

WITH s AS (SELECT pg_temp.stride('order_items') AS n)
UPDATE order_items i SET qty = i.qty + 1
  FROM s WHERE i.id % s.n = s.n / 2;

WITH s AS (SELECT pg_temp.stride('events') AS n)
UPDATE events e SET created_at = e.created_at + interval '1 second'
  FROM s WHERE e.id % s.n = s.n / 2;

WITH s AS (SELECT pg_temp.stride('audit_log') AS n),
     ranked AS (SELECT a.ctid AS row_id,
                       row_number() OVER (ORDER BY a::text COLLATE "C") AS rn
                  FROM audit_log a)
UPDATE audit_log a SET detail = coalesce(a.detail, '') || '.'
  FROM ranked r, s
 WHERE a.ctid = r.row_id AND r.rn % s.n = s.n / 2;

COMMIT;
