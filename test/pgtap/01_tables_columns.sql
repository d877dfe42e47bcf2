-- personalize: every table, every column, its type and its nullability; identity columns; comments.
BEGIN;
SELECT plan(93);

SELECT has_extension('personalize', 'the extension is installed');
SELECT has_schema('personalize', 'schema personalize exists');
SELECT is((SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
           WHERE e.extname = 'personalize'),
          'personalize', 'the extension lives in schema personalize');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'personalize'),
          false, 'the extension is not relocatable');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'personalize'),
          (SELECT default_version FROM pg_available_extensions WHERE name = 'personalize'),
          'the installed version is the default version');

-- the foundation's tables; later features add their own (model, variants) and test them
SELECT has_table('personalize', 'products', 'table products exists');
SELECT has_table('personalize', 'customers', 'table customers exists');
SELECT has_table('personalize', 'event_types', 'table event_types exists');
SELECT has_table('personalize', 'interactions', 'table interactions exists');
SELECT has_table('personalize', 'customer_feedback', 'table customer_feedback exists');
SELECT has_table('personalize', 'marketing_campaigns', 'table marketing_campaigns exists');
SELECT has_sequence('personalize', 'interactions_interaction_id_seq', 'interactions has its identity sequence');
SELECT has_sequence('personalize', 'customer_feedback_feedback_id_seq', 'customer_feedback has its identity sequence');
SELECT has_sequence('personalize', 'marketing_campaigns_campaign_id_seq', 'marketing_campaigns has its identity sequence');
SELECT has_function('personalize', '_touch_updated_at', ARRAY[]::name[], 'the updated_at trigger function exists');

-- products ------------------------------------------------------------------
SELECT columns_are('personalize', 'products',
    ARRAY['product_id', 'sku', 'name', 'category', 'price', 'active', 'attributes', 'created_at', 'updated_at']);
SELECT col_type_is('personalize', 'products', 'product_id', 'bigint', 'products.product_id is bigint');
SELECT col_type_is('personalize', 'products', 'sku',        'text', 'products.sku is text');
SELECT col_type_is('personalize', 'products', 'name',       'text', 'products.name is text');
SELECT col_type_is('personalize', 'products', 'category',   'text', 'products.category is text');
SELECT col_type_is('personalize', 'products', 'price',      'numeric(12,2)', 'products.price is numeric(12,2)');
SELECT col_type_is('personalize', 'products', 'active',     'boolean', 'products.active is boolean');
SELECT col_type_is('personalize', 'products', 'attributes', 'jsonb', 'products.attributes is jsonb');
SELECT col_type_is('personalize', 'products', 'created_at', 'timestamp with time zone', 'products.created_at is timestamptz');
SELECT col_type_is('personalize', 'products', 'updated_at', 'timestamp with time zone', 'products.updated_at is timestamptz');
SELECT col_not_null('personalize', 'products', 'product_id', 'products.product_id is NOT NULL');
SELECT col_is_null ('personalize', 'products', 'sku',        'products.sku is nullable');
SELECT col_not_null('personalize', 'products', 'name',       'products.name is NOT NULL');
SELECT col_is_null ('personalize', 'products', 'category',   'products.category is nullable');
SELECT col_is_null ('personalize', 'products', 'price',      'products.price is nullable');
SELECT col_not_null('personalize', 'products', 'active',     'products.active is NOT NULL');
SELECT col_is_null ('personalize', 'products', 'attributes', 'products.attributes is nullable');
SELECT col_not_null('personalize', 'products', 'created_at', 'products.created_at is NOT NULL');
SELECT col_not_null('personalize', 'products', 'updated_at', 'products.updated_at is NOT NULL');

