-- personalize: bad input is refused with the right SQLSTATE and the constraint's own message,
-- boundary values that are fine are accepted, and nothing of a refused statement is written.
--   23503 foreign key, 23514 check, 23502 not null, 23505 unique, 22003 out of range
BEGIN;
SELECT plan(79);

INSERT INTO personalize.products (product_id, sku, name, price) VALUES (1, 'A1', 'Mug', 5), (2, 'A2', 'Plate', 7);
INSERT INTO personalize.customers (customer_id, country) VALUES (10, 'France'), (11, NULL);
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'purchase');

-- products --------------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name) VALUES (1, 'Again')$$,
    '23505', 'duplicate key value violates unique constraint "products_pkey"', 'products: duplicate product_id');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, sku, name) VALUES (3, 'A1', 'Copy')$$,
    '23505', 'duplicate key value violates unique constraint "products_sku_key"', 'products: duplicate sku');
SELECT throws_ok($$UPDATE personalize.products SET sku = 'A1' WHERE product_id = 2$$,
    '23505', 'duplicate key value violates unique constraint "products_sku_key"', 'products: sku changed to a taken one');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name) VALUES (NULL, 'No id')$$,
    '23502', 'null value in column "product_id" of relation "products" violates not-null constraint', 'products: NULL product_id');
SELECT throws_ok($$INSERT INTO personalize.products (name) VALUES ('No id')$$,
    '23502', 'null value in column "product_id" of relation "products" violates not-null constraint', 'products: missing product_id');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name) VALUES (3, NULL)$$,
    '23502', 'null value in column "name" of relation "products" violates not-null constraint', 'products: NULL name');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name) VALUES (3, '')$$,
    '23514', 'new row for relation "products" violates check constraint "products_name_check"', 'products: empty name');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name, price) VALUES (3, 'Bowl', -0.01)$$,
    '23514', 'new row for relation "products" violates check constraint "products_price_check"', 'products: negative price');
SELECT throws_ok($$UPDATE personalize.products SET price = -1 WHERE product_id = 1$$,
    '23514', 'new row for relation "products" violates check constraint "products_price_check"', 'products: price updated to negative');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name, price) VALUES (3, 'Bowl', 'NaN')$$,
    '23514', 'new row for relation "products" violates check constraint "products_price_check"', 'products: price NaN');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name, price) VALUES (3, 'Bowl', 1e10)$$,
    '22003', NULL, 'products: price beyond numeric(12,2)');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name, active) VALUES (3, 'Bowl', NULL)$$,
    '23502', 'null value in column "active" of relation "products" violates not-null constraint', 'products: NULL active');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name, attributes) VALUES (3, 'Bowl', '[1, 2]')$$,
    '23514', 'new row for relation "products" violates check constraint "products_attributes_check"', 'products: attributes not an object');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name, attributes) VALUES (3, 'Bowl', '"red"')$$,
    '23514', 'new row for relation "products" violates check constraint "products_attributes_check"', 'products: attributes a scalar');
SELECT lives_ok($$INSERT INTO personalize.products (product_id, name, price, attributes)
                  VALUES (3, 'Free sample', 0, '{"color": "red"}'), (4, 'Gift', NULL, NULL), (5, 'Vase', 9999999999.99, '{}')$$,
    'products: price 0, NULL and 9999999999.99, NULL sku twice and object attributes are fine');

-- customers -------------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO personalize.customers (customer_id) VALUES (10)$$,
    '23505', 'duplicate key value violates unique constraint "customers_pkey"', 'customers: duplicate customer_id');
SELECT throws_ok($$INSERT INTO personalize.customers (customer_id, country) VALUES (NULL, 'Spain')$$,
    '23502', 'null value in column "customer_id" of relation "customers" violates not-null constraint', 'customers: NULL customer_id');
SELECT throws_ok($$INSERT INTO personalize.customers (customer_id, attributes) VALUES (12, '[]')$$,
    '23514', 'new row for relation "customers" violates check constraint "customers_attributes_check"', 'customers: attributes not an object');
SELECT throws_ok($$INSERT INTO personalize.customers (customer_id, created_at) VALUES (12, NULL)$$,
    '23502', 'null value in column "created_at" of relation "customers" violates not-null constraint', 'customers: NULL created_at');

-- event_types -----------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('view', 1)$$,
    '23505', 'duplicate key value violates unique constraint "event_types_pkey"', 'event_types: duplicate event type');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 0)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_weight_check"', 'event_types: weight 0');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', -2)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_weight_check"', 'event_types: negative weight');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 1000.5)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_weight_check"', 'event_types: weight above 1000');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 'NaN')$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_weight_check"', 'event_types: weight NaN');
