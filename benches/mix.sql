-- mix.sql: the "test-run mix" -- what one CI test run leaves behind in a shop database made
-- by gen_shop.sql (any scale >= 0.02): about 5,000 changed rows across customers, orders,
-- order_items and events, roughly a third each inserted, updated and deleted.
--
--   psql -X -d shop -f benches/mix.sql
--
-- Deterministic: which rows it touches depends only on the database's state (the seed is
-- max(orders.id), which every run moves forward), so it can be run again and again on the
-- same database, and run on a database rolled back to the same state it does the same.
-- Ids are picked inside the existing ranges and always name existing rows. Inserts take
-- their ids from the identity/serial defaults, so the sequences advance. Deletes respect
-- the foreign keys: order_items before their orders, orders before their customers.
-- audit_log and products are left alone.
--
-- Rows changed per run (approximate; picks of the same row by two steps are not removed):
--   deletes  ~1,700: 30 customers with their orders, items and events; 150 orders with
--                    their items; 400 single order_items; 400 events
--   updates  ~1,700: 250 customers (non-key columns only) + 50 e-mail changes (unique key);
--                    550 orders (status/total); 400 order_items (qty/price) + 25 moved to a
--                    new primary key; 450 events (payload)
--   inserts  ~1,650: 200 customers, 400 orders, 800 order_items, 250 events

\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;

CREATE FUNCTION pg_temp.rnd(i bigint, salt bigint) RETURNS float8
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT (hashint8extended(i, salt) & 2147483647)::float8 / 2147483648.0 $$;
CREATE FUNCTION pg_temp.ri(i bigint, salt bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT ((hashint8extended(i, salt) & 9223372036854775807) % n) $$;

-- Up to n distinct existing ids of `tbl`: for each of 3n pseudo-random points in
-- [min(id), max(id)], the first id at or after it (an index probe), in draw order.
CREATE FUNCTION pg_temp.pick(tbl regclass, n int, salt bigint) RETURNS SETOF bigint
    LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
BEGIN
    EXECUTE format('SELECT min(id), max(id) FROM %s', tbl) INTO lo, hi;
    IF lo IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT id FROM (
            SELECT p.id, min(k) AS first_k
            FROM generate_series(1, $1 * 3) AS k
            CROSS JOIN LATERAL (
                SELECT id FROM %s
                WHERE id >= $2 + pg_temp.ri(k, $4, $3 - $2 + 1)
                ORDER BY id LIMIT 1) AS p
            GROUP BY p.id) AS d
        ORDER BY first_k
        LIMIT $1 $q$, tbl)
        USING n, lo, hi, salt;
END $$;

SELECT max(id) AS mix_seed FROM orders \gset

-- Deletes ------------------------------------------------------------------------------------
CREATE TEMP TABLE mix_del_customers ON COMMIT DROP AS
    SELECT id FROM pg_temp.pick('customers', 30, :mix_seed * 16 + 1) AS id;
CREATE TEMP TABLE mix_del_orders ON COMMIT DROP AS
    SELECT id FROM pg_temp.pick('orders', 150, :mix_seed * 16 + 2) AS id
    UNION
    SELECT o.id FROM orders o JOIN mix_del_customers c ON o.customer_id = c.id;

DELETE FROM order_items WHERE order_id IN (SELECT id FROM mix_del_orders);
DELETE FROM order_items WHERE id IN (SELECT pg_temp.pick('order_items', 400, :mix_seed * 16 + 3));
DELETE FROM orders WHERE id IN (SELECT id FROM mix_del_orders);
DELETE FROM events WHERE customer_id IN (SELECT id FROM mix_del_customers);
DELETE FROM events WHERE id IN (SELECT pg_temp.pick('events', 400, :mix_seed * 16 + 4));
DELETE FROM customers WHERE id IN (SELECT id FROM mix_del_customers);

-- Updates ------------------------------------------------------------------------------------
-- Non-key columns only (no index covers them: HOT updates).
UPDATE customers
SET last_login_at = timestamptz '2024-07-01 00:00:00+00' + pg_temp.ri(id, :mix_seed, 86400 * 30) * interval '1 second',
    marketing_opt_in = NOT marketing_opt_in
