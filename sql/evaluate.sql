-- evaluate() and tune() (issue 13): offline quality at a past cut, on a fixture whose
-- figures are derived by hand below; the live model is never touched; bad arguments.
\set VERBOSITY terse
SET client_min_messages = warning;

INSERT INTO personalize.products (product_id, name, category) SELECT g, 'P' || g, 'c' FROM generate_series(1, 6) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 9) g;
-- before the cut (2024-06-01 00:00 UTC), all within the 7-day popularity window:
--   1: {1, 2}   2: {1, 2, 3}   3: {2, 3}   4: {4}   6, 7, 8, 9: {6}
-- after it: 1 buys 3 (new) and 1 (a repeat: not scored); 3 buys 1 and 5 (both new);
-- 5 buys 1 (no history before the cut: not a test customer)
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
  (1, 1, 'purchase', '2024-05-30 12:00+00'), (1, 2, 'purchase', '2024-05-30 12:00+00'),
  (2, 1, 'purchase', '2024-05-30 12:00+00'), (2, 2, 'purchase', '2024-05-30 12:00+00'),
  (2, 3, 'purchase', '2024-05-30 12:00+00'),
  (3, 2, 'purchase', '2024-05-30 12:00+00'), (3, 3, 'purchase', '2024-05-30 12:00+00'),
  (4, 4, 'purchase', '2024-05-30 12:00+00'),
  (6, 6, 'purchase', '2024-05-30 12:00+00'), (7, 6, 'purchase', '2024-05-30 12:00+00'),
  (8, 6, 'purchase', '2024-05-30 12:00+00'), (9, 6, 'purchase', '2024-05-30 12:00+00'),
  (1, 3, 'purchase', '2024-06-10 12:00+00'), (1, 1, 'purchase', '2024-06-10 12:00+00'),
  (3, 1, 'purchase', '2024-06-10 12:00+00'), (3, 5, 'purchase', '2024-06-10 12:00+00'),
  (5, 1, 'purchase', '2024-06-10 12:00+00');
SELECT personalize.create_variant('cooc_count', 'cooccurrence', '{"measure": "count"}');
SELECT personalize.refresh_neighbors(NULL, true) > 0 AS lists_refreshed;
SELECT personalize.refresh_popular() > 0 AS popular_refreshed;

-- the live model before: it must be the same after every call below
CREATE TEMP TABLE live_before AS
SELECT (SELECT md5(string_agg(format('%s', x), ',' ORDER BY x::text)) FROM personalize.pair_counts x) AS pairs,
       (SELECT md5(string_agg(format('%s', x), ',' ORDER BY x::text)) FROM personalize.item_counts x) AS items,
       (SELECT md5(string_agg(format('%s/%s/%s/%s', x.measure, x.product_id, x.neighbor_ids, x.scores), ',' ORDER BY x.measure, x.product_id))
        FROM personalize.neighbors x) AS lists,
       (SELECT md5(string_agg(format('%s', x), ',' ORDER BY x::text)) FROM personalize.customer_items x) AS history,
       (SELECT md5(format('%s', x)) FROM personalize.popular_scores x) AS popular,
       (SELECT count(*) FROM personalize.variants) AS variants;

