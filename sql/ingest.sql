-- Ingestion (issue 11, part 5): ingest() loads a staging table in one INSERT through the
-- model triggers; every row it does not insert goes to ingest_rejects with the first rule
-- it failed; event keys make a replayed batch a no-op; merge_customers() moves a visitor's
-- rows to their account, the model following exactly (model_check() after every step).
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
\i test/model_check.sql
INSERT INTO personalize.products (product_id, sku, name, active)
SELECT g, 'SKU-' || g, 'product ' || g, g <> 6 FROM generate_series(1, 6) g;
INSERT INTO personalize.customers (customer_id, country) VALUES (1, 'France'), (2, 'Spain'), (3, NULL);

-- A staging table as an ETL tool fills it from a CSV: every column text, one extra column
-- (note) that ingest() ignores and keeps in the raw rows it rejects. One row per rule.
CREATE TABLE ingest_staging (note text, customer_id text, product_id text, event_type text,
                             occurred_at text, quantity text, event_key text);
INSERT INTO ingest_staging VALUES
    ('good view',            '1',  '1', 'view',     '2024-03-01 10:00:00+00', '1',  'k-1'),
    ('good purchase, id as float text', '1.0', '2', 'purchase', '2024-03-01 11:00:00+01', '3', 'k-2'),
    ('good, no key, defaults', '2', '1', 'cart',   NULL,                      NULL, NULL),
    ('good, inactive product', '2', '6', 'click',   '2024-03-02',              ' 2 ', 'k-3'),
    ('good, spaces in ids',  ' 3 ', ' 2 ', 'view',  '2024-03-03T08:00:00Z',   '1',  'k-4'),
    ('missing customer',     NULL, '1', 'view',     '2024-03-01',              '1',  NULL),
    ('missing event type',   '1',  '1', '',         '2024-03-01',              '1',  NULL),
    ('missing product and type', '1', '  ', NULL,   '2024-03-01',              '1',  NULL),
    ('unparsable customer',  'abc', '1', 'view',    '2024-03-01',              '1',  NULL),
    ('unparsable product',   '1',  '1e3', 'view',   '2024-03-01',              '1',  NULL),
    ('customer beyond bigint', '9223372036854775808', '1', 'view', '2024-03-01', '1', NULL),
    ('unknown event type',   '1',  '1', 'wishlist', '2024-03-01',              '1',  NULL),
    ('zero quantity',        '1',  '1', 'view',     '2024-03-01',              '0',  NULL),
    ('negative quantity',    '1',  '1', 'view',     '2024-03-01',              '-2', NULL),
    ('fractional quantity',  '1',  '1', 'view',     '2024-03-01',              '1.5', NULL),
    ('quantity beyond int',  '1',  '1', 'view',     '2024-03-01',              '2147483648', NULL),
    ('zero time 1970',       '1',  '1', 'view',     '1970-01-01 00:00:00+00',  '1',  NULL),
    ('just before 1990 UTC', '1',  '1', 'view',     '1989-12-31 23:59:59+00',  '1',  NULL),
    ('year 2200',            '1',  '1', 'view',     '2200-01-01 00:00:00+00',  '1',  NULL),
    ('infinity',             '1',  '1', 'view',     'infinity',                '1',  NULL),
    ('no such date',         '1',  '1', 'view',     '2024-02-30',              '1',  NULL),
    ('not a date',           '1',  '1', 'view',     'yesterday-ish',           '1',  NULL),
    ('empty key',            '1',  '1', 'view',     '2024-03-01',              '1',  ''),
    ('key too long',         '1',  '1', 'view',     '2024-03-01',              '1',  repeat('k', 201)),
    ('unknown product',      '1',  '99', 'view',    '2024-03-01',              '1',  NULL),
    ('unknown customer',     '42', '1', 'view',     '2024-03-01',              '1',  'k-42'),
    ('repeated key',         '2',  '3', 'view',     '2024-03-04',              '1',  'k-1');
-- a key already in interactions (a plain INSERT of the application)
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at, event_key)
VALUES (3, 4, 'purchase', '2024-02-01', 'k-old');
INSERT INTO ingest_staging VALUES ('key already stored', '3', '5', 'view', '2024-03-05', '1', 'k-old');
SELECT count(*) AS staged FROM ingest_staging;

SELECT rule, rows FROM personalize.ingest('ingest_staging');
-- the same batch id on every row, and the batch recorded
SELECT count(DISTINCT batch_id) = 1 AS one_batch FROM personalize.ingest_rejects;
SELECT source, loaded_by = current_user AS by_me, create_customers, rows_read, kept, rejected, customers_created,
       seconds >= 0 AS timed, counts
