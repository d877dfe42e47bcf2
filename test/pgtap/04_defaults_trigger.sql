-- personalize: column defaults (declared and applied) and the products.updated_at trigger.
-- Inside this transaction now() is constant, so rows are planted with old timestamps
-- and the tests check that the default or the trigger replaced them with now().
BEGIN;
SELECT plan(43);

-- declared defaults -----------------------------------------------------------
SELECT col_default_is('personalize', 'products', 'active', 'true', 'products.active defaults to true');
SELECT col_default_is('personalize', 'products', 'created_at', 'now()', 'products.created_at defaults to now()');
SELECT col_default_is('personalize', 'products', 'updated_at', 'now()', 'products.updated_at defaults to now()');
SELECT col_hasnt_default('personalize', 'products', 'product_id', 'products.product_id has no default (the application''s id)');
SELECT col_hasnt_default('personalize', 'products', 'sku', 'products.sku has no default');
SELECT col_hasnt_default('personalize', 'products', 'name', 'products.name has no default');
SELECT col_hasnt_default('personalize', 'products', 'category', 'products.category has no default');
SELECT col_hasnt_default('personalize', 'products', 'price', 'products.price has no default');
SELECT col_hasnt_default('personalize', 'products', 'attributes', 'products.attributes has no default');
SELECT col_default_is('personalize', 'customers', 'created_at', 'now()', 'customers.created_at defaults to now()');
SELECT col_hasnt_default('personalize', 'customers', 'customer_id', 'customers.customer_id has no default (the application''s id)');
SELECT col_hasnt_default('personalize', 'customers', 'country', 'customers.country has no default');
SELECT col_hasnt_default('personalize', 'customers', 'attributes', 'customers.attributes has no default');
SELECT col_hasnt_default('personalize', 'event_types', 'weight', 'event_types.weight has no default');
SELECT col_default_is('personalize', 'interactions', 'quantity', '1', 'interactions.quantity defaults to 1');
SELECT col_default_is('personalize', 'interactions', 'occurred_at', 'now()', 'interactions.occurred_at defaults to now()');
SELECT col_hasnt_default('personalize', 'interactions', 'event_type', 'interactions.event_type has no default');
SELECT col_default_is('personalize', 'customer_feedback', 'created_at', 'now()', 'customer_feedback.created_at defaults to now()');
SELECT col_hasnt_default('personalize', 'customer_feedback', 'rating', 'customer_feedback.rating has no default');
SELECT col_default_is('personalize', 'marketing_campaigns', 'boost', '1.5', 'marketing_campaigns.boost defaults to 1.5');
SELECT col_hasnt_default('personalize', 'marketing_campaigns', 'starts_at', 'marketing_campaigns.starts_at has no default');
SELECT col_hasnt_default('personalize', 'marketing_campaigns', 'ends_at', 'marketing_campaigns.ends_at has no default');

-- defaults applied --------------------------------------------------------------
INSERT INTO personalize.products (product_id, name) VALUES (1, 'Mug');
INSERT INTO personalize.customers (customer_id) VALUES (10);
SELECT row_eq($$SELECT active, created_at = now(), updated_at = now(), sku, price FROM personalize.products WHERE product_id = 1$$,
    ROW(true, true, true, NULL::text, NULL::numeric),
    'a product inserted with only id and name is active, created and updated now, without sku or price');
SELECT row_eq($$SELECT created_at = now(), country, attributes FROM personalize.customers WHERE customer_id = 10$$,
    ROW(true, NULL::text, NULL::jsonb), 'a customer inserted with only its id is created now');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'view');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'click');
SELECT results_eq($$SELECT quantity, occurred_at = now() FROM personalize.interactions ORDER BY interaction_id$$,
    $$VALUES (1, true), (1, true)$$, 'an interaction defaults to quantity 1, occurred now');
SELECT ok((SELECT count(DISTINCT interaction_id) = 2 AND bool_and(interaction_id IS NOT NULL) FROM personalize.interactions),
    'interaction_id is generated, distinct per row');
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 4);
SELECT row_eq($$SELECT feedback_id IS NOT NULL, created_at = now(), comment FROM personalize.customer_feedback$$,
    ROW(true, true, NULL::text), 'feedback gets an id and is created now');
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('spring', 1, '2030-03-01', '2030-04-01');
SELECT row_eq($$SELECT campaign_id IS NOT NULL, boost FROM personalize.marketing_campaigns$$,
    ROW(true, 1.5::float8), 'a campaign gets an id and boost 1.5');
