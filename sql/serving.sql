-- The serving surface of issue 12: similar_items(), recommend_for_items(), the filters,
-- explain() summing to recommend()'s scores, recommend_served(), the default variant.
-- A small shop whose answers can be worked out by hand (the recommend test's, with prices
-- and attributes).
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
SET LOCAL personalize.as_of = '2024-06-30 12:00+00';
SET LOCAL personalize.neighbors_min_count = 1;

INSERT INTO personalize.products (product_id, name, category, active, price, attributes) VALUES
    (1, 'WHITE METAL LANTERN', 'lighting', true, 12.50, '{"in_stock": true}'),
    (2, 'GLASS STAR FROSTED T-LIGHT HOLDER', 'lighting', true, 3.95, '{"in_stock": true}'),
    (3, 'ZINC HEART LATTICE T-LIGHT HOLDER', 'lighting', true, 4.25, '{"in_stock": false}'),
    (4, 'RED WOOLLY HOTTIE', 'home', true, 7.00, '{"in_stock": true, "colour": "red"}'),
    (5, 'KNITTED UNION FLAG HOT WATER BOTTLE', 'home', true, 9.00, NULL),
    (6, 'CREAM CUPID HEARTS COAT HANGER', 'home', true, NULL, '{"in_stock": true}'),
    (7, 'SET 7 BABUSHKA NESTING BOXES', 'toys', true, 8.50, '{"in_stock": true}'),
    (8, 'DOLLY GIRL LUNCH BOX', NULL, true, 2.00, '{"in_stock": true}'),
    (9, 'DISCONTINUED PAPER LANTERN', 'lighting', false, 1.00, '{"in_stock": false}'),
    (10, 'JUMBO BAG RED RETROSPOT', 'bags', true, 1.95, '{"in_stock": true}');
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 9) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (1, 1, 'purchase', '2024-06-01'), (1, 2, 'purchase', '2024-06-01'), (1, 3, 'purchase', '2024-06-01'), (1, 9, 'purchase', '2024-06-01'),
    (2, 1, 'purchase', '2024-06-02'), (2, 2, 'purchase', '2024-06-02'), (2, 9, 'purchase', '2024-06-02'),
    (3, 1, 'purchase', '2024-06-03'), (3, 3, 'purchase', '2024-06-03'),
    (4, 4, 'purchase', '2024-06-04'), (4, 5, 'purchase', '2024-06-04'), (4, 6, 'view', '2024-06-04'),
    (5, 4, 'purchase', '2024-06-05'), (5, 5, 'purchase', '2024-06-05'),
    (6, 10, 'purchase', '2024-06-28'), (7, 10, 'purchase', '2024-06-28'), (2, 10, 'purchase', '2024-06-29'),
    (6, 7, 'view', '2024-06-28'), (7, 8, 'view', '2024-06-28'),
    (8, 1, 'view', '2024-06-20'), (8, 2, 'cart', '2024-06-21'), (8, 4, 'click', '2024-06-22');
SELECT personalize.refresh_neighbors() > 0 AS lists_refreshed;
SELECT personalize.refresh_popular(as_of => '2024-06-30 12:00+00') AS popular_products;

-- similar_items(): the lantern's neighbours (2, 3 co-occur with it; 9 does too but is
-- inactive), never the lantern itself, then the popular fill
SELECT * FROM personalize.similar_items(1, 5);
-- under the cooccurrence variant (no popularity blend): the neighbours rank above the fill
SELECT * FROM personalize.similar_items(1, 3, 'cooccurrence');
-- a product only viewed once: its one neighbour, then the popular fill; an inactive product
-- is a valid input (its neighbours are still good)
SELECT * FROM personalize.similar_items(8, 3, 'cooccurrence');
SELECT product_id, reason FROM personalize.similar_items(9, 3, 'cooccurrence');
-- never the input, never an inactive product, for every product of the shop
SELECT count(*) AS bad_rows FROM personalize.products p, personalize.similar_items(p.product_id, 20) s
JOIN personalize.products q ON q.product_id = s.product_id
WHERE s.product_id = p.product_id OR NOT q.active;

-- recommend_for_items(): a two-product cart excludes both; their neighbours add up
SELECT * FROM personalize.recommend_for_items('{1,4}', 4, 'cooccurrence');
SELECT count(*) AS cart_products_returned
FROM personalize.recommend_for_items('{1,4}', 20) r WHERE r.product_id IN (1, 4);
-- duplicates in the cart count once
SELECT (SELECT array_agg(product_id) FROM personalize.recommend_for_items('{1,1,4}', 4, 'cooccurrence'))
     = (SELECT array_agg(product_id) FROM personalize.recommend_for_items('{4,1}', 4, 'cooccurrence')) AS duplicates_ignored;