FROM personalize.ingest_batches;
-- every rejected row, with its reason, as it was (the note says what it is)
SELECT line, rule, detail, customer_id, raw ->> 'note' AS note
FROM personalize.ingest_rejects ORDER BY line;
-- the raw row is the whole row, every column, as staged
SELECT raw FROM personalize.ingest_rejects WHERE raw ->> 'note' = 'key too long' AND length(raw ->> 'event_key') = 201 AND raw ? 'quantity';
-- nothing lost: every staged row is kept or rejected, exactly once
SELECT (SELECT count(*) FROM ingest_staging) = (SELECT count(*) FROM personalize.ingest_rejects)
        + (SELECT count(*) FROM personalize.interactions WHERE event_key IS DISTINCT FROM 'k-old') AS nothing_lost;
-- the kept events, in time order, with their parsed values (no time: now())
SELECT customer_id, product_id, event_type, quantity, occurred_at = now() AS at_now,
       CASE WHEN occurred_at <> now() THEN occurred_at END AS occurred_at, event_key
FROM personalize.interactions ORDER BY interaction_id;
SELECT * FROM pg_temp.model_check();

-- create_customers: the unknown customer's row is kept and the customer created (and only
-- for kept rows: the rejected rows name no new customer). The row without an event key is
-- loaded a second time: only keys make a replay a no-op.
SELECT rule, rows FROM personalize.ingest('ingest_staging', create_customers => true) WHERE rows > 0;
SELECT customer_id, country FROM personalize.customers ORDER BY 1;
SELECT customers_created, kept FROM personalize.ingest_batches ORDER BY batch_id DESC LIMIT 1;
SELECT * FROM pg_temp.model_check();

-- Replays: a typed staging table (the fast path: no parsing) whose events all carry keys.
-- The second load of the same batch adds nothing; every row is a duplicate.
CREATE TABLE ingest_replay (customer_id bigint, product_id integer, event_type text,
                            occurred_at timestamptz, event_key uuid);
INSERT INTO ingest_replay
SELECT 1 + g % 3, 1 + g % 5, (ARRAY['view', 'click', 'cart', 'purchase'])[1 + g % 4],
       '2024-04-01'::timestamptz + g * interval '1 hour', md5('replay' || g)::uuid
FROM generate_series(1, 40) g;
SELECT count(*) AS events_before FROM personalize.interactions \gset
SELECT rule, rows FROM personalize.ingest('ingest_replay') WHERE rows > 0;
SELECT count(*) - :events_before AS added FROM personalize.interactions;
SELECT count(*) AS events_before FROM personalize.interactions \gset
SELECT rule, rows FROM personalize.ingest('ingest_replay') WHERE rows > 0;
SELECT count(*) - :events_before AS added_by_replay FROM personalize.interactions;
SELECT DISTINCT rule, detail FROM personalize.ingest_rejects
WHERE batch_id = (SELECT max(batch_id) FROM personalize.ingest_batches);
SELECT * FROM pg_temp.model_check();

-- Products by sku instead of product_id, from a view; a missing optional column takes its default
CREATE VIEW ingest_by_sku AS
SELECT * FROM (VALUES (2::bigint, 'SKU-4', 'purchase'), (2, 'SKU-404', 'view'), (2, NULL, 'view')) v(customer_id, sku, event_type);
SELECT rule, rows FROM personalize.ingest('ingest_by_sku') WHERE rows > 0;
SELECT line, rule, detail, raw FROM personalize.ingest_rejects
WHERE batch_id = (SELECT max(batch_id) FROM personalize.ingest_batches) ORDER BY line;
SELECT customer_id, product_id, event_type, quantity, occurred_at = now() AS at_now
FROM personalize.interactions ORDER BY interaction_id DESC LIMIT 1;

-- The event key for a plain INSERT: a retried event is a clear 23505; a bad key 23514
INSERT INTO personalize.interactions (customer_id, product_id, event_type, event_key) VALUES (1, 1, 'view', 'k-1');
INSERT INTO personalize.interactions (customer_id, product_id, event_type, event_key) VALUES (1, 1, 'view', '');
-- ON CONFLICT DO NOTHING: the application's own idempotent insert
INSERT INTO personalize.interactions (customer_id, product_id, event_type, event_key) VALUES (1, 1, 'view', 'k-1')
ON CONFLICT (event_key) WHERE event_key IS NOT NULL DO NOTHING;

-- Bad calls change nothing
SELECT count(*) AS batches_before FROM personalize.ingest_batches \gset
SELECT * FROM personalize.ingest(NULL);
SELECT * FROM personalize.ingest('ingest_staging', NULL);
SELECT * FROM personalize.ingest('personalize.interactions');
SELECT * FROM personalize.ingest('no_such_table');
CREATE TEMP TABLE ingest_wrong (customer text, product_id text, event_type text);
SELECT * FROM personalize.ingest('ingest_wrong');
SELECT count(*) = :batches_before AS no_batch_added FROM personalize.ingest_batches;