-- customers -----------------------------------------------------------------
SELECT columns_are('personalize', 'customers', ARRAY['customer_id', 'country', 'attributes', 'created_at']);
SELECT col_type_is('personalize', 'customers', 'customer_id', 'bigint', 'customers.customer_id is bigint');
SELECT col_type_is('personalize', 'customers', 'country',     'text', 'customers.country is text');
SELECT col_type_is('personalize', 'customers', 'attributes',  'jsonb', 'customers.attributes is jsonb');
SELECT col_type_is('personalize', 'customers', 'created_at',  'timestamp with time zone', 'customers.created_at is timestamptz');
SELECT col_not_null('personalize', 'customers', 'customer_id', 'customers.customer_id is NOT NULL');
SELECT col_is_null ('personalize', 'customers', 'country',     'customers.country is nullable');
SELECT col_is_null ('personalize', 'customers', 'attributes',  'customers.attributes is nullable');
SELECT col_not_null('personalize', 'customers', 'created_at',  'customers.created_at is NOT NULL');

-- event_types ---------------------------------------------------------------
SELECT columns_are('personalize', 'event_types', ARRAY['event_type', 'weight', 'description']);
SELECT col_type_is('personalize', 'event_types', 'event_type',  'text', 'event_types.event_type is text');
SELECT col_type_is('personalize', 'event_types', 'weight',      'double precision', 'event_types.weight is double precision');
SELECT col_type_is('personalize', 'event_types', 'description', 'text', 'event_types.description is text');
SELECT col_not_null('personalize', 'event_types', 'event_type',  'event_types.event_type is NOT NULL');
SELECT col_not_null('personalize', 'event_types', 'weight',      'event_types.weight is NOT NULL');
SELECT col_is_null ('personalize', 'event_types', 'description', 'event_types.description is nullable');
SELECT results_eq(
    'SELECT event_type, weight FROM personalize.event_types ORDER BY weight',
    $$VALUES ('view'::text, 1.0::float8), ('click', 2.0), ('cart', 4.0), ('purchase', 8.0)$$,
    'the four built-in event types ship with weights 1, 2, 4, 8');
SELECT is_empty('SELECT event_type FROM personalize.event_types WHERE description IS NULL',
    'every built-in event type has a description');

-- interactions --------------------------------------------------------------
SELECT columns_are('personalize', 'interactions',
    ARRAY['interaction_id', 'customer_id', 'product_id', 'event_type', 'quantity', 'occurred_at', 'event_key']);
SELECT col_type_is('personalize', 'interactions', 'interaction_id', 'bigint', 'interactions.interaction_id is bigint');
SELECT col_type_is('personalize', 'interactions', 'customer_id',    'bigint', 'interactions.customer_id is bigint');
SELECT col_type_is('personalize', 'interactions', 'product_id',     'bigint', 'interactions.product_id is bigint');
SELECT col_type_is('personalize', 'interactions', 'event_type',     'text', 'interactions.event_type is text');
SELECT col_type_is('personalize', 'interactions', 'quantity',       'integer', 'interactions.quantity is integer');
SELECT col_type_is('personalize', 'interactions', 'occurred_at',    'timestamp with time zone', 'interactions.occurred_at is timestamptz');
SELECT col_not_null('personalize', 'interactions', 'interaction_id', 'interactions.interaction_id is NOT NULL');
SELECT col_not_null('personalize', 'interactions', 'customer_id',    'interactions.customer_id is NOT NULL');
SELECT col_not_null('personalize', 'interactions', 'product_id',     'interactions.product_id is NOT NULL');
SELECT col_not_null('personalize', 'interactions', 'event_type',     'interactions.event_type is NOT NULL');
SELECT col_not_null('personalize', 'interactions', 'quantity',       'interactions.quantity is NOT NULL');
SELECT col_not_null('personalize', 'interactions', 'occurred_at',    'interactions.occurred_at is NOT NULL');

-- customer_feedback ---------------------------------------------------------
SELECT columns_are('personalize', 'customer_feedback',
    ARRAY['feedback_id', 'customer_id', 'product_id', 'rating', 'comment', 'created_at']);
