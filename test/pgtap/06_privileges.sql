-- personalize: privileges. PUBLIC gets nothing but USAGE on the schema; an application
-- role with exactly the documented grant set (docs/reference.md, "Privileges") records
-- customers, events and feedback and reads the catalog, and is refused (42501) anything
-- that changes configuration: event types, products, campaigns, or rewriting the event log.
BEGIN;
SELECT plan(73);

CREATE ROLE regress_app LOGIN;
CREATE ROLE regress_nobody LOGIN;
GRANT SELECT ON personalize.products, personalize.event_types, personalize.marketing_campaigns TO regress_app;
GRANT SELECT, INSERT, UPDATE ON personalize.customers TO regress_app;
GRANT SELECT, INSERT ON personalize.interactions, personalize.customer_feedback TO regress_app;

-- what PUBLIC has ------------------------------------------------------------------
SELECT schema_privs_are('personalize', 'public', ARRAY['USAGE'], 'PUBLIC has USAGE on schema personalize, not CREATE');
SELECT table_privs_are('personalize', 'products', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on products');
SELECT table_privs_are('personalize', 'customers', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on customers');
SELECT table_privs_are('personalize', 'event_types', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on event_types');
SELECT table_privs_are('personalize', 'interactions', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on interactions');
SELECT table_privs_are('personalize', 'customer_feedback', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on customer_feedback');
SELECT table_privs_are('personalize', 'marketing_campaigns', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on marketing_campaigns');
SELECT sequence_privs_are('personalize', 'interactions_interaction_id_seq', 'public', ARRAY[]::text[],
    'PUBLIC has no privilege on interactions_interaction_id_seq');
SELECT sequence_privs_are('personalize', 'customer_feedback_feedback_id_seq', 'public', ARRAY[]::text[],
    'PUBLIC has no privilege on customer_feedback_feedback_id_seq');
SELECT sequence_privs_are('personalize', 'marketing_campaigns_campaign_id_seq', 'public', ARRAY[]::text[],
    'PUBLIC has no privilege on marketing_campaigns_campaign_id_seq');
SELECT is_empty($$SELECT a.attrelid::regclass, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  WHERE c.relnamespace = 'personalize'::regnamespace AND a.attacl IS NOT NULL$$,
    'no column-level grants in the schema');
SELECT is_empty($$SELECT c.oid::regclass, acl.grantee, acl.privilege_type
                  FROM pg_class c, aclexplode(c.relacl) acl
                  WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'S')
                    AND acl.grantee <> c.relowner AND acl.grantee NOT IN ('regress_app'::regrole)$$,
    'the install script grants no table or sequence privilege to anyone (the owner aside)');

-- what the application role has: exactly the documented set ---------------------------
SELECT schema_privs_are('personalize', 'regress_app', ARRAY['USAGE'], 'regress_app has USAGE on the schema, not CREATE');
SELECT table_privs_are('personalize', 'products', 'regress_app', ARRAY['SELECT']);
SELECT table_privs_are('personalize', 'event_types', 'regress_app', ARRAY['SELECT']);
SELECT table_privs_are('personalize', 'marketing_campaigns', 'regress_app', ARRAY['SELECT']);
SELECT table_privs_are('personalize', 'customers', 'regress_app', ARRAY['SELECT', 'INSERT', 'UPDATE']);
SELECT table_privs_are('personalize', 'interactions', 'regress_app', ARRAY['SELECT', 'INSERT']);
SELECT table_privs_are('personalize', 'customer_feedback', 'regress_app', ARRAY['SELECT', 'INSERT']);
SELECT sequence_privs_are('personalize', 'interactions_interaction_id_seq', 'regress_app', ARRAY[]::text[],
    'regress_app needs no privilege on the identity sequence');

-- a little data, as the owner
INSERT INTO personalize.products (product_id, sku, name, price) VALUES (1, 'A1', 'Mug', 5), (2, 'A2', 'Plate', 7);
INSERT INTO personalize.customers (customer_id, country) VALUES (10, 'France');
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('spring', 1, '2030-03-01', '2030-04-01');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'view');

-- the application role at work ------------------------------------------------------
SET LOCAL ROLE regress_app;
SELECT lives_ok('SELECT * FROM personalize.products', 'app reads products');
SELECT lives_ok('SELECT * FROM personalize.event_types', 'app reads event_types');
SELECT lives_ok('SELECT * FROM personalize.marketing_campaigns', 'app reads marketing_campaigns');
SELECT lives_ok('SELECT * FROM personalize.customers', 'app reads customers');
SELECT lives_ok('SELECT * FROM personalize.interactions', 'app reads interactions');
SELECT lives_ok('SELECT * FROM personalize.customer_feedback', 'app reads customer_feedback');
SELECT lives_ok($$INSERT INTO personalize.customers (customer_id, country) VALUES (11, 'Spain')$$, 'app adds a customer');
SELECT lives_ok($$UPDATE personalize.customers SET country = 'Italy', attributes = '{"tier": "gold"}' WHERE customer_id = 11$$,
    'app updates a customer');
SELECT lives_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity)
                  VALUES (11, 2, 'cart', 2), (11, 2, 'purchase', 2)$$,
    'app records events (the identity sequence advances without a grant on it)');
SELECT lives_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
                  VALUES (10, 2, 'click', '2024-01-01 12:00+00') RETURNING interaction_id$$,
    'app records a past event and reads back its id');
SELECT lives_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment)
                  VALUES (11, 2, 5, 'great')$$, 'app records feedback');