WHERE id IN (SELECT pg_temp.pick('customers', 250, :mix_seed * 16 + 5));
-- A unique key changes.
UPDATE customers
SET email = 'changed.' || :mix_seed || '.' || id || '@example.org'
WHERE id IN (SELECT pg_temp.pick('customers', 50, :mix_seed * 16 + 6));

UPDATE orders
SET status = CASE status WHEN 'pending' THEN 'paid'
                         WHEN 'paid' THEN 'shipped'
                         WHEN 'shipped' THEN 'delivered'
                         ELSE status END,
    total = total + round((pg_temp.rnd(id, :mix_seed) * 10 - 5)::numeric, 2),
    note = coalesce(note || ' / ', '') || 'adjusted in run ' || :mix_seed
WHERE id IN (SELECT pg_temp.pick('orders', 550, :mix_seed * 16 + 7));

UPDATE order_items
SET qty = qty + 1,
    price = round(price * 0.9, 2)
WHERE id IN (SELECT pg_temp.pick('order_items', 400, :mix_seed * 16 + 8));
-- The primary key itself changes: the row moves to a fresh id from the sequence.
UPDATE order_items
SET id = nextval(pg_get_serial_sequence('order_items', 'id'))
WHERE id IN (SELECT pg_temp.pick('order_items', 25, :mix_seed * 16 + 9));

UPDATE events
SET payload = jsonb_set(payload, '{props,reviewed}',
                        jsonb_build_object('run', :mix_seed, 'score', pg_temp.ri(id, :mix_seed, 100)))
WHERE id IN (SELECT pg_temp.pick('events', 450, :mix_seed * 16 + 10));

-- Inserts ------------------------------------------------------------------------------------
INSERT INTO customers (email, name, country, marketing_opt_in, created_at)
SELECT 'new.' || :mix_seed || '.' || k || '@example.net',
       'Test Customer ' || k,
       (ARRAY['DE','FR','NL','BE'])[1 + k % 4],
       k % 2 = 0,
       timestamptz '2024-07-01 00:00:00+00' + k * interval '1 minute'
FROM generate_series(1, 200) AS k
ORDER BY k;

-- 400 orders for existing customers, two lines each.
CREATE TEMP TABLE mix_new_orders ON COMMIT DROP AS
    SELECT row_number() OVER (ORDER BY first_k) AS k, id AS customer_id
    FROM (SELECT id, row_number() OVER () AS first_k
          FROM pg_temp.pick('customers', 400, :mix_seed * 16 + 11) AS id) AS p;
CREATE TEMP TABLE mix_new_items ON COMMIT DROP AS
    SELECT o.k, j, pr.id AS product_id, 1 + pg_temp.ri(o.k * 2 + j, :mix_seed, 3)::int AS qty, pr.price
    FROM mix_new_orders o
    CROSS JOIN generate_series(1, 2) AS j
    CROSS JOIN LATERAL (
        SELECT id, price FROM products
        WHERE id >= (SELECT min(id) FROM products)
                    + pg_temp.ri(o.k * 2 + j, :mix_seed + 1,
                                 (SELECT max(id) - min(id) + 1 FROM products))
        ORDER BY id LIMIT 1) AS pr;

SELECT max(id) AS mix_orders_before FROM orders \gset
INSERT INTO orders (customer_id, status, total, created_at)
SELECT o.customer_id, 'pending',
       (SELECT sum(i.qty * i.price) FROM mix_new_items i WHERE i.k = o.k),
       timestamptz '2024-07-01 00:00:00+00' + o.k * interval '1 minute'
FROM mix_new_orders o
ORDER BY o.k;
-- The new orders got increasing ids in k order.
INSERT INTO order_items (order_id, product_id, qty, price)
SELECT n.id, i.product_id, i.qty, i.price
FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM orders WHERE id > :mix_orders_before) AS n
JOIN mix_new_items i ON i.k = n.k
ORDER BY n.k, i.j;

INSERT INTO events (customer_id, kind, payload, created_at)
SELECT c.customer_id,
       (ARRAY['page_view','search','add_to_cart','checkout','login'])[1 + g % 5],
       jsonb_build_object('session_id', md5(:mix_seed || ':' || g),
                          'source', 'test-run',
                          'run', :mix_seed,
                          'props', jsonb_build_object('step', g, 'ok', g % 7 <> 0)),
       timestamptz '2024-07-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, 250) AS g
JOIN mix_new_orders c ON c.k = g
ORDER BY g;

COMMIT;