-- an empty cart: the popular fill
SELECT * FROM personalize.recommend_for_items('{}', 3);
-- with customer_id: the customer's purchases are left out too (customer 2 bought 2 and 10)
SELECT * FROM personalize.recommend_for_items('{3}', 4, 'cooccurrence', customer_id => 2);

-- filters: every returned product satisfies the filter, and k rows come back when k pass
SELECT * FROM personalize.recommend(8, 'hybrid', 10);
SELECT product_id FROM personalize.recommend(8, k => 3, exclude_products => '{3,10}');
SELECT product_id FROM personalize.recommend(8, k => 10, categories => '{home,toys}');
SELECT product_id FROM personalize.recommend(8, k => 10, exclude_categories => '{lighting}');   -- 8 has no category: kept
SELECT product_id FROM personalize.recommend(8, k => 10, min_price => 4, max_price => 9);      -- 6 has no price: left out
SELECT product_id FROM personalize.recommend(8, k => 10, attributes => '{"in_stock": true}'); -- 5 has none: left out
SELECT product_id FROM personalize.recommend(8, k => 10, exclude_interacted => '{view,click}');  -- 1 viewed, 4 clicked
SELECT product_id FROM personalize.recommend(8, k => 10, exclude_interacted => '{cart}');        -- 2 in the cart
-- the filters together: only 8 and 10 are in stock, priced at most 5 and not lighting: both come,
-- nothing else
SELECT product_id FROM personalize.recommend(8, k => 3, exclude_categories => '{lighting}', max_price => 5, attributes => '{"in_stock": true}');
SELECT product_id FROM personalize.similar_items(1, 10, categories => '{lighting}');
SELECT product_id FROM personalize.recommend_for_items('{1}', 10, customer_id => 8, exclude_interacted => '{cart}', max_price => 10);
-- no filter and all-NULL filters answer the same
SELECT (SELECT array_agg(product_id || ':' || score || ':' || reason) FROM personalize.recommend(8))
     = (SELECT array_agg(product_id || ':' || score || ':' || reason) FROM personalize.recommend(8, NULL, 10, NULL, NULL, NULL, NULL, NULL, NULL, NULL)) AS same;

-- the category cap and campaigns apply in items mode too
SELECT personalize.create_variant('capped', 'cooccurrence', '{"category_cap": 1}');
SELECT product_id, reason FROM personalize.similar_items(1, 3, 'capped');
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('summer', 7, '2024-06-01', '2024-07-31', 3.0);
SELECT * FROM personalize.similar_items(4, 3, 'cooccurrence');

-- explain(): one row per contribution, summing to the score recommend() gives, for every
-- returned product of every customer under every variant (and with a filter)
SELECT personalize.create_variant('blend', 'hybrid', '{"popularity_weight": 0.5, "llm_history": 5}');
INSERT INTO personalize.llm_runs (kind, status) VALUES ('refresh', 'completed');
INSERT INTO personalize.llm_recommendations (customer_id, rank, product_id, reason, run_id)
SELECT 8, r, p, 'a lantern lover', (SELECT max(run_id) FROM personalize.llm_runs)
FROM (VALUES (1, 3), (2, 7), (3, 5)) v(r, p);
SELECT count(*) AS explained,
       count(*) FILTER (WHERE abs(e.total - r.score) > 1e-12 * greatest(1, abs(r.score))) AS mismatched,
       count(*) FILTER (WHERE e.ranked <> r.rank) AS rank_mismatched
FROM personalize.customers c
CROSS JOIN (VALUES ('popular'), ('cooccurrence'), ('hybrid'), ('capped'), ('blend')) v(variant)
CROSS JOIN LATERAL (SELECT x.*, row_number() OVER () AS rank FROM personalize.recommend(c.customer_id, v.variant, 10) x) r
CROSS JOIN LATERAL (SELECT sum(value) AS total,
                           (regexp_match(string_agg(detail, '') FILTER (WHERE component = 'rule'), 'rank (\d+)'))[1]::bigint AS ranked
                    FROM personalize.explain(c.customer_id, r.product_id, v.variant)) e;
SELECT count(*) AS explained_filtered,
       count(*) FILTER (WHERE abs(e.total - r.score) > 1e-12 * greatest(1, abs(r.score))) AS mismatched
