-- No empty first hour: before the first refresh and right after create_variant(),
-- recommend() answers from the exact live counts (reason "... (live)"), with the same
-- products and scores the refresh then stores. (After a restore: test/scripts/upgrade.sh.)
\set VERBOSITY terse
SET personalize.as_of = '2024-01-20';
INSERT INTO personalize.products (product_id, name, category)
SELECT g, 'product ' || g, 'c' || (g % 3) FROM generate_series(1, 8) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 6) g;
-- every event older than the 7-day popularity window: the stored list is all-time, as the live one
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, p, 'purchase', '2024-01-02'::timestamptz + (c || ' hours')::interval
FROM (VALUES (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 4), (3, 1), (3, 2), (3, 3),
             (4, 2), (4, 3), (4, 5), (5, 1), (6, 6)) AS e(c, p);

-- nothing is refreshed yet: no list is stored
SELECT (SELECT count(*) FROM personalize.neighbors) AS stored_lists,
       (SELECT count(*) FROM personalize.popular_scores) AS stored_popular,
       (SELECT count(*) FROM personalize.dirty_products) AS dirty,
       (SELECT pending_changes > 0 FROM personalize.model_stats) AS pending_changes;
-- customer 5 bought product 1 only: its neighbours, computed live, then live bestsellers
SELECT * FROM personalize.recommend(5, 'cooccurrence', 5);
SELECT * FROM personalize.recommend(5, NULL, 5);
-- an anonymous visitor
SELECT * FROM personalize.recommend(0, 'popular', 3);

-- the live answers are the refreshed answers but for "(live)"
CREATE TEMP TABLE live AS
SELECT v, r.product_id, r.score, r.reason, r.ord
FROM unnest(ARRAY['cooccurrence', 'hybrid', 'popular']) v, generate_series(0, 6) c,
     LATERAL personalize.recommend(c, v, 10) WITH ORDINALITY r(product_id, score, reason, ord);
CALL personalize.refresh();
CREATE TEMP TABLE stored AS
SELECT v, r.product_id, r.score, r.reason, r.ord
FROM unnest(ARRAY['cooccurrence', 'hybrid', 'popular']) v, generate_series(0, 6) c,
     LATERAL personalize.recommend(c, v, 10) WITH ORDINALITY r(product_id, score, reason, ord);
SELECT (SELECT count(*) FROM live) AS live_rows, (SELECT count(*) FROM stored) AS stored_rows,
       (SELECT count(*) FROM live WHERE reason LIKE '%(live)') AS live_reasons,
       (SELECT count(*) FROM stored WHERE reason LIKE '%(live)') AS stored_live_reasons,
       NOT EXISTS (SELECT v, product_id, round(score::numeric, 12), ord, replace(reason, ' (live)', '') FROM live
                   EXCEPT SELECT v, product_id, round(score::numeric, 12), ord, reason FROM stored) AS same_answers;
SELECT * FROM personalize.recommend(5, 'cooccurrence', 5);

-- a new variant with a measure that has no stored list: servable at once
SELECT personalize.create_variant('cooc_cosine', 'cooccurrence', '{"measure": "cosine"}');
SELECT * FROM personalize.recommend(5, 'cooc_cosine', 3);
-- the other variants keep serving their stored lists meanwhile
SELECT count(*) FILTER (WHERE reason LIKE '%(live)') AS live_rows FROM personalize.recommend(5, 'cooccurrence', 5);
CALL personalize.refresh();
SELECT * FROM personalize.recommend(5, 'cooc_cosine', 3);

-- a product bought for the first time since the last refresh gets its list live
-- (product 7: customers 1, 2 and 6; with 1 and 2 it shares products 1 and 2)
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (1, 7, 'purchase', '2024-01-03'), (2, 7, 'purchase', '2024-01-03'), (6, 7, 'purchase', '2024-01-03');
SELECT * FROM personalize.recommend(6, 'cooc_cosine', 3);

-- leave the database as the next tests expect it: empty
SELECT personalize.drop_variant('cooc_cosine');
DELETE FROM personalize.interactions;
DELETE FROM personalize.customers;
DELETE FROM personalize.products;
CALL personalize.refresh();
DELETE FROM personalize.maintenance_runs;
SELECT (SELECT count(*) FROM personalize.neighbors) AS lists, (SELECT count(*) FROM personalize.item_counts) AS items,
       (SELECT cardinality(product_ids) FROM personalize.popular_scores) AS popular;
RESET personalize.as_of;
