-- The model, counted by brute force straight from its definition, against what the
-- triggers stored: pg_temp.model_check() lists every difference (none when exact).
-- Archived events (interactions_archive) count like the others (issue 11).
-- Used by sql/engine.sql and test/scripts/property_concurrency.sh.
-- Brute force, from the definition: a customer's in-model products are their first
-- `cap` distinct products by smallest interaction_id (then product_id);
-- cooccurrence(a, b) = customers with both in-model; item count = customers with it;
-- customer_items holds each (customer, product)'s events, purchases and summed weight.
CREATE FUNCTION pg_temp.model_check() RETURNS TABLE (what text, a bigint, b bigint, stored bigint, truth bigint)
LANGUAGE sql AS $$
    WITH cap AS (SELECT max_items_per_customer AS cap FROM personalize.model_settings),
    firsts AS (
        SELECT customer_id, product_id, min(interaction_id) AS first_id
        FROM (SELECT interaction_id, customer_id, product_id, event_type, occurred_at FROM personalize.interactions UNION ALL SELECT interaction_id, customer_id, product_id, event_type, occurred_at FROM personalize.interactions_archive) ev GROUP BY 1, 2),
    inmodel AS (
        SELECT f.customer_id, f.product_id FROM (
            SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY first_id, product_id) AS r
            FROM firsts) f, cap WHERE f.r <= cap.cap),
    truth_pairs AS (
        SELECT x.product_id AS a, y.product_id AS b, count(*) AS n
        FROM inmodel x JOIN inmodel y ON x.customer_id = y.customer_id AND x.product_id < y.product_id
        GROUP BY 1, 2),
    truth_items AS (SELECT product_id AS a, count(*) AS n FROM inmodel GROUP BY 1),
    pairs AS (
        SELECT 'pair'::text AS what, coalesce(t.a, s.product_a) AS a, coalesce(t.b, s.product_b) AS b,
               s.customers AS stored, t.n AS truth
        FROM truth_pairs t FULL JOIN personalize.pair_counts s ON s.product_a = t.a AND s.product_b = t.b
        WHERE s.customers IS DISTINCT FROM t.n),
    items AS (
        SELECT 'item', coalesce(t.a, s.product_id), NULL::bigint, s.customers, t.n
        FROM truth_items t FULL JOIN personalize.item_counts s ON s.product_id = t.a
        WHERE s.customers IS DISTINCT FROM t.n),
    total AS (
        SELECT 'customers', NULL::bigint, NULL::bigint,
               (SELECT sum(customers) FROM personalize.customer_totals)::bigint,
               (SELECT count(DISTINCT customer_id) FROM inmodel)
        WHERE (SELECT sum(customers) FROM personalize.customer_totals)
              IS DISTINCT FROM (SELECT count(DISTINCT customer_id) FROM inmodel)),
    hist_truth AS (
        SELECT i.customer_id, i.product_id, count(*) AS events,
               count(*) FILTER (WHERE i.event_type = 'purchase') AS purchases, sum(e.weight) AS weight
        FROM (SELECT interaction_id, customer_id, product_id, event_type, occurred_at FROM personalize.interactions UNION ALL SELECT interaction_id, customer_id, product_id, event_type, occurred_at FROM personalize.interactions_archive) i JOIN personalize.event_types e USING (event_type) GROUP BY 1, 2),
    hist_both AS (
        SELECT coalesce(t.customer_id, s.customer_id) AS c, coalesce(t.product_id, s.product_id) AS p,
               s.events::bigint AS s_events, t.events AS t_events, s.purchases::bigint AS s_purchases,
               t.purchases AS t_purchases, s.weight AS s_weight, t.weight AS t_weight
        FROM hist_truth t FULL JOIN personalize.customer_items s USING (customer_id, product_id)),
    hist AS (
        SELECT 'history', c, p, s_events, t_events FROM hist_both WHERE s_events IS DISTINCT FROM t_events
        UNION ALL
        SELECT 'history purchases', c, p, s_purchases, t_purchases FROM hist_both
        WHERE s_events IS NOT NULL AND t_events IS NOT NULL AND s_purchases IS DISTINCT FROM t_purchases
        UNION ALL
        -- the event weights add up exactly (1, 2, 4, 8); rounded for display only
        SELECT 'history weight', c, p, round(s_weight)::bigint, round(t_weight)::bigint FROM hist_both
        WHERE s_events IS NOT NULL AND t_events IS NOT NULL AND s_weight IS DISTINCT FROM t_weight)
    SELECT * FROM pairs UNION ALL SELECT * FROM items UNION ALL SELECT * FROM total UNION ALL SELECT * FROM hist
    ORDER BY 1, 2, 3
$$;