SELECT throws_ok($$UPDATE personalize.event_types SET weight = 0 WHERE event_type = 'view'$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_weight_check"', 'event_types: weight updated to 0');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', NULL)$$,
    '23502', 'null value in column "weight" of relation "event_types" violates not-null constraint', 'event_types: NULL weight');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES (NULL, 1)$$,
    '23502', 'null value in column "event_type" of relation "event_types" violates not-null constraint', 'event_types: NULL name');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('Add-To-List', 1)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_name_check"', 'event_types: name with capitals and dashes');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('', 1)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_name_check"', 'event_types: empty name');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('1st_view', 1)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_name_check"', 'event_types: name starting with a digit');
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES (repeat('a', 33), 1)$$,
    '23514', 'new row for relation "event_types" violates check constraint "event_types_name_check"', 'event_types: name of 33 characters');
SELECT lives_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 1000), ('x', 0.001), (repeat('b', 32), 1)$$,
    'event_types: weight 1000 and 0.001, names of 1 and 32 characters are fine');

-- interactions ----------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (99, 1, 'view')$$,
    '23503', 'insert or update on table "interactions" violates foreign key constraint "interactions_customer_id_fkey"', 'interactions: unknown customer');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 99, 'view')$$,
    '23503', 'insert or update on table "interactions" violates foreign key constraint "interactions_product_id_fkey"', 'interactions: unknown product');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'like')$$,
    '23503', 'insert or update on table "interactions" violates foreign key constraint "interactions_event_type_fkey"', 'interactions: unknown event type');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'VIEW')$$,
    '23503', 'insert or update on table "interactions" violates foreign key constraint "interactions_event_type_fkey"', 'interactions: event types are case-sensitive');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (NULL, 1, 'view')$$,
    '23502', 'null value in column "customer_id" of relation "interactions" violates not-null constraint', 'interactions: NULL customer');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, NULL, 'view')$$,
    '23502', 'null value in column "product_id" of relation "interactions" violates not-null constraint', 'interactions: NULL product');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, NULL)$$,
    '23502', 'null value in column "event_type" of relation "interactions" violates not-null constraint', 'interactions: NULL event type');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES (10, 1, 'view', NULL)$$,
    '23502', 'null value in column "occurred_at" of relation "interactions" violates not-null constraint', 'interactions: NULL occurred_at');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES (10, 1, 'view', 'infinity')$$,
    '23514', 'new row for relation "interactions" violates check constraint "interactions_occurred_at_range"', 'interactions: occurred_at infinity');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES (10, 1, 'view', '0001-01-01 00:00+00')$$,
    '23514', 'new row for relation "interactions" violates check constraint "interactions_occurred_at_range"', 'interactions: occurred_at in the year 1');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES (10, 1, 'view', '1989-12-31 23:59:59.999999+00')$$,
    '23514', 'new row for relation "interactions" violates check constraint "interactions_occurred_at_range"', 'interactions: occurred_at before 1990');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'cart', 0)$$,
    '23514', 'new row for relation "interactions" violates check constraint "interactions_quantity_check"', 'interactions: quantity 0');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'cart', -3)$$,
    '23514', 'new row for relation "interactions" violates check constraint "interactions_quantity_check"', 'interactions: negative quantity');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'cart', NULL)$$,
    '23502', 'null value in column "quantity" of relation "interactions" violates not-null constraint', 'interactions: NULL quantity');
SELECT throws_ok($$INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type)
                   OVERRIDING SYSTEM VALUE SELECT interaction_id, 10, 1, 'view' FROM personalize.interactions$$,
    '23505', 'duplicate key value violates unique constraint "interactions_pkey"', 'interactions: duplicate interaction_id');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type)
                   VALUES (10, 1, 'view'), (10, 2, 'click'), (10, 99, 'cart')$$,
    '23503', NULL, 'interactions: one bad row fails the whole statement');
SELECT lives_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity)
                  VALUES (11, 3, 'share', 1), (11, 4, 'x', 2147483647)$$,
    'interactions: user-added event types, products without sku or price and a huge quantity are fine');

-- customer_feedback -----------------------------------------------------------------
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 0)$$,
    '23514', 'new row for relation "customer_feedback" violates check constraint "customer_feedback_rating_check"', 'customer_feedback: rating 0');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 6)$$,
    '23514', 'new row for relation "customer_feedback" violates check constraint "customer_feedback_rating_check"', 'customer_feedback: rating 6');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, -1)$$,
    '23514', 'new row for relation "customer_feedback" violates check constraint "customer_feedback_rating_check"', 'customer_feedback: negative rating');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 40000)$$,
    '22003', NULL, 'customer_feedback: rating beyond smallint');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, NULL)$$,
    '23502', 'null value in column "rating" of relation "customer_feedback" violates not-null constraint', 'customer_feedback: NULL rating');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (NULL, 1, 3)$$,
    '23502', 'null value in column "customer_id" of relation "customer_feedback" violates not-null constraint', 'customer_feedback: NULL customer');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, NULL, 3)$$,
    '23502', 'null value in column "product_id" of relation "customer_feedback" violates not-null constraint', 'customer_feedback: NULL product');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (99, 1, 3)$$,
    '23503', 'insert or update on table "customer_feedback" violates foreign key constraint "customer_feedback_customer_id_fkey"', 'customer_feedback: unknown customer');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 99, 3)$$,
    '23503', 'insert or update on table "customer_feedback" violates foreign key constraint "customer_feedback_product_id_fkey"', 'customer_feedback: unknown product');