FROM personalize.customers c
CROSS JOIN LATERAL personalize.recommend(c.customer_id, 'blend', 5, max_price => 8) r
CROSS JOIN LATERAL (SELECT sum(value) AS total
                    FROM personalize.explain(c.customer_id, r.product_id, 'blend', max_price => 8)) e;
-- what it shows: customer 8 and the t-light holder (3) under blend: history, the LLM answer,
-- popularity; the rule row gives its rank
SELECT component, source_product_id, value FROM personalize.explain(8, 3, 'blend');
SELECT product_id, score FROM personalize.recommend(8, 'blend', 1);
-- the campaign boost is a row of its own
SELECT component, round(value::numeric, 6) AS value FROM personalize.explain(8, 7, 'cooccurrence');
-- products recommend() leaves out, and why
SELECT detail FROM personalize.explain(1, 2) WHERE component = 'rule';              -- bought
SELECT detail FROM personalize.explain(8, 9) WHERE component = 'rule';              -- inactive
SELECT detail FROM personalize.explain(8, 3, exclude_products => '{3}') WHERE component = 'rule';
SELECT detail FROM personalize.explain(8, 6, min_price => 1) WHERE component = 'rule';
SELECT detail FROM personalize.explain(8, 42, 'cooccurrence') WHERE component = 'rule';
SELECT product_id FROM personalize.recommend(8, 'capped');
SELECT detail FROM personalize.explain(8, 2, 'capped') WHERE component = 'rule';  -- 1 took lighting's place

-- the default variant: recommend(c, NULL) outside experiments, and recommend_served() says which
SELECT DISTINCT variant FROM personalize.recommend_served(8);
SELECT personalize.set_default_variant('cooccurrence');
SELECT DISTINCT variant FROM personalize.recommend_served(8);
SELECT (SELECT array_agg(product_id || ':' || score) FROM personalize.recommend(8))
     = (SELECT array_agg(product_id || ':' || score) FROM personalize.recommend(8, 'cooccurrence')) AS default_served;
SELECT DISTINCT variant FROM personalize.recommend_served(8, 'popular');
SELECT personalize.drop_variant('cooccurrence');
SELECT personalize.set_default_variant('capped');
SELECT personalize.drop_variant('capped');
SELECT personalize.set_default_variant('nope');
SELECT personalize.set_default_variant(NULL);
SELECT personalize.drop_variant('capped');
SELECT * FROM personalize.serving_settings;

-- errors: the same as recommend()'s for k, variant and NULLs; bad filters refused
SELECT * FROM personalize.similar_items(NULL);
SELECT * FROM personalize.similar_items(1, 0);
SELECT * FROM personalize.similar_items(1, NULL);
SELECT * FROM personalize.similar_items(1, 5, 'nope');
SELECT * FROM personalize.similar_items(42);
SELECT * FROM personalize.recommend_for_items(NULL);
SELECT * FROM personalize.recommend_for_items('{1,NULL}');
SELECT * FROM personalize.recommend_for_items('{1,42,43}');
SELECT * FROM personalize.recommend_for_items(ARRAY(SELECT generate_series(1, 1001)::bigint));
SELECT * FROM personalize.recommend_for_items('{1}', 1001);
SELECT * FROM personalize.recommend_for_items('{1}', exclude_interacted => '{view}');
SELECT * FROM personalize.recommend(8, exclude_products => '{1,NULL}');
SELECT * FROM personalize.recommend(8, exclude_products => ARRAY(SELECT generate_series(1, 10001)::bigint));
SELECT * FROM personalize.recommend(8, categories => '{}');
SELECT * FROM personalize.recommend(8, categories => '{home,NULL}');
SELECT * FROM personalize.recommend(8, min_price => -1);
SELECT * FROM personalize.recommend(8, max_price => 'NaN');
SELECT * FROM personalize.recommend(8, min_price => 9, max_price => 4);
SELECT * FROM personalize.recommend(8, attributes => '"in_stock"');
SELECT * FROM personalize.recommend(8, attributes => '[{"in_stock": true}]');
SELECT * FROM personalize.recommend(8, exclude_interacted => '{view,wishlist}');
SELECT * FROM personalize.explain(NULL, 1);
SELECT * FROM personalize.explain(8, 1, 'nope');
SELECT * FROM personalize.recommend_served(NULL);
-- declared properties: read-only, SECURITY DEFINER with a fixed search_path, not for PUBLIC
SELECT p.proname, p.provolatile, p.prosecdef, p.proconfig, has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
  AND p.proname IN ('recommend', 'recommend_served', 'similar_items', 'recommend_for_items', 'explain')
ORDER BY 1;
ROLLBACK;