SELECT throws_ok($$INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type)
                   VALUES (1000000, 10, 1, 'cart')$$, '428C9', NULL,
    'an explicit interaction_id is refused (GENERATED ALWAYS: an id ahead of the sequence would break later inserts)');

-- the updated_at trigger ------------------------------------------------------------
SELECT has_trigger('personalize', 'products', 'products_touch_updated_at', 'products has trigger products_touch_updated_at');
SELECT trigger_is('personalize', 'products', 'products_touch_updated_at', 'personalize', '_touch_updated_at',
    'products_touch_updated_at calls personalize._touch_updated_at()');
-- tgtype bits: ROW 1, BEFORE 2, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32
SELECT row_eq($$SELECT tgtype::int, tgenabled::text, tgattr::text FROM pg_trigger
                WHERE tgrelid = 'personalize.products'::regclass AND tgname = 'products_touch_updated_at'$$,
    ROW(1 + 2 + 16, 'O'::text, ''::text), 'the trigger fires BEFORE UPDATE of any column, FOR EACH ROW, and is enabled');
SELECT function_returns('personalize', '_touch_updated_at', ARRAY[]::name[], 'trigger', '_touch_updated_at() returns trigger');
SELECT function_lang_is('personalize', '_touch_updated_at', ARRAY[]::name[], 'plpgsql', '_touch_updated_at() is plpgsql');
SELECT isnt_definer('personalize', '_touch_updated_at', ARRAY[]::name[], '_touch_updated_at() is not SECURITY DEFINER');
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = 'personalize._touch_updated_at()'::regprocedure),
    ARRAY['search_path=pg_catalog, pg_temp'], '_touch_updated_at() pins search_path to pg_catalog, pg_temp');

INSERT INTO personalize.products (product_id, sku, name, price, created_at, updated_at)
VALUES (2, 'S2', 'Teapot', 10, '2000-01-01 00:00+00', '2000-01-01 00:00+00'),
       (3, 'S3', 'Kettle', 20, '2000-06-01 00:00+00', '2000-06-01 00:00+00');
SELECT row_eq($$SELECT created_at, updated_at FROM personalize.products WHERE product_id = 2$$,
    ROW('2000-01-01 00:00+00'::timestamptz, '2000-01-01 00:00+00'::timestamptz),
    'an INSERT keeps explicit created_at and updated_at (loaders import history)');
UPDATE personalize.products SET price = 12 WHERE product_id = 2;
SELECT row_eq($$SELECT created_at, updated_at = now(), price FROM personalize.products WHERE product_id = 2$$,
    ROW('2000-01-01 00:00+00'::timestamptz, true, 12.00::numeric),
    'an UPDATE sets updated_at to now() and leaves created_at alone');
UPDATE personalize.products SET updated_at = '1999-01-01 00:00+00', active = false WHERE product_id = 2;
SELECT ok((SELECT updated_at = now() FROM personalize.products WHERE product_id = 2),
    'an UPDATE that sets updated_at explicitly still gets now()');
SELECT ok((SELECT updated_at = '2000-06-01 00:00+00' FROM personalize.products WHERE product_id = 3),
    'a product not named by those updates keeps its updated_at');
-- hostile search_path: a now() planted ahead of pg_catalog must not be called by the trigger
CREATE SCHEMA regress_evil;
CREATE FUNCTION regress_evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '1970-01-01 00:00+00'::timestamptz$$;
SET LOCAL search_path = regress_evil, pg_catalog, public;
UPDATE personalize.products SET name = 'Big teapot' WHERE product_id = 2;
RESET search_path;
SELECT ok((SELECT updated_at = pg_catalog.now() FROM personalize.products WHERE product_id = 2),
    'the trigger uses pg_catalog.now() even with a hostile search_path');
SELECT throws_ok($$UPDATE personalize.products SET name = NULL WHERE product_id = 2$$, '23502', NULL,
    'the trigger does not get in the way of constraint checks on UPDATE');
SELECT function_privs_are('personalize', '_touch_updated_at', ARRAY[]::name[], 'public', ARRAY[]::text[],
    'PUBLIC cannot EXECUTE _touch_updated_at()');

SELECT * FROM finish();
ROLLBACK;
