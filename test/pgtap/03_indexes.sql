-- personalize: every index of the six foundation tables, its columns, kind and predicate; the
-- access paths that need one have one. (Later features may add indexes, e.g. BRIN on occurred_at.)
BEGIN;
SELECT plan(27);

SELECT has_index('personalize', 'products', 'products_pkey', ARRAY['product_id']);
SELECT has_index('personalize', 'products', 'products_sku_key', ARRAY['sku']);
SELECT has_index('personalize', 'products', 'products_category_idx', ARRAY['category']);
SELECT has_index('personalize', 'customers', 'customers_pkey', ARRAY['customer_id']);
SELECT has_index('personalize', 'event_types', 'event_types_pkey', ARRAY['event_type']);
SELECT has_index('personalize', 'interactions', 'interactions_pkey', ARRAY['interaction_id']);
SELECT has_index('personalize', 'interactions', 'interactions_customer_product_idx', ARRAY['customer_id', 'product_id']);
SELECT has_index('personalize', 'interactions', 'interactions_product_idx', ARRAY['product_id']);
SELECT has_index('personalize', 'customer_feedback', 'customer_feedback_pkey', ARRAY['feedback_id']);
SELECT has_index('personalize', 'customer_feedback', 'customer_feedback_product_idx', ARRAY['product_id']);
SELECT has_index('personalize', 'customer_feedback', 'customer_feedback_customer_idx', ARRAY['customer_id']);
SELECT has_index('personalize', 'marketing_campaigns', 'marketing_campaigns_pkey', ARRAY['campaign_id']);
SELECT has_index('personalize', 'marketing_campaigns', 'marketing_campaigns_product_idx', ARRAY['product_id']);
SELECT has_index('personalize', 'marketing_campaigns', 'marketing_campaigns_period_idx', ARRAY['ends_at', 'starts_at']);

SELECT index_is_unique('personalize', 'products', 'products_sku_key', 'products_sku_key is unique');
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text FROM pg_index i
      WHERE i.indisunique AND
            i.indrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)$$,
    $$VALUES ('personalize.products_pkey'), ('personalize.products_sku_key'), ('personalize.customers_pkey'),
             ('personalize.event_types_pkey'), ('personalize.interactions_pkey'), ('personalize.interactions_event_key_idx'),
             ('personalize.customer_feedback_pkey'), ('personalize.marketing_campaigns_pkey')$$,
    'on the six tables, only the primary keys, products.sku and interactions.event_key are unique indexes');
SELECT set_eq(
    $$SELECT ic.relname::text, am.amname::text FROM pg_class ic JOIN pg_am am ON am.oid = ic.relam
      WHERE ic.relnamespace = 'personalize'::regnamespace
        AND ic.relname IN ('products_pkey', 'products_sku_key', 'products_category_idx', 'customers_pkey',
            'event_types_pkey', 'interactions_pkey', 'interactions_customer_product_idx', 'interactions_product_idx',
            'customer_feedback_pkey', 'customer_feedback_product_idx', 'customer_feedback_customer_idx',
            'marketing_campaigns_pkey', 'marketing_campaigns_product_idx', 'marketing_campaigns_period_idx')$$,
    $$SELECT n, 'btree' FROM unnest(ARRAY['products_pkey', 'products_sku_key', 'products_category_idx', 'customers_pkey',
            'event_types_pkey', 'interactions_pkey', 'interactions_customer_product_idx', 'interactions_product_idx',
            'customer_feedback_pkey', 'customer_feedback_product_idx', 'customer_feedback_customer_idx',
            'marketing_campaigns_pkey', 'marketing_campaigns_product_idx', 'marketing_campaigns_period_idx']) AS n$$,
    'the fourteen documented indexes exist and are btrees');
-- the category index serves recommend() and browsing, which only ever look at active products
SELECT is(
    (SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = 'personalize.products_category_idx'::regclass),
    'active', 'products_category_idx is partial: WHERE active');

-- access paths: a customer's history, a product's events/feedback/campaigns, current campaigns
SELECT is_indexed('personalize', 'interactions', ARRAY['customer_id', 'product_id'], 'interactions by (customer, product)');
SELECT is_indexed('personalize', 'interactions', ARRAY['product_id'], 'interactions by product');
SELECT is_indexed('personalize', 'customer_feedback', ARRAY['product_id'], 'customer_feedback by product');
SELECT is_indexed('personalize', 'customer_feedback', ARRAY['customer_id'], 'customer_feedback by customer');
SELECT is_indexed('personalize', 'marketing_campaigns', ARRAY['product_id'], 'marketing_campaigns by product');
SELECT is_indexed('personalize', 'products', ARRAY['sku'], 'products by sku (the loaders look products up by sku)');

-- the planner uses them: a lookup by customer and product and one by product never scan the whole log
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE l text; r text := '';
BEGIN
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP r := r || l || E'\n'; END LOOP;
    RETURN r;
END $$;
SET LOCAL enable_seqscan = off;
SELECT matches(pg_temp.plan_of('SELECT * FROM personalize.interactions WHERE customer_id = 1 AND product_id = 2'),
    'interactions_customer_product_idx', 'a (customer, product) lookup uses interactions_customer_product_idx');
SELECT matches(pg_temp.plan_of('SELECT * FROM personalize.interactions WHERE product_id = 2'),
    'interactions_product_idx', 'a product lookup uses interactions_product_idx');
SELECT matches(pg_temp.plan_of($q$SELECT * FROM personalize.products WHERE active AND category = 'toys'$q$),
    'products_category_idx', 'active products of a category use products_category_idx');
SELECT * FROM finish();
ROLLBACK;
