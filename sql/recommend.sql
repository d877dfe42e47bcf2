-- recommend(): every rule of the engine issue, on a small shop whose answers can be
-- worked out by hand; variants and their validation; errors; declared properties.
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
    (6, 'CREAM CUPID HEARTS COAT HANGER', 'home', true),
    (7, 'SET 7 BABUSHKA NESTING BOXES', 'toys', true),
    (8, 'DOLLY GIRL LUNCH BOX', 'toys', true),
    (9, 'DISCONTINUED PAPER LANTERN', 'lighting', false),
    (10, 'JUMBO BAG RED RETROSPOT', 'bags', true);
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 8) g;

-- buyers of the lantern (1) also bought t-light holders (2, 3) and the discontinued lantern (9);
-- the hottie (4) goes with the hot water bottle (5); the jumbo bag (10) sells to everyone this week
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (1, 1, 'purchase', '2024-06-01'), (1, 2, 'purchase', '2024-06-01'), (1, 3, 'purchase', '2024-06-01'), (1, 9, 'purchase', '2024-06-01'),
    (2, 1, 'purchase', '2024-06-02'), (2, 2, 'purchase', '2024-06-02'), (2, 9, 'purchase', '2024-06-02'),
    (3, 1, 'purchase', '2024-06-03'), (3, 3, 'purchase', '2024-06-03'),
    (4, 4, 'purchase', '2024-06-04'), (4, 5, 'purchase', '2024-06-04'), (4, 6, 'view', '2024-06-04'),
    (5, 4, 'purchase', '2024-06-05'), (5, 5, 'purchase', '2024-06-05'),
    (6, 10, 'purchase', '2024-06-28'), (7, 10, 'purchase', '2024-06-28'), (2, 10, 'purchase', '2024-06-29'),
    (6, 7, 'view', '2024-06-28'), (7, 8, 'view', '2024-06-28');
-- customer 8 only looked at the lantern, long ago
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (8, 1, 'view', '2024-01-02');
SELECT personalize.refresh_neighbors() > 0 AS lists_refreshed;
SELECT personalize.refresh_popular(as_of => '2024-06-30 12:00+00') AS popular_products;
SELECT rank, product_id, customers, source FROM personalize.popular ORDER BY rank LIMIT 4;

-- history through the neighbour lists: purchased products (1, 3) and the inactive one (9) never
-- come back; the reason names the history product; popular products fill up to k below them
SELECT r.product_id, p.name, round(r.score::numeric, 3) AS score, r.reason
FROM personalize.recommend(3, 'cooccurrence', 4) WITH ORDINALITY AS r(product_id, score, reason, ord)
JOIN personalize.products p USING (product_id) ORDER BY r.ord;
-- a viewer (not a buyer) gets "goes with", and the lantern itself is allowed (only viewed)
SELECT product_id, reason FROM personalize.recommend(8, 'cooccurrence', 3);
-- the default variant (hybrid) when variant is NULL; scores highest first
SELECT product_id, reason FROM personalize.recommend(4, NULL, 3);
SELECT bool_and(score > 0) AS positive,
       array_agg(score ORDER BY ord) = array_agg(score ORDER BY score DESC) AS best_first
FROM personalize.recommend(3, NULL, 8) WITH ORDINALITY AS r(product_id, score, reason, ord);
-- never inactive, never purchased, whatever the variant and k
SELECT count(*) AS bad_rows
FROM personalize.customers c, personalize.variants v,
     LATERAL personalize.recommend(c.customer_id, v.name, 20) r
WHERE r.product_id = 9
   OR EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = c.customer_id
              AND i.product_id = r.product_id AND i.event_type = 'purchase');

-- the first k of a longer list are the list for k (the ranking does not depend on k)
SELECT count(*) AS k_dependent_lists
FROM personalize.customers c, personalize.variants v
WHERE (SELECT array_agg(r.product_id ORDER BY r.ord)
       FROM personalize.recommend(c.customer_id, v.name, 3) WITH ORDINALITY AS r(product_id, score, reason, ord))
   IS DISTINCT FROM
      (SELECT (array_agg(r.product_id ORDER BY r.ord))[1:3]
       FROM personalize.recommend(c.customer_id, v.name, 9) WITH ORDINALITY AS r(product_id, score, reason, ord));

-- unknown ids and customers without history get popular products, not an error
SELECT product_id, round(score::numeric, 3) AS score, reason FROM personalize.recommend(424242, NULL, 3);
SELECT product_id, reason FROM personalize.recommend(-1, 'popular', 2);

-- campaigns: an active one boosts and can bring a product in; expired and future ones do nothing
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost) VALUES
    ('Summer lights', 2, '2024-06-01', '2024-07-01', 3.0),
    ('Christmas', 8, '2023-12-01', '2023-12-25', 10.0),
    ('Back to school', 8, '2024-08-15', '2024-09-15', 10.0);
