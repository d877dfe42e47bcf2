-- One statement that inserts AND updates or deletes events fires several statement
-- triggers (INSERT ... ON CONFLICT DO UPDATE: UPDATE then INSERT; a writable CTE:
-- DELETE then INSERT; MERGE: one per action). The model must come out exact whatever
-- the triggers of one statement see: after each statement model_check() compares
-- pairs, items, customers and each (customer, product)'s events, purchases and weight
-- with a brute-force count (every row it returns is a difference), and at the end
-- the model is compared with rebuild().
\set VERBOSITY terse
BEGIN;

\set ECHO none
\i test/model_check.sql
\set ECHO all

INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 6) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 4) g;
-- a cap of 3 in-model products per customer, so that statements also move the cap
SET client_min_messages = warning;
SELECT customers FROM personalize.rebuild(max_items_per_customer => 3);
RESET client_min_messages;

-- explicit ids throughout (ON CONFLICT and MERGE below target them): the owner may choose
-- ids with OVERRIDING SYSTEM VALUE (interaction_id is GENERATED ALWAYS)
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE VALUES
    (1, 1, 1, 'view'), (2, 1, 2, 'view'), (3, 2, 1, 'click'), (4, 2, 3, 'view'),
    (5, 3, 1, 'view'), (6, 3, 2, 'view'), (7, 3, 3, 'view'), (8, 3, 4, 'view');
SELECT * FROM pg_temp.model_check();

CREATE TEMP VIEW hist AS
SELECT customer_id AS c, product_id AS p, events, purchases, weight, first_interaction_id AS first, in_model
FROM personalize.customer_items;

-- INSERT ... ON CONFLICT DO UPDATE: id 1 exists (its type changes), id 10 is new, both (1, 1)
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE
VALUES (1, 1, 1, 'purchase'), (10, 1, 1, 'cart')
ON CONFLICT (interaction_id) DO UPDATE SET event_type = EXCLUDED.event_type;
SELECT * FROM hist WHERE c = 1 ORDER BY p;
SELECT * FROM pg_temp.model_check();

-- the same, the conflicting event moving to another product that a new event also gets
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE
VALUES (2, 1, 5, 'click'), (11, 1, 5, 'view'), (12, 1, 2, 'purchase')
ON CONFLICT (interaction_id) DO UPDATE SET product_id = EXCLUDED.product_id, event_type = EXCLUDED.event_type;
SELECT * FROM hist WHERE c = 1 ORDER BY p;
SELECT * FROM pg_temp.model_check();

-- a writable CTE that deletes a customer's events and re-inserts them as purchases
WITH d AS (DELETE FROM personalize.interactions WHERE customer_id = 2 RETURNING *)
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE
SELECT interaction_id + 100, customer_id, product_id, 'purchase' FROM d;
SELECT * FROM hist WHERE c = 2 ORDER BY p;
SELECT * FROM pg_temp.model_check();

-- ... and one that re-inserts the very rows it deleted (same ids)
WITH d AS (DELETE FROM personalize.interactions WHERE customer_id = 3 AND product_id IN (1, 4) RETURNING *)
INSERT INTO personalize.interactions OVERRIDING SYSTEM VALUE SELECT * FROM d;
SELECT * FROM hist WHERE c = 3 ORDER BY p;
SELECT * FROM pg_temp.model_check();

-- ... and one whose delete displaces a customer's first product (cap 3) while the
-- insert adds to products both in and out of the model
WITH d AS (DELETE FROM personalize.interactions WHERE interaction_id = 5 RETURNING customer_id)
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE
SELECT 30 + g, customer_id, g, 'cart' FROM d, generate_series(2, 5) g;
SELECT * FROM hist WHERE c = 3 ORDER BY p;
SELECT * FROM pg_temp.model_check();

-- MERGE with all three actions on the same (customer, product) pairs: id 104 is
-- updated, 103 deleted, 40 to 42 inserted
MERGE INTO personalize.interactions i
USING (VALUES (104, 2, 3, 'cart'), (103, 2, 1, NULL), (40, 2, 1, 'click'), (41, 2, 3, 'view'), (42, 2, 6, 'view'))
      AS s(id, c, p, t) ON i.interaction_id = s.id
WHEN MATCHED AND s.t IS NULL THEN DELETE
WHEN MATCHED THEN UPDATE SET event_type = s.t
WHEN NOT MATCHED THEN INSERT (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE VALUES (s.id, s.c, s.p, s.t);
SELECT * FROM hist WHERE c = 2 ORDER BY p;
SELECT * FROM pg_temp.model_check();

-- MERGE moving an event to another customer while inserting for both
MERGE INTO personalize.interactions i
USING (VALUES (40, 4, 1, 'click'), (50, 2, 1, 'purchase'), (51, 4, 1, 'view')) AS s(id, c, p, t)
      ON i.interaction_id = s.id
WHEN MATCHED THEN UPDATE SET customer_id = s.c
WHEN NOT MATCHED THEN INSERT (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE VALUES (s.id, s.c, s.p, s.t);
SELECT * FROM hist WHERE c IN (2, 4) ORDER BY c, p;
SELECT * FROM pg_temp.model_check();

-- an UPDATE moving events from one product to another
UPDATE personalize.interactions SET product_id = 6 WHERE product_id = 1;
SELECT * FROM hist WHERE p IN (1, 6) ORDER BY c, p;
SELECT * FROM pg_temp.model_check();

-- plain statements after the mixed ones, in the same transaction, stay exact
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE
VALUES (60, 1, 1, 'view'), (61, 4, 2, 'cart');
DELETE FROM personalize.interactions WHERE interaction_id = 61;
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE VALUES (62, 4, 2, 'view');
SELECT * FROM pg_temp.model_check();

-- and the model equals rebuild()
CREATE TEMP TABLE before_pairs AS SELECT * FROM personalize.pair_counts;
CREATE TEMP TABLE before_items AS SELECT * FROM personalize.item_counts;
CREATE TEMP TABLE before_hist AS SELECT * FROM hist;
SET client_min_messages = warning;
SELECT customers FROM personalize.rebuild();
RESET client_min_messages;
(SELECT 'pair' AS what, * FROM before_pairs EXCEPT SELECT 'pair', * FROM personalize.pair_counts)
UNION ALL (SELECT 'pair', * FROM personalize.pair_counts EXCEPT SELECT 'pair', * FROM before_pairs);
(SELECT 'item' AS what, * FROM before_items EXCEPT SELECT 'item', * FROM personalize.item_counts)
UNION ALL (SELECT 'item', * FROM personalize.item_counts EXCEPT SELECT 'item', * FROM before_items);
(SELECT 'history' AS what, * FROM before_hist EXCEPT SELECT 'history', * FROM hist)
UNION ALL (SELECT 'history', * FROM hist EXCEPT SELECT 'history', * FROM before_hist) ORDER BY 1, 2, 3, 4;
ROLLBACK;
