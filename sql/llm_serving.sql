-- Serving the cold start (issue 4): the llm variant, LLM answers in hybrid for customers
-- with little history, content neighbours from embeddings and how recommend() uses them.
-- Everything is inserted by hand: recommend() and _refresh_content_neighbors() never call
-- the network, so no mock server is needed here.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
SET LOCAL personalize.as_of = '2024-06-30 12:00+00';
SET LOCAL personalize.neighbors_min_count = 1;

INSERT INTO personalize.products (product_id, name, category, active) VALUES
    (1, 'WHITE METAL LANTERN', 'lighting', true),
    (2, 'GLASS STAR FROSTED T-LIGHT HOLDER', 'lighting', true),
    (3, 'ZINC HEART LATTICE T-LIGHT HOLDER', 'lighting', true),
    (4, 'RED WOOLLY HOTTIE', 'home', true),
    (5, 'KNITTED UNION FLAG HOT WATER BOTTLE', 'home', true),
    (6, 'DOLLY GIRL LUNCH BOX', 'toys', true),
    (7, 'JUMBO BAG RED RETROSPOT', 'bags', true),
    (8, 'DISCONTINUED PAPER LANTERN', 'lighting', false);
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 10) g;
-- lantern buyers (1, 2, 3) also buy t-light holders; the hottie (4) goes with the hot water
-- bottle (5); the jumbo bag (7) sells to three customers this week.
-- Customer 7 has no history; 8 bought the hottie only; 9 looked at three products.
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (1, 1, 'purchase', '2024-06-01'), (1, 2, 'purchase', '2024-06-01'),
    (2, 1, 'purchase', '2024-06-02'), (2, 2, 'purchase', '2024-06-02'), (2, 3, 'purchase', '2024-06-02'),
    (3, 1, 'purchase', '2024-06-03'), (3, 3, 'purchase', '2024-06-03'),
    (4, 4, 'purchase', '2024-06-04'), (4, 5, 'purchase', '2024-06-04'),
    (5, 4, 'purchase', '2024-06-05'), (5, 5, 'purchase', '2024-06-05'),
    (1, 7, 'purchase', '2024-06-28'), (4, 7, 'purchase', '2024-06-28'), (6, 7, 'purchase', '2024-06-29'),
    (8, 4, 'purchase', '2024-06-20'),
    (9, 1, 'view', '2024-06-20'), (9, 4, 'view', '2024-06-20'), (9, 6, 'view', '2024-06-20');
SELECT personalize.refresh_neighbors() > 0 AS lists_refreshed;
SELECT personalize.refresh_popular(as_of => '2024-06-30 12:00+00') AS popular_products;
SELECT rank, product_id, customers, source FROM personalize.popular ORDER BY rank;

-- the LLM's answers, as llm_refresh() stores them: per customer, best first
INSERT INTO personalize.llm_runs (kind, status, model) VALUES ('refresh', 'completed', 'gpt-4o-mini')
RETURNING run_id AS run \gset
INSERT INTO personalize.llm_recommendations (customer_id, rank, product_id, reason, run_id) VALUES
    (7, 1, 3, 'a classic for a first order', :run),
    (7, 2, 8, 'goes with any lantern', :run),
    (7, 3, 5, NULL, :run),
    (7, 4, 6, 'popular with new customers', :run),
    (8, 1, 4, 'you liked it', :run),
    (8, 2, 5, 'keeps the hottie company', :run),
    (8, 3, 1, 'brightens a cold evening', :run),
    (9, 1, 2, 'matches the lantern you looked at', :run),
    (9, 2, 7, 'a bag for everything', :run);

-- the llm variant: the answers in their order (score 1 + (n - i + 1) / n for the i-th of n),
-- the inactive lantern (8) skipped, a NULL reason without a colon, then popular products below 1
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(7, 'llm', 6);
-- purchases are skipped (8 bought the hottie), unless the variant allows repeats
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(8, 'llm', 3);
SELECT personalize.create_variant('llm_repeat', 'llm', '{"allow_repeat": true, "popular_fill": false}');
SELECT product_id, reason FROM personalize.recommend(8, 'llm_repeat', 5);
-- no answer stored: popular products only (customer 1 bought 1, 2 and 7)
SELECT product_id, reason FROM personalize.recommend(1, 'llm', 3);
-- the category cap applies as for every variant: after the answers and the bag, every
-- other product is in a category already shown, so 4 rows for k = 6
SELECT personalize.create_variant('llm_one_per_category', 'llm', '{"category_cap": 1}');
SELECT r.product_id, p.category, r.reason
FROM personalize.recommend(7, 'llm_one_per_category', 6) WITH ORDINALITY AS r(product_id, score, reason, ord)
JOIN personalize.products p USING (product_id) ORDER BY r.ord;