SELECT product_id, round(score::numeric, 3) AS score, reason FROM personalize.recommend(8, 'cooccurrence', 3);
SELECT product_id, reason FROM personalize.recommend(424242, 'popular', 3);
UPDATE personalize.marketing_campaigns SET starts_at = '2024-06-29' WHERE name = 'Back to school';
SELECT product_id, reason FROM personalize.recommend(5, 'cooccurrence', 2);

-- variants: repeat purchases, a category cap, another measure, no popular fill
SELECT personalize.create_variant('repeat_ok', 'cooccurrence', '{"allow_repeat": true}');
SELECT personalize.create_variant('one_per_category', 'hybrid', '{"category_cap": 1}');
SELECT personalize.create_variant('cooc_jaccard', 'cooccurrence', '{"measure": "jaccard", "popular_fill": false}');
SELECT personalize.refresh_neighbors() > 0 AS jaccard_lists_built;
SELECT product_id FROM personalize.recommend(3, 'repeat_ok', 3) ORDER BY product_id;
SELECT r.product_id, p.category
FROM personalize.recommend(3, 'one_per_category', 10) WITH ORDINALITY AS r(product_id, score, reason, ord)
JOIN personalize.products p USING (product_id) ORDER BY r.ord;
SELECT product_id, reason FROM personalize.recommend(3, 'cooc_jaccard', 10);
SELECT name, algorithm, params, builtin FROM personalize.variants ORDER BY name COLLATE "C";

-- bad variants are refused with a clear error and nothing changes
SELECT personalize.create_variant('Bad Name', 'hybrid');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant(NULL, 'hybrid');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'matrix_factorisation');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', NULL);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"meassure": "llr"}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"measure": "pearson"}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"history_items": 0}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"history_items": 2.5}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"half_life_days": -3}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"popularity_weight": 2}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '{"allow_repeat": "yes"}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('v1', 'hybrid', '[1, 2]');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('repeat_ok', 'hybrid');
\echo SQLSTATE :SQLSTATE
SELECT personalize.drop_variant('hybrid');
\echo SQLSTATE :SQLSTATE
SELECT personalize.drop_variant('no_such_variant');
\echo SQLSTATE :SQLSTATE
SELECT count(*) AS variants FROM personalize.variants;
SELECT personalize.drop_variant('repeat_ok');
SELECT count(*) AS variants FROM personalize.variants;

-- bad arguments to recommend(); the unknown-variant error lists the known ones
\set VERBOSITY default
SELECT * FROM personalize.recommend(1, 'no_such_variant', 5);
\echo SQLSTATE :SQLSTATE
\set VERBOSITY terse
SELECT * FROM personalize.recommend(1, NULL, 0);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.recommend(1, NULL, 1001);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.recommend(1, NULL, NULL);
\echo SQLSTATE :SQLSTATE
SELECT * FROM personalize.recommend(NULL, NULL, 5);
\echo SQLSTATE :SQLSTATE
SELECT count(*) AS k_1000_ok FROM personalize.recommend(1, NULL, 1000);

-- declared honestly: STABLE, PARALLEL SAFE, runs as the owner with a fixed search_path
SELECT p.proname, p.provolatile, p.proparallel, p.prosecdef, p.proconfig
FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
  AND p.proname IN ('recommend', 'cooccurrence_count', 'similarity') ORDER BY 1;
-- read-only: it runs in a read-only transaction (as on a hot standby)
SET TRANSACTION READ ONLY;
SELECT count(*) AS rows_read_only FROM personalize.recommend(3, NULL, 5);
ROLLBACK;

-- an application role needs no table privilege to be served, only EXECUTE on recommend();
-- a role without that grant is refused (recommend() reveals purchases)
\set ON_ERROR_ROLLBACK on
BEGIN;
CREATE ROLE regress_reader LOGIN;
CREATE ROLE regress_nogrant LOGIN;
GRANT EXECUTE ON FUNCTION personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) TO regress_reader;
INSERT INTO personalize.products (product_id, name) VALUES (1, 'WHITE METAL LANTERN');
INSERT INTO personalize.customers (customer_id) VALUES (1), (2);
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 1, 'purchase');
SELECT personalize.refresh_popular();
SET LOCAL ROLE regress_reader;
SELECT product_id, reason FROM personalize.recommend(2, NULL, 5);
SELECT count(*) FROM personalize.customer_items;
\echo SQLSTATE :SQLSTATE
SELECT personalize.rebuild();
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_variant('mine', 'popular');
\echo SQLSTATE :SQLSTATE
RESET ROLE;
SET LOCAL ROLE regress_nogrant;
SELECT product_id, reason FROM personalize.recommend(1, NULL, 5);
\echo SQLSTATE :SQLSTATE
ROLLBACK;