SELECT lives_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment) VALUES (10, 1, 1, NULL), (10, 2, 5, 'love it')$$,
    'customer_feedback: ratings 1 and 5 are fine');

-- marketing_campaigns ---------------------------------------------------------------
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('bad', 1, '2030-04-01', '2030-03-01')$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_period_check"', 'marketing_campaigns: ends before it starts');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('bad', 1, '2030-04-01', '2030-04-01')$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_period_check"', 'marketing_campaigns: ends when it starts');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                   VALUES ('bad', 1, '2030-03-01', '2030-04-01', 0)$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_boost_check"', 'marketing_campaigns: boost 0');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                   VALUES ('bad', 1, '2030-03-01', '2030-04-01', -1.5)$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_boost_check"', 'marketing_campaigns: negative boost');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                   VALUES ('bad', 1, '2030-03-01', '2030-04-01', 'Infinity')$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_boost_check"', 'marketing_campaigns: infinite boost');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                   VALUES ('bad', 1, '2030-03-01', '2030-04-01', 'NaN')$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_boost_check"', 'marketing_campaigns: boost NaN');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                   VALUES ('bad', 1, '2030-03-01', '2030-04-01', NULL)$$,
    '23502', 'null value in column "boost" of relation "marketing_campaigns" violates not-null constraint', 'marketing_campaigns: NULL boost');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('bad', 99, '2030-03-01', '2030-04-01')$$,
    '23503', 'insert or update on table "marketing_campaigns" violates foreign key constraint "marketing_campaigns_product_id_fkey"', 'marketing_campaigns: unknown product');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('bad', NULL, '2030-03-01', '2030-04-01')$$,
    '23502', 'null value in column "product_id" of relation "marketing_campaigns" violates not-null constraint', 'marketing_campaigns: NULL product');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('bad', 1, NULL, '2030-04-01')$$,
    '23502', 'null value in column "starts_at" of relation "marketing_campaigns" violates not-null constraint', 'marketing_campaigns: NULL starts_at');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('bad', 1, '2030-03-01', NULL)$$,
    '23502', 'null value in column "ends_at" of relation "marketing_campaigns" violates not-null constraint', 'marketing_campaigns: NULL ends_at');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES ('', 1, '2030-03-01', '2030-04-01')$$,
    '23514', 'new row for relation "marketing_campaigns" violates check constraint "marketing_campaigns_name_check"', 'marketing_campaigns: empty name');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
                   VALUES (NULL, 1, '2030-03-01', '2030-04-01')$$,
    '23502', 'null value in column "name" of relation "marketing_campaigns" violates not-null constraint', 'marketing_campaigns: NULL name');
SELECT lives_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                  VALUES ('short', 1, '2030-03-01 00:00+00', '2030-03-01 00:00:00.000001+00', 0.5)$$,
    'marketing_campaigns: a one-microsecond campaign with a boost below 1 is fine');

-- referenced rows cannot be deleted or re-keyed from under their events ------------------
SELECT throws_ok($$DELETE FROM personalize.products WHERE product_id = 1$$,
    '23503', NULL, 'a product with events, feedback or campaigns cannot be deleted');
SELECT throws_ok($$UPDATE personalize.products SET product_id = 100 WHERE product_id = 1$$,
    '23503', NULL, 'a referenced product cannot change its id');
SELECT throws_ok($$DELETE FROM personalize.customers WHERE customer_id = 10$$,
    '23503', 'update or delete on table "customers" violates foreign key constraint "interactions_customer_id_fkey" on table "interactions"',
    'a customer with events cannot be deleted');
SELECT throws_ok($$DELETE FROM personalize.event_types WHERE event_type = 'purchase'$$,
    '23503', 'update or delete on table "event_types" violates foreign key constraint "interactions_event_type_fkey" on table "interactions"',
    'an event type in use cannot be deleted');

-- nothing of a refused statement was written; what was accepted is there ------------------
SELECT results_eq($$SELECT (SELECT count(*) FROM personalize.products)::int, (SELECT count(*) FROM personalize.customers)::int,
                           (SELECT count(*) FROM personalize.event_types)::int, (SELECT count(*) FROM personalize.interactions)::int,
                           (SELECT count(*) FROM personalize.customer_feedback)::int,
                           (SELECT count(*) FROM personalize.marketing_campaigns)::int$$,
    $$VALUES (5, 2, 7, 3, 2, 1)$$,
    'row counts: 5 products, 2 customers, 7 event types, 3 interactions, 2 feedback, 1 campaign');
SELECT results_eq($$SELECT product_id, sku, name, price FROM personalize.products WHERE product_id <= 2 ORDER BY product_id$$,
    $$VALUES (1::bigint, 'A1'::text, 'Mug'::text, 5.00::numeric), (2, 'A2', 'Plate', 7.00)$$,
    'the refused updates left products as they were');

SELECT * FROM finish();
ROLLBACK;