-- Hand-derived, k = 2. Test customers: 1 (held out {3}) and 3 (held out {1, 5}; 5 was never
-- sold before the cut). As of the cut, 6 is the bestseller (4 customers), then 2 (3), then
-- 1 and 3 (2 each); the pairs seen by >= 2 customers (personalize.neighbors_min_count) are
-- (1,2) and (2,3), both 2.
--   popular: 1 gets [6, 3] (a hit at rank 2), 3 gets [6, 1] (a hit at rank 2).
--     HR 1, P@2 = (1/2 + 1/2) / 2 = 0.5, R@2 = (1/1 + 1/2) / 2 = 0.75,
--     NDCG@2 = (1/log2(3) / 1 + 1/log2(3) / (1 + 1/log2(3))) / 2 = (0.63093 + 0.38685) / 2 = 0.50889
--   cooc_count: 1's history {1, 2} leads to 3 (via 2), then the popular fill 6: [3, 6];
--     3's history {2, 3} leads to 1 (via 2): [1, 6]. Hits at rank 1:
--     NDCG@2 = (1 + 1 / (1 + 1/log2(3))) / 2 = (1 + 0.61315) / 2 = 0.80657
--   coverage: {3, 6, 1} of 6 active products = 0.5 for both.
SELECT variant, customers, hit_rate, "precision", recall, round(ndcg::numeric, 5) AS ndcg, coverage
FROM personalize.evaluate('2024-06-01 00:00+00', ARRAY['popular', 'cooc_count'], 2) ORDER BY variant;
-- the figures from the definitions, on the same fixture: products, ranks and held-out sets
-- written out (a second computation of the metrics, independent of evaluate()'s SQL)
WITH recs(variant, customer_id, rank, product_id) AS (VALUES
        ('popular', 1, 1, 6), ('popular', 1, 2, 3), ('popular', 3, 1, 6), ('popular', 3, 2, 1),
        ('cooc_count', 1, 1, 3), ('cooc_count', 1, 2, 6), ('cooc_count', 3, 1, 1), ('cooc_count', 3, 2, 6)),
     heldout(customer_id, product_id) AS (VALUES (1, 3), (3, 1), (3, 5)),
     per AS (SELECT r.variant, r.customer_id, count(h.product_id) AS hits,
                    sum(CASE WHEN h.product_id IS NOT NULL THEN 1 / log(2, r.rank + 1) ELSE 0 END) AS dcg,
                    (SELECT count(*) FROM heldout x WHERE x.customer_id = r.customer_id) AS n
             FROM recs r LEFT JOIN heldout h USING (customer_id, product_id) GROUP BY 1, 2)
SELECT variant, avg((hits > 0)::int) AS hit_rate, avg(hits / 2.0) AS "precision", avg(hits::numeric / n) AS recall,
       round(avg(dcg / CASE n WHEN 1 THEN 1 ELSE 1 + 1 / log(2, 3) END), 5) AS ndcg
FROM per GROUP BY variant ORDER BY variant;

-- every variant but llm ones when NULL; k = 10 by default
SELECT variant, customers, hit_rate FROM personalize.evaluate('2024-06-01 00:00+00') ORDER BY variant;

-- the live model, the variants, personalize.as_of and the temporary tables: as before
SELECT (SELECT pairs FROM live_before) = (SELECT md5(string_agg(format('%s', x), ',' ORDER BY x::text)) FROM personalize.pair_counts x) AS pairs_same,
       (SELECT items FROM live_before) = (SELECT md5(string_agg(format('%s', x), ',' ORDER BY x::text)) FROM personalize.item_counts x) AS items_same,
       (SELECT lists FROM live_before) = (SELECT md5(string_agg(format('%s/%s/%s/%s', x.measure, x.product_id, x.neighbor_ids, x.scores), ',' ORDER BY x.measure, x.product_id))
                                          FROM personalize.neighbors x) AS lists_same,
       (SELECT history FROM live_before) = (SELECT md5(string_agg(format('%s', x), ',' ORDER BY x::text)) FROM personalize.customer_items x) AS history_same,
       (SELECT popular FROM live_before) = (SELECT md5(format('%s', x)) FROM personalize.popular_scores x) AS popular_same,
       (SELECT variants FROM live_before) = (SELECT count(*) FROM personalize.variants) AS variants_same,
       current_setting('personalize.as_of') AS as_of,
       to_regclass('pg_temp.personalize_eval_neighbors') IS NULL AS no_temp_tables;
-- each call leaves a run row with its figures
SELECT job, items, details -> 'k' AS k, jsonb_array_length(details -> 'results') AS results
FROM personalize.maintenance_runs WHERE job = 'evaluate' ORDER BY run_id;

-- recommend() live is unaffected: customer 3 bought 1 and 5 after the cut
SELECT product_id FROM personalize.recommend(3, 'cooc_count', 3) ORDER BY 1;

-- tune(): the variant as it is first, every setting tried, best first
SELECT count(*) > 5 AS several, bool_or(changed = '(current)') AS has_current,
       max(hit_rate) = (SELECT t.hit_rate FROM personalize.tune('cooc_count', '2024-06-01 00:00+00', 2) t WHERE t.rank = 1) AS best_first
FROM personalize.tune('cooc_count', '2024-06-01 00:00+00', 2);
SELECT job, details ->> 'variant' AS variant, details ? 'best' AS has_best FROM personalize.maintenance_runs WHERE job = 'tune' ORDER BY run_id;

-- bad arguments: a clear error (its SQLSTATE, detail and hint), nothing written (no run row)
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT count(*) AS runs_before FROM personalize.maintenance_runs \gset
SELECT * FROM personalize.evaluate(NULL);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('infinity');
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('2024-06-01 00:00+00', NULL, 0);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('2024-06-01 00:00+00', NULL, 1001);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('2024-06-01 00:00+00', ARRAY['no_such_variant']);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('2024-06-01 00:00+00', ARRAY[]::text[]);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('2024-06-01 00:00+00', ARRAY['popular', NULL]);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('asked', 'llm');
SELECT * FROM personalize.evaluate('2024-06-01 00:00+00', ARRAY['asked']);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.evaluate('2020-01-01 00:00+00');
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.tune('popular', '2024-06-01 00:00+00');
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.tune('asked', '2024-06-01 00:00+00');
\echo SQLSTATE :SQLSTATE
SELECT count(*) = :runs_before AS no_new_runs, to_regclass('pg_temp.personalize_eval_neighbors') IS NULL AS no_temp_tables
FROM personalize.maintenance_runs;
-- the evaluation's internal entry point is not for PUBLIC
SELECT has_function_privilege('public', 'personalize._recommend_at_cut(bigint, text, integer)', 'EXECUTE') AS public_at_cut,
       has_function_privilege('public', 'personalize.evaluate(timestamptz, text[], integer)', 'EXECUTE') AS public_evaluate;

-- Content lists (from product embeddings, not from events) are served at the cut as they
-- are: cooc_count's default content_weight 0.5 reads them. With a content list for product
-- 1 naming product 5 (cosine 0.99, never bought with it), customer 1 (history {1, 2}) gets
-- [3, 5]: 3 via 2 (weight w), then 5 via 1's content list (w * 0.5 * 0.99), both above the
-- popular fill; customer 3 still gets [1, 6]. Coverage: {3, 5, 1, 6} of 6 = 0.667; hits as before.
INSERT INTO personalize.neighbors (measure, product_id, neighbor_ids, scores, counts)
VALUES ('content', 1, '{5}', '{0.99}', '{0}');
SELECT variant, customers, hit_rate, round(coverage::numeric, 3) AS coverage
FROM personalize.evaluate('2024-06-01 00:00+00', ARRAY['cooc_count'], 2);
