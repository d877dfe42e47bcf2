-- personalize: primary keys, unique keys, foreign keys and check constraints (structure).
-- Their behaviour on bad input is in 07_bad_input.sql.
BEGIN;
SELECT plan(34);

-- primary keys
SELECT col_is_pk('personalize', 'products',            'product_id',     'products PK is product_id');
SELECT col_is_pk('personalize', 'customers',           'customer_id',    'customers PK is customer_id');
SELECT col_is_pk('personalize', 'event_types',         'event_type',     'event_types PK is event_type');
SELECT col_is_pk('personalize', 'interactions',        'interaction_id', 'interactions PK is interaction_id');
SELECT col_is_pk('personalize', 'customer_feedback',   'feedback_id',    'customer_feedback PK is feedback_id');
SELECT col_is_pk('personalize', 'marketing_campaigns', 'campaign_id',    'marketing_campaigns PK is campaign_id');

-- unique keys
SELECT col_is_unique('personalize', 'products', 'sku', 'products.sku is unique');
SELECT set_eq(
    $$SELECT conrelid::regclass::text, conname::text FROM pg_constraint
      WHERE contype = 'u' AND
            conrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)$$,
    $$VALUES ('personalize.products', 'products_sku_key')$$,
    'on the six tables, the only UNIQUE constraint is products.sku');

-- foreign keys
SELECT fk_ok('personalize', 'interactions', 'customer_id', 'personalize', 'customers', 'customer_id');
SELECT fk_ok('personalize', 'interactions', 'product_id',  'personalize', 'products',  'product_id');
SELECT fk_ok('personalize', 'interactions', 'event_type',  'personalize', 'event_types', 'event_type');
SELECT fk_ok('personalize', 'customer_feedback', 'customer_id', 'personalize', 'customers', 'customer_id');
SELECT fk_ok('personalize', 'customer_feedback', 'product_id',  'personalize', 'products',  'product_id');
SELECT fk_ok('personalize', 'marketing_campaigns', 'product_id', 'personalize', 'products', 'product_id');
SELECT col_isnt_fk('personalize', 'products',    'product_id', 'products references nothing');
SELECT col_isnt_fk('personalize', 'customers',   'customer_id', 'customers references nothing');
SELECT col_isnt_fk('personalize', 'event_types', 'event_type', 'event_types references nothing');
-- every FK refuses to orphan rows (NO ACTION on delete and update, simple match):
-- forgetting a customer or retiring a product must be an explicit step, not a cascade
SELECT set_eq(
    $$SELECT conrelid::regclass::text, confrelid::regclass::text, confdeltype::text, confupdtype::text, confmatchtype::text
      FROM pg_constraint WHERE contype = 'f' AND
            conrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)$$,
    $$VALUES ('personalize.interactions', 'personalize.customers', 'a', 'a', 's'),
             ('personalize.interactions', 'personalize.products', 'a', 'a', 's'),
             ('personalize.interactions', 'personalize.event_types', 'a', 'a', 's'),
             ('personalize.customer_feedback', 'personalize.customers', 'a', 'a', 's'),
             ('personalize.customer_feedback', 'personalize.products', 'a', 'a', 's'),
             ('personalize.marketing_campaigns', 'personalize.products', 'a', 'a', 's')$$,
    'the six tables have exactly six foreign keys, all NO ACTION');

-- check constraints
SELECT col_has_check('personalize', 'products', 'price', 'products.price has a check');
SELECT col_has_check('personalize', 'products', 'name', 'products.name has a check');
SELECT col_has_check('personalize', 'products', 'attributes', 'products.attributes has a check');
SELECT col_has_check('personalize', 'customers', 'attributes', 'customers.attributes has a check');
SELECT col_has_check('personalize', 'event_types', 'weight', 'event_types.weight has a check');
SELECT col_has_check('personalize', 'event_types', 'event_type', 'event_types.event_type has a check');
SELECT col_has_check('personalize', 'interactions', 'quantity', 'interactions.quantity has a check');
SELECT col_has_check('personalize', 'interactions', 'occurred_at', 'interactions.occurred_at has a check (its range)');
SELECT col_has_check('personalize', 'customer_feedback', 'rating', 'customer_feedback.rating has a check');
SELECT col_has_check('personalize', 'marketing_campaigns', 'boost', 'marketing_campaigns.boost has a check');
SELECT col_has_check('personalize', 'marketing_campaigns', 'name', 'marketing_campaigns.name has a check');
SELECT col_has_check('personalize', 'marketing_campaigns', ARRAY['ends_at', 'starts_at'],
    'marketing_campaigns has a check over (starts_at, ends_at)');
SELECT set_eq(
    $$SELECT conrelid::regclass::text, conname::text FROM pg_constraint
      WHERE contype = 'c' AND
            conrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)$$,
    $$VALUES ('personalize.products', 'products_price_check'),
             ('personalize.products', 'products_name_check'),
             ('personalize.products', 'products_attributes_check'),
             ('personalize.customers', 'customers_attributes_check'),
             ('personalize.event_types', 'event_types_weight_check'),
             ('personalize.event_types', 'event_types_name_check'),
             ('personalize.interactions', 'interactions_quantity_check'),
             ('personalize.interactions', 'interactions_occurred_at_range'),
             ('personalize.interactions', 'interactions_event_key_check'),
             ('personalize.customer_feedback', 'customer_feedback_rating_check'),
             ('personalize.marketing_campaigns', 'marketing_campaigns_boost_check'),
             ('personalize.marketing_campaigns', 'marketing_campaigns_period_check'),
             ('personalize.marketing_campaigns', 'marketing_campaigns_name_check')$$,
    'the six tables have exactly the documented check constraints, under their documented names');
SELECT is_empty(
    $$SELECT conname FROM pg_constraint
      WHERE (NOT convalidated OR condeferrable) AND
            conrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)$$,
    'every constraint of the six tables is validated and immediate (not deferrable)');
SELECT is_empty(
    $$SELECT conname FROM pg_constraint
      WHERE contype = 'c' AND connoinherit AND
            conrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)$$,
    'no check constraint is NO INHERIT');
SELECT is(
    (SELECT count(*)::int FROM pg_constraint WHERE contype = 'p' AND
            conrelid IN ('personalize.products'::regclass, 'personalize.customers'::regclass, 'personalize.event_types'::regclass, 'personalize.interactions'::regclass, 'personalize.customer_feedback'::regclass, 'personalize.marketing_campaigns'::regclass)),
    6, 'six primary keys, one per table');

SELECT * FROM finish();
ROLLBACK;
