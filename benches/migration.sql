-- migration.sql: a schema migration being tried on a shop database made by gen_shop.sql,
-- the kind one rolls back when it turns out wrong. Applies on the generated state and on
-- the state after mix.sql.
--
--   psql -X -d shop -f benches/migration.sql
--
-- It adds a column with a default (and backfills part of it), creates an index, drops a
-- column, adds a table with rows, adds an enum value and a check constraint. After it the
-- schema differs from any snapshot taken before, so a rollback has to take the full path.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;

-- A column with a constant default (no table rewrite), then a partial backfill.
ALTER TABLE customers ADD COLUMN loyalty_tier text NOT NULL DEFAULT 'standard';
UPDATE customers SET loyalty_tier = CASE WHEN id % 100 = 0 THEN 'gold' ELSE 'silver' END
WHERE id % 20 = 0;

-- An index for a new query.
CREATE INDEX orders_status_created_at_idx ON orders (status, created_at);

-- A column dropped.
ALTER TABLE customers DROP COLUMN phone;

-- A new table with some rows.
CREATE TABLE coupons (
    id          int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    percent_off int NOT NULL CHECK (percent_off BETWEEN 1 AND 90),
    customer_id bigint REFERENCES customers (id),
    valid_until date NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT timestamptz '2024-07-01 00:00:00+00'
);
INSERT INTO coupons (code, percent_off, customer_id, valid_until)
SELECT upper(substr(md5('coupon:' || k), 1, 10)),
       5 * (1 + k % 8),
       CASE WHEN k % 4 = 0 THEN (SELECT min(id) FROM customers) + k END,
       date '2024-07-01' + (k % 180)
FROM generate_series(1, 500) AS k
WHERE k % 4 <> 0 OR EXISTS (SELECT 1 FROM customers c WHERE c.id = (SELECT min(id) FROM customers) + k);

-- An enum value (usable once committed) and a check constraint (validated on all rows).
ALTER TYPE order_status ADD VALUE 'refunded' AFTER 'delivered';
ALTER TABLE order_items ADD CONSTRAINT order_items_qty_positive CHECK (qty > 0);

COMMIT;
