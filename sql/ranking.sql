-- The ranking of the serving functions (issue 14, part 3): a bounded heap instead of sorting
-- every candidate, products that only popularity brings in taken from the list in order,
-- and the popularity list kept per backend while its row is unchanged. On a shop made of
-- ties, the first k of k = 20 (and of every other k) are the answer for k, tie order
-- included; a refresh of the list is seen at once, in the transaction that makes it, and a
-- rolled-back one is forgotten.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
SET LOCAL personalize.as_of = '2024-06-30 12:00+00';
SET LOCAL personalize.neighbors_min_count = 1;

-- 40 products: 1-3 go together, 4-40 are bought once each (all tied in popularity),
-- 13 is inactive, 20 is on a campaign
INSERT INTO personalize.products (product_id, name, active)
SELECT g, 'PRODUCT ' || g, g <> 13 FROM generate_series(1, 40) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 60) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT g, g, 'purchase', '2024-05-01' FROM generate_series(4, 40) g;
-- customer 1 bought 1 with 2, customer 2 bought 1 with 3: 2 and 3 tie as neighbours of 1;
-- customer 3 bought 1 and three of the tied products (their neighbours tie too)
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (1, 1, 'purchase', '2024-05-02'), (1, 2, 'purchase', '2024-05-02'),
    (2, 1, 'purchase', '2024-05-03'), (2, 3, 'purchase', '2024-05-03'),
    (3, 1, 'view', '2024-05-04'), (3, 5, 'purchase', '2024-05-04'), (3, 6, 'purchase', '2024-05-04'),
    (3, 30, 'purchase', '2024-05-04');
INSERT INTO personalize.marketing_campaigns (name, product_id, boost, starts_at, ends_at)
VALUES ('spring', 20, 1.5, '2024-01-01', '2025-01-01');
SELECT personalize.refresh_neighbors() > 0 AS lists_refreshed;
SELECT personalize.refresh_popular(as_of => '2024-06-30 12:00+00') AS popular_products;
SELECT count(DISTINCT share) AS distinct_shares, count(*) AS products FROM personalize.popular;

-- every k from 1 to 20 gives the first k rows of k = 20, for customers with and without
-- history, under every variant, with a filter that makes the walk skip products
CREATE TEMP TABLE full_list AS
SELECT c.customer_id, v.name AS variant, r.ord, r.product_id, r.score, r.reason
FROM generate_series(1, 5) c(customer_id), personalize.variants v,
     LATERAL personalize.recommend(c.customer_id, v.name, 20) WITH ORDINALITY AS r(product_id, score, reason, ord);
SELECT count(*) > 0 AS has_rows, count(DISTINCT (customer_id, variant, score)) < count(*) AS has_ties FROM full_list;
SELECT sum(x.compared) AS rows_compared, sum(x.differing) AS rows_differing_from_k_20
FROM generate_series(1, 5) c(customer_id) CROSS JOIN personalize.variants v CROSS JOIN generate_series(1, 20) k
CROSS JOIN LATERAL (
    SELECT count(*) AS compared,
           count(*) FILTER (WHERE r.product_id IS DISTINCT FROM f.product_id OR r.score IS DISTINCT FROM f.score
                                  OR r.reason IS DISTINCT FROM f.reason) AS differing
    FROM (SELECT * FROM personalize.recommend(c.customer_id, v.name, k)
          WITH ORDINALITY AS r(product_id, score, reason, ord)) r
    FULL JOIN (SELECT * FROM full_list f WHERE f.customer_id = c.customer_id AND f.variant = v.name AND f.ord <= k) f
    USING (ord)) x;
-- ties are broken by product id: the tied popular products of the popular variant, in order
SELECT array_agg(product_id ORDER BY ord) AS popular_for_customer_4
FROM full_list WHERE customer_id = 4 AND variant = 'popular' AND ord <= 8;
-- the same with exclusions: the walk passes over purchases, the excluded and the inactive
SELECT count(*) AS filtered_rows_differing
FROM generate_series(1, 18) k,
     LATERAL (SELECT r.ord, r.product_id FROM personalize.recommend(3, 'popular', k, exclude_products => '{4,7,8}')
              WITH ORDINALITY AS r(product_id, score, reason, ord)) r
     JOIN (SELECT r.ord, r.product_id FROM personalize.recommend(3, 'popular', 18, exclude_products => '{4,7,8}')
           WITH ORDINALITY AS r(product_id, score, reason, ord)) f USING (ord)
WHERE r.product_id <> f.product_id;
SELECT array_agg(product_id ORDER BY ord) AS popular_for_customer_3_filtered
FROM personalize.recommend(3, 'popular', 8, exclude_products => '{4,7,8}') WITH ORDINALITY AS r(product_id, score, reason, ord);
-- similar_items() and carts rank the same way
SELECT count(*) AS similar_rows_differing
FROM generate_series(1, 10) k,
     LATERAL (SELECT r.ord, r.product_id FROM personalize.similar_items(1, k, 'hybrid')
              WITH ORDINALITY AS r(product_id, score, reason, ord)) r
     JOIN (SELECT r.ord, r.product_id FROM personalize.similar_items(1, 10, 'hybrid')
           WITH ORDINALITY AS r(product_id, score, reason, ord)) f USING (ord)
WHERE r.product_id <> f.product_id;
-- explain() places a tied popularity-only product at the rank recommend() gives it
SELECT detail FROM personalize.explain(4, 9, 'popular') WHERE component = 'rule';
SELECT ord AS rank_in_recommend FROM full_list WHERE customer_id = 4 AND variant = 'popular' AND product_id = 9;

-- the popularity list kept by this backend follows its row: a refresh in an open
-- transaction is seen by that transaction, a rolled-back refresh is forgotten
SAVEPOINT before_refreshes;
SELECT array_agg(product_id ORDER BY ord) AS before_refresh
FROM personalize.recommend(50, 'popular', 3) WITH ORDINALITY AS r(product_id, score, reason, ord);
SAVEPOINT s;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT g, 40, 'purchase', '2024-06-29' FROM generate_series(41, 45) g;
SELECT personalize.refresh_popular(as_of => '2024-06-30 12:00+00') AS popular_products;
SELECT array_agg(product_id ORDER BY ord) AS after_refresh_in_savepoint
FROM personalize.recommend(50, 'popular', 3) WITH ORDINALITY AS r(product_id, score, reason, ord);
ROLLBACK TO SAVEPOINT s;
SELECT array_agg(product_id ORDER BY ord) AS after_rollback_to_savepoint
FROM personalize.recommend(50, 'popular', 3) WITH ORDINALITY AS r(product_id, score, reason, ord);
-- a second refresh, then the list is deleted: the live bestsellers; all rolled back
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT g, 39, 'purchase', '2024-06-29' FROM generate_series(41, 44) g;
SELECT personalize.refresh_popular(as_of => '2024-06-30 12:00+00') AS popular_products;
SELECT array_agg(product_id ORDER BY ord) AS after_second_refresh
FROM personalize.recommend(50, 'popular', 3) WITH ORDINALITY AS r(product_id, score, reason, ord);
DELETE FROM personalize.popular_scores;
SELECT array_agg(product_id ORDER BY ord) AS live, min(reason) AS reason
FROM personalize.recommend(50, 'popular', 3) WITH ORDINALITY AS r(product_id, score, reason, ord);
ROLLBACK TO SAVEPOINT before_refreshes;
SELECT array_agg(product_id ORDER BY ord) AS after_rollback
FROM personalize.recommend(50, 'popular', 3) WITH ORDINALITY AS r(product_id, score, reason, ord);
ROLLBACK;