SELECT col_type_is('personalize', 'customer_feedback', 'feedback_id', 'bigint', 'customer_feedback.feedback_id is bigint');
SELECT col_type_is('personalize', 'customer_feedback', 'customer_id', 'bigint', 'customer_feedback.customer_id is bigint');
SELECT col_type_is('personalize', 'customer_feedback', 'product_id',  'bigint', 'customer_feedback.product_id is bigint');
SELECT col_type_is('personalize', 'customer_feedback', 'rating',      'smallint', 'customer_feedback.rating is smallint');
SELECT col_type_is('personalize', 'customer_feedback', 'comment',     'text', 'customer_feedback.comment is text');
SELECT col_type_is('personalize', 'customer_feedback', 'created_at',  'timestamp with time zone', 'customer_feedback.created_at is timestamptz');
SELECT col_not_null('personalize', 'customer_feedback', 'feedback_id', 'customer_feedback.feedback_id is NOT NULL');
SELECT col_not_null('personalize', 'customer_feedback', 'customer_id', 'customer_feedback.customer_id is NOT NULL');
SELECT col_not_null('personalize', 'customer_feedback', 'product_id',  'customer_feedback.product_id is NOT NULL');
SELECT col_not_null('personalize', 'customer_feedback', 'rating',      'customer_feedback.rating is NOT NULL');
SELECT col_is_null ('personalize', 'customer_feedback', 'comment',     'customer_feedback.comment is nullable');
SELECT col_not_null('personalize', 'customer_feedback', 'created_at',  'customer_feedback.created_at is NOT NULL');

-- marketing_campaigns -------------------------------------------------------
SELECT columns_are('personalize', 'marketing_campaigns',
    ARRAY['campaign_id', 'name', 'product_id', 'starts_at', 'ends_at', 'boost']);
SELECT col_type_is('personalize', 'marketing_campaigns', 'campaign_id', 'bigint', 'marketing_campaigns.campaign_id is bigint');
SELECT col_type_is('personalize', 'marketing_campaigns', 'name',        'text', 'marketing_campaigns.name is text');
SELECT col_type_is('personalize', 'marketing_campaigns', 'product_id',  'bigint', 'marketing_campaigns.product_id is bigint');
SELECT col_type_is('personalize', 'marketing_campaigns', 'starts_at',   'timestamp with time zone', 'marketing_campaigns.starts_at is timestamptz');
SELECT col_type_is('personalize', 'marketing_campaigns', 'ends_at',     'timestamp with time zone', 'marketing_campaigns.ends_at is timestamptz');
SELECT col_type_is('personalize', 'marketing_campaigns', 'boost',       'double precision', 'marketing_campaigns.boost is double precision');
SELECT col_not_null('personalize', 'marketing_campaigns', 'campaign_id', 'marketing_campaigns.campaign_id is NOT NULL');
SELECT col_not_null('personalize', 'marketing_campaigns', 'name',        'marketing_campaigns.name is NOT NULL');
SELECT col_not_null('personalize', 'marketing_campaigns', 'product_id',  'marketing_campaigns.product_id is NOT NULL');
SELECT col_not_null('personalize', 'marketing_campaigns', 'starts_at',   'marketing_campaigns.starts_at is NOT NULL');
SELECT col_not_null('personalize', 'marketing_campaigns', 'ends_at',     'marketing_campaigns.ends_at is NOT NULL');
SELECT col_not_null('personalize', 'marketing_campaigns', 'boost',       'marketing_campaigns.boost is NOT NULL');

-- identity columns: the three event-like tables number their own rows; products and
-- customers carry the application's ids (no generator)
SELECT set_eq(
    $$SELECT table_name::text, column_name::text, identity_generation::text
      FROM information_schema.columns
      WHERE table_schema = 'personalize' AND is_identity = 'YES'
        AND table_name IN ('products', 'customers', 'event_types', 'interactions', 'customer_feedback', 'marketing_campaigns')$$,
    $$VALUES ('interactions', 'interaction_id', 'ALWAYS'),
             ('customer_feedback', 'feedback_id', 'BY DEFAULT'),
             ('marketing_campaigns', 'campaign_id', 'BY DEFAULT')$$,
    'identity columns of the six tables: interaction_id (GENERATED ALWAYS), feedback_id, campaign_id (GENERATED BY DEFAULT), nothing else');
SELECT is_empty(
    $$SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'personalize' AND c.relkind = 'r'
        AND obj_description(c.oid, 'pg_class') IS NULL$$,
    'every table has a COMMENT');

SELECT * FROM finish();
ROLLBACK;