SELECT results_eq($$SELECT customer_id, product_id, event_type FROM personalize.interactions ORDER BY interaction_id$$,
    $$VALUES (10::bigint, 1::bigint, 'view'::text), (11, 2, 'cart'), (11, 2, 'purchase'), (10, 2, 'click')$$,
    'app sees the events it recorded, after the owner''s');

-- ... and refused what changes configuration or rewrites history
SELECT throws_ok($$INSERT INTO personalize.event_types (event_type, weight) VALUES ('wishlist', 3)$$, '42501', NULL,
    'app cannot add an event type');
SELECT throws_ok($$UPDATE personalize.event_types SET weight = 100 WHERE event_type = 'view'$$, '42501', NULL,
    'app cannot change an event type''s weight');
SELECT throws_ok($$DELETE FROM personalize.event_types WHERE event_type = 'cart'$$, '42501', NULL,
    'app cannot delete an event type');
SELECT throws_ok('TRUNCATE personalize.event_types CASCADE', '42501', NULL, 'app cannot truncate event_types');
SELECT throws_ok($$INSERT INTO personalize.products (product_id, name) VALUES (3, 'Bowl')$$, '42501', NULL,
    'app cannot add a product');
SELECT throws_ok($$UPDATE personalize.products SET price = 0 WHERE product_id = 1$$, '42501', NULL,
    'app cannot change a product');
SELECT throws_ok($$DELETE FROM personalize.products WHERE product_id = 2$$, '42501', NULL, 'app cannot delete a product');
SELECT throws_ok('TRUNCATE personalize.products CASCADE', '42501', NULL, 'app cannot truncate products');
SELECT throws_ok($$INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
                   VALUES ('mine', 2, now(), now() + interval '1 day', 100)$$, '42501', NULL,
    'app cannot start a campaign');
SELECT throws_ok($$UPDATE personalize.marketing_campaigns SET boost = 100$$, '42501', NULL, 'app cannot change a campaign');
SELECT throws_ok($$DELETE FROM personalize.marketing_campaigns$$, '42501', NULL, 'app cannot delete a campaign');
SELECT throws_ok($$DELETE FROM personalize.interactions WHERE customer_id = 10$$, '42501', NULL,
    'app cannot delete interactions');
SELECT throws_ok($$UPDATE personalize.interactions SET quantity = 100$$, '42501', NULL, 'app cannot rewrite interactions');
SELECT throws_ok('TRUNCATE personalize.interactions', '42501', NULL, 'app cannot truncate interactions');
SELECT throws_ok($$UPDATE personalize.customer_feedback SET rating = 1$$, '42501', NULL, 'app cannot rewrite feedback');
SELECT throws_ok($$DELETE FROM personalize.customer_feedback$$, '42501', NULL, 'app cannot delete feedback');
SELECT throws_ok($$DELETE FROM personalize.customers WHERE customer_id = 11$$, '42501', NULL,
    'app cannot delete a customer (forgetting one is an administrative step)');
SELECT throws_ok($$SELECT setval('personalize.interactions_interaction_id_seq', 1)$$, '42501', NULL,
    'app cannot reset the interactions sequence');
SELECT throws_ok($$SELECT nextval('personalize.customer_feedback_feedback_id_seq')$$, '42501', NULL,
    'app cannot draw from a sequence directly');