-- hybrid (llm_history 3): customer 7 (no history) gets the answers above the fill, blended
-- with popularity: 1 + 0.8 * llm + 0.2 * pop
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(7, 'hybrid', 5);
-- customer 8 (one history product: trust 1/3) blends co-occurrence of the hottie with the
-- answers: the bottle (5) is both, the lantern (1) only the LLM's; a reason names the larger
-- part of the score, and for the lantern hybrid's popularity part (weight 0.4) outweighs the
-- two thirds of the LLM's answer, so it reads bestseller
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(8, 'hybrid', 4);
-- customer 9 has three history products: the default hybrid does not read the answers ...
SELECT product_id, reason FROM personalize.recommend(9, 'hybrid', 4);
-- ... a variant with llm_history 4 does (trust 3/4: co-occurrence leads; the bag comes in
-- above the fill, its reason popularity, 0.2 x pop outweighing 0.8 x pers), and one with
-- llm_history 0 never does
SELECT personalize.create_variant('hybrid_llm4', 'hybrid', '{"llm_history": 4}');
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(9, 'hybrid_llm4', 8);
SELECT personalize.create_variant('hybrid_no_llm', 'hybrid', '{"llm_history": 0}');
SELECT product_id, reason FROM personalize.recommend(7, 'hybrid_no_llm', 3);
-- cooccurrence reads the answers only when asked to (llm_history defaults to 0 there)
SELECT product_id, reason FROM personalize.recommend(7, 'cooccurrence', 3);
SELECT personalize.create_variant('cooc_llm', 'cooccurrence', '{"llm_history": 1}');
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(7, 'cooc_llm', 4);

-- the llm variant needs no neighbour lists (no measure to refresh)
SELECT personalize._validate_variant('v', 'llm', '{}') IS NULL AS needs_no_lists;
-- bad parameters are refused with a clear error
SELECT personalize.create_variant('v1', 'llm', '{"popular_fill": "no"}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'llm', '{"llm_k": 5}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"llm_history": -1}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"llm_history": 2.5}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"llm_history": "3"}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"content_weight": -0.5}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"content_weight": 1001}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'cooccurrence', '{"content_weight": "high"}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'LLM');
\echo SQLSTATE :SQLSTATE
SELECT count(*) AS v1_created FROM personalize.variants WHERE name = 'v1';
SELECT personalize.create_variant('v2', 'hybrid', '{"llm_history": 1000, "content_weight": 0}');

------------------------------------------------------------------------------
-- Content neighbours: small vectors whose cosines are easy to check by hand.
-- 1 (1,0,0), 2 (4,3,0), 3 (3,4,0), 4 (0,0,1), 5 (0,3,4), 6 (0,1,0), 7 (-1,0,0):
-- cos(1,2) = 0.8, cos(1,3) = 0.6, cos(2,3) = 0.96, cos(4,5) = 0.8, cos(2,5) = 0.36,
-- cos(3,5) = 0.48, cos(6,2) = cos(6,5) = 0.6, cos(6,3) = 0.8, 7 is alike to nothing.
-- The inactive 8, a product of another model (10) and a 4-dimension one (11) are not compared.
------------------------------------------------------------------------------
INSERT INTO personalize.products (product_id, name, category) VALUES
    (10, 'OTHER MODEL LANTERN', 'lighting'), (11, 'FOUR DIMENSION LANTERN', 'lighting');
SET LOCAL personalize.neighbors_k = 3;
INSERT INTO personalize.product_embeddings (product_id, model, embedding, text_md5) VALUES
    (1, 'text-embedding-3-small', '{1,0,0}', 'x'), (2, 'text-embedding-3-small', '{4,3,0}', 'x'),
    (3, 'text-embedding-3-small', '{3,4,0}', 'x'), (4, 'text-embedding-3-small', '{0,0,1}', 'x'),
    (5, 'text-embedding-3-small', '{0,3,4}', 'x'), (6, 'text-embedding-3-small', '{0,1,0}', 'x'),
    (7, 'text-embedding-3-small', '{-1,0,0}', 'x'), (8, 'text-embedding-3-small', '{1,0,0}', 'x'),
    (10, 'another-model', '{1,0,0}', 'x'), (11, 'text-embedding-3-small', '{1,0,0,0}', 'x');
SELECT personalize._refresh_content_neighbors() AS lists_written;
-- top 3 by cosine (ties: smaller id first), counts = the neighbour's customers (item_counts)
SELECT product_id, neighbor_ids, array(SELECT round(s::numeric, 4) FROM unnest(scores) s) AS scores, counts
FROM personalize.neighbors WHERE measure = 'content' ORDER BY product_id;
-- the co-occurrence lists are left alone
SELECT count(*) AS llr_lists FROM personalize.neighbors WHERE measure = 'llr';

-- a new product nobody has bought: SILVER METAL LANTERN (12,5,0), cos 12/13 = 0.9231 with 1,
-- 63/65 = 0.9692 with 2, 56/65 = 0.8615 with 3, 5/13 = 0.3846 with 6, 15/65 = 0.2308 with 5
INSERT INTO personalize.products (product_id, name, category) VALUES (9, 'SILVER METAL LANTERN', 'lighting');
INSERT INTO personalize.product_embeddings (product_id, model, embedding, text_md5) VALUES
    (9, 'text-embedding-3-small', '{12,5,0}', 'x');
