-- The co-occurrence model follows interactions exactly: inserts (single, multi-row,
-- COPY), deletes, updates, forget_customer(), TRUNCATE and the per-customer cap.
-- After every step model_check() compares the stored counts with a brute-force
-- count written straight from the definition, and lists any difference.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;

-- pg_temp.model_check(): the brute-force count from the definition, compared with the
-- stored model (test/model_check.sql; every row it returns is a difference)
\set ECHO none
\i test/model_check.sql
\set ECHO all

INSERT INTO personalize.products (product_id, name, category) VALUES
    (1, 'WHITE METAL LANTERN', 'lighting'), (2, 'CREAM CUPID HEARTS COAT HANGER', 'home'),
    (3, 'KNITTED UNION FLAG HOT WATER BOTTLE', 'home'), (4, 'RED WOOLLY HOTTIE', 'home'),
    (5, 'SET 7 BABUSHKA NESTING BOXES', 'toys'), (6, 'GLASS STAR FROSTED T-LIGHT HOLDER', 'lighting');
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 6) g;

-- an empty model
SELECT * FROM personalize.model_stats;

-- one event at a time
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 1, 'purchase');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 2, 'view');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 2, 'purchase');
SELECT personalize.cooccurrence_count(1, 2) AS c12, personalize.cooccurrence_count(2, 1) AS c21,
       personalize.cooccurrence_count(1, 1) AS c11, personalize.cooccurrence_count(1, 3) AS c13;
SELECT * FROM pg_temp.model_check();

-- a multi-row insert, with repeats inside the statement
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES
    (2, 1, 'view'), (2, 2, 'click'), (2, 3, 'cart'), (2, 1, 'purchase'), (3, 1, 'view'), (3, 3, 'view');
SELECT * FROM personalize.cooccurrence ORDER BY 1, 2;
SELECT * FROM pg_temp.model_check();

-- COPY
COPY personalize.interactions (customer_id, product_id, event_type) FROM stdin;
4	1	view
4	2	view
4	3	view
4	4	purchase
1	3	cart
\.
SELECT * FROM personalize.cooccurrence ORDER BY 1, 2;
SELECT customer_id, product_id, events, purchases, weight, in_model FROM personalize.customer_items
WHERE customer_id IN (1, 4) ORDER BY 1, 2;
SELECT * FROM pg_temp.model_check();

-- deletes subtract exactly: one of two events keeps the product, the last one removes it
DELETE FROM personalize.interactions WHERE customer_id = 1 AND product_id = 2 AND event_type = 'view';
SELECT personalize.cooccurrence_count(1, 2) AS c12_still;
DELETE FROM personalize.interactions WHERE customer_id = 1 AND product_id = 2;
SELECT personalize.cooccurrence_count(1, 2) AS c12_after, personalize.cooccurrence_count(2, 3) AS c23;
SELECT * FROM pg_temp.model_check();

-- an UPDATE that moves events between customers and products is handled exactly
UPDATE personalize.interactions SET customer_id = 5 WHERE customer_id = 3;
UPDATE personalize.interactions SET product_id = 5 WHERE customer_id = 4 AND product_id = 4;
SELECT * FROM personalize.cooccurrence ORDER BY 1, 2;
SELECT * FROM pg_temp.model_check();

-- right to erasure
SELECT * FROM personalize.forget_customer(2);
SELECT count(*) AS rows_left FROM personalize.customer_items WHERE customer_id = 2;
SELECT count(*) AS customer_left FROM personalize.customers WHERE customer_id = 2;
SELECT * FROM personalize.forget_customer(2);
SELECT * FROM personalize.forget_customer(NULL);
\echo SQLSTATE :SQLSTATE
SELECT * FROM pg_temp.model_check();

-- the cap: rebuild with 3 in-model products per customer, then grow past it
SET client_min_messages = warning;  -- rebuild()'s progress NOTICEs carry timings
SELECT customers, products, pairs FROM personalize.rebuild(max_items_per_customer => 3);
RESET client_min_messages;
SELECT * FROM pg_temp.model_check();
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES
    (6, 5, 'view'), (6, 4, 'view'), (6, 6, 'view'), (6, 1, 'view');
SELECT product_id, in_model FROM personalize.customer_items WHERE customer_id = 6 ORDER BY product_id;
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (6, 2, 'view');
SELECT * FROM pg_temp.model_check();
-- an earlier interaction id (chosen by the owner) pulls a product into the model and pushes one out
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) OVERRIDING SYSTEM VALUE VALUES (-1, 6, 3, 'view');
SELECT product_id, in_model FROM personalize.customer_items WHERE customer_id = 6 ORDER BY product_id;
SELECT * FROM pg_temp.model_check();
-- deleting an in-model product promotes the next one
DELETE FROM personalize.interactions WHERE customer_id = 6 AND product_id = 5;
SELECT product_id, in_model FROM personalize.customer_items WHERE customer_id = 6 ORDER BY product_id;
SELECT * FROM pg_temp.model_check();
SELECT personalize.rebuild(max_items_per_customer => 1);
\echo SQLSTATE :SQLSTATE
SELECT personalize.rebuild(max_items_per_customer => 10001);
\echo SQLSTATE :SQLSTATE

-- neighbour lists: refreshed for dirty products; similarity measures by definition. The
-- events' count changes wait in model_deltas; folding them marks their products dirty
SELECT count(*) AS dirty_before_fold FROM personalize.dirty_products;
SELECT personalize.fold_deltas() > 0 AS folded;
SELECT pending_changes AS pending_after_fold FROM personalize.model_stats;
SELECT count(*) > 0 AS dirty_before FROM personalize.dirty_products;
SET LOCAL personalize.neighbors_min_count = 1;
SET LOCAL personalize.neighbors_k = 2;
SELECT personalize.refresh_neighbors() > 0 AS refreshed;
SELECT count(*) AS dirty_after FROM personalize.dirty_products;
SELECT measure, product_id, neighbor_id, rank, round(score::numeric, 4) AS score, customers
FROM personalize.neighbor_list ORDER BY 1, 2, 4;
SELECT personalize.refresh_neighbors(0);
\echo SQLSTATE :SQLSTATE
SELECT m, round(personalize.similarity(m, 2, 3, 4, 10)::numeric, 4) AS score
FROM unnest(ARRAY['count', 'jaccard', 'cosine', 'lift', 'llr']) AS m ORDER BY m COLLATE "C";
SELECT personalize.similarity('llr', 1, 5, 5, 25) AS llr_independent;
SELECT personalize.similarity('pearson', 1, 2, 2, 10);
\echo SQLSTATE :SQLSTATE
SELECT personalize.similarity('count', 3, 2, 2, 10);
\echo SQLSTATE :SQLSTATE

-- TRUNCATE empties the model
TRUNCATE personalize.interactions;
SELECT customers, products, pairs, dirty_products FROM personalize.model_stats;
SELECT count(*) AS lists FROM personalize.neighbors;
SELECT * FROM pg_temp.model_check();
ROLLBACK;