SELECT throws_ok('CREATE TABLE personalize.regress_mine (x int)', '42501', NULL, 'app cannot create objects in the schema');
SELECT throws_ok('ALTER TABLE personalize.event_types DROP CONSTRAINT event_types_weight_check', '42501', NULL,
    'app cannot alter a table');
SELECT throws_ok('CREATE INDEX ON personalize.interactions (occurred_at)', '42501', NULL, 'app cannot add indexes');
SELECT throws_ok('DROP TABLE personalize.customer_feedback', '42501', NULL, 'app cannot drop a table');
SELECT throws_ok('ALTER TABLE personalize.products DISABLE TRIGGER products_touch_updated_at', '42501', NULL,
    'app cannot disable the updated_at trigger');
RESET ROLE;

SELECT results_eq($$SELECT event_type, weight FROM personalize.event_types ORDER BY weight$$,
    $$VALUES ('view'::text, 1.0::float8), ('click', 2.0), ('cart', 4.0), ('purchase', 8.0)$$,
    'configuration is as installed after the app''s attempts');
SELECT results_eq($$SELECT customer_id, country, attributes FROM personalize.customers ORDER BY customer_id$$,
    $$VALUES (10::bigint, 'France'::text, NULL::jsonb), (11, 'Italy', '{"tier": "gold"}')$$,
    'the app''s customer changes are there');

-- a role without grants (PUBLIC only) ---------------------------------------------------
SET LOCAL ROLE regress_nobody;
SELECT throws_ok('SELECT * FROM personalize.products', '42501', NULL, 'a role without grants cannot read products');
SELECT throws_ok('SELECT * FROM personalize.customers', '42501', NULL, 'a role without grants cannot read customers');
SELECT throws_ok('SELECT * FROM personalize.event_types', '42501', NULL, 'a role without grants cannot read event_types');
SELECT throws_ok('SELECT * FROM personalize.interactions', '42501', NULL, 'a role without grants cannot read interactions');
SELECT throws_ok('SELECT * FROM personalize.customer_feedback', '42501', NULL, 'a role without grants cannot read customer_feedback');
SELECT throws_ok('SELECT * FROM personalize.marketing_campaigns', '42501', NULL, 'a role without grants cannot read marketing_campaigns');
SELECT throws_ok($$INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'view')$$,
    '42501', NULL, 'a role without grants cannot record events');
SELECT throws_ok($$INSERT INTO personalize.customers (customer_id) VALUES (12)$$,
    '42501', NULL, 'a role without grants cannot add customers');
SELECT throws_ok($$INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 3)$$,
    '42501', NULL, 'a role without grants cannot leave feedback');
SELECT throws_ok($$UPDATE personalize.event_types SET weight = 1$$, '42501', NULL, 'a role without grants cannot change weights');
SELECT throws_ok($$SELECT personalize._touch_updated_at()$$, '42501', NULL,
    'a role without grants cannot execute the trigger function');
SELECT lives_ok($$SELECT 'personalize.products'::regclass$$, 'a role without grants can still resolve names in the schema (USAGE)');
SELECT throws_ok($$SELECT * FROM personalize.recommend(10)$$, '42501', NULL,
    'a role without grants cannot call recommend() (its reasons and exclusions reveal purchases)');
RESET ROLE;
SELECT is(has_function_privilege('public', 'personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'), false,
    'PUBLIC has no EXECUTE on recommend()');
-- what PUBLIC may execute, found from the catalog: nothing that reads a customer's data
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text COLLATE "C")
           FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
             AND has_function_privilege('public', p.oid, 'EXECUTE')),
          ARRAY['personalize._chisq_sf(double precision,double precision)', 'personalize._echo(text)',
                'personalize._health_cron_jobs()', 'personalize._health_settings()',
                'personalize._ingest_columns(regclass)', 'personalize._ingest_timestamptz(text)',
                'personalize._normal_cdf(double precision)', 'personalize._retention_defaults()',
                'personalize._t_cdf(double precision,double precision)',
                'personalize._variant_problem(text,text,jsonb)',
                'personalize.cooccurrence_count(bigint,bigint)',
                'personalize.similarity(text,bigint,bigint,bigint,bigint)'],
          'PUBLIC executes only the arithmetic and model-level functions');

SELECT * FROM finish();
ROLLBACK;