CREATE TEMP TABLE lists_before ON COMMIT DROP AS
    SELECT product_id, neighbor_ids, scores FROM personalize.neighbors WHERE measure = 'content';
-- its own list, and it enters the lists of 1 (shorter than 3), 2 and 3 (it beats the third);
-- 5 and 6 keep theirs (it does not beat their third), so 4 lists are written
SELECT personalize._refresh_content_neighbors(ARRAY[9]) AS lists_written;
SELECT n.product_id, n.neighbor_ids, array(SELECT round(s::numeric, 4) FROM unnest(n.scores) s) AS scores, n.counts,
       b.neighbor_ids IS DISTINCT FROM n.neighbor_ids AS changed
FROM personalize.neighbors n LEFT JOIN lists_before b USING (product_id)
WHERE n.measure = 'content' ORDER BY n.product_id;
-- the incremental refresh gives the lists a full one gives
CREATE TEMP TABLE lists_incremental ON COMMIT DROP AS
    SELECT product_id, neighbor_ids, scores FROM personalize.neighbors WHERE measure = 'content';
SELECT personalize._refresh_content_neighbors(NULL) AS lists_written;
SELECT count(*) AS differences FROM (
    (SELECT product_id, neighbor_ids, scores FROM personalize.neighbors WHERE measure = 'content'
     EXCEPT ALL SELECT * FROM lists_incremental)
    UNION ALL
    (SELECT * FROM lists_incremental
     EXCEPT ALL SELECT product_id, neighbor_ids, scores FROM personalize.neighbors WHERE measure = 'content')) d;

-- customer 3 bought 1 and 3: the new lantern reaches them through content similarity,
-- named after the product it is most alike to among theirs
SELECT r.product_id, p.name, round(r.score::numeric, 4) AS score, r.reason
FROM personalize.recommend(3, 'cooccurrence', 4) WITH ORDINALITY AS r(product_id, score, reason, ord)
JOIN personalize.products p USING (product_id) ORDER BY r.ord;
SELECT product_id, reason FROM personalize.recommend(3, 'hybrid', 4);
-- with content_weight 0 nothing of it shows
SELECT personalize.create_variant('cooc_no_content', 'cooccurrence', '{"content_weight": 0}');
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(3, 'cooc_no_content', 4);
SELECT count(*) AS similar_reasons
FROM personalize.customers c, LATERAL personalize.recommend(c.customer_id, 'cooc_no_content', 20) r
WHERE r.reason LIKE 'similar to%';

-- customer 10 only viewed the new lantern, which has no co-occurrence list: its content list
-- stands in (scores 1 + cos / 0.9692 under cooccurrence)
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (10, 9, 'view', '2024-06-29');
SELECT product_id, round(score::numeric, 4) AS score, reason FROM personalize.recommend(10, 'cooccurrence', 4);
SELECT product_id, reason FROM personalize.recommend(10, 'cooc_no_content', 2);

-- a product taken off sale leaves its own list and the others'; the lists it left are one
-- shorter until a full refresh
UPDATE personalize.products SET active = false WHERE product_id = 9;
SELECT personalize._refresh_content_neighbors(ARRAY[9, NULL, 9]) AS lists_written;
SELECT product_id, neighbor_ids FROM personalize.neighbors WHERE measure = 'content' ORDER BY product_id;
SELECT personalize._refresh_content_neighbors(NULL) AS lists_written;
SELECT product_id, neighbor_ids FROM personalize.neighbors WHERE measure = 'content' ORDER BY product_id;
SELECT personalize._refresh_content_neighbors('{}') AS nothing_to_do;

-- never inactive, never purchased, whatever the variant
SELECT count(*) AS bad_rows
FROM personalize.customers c, personalize.variants v,
     LATERAL personalize.recommend(c.customer_id, v.name, 20) r
WHERE r.product_id IN (8, 9)
   OR EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = c.customer_id
              AND i.product_id = r.product_id AND i.event_type = 'purchase'
              AND NOT (v.params @> '{"allow_repeat": true}'));
-- the ranking does not depend on k
SELECT count(*) AS k_dependent_lists
FROM personalize.customers c, personalize.variants v
WHERE (SELECT array_agg(r.product_id ORDER BY r.ord)
       FROM personalize.recommend(c.customer_id, v.name, 3) WITH ORDINALITY AS r(product_id, score, reason, ord))
   IS DISTINCT FROM
      (SELECT (array_agg(r.product_id ORDER BY r.ord))[1:3]
       FROM personalize.recommend(c.customer_id, v.name, 9) WITH ORDINALITY AS r(product_id, score, reason, ord));

-- declared as the lead's SQL calls it: C, volatile, fixed search_path, not for PUBLIC
SELECT p.proname, p.provolatile, p.prosecdef, p.proconfig, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may
FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace AND p.proname = '_refresh_content_neighbors';
-- recommend() stays read-only with all of it in play
SET TRANSACTION READ ONLY;
SELECT count(*) AS rows_read_only FROM personalize.recommend(7, NULL, 5);
ROLLBACK;