-- Privileges: ingest() runs with the caller's privileges. A role allowed to call it, with the
-- documented grants on the extension's tables, cannot read a staging table through ingest()
-- that it may not read itself; once it may, it loads.
CREATE ROLE regress_ingest_loader;
GRANT USAGE ON SCHEMA personalize TO regress_ingest_loader;
GRANT EXECUTE ON FUNCTION personalize.ingest(regclass, boolean) TO regress_ingest_loader;
GRANT SELECT ON personalize.products, personalize.customers, personalize.event_types TO regress_ingest_loader;
GRANT SELECT (event_key), INSERT ON personalize.interactions TO regress_ingest_loader;
GRANT SELECT, INSERT ON personalize.ingest_batches TO regress_ingest_loader;
GRANT INSERT ON personalize.ingest_rejects TO regress_ingest_loader;
SET ROLE regress_ingest_loader;
SELECT * FROM personalize.ingest('ingest_replay');
RESET ROLE;
GRANT SELECT ON ingest_replay TO regress_ingest_loader;
SET ROLE regress_ingest_loader;
SELECT rule, rows FROM personalize.ingest('ingest_replay') WHERE rows > 0;
-- without INSERT on customers it cannot create them
SELECT rule, rows FROM personalize.ingest('ingest_replay', true) WHERE rows > 0;
RESET ROLE;
SELECT * FROM pg_temp.model_check();

-- merge_customers(): visitor 900 browsed anonymously, then logged in as customer 2. With a
-- cap of 3 in-model products per customer and the visitor's events first (smaller ids), the
-- merge changes which of 2's products are in-model.
SET LOCAL client_min_messages = warning;
SELECT customers FROM personalize.rebuild(3);
RESET client_min_messages;
INSERT INTO personalize.customers (customer_id, country, attributes) VALUES (900, 'Italy', '{"utm": "mail"}');
UPDATE personalize.customers SET attributes = '{"tier": "gold"}' WHERE customer_id = 2;
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type, occurred_at)
OVERRIDING SYSTEM VALUE VALUES (-4, 900, 5, 'view', '2023-12-01'), (-3, 900, 2, 'cart', '2023-12-02'), (-2, 900, 4, 'view', '2023-12-03'),
       (-1, 900, 3, 'click', '2023-12-04');
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (900, 5, 4);
SELECT personalize.create_experiment('ingest_ab', ARRAY['hybrid', 'popular']) > 0 AS created;
SELECT personalize.start_experiment('ingest_ab') = now() AS started;
SELECT personalize.log_exposure(900, '{1, 2}', 'popular') AS logged;
SELECT * FROM pg_temp.model_check();
SELECT customer_id, product_id, events, in_model FROM personalize.customer_items WHERE customer_id IN (2, 900) ORDER BY 1, 2;
SELECT * FROM personalize.merge_customers(900, 2);
SELECT * FROM pg_temp.model_check();
SELECT customer_id, product_id, events, in_model FROM personalize.customer_items WHERE customer_id IN (2, 900) ORDER BY 1, 2;
SELECT customer_id, country, attributes FROM personalize.customers WHERE customer_id IN (2, 900) ORDER BY 1;
SELECT count(*) FILTER (WHERE customer_id = 900) AS left_900,
       (SELECT count(*) FROM personalize.customer_feedback WHERE customer_id = 2) AS feedback_2,
       (SELECT count(*) FROM personalize.exposures WHERE customer_id = 2) AS exposures_2,
       (SELECT count(*) FROM personalize.customer_state WHERE customer_id = 900) AS state_900
FROM personalize.interactions;
-- the same model as a rebuild from the events
CREATE TEMP TABLE pairs_merged AS SELECT * FROM personalize.pair_counts;
CREATE TEMP TABLE counts_merged AS SELECT * FROM personalize.item_counts;
CREATE TEMP TABLE items_merged AS SELECT * FROM personalize.customer_items;
SET LOCAL client_min_messages = warning;
SELECT customers FROM personalize.rebuild();
RESET client_min_messages;
SELECT (SELECT count(*) FROM ((SELECT * FROM pairs_merged EXCEPT SELECT * FROM personalize.pair_counts)
         UNION ALL (SELECT * FROM personalize.pair_counts EXCEPT SELECT * FROM pairs_merged)) d) AS pairs_differing,
       (SELECT count(*) FROM ((SELECT * FROM counts_merged EXCEPT SELECT * FROM personalize.item_counts)
         UNION ALL (SELECT * FROM personalize.item_counts EXCEPT SELECT * FROM counts_merged)) d) AS items_differing,
       (SELECT count(*) FROM ((SELECT * FROM items_merged EXCEPT SELECT * FROM personalize.customer_items)
         UNION ALL (SELECT * FROM personalize.customer_items EXCEPT SELECT * FROM items_merged)) d) AS histories_differing,
       (SELECT count(*) FROM personalize.pair_counts) AS pairs;
-- bad calls: clear errors, nothing changed
SELECT * FROM personalize.merge_customers(NULL, 2);
SELECT * FROM personalize.merge_customers(2, 2);
SELECT * FROM personalize.merge_customers(900, 2);
SELECT * FROM personalize.merge_customers(1, 901);
ROLLBACK;
