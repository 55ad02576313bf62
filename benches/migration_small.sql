-- migration_small.sql: the smallest migration worth rolling back: one index and one column
-- added to one small table (products) of the shop gen_shop.sql makes. Applies on the
-- generated state and on the state after mix.sql.
--
--   psql -X -d shop -f benches/migration_small.sql
--
-- The rollback after it measures phony's targeted schema path when the migration touched
-- almost nothing: the column and the index are dropped, products' rows compared, every
-- other table left as it is.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;
ALTER TABLE products ADD COLUMN discontinued boolean NOT NULL DEFAULT false;
CREATE INDEX products_discontinued_idx ON products (discontinued);
COMMIT;
